"""The Kubeflow target's container entrypoint: TFX's own v2 entrypoint, with what open-source KFP 2.x needs.

    python -m hubtfx.kubeflow.container_entrypoint [--run_example_gen_driver] <kubeflow_v2_run_executor's args>

It parses TFX's arguments with TFX's own parser, applies the fixes below to the ExecutorInput proto and runs
TFX's `_run_executor` on it; nothing in site-packages is patched. The fixes, each from a public report and each
reproduced by a test in tests/kubeflow/test_container_entrypoint.py:

1. Input artifact types (tensorflow/tfx#7768; sky-uk/kfp-operator's "input artifact enrichment" patch). The KFP
   driver hands a task its upstream artifacts with an EMPTY instance schema (metadata/client.go:
   GetOutputArtifactsByExecutionId records `Schema: ""`), so TFX's `_retrieve_class_path` fails on
   `yaml.safe_load("")` ('NoneType' object has no attribute 'get'). The component's declared input types
   (--json_serialized_inputs_spec_args, which TFX compiles into every container) are copied into such
   artifacts. sky-uk's other type patches (system.* titles, guessing Examples from metadata keys) are not
   needed: every artifact type in hubtfx's specs is a `tfx.*` instance schema TFX knows (tested).
2. ExampleGen's driver. KFP 2.x does not run a container's `lifecycle.preCacheCheck`, the hook in which Vertex AI
   runs TFX's ExampleGen driver (span, version, input fingerprint, resolved input pattern). With
   --run_example_gen_driver the driver runs here, in the executor's own pod, with the listing input processor
   hubtfx's local runs use, and writes its result where TFX's executor reads it (the executor output file).
3. GCS folder markers (sky-uk/kfp-operator "directory marker" patch). TensorFlow's GCS file system writes a
   zero-byte object `<folder>/` for every folder it creates; KFP's launcher downloads each input artifact
   object by object and turns such a marker into a FILE, after which the folder's real files fail with "not a
   directory". After the executor, the markers under the gs:// output artifacts are deleted. (sky-uk's other
   fix for this, dropping TFX's Format-Serving folder from every model, changes the model layout the Evaluator,
   Pusher and Vertex rely on; deleting the markers makes it unnecessary.)
4. Forced exit (sky-uk/kfp-operator PR 1286). After the executor output is written, the process exits with
   os._exit(0), so an abort in the C++ destructors at interpreter shutdown ("pure virtual method called") cannot
   turn a finished task into a failed one: the launcher fails a task on any non-zero exit code.
"""
import argparse
import logging as std_logging
import os
import sys
from typing import Callable, List, Optional, Tuple

from absl import logging
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

RUN_EXAMPLE_GEN_DRIVER = "--run_example_gen_driver"


# ------------------------------------------------------------------------------------------------ fix 1
def untyped_artifact_names(executor_input: pipeline_spec_pb2.ExecutorInput) -> List[str]:
    """Input keys with an artifact whose type names no title: the KFP driver's empty instance schema."""
    import yaml  # pylint: disable=import-outside-toplevel
    untyped = []
    for key, artifacts in executor_input.inputs.artifacts.items():
        for artifact in artifacts.artifacts:
            kind = artifact.type.WhichOneof("kind")
            if kind is None or (kind == "instance_schema" and
                                not (yaml.safe_load(artifact.type.instance_schema) or {}).get("title")):
                untyped.append(key)
                break
    return untyped


def type_input_artifacts(executor_input: pipeline_spec_pb2.ExecutorInput,
                         inputs_spec: Optional[pipeline_spec_pb2.ComponentInputsSpec]) -> List[str]:
    """Gives untyped input artifacts their component's declared type; returns the keys it typed."""
    keys = untyped_artifact_names(executor_input)
    if keys and inputs_spec is None:
        raise ValueError(f"input artifacts {keys} arrived without a type and the container has no "
                         "--json_serialized_inputs_spec_args to take it from")
    for key in keys:
        if key not in inputs_spec.artifacts:
            raise ValueError(f"input artifact {key!r} arrived without a type and the component declares no "
                             "input of that name")
        for artifact in executor_input.inputs.artifacts[key].artifacts:
            artifact.type.CopyFrom(inputs_spec.artifacts[key].artifact_type)
    return keys


# ------------------------------------------------------------------------------------------------ fix 2
def run_example_gen_driver(executor_input: pipeline_spec_pb2.ExecutorInput,
                           inputs_spec: Optional[pipeline_spec_pb2.ComponentInputsSpec]) -> None:
    """What TFX's file_based_example_gen.driver does in Vertex's preCacheCheck, with hubtfx's listing input
    processor: resolves span, version, fingerprint and the input pattern, and writes them (and the Examples
    artifact's properties) to the executor output file, from which TFX's entrypoint reads them."""
    # pylint: disable=import-outside-toplevel
    from tfx.components.example_gen import driver, utils
    from tfx.dsl.io import fileio
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as entrypoint_utils
    from tfx.proto import example_gen_pb2, range_config_pb2
    from tfx.types import artifact_utils, standard_component_specs as keys
    from tfx.utils import proto_utils

    from hubtfx.components.example_gen import layout

    exec_properties = entrypoint_utils.parse_execution_properties(
        executor_input.inputs.parameter_values, executor_input.inputs.parameters, inputs_spec)
    name_from_id = {}
    outputs = entrypoint_utils.parse_raw_artifact_dict(executor_input.outputs.artifacts, name_from_id)
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[keys.INPUT_CONFIG_KEY], input_config)
    range_config = None
    if exec_properties.get(keys.RANGE_CONFIG_KEY):
        range_config = range_config_pb2.RangeConfig()
        proto_utils.json_to_proto(exec_properties[keys.RANGE_CONFIG_KEY], range_config)
    processor = layout.ImageFolderInputProcessor(exec_properties[keys.INPUT_BASE_KEY], input_config.splits,
                                                 range_config)
    span, version = processor.resolve_span_and_version()
    fingerprint = processor.get_input_fingerprint(span, version)
    for split in input_config.splits:
        split.pattern = processor.get_pattern_for_span_version(split.pattern, span, version)
    exec_properties.update({utils.SPAN_PROPERTY_NAME: span, utils.FINGERPRINT_PROPERTY_NAME: fingerprint,
                            utils.VERSION_PROPERTY_NAME: version,
                            keys.INPUT_CONFIG_KEY: proto_utils.proto_to_json(input_config)})
    examples = artifact_utils.get_single_instance(outputs[keys.EXAMPLES_KEY])
    driver.update_output_artifact(exec_properties, examples.mlmd_artifact)
    logging.info("ExampleGen driver: span %s, version %s, fingerprint %s, pattern %s", span, version, fingerprint,
                 [s.pattern for s in input_config.splits])

    # The local driver sets these on the output artifact before the executor runs; so does this one (through the
    # ExecutorInput TFX's entrypoint parses), so the Examples artifact records its span and fingerprint.
    driven = entrypoint_utils.to_runtime_artifact(examples, name_from_id)
    for output in executor_input.outputs.artifacts[keys.EXAMPLES_KEY].artifacts:
        output.metadata.update(json_format.MessageToDict(driven.metadata))

    result = pipeline_spec_pb2.ExecutorOutput()
    result.parameter_values[utils.SPAN_PROPERTY_NAME].number_value = span
    result.parameter_values[utils.FINGERPRINT_PROPERTY_NAME].string_value = fingerprint
    if version is not None:
        result.parameter_values[utils.VERSION_PROPERTY_NAME].number_value = version
    result.parameter_values[keys.INPUT_CONFIG_KEY].string_value = exec_properties[keys.INPUT_CONFIG_KEY]
    result.artifacts[keys.EXAMPLES_KEY].artifacts.add().CopyFrom(driven)
    path = executor_input.outputs.output_file
    fileio.makedirs(os.path.dirname(path))
    with fileio.open(path, "wb") as f:
        f.write(json_format.MessageToJson(result, sort_keys=True))


# ------------------------------------------------------------------------------------------------ fix 3
def folder_markers(blobs) -> List:
    """The zero-byte `<folder>/` objects among a listing (objects with `.name` and `.size`)."""
    return [blob for blob in blobs if blob.name.endswith("/") and not blob.size]


def delete_folder_markers(uris: List[str], client_factory: Optional[Callable] = None) -> List[str]:
    """Deletes the GCS folder markers under each gs:// URI; returns the deleted objects as gs:// URIs."""
    gcs = [uri for uri in uris if uri.startswith("gs://")]
    if not gcs:
        return []
    if client_factory is None:
        from google.cloud import storage  # pylint: disable=import-outside-toplevel
        client_factory = storage.Client
    client = client_factory()
    deleted = []
    for uri in gcs:
        bucket, _, prefix = uri[len("gs://"):].partition("/")
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        for blob in folder_markers(client.list_blobs(bucket, prefix=prefix)):
            blob.delete()
            deleted.append(f"gs://{bucket}/{blob.name}")
    if deleted:
        logging.info("Deleted %d GCS folder markers under the output artifacts.", len(deleted))
    return deleted


# ------------------------------------------------------------------------------------------------ main
def _parse(argv: List[str]) -> Tuple[argparse.Namespace, List[str], bool]:
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor  # pylint: disable=import-outside-toplevel
    driver = RUN_EXAMPLE_GEN_DRIVER in argv
    args, beam_args = kubeflow_v2_run_executor._parse_flags(  # pylint: disable=protected-access
        [a for a in argv if a != RUN_EXAMPLE_GEN_DRIVER])
    return args, beam_args, driver


def run(argv: List[str]) -> pipeline_spec_pb2.ExecutorInput:
    """Everything up to the forced exit; returns the ExecutorInput the executor ran with."""
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor  # pylint: disable=import-outside-toplevel
    args, beam_args, with_driver = _parse(argv)
    executor_input = pipeline_spec_pb2.ExecutorInput()
    json_format.Parse(args.json_serialized_invocation_args, executor_input, ignore_unknown_fields=True)
    inputs_spec = None
    if getattr(args, "json_serialized_inputs_spec_args", None):
        inputs_spec = pipeline_spec_pb2.ComponentInputsSpec()
        json_format.Parse(args.json_serialized_inputs_spec_args, inputs_spec, ignore_unknown_fields=True)
    typed = type_input_artifacts(executor_input, inputs_spec)
    if typed:
        logging.info("Typed input artifacts %s from the component's inputs spec (KFP gave them no schema).", typed)
    if with_driver:
        run_example_gen_driver(executor_input, inputs_spec)
    args.json_serialized_invocation_args = json_format.MessageToJson(executor_input)
    kubeflow_v2_run_executor._run_executor(args, beam_args)  # pylint: disable=protected-access
    delete_folder_markers([a.uri for artifacts in executor_input.outputs.artifacts.values()
                           for a in artifacts.artifacts])
    return executor_input


def main(argv: Optional[List[str]] = None) -> None:
    logging.set_verbosity(logging.INFO)
    run(sys.argv[1:] if argv is None else argv)
    # Fix 4: the task is done and its output written; skip interpreter teardown.
    logging.info("Executor finished; exiting without interpreter teardown.")
    std_logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # pylint: disable=protected-access


if __name__ == "__main__":
    main()
