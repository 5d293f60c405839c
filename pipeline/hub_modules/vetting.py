"""Static vetting of a SavedModel image module before the pipeline runs it.

A SavedModel is a program: its functions may read or write files, call back into Python or talk to the
network, and they run with the pipeline's credentials. An image module needs none of that, so
``vet_module`` parses saved_model.pb (nothing is loaded or executed) and lists every such op in the
functions the module can run: ``__call__``, the signatures, any other saved function, the init/asset ops.

Every SavedModel also carries checkpoint save/restore functions (SaveV2, RestoreV2, MergeV2Checkpoints,
...). Checkpoint I/O ops are accepted there and only there; the other dangerous ops are flagged even inside
them, because the restore function runs when the module is loaded.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
from typing import Dict, Iterable, List, Set, Tuple

from hubtfx.components.common.contract import read_saved_model_proto

ALLOW_UNSAFE_FLAG = "--allow-unsafe-module-ops"

# Ops that touch the file system outside checkpointing (readers, writers, file-backed datasets and tables).
FILE_SYSTEM_OPS = frozenset({
    "ReadFile", "WriteFile", "MatchingFiles", "ImmutableConst", "LoadAndRemapMatrix",
    "WholeFileReader", "WholeFileReaderV2", "TFRecordReader", "TFRecordReaderV2", "TextLineReader",
    "TextLineReaderV2", "FixedLengthRecordReader", "FixedLengthRecordReaderV2", "IdentityReader",
    "IdentityReaderV2", "LMDBReader",
    "TFRecordDataset", "TFRecordDatasetV2", "TextLineDataset", "FixedLengthRecordDataset",
    "FixedLengthRecordDatasetV2", "LMDBDataset", "ExperimentalLMDBDataset", "SqlDataset", "ExperimentalSqlDataset",
    "CSVDataset", "CSVDatasetV2", "ExperimentalCSVDataset", "CacheDataset", "CacheDatasetV2",
    "SaveDataset", "SaveDatasetV2", "LoadDataset", "SnapshotDataset", "SnapshotDatasetV2", "SnapshotDatasetReader",
    "DatasetToTFRecord", "ExperimentalDatasetToTFRecord",
    "InitializeTableFromTextFile", "InitializeTableFromTextFileV2",
    "CreateSummaryFileWriter", "CreateSummaryDbWriter", "DebugIdentityV2", "DebugIdentityV3",
})
# Python callbacks run arbitrary code in the host process.
PYTHON_CALLBACK_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
# Remote procedure calls can exfiltrate data or receive commands.
NETWORK_OPS = frozenset({"RpcClient", "RpcCall", "RpcServer", "RpcServerStart", "RpcServerRegister"})
# Checkpoint file I/O: expected in the SavedModel's own save/restore functions, suspicious anywhere else.
CHECKPOINT_IO_OPS = frozenset({
    "Save", "SaveSlices", "SaveV2", "Restore", "RestoreSlice", "RestoreV2", "MergeV2Checkpoints",
})
DANGEROUS_OPS = FILE_SYSTEM_OPS | PYTHON_CALLBACK_OPS | NETWORK_OPS


class UnsafeModuleError(ValueError):
    """The module's graph uses file-system, process, network or Python-callback ops."""


@dataclasses.dataclass(frozen=True)
class Finding:
    """One dangerous op type used in one function (or top-level graph node)."""

    op: str
    function: str
    entry_points: Tuple[str, ...]  # The saved functions/signatures from which ``function`` is reachable.


@dataclasses.dataclass(frozen=True)
class VettingReport:
    """What ``vet_module`` found. ``findings`` is empty for a safe module."""

    module_dir: str
    entry_points: Tuple[str, ...]
    functions_scanned: int
    findings: Tuple[Finding, ...]
    allowed_unsafe_ops: bool

    @property
    def is_safe(self) -> bool:
        return not self.findings

    @property
    def unsafe_ops(self) -> Tuple[str, ...]:
        return tuple(sorted({f.op for f in self.findings}))

    def describe_findings(self) -> str:
        """One line per finding: op, function and the entry points that reach it."""
        return "\n".join(
            f"  {f.op} in {f.function} (reachable from {', '.join(f.entry_points)})" for f in self.findings
        )


def _load_meta_graph(module_dir: str):
    proto = read_saved_model_proto(module_dir)
    if len(proto.meta_graphs) != 1:
        raise UnsafeModuleError(
            f"{module_dir} has {len(proto.meta_graphs)} MetaGraphs; a TF2 image module has exactly one."
        )
    return proto.meta_graphs[0]


def _called_functions(node_def, library_names: Set[str]) -> Iterable[str]:
    """Functions a NodeDef calls: as its op type, or through function-valued attributes (If, While, calls)."""
    if node_def.op in library_names:
        yield node_def.op
    for attr in node_def.attr.values():
        if attr.HasField("func"):
            yield attr.func.name
        for func in attr.list.func:
            yield func.name


def _saver_nodes(meta_graph) -> Set[str]:
    """Top-level graph nodes that implement checkpoint save/restore (ancestors of the saver_def tensors)."""
    nodes = {n.name: n for n in meta_graph.graph_def.node}
    saver = meta_graph.saver_def
    pending = [t.split(":")[0].lstrip("^") for t in (saver.filename_tensor_name, saver.save_tensor_name,
                                                     saver.restore_op_name) if t]
    found: Set[str] = set()
    while pending:
        name = pending.pop()
        if name in found or name not in nodes:
            continue
        found.add(name)
        pending.extend(i.split(":")[0].lstrip("^") for i in nodes[name].input)
    return found


def _object_graph_entry_points(meta_graph) -> Tuple[Dict[str, List[str]], Set[str]]:
    """{entry point path: concrete functions} for saved functions, plus the functions of custom saveables."""
    graph = meta_graph.object_graph_def
    paths = {0: ""}
    queue = collections.deque([0])
    while queue:  # Breadth-first, so each object is named by its shortest path from the root.
        node_id = queue.popleft()
        for child in graph.nodes[node_id].children:
            if child.node_id not in paths:
                paths[child.node_id] = f"{paths[node_id]}/{child.local_name}".lstrip("/")
                queue.append(child.node_id)
    saveable_function_ids = {
        sid for node in graph.nodes for s in node.saveable_objects.values()
        for sid in (s.save_function, s.restore_function)
    }
    entry_points: Dict[str, List[str]] = {}
    checkpoint_functions: Set[str] = set()
    for node_id, node in enumerate(graph.nodes):
        kind = node.WhichOneof("kind")
        if kind == "function":
            names = list(node.function.concrete_functions)
        elif kind == "bare_concrete_function":
            names = [node.bare_concrete_function.concrete_function_name]
        else:
            continue
        if node_id in saveable_function_ids:
            checkpoint_functions.update(names)
        else:
            entry_points.setdefault(paths.get(node_id, f"object {node_id}"), []).extend(names)
    return entry_points, checkpoint_functions


def _reachable(roots: Iterable[str], library, library_names: Set[str]) -> Set[str]:
    """Library functions reachable from ``roots`` through calls and registered gradient functions."""
    gradients = {g.function_name: g.gradient_func for g in library.gradient}
    functions = {f.signature.name: f for f in library.function}
    seen: Set[str] = set()
    pending = [r for r in roots if r in library_names]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        callees = [c for n in functions[name].node_def for c in _called_functions(n, library_names)]
        if name in gradients:
            callees.append(gradients[name])
        pending.extend(c for c in callees if c in library_names and c not in seen)
    return seen


def _unsafe_ops(node_defs, checkpoint_io_allowed: bool) -> Set[str]:
    """Dangerous op types among ``node_defs``; tf.print to a file counts as a file write."""
    flagged = set()
    for node in node_defs:
        if node.op in DANGEROUS_OPS or (node.op in CHECKPOINT_IO_OPS and not checkpoint_io_allowed):
            flagged.add(node.op)
        elif node.op == "PrintV2" and node.attr["output_stream"].s.startswith(b"file://"):
            flagged.add("PrintV2(output_stream=file://...)")
    return flagged


def vet_module(module_dir: str, allow_unsafe_ops: bool = False) -> VettingReport:
    """Scans the module's graph for file-system, process, network and Python-callback ops.

    Args:
      module_dir: SavedModel directory.
      allow_unsafe_ops: report unsafe ops (with a warning) instead of raising.

    Raises:
      UnsafeModuleError: unsafe ops were found and ``allow_unsafe_ops`` is False.
    """
    meta_graph = _load_meta_graph(module_dir)
    library = meta_graph.graph_def.library
    library_names = {f.signature.name for f in library.function}
    functions = {f.signature.name: f for f in library.function}

    entry_points, checkpoint_functions = _object_graph_entry_points(meta_graph)
    saver_nodes = _saver_nodes(meta_graph)
    top_level = [n for n in meta_graph.graph_def.node if n.name not in saver_nodes]
    saver_top_level = [n for n in meta_graph.graph_def.node if n.name in saver_nodes]
    for node in top_level:  # Signature wrappers, init and asset ops are called from top-level graph nodes.
        called = list(_called_functions(node, library_names))
        if called:
            entry_points.setdefault(f"graph node {node.name}", []).extend(called)
    checkpoint_roots = [c for n in saver_top_level for c in _called_functions(n, library_names)]
    checkpoint_functions |= _reachable(list(checkpoint_functions) + checkpoint_roots, library, library_names)

    reached_from: Dict[str, Set[str]] = collections.defaultdict(set)
    for entry, roots in entry_points.items():
        for name in _reachable(roots, library, library_names):
            reached_from[name].add(entry)
    for name in checkpoint_functions - set(reached_from):
        reached_from[name].add("checkpoint save/restore")

    findings = [Finding(op, "top-level graph", ("the SavedModel graph",))
                for op in sorted(_unsafe_ops(top_level, False) | _unsafe_ops(saver_top_level, True))]
    for name in sorted(reached_from):
        # Checkpoint I/O is only legitimate in functions that nothing but the saver uses.
        checkpoint_only = name in checkpoint_functions and reached_from[name] == {"checkpoint save/restore"}
        for op in sorted(_unsafe_ops(functions[name].node_def, checkpoint_io_allowed=checkpoint_only)):
            findings.append(Finding(op, name, tuple(sorted(reached_from[name]))))

    report = VettingReport(
        module_dir=module_dir,
        entry_points=tuple(sorted(entry_points)),
        functions_scanned=len(reached_from),
        findings=tuple(findings),
        allowed_unsafe_ops=allow_unsafe_ops,
    )
    _raise_or_log(report)
    return report


def _raise_or_log(report: VettingReport) -> None:
    """Raises for unsafe modules unless overridden; logs the outcome either way."""
    if report.is_safe:
        logging.info("Module %s passed vetting (%d functions scanned).", report.module_dir, report.functions_scanned)
        return
    message = (
        f"The module at {report.module_dir} uses ops that can access files, run Python or use the network: "
        f"{', '.join(report.unsafe_ops)}.\n{report.describe_findings()}\n"
    )
    if not report.allowed_unsafe_ops:
        raise UnsafeModuleError(
            message + f"An image module should not need them. If you trust this module, rerun with "
            f"{ALLOW_UNSAFE_FLAG} (vet_module(..., allow_unsafe_ops=True))."
        )
    logging.warning("%sAccepted because unsafe module ops are allowed (%s).", message, ALLOW_UNSAFE_FLAG)
