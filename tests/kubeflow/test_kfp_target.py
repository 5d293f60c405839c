"""The Kubeflow target holds nothing open-source KFP 2.x cannot execute; the Vertex target keeps Vertex's own
resolvers and driver hook; ServedModelBaseline picks the model being served (kubeflow/kfp_target.py,
kubeflow/served_baseline.py)."""
import os

import pytest
import yaml

from hubtfx.kubeflow import container_entrypoint, kfp_target, served_baseline


def executors(spec):
    return spec["deploymentSpec"]["executors"]


def tasks(spec):
    return spec["root"]["dag"]["tasks"]


def executor_of(spec, task):
    return executors(spec)[spec["components"][tasks(spec)[task]["componentRef"]["name"]]["executorLabel"]]


# ------------------------------------------------------------------------------------------------ the two specs
def test_kubeflow_spec_has_only_what_kfp_executes(kubeflow_spec):
    spec = kubeflow_spec[2]
    assert {kind for e in executors(spec).values() for kind in e} == {"container", "importer"}
    for label, executor in executors(spec).items():
        if "container" in executor:
            assert executor["container"]["command"] == kfp_target.ENTRYPOINT, label
            assert "lifecycle" not in executor["container"], label  # KFP does not run preCacheCheck
    assert executor_of(spec, "ImageFolderExampleGen")["container"]["args"][0] == \
        container_entrypoint.RUN_EXAMPLE_GEN_DRIVER


def test_kubeflow_evaluator_compares_with_the_served_model(kubeflow_spec):
    spec = kubeflow_spec[2]
    baseline = tasks(spec)["Evaluator"]["inputs"]["artifacts"]["baseline_model"]["taskOutputArtifact"]
    assert baseline == {"producerTask": kfp_target.BASELINE_ID, "outputArtifactKey": served_baseline.MODEL_KEY}
    parameter = tasks(spec)[kfp_target.BASELINE_ID]["inputs"]["parameters"][served_baseline.SERVING_DIR_KEY]
    assert parameter["runtimeValue"]["constant"] == "gs://hubtfx-test/run/serving/hubtfx"


def test_kubeflow_does_not_cache_what_depends_on_more_than_its_inputs(kubeflow_spec):
    spec = kubeflow_spec[2]
    cached = {name for name, task in tasks(spec).items() if task.get("cachingOptions", {}).get("enableCache")}
    assert "ImageFolderExampleGen" not in cached and kfp_target.BASELINE_ID not in cached
    assert {"StatisticsGen", "Transform", "Trainer", "Evaluator"} <= cached


def test_vertex_spec_keeps_vertex_resolvers_and_the_driver_hook(vertex_spec):
    spec = vertex_spec[2]
    resolvers = sorted(label for label, e in executors(spec).items() if "resolver" in e)
    assert resolvers == ["latest_blessed_model_resolver-model-blessing-resolver_executor",
                         "latest_blessed_model_resolver-model-resolver_executor"]
    hook = executor_of(spec, "ImageFolderExampleGen")["container"]["lifecycle"]["preCacheCheck"]
    assert hook["command"][-1] == kfp_target.TFX_EXAMPLE_GEN_DRIVER


@pytest.mark.parametrize("which", ["vertex_spec", "kubeflow_spec"])
def test_no_task_gets_one_artifact_under_two_names(which, request):
    """ML Metadata refuses a second INPUT event for one artifact and execution, on both backends."""
    for name, task in tasks(request.getfixturevalue(which)[2]).items():
        sources = [(a["taskOutputArtifact"]["producerTask"], a["taskOutputArtifact"]["outputArtifactKey"])
                   for a in task.get("inputs", {}).get("artifacts", {}).values()]
        assert len(sources) == len(set(sources)), name


@pytest.mark.parametrize("which", ["vertex_spec", "kubeflow_spec"])
def test_every_artifact_type_is_a_tfx_type_the_entrypoint_resolves(which, request):
    """Why sky-uk/kfp-operator's system.* title patches are not needed here: no artifact is typed system.*."""
    from tfx.orchestration.kubeflow.v2 import compiler_utils
    spec = request.getfixturevalue(which)[2]
    types = []
    for component in spec["components"].values():
        for direction in ("inputDefinitions", "outputDefinitions"):
            types += [a["artifactType"] for a in component.get(direction, {}).get("artifacts", {}).values()]
    types += [e["importer"]["typeSchema"] for e in executors(spec).values() if "importer" in e]
    assert types
    for artifact_type in types:
        assert list(artifact_type) == ["instanceSchema"]
        assert yaml.safe_load(artifact_type["instanceSchema"])["title"] in compiler_utils.TITLE_TO_CLASS_PATH


# ------------------------------------------------------------------------------------------------ ServedModelBaseline
@pytest.fixture
def served(tmp_path):
    """(serving folder, a Trainer-like model artifact folder holding a model) with nothing pushed yet."""
    model_uri = tmp_path / "Trainer" / "model"
    model_dir = model_uri / "Format-Serving"
    (model_dir / "variables").mkdir(parents=True)
    (model_dir / "saved_model.pb").write_bytes(b"graph")
    (model_dir / "variables" / "variables.index").write_bytes(b"index")
    return str(tmp_path / "serving" / "hubtfx"), str(model_uri)


def baseline_for(serving_dir, output_uri):
    from tfx.types import standard_artifacts
    model = standard_artifacts.Model()
    model.uri = output_uri
    served_baseline.Executor().Do({}, {"model": [model]}, {"serving_dir": serving_dir})
    return model


def test_nothing_served_gives_an_empty_baseline(served, tmp_path):
    serving_dir, _ = served
    model = baseline_for(serving_dir, str(tmp_path / "out"))
    assert model.get_string_custom_property(served_baseline.BASELINE_KEY) == served_baseline.NO_BASELINE
    assert model.uri == str(tmp_path / "out") and not os.path.exists(model.uri)


def test_the_served_version_is_the_pushed_model_while_it_exists(served, tmp_path):
    from hubtfx.components.pusher import serving
    serving_dir, model_uri = served
    pushed = serving.push_model(os.path.join(model_uri, "Format-Serving"), serving_dir)
    model = baseline_for(serving_dir, str(tmp_path / "out"))
    assert model.uri == model_uri
    assert model.get_string_custom_property(served_baseline.BASELINE_KEY) == served_baseline.FROM_PUSHED_MODEL
    assert model.get_string_custom_property(served_baseline.SERVED_VERSION_KEY) == pushed.version


def test_a_served_version_whose_source_is_gone_is_copied(served, tmp_path):
    import shutil
    from hubtfx.components.pusher import serving
    serving_dir, model_uri = served
    serving.push_model(os.path.join(model_uri, "Format-Serving"), serving_dir)
    shutil.rmtree(model_uri)
    model = baseline_for(serving_dir, str(tmp_path / "out"))
    assert model.get_string_custom_property(served_baseline.BASELINE_KEY) == served_baseline.FROM_SERVED_COPY
    copied = tmp_path / "out" / "Format-Serving"
    assert (copied / "saved_model.pb").read_bytes() == b"graph" and not (copied / serving.PUSH_RECORD_FILE).exists()
