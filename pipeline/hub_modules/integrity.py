"""Is a module folder a complete SavedModel? Checked before anything loads, vets or hashes the module.

A module folder can be unusable in ways that otherwise surface much later, as a bare traceback: a TF Hub cache
folder whose files a temp-folder cleaner deleted (tensorflow/hub#896, #575, #646, #850), an interrupted copy or
download that left a truncated saved_model.pb or variables file, a folder without its variables, a malformed
contract JSON. ``find_problem`` names the first such defect.

Nothing in the module is executed: saved_model.pb is only parsed, and the variables are read with TensorFlow's
checkpoint reader, which checks each tensor's CRC32C as it reads it (tensor_bundle.cc), so a truncated or
corrupted data shard is found here instead of in the Trainer. saved_model.pb and the variables are read through
``tf.io.gfile``, so a gs:// module folder gets the same checks (its contract JSON is read where hubtfx reads it).
"""
from __future__ import annotations

import os
import posixpath
from typing import Optional

from hubtfx.components.common import contract as module_contract

SAVED_MODEL_FILENAME = "saved_model.pb"
# tf.saved_model writes the variables as a tensor bundle with this prefix (variables/variables.index + shards).
VARIABLES_PREFIX = posixpath.join("variables", "variables")
EMPTY = "is empty"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def find_problem(module_dir: str) -> Optional[str]:
    """Why ``module_dir`` is not a complete, readable module; None when it is.

    Checks, in order: the folder exists and is a folder, is not empty, holds a parseable ``saved_model.pb`` with
    a MetaGraph, holds ``variables/variables.index`` when the graph has variables, every variable tensor can be
    read back with a matching checksum, and ``hubtfx_contract.json`` (if present) is a valid contract.

    Args:
      module_dir: a local folder or any path ``tf.io.gfile`` reads (gs://...).

    Returns:
      A phrase that completes "the module folder ... <phrase>", e.g. "has no saved_model.pb", or None.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  # Lazy: the builder imports this module.
    try:
        return _find_problem(module_dir)
    except (OSError, tf.errors.OpError) as e:  # e.g. permission denied on the folder or a file in it.
        return f"cannot be read ({_first_line(e)})"


def _find_problem(module_dir: str) -> Optional[str]:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from google.protobuf.message import DecodeError  # pylint: disable=import-outside-toplevel
    from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=import-outside-toplevel

    if not tf.io.gfile.exists(module_dir):
        return "does not exist"
    if not tf.io.gfile.isdir(module_dir):
        return "is a file, not a SavedModel folder"
    entries = tf.io.gfile.listdir(module_dir)
    if not entries:
        return EMPTY
    saved_model_path = os.path.join(module_dir, SAVED_MODEL_FILENAME)
    if not tf.io.gfile.exists(saved_model_path):
        present = ", ".join(sorted(e.rstrip("/") for e in entries)[:6])
        return f"has no {SAVED_MODEL_FILENAME} (it holds only: {present})"
    proto = saved_model_pb2.SavedModel()
    try:
        with tf.io.gfile.GFile(saved_model_path, "rb") as f:
            proto.ParseFromString(f.read())
    except DecodeError as e:
        return f"has a truncated or corrupt {SAVED_MODEL_FILENAME} ({_first_line(e)})"
    # An empty or cut-short file can still parse (protobuf fields are optional): a SavedModel has a MetaGraph.
    if not proto.meta_graphs:
        return f"has a truncated or empty {SAVED_MODEL_FILENAME} (no MetaGraph in it)"
    problem = _variables_problem(module_dir, proto.meta_graphs[0])
    if problem:
        return problem
    if os.path.exists(module_contract.contract_path(module_dir)):  # Where read_contract looks for it.
        try:
            module_contract.read_contract(module_dir)
        except module_contract.ContractError as e:
            return f"has a malformed {module_contract.CONTRACT_FILENAME} ({e})"
    return None


def _variables_problem(module_dir: str, meta_graph) -> Optional[str]:
    """Missing, truncated or corrupt variables, or None; a graph without variables needs no variables/."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from tensorflow.python.training import py_checkpoint_reader  # pylint: disable=import-outside-toplevel

    has_variables = (any(node.WhichOneof("kind") == "variable" for node in meta_graph.object_graph_def.nodes)
                     or bool(meta_graph.saver_def.restore_op_name))  # TF1 Hub format: variables via the saver.
    prefix = os.path.join(module_dir, VARIABLES_PREFIX)
    if not tf.io.gfile.exists(prefix + ".index"):
        if not has_variables:
            return None
        folder = os.path.join(module_dir, "variables")
        state = "is empty" if tf.io.gfile.isdir(folder) and not tf.io.gfile.listdir(folder) else "is missing"
        return f"has no {VARIABLES_PREFIX}.index: its variables/ folder {state}, so the weights are gone"
    try:
        reader = py_checkpoint_reader.NewCheckpointReader(prefix)
        for name in sorted(reader.get_variable_to_shape_map()):
            reader.get_tensor(name)  # Reads the bytes and verifies the tensor's CRC32C.
    except Exception as e:  # pylint: disable=broad-except  # TF raises OpError subclasses and plain ValueErrors.
        return f"has truncated or corrupt variables in variables/ ({_first_line(e)})"
    return None
