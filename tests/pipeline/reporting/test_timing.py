"""Per-component timing: the monitor on real absl log lines and this process's real CPU and memory; ML
Metadata's record of a real local run (the shared `finished_run`)."""
import logging
import time

import numpy as np
import pytest
from absl import logging as absl_logging
from ml_metadata.metadata_store import metadata_store

from hubtfx.pipeline import local_runner
from hubtfx.pipeline.reporting import timing


def _component(name, work):
    # The lines LocalDagRunner writes around a node (tfx/orchestration/local/local_dag_runner.py).
    absl_logging.info("Component %s is running.", name)
    work()
    absl_logging.info("Component %s is finished.", name)


def _busy(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_each_component_gets_its_own_wall_time_cpu_time_and_peak_memory():
    held = []

    def allocate():
        held.append(np.ones(300 * 1024 * 1024 // 8))  # 300 MB, touched
        time.sleep(0.3)  # the sampler sees it
        held.clear()

    with timing.ComponentMonitor(sample_seconds=0.02) as monitor:
        _component("Sleeper", lambda: time.sleep(0.5))
        _component("Spinner", lambda: _busy(0.5))
        _component("Allocator", allocate)
    sleeper, spinner, allocator = monitor.timing.components
    assert [c.component for c in monitor.timing.components] == ["Sleeper", "Spinner", "Allocator"]
    assert all(c.status == "ran" for c in monitor.timing.components)
    assert sleeper.wall_seconds == pytest.approx(0.5, abs=0.2) and sleeper.cpu_seconds < 0.2
    assert spinner.cpu_seconds >= 0.45 and spinner.cores_busy > 0.5
    # The array is freed before the component ends: only sampling during it can have seen the peak.
    assert allocator.peak_rss_bytes - sleeper.peak_rss_bytes > 250e6
    assert monitor.timing.wall_seconds >= sum(c.wall_seconds for c in monitor.timing.components)


def test_a_component_that_raises_is_measured_and_marked_failed():
    with pytest.raises(RuntimeError):
        with timing.ComponentMonitor() as monitor:
            absl_logging.info("Component %s is running.", "Trainer")
            raise RuntimeError("out of memory")
    (trainer,) = monitor.timing.components
    assert trainer.component == "Trainer" and trainer.status == "failed" and trainer.cpu_seconds is not None


def _like_tensorflow_saving_a_model():
    # TensorFlow's object tracking does this around every SavedModel traversal
    # (tensorflow/python/trackable/autotrackable.py, _trackable_children).
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.FATAL)
    absl_logging.set_verbosity(verbosity)
    absl_logging.warning("a warning inside the component")


def test_the_monitor_sees_the_lines_when_info_is_hidden_and_the_console_stays_as_it_was(caplog):
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.WARNING)
    try:
        caplog.set_level(logging.NOTSET)  # the absl logger's own level decides
        with timing.ComponentMonitor() as monitor:
            _component("Transform", _like_tensorflow_saving_a_model)
            _component("Trainer", lambda: None)
        assert absl_logging.get_verbosity() == absl_logging.WARNING
        assert [c.component for c in monitor.timing.components] == ["Transform", "Trainer"]
        messages = [r.getMessage() for r in caplog.records if r.name == "absl"]
        assert "a warning inside the component" in messages
        assert not any("is running" in m or "is finished" in m for m in messages)
    finally:
        absl_logging.set_verbosity(verbosity)


def test_metadata_records_every_component_of_the_latest_run_with_its_state(finished_run):
    config, _, summary = finished_run
    store = metadata_store.MetadataStore(local_runner.metadata_connection_config(config))
    recorded = timing.from_metadata(store, config.pipeline_name)
    names = [c.component for c in recorded.components]
    assert names[0] == "ImageFolderExampleGen" and {"Transform", "Trainer", "Evaluator", "AtomicPusher"} <= set(names)
    assert all(c.status == "ran" for c in recorded.components)
    assert recorded.source == "metadata" and recorded.wall_seconds >= max(c.wall_seconds for c in recorded.components)
    # The run's summary holds the measured figures under the same names, in the same order.
    assert [c.component for c in summary.timing.components] == names
    assert all(c.cpu_seconds is not None for c in summary.timing.components)
    assert timing.from_metadata(store, "no-such-pipeline").components == []


def test_combine_takes_the_measurements_and_the_recorded_states():
    measured = timing.RunTiming([timing.ComponentTiming("Transform", "ran", 2.0, 3.0, 10)], wall_seconds=5.0)
    recorded = timing.RunTiming([timing.ComponentTiming("ExampleGen", "cached", 0.1),
                                 timing.ComponentTiming("Transform", "cached", 1.5)], wall_seconds=4.0,
                                source="metadata")
    combined = timing.combine(measured, recorded)
    assert [(c.component, c.status, c.wall_seconds, c.cpu_seconds) for c in combined.components] == [
        ("ExampleGen", "cached", 0.1, None), ("Transform", "cached", 2.0, 3.0)]
    assert combined.wall_seconds == 5.0 and combined.source == "measured"
    lines = combined.render()
    assert "Transform (cached)" in lines[2] and "1 more under 1 s each, 0.1 s together" in lines[-1]
