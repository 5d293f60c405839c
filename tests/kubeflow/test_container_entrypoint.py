"""The Kubeflow target's container entrypoint: each fix against the open-source KFP backend behaviour it answers,
reproduced here with TFX's own code and the launcher's rules (kubeflow/container_entrypoint.py)."""
import json
import os
import sys
import textwrap

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from hubtfx.components.common import artifact_files
from hubtfx.kubeflow import container_entrypoint, execute_spec, local_metadata

RUN_EXECUTOR = "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"


# ------------------------------------------------------------------------------------------------ 1. input types
def kfp_examples_input(tmp_path):
    """An ExecutorInput whose `examples` input is an Examples artifact as the KFP driver hands it over, and the
    StatisticsGen inputs spec TFX compiles into the container's arguments."""
    from tfx.orchestration.kubeflow.v2 import compiler_utils
    from tfx.types import standard_artifacts
    examples_type = pipeline_spec_pb2.ArtifactTypeSchema(
        instance_schema=compiler_utils.get_artifact_schema(standard_artifacts.Examples))
    store = local_metadata.LocalMetadata(str(tmp_path / "md.sqlite"), "p")
    produced = pipeline_spec_pb2.RuntimeArtifact(uri=str(tmp_path / "examples"))
    produced.metadata.fields["split_names"].string_value = '["train", "eval"]'
    produced.metadata.fields["span"].number_value = 0
    _, ids = store.record_execution("system.ContainerExecution", "ExampleGen", store.run_context("r"), 3, {},
                                    {"examples": [store.new_artifact(produced, "examples", examples_type)]})
    [artifact] = store.artifacts(ids["examples"])
    executor_input = pipeline_spec_pb2.ExecutorInput()
    executor_input.inputs.artifacts["examples"].artifacts.add().CopyFrom(
        store.runtime_artifact(artifact, "kubeflow"))
    inputs_spec = pipeline_spec_pb2.ComponentInputsSpec()
    inputs_spec.artifacts["examples"].artifact_type.CopyFrom(examples_type)
    return executor_input, inputs_spec


def test_untyped_input_artifacts_break_tfx_and_get_their_declared_type(tmp_path):
    """tensorflow/tfx#7768: TFX's entrypoint cannot read the artifact KFP hands over; typed, it can."""
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils
    executor_input, inputs_spec = kfp_examples_input(tmp_path)
    assert json_format.MessageToDict(executor_input.inputs.artifacts["examples"].artifacts[0].type) == {
        "instanceSchema": ""}
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'get'"):
        kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict(executor_input.inputs.artifacts, {})

    assert container_entrypoint.type_input_artifacts(executor_input, inputs_spec) == ["examples"]
    [examples] = kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict(executor_input.inputs.artifacts, {})["examples"]
    assert type(examples).__name__ == "Examples"
    assert examples.split_names == '["train", "eval"]' and examples.span == 0
    assert container_entrypoint.type_input_artifacts(executor_input, inputs_spec) == []  # typed ones stay


def test_an_untyped_input_without_an_inputs_spec_is_a_clear_error(tmp_path):
    executor_input, _ = kfp_examples_input(tmp_path)
    with pytest.raises(ValueError, match="no --json_serialized_inputs_spec_args"):
        container_entrypoint.type_input_artifacts(executor_input, None)


# ------------------------------------------------------------------------------------------------ 2. ExampleGen driver
@pytest.fixture(scope="module")
def span_specs(tmp_path_factory, tiny_module):
    """A Kubeflow dry-run spec over span-<N> data, and the same spec with TFX's plain entrypoint (no driver)."""
    from hubtfx.kubeflow import kfp_target, runner
    from hubtfx.pipeline.datasets import sample_data
    from hubtfx.pipeline.config import PipelineConfig
    work = tmp_path_factory.mktemp("spans")
    data = str(work / "data")
    sample_data.generate_dataset(data, images_per_class=3, seed=2, spans=2)
    config = PipelineConfig(data_root=data, use_spans=True, output_dir=str(work / "out"), hub_handle=tiny_module)
    adapted = runner.compile_to_file(*runner.prepare(config, "kubeflow", allow_local_paths=True), "kubeflow",
                                     str(work / "adapted.json"), allow_local_paths=True)
    executors = adapted["deploymentSpec"]["executors"]
    container = executors["ImageFolderExampleGen_executor"]["container"]
    container["command"] = kfp_target.TFX_ENTRYPOINT
    container["args"].remove(container_entrypoint.RUN_EXAMPLE_GEN_DRIVER)
    with open(work / "plain.json", "w", encoding="utf-8") as f:
        json.dump(adapted, f)
    return str(work / "adapted.json"), str(work / "plain.json"), data


def run_example_gen(spec_path, run_id):
    execution = execute_spec.SpecExecution(execute_spec.load_spec(spec_path), execute_spec.Options(
        backend="kubeflow", run_id=run_id, beam_mode="in_memory", log=lambda line: None))
    return execution, execution._run_task("ImageFolderExampleGen", "container")  # pylint: disable=protected-access


def test_without_precachecheck_example_gen_needs_its_driver_in_its_own_container(span_specs):
    adapted, plain, data = span_specs
    # KFP 2.x does not run lifecycle.preCacheCheck: TFX's entrypoint gets the unresolved 'span-{SPAN}/*/*'.
    _, failed = run_example_gen(plain, "plain")
    assert failed.state == execute_spec.FAILED and "span-{SPAN}" in failed.error
    execution, result = run_example_gen(adapted, "adapted")
    assert result.state == execute_spec.COMPLETE, result.error
    [examples] = execution.metadata.artifacts(result.outputs["examples"])
    # The latest span, as TFX's driver records it: a custom property named like the Examples' own `span`
    # property, which TFX's entrypoint hands on as "custom:span".
    assert examples.custom_properties["custom:span"].double_value == 2
    assert examples.custom_properties["input_fingerprint"].string_value
    with open(os.path.join(examples.uri, artifact_files.INGESTION_REPORT_FILE), encoding="utf-8") as f:
        report = json.load(f)
    assert report["span"] == 2 and report["input_base"] == data


# ------------------------------------------------------------------------------------------------ 3. GCS markers
class FakeBlob:
    def __init__(self, bucket, name, data):
        self.bucket, self.name, self.data = bucket, name, data
        self.size = len(data)

    def delete(self):
        del self.bucket.objects[self.name]


class FakeBucket:
    """An object store listing as GCS does: every object, folder markers (`<folder>/`, 0 bytes) included."""

    def __init__(self, objects):
        self.objects = dict(objects)

    def list_blobs(self, bucket_name, prefix=""):
        return [FakeBlob(self, name, data) for name, data in sorted(self.objects.items()) if name.startswith(prefix)]


def go_mkdir_all(path):
    """Go's os.MkdirAll: an existing non-folder on the way is ENOTDIR ("not a directory")."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(f"mkdir {path}: not a directory")
    parent = os.path.dirname(path)
    if parent != path:
        go_mkdir_all(parent)
    os.makedirs(path, exist_ok=True)


def kfp_download_blob(bucket, local_dir, blob_dir):
    """KFP's objectstore.DownloadBlob: every object under the prefix becomes a file at its relative path."""
    for blob in bucket.list_blobs("b", prefix=blob_dir):
        local_path = os.path.normpath(os.path.join(local_dir, os.path.relpath(blob.name, blob_dir)))  # filepath.Join
        go_mkdir_all(os.path.dirname(local_path))
        with open(local_path, "wb") as f:  # os.Create
            f.write(blob.data)


def test_gcs_folder_markers_break_the_launchers_download_and_are_deleted(tmp_path):
    # What TensorFlow's GCS file system leaves after saving a model into gs://b/root/Trainer/model.
    objects = {"root/Trainer/model/": b"", "root/Trainer/model/Format-Serving/": b"",
               "root/Trainer/model/Format-Serving/saved_model.pb": b"graph",
               "root/Trainer/model/Format-Serving/variables/": b"",
               "root/Trainer/model/Format-Serving/variables/variables.index": b"index",
               "root/Other/": b""}
    bucket = FakeBucket(objects)
    with pytest.raises(NotADirectoryError):
        kfp_download_blob(bucket, str(tmp_path / "before"), "root/Trainer/model")

    deleted = container_entrypoint.delete_folder_markers(["gs://b/root/Trainer/model", "/local/path"],
                                                         client_factory=lambda: bucket)
    assert sorted(deleted) == ["gs://b/root/Trainer/model/", "gs://b/root/Trainer/model/Format-Serving/",
                               "gs://b/root/Trainer/model/Format-Serving/variables/"]
    kfp_download_blob(bucket, str(tmp_path / "after"), "root/Trainer/model")
    assert (tmp_path / "after" / "Format-Serving" / "variables" / "variables.index").read_bytes() == b"index"
    assert "root/Other/" in bucket.objects  # outside the artifacts


def test_no_gcs_client_is_needed_for_local_or_other_uris():
    assert container_entrypoint.delete_folder_markers(["/tmp/x", "s3://b/x"], client_factory=None) == []


# ------------------------------------------------------------------------------------------------ 4. forced exit
EXECUTOR_MODULE = textwrap.dedent('''
    """An executor that finishes its work, then aborts at interpreter shutdown, as C++ destructors have been
    reported to do after TFX executors on KFP ("pure virtual method called")."""
    import atexit, os
    from tfx.dsl.components.base import base_executor

    class AbortAtExit(base_executor.BaseExecutor):
        def Do(self, input_dict, output_dict, exec_properties):
            atexit.register(os.abort)
''')


def test_a_teardown_abort_fails_the_task_under_tfx_entrypoint_but_not_ours(tmp_path):
    (tmp_path / "abort_at_exit.py").write_text(EXECUTOR_MODULE)
    args = ["--executor_class_path", "abort_at_exit.AbortAtExit", "--json_serialized_invocation_args", "{{$}}",
            "--json_serialized_inputs_spec_args", "{}"]
    tasks, components, executors = {}, {}, {}
    for name, module in (("tfx", RUN_EXECUTOR), ("hubtfx", "hubtfx.kubeflow.container_entrypoint")):
        tasks[name] = {"taskInfo": {"name": name}, "componentRef": {"name": f"comp-{name}"}}
        components[f"comp-{name}"] = {"executorLabel": f"exec-{name}"}
        executors[f"exec-{name}"] = {"container": {"image": "x", "command": ["python", "-m", module], "args": args}}
    spec = {"pipelineInfo": {"name": "exit"}, "schemaVersion": "2.1.0", "sdkVersion": "test",
            "defaultPipelineRoot": str(tmp_path / "root"), "components": components,
            "root": {"dag": {"tasks": tasks}}, "deploymentSpec": {"executors": executors}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    result = execute_spec.execute(str(tmp_path / "spec.json"), execute_spec.Options(
        backend="kubeflow", env=env, parallelism=2, log=lambda line: None))
    tfx_task, ours = result.tasks["tfx"], result.tasks["hubtfx"]
    # Both executors finished and wrote their output; the launcher still fails a non-zero exit.
    for task in (tfx_task, ours):
        assert os.path.exists(os.path.join(task.work_dir, "executor_output.json"))
    assert tfx_task.state == execute_spec.FAILED and "exited with -6" in tfx_task.error
    assert ours.state == execute_spec.COMPLETE, ours.error
