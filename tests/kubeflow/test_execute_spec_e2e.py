"""The compiled Kubeflow and Vertex specs run, not only compile: `hubtfx compile --allow-local-paths` for both
targets with the tiny module and the tiny sample data, then `hubtfx execute-spec` twice per spec.

Runs (the two specs' runs go side by side, as they would on two clusters):
- vertex, first and second, both with --param data_root=<a copy of the data>: the second run's resolvers
  answer from the first run's record, and everything up to the Trainer is a cache hit, as on Vertex;
- kubeflow, first with the compiled defaults, second with --param data_root=<the copy>: the second run's
  ServedModelBaseline finds the first run's pushed model.
The tasks run with --warm-start (forked from one interpreter that imported TFX once, the same commands and
arguments) and Beam in_memory, so the test fits in CI; test_container_entrypoint.py runs real subprocesses.
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
def runs(tmp_path_factory, tiny_module, sample_root):
    work = tmp_path_factory.mktemp("execute_spec")
    data_copy = str(work / "data_copy")
    shutil.copytree(sample_root, data_copy)
    specs = {target: compile_dry_run(target, str(work / f"{target}.yaml"), sample_root, tiny_module,
                                     str(work / target)) for target in ("vertex", "kubeflow")}
    override = [f"data_root={data_copy}"]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        vertex_first = pool.submit(execute, specs["vertex"], "first", override)
        kubeflow_first = pool.submit(execute, specs["kubeflow"], "first")
        firsts = {"vertex": vertex_first.result(), "kubeflow": kubeflow_first.result()}
        vertex_second = pool.submit(execute, specs["vertex"], "second", override)
        kubeflow_second = pool.submit(execute, specs["kubeflow"], "second", override)
        seconds = {"vertex": vertex_second.result(), "kubeflow": kubeflow_second.result()}
    return {"specs": specs, "first": firsts, "second": seconds, "data_copy": data_copy, "data": sample_root}


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


@pytest.mark.parametrize("target", ["vertex", "kubeflow"])
def test_every_task_of_the_spec_ran(runs, target):
    loaded = execute_spec.load_spec(runs["specs"][target])
    first = runs["first"][target]
    assert set(first.tasks) == set(loaded.tasks)
    assert {t.state for t in first.tasks.values()} == {execute_spec.COMPLETE}
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
    _, local_summary = finished_run
    files = sorted(glob.glob(os.path.join(sample_root, "*", "*")))
    return files, list(predict.predict_files(local_summary.pushed_path, files))


@pytest.mark.parametrize("target", ["vertex", "kubeflow"])
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


def test_the_second_kubeflow_run_compares_with_the_model_the_first_one_pushed(runs):
    first, second = runs["first"]["kubeflow"], runs["second"]["kubeflow"]
    [trained] = artifacts(first, "Trainer", "model")
    [first_baseline] = artifacts(first, kfp_target.BASELINE_ID, "model")
    assert first_baseline.custom_properties["baseline"].string_value == "none"
    [baseline] = artifacts(second, kfp_target.BASELINE_ID, "model")
    assert baseline.uri == trained.uri and baseline.custom_properties["baseline"].string_value == "pushed model"
    assert baseline.custom_properties["served_path"].string_value == pushed_model_dir(first)
    [blessing] = artifacts(second, "Evaluator", "blessing")
    assert blessing.custom_properties["baseline_model"].string_value == trained.uri
    [first_blessing] = artifacts(first, "Evaluator", "blessing")
    assert "baseline_model" not in first_blessing.custom_properties  # the empty baseline was dropped


@pytest.mark.parametrize("target, run", [("vertex", "first"), ("kubeflow", "first"), ("kubeflow", "second")])
def test_the_data_root_parameter_reaches_example_gen(runs, target, run):
    result = runs[run][target]
    expected = runs["data"] if (target, run) == ("kubeflow", "first") else runs["data_copy"]
    values = executor_input(result, "ImageFolderExampleGen")["inputs"]["parameterValues"]
    assert values["input_base"] == expected
    [examples] = artifacts(result, "ImageFolderExampleGen", "examples")
    with open(os.path.join(examples.uri, artifact_files.INGESTION_REPORT_FILE), encoding="utf-8") as f:
        assert json.load(f)["input_base"] == expected
