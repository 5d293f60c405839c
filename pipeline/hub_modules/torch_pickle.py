"""Reads legacy (non-zip) PyTorch checkpoints into numpy arrays without torch and without unsafe unpickling.

A legacy ``torch.save`` file is a sequence of pickles: magic number, protocol version, sys_info, the main
object (here a state dict whose tensors reference storages through persistent ids), the list of storage
keys, and then for every key an int64 element count followed by the raw little-endian storage bytes.

Unpickling runs arbitrary code by design, so every pickle is read through ``_RestrictedUnpickler``, which
only resolves the handful of globals this format needs and refuses everything else *before* it is called.
"""
from __future__ import annotations

import collections
import logging
import pickle
import zipfile
from typing import Any, BinaryIO, Dict, Tuple

import numpy as np

_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001

# Storage classes of the legacy format and their element types (little endian, as written by torch).
_STORAGE_DTYPES: Dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class UnsafePickleError(ValueError):
    """The checkpoint asked the unpickler for a global outside the allow-list (possible code execution)."""


class _StorageType:
    """Stand-in for ``torch.<X>Storage``: only carries the numpy dtype of the storage."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _TensorRef:
    """A tensor view (storage key, offset, size, stride) to be materialised once the storages are read."""

    def __init__(self, storage: Tuple[str, _StorageType], offset: int, size: Tuple[int, ...], stride: Tuple[int, ...]):
        self.key, self.storage_type = storage
        self.offset = offset
        self.size = tuple(size)
        self.stride = tuple(stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """Replacement for ``torch._utils._rebuild_tensor_v2`` that records the view instead of building a tensor."""
    del requires_grad, backward_hooks, metadata  # Irrelevant for numpy weights.
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    """Replacement for ``torch._utils._rebuild_parameter``: a Parameter is just its tensor for our purposes."""
    del requires_grad, backward_hooks
    return data


_ALLOWED_GLOBALS: Dict[Tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals and turns storage persistent ids into references."""

    def __init__(self, file: BinaryIO, path: str):
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"Refusing to load {self._path}: its pickle asks for the global '{module}.{name}', which is not "
                f"needed by a PyTorch state dict and could execute code. Only load checkpoints from a trusted "
                f"source; allowed globals are {sorted('.'.join(k) for k in _ALLOWED_GLOBALS)}."
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        # ('storage', storage_type, key, location, numel[, view_metadata]) in the legacy format.
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise UnsafePickleError(f"Refusing to load {self._path}: unexpected persistent id {pid!r}.")
        return (str(pid[2]), pid[1])


def _load_one(file: BinaryIO, path: str) -> Any:
    """Reads the next pickle of the sequence through the restricted unpickler."""
    return _RestrictedUnpickler(file, path).load()


def _read_storages(file: BinaryIO, keys, dtypes: Dict[str, np.dtype], path: str) -> Dict[str, np.ndarray]:
    """Reads the raw storages that follow the pickles: per key an int64 element count, then the bytes."""
    storages = {}
    for key in keys:
        numel = int(np.frombuffer(file.read(8), dtype="<i8")[0])
        dtype = dtypes.get(key)
        if dtype is None:
            raise ValueError(f"{path}: storage '{key}' is listed but no tensor references it.")
        raw = file.read(numel * dtype.itemsize)
        if len(raw) != numel * dtype.itemsize:
            raise ValueError(f"{path}: truncated storage '{key}' (expected {numel} elements).")
        storages[key] = np.frombuffer(raw, dtype=dtype)
    return storages


def _materialise(ref: _TensorRef, storages: Dict[str, np.ndarray]) -> np.ndarray:
    """Builds a contiguous native-endian copy of a tensor view over its storage."""
    flat = storages[ref.key]
    # as_strided does no bounds checking: a crafted file must not make us read memory outside the storage.
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride) if n > 0)
    if ref.offset < 0 or any(s < 0 for s in ref.stride) or (0 not in ref.size and last >= flat.size):
        raise ValueError(f"Tensor view {ref.size}/{ref.stride}+{ref.offset} exceeds storage '{ref.key}'.")
    itemsize = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[ref.offset:], shape=ref.size, strides=tuple(s * itemsize for s in ref.stride), writeable=False
    )
    return np.ascontiguousarray(view, dtype=flat.dtype.newbyteorder("="))


def load_state_dict(path: str) -> "collections.OrderedDict[str, np.ndarray]":
    """Loads a legacy-format PyTorch state dict as an ordered mapping from parameter name to numpy array.

    Raises:
      UnsafePickleError: the file asks for any global other than the few a state dict needs.
      ValueError: the file is a zip-format (torch >= 1.6 default) checkpoint or is not a legacy checkpoint.
    """
    path = str(path)
    if zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is a zip-format (new-style) PyTorch checkpoint; only the legacy format is supported. "
            f"Re-save it with torch.save(..., _use_new_zipfile_serialization=False)."
        )
    with open(path, "rb") as file:
        magic = _load_one(file, path)
        if magic != _LEGACY_MAGIC_NUMBER:
            raise ValueError(f"{path} is not a legacy PyTorch checkpoint (bad magic number {magic!r}).")
        version = _load_one(file, path)
        if version != _LEGACY_PROTOCOL_VERSION:
            raise ValueError(f"{path}: unsupported legacy protocol version {version!r}.")
        sys_info = _load_one(file, path)
        if not sys_info.get("little_endian", True):
            raise ValueError(f"{path} was saved on a big-endian machine; this is not supported.")
        state = _load_one(file, path)
        keys = _load_one(file, path)
        refs = {name: value for name, value in state.items() if isinstance(value, _TensorRef)}
        dtypes = {ref.key: ref.storage_type.dtype for ref in refs.values()}
        storages = _read_storages(file, keys, dtypes, path)
    result = collections.OrderedDict((name, _materialise(ref, storages)) for name, ref in refs.items())
    logging.info("Loaded %d tensors from %s", len(result), path)
    return result
