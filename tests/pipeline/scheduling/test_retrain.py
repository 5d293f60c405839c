"""`hubtfx retrain` decisions, with the pipeline replaced by a stub (the real one runs in test_retrain_story)."""
import dataclasses
import os

import pytest

from hubtfx.components.example_gen.layout import DataLayoutError
from hubtfx.components.gate.anomalies import DataAnomaliesError
from hubtfx.pipeline import output_folder
from hubtfx.pipeline.config import PipelineConfig
from hubtfx.pipeline.hub_modules.resolved_module import ResolvedModule
from hubtfx.pipeline.reporting.run_summary import RunSummary
from hubtfx.pipeline.scheduling import retrain


def _add_span(data_root, span):
    os.makedirs(os.path.join(data_root, f"span-{span}", "a"))
    open(os.path.join(data_root, f"span-{span}", "a", "1.jpg"), "wb").close()


MODULE = ResolvedModule(path="/m", sha256="abc", image_size=(32, 32))

@pytest.fixture
def config(tmp_path):
    for span in (1, 2):
        _add_span(str(tmp_path / "data"), span)
    return PipelineConfig(data_root=str(tmp_path / "data"), output_dir=str(tmp_path / "out"))


def _run_returning(summary, calls):
    def run(config, module):
        assert module is MODULE
        calls.append(config)
        return summary
    return run


def test_a_new_span_runs_once_then_nothing_is_new(config):
    calls = []
    run = _run_returning(RunSummary(pushed=True, blessed=True, pushed_path="/serving/7"), calls)
    first = retrain.retrain(config, run=run, resolve=lambda c: MODULE)
    assert first.outcome is retrain.Outcome.PUSHED and "span 2" in first.message
    assert calls[0].use_spans
    second = retrain.retrain(config, run=run, resolve=lambda c: MODULE)
    assert second.outcome is retrain.Outcome.NOTHING_NEW and "span 2" in second.message and "pushed" in second.message
    assert len(calls) == 1
    _add_span(config.data_root, 3)
    assert retrain.retrain(config, run=run, resolve=lambda c: MODULE).outcome is retrain.Outcome.PUSHED
    assert retrain.read_state(config)["last_span"] == 3


@pytest.mark.parametrize("summary, outcome", [
    (RunSummary(blessed=False), retrain.Outcome.NOT_BLESSED),
    (RunSummary(blessed=True, push_skipped_reason="identical to the served version 7"),
     retrain.Outcome.ALREADY_SERVING),
])
def test_outcomes_without_a_push(config, summary, outcome):
    assert retrain.retrain(config, run=_run_returning(summary, []), resolve=lambda c: MODULE).outcome is outcome


@pytest.mark.parametrize("error", [DataAnomaliesError("anomalies\n  eval / x"), DataLayoutError("empty class")])
def test_rejected_data_is_recorded_once_and_raised(config, error):
    def run(*_):
        raise error
    with pytest.raises(type(error)):
        retrain.retrain(config, run=run, resolve=lambda c: MODULE)
    state = retrain.read_state(config)
    assert state["last_span"] == 2 and state["outcome"] == retrain.Outcome.DATA_REJECTED.value
    assert retrain.retrain(config, run=run, resolve=lambda c: MODULE).outcome is retrain.Outcome.NOTHING_NEW


def test_an_unexpected_failure_is_retried_on_the_next_tick(config):
    def run(*_):
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        retrain.retrain(config, run=run, resolve=lambda c: MODULE)
    assert retrain.read_state(config) == {}


def test_only_one_retrain_runs_per_output_folder(config):
    calls = []
    with output_folder.exclusive_lock(config.output_dir, retrain.LOCK_FILE) as locked:
        assert locked
        busy = retrain.retrain(config, run=_run_returning(RunSummary(), calls), resolve=lambda c: MODULE)
    assert busy.outcome is retrain.Outcome.BUSY and not calls


def test_no_span_folder_is_a_data_layout_error(config):
    with pytest.raises(DataLayoutError):
        retrain.retrain(dataclasses.replace(config, data_root=os.path.dirname(config.data_root)),
                        run=_run_returning(RunSummary(), []), resolve=lambda c: MODULE)
