"""`hubtfx execute-spec`: runs a compiled Kubeflow Pipelines / Vertex AI pipeline spec on this machine.

Every task runs the way the backend's launcher runs it, with kfp's own protos (PipelineSpec, ExecutorInput,
ExecutorOutput, RuntimeArtifact) and a real ML Metadata store as the record of runs (kubeflow.local_metadata):

- container tasks: the ExecutorInput is built from the spec (parameter values from the pipeline's defaults or
  --param, the component's own parameter defaults, input artifacts from upstream outputs with their metadata,
  output artifacts under the pipeline root, the executor output file) and put in place of `{{$}}` and the other
  launcher placeholders; the task's own command and arguments run as a subprocess, with this environment's
  Python in place of the image's; the executor output file is read back and merged into the output artifacts
  (URI and metadata) as the launcher's mergeRuntimeArtifacts does, then recorded in ML Metadata.
- importer tasks import the spec's URI with its type and metadata, reusing an identical artifact of an earlier
  run unless `reimport` (KFP's FindMatchedArtifact).
- resolver tasks (Vertex AI only; the open-source backend refuses them at compile time: "resolver executors not
  implemented") evaluate their queries over the artifacts of earlier runs in the local ML Metadata store.
- caching: a task with caching enabled whose cache key (component, inputs, parameters, outputs, command) matches
  an earlier completed execution reuses that execution's outputs, as both backends do; --no-cache turns it off.

The backend decides what a task sees (--backend, inferred from the spec when not given):
- kubeflow (open-source KFP 2.x): input artifacts arrive named by their ML Metadata id and with an EMPTY instance
  schema as type (GetOutputArtifactsByExecutionId), `lifecycle.preCacheCheck` is not run, resolver executors are
  an error;
- vertex: input artifacts are typed and named by resource name, preCacheCheck runs before the cache lookup and
  the executor, resolvers are answered from the record of runs, and Dataflow steps run on Beam's local
  FnApiRunner (Dataflow is the one cluster service replaced here).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
import uuid
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import yaml
from google.protobuf import json_format, struct_pb2
from kfp.pipeline_spec import pipeline_spec_pb2
from ml_metadata.proto import metadata_store_pb2

from hubtfx.kubeflow import local_metadata

BACKENDS = ("kubeflow", "vertex")
BEAM_MODES = ("spec", "in_memory", "multi_processing")
ExecutorSpec = pipeline_spec_pb2.PipelineDeploymentConfig.ExecutorSpec
COMPLETE, CACHED, FAILED, NOT_TRIGGERED = "COMPLETE", "CACHED", "FAILED", "NOT_TRIGGERED"

# Beam options that only mean something to Dataflow; dropped with --runner=DataflowRunner. The SDK image stays:
# local workers never pull it, and naming it keeps TFX from packaging itself in every step (local_runner.py).
_DATAFLOW_OPTIONS = ("--runner=", "--project=", "--region=", "--temp_location=", "--staging_location=",
                     "--machine_type=", "--max_num_workers=", "--num_workers=",
                     "--sdk_location=", "--experiments=", "--service_account_email=", "--subnetwork=",
                     "--network=", "--worker_machine_type=", "--disk_size_gb=", "--job_name=")
_DIRECT_OPTIONS = ("--runner=", "--direct_running_mode=", "--direct_num_workers=")
# The resolver filters TFX's KubeflowV2DagRunner writes (step_builder.py), term by term, and their ML Metadata
# filter-query equivalents. Any other term is refused rather than guessed.
_FILTER_TERMS = (
    (re.compile(r'^schema_title="([\w.]+)"$'), lambda m: f"type = '{m.group(1)}'"),
    (re.compile(r"^state=(LIVE|PENDING|DELETED|ABANDONED|REFERENCE|MARKED_FOR_DELETION)$"),
     lambda m: f"state = {m.group(1)}"),
    (re.compile(r"^metadata\.(\w+)\.number_value=(-?[\d.]+)$"),
     lambda m: f"custom_properties.{m.group(1)}.double_value = {m.group(2)}"),
    (re.compile(r'^name="' + re.escape(local_metadata.VERTEX_ARTIFACT_PREFIX) + r'(\d+)"$'),
     lambda m: f"id = {m.group(1)}"),
    (re.compile(r'^name="[^"]*"$'), lambda m: None),  # a name this store never gave out: matches nothing
)
_PLACEHOLDER_METADATA = re.compile(r"\{\{\$\.inputs\.artifacts\['([^']+)'\]\.metadata\['([^']+)'\]\}\}")


class SpecError(ValueError):
    """The spec, a --param or an option cannot be executed as given; the message says what to change."""


# ------------------------------------------------------------------------------------------------------ loading
@dataclasses.dataclass
class LoadedSpec:
    spec: pipeline_spec_pb2.PipelineSpec
    deployment: pipeline_spec_pb2.PipelineDeploymentConfig

    @property
    def tasks(self) -> Dict[str, pipeline_spec_pb2.PipelineTaskSpec]:
        return dict(self.spec.root.dag.tasks)

    def component(self, task_name: str) -> pipeline_spec_pb2.ComponentSpec:
        return self.spec.components[self.spec.root.dag.tasks[task_name].component_ref.name]

    def executor(self, task_name: str) -> ExecutorSpec:
        return self.deployment.executors[self.component(task_name).executor_label]


def load_spec(path: str) -> LoadedSpec:
    """A PipelineSpec from a .json or .yaml file (a bare spec, or a PipelineJob's `pipelineSpec`)."""
    with open(path, encoding="utf-8") as f:
        document = yaml.safe_load(f) if path.endswith((".yaml", ".yml")) else json.load(f)
    if isinstance(document, dict) and "pipelineSpec" in document:
        document = document["pipelineSpec"]
    if not isinstance(document, dict) or "root" not in document:
        raise SpecError(f"{path} is not a compiled pipeline spec (no `root`); compile one with `hubtfx compile`.")
    spec = json_format.ParseDict(document, pipeline_spec_pb2.PipelineSpec())
    deployment = json_format.ParseDict(json_format.MessageToDict(spec.deployment_spec),
                                       pipeline_spec_pb2.PipelineDeploymentConfig())
    if spec.root.WhichOneof("implementation") != "dag":
        raise SpecError("The spec's root is not a DAG.")
    return LoadedSpec(spec, deployment)


def infer_backend(loaded: LoadedSpec) -> str:
    """vertex when the spec uses what only Vertex AI executes (resolvers, preCacheCheck), else kubeflow."""
    for executor in loaded.deployment.executors.values():
        if executor.WhichOneof("spec") == "resolver" or executor.container.HasField("lifecycle"):
            return "vertex"
    return "kubeflow"


def parse_params(pairs: Sequence[str], loaded: LoadedSpec) -> Dict[str, struct_pb2.Value]:
    """The pipeline's parameter values: the spec's defaults, then `name=value` pairs typed per the spec."""
    definitions = loaded.spec.root.input_definitions.parameters
    values = {name: d.default_value for name, d in definitions.items() if d.HasField("default_value")}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise SpecError(f"--param {pair!r}: use name=value.")
        if name not in definitions:
            raise SpecError(f"--param {name}: the pipeline has no such parameter; it has {', '.join(sorted(definitions))}.")
        values[name] = _typed_value(name, text, definitions[name].parameter_type)
    missing = sorted(name for name, d in definitions.items() if name not in values and not d.is_optional)
    if missing:
        raise SpecError(f"The pipeline parameters {missing} have no default; pass them with --param name=value.")
    return values


def _typed_value(name: str, text: str, kind: int) -> struct_pb2.Value:
    types = pipeline_spec_pb2.ParameterType
    try:
        if kind == types.STRING:
            return struct_pb2.Value(string_value=text)
        if kind == types.NUMBER_INTEGER:
            return struct_pb2.Value(number_value=int(text))
        if kind == types.NUMBER_DOUBLE:
            return struct_pb2.Value(number_value=float(text))
        if kind == types.BOOLEAN:
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            return struct_pb2.Value(bool_value=text.lower() == "true")
        value = struct_pb2.Value()
        json_format.Parse(text, value)
        return value
    except (ValueError, json_format.ParseError):
        raise SpecError(f"--param {name}: {text!r} is not a {types.ParameterTypeEnum.Name(kind)}.") from None


def topological_order(loaded: LoadedSpec) -> Dict[str, List[str]]:
    """Each task's upstream tasks; raises on a cycle or an unknown task."""
    upstream = {}
    tasks = loaded.tasks
    for name, task in tasks.items():
        deps = set(task.dependent_tasks)
        deps |= {a.task_output_artifact.producer_task for a in task.inputs.artifacts.values()
                 if a.WhichOneof("kind") == "task_output_artifact"}
        deps |= {p.task_output_parameter.producer_task for p in task.inputs.parameters.values()
                 if p.WhichOneof("kind") == "task_output_parameter"}
        unknown = deps - set(tasks)
        if unknown:
            raise SpecError(f"Task {name} depends on unknown tasks {sorted(unknown)}.")
        upstream[name] = sorted(deps)
    done: set = set()
    while len(done) < len(tasks):
        ready = [n for n in tasks if n not in done and set(upstream[n]) <= done]
        if not ready:
            raise SpecError(f"The tasks {sorted(set(tasks) - done)} depend on each other in a cycle.")
        done |= set(ready)
    return upstream


# ------------------------------------------------------------------------------------------------------ results
@dataclasses.dataclass
class TaskResult:
    name: str
    kind: str                      # container, importer, resolver
    state: str                     # COMPLETE, CACHED, FAILED, NOT_TRIGGERED
    seconds: float = 0.0
    work_dir: str = ""
    execution_id: int = 0
    outputs: Dict[str, List[int]] = dataclasses.field(default_factory=dict)  # output key -> ML Metadata ids
    error: str = ""


@dataclasses.dataclass
class RunResult:
    run_id: str
    backend: str
    pipeline_root: str
    metadata_path: str
    tasks: Dict[str, TaskResult]
    seconds: float
    pipeline_name: str = ""

    @property
    def succeeded(self) -> bool:
        return all(t.state in (COMPLETE, CACHED) for t in self.tasks.values())


# ------------------------------------------------------------------------------------------------------ runner
@dataclasses.dataclass
class Options:
    backend: str = ""                  # "" = infer from the spec
    params: Sequence[str] = ()
    pipeline_root: str = ""            # "" = the spec's defaultPipelineRoot
    metadata_path: str = ""            # "" = <pipeline root>/execute_spec_metadata.sqlite
    run_id: str = ""
    parallelism: int = 2
    enable_cache: bool = True
    beam_mode: str = "spec"
    python: str = sys.executable
    env: Optional[Dict[str, str]] = None
    # Fork `python -m MODULE ...` tasks from one interpreter that imported their modules once (see WarmStarter).
    warm_start: bool = False
    log: Callable[[str], None] = print


class SpecExecution:
    """One run of a loaded spec."""

    def __init__(self, loaded: LoadedSpec, options: Options):
        self.loaded = loaded
        self.options = options
        self.backend = options.backend or infer_backend(loaded)
        if self.backend not in BACKENDS:
            raise SpecError(f"--backend must be one of {BACKENDS}, got {self.backend!r}.")
        if self.backend == "kubeflow":
            resolvers = sorted(n for n in loaded.tasks if loaded.executor(n).WhichOneof("spec") == "resolver")
            if resolvers:  # KFP's compiler refuses the whole spec before anything runs
                raise SpecError(f"The open-source KFP backend cannot run this spec: {resolvers} are resolver tasks "
                                "('resolver executors not implemented'). Compile it with --target kubeflow, or "
                                "execute it with --backend vertex.")
        if options.beam_mode not in BEAM_MODES:
            raise SpecError(f"--beam-mode must be one of {BEAM_MODES}, got {options.beam_mode!r}.")
        self.params = parse_params(options.params, loaded)
        self.pipeline_root = options.pipeline_root or loaded.spec.default_pipeline_root
        if not self.pipeline_root:
            raise SpecError("The spec has no defaultPipelineRoot; pass --pipeline-root.")
        local_root = "://" not in self.pipeline_root
        metadata_path = options.metadata_path or (
            os.path.join(self.pipeline_root, "execute_spec_metadata.sqlite") if local_root else "")
        if not metadata_path:
            raise SpecError(f"The pipeline root {self.pipeline_root} is not a local folder; pass --metadata FILE for "
                            "the local record of runs.")
        self.run_id = options.run_id or "run-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.run_root = os.path.join(self.pipeline_root, self.run_id)
        self.metadata = local_metadata.LocalMetadata(metadata_path, loaded.spec.pipeline_info.name)
        self.run_context = self.metadata.run_context(self.run_id)
        self.upstream = topological_order(loaded)
        self.results: Dict[str, TaskResult] = {}
        # KFP posts one INPUT event per input name, which ML Metadata refuses for a repeated artifact; how Vertex
        # records a repeated artifact (e.g. the Evaluator's candidate that the resolver also returns as baseline,
        # when the Trainer was a cache hit) cannot be checked here, so the vertex emulation records it once.
        self._one_event_per_artifact = self.backend == "vertex"

    # -------------------------------------------------------------------------------------------- orchestration
    def run(self) -> RunResult:
        start = time.time()
        kinds = {name: self.loaded.executor(name).WhichOneof("spec") for name in self.loaded.tasks}
        self._log(f"Run {self.run_id} of {self.loaded.spec.pipeline_info.name} ({self.backend} backend): "
                  f"{len(kinds)} tasks, pipeline root {self.pipeline_root}, record {self.metadata.path}")
        if self.backend == "kubeflow" and not self.pipeline_root.startswith(("gs://", "s3://", "minio://")):
            self._log("Note: KFP's launcher needs a gs://, s3:// or minio:// pipeline root; this local root works "
                      "only for this dry run.")
        pending = set(kinds)
        running: Dict[concurrent.futures.Future, str] = {}
        failed = False
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, self.options.parallelism)) as pool:
            while pending or running:
                if not failed:
                    ready = sorted(n for n in pending if all(
                        self.results.get(u) and self.results[u].state in (COMPLETE, CACHED) for u in self.upstream[n]))
                    for name in ready[:max(0, self.options.parallelism - len(running))]:
                        pending.discard(name)
                        running[pool.submit(self._run_task, name, kinds[name])] = name
                if not running:
                    break
                finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    result = future.result()
                    del running[future]
                    self.results[result.name] = result
                    failed = failed or result.state == FAILED
        for name in sorted(pending):
            self.results[name] = TaskResult(name, kinds[name], NOT_TRIGGERED)
        result = RunResult(self.run_id, self.backend, self.pipeline_root, self.metadata.path,
                           dict(self.results), time.time() - start,  # in the order the tasks ended
                           self.loaded.spec.pipeline_info.name)
        states = {}
        for task in result.tasks.values():
            states[task.state] = states.get(task.state, 0) + 1
        self._log(f"Run {self.run_id} {'succeeded' if result.succeeded else 'FAILED'} in {result.seconds:.0f} s: "
                  + ", ".join(f"{count} {state.lower()}" for state, count in sorted(states.items())))
        return result

    def _log(self, line: str) -> None:
        self.options.log(f"[execute-spec] {line}")

    def _run_task(self, name: str, kind: str) -> TaskResult:
        work_dir = os.path.join(self.run_root, name)
        os.makedirs(work_dir, exist_ok=True)
        start = time.time()
        try:
            if kind == "container":
                result = self._container_task(name, work_dir)
            elif kind == "importer":
                result = self._importer_task(name, work_dir)
            elif kind == "resolver":
                result = self._resolver_task(name, work_dir)
            else:
                raise SpecError(f"executor kind {kind!r} cannot run outside its platform (e.g. a Vertex custom job)")
        except Exception as error:  # pylint: disable=broad-except
            result = TaskResult(name, kind, FAILED, work_dir=work_dir, error=f"{type(error).__name__}: {error}")
        result.seconds = time.time() - start
        detail = f": {result.error}" if result.error else ""
        self._log(f"{name} {result.state.lower()} in {result.seconds:.1f} s{detail}")
        return result

    # -------------------------------------------------------------------------------------------- inputs
    def _input_artifacts(self, name: str) -> Dict[str, List[metadata_store_pb2.Artifact]]:
        task = self.loaded.tasks[name]
        resolved = {}
        for key, spec in task.inputs.artifacts.items():
            if spec.WhichOneof("kind") != "task_output_artifact":
                raise SpecError(f"{name}.{key}: input artifact kind {spec.WhichOneof('kind')} is not supported.")
            producer = self.results[spec.task_output_artifact.producer_task]
            ids = producer.outputs.get(spec.task_output_artifact.output_artifact_key, [])
            resolved[key] = self.metadata.artifacts(ids)
        return resolved

    def _input_parameters(self, name: str) -> Dict[str, struct_pb2.Value]:
        """driver resolveInputs plus the launcher's addDefaultParams (the component's own defaults)."""
        task = self.loaded.tasks[name]
        values = {}
        for key, spec in task.inputs.parameters.items():
            kind = spec.WhichOneof("kind")
            if kind == "runtime_value":
                values[key] = spec.runtime_value.constant
            elif kind == "component_input_parameter":
                if spec.component_input_parameter in self.params:
                    values[key] = self.params[spec.component_input_parameter]
            elif kind == "task_output_parameter":
                raise SpecError(f"{name}.{key}: task output parameters are not produced by this pipeline's tasks.")
            else:
                raise SpecError(f"{name}.{key}: input parameter kind {kind} is not supported.")
        for key, definition in self.loaded.component(name).input_definitions.parameters.items():
            if key not in values and definition.HasField("default_value"):
                values[key] = definition.default_value
        return values

    def _executor_input(self, name: str, work_dir: str, inputs: Dict[str, List[metadata_store_pb2.Artifact]],
                        parameters: Dict[str, struct_pb2.Value]) -> pipeline_spec_pb2.ExecutorInput:
        component = self.loaded.component(name)
        executor_input = pipeline_spec_pb2.ExecutorInput()
        for key, value in parameters.items():
            executor_input.inputs.parameter_values[key].CopyFrom(value)
        for key, artifacts in inputs.items():
            declared = component.input_definitions.artifacts[key].artifact_type
            target = executor_input.inputs.artifacts[key]
            for artifact in artifacts:
                target.artifacts.add().CopyFrom(self.metadata.runtime_artifact(artifact, self.backend, declared))
        for key, definition in component.output_definitions.artifacts.items():
            output = executor_input.outputs.artifacts[key].artifacts.add()  # unnamed, as KFP's driver provisions it
            output.uri = _join(self.run_root, name, key)
            output.type.CopyFrom(definition.artifact_type)
            output.metadata.CopyFrom(definition.metadata)
        for key in component.output_definitions.parameters:
            executor_input.outputs.parameters[key].output_file = os.path.join(work_dir, "outputs", key)
        executor_input.outputs.output_file = os.path.join(work_dir, "executor_output.json")
        return executor_input

    # -------------------------------------------------------------------------------------------- containers
    def _container_task(self, name: str, work_dir: str) -> TaskResult:
        container = self.loaded.executor(name).container
        inputs = self._input_artifacts(name)
        self._check_repeated_inputs(inputs)
        executor_input = self._executor_input(name, work_dir, inputs, self._input_parameters(name))
        if os.path.exists(executor_input.outputs.output_file):
            os.remove(executor_input.outputs.output_file)
        if self.backend == "vertex" and container.lifecycle.HasField("pre_cache_check"):
            hook = container.lifecycle.pre_cache_check
            self._run_command(name, "pre_cache_check", list(hook.command), list(hook.args), executor_input, work_dir)
            driver_output = _read_executor_output(executor_input.outputs.output_file)
            for key, value in driver_output.parameter_values.items():
                executor_input.inputs.parameter_values[key].CopyFrom(value)

        fingerprint = self._cache_key(name, executor_input, container)
        if self.options.enable_cache and self.loaded.tasks[name].caching_options.enable_cache:
            cached = self.metadata.cached_outputs(fingerprint)
            if cached is not None:
                execution_id, _ = self.metadata.record_execution(
                    local_metadata.CONTAINER_EXECUTION, name, self.run_context, metadata_store_pb2.Execution.CACHED,
                    {k: [a.id for a in v] for k, v in inputs.items()},
                    {k: self.metadata.artifacts(ids) for k, ids in cached.items()}, {"cache_fingerprint": fingerprint},
                    self._one_event_per_artifact)
                return TaskResult(name, "container", CACHED, work_dir=work_dir, execution_id=execution_id,
                                  outputs=cached)

        self._run_command(name, "executor", list(container.command), list(container.args), executor_input, work_dir)
        executor_output = _read_executor_output(executor_input.outputs.output_file)
        outputs = {}
        component = self.loaded.component(name)
        for key, artifact_list in executor_input.outputs.artifacts.items():
            runtime = artifact_list.artifacts[0]
            if key in executor_output.artifacts and executor_output.artifacts[key].artifacts:
                _merge_runtime_artifacts(executor_output.artifacts[key].artifacts[0], runtime)
            outputs[key] = [self.metadata.new_artifact(
                runtime, key, component.output_definitions.artifacts[key].artifact_type)]
        execution_id, output_ids = self.metadata.record_execution(
            local_metadata.CONTAINER_EXECUTION, name, self.run_context, metadata_store_pb2.Execution.COMPLETE,
            {k: [a.id for a in v] for k, v in inputs.items()}, outputs, {"cache_fingerprint": fingerprint},
            self._one_event_per_artifact)
        return TaskResult(name, "container", COMPLETE, work_dir=work_dir, execution_id=execution_id, outputs=output_ids)

    def _check_repeated_inputs(self, inputs: Dict[str, List[metadata_store_pb2.Artifact]]) -> None:
        """KFP's driver creates the execution with its INPUT events before the container starts; ML Metadata
        refuses a second event for one artifact, so on kubeflow such a task fails before it runs."""
        if self._one_event_per_artifact:
            return
        names: Dict[int, List[str]] = {}
        for key, artifacts in inputs.items():
            for artifact in artifacts:
                names.setdefault(artifact.id, []).append(key)
        repeated = {artifact_id: keys for artifact_id, keys in names.items() if len(keys) > 1}
        if repeated:
            raise SpecError(f"artifact(s) {repeated} arrive under two input names: KFP's driver records one INPUT "
                            "event per name and ML Metadata refuses the second (\"Given event already exists\"), "
                            "so the task fails before its container starts")

    def _cache_key(self, name: str, executor_input: pipeline_spec_pb2.ExecutorInput,
                   container: pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec) -> str:
        """What KFP's cacheutils.GenerateCacheKey hashes: input artifact names, parameter values, the output
        artifact and parameter specs and the container (image, command, args)."""
        component = self.loaded.component(name)
        key = {
            "inputArtifactNames": {k: [a.name for a in v.artifacts]
                                   for k, v in sorted(executor_input.inputs.artifacts.items())},
            "inputParameterValues": {k: json_format.MessageToDict(v)
                                     for k, v in sorted(executor_input.inputs.parameter_values.items())},
            "outputArtifactsSpec": json_format.MessageToDict(component.output_definitions),
            "containerSpec": {"image": container.image, "cmdArgs": list(container.command) + list(container.args)},
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()

    def _run_command(self, name: str, step: str, command: List[str], args: List[str],
                     executor_input: pipeline_spec_pb2.ExecutorInput, work_dir: str) -> None:
        placeholders = _placeholders(executor_input)
        argv = [_substitute(part, placeholders) for part in command + args]
        if argv and argv[0] in ("python", "python3"):
            argv[0] = self.options.python
        argv = self._beam_args(argv)
        with open(os.path.join(work_dir, f"{step}_input.json"), "w", encoding="utf-8") as f:
            f.write(json_format.MessageToJson(executor_input))
        with open(os.path.join(work_dir, f"{step}_command.txt"), "w", encoding="utf-8") as f:
            f.write(" ".join(shlex.quote(a) for a in argv) + "\n")
        log_path = os.path.join(work_dir, f"{step}.log")
        env = dict(os.environ if self.options.env is None else self.options.env)
        env.setdefault("TF_USE_LEGACY_KERAS", "1")  # the pipeline image's ENV
        env["PYTHONUNBUFFERED"] = "1"
        for output in executor_input.outputs.parameters.values():
            os.makedirs(os.path.dirname(output.output_file), exist_ok=True)
        cwd = os.path.join(work_dir, "cwd")
        os.makedirs(cwd, exist_ok=True)
        if self.options.warm_start and argv[:2] == [self.options.python, "-m"]:
            returncode = WarmStarter.get(self.loaded).run(argv[2:], env, cwd, log_path)
        else:
            with open(log_path, "wb") as log:
                returncode = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                            check=False).returncode
        if returncode != 0:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                tail = "".join(f.readlines()[-15:])
            raise RuntimeError(f"{step} exited with {returncode} (log: {log_path}); last lines:\n{tail}")

    def _beam_args(self, argv: List[str]) -> List[str]:
        """Dataflow is replaced by Beam's local FnApiRunner (what the DirectRunner falls back to, named so that no
        step tries to download the Prism runner); --beam-mode picks its mode."""
        dataflow = "--runner=DataflowRunner" in argv
        mode = self.options.beam_mode
        if not dataflow and mode == "spec":
            return argv
        if not dataflow and not any(a.startswith("--direct_running_mode=") for a in argv):
            return argv  # not a Beam step
        drop = _DATAFLOW_OPTIONS if dataflow else _DIRECT_OPTIONS
        kept = [a for a in argv if not a.startswith(drop)]
        mode = "multi_processing" if mode == "spec" else mode
        return kept + ["--runner=FnApiRunner", f"--direct_running_mode={mode}",
                       f"--direct_num_workers={0 if mode == 'multi_processing' else 1}"]

    # -------------------------------------------------------------------------------------------- importers
    def _importer_task(self, name: str, work_dir: str) -> TaskResult:
        importer = self.loaded.executor(name).importer
        if importer.artifact_uri.WhichOneof("value") == "constant":
            uri = importer.artifact_uri.constant.string_value
        else:
            parameter = importer.artifact_uri.runtime_parameter
            value = self._input_parameters(name).get(parameter)
            if value is None:
                raise SpecError(f"{name}: no value for the importer's URI parameter {parameter!r}")
            uri = value.string_value
        [(key, definition)] = self.loaded.component(name).output_definitions.artifacts.items()
        runtime = pipeline_spec_pb2.RuntimeArtifact(uri=uri)
        runtime.type.CopyFrom(importer.type_schema)
        runtime.metadata.CopyFrom(importer.metadata)
        artifact = self.metadata.new_artifact(runtime, key, importer.type_schema or definition.artifact_type)
        if not importer.reimport:
            artifact = self.metadata.find_matching_artifact(artifact) or artifact
        execution_id, outputs = self.metadata.record_execution(
            local_metadata.IMPORTER_EXECUTION, name, self.run_context, metadata_store_pb2.Execution.COMPLETE, {},
            {key: [artifact]}, {"artifact_uri": uri})
        return TaskResult(name, "importer", COMPLETE, work_dir=work_dir, execution_id=execution_id, outputs=outputs)

    # -------------------------------------------------------------------------------------------- resolvers
    def _resolver_task(self, name: str, work_dir: str) -> TaskResult:
        if self.backend == "kubeflow":
            raise SpecError("resolver executors not implemented (what the open-source KFP backend answers when it "
                            "compiles this spec); compile with --target kubeflow for a spec without resolvers")
        inputs = self._input_artifacts(name)
        outputs = {}
        for key, query in self.loaded.executor(name).resolver.output_artifact_queries.items():
            mlmd_filter = self._resolver_filter(query.filter, inputs)
            found = [] if mlmd_filter is None else self.metadata.query_artifacts(mlmd_filter, query.limit or 1)
            outputs[key] = found
            with open(os.path.join(work_dir, f"query_{key}.txt"), "w", encoding="utf-8") as f:
                f.write(f"filter: {query.filter}\nml-metadata: {mlmd_filter}\nfound: {[a.id for a in found]}\n")
        execution_id, output_ids = self.metadata.record_execution(
            local_metadata.RESOLVER_EXECUTION, name, self.run_context, metadata_store_pb2.Execution.COMPLETE,
            {k: [a.id for a in v] for k, v in inputs.items()}, outputs, None, self._one_event_per_artifact)
        return TaskResult(name, "resolver", COMPLETE, work_dir=work_dir, execution_id=execution_id, outputs=output_ids)

    def _resolver_filter(self, query_filter: str, inputs: Dict[str, List[metadata_store_pb2.Artifact]]
                         ) -> Optional[str]:
        """The ML Metadata filter query equivalent to a Vertex resolver filter, or None when it can match nothing
        (a placeholder naming an input that resolved to no artifact)."""
        def metadata_value(match: re.Match) -> str:
            artifacts = inputs.get(match.group(1)) or []
            if not artifacts:
                raise LookupError(match.group(1))
            runtime = self.metadata.runtime_artifact(artifacts[0], self.backend)
            value = runtime.metadata.fields.get(match.group(2))
            if value is None:
                raise LookupError(match.group(2))
            kind = value.WhichOneof("kind")
            return value.string_value if kind == "string_value" else json.dumps(json_format.MessageToDict(value))

        try:
            resolved = _PLACEHOLDER_METADATA.sub(metadata_value, query_filter)
        except LookupError:
            return None
        terms = []
        for term in resolved.split(" AND "):
            for pattern, translate in _FILTER_TERMS:
                match = pattern.match(term.strip())
                if match:
                    translated = translate(match)
                    if translated is None:
                        return None
                    terms.append(translated)
                    break
            else:
                raise SpecError(f"resolver filter term {term!r} is not one TFX's KubeflowV2DagRunner writes; "
                                "execute-spec does not evaluate it")
        return " AND ".join(terms)


# ------------------------------------------------------------------------------------------------------ warm start
def _module_main(module_and_args: List[str], env: Dict[str, str], cwd: str, log_path: str) -> None:
    """`python -m MODULE ARGS` in a forked child: the module runs as __main__ with its own argv, cwd, environment
    and log; its exit status is the child's."""
    import runpy  # pylint: disable=import-outside-toplevel
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.argv = list(module_and_args)
    try:
        runpy.run_module(module_and_args[0], run_name="__main__", alter_sys=True)
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if done.code not in (None, 0) and not isinstance(done.code, int):
            print(done.code, file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # pylint: disable=protected-access
    except BaseException:  # pylint: disable=broad-except
        import traceback  # pylint: disable=import-outside-toplevel
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)  # pylint: disable=protected-access
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # pylint: disable=protected-access


class WarmStarter:
    """Runs `python -m MODULE ...` tasks as children forked from a multiprocessing fork server that imported the
    spec's entrypoint and executor modules once, instead of one fresh interpreter per task.

    The task still runs its own module as __main__ with its own arguments, environment, working folder and log, in
    its own process, and its exit status decides the task; what it saves is the 15-30 s of CPU that importing
    TensorFlow, TFX and Beam costs each task. Module-level state from the import (and only that) is shared, so
    tests that depend on a fresh interpreter's teardown (the entrypoint's forced exit) run without it.
    """

    _context = None
    _lock = threading.Lock()

    @classmethod
    def get(cls, loaded: "LoadedSpec") -> "WarmStarter":
        import multiprocessing  # pylint: disable=import-outside-toplevel
        with cls._lock:
            if cls._context is None:
                # The fork server inherits this environment when it starts; TensorFlow is imported there once.
                os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(sorted(preload_modules(loaded)))
                cls._context = context
        return cls()

    def run(self, module_and_args: List[str], env: Dict[str, str], cwd: str, log_path: str) -> int:
        process = self._context.Process(target=_module_main, args=(module_and_args, env, cwd, log_path))
        process.start()
        process.join()
        return process.exitcode


def preload_modules(loaded: "LoadedSpec") -> set:
    """The `-m` modules of the spec's containers and the modules of their --executor_class_path classes."""
    modules = {"tensorflow"}
    for executor in loaded.deployment.executors.values():
        container = executor.container
        for part in (list(container.command), list(container.lifecycle.pre_cache_check.command)):
            if len(part) >= 3 and part[1] == "-m":
                modules.add(part[2])
        args = list(container.args)
        if "--executor_class_path" in args:
            modules.add(args[args.index("--executor_class_path") + 1].rsplit(".", 1)[0])
    return modules


# ------------------------------------------------------------------------------------------------------ helpers
def _join(root: str, *parts: str) -> str:
    """root/part/..., keeping a URI scheme intact (os.path.join would too; this is explicit about it)."""
    return "/".join([root.rstrip("/"), *parts])


def _read_executor_output(path: str) -> pipeline_spec_pb2.ExecutorOutput:
    """The executor output file, or an empty ExecutorOutput when the task wrote none (getExecutorOutputFile)."""
    output = pipeline_spec_pb2.ExecutorOutput()
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            json_format.Parse(f.read(), output)  # strict, like the launcher's protojson.Unmarshal
    return output


def _merge_runtime_artifacts(source: pipeline_spec_pb2.RuntimeArtifact, target: pipeline_spec_pb2.RuntimeArtifact):
    """launcher_v2.go mergeRuntimeArtifacts: the executor's URI (when set) and metadata win."""
    if source.uri:
        target.uri = source.uri
    for key, value in source.metadata.fields.items():
        target.metadata.fields[key].CopyFrom(value)


def _placeholders(executor_input: pipeline_spec_pb2.ExecutorInput) -> Dict[str, str]:
    """launcher_v2.go getPlaceholders: `{{$}}` and the per-input/output placeholders (paths are the URIs here)."""
    placeholders = {"{{$}}": json_format.MessageToJson(executor_input, indent=None)}
    for name, artifacts in executor_input.inputs.artifacts.items():
        if artifacts.artifacts:
            placeholders[f"{{{{$.inputs.artifacts['{name}'].uri}}}}"] = artifacts.artifacts[0].uri
            placeholders[f"{{{{$.inputs.artifacts['{name}'].path}}}}"] = artifacts.artifacts[0].uri
    for name, artifacts in executor_input.outputs.artifacts.items():
        placeholders[f"{{{{$.outputs.artifacts['{name}'].uri}}}}"] = artifacts.artifacts[0].uri
        placeholders[f"{{{{$.outputs.artifacts['{name}'].path}}}}"] = artifacts.artifacts[0].uri
    for name, value in executor_input.inputs.parameter_values.items():
        kind = value.WhichOneof("kind")
        if kind == "string_value":
            text = value.string_value
        elif kind == "number_value":
            text = f"{value.number_value:g}" if value.number_value != int(value.number_value) else str(int(value.number_value))
        elif kind == "bool_value":
            text = "true" if value.bool_value else "false"
        else:
            text = json.dumps(json_format.MessageToDict(value))
        placeholders[f"{{{{$.inputs.parameters['{name}']}}}}"] = text
    for name, parameter in executor_input.outputs.parameters.items():
        placeholders[f"{{{{$.outputs.parameters['{name}'].output_file}}}}"] = parameter.output_file
    return placeholders


def _substitute(text: str, placeholders: Dict[str, str]) -> str:
    for placeholder, value in placeholders.items():
        text = text.replace(placeholder, value)
    return text


def execute(spec_path: str, options: Options) -> RunResult:
    """Loads and runs a spec file."""
    return SpecExecution(load_spec(spec_path), options).run()


def describe(result: RunResult) -> str:
    """The run's tasks, the pushed model and the baseline the Evaluator got, for a person reading the output."""
    lines = [f"Run {result.run_id} ({result.backend} backend): {'succeeded' if result.succeeded else 'FAILED'} "
             f"in {result.seconds:.0f} s; artifacts under {result.pipeline_root}/{result.run_id}, record "
             f"{result.metadata_path}"]
    for task in result.tasks.values():
        lines.append(f"  {task.name:<58} {task.state:<13} {task.seconds:6.1f} s"
                     + (f"  {task.error.splitlines()[0]}" if task.error else ""))
    metadata = local_metadata.LocalMetadata(result.metadata_path, result.pipeline_name)
    for task in result.tasks.values():
        for key, ids in task.outputs.items():
            for artifact in metadata.artifacts(ids):
                properties = artifact.custom_properties
                if metadata.artifact_type_name(artifact) == "tfx.PushedModel":
                    if properties["pushed"].double_value == 1:
                        lines.append(f"Pushed: {properties['pushed_destination'].string_value}")
                    else:
                        reason = properties.get("push_skipped_reason")
                        lines.append("Not pushed" + (f": {reason.string_value}" if reason else
                                                     " (the model was not blessed)"))
    return "\n".join(lines)
