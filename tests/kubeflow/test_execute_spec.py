"""`hubtfx execute-spec`'s launcher behaviour on a small hand-written spec whose tasks are plain Python scripts (no
TensorFlow import, so each task takes well under a second): what a task receives per backend, how outputs are
recorded, parameters, caching, importers, resolvers and failures. The whole pipeline runs in
test_execute_spec_e2e.py."""
import json
import os
import textwrap

import pytest
from google.protobuf import json_format

from hubtfx.kubeflow import execute_spec, local_metadata

EXAMPLES_SCHEMA = "title: tfx.Examples\ntype: object\nproperties:\n  span:\n    type: integer\n"
MODEL_SCHEMA = "title: tfx.Model\ntype: object\n"

TASK_SCRIPT = textwrap.dedent('''
    """A container task: writes each output artifact and the executor output; records what it was given."""
    import json, os, sys
    args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
    executor_input = json.loads(args["--executor_input"])
    output_file = executor_input["outputs"]["outputFile"]
    os.makedirs(os.path.dirname(output_file), exist_ok=True)
    with open(os.path.join(os.path.dirname(output_file), "seen.json"), "w") as f:
        json.dump({"input": executor_input, "argv": sys.argv[1:]}, f)
    if args.get("--fail") == "yes":
        sys.exit(3)
    result = {"artifacts": {}}
    for key, artifacts in executor_input["outputs"].get("artifacts", {}).items():
        uri = artifacts["artifacts"][0]["uri"]
        if args.get("--move") == "yes":
            uri += "-moved"
        os.makedirs(uri, exist_ok=True)
        with open(os.path.join(uri, "data.txt"), "w") as f:
            f.write(args.get("--text", ""))
        result["artifacts"][key] = {"artifacts": [{"uri": uri, "metadata": {
            "count": 3, "flag": True, "tags": ["a", "b"], "note": args.get("--text", "")}}]}
    with open(output_file, "w") as f:
        json.dump(result, f)
''')


def _container(script, *extra):
    return {"container": {"image": "toy:1", "command": ["python", script],
                          "args": ["--executor_input", "{{$}}", *extra]}}


def toy_spec(root, script, consumer_args=(), with_resolver=False, with_importer=False, producer_cache=True):
    tasks = {
        "producer": {"taskInfo": {"name": "producer"}, "componentRef": {"name": "comp-producer"},
                     "cachingOptions": {"enableCache": producer_cache},
                     "inputs": {"parameters": {"text": {"componentInputParameter": "text"},
                                               "count": {"componentInputParameter": "count"}}}},
        "consumer": {"taskInfo": {"name": "consumer"}, "componentRef": {"name": "comp-consumer"},
                     "cachingOptions": {"enableCache": True}, "dependentTasks": ["producer"],
                     "inputs": {"artifacts": {"data": {"taskOutputArtifact": {
                         "producerTask": "producer", "outputArtifactKey": "data"}}}}},
    }
    components = {
        "comp-producer": {"executorLabel": "exec-producer",
                          "inputDefinitions": {"parameters": {"text": {"parameterType": "STRING"},
                                                              "count": {"parameterType": "NUMBER_INTEGER"},
                                                              "unset": {"parameterType": "STRING",
                                                                        "defaultValue": "component default",
                                                                        "isOptional": True}}},
                          "outputDefinitions": {"artifacts": {"data": {"artifactType": {
                              "instanceSchema": EXAMPLES_SCHEMA}}}}},
        "comp-consumer": {"executorLabel": "exec-consumer",
                          "inputDefinitions": {"artifacts": {"data": {"artifactType": {
                              "instanceSchema": EXAMPLES_SCHEMA}}}},
                          "outputDefinitions": {"artifacts": {"result": {"artifactType": {
                              "instanceSchema": MODEL_SCHEMA}}}}},
    }
    executors = {
        "exec-producer": _container(script, "--text", "{{$.inputs.parameters['text']}}",
                                    "--count", "{{$.inputs.parameters['count']}}",
                                    "--unset", "{{$.inputs.parameters['unset']}}"),
        "exec-consumer": _container(script, *consumer_args),
    }
    if with_resolver:
        tasks["latest"] = {"taskInfo": {"name": "latest"}, "componentRef": {"name": "comp-latest"}}
        components["comp-latest"] = {"executorLabel": "exec-latest", "outputDefinitions": {"artifacts": {
            "data": {"artifactType": {"instanceSchema": EXAMPLES_SCHEMA}}}}}
        executors["exec-latest"] = {"resolver": {"outputArtifactQueries": {"data": {
            "filter": 'schema_title="tfx.Examples" AND state=LIVE AND metadata.count.number_value=3'}}}}
    if with_importer:
        tasks["imported"] = {"taskInfo": {"name": "imported"}, "componentRef": {"name": "comp-imported"}}
        components["comp-imported"] = {"executorLabel": "exec-imported", "outputDefinitions": {"artifacts": {
            "result": {"artifactType": {"instanceSchema": MODEL_SCHEMA}}}}}
        executors["exec-imported"] = {"importer": {"artifactUri": {"constant": "/somewhere/module"},
                                                   "typeSchema": {"instanceSchema": MODEL_SCHEMA},
                                                   "metadata": {"sha256": "abc"}}}
    return {
        "pipelineInfo": {"name": "toy"}, "schemaVersion": "2.1.0", "sdkVersion": "test",
        "defaultPipelineRoot": str(root),
        "root": {"inputDefinitions": {"parameters": {
            "text": {"parameterType": "STRING", "defaultValue": "hello", "isOptional": True},
            "count": {"parameterType": "NUMBER_INTEGER", "defaultValue": 1, "isOptional": True}}},
            "dag": {"tasks": tasks}},
        "components": components,
        "deploymentSpec": {"executors": executors},
    }


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "task.py"
    path.write_text(TASK_SCRIPT)
    return str(path)


def write_spec(tmp_path, spec, name="spec.json"):
    path = tmp_path / name
    path.write_text(json.dumps(spec))
    return str(path)


def run(spec_path, **options):
    lines = []
    result = execute_spec.execute(spec_path, execute_spec.Options(log=lines.append, **options))
    return result, lines


def seen(result, task):
    with open(os.path.join(result.pipeline_root, result.run_id, task, "seen.json")) as f:
        return json.load(f)


# ------------------------------------------------------------------------------------------------ what tasks get
def test_kubeflow_hands_upstream_artifacts_over_untyped_named_by_id_with_kfp_metadata(tmp_path, script):
    result, _ = run(write_spec(tmp_path, toy_spec(tmp_path / "root", script)), backend="kubeflow")
    assert result.succeeded, result.tasks
    assert list(result.tasks) == ["producer", "consumer"]  # the run's table lists tasks in the order they ended
    [artifact] = seen(result, "consumer")["input"]["inputs"]["artifacts"]["data"]["artifacts"]
    assert artifact["type"] == {"instanceSchema": ""}  # GetOutputArtifactsByExecutionId: Schema ""
    assert artifact["name"] == str(result.tasks["producer"].outputs["data"][0])
    metadata = artifact["metadata"]
    # KFP's converter: numbers -> double, bool -> int, list -> {"list": ...}; display_name is the output key.
    assert metadata["count"] == 3 and metadata["flag"] == 1 and metadata["tags"] == {"list": ["a", "b"]}
    assert metadata["display_name"] == "data" and metadata["note"] == "hello"


def test_vertex_types_and_names_artifacts(tmp_path, script):
    result, _ = run(write_spec(tmp_path, toy_spec(tmp_path / "root", script)), backend="vertex")
    [artifact] = seen(result, "consumer")["input"]["inputs"]["artifacts"]["data"]["artifacts"]
    assert artifact["type"] == {"instanceSchema": EXAMPLES_SCHEMA}
    assert artifact["name"].startswith(local_metadata.VERTEX_ARTIFACT_PREFIX)


def test_parameters_defaults_overrides_and_component_defaults(tmp_path, script):
    spec = write_spec(tmp_path, toy_spec(tmp_path / "root", script))
    result, _ = run(spec, params=["text=bye now", "count=7"])
    argv = seen(result, "producer")["argv"]
    assert argv[argv.index("--text") + 1] == "bye now" and argv[argv.index("--count") + 1] == "7"
    assert argv[argv.index("--unset") + 1] == "component default"  # the launcher's addDefaultParams
    values = seen(result, "producer")["input"]["inputs"]["parameterValues"]
    assert values["count"] == 7 and values["text"] == "bye now"
    with pytest.raises(execute_spec.SpecError, match="no such parameter; it has count, text"):
        run(spec, params=["colour=red"])
    with pytest.raises(execute_spec.SpecError, match="'seven' is not a NUMBER_INTEGER"):
        run(spec, params=["count=seven"])


def test_output_uri_and_metadata_come_from_the_executor_output(tmp_path, script):
    spec = toy_spec(tmp_path / "root", script)
    spec["deploymentSpec"]["executors"]["exec-producer"]["container"]["args"] += ["--move", "yes"]
    result, _ = run(write_spec(tmp_path, spec))
    [artifact] = seen(result, "consumer")["input"]["inputs"]["artifacts"]["data"]["artifacts"]
    assert artifact["uri"].endswith("/producer/data-moved")  # mergeRuntimeArtifacts takes the executor's URI


# ------------------------------------------------------------------------------------------------ caching
def test_second_run_is_served_from_cache_unless_an_input_changes(tmp_path, script):
    spec = write_spec(tmp_path, toy_spec(tmp_path / "root", script))
    first, _ = run(spec)
    second, _ = run(spec)
    assert {t.state for t in second.tasks.values()} == {execute_spec.CACHED}
    assert second.tasks["producer"].outputs == first.tasks["producer"].outputs
    third, _ = run(spec, params=["text=changed"])
    assert third.tasks["producer"].state == execute_spec.COMPLETE
    assert third.tasks["consumer"].state == execute_spec.COMPLETE  # its input artifact is a new one
    fourth, _ = run(spec, enable_cache=False)
    assert {t.state for t in fourth.tasks.values()} == {execute_spec.COMPLETE}


def test_a_task_without_caching_always_runs(tmp_path, script):
    spec = write_spec(tmp_path, toy_spec(tmp_path / "root", script, producer_cache=False))
    run(spec)
    second, _ = run(spec)
    assert second.tasks["producer"].state == execute_spec.COMPLETE


# ------------------------------------------------------------------------------------------------ failures
def test_a_failed_task_stops_its_downstream_tasks(tmp_path, script):
    result, lines = run(write_spec(tmp_path, toy_spec(tmp_path / "root", script, consumer_args=["--fail", "yes"])))
    assert not result.succeeded
    assert result.tasks["consumer"].state == execute_spec.FAILED
    assert "exited with 3" in result.tasks["consumer"].error
    assert any("FAILED" in line for line in lines)


def test_kubeflow_refuses_a_spec_with_resolvers_before_running_anything(tmp_path, script):
    spec = write_spec(tmp_path, toy_spec(tmp_path / "root", script, with_resolver=True))
    with pytest.raises(execute_spec.SpecError, match="resolver executors not implemented"):
        run(spec, backend="kubeflow")
    assert not (tmp_path / "root").exists()


def test_backend_is_inferred_from_what_the_spec_uses(tmp_path, script):
    assert execute_spec.infer_backend(execute_spec.load_spec(
        write_spec(tmp_path, toy_spec(tmp_path / "r", script), "a.json"))) == "kubeflow"
    assert execute_spec.infer_backend(execute_spec.load_spec(
        write_spec(tmp_path, toy_spec(tmp_path / "r", script, with_resolver=True), "b.json"))) == "vertex"


# ------------------------------------------------------------------------------------------------ importer, resolver
def test_importer_reuses_the_same_artifact_across_runs(tmp_path, script):
    spec = write_spec(tmp_path, toy_spec(tmp_path / "root", script, with_importer=True))
    first, _ = run(spec, enable_cache=False)
    second, _ = run(spec, enable_cache=False)
    assert first.tasks["imported"].outputs == second.tasks["imported"].outputs
    store = local_metadata.LocalMetadata(first.metadata_path, "toy")
    [artifact] = store.artifacts(first.tasks["imported"].outputs["result"])
    assert artifact.uri == "/somewhere/module" and artifact.custom_properties["sha256"].string_value == "abc"


def test_resolver_finds_the_newest_matching_artifact_of_earlier_runs(tmp_path, script):
    spec = write_spec(tmp_path, toy_spec(tmp_path / "root", script, with_resolver=True))
    first, _ = run(spec, backend="vertex")
    assert first.tasks["latest"].outputs == {"data": []}  # nothing recorded yet
    second, _ = run(spec, backend="vertex", params=["text=second"])
    assert second.tasks["latest"].outputs["data"] == first.tasks["producer"].outputs["data"]


@pytest.mark.parametrize("vertex_filter, mlmd_filter", [
    ('schema_title="tfx.ModelBlessing" AND state=LIVE AND metadata.blessed.number_value=1',
     "type = 'tfx.ModelBlessing' AND state = LIVE AND custom_properties.blessed.double_value = 1"),
    ('schema_title="tfx.Model" AND state=LIVE AND name="' + local_metadata.VERTEX_ARTIFACT_PREFIX + '42"',
     "type = 'tfx.Model' AND state = LIVE AND id = 42"),
    ('schema_title="tfx.Model" AND state=LIVE AND name="projects/elsewhere/artifacts/42"', None),
])
def test_resolver_filters_of_tfx_become_ml_metadata_queries(tmp_path, script, vertex_filter, mlmd_filter):
    execution = execute_spec.SpecExecution(
        execute_spec.load_spec(write_spec(tmp_path, toy_spec(tmp_path / "root", script, with_resolver=True))),
        execute_spec.Options(log=lambda line: None))
    assert execution._resolver_filter(vertex_filter, {}) == mlmd_filter  # pylint: disable=protected-access
    with pytest.raises(execute_spec.SpecError, match="not one TFX's KubeflowV2DagRunner writes"):
        execution._resolver_filter('display_name="x"', {})  # pylint: disable=protected-access


def test_a_placeholder_on_an_empty_input_matches_nothing(tmp_path, script):
    execution = execute_spec.SpecExecution(
        execute_spec.load_spec(write_spec(tmp_path, toy_spec(tmp_path / "root", script, with_resolver=True))),
        execute_spec.Options(log=lambda line: None))
    query = "name=\"{{$.inputs.artifacts['input'].metadata['current_model_id']}}\""
    assert execution._resolver_filter(query, {"input": []}) is None  # pylint: disable=protected-access


# ------------------------------------------------------------------------------------------------ beam arguments
def test_dataflow_runs_on_the_local_fnapi_runner_and_beam_mode_applies(tmp_path, script):
    execution = execute_spec.SpecExecution(
        execute_spec.load_spec(write_spec(tmp_path, toy_spec(tmp_path / "root", script))),
        execute_spec.Options(log=lambda line: None))
    dataflow = ["python", "-m", "x", "--runner=DataflowRunner", "--project=p", "--region=r",
                "--temp_location=gs://b/t", "--sdk_container_image=img", "--experiments=use_runner_v2"]
    assert execution._beam_args(dataflow) == [  # pylint: disable=protected-access
        "python", "-m", "x", "--sdk_container_image=img", "--runner=FnApiRunner",
        "--direct_running_mode=multi_processing", "--direct_num_workers=0"]
    kubeflow = ["python", "-m", "x", "--runner=FnApiRunner", "--direct_running_mode=multi_processing",
                "--direct_num_workers=0", "--sdk_container_image=img"]
    assert execution._beam_args(kubeflow) == kubeflow  # pylint: disable=protected-access
    execution.options.beam_mode = "in_memory"
    assert execution._beam_args(kubeflow)[-3:] == [  # pylint: disable=protected-access
        "--runner=FnApiRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1"]
    assert execution._beam_args(["python", "-m", "y"]) == ["python", "-m", "y"]  # pylint: disable=protected-access


def test_yaml_and_pipeline_job_files_load(tmp_path, script):
    import yaml
    spec = toy_spec(tmp_path / "root", script)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert execute_spec.load_spec(str(path)).spec.pipeline_info.name == "toy"
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"displayName": "x", "pipelineSpec": spec}))
    loaded = execute_spec.load_spec(str(job))
    assert json_format.MessageToDict(loaded.deployment)["executors"]["exec-producer"]["container"]["image"] == "toy:1"


@pytest.mark.parametrize("backend, state", [("kubeflow", execute_spec.FAILED), ("vertex", execute_spec.COMPLETE)])
def test_one_artifact_under_two_input_names(tmp_path, script, backend, state):
    """KFP's CreateExecution posts one INPUT event per input name; ML Metadata refuses the repeated artifact."""
    spec = toy_spec(tmp_path / "root", script)
    spec["root"]["dag"]["tasks"]["consumer"]["inputs"]["artifacts"]["again"] = {"taskOutputArtifact": {
        "producerTask": "producer", "outputArtifactKey": "data"}}
    spec["components"]["comp-consumer"]["inputDefinitions"]["artifacts"]["again"] = {
        "artifactType": {"instanceSchema": EXAMPLES_SCHEMA}}
    result, _ = run(write_spec(tmp_path, spec), backend=backend)
    assert result.tasks["consumer"].state == state
    if state == execute_spec.FAILED:
        assert "Given event already exists" in result.tasks["consumer"].error
        assert not os.path.exists(os.path.join(result.tasks["consumer"].work_dir, "executor_input.json"))
