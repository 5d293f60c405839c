"""The compiled Kubeflow and Vertex specs run, not only compile: `hubtfx compile --allow-local-paths` with the
tiny module and the tiny sample data, then `hubtfx execute-spec`, four runs in all:
- kubeflow, first, with the compiled defaults: every task runs, the ServedModelBaseline finds no served model,
  the Evaluator evaluates without a baseline, and the pushed model predicts what the local runner's does;
- vertex, first and second, both with --param data_root=<a copy of the data>: the second run's resolvers answer
  from the first run's record, and everything up to the Trainer is a cache hit, as on Vertex;
- kubeflow, second, with --param data_root=<the copy>: its ServedModelBaseline finds the first run's pushed model.
The runs that do not depend on each other go side by side (vertex first beside kubeflow second), as they would on
two clusters. The tasks run with --warm-start (forked from one interpreter that imported TFX once, the same
commands and arguments) and Beam in_memory, so the file fits in CI; test_container_entrypoint.py runs real
subprocesses.
"""
import concurrent.futures
import glob
import json
import os
import shutil

import numpy as np
import pytest

from hubtfx.components.common import artifact_files
from hubtfx.kubeflow import execute_spec, kfp_target, local_metadata

# The config of the `finished_run` fixture (tests/conftest.py): the same seed, data and training settings.
TRAINING_FLAGS = ["--stage2-epochs", "1", "--min-validation-examples", "2", "--accuracy-threshold", "0",
                  "--batch-size", "8", "--stage2-significance", "1.0"]
VERTEX_RESOLVER = "latest_blessed_model_resolver-model-resolver"


def compile_dry_run(target, output, data_root, module, output_dir):
    from hubtfx.pipeline.cli.commands import main
    assert main(["compile", "--target", target, "--output", output, "--allow-local-paths", "--data-root", data_root,
                 "--hub-handle", module, "--output-dir", output_dir, *TRAINING_FLAGS]) == 0
    return output


def execute(spec, run_id, params=()):
    lines = []
    result = execute_spec.execute(spec, execute_spec.Options(
        run_id=run_id, params=list(params), beam_mode="in_memory", warm_start=True, log=lines.append))
    assert result.succeeded, "\n".join(lines + [f"{t.name}: {t.error}" for t in result.tasks.values() if t.error])
    return result


@pytest.fixture(scope="module")
def work(tmp_path_factory, sample_root):
    work = tmp_path_factory.mktemp("execute_spec")
    shutil.copytree(sample_root, str(work / "data_copy"))
    return {"dir": work, "data": sample_root, "data_copy": str(work / "data_copy")}


@pytest.fixture(scope="module")
def specs(work, tiny_module):
    """target -> compiled spec, each compiled when first asked for."""
    compiled = {}

    def spec(target):
        if target not in compiled:
            compiled[target] = compile_dry_run(target, str(work["dir"] / f"{target}.yaml"), work["data"],
                                               tiny_module, str(work["dir"] / target))
        return compiled[target]
    return spec


@pytest.fixture(scope="module")
def runs(specs, work):
    """{"first"|"second": {"kubeflow"|"vertex": RunResult}}: the Kubeflow spec first with its compiled defaults
    (nothing served yet), then the Vertex spec twice beside the Kubeflow spec's second run."""
    override = [f"data_root={work['data_copy']}"]
    vertex_spec, kubeflow_spec = specs("vertex"), specs("kubeflow")
    kubeflow_first = execute(kubeflow_spec, "first")
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        vertex_first = pool.submit(execute, vertex_spec, "first", override)
        kubeflow_second = pool.submit(execute, kubeflow_spec, "second", override)
        firsts = {"vertex": vertex_first.result(), "kubeflow": kubeflow_first}
        vertex_second = pool.submit(execute, vertex_spec, "second", override)
        seconds = {"vertex": vertex_second.result(), "kubeflow": kubeflow_second.result()}
    return {"first": firsts, "second": seconds}


def artifacts(result, task, key):
    store = local_metadata.LocalMetadata(result.metadata_path, result.pipeline_name)
    return store.artifacts(result.tasks[task].outputs.get(key, []))


def executor_input(result, task):
    with open(os.path.join(result.tasks[task].work_dir, "executor_input.json"), encoding="utf-8") as f:
        return json.load(f)


def pushed_model_dir(result):
    [pushed] = artifacts(result, "AtomicPusher", "pushed_model")
    assert pushed.custom_properties["pushed"].double_value == 1, pushed
    destination = pushed.custom_properties["pushed_destination"].string_value
    assert os.path.exists(os.path.join(destination, "saved_model.pb"))
    return destination


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_every_task_of_the_spec_ran(runs, specs, target):
    loaded = execute_spec.load_spec(specs(target))
    first = runs["first"][target]
    assert set(first.tasks) == set(loaded.tasks)
    assert {t.state for t in first.tasks.values()} == {execute_spec.COMPLETE}


@pytest.mark.parametrize("target", ["vertex", "kubeflow"])
def test_the_second_run_runs_or_reuses_every_task_and_evaluates_again(runs, target):
    second = runs["second"][target]
    assert {t.state for t in second.tasks.values()} <= {execute_spec.COMPLETE, execute_spec.CACHED}
    assert second.tasks["Evaluator"].state == execute_spec.COMPLETE  # a new baseline is a new input


def test_the_vertex_rerun_is_served_from_cache_up_to_the_trainer(runs):
    second = runs["second"]["vertex"]
    cached = {name for name, task in second.tasks.items() if task.state == execute_spec.CACHED}
    assert {"ImageFolderExampleGen", "StatisticsGen", "Transform", "Trainer"} <= cached


@pytest.fixture(scope="module")
def local_predictions(finished_run, sample_root):
    """The local runner's model (same config, data and seed) on every sample image."""
    from hubtfx.pipeline.serving import predict
    _, _, local_summary = finished_run
    files = sorted(glob.glob(os.path.join(sample_root, "*", "*")))
    return files, list(predict.predict_files(local_summary.pushed_path, files))


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_a_model_was_pushed_whose_predictions_equal_the_local_runners(runs, target, local_predictions):
    from hubtfx.pipeline.serving import predict
    files, local = local_predictions
    executed = list(predict.predict_files(pushed_model_dir(runs["first"][target]), files))
    assert [r.class_id for r in executed] == [r.class_id for r in local]
    np.testing.assert_array_equal([r.probability for r in executed], [r.probability for r in local])


def test_the_second_vertex_run_resolves_the_first_runs_blessed_model(runs):
    first, second = runs["first"]["vertex"], runs["second"]["vertex"]
    [trained] = artifacts(first, "Trainer", "model")
    [resolved] = artifacts(second, VERTEX_RESOLVER, "model")
    assert resolved.id == trained.id
    assert artifacts(first, VERTEX_RESOLVER, "model") == []  # nothing was blessed before the first run
    [baseline] = executor_input(second, "Evaluator")["inputs"]["artifacts"]["baseline_model"]["artifacts"]
    assert baseline["uri"] == trained.uri
    [blessing] = artifacts(second, "Evaluator", "blessing")
    assert blessing.custom_properties["baseline_model"].string_value == trained.uri  # TFMA compared the two


def test_the_first_kubeflow_run_has_no_served_baseline_and_evaluates_without_one(runs):
    kubeflow_first = runs["first"]["kubeflow"]
    [first_baseline] = artifacts(kubeflow_first, kfp_target.BASELINE_ID, "model")
    assert first_baseline.custom_properties["baseline"].string_value == "none"
    [first_blessing] = artifacts(kubeflow_first, "Evaluator", "blessing")
    assert "baseline_model" not in first_blessing.custom_properties  # the empty baseline was dropped


def test_the_second_kubeflow_run_compares_with_the_model_the_first_one_pushed(runs):
    first, second = runs["first"]["kubeflow"], runs["second"]["kubeflow"]
    [trained] = artifacts(first, "Trainer", "model")
    [baseline] = artifacts(second, kfp_target.BASELINE_ID, "model")
    assert baseline.uri == trained.uri and baseline.custom_properties["baseline"].string_value == "pushed model"
    assert baseline.custom_properties["served_path"].string_value == pushed_model_dir(first)
    [blessing] = artifacts(second, "Evaluator", "blessing")
    assert blessing.custom_properties["baseline_model"].string_value == trained.uri


@pytest.mark.parametrize("target, run", [("kubeflow", "first"), ("vertex", "first"), ("kubeflow", "second")])
def test_the_data_root_parameter_reaches_example_gen(runs, work, target, run):
    """The compiled default on the Kubeflow spec's first run; --param data_root=<the copy> on the others."""
    result = runs[run][target]
    expected = work["data"] if (target, run) == ("kubeflow", "first") else work["data_copy"]
    values = executor_input(result, "ImageFolderExampleGen")["inputs"]["parameterValues"]
    assert values["input_base"] == expected
    [examples] = artifacts(result, "ImageFolderExampleGen", "examples")
    with open(os.path.join(examples.uri, artifact_files.INGESTION_REPORT_FILE), encoding="utf-8") as f:
        assert json.load(f)["input_base"] == expected
