"""The local record of `hubtfx execute-spec` runs: a real ML Metadata (SQLite) store, written the way the KFP
v2 backend writes its own ML Metadata.

What KFP does (backend/src/v2/metadata/client.go and converter.go, KFP 2.x), and this module does the same:
- an output artifact's MLMD type is the `title` of its instance schema (`SchemaToArtifactType`);
- every entry of the executor's artifact metadata becomes a custom property (`toMLMDArtifact`): strings stay
  strings, numbers become doubles, booleans ints, lists and structs are wrapped as {"list": [...]} and
  {"struct": {...}}; `display_name` (the output key) and `store_session_info` are added;
- a downstream task gets the artifact back with its properties and custom properties as metadata, its MLMD id
  as name (`toRuntimeArtifact`) and -- for an upstream task's output -- an EMPTY instance schema as type
  (`GetOutputArtifactsByExecutionId` leaves `Schema: ""`, TODO in the KFP source): see `runtime_artifact`.

Executions live in a `system.Pipeline` context (the pipeline name) and a `system.PipelineRun` context (the run
id), with INPUT/OUTPUT events keyed by the input or output name, so a later run's resolver query or cache lookup
sees everything earlier runs produced.
"""
import json
import os
import threading
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import yaml
from google.protobuf import json_format, struct_pb2
from kfp.pipeline_spec import pipeline_spec_pb2
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

PIPELINE_CONTEXT = "system.Pipeline"
RUN_CONTEXT = "system.PipelineRun"
CONTAINER_EXECUTION = "system.ContainerExecution"
IMPORTER_EXECUTION = "system.ImporterExecution"
RESOLVER_EXECUTION = "system.ResolverExecution"
# The resource names Vertex AI gives artifacts; the local store's id stands in for Vertex's.
VERTEX_ARTIFACT_PREFIX = "projects/local/locations/local/metadataStores/default/artifacts/"


class MetadataError(RuntimeError):
    """An artifact or value the KFP backend would refuse to record."""


def schema_title(type_schema: pipeline_spec_pb2.ArtifactTypeSchema) -> str:
    """The MLMD type name KFP records for an artifact type: the instance schema's title, or the schema title."""
    kind = type_schema.WhichOneof("kind")
    if kind == "schema_title":
        return type_schema.schema_title
    if kind == "instance_schema":
        title = (yaml.safe_load(type_schema.instance_schema) or {}).get("title", "")
        if title:
            return title
    raise MetadataError(f"artifact type {json_format.MessageToDict(type_schema)} has no title; KFP's "
                        "SchemaToArtifactType stops on it ('No title specified')")


def _mlmd_value(name: str, value: struct_pb2.Value) -> metadata_store_pb2.Value:
    """converter.go StructValueToMLMDValue."""
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return metadata_store_pb2.Value(string_value=value.string_value)
    if kind == "number_value":
        return metadata_store_pb2.Value(double_value=value.number_value)
    if kind == "bool_value":
        return metadata_store_pb2.Value(int_value=int(value.bool_value))
    if kind == "list_value":
        wrapped = struct_pb2.Struct()
        wrapped.fields["list"].list_value.CopyFrom(value.list_value)
        return metadata_store_pb2.Value(struct_value=wrapped)
    if kind == "struct_value":
        wrapped = struct_pb2.Struct()
        wrapped.fields["struct"].struct_value.CopyFrom(value.struct_value)
        return metadata_store_pb2.Value(struct_value=wrapped)
    raise MetadataError(f"artifact metadata {name!r} is {kind or 'unset'}: KFP's launcher cannot record it "
                        "('unknown/unsupported value type')")


def _struct_value(value: metadata_store_pb2.Value) -> Optional[struct_pb2.Value]:
    """converter.go toRuntimeArtifact's property conversion."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return struct_pb2.Value(string_value=value.string_value)
    if kind == "double_value":
        return struct_pb2.Value(number_value=value.double_value)
    if kind == "int_value":
        return struct_pb2.Value(number_value=float(value.int_value))
    if kind == "struct_value":
        result = struct_pb2.Value()
        result.struct_value.CopyFrom(value.struct_value)
        return result
    raise MetadataError(f"unknown property type in MLMD artifact: {kind}")


class LocalMetadata:
    """A thread-safe handle on the SQLite ML Metadata store that records the runs of one pipeline."""

    def __init__(self, path: str, pipeline_name: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        config = metadata_store_pb2.ConnectionConfig()
        config.sqlite.filename_uri = path
        config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        self.path = path
        self._store = metadata_store.MetadataStore(config)
        self._lock = threading.Lock()
        self._types: Dict[Tuple[str, str], int] = {}
        self.pipeline_context = self._context(PIPELINE_CONTEXT, pipeline_name)

    # ------------------------------------------------------------------------------------------ types, contexts
    def _type_id(self, kind: str, name: str) -> int:
        key = (kind, name)
        if key not in self._types:
            if kind == "artifact":
                self._types[key] = self._store.put_artifact_type(metadata_store_pb2.ArtifactType(name=name))
            elif kind == "execution":
                self._types[key] = self._store.put_execution_type(metadata_store_pb2.ExecutionType(name=name))
            else:
                self._types[key] = self._store.put_context_type(metadata_store_pb2.ContextType(name=name))
        return self._types[key]

    def _context(self, type_name: str, name: str) -> metadata_store_pb2.Context:
        with self._lock:
            found = self._store.get_context_by_type_and_name(type_name, name)
            if found is not None:
                return found
            context = metadata_store_pb2.Context(type_id=self._type_id("context", type_name), name=name)
            [context.id] = self._store.put_contexts([context])
            return context

    def run_context(self, run_id: str) -> metadata_store_pb2.Context:
        run = self._context(RUN_CONTEXT, run_id)
        with self._lock:
            self._store.put_parent_contexts([metadata_store_pb2.ParentContext(
                child_id=run.id, parent_id=self.pipeline_context.id)])
        return run

    # ------------------------------------------------------------------------------------------ artifacts
    def new_artifact(self, runtime: pipeline_spec_pb2.RuntimeArtifact, output_key: str,
                     type_schema: pipeline_spec_pb2.ArtifactTypeSchema) -> metadata_store_pb2.Artifact:
        """An unsaved MLMD artifact for an output, as client.go RecordArtifact builds it."""
        artifact = metadata_store_pb2.Artifact(uri=runtime.uri, state=metadata_store_pb2.Artifact.LIVE)
        artifact.type_id = self._type_id("artifact", schema_title(type_schema))
        for name, value in runtime.metadata.fields.items():
            artifact.custom_properties[name].CopyFrom(_mlmd_value(name, value))
        if "display_name" not in artifact.custom_properties:
            artifact.custom_properties["display_name"].string_value = output_key
        if "store_session_info" not in artifact.custom_properties:
            artifact.custom_properties["store_session_info"].string_value = json.dumps({"provider": "local"})
        return artifact

    def artifacts(self, ids: Iterable[int]) -> List[metadata_store_pb2.Artifact]:
        ids = list(ids)
        if not ids:
            return []
        with self._lock:
            by_id = {a.id: a for a in self._store.get_artifacts_by_id(ids)}
        return [by_id[i] for i in ids]

    def artifact_type_name(self, artifact: metadata_store_pb2.Artifact) -> str:
        with self._lock:
            [artifact_type] = self._store.get_artifact_types_by_id([artifact.type_id])
        return artifact_type.name

    @staticmethod
    def runtime_artifact(artifact: metadata_store_pb2.Artifact, backend: str,
                         input_type: Optional[pipeline_spec_pb2.ArtifactTypeSchema] = None
                         ) -> pipeline_spec_pb2.RuntimeArtifact:
        """The artifact as the backend hands it to a downstream task.

        kubeflow: KFP's toRuntimeArtifact plus OutputArtifact.ToRuntimeArtifact -- the name is the MLMD id and the
        type an instance schema that is empty, because GetOutputArtifactsByExecutionId does not know the schema.
        vertex: Vertex AI names artifacts by resource name and types them (here with the consuming component's
        declared input type).
        """
        runtime = pipeline_spec_pb2.RuntimeArtifact(uri=artifact.uri)
        for properties in (artifact.properties, artifact.custom_properties):
            for name, value in properties.items():
                runtime.metadata.fields[name].CopyFrom(_struct_value(value))
        if backend == "kubeflow":
            runtime.name = str(artifact.id)
            runtime.type.instance_schema = ""
        else:
            runtime.name = VERTEX_ARTIFACT_PREFIX + str(artifact.id)
            if input_type is not None:
                runtime.type.CopyFrom(input_type)
        return runtime

    def find_matching_artifact(self, artifact: metadata_store_pb2.Artifact) -> Optional[metadata_store_pb2.Artifact]:
        """client.go FindMatchedArtifact: same type, state, URI and custom properties, in this pipeline."""
        with self._lock:
            candidates = self._store.get_artifacts_by_uri(artifact.uri)
            for candidate in candidates:
                if (candidate.type_id, candidate.state) != (artifact.type_id, artifact.state):
                    continue
                if any(name not in candidate.custom_properties or candidate.custom_properties[name] != value
                       for name, value in artifact.custom_properties.items()):
                    continue
                contexts = self._store.get_contexts_by_artifact(candidate.id)
                if any(c.id == self.pipeline_context.id for c in contexts):
                    return candidate
        return None

    def query_artifacts(self, mlmd_filter: str, limit: int) -> List[metadata_store_pb2.Artifact]:
        """The newest artifacts of this pipeline that match an ML Metadata filter query."""
        scope = (f"contexts_a.type = '{PIPELINE_CONTEXT}' AND contexts_a.name = "
                 f"'{self.pipeline_context.name}'")
        options = metadata_store.ListOptions(
            filter_query=f"{scope} AND {mlmd_filter}" if mlmd_filter else scope, limit=limit,
            order_by=metadata_store.OrderByField.CREATE_TIME, is_asc=False)
        with self._lock:
            return list(self._store.get_artifacts(list_options=options))

    # ------------------------------------------------------------------------------------------ executions
    def record_execution(self, type_name: str, task_name: str, run: metadata_store_pb2.Context, state: int,
                         inputs: Dict[str, Sequence[int]], outputs: Dict[str, Sequence[metadata_store_pb2.Artifact]],
                         properties: Optional[Dict[str, str]] = None,
                         one_event_per_artifact: bool = False) -> Tuple[int, Dict[str, List[int]]]:
        """Publishes one finished execution with its input and output events; returns (execution id, output ids).

        Output artifacts without an id are created; ones with an id (a cache hit, a resolved or re-imported
        artifact) are linked as they are. Inputs get one INPUT event per (input name, artifact), as KFP's
        CreateExecution posts them, so ML Metadata refuses an artifact under two input names ("Given event already
        exists"), as it does on KFP; one_event_per_artifact records such an artifact once (under its first name).
        """
        execution = metadata_store_pb2.Execution(last_known_state=state)
        execution.custom_properties["task_name"].string_value = task_name
        for name, value in (properties or {}).items():
            execution.custom_properties[name].string_value = value
        links, linked = [], set()
        for name, ids in inputs.items():
            for index, artifact in enumerate(self.artifacts(ids)):
                if one_event_per_artifact and artifact.id in linked:
                    continue
                linked.add(artifact.id)
                links.append((artifact, self._event(metadata_store_pb2.Event.INPUT, name, index)))
        order = []
        for name, artifacts in outputs.items():
            for index, artifact in enumerate(artifacts):
                links.append((artifact, self._event(metadata_store_pb2.Event.OUTPUT, name, index)))
                order.append(name)
        with self._lock:
            execution.type_id = self._type_id("execution", type_name)
            execution_id, artifact_ids, _ = self._store.put_execution(
                execution, links, [self.pipeline_context, run], reuse_context_if_already_exist=True)
        output_ids: Dict[str, List[int]] = {name: [] for name in outputs}
        for name, artifact_id in zip(order, artifact_ids[len(links) - len(order):]):
            output_ids[name].append(artifact_id)
        return execution_id, output_ids

    @staticmethod
    def _event(kind: int, key: str, index: int) -> metadata_store_pb2.Event:
        event = metadata_store_pb2.Event(type=kind)
        event.path.steps.add().key = key
        event.path.steps.add().index = index
        return event

    def cached_outputs(self, fingerprint: str) -> Optional[Dict[str, List[int]]]:
        """The output artifact ids of the newest completed execution with this cache fingerprint, or None."""
        with self._lock:
            executions = self._store.get_executions(list_options=metadata_store.ListOptions(
                filter_query=(f"contexts_a.name = '{self.pipeline_context.name}' AND contexts_a.type = "
                              f"'{PIPELINE_CONTEXT}' AND custom_properties.cache_fingerprint.string_value = "
                              f"'{fingerprint}' AND last_known_state = COMPLETE"),
                order_by=metadata_store.OrderByField.CREATE_TIME, is_asc=False, limit=1))
            if not executions:
                return None
            events = self._store.get_events_by_execution_ids([executions[0].id])
        outputs: Dict[str, List[int]] = {}
        for event in sorted(events, key=lambda e: (e.path.steps[0].key, e.path.steps[1].index)):
            if event.type == metadata_store_pb2.Event.OUTPUT:
                outputs.setdefault(event.path.steps[0].key, []).append(event.artifact_id)
        return outputs

    def task_executions(self, run_id: str) -> Dict[str, metadata_store_pb2.Execution]:
        """The executions of one run by task name."""
        with self._lock:
            run = self._store.get_context_by_type_and_name(RUN_CONTEXT, run_id)
            executions = self._store.get_executions_by_context(run.id) if run else []
        return {e.custom_properties["task_name"].string_value: e for e in executions}

    def output_artifacts(self, execution_id: int) -> Dict[str, List[metadata_store_pb2.Artifact]]:
        with self._lock:
            events = self._store.get_events_by_execution_ids([execution_id])
        outputs: Dict[str, List[int]] = {}
        for event in events:
            if event.type == metadata_store_pb2.Event.OUTPUT:
                outputs.setdefault(event.path.steps[0].key, []).append(event.artifact_id)
        return {name: self.artifacts(ids) for name, ids in outputs.items()}

    def input_artifacts(self, execution_id: int) -> Dict[str, List[metadata_store_pb2.Artifact]]:
        with self._lock:
            events = self._store.get_events_by_execution_ids([execution_id])
        inputs: Dict[str, List[int]] = {}
        for event in events:
            if event.type == metadata_store_pb2.Event.INPUT:
                inputs.setdefault(event.path.steps[0].key, []).append(event.artifact_id)
        return {name: self.artifacts(ids) for name, ids in inputs.items()}
