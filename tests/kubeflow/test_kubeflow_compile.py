"""`hubtfx compile`: the specs are valid for kfp and Vertex, carry the GPU, the image, the runtime parameters and
the Dataflow settings, and leak nothing of this machine."""
import dataclasses
import json

import pytest
from google.protobuf import json_format

from hubtfx.components.trainer.params import TrainingParams
from hubtfx.kubeflow import runner
from hubtfx.pipeline.config import ConfigError
from hubtfx.pipeline.hub_modules import builder
from hubtfx.pipeline.pipeline import create_components

BEAM_STEPS = ("ImageFolderExampleGen", "StatisticsGen", "Transform", "Evaluator")


def executors(spec):
    return spec["deploymentSpec"]["executors"]


def container_args(spec, step):
    return executors(spec)[f"{step}_executor"]["container"]["args"]


def task_parameter(spec, task, name):
    return spec["root"]["dag"]["tasks"][task]["inputs"]["parameters"][name]


# ------------------------------------------------------------------------------------------- loads everywhere
@pytest.mark.parametrize("which", ["vertex_spec", "kubeflow_spec"])
def test_spec_parses_as_pipeline_spec_and_loads_with_kfp(which, request):
    from kfp import components
    from kfp.client.client import _extract_pipeline_yaml
    from kfp.pipeline_spec import pipeline_spec_pb2
    path, _, spec = request.getfixturevalue(which)
    proto = json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    assert proto.schema_version == "2.1.0" and proto.pipeline_info.name == "hubtfx"
    assert components.load_component_from_file(path).name == "hubtfx"
    if path.endswith(".yaml"):  # what kfp.Client uploads
        assert _extract_pipeline_yaml(path).pipeline_spec.root.dag.tasks["Trainer"]


def test_vertex_spec_builds_a_pipeline_job_offline(vertex_spec):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform
    path, _, _ = vertex_spec
    job = aiplatform.PipelineJob(display_name="hubtfx", template_path=path, project="hubtfx-test",
                                 location="europe-west4", credentials=AnonymousCredentials(),
                                 parameter_values={"data_root": "gs://hubtfx-test/other"})
    runtime = job.runtime_config
    assert runtime.gcs_output_directory == "gs://hubtfx-test/run/pipeline_root/hubtfx"
    assert runtime.parameter_values["data_root"] == "gs://hubtfx-test/other"
    with pytest.raises(ValueError):
        aiplatform.PipelineJob(display_name="hubtfx", template_path=path, project="hubtfx-test",
                               location="europe-west4", credentials=AnonymousCredentials(),
                               parameter_values={"no_such_parameter": "x"})


# ------------------------------------------------------------------------------------------- GPU and image
def test_trainer_gets_the_requested_accelerator(vertex_spec, kubeflow_spec):
    vertex = executors(vertex_spec[2])["Trainer_executor"]["container"]["resources"]
    assert vertex["accelerator"] == {"type": "NVIDIA_L4", "count": "2"}
    assert vertex["cpuLimit"] == 8.0 and vertex["memoryLimit"] == 30.0
    kubeflow = executors(kubeflow_spec[2])["Trainer_executor"]["container"]["resources"]
    assert kubeflow["accelerator"] == {"type": "nvidia.com/gpu", "count": "1"}
    # Only the Trainer asks for a GPU.
    others = [name for name, e in executors(vertex_spec[2]).items()
              if "accelerator" in e.get("container", {}).get("resources", {})]
    assert others == ["Trainer_executor"]


@pytest.mark.parametrize("which", ["vertex_spec", "kubeflow_spec"])
def test_every_step_runs_the_configured_image(which, request, image):
    spec = request.getfixturevalue(which)[2]
    containers = [e["container"] for e in executors(spec).values() if "container" in e]
    assert len(containers) >= 8
    assert {c["image"] for c in containers} == {image}
    # Vertex runs TFX's entrypoint; KFP 2.x runs it through hubtfx's (kubeflow/container_entrypoint.py).
    entrypoint = ("hubtfx.kubeflow.container_entrypoint" if which == "kubeflow_spec"
                  else "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor")
    assert all(c["command"] == ["python", "-m", entrypoint] for c in containers)


def test_module_is_read_from_the_image_with_the_local_builds_identity(vertex_spec, feature_vector_module):
    importer = executors(vertex_spec[2])["hub_module_executor"]["importer"]
    assert importer["artifactUri"]["constant"] == runner.IMAGE_MODULE_DIR
    assert importer["metadata"]["sha256"] == builder.module_sha256(feature_vector_module)
    assert task_parameter(vertex_spec[2], "ImportSchemaGen", "schema_file")["runtimeValue"]["constant"] == \
        runner.IMAGE_SCHEMA_PATH


def test_a_text_pipeline_reads_the_text_pair_and_the_text_schema_from_the_image(text_vertex_spec, module_cache):
    _, text, spec = text_vertex_spec
    encoder = builder.build_module(builder.TEXT_ENCODER, cache_dir=module_cache)
    importer = executors(spec)["hub_module_executor"]["importer"]
    preprocessor = runner.posixpath.join(runner.posixpath.dirname(runner.IMAGE_TEXT_MODULE_DIR),
                                         builder.module_name(builder.TEXT_PREPROCESSOR))
    assert importer["artifactUri"]["constant"] == runner.IMAGE_TEXT_MODULE_DIR
    assert importer["metadata"]["sha256"] == builder.module_sha256(encoder)
    assert importer["metadata"]["preprocessor"] == preprocessor
    transform = json.loads(task_parameter(spec, "Transform", "custom_config")["runtimeValue"]["constant"])
    assert (transform["modality"], transform["preprocessor"], transform["seq_length"]) == ("text", preprocessor, 128)
    assert task_parameter(spec, "ImportSchemaGen", "schema_file")["runtimeValue"]["constant"].endswith(
        "/schemas/text_schema.pbtxt")
    assert runner.find_leaks(text) == []


@pytest.mark.parametrize("data_root", ["gs://hubtfx-test/reviews.csv", "/mnt/data/reviews.TSV"])
def test_a_table_of_texts_is_refused_for_the_cluster(cluster_config, data_root):
    config = dataclasses.replace(cluster_config, data_root=data_root, modality="text")
    with pytest.raises(ConfigError, match="is a table of texts"):
        runner.check_cluster_settings(config, "vertex")


# ------------------------------------------------------------------------------------------- runtime parameters
def test_runtime_parameters_have_defaults_and_feed_the_components(vertex_spec):
    spec = vertex_spec[2]
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert set(parameters) == {"data_root", "training_config", "eval_config", "range_config"}
    assert parameters["data_root"]["defaultValue"] == "gs://hubtfx-test/flowers"
    assert parameters["range_config"]["defaultValue"] == ""  # the latest span
    assert task_parameter(spec, "ImageFolderExampleGen", "input_base") == {"componentInputParameter": "data_root"}
    assert task_parameter(spec, "ImageFolderExampleGen", "range_config") == {"componentInputParameter": "range_config"}
    assert task_parameter(spec, "Trainer", "custom_config") == {"componentInputParameter": "training_config"}
    assert task_parameter(spec, "Evaluator", "eval_config") == {"componentInputParameter": "eval_config"}
    # What the Trainer decodes is what run_fn reads through TrainingParams.
    assert TrainingParams.from_custom_config(json.loads(parameters["training_config"]["defaultValue"])).cv_folds == 7
    thresholds = json.loads(parameters["eval_config"]["defaultValue"])["metrics_specs"][0]["metrics"][0]["per_slice_thresholds"][0]["threshold"]
    assert thresholds["value_threshold"]["lower_bound"] == 0.5


def test_local_pipeline_keeps_constants(cluster_config, cluster_module):
    """The local runner's components get plain values, not runtime parameters."""
    config = dataclasses.replace(cluster_config, data_root="/data/flowers")
    by_id = {c.id: c for c in create_components(config, cluster_module)}
    assert by_id["ImageFolderExampleGen"].exec_properties["input_base"] == "/data/flowers"
    assert json.loads(by_id["Trainer"].exec_properties["custom_config"])["cv_folds"] == config.cv_folds


# ------------------------------------------------------------------------------------------- Beam settings
def test_vertex_beam_steps_run_on_dataflow_from_config(vertex_spec, image):
    for step in BEAM_STEPS:
        args = container_args(vertex_spec[2], step)
        assert "--runner=DataflowRunner" in args, step
        assert {"--project=hubtfx-test", "--region=europe-west4", "--max_num_workers=4",
                "--machine_type=n1-standard-4", "--temp_location=gs://hubtfx-test/run/tmp/dataflow",
                f"--sdk_container_image={image}"} <= set(args), step


def test_kubeflow_beam_steps_run_in_the_pod(kubeflow_spec, image):
    from tfx.utils import dependency_utils
    for step in BEAM_STEPS:
        args = container_args(kubeflow_spec[2], step)
        assert "--direct_running_mode=multi_processing" in args and not any("Dataflow" in a for a in args), step
        # Named, so that Beam never tries to download the Prism runner in the pod.
        assert "--runner=FnApiRunner" in args, step
    beam_args = [a for a in args if a.startswith("--") and ("runner" in a or "direct_" in a or "sdk_" in a)]
    assert dependency_utils.make_beam_dependency_flags(beam_args) == beam_args  # TFX packages nothing of itself
    assert f"--sdk_container_image={image}" in beam_args


# ------------------------------------------------------------------------------------------- leak scan
@pytest.mark.parametrize("which", ["vertex_spec", "kubeflow_spec"])
def test_compiled_spec_leaks_nothing_of_this_machine(which, request, module_cache):
    _, text, _ = request.getfixturevalue(which)
    assert runner.find_leaks(text) == []
    assert module_cache not in text and "/root/" not in text and "/home/" not in text


@pytest.mark.parametrize("planted, found", [
    ('{"uri": "%s/data"}' % runner.local_path_markers()[0], "the local path"),
    ('{"key": "-----BEGIN PRIVATE KEY-----"}', "a private key"),
    ('{"token": "ya29.a0AfH6SMBxxxxxxxxxxxxxxxxxxxxxxx"}', "an OAuth access token"),
])
def test_leak_scan_finds_planted_leaks(planted, found):
    assert any(leak.startswith(found) for leak in runner.find_leaks(planted))


def test_leak_scan_ignores_cluster_paths_that_merely_contain_local_names():
    assert runner.find_leaks('{"t": "--temp_location=gs://b/tmp/dataflow", "r": "gs://b/root/x"}') == []


def test_compile_refuses_a_spec_with_a_home_folder(cluster_config, tmp_path, monkeypatch, feature_vector_module):
    monkeypatch.setenv("HOME", "/srv/someone")
    config = dataclasses.replace(cluster_config, hub_handle="", data_root="/srv/someone/flowers")
    with pytest.raises(ConfigError, match="/srv/someone"):
        runner.compile_to_file(*runner.prepare(config, "kubeflow"), "kubeflow", str(tmp_path / "p.yaml"))
    assert not (tmp_path / "p.yaml").exists()


# ------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("target, gpu, message", [
    ("vertex", "NVIDIA_TESLA_T5", "Unknown Vertex AI GPU type 'NVIDIA_TESLA_T5'"),
    ("vertex", "nvidia.com/gpu", "Kubernetes resource name"),
    ("kubeflow", "NVIDIA_TESLA_T4", "Vertex AI accelerator name"),
    ("kubeflow", "gpu", "Unknown Kubeflow GPU resource 'gpu'"),
])
def test_unknown_accelerator_is_a_clear_error(cluster_config, target, gpu, message):
    with pytest.raises(ConfigError, match=message):
        runner.cluster_config(dataclasses.replace(cluster_config, trainer_gpu_type=gpu), target)


def test_known_accelerators_come_from_the_vertex_sdk():
    assert {"NVIDIA_TESLA_T4", "NVIDIA_L4", "NVIDIA_TESLA_V100", "NVIDIA_TESLA_A100"} <= set(runner.vertex_gpu_types())


def test_cpu_only_trainer_has_no_accelerator(cluster_config):
    resources = runner.trainer_resources(dataclasses.replace(cluster_config, trainer_gpu_count=0), "vertex")
    assert not resources.HasField("accelerator") and resources.cpu_limit == 8.0


@pytest.mark.parametrize("change, message", [
    ({"image": ""}, "Set --image"),
    ({"data_root": ""}, "Set --data-root"),
    ({"gcp_project": ""}, "Set --gcp-project"),
    ({"output_dir": "hubtfx_output"}, "output_dir must be a gs:// folder"),
    ({"data_root": "/mnt/data"}, "data_root must be a gs:// folder"),
    ({"use_spans": True, "span_window": 3}, "span_window > 1 cannot run"),
])
def test_vertex_settings_are_checked_before_compiling(cluster_config, change, message):
    with pytest.raises(ConfigError, match=message):
        runner.check_cluster_settings(dataclasses.replace(cluster_config, **change), "vertex")


def test_kubeflow_accepts_mounted_volumes_but_not_relative_paths(cluster_config):
    runner.check_cluster_settings(dataclasses.replace(cluster_config, data_root="/mnt/data"), "kubeflow")
    with pytest.raises(ConfigError, match="absolute path"):
        runner.check_cluster_settings(dataclasses.replace(cluster_config, data_root="data"), "kubeflow")


@pytest.mark.parametrize("output_dir", ["/mnt/pipelines", "hubtfx_output"])
def test_kubeflow_pipeline_root_must_be_object_storage(cluster_config, output_dir):
    """KFP's launcher (LocalPathForURI) stages artifacts only through gs://, s3:// and minio:// roots."""
    with pytest.raises(ConfigError, match="gs://, s3://, minio:// folder"):
        runner.check_cluster_settings(dataclasses.replace(cluster_config, output_dir=output_dir), "kubeflow")
    runner.check_cluster_settings(dataclasses.replace(cluster_config, output_dir="minio://mlpipeline/hubtfx"),
                                  "kubeflow")


@pytest.mark.parametrize("handle", ["/data/modules/my_module", "https://tfhub.dev/google/some/module/1"])
def test_a_module_the_steps_cannot_read_is_refused(cluster_config, handle):
    with pytest.raises(ConfigError, match="Copy the module folder to gs://"):
        runner.resolve_module_for_cluster(dataclasses.replace(cluster_config, hub_handle=handle))
