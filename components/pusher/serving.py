"""The TF Serving model folder `<base>/<version>/`, written atomically and without duplicates.

A version is copied into a hidden `.tmp-<version>` folder beside the versions (TF Serving only loads numeric
folder names) and renamed into place once complete, so a reader that lists versions never sees a partial one,
even if the pushing process is killed. Each pushed version carries `hubtfx_push.json` with a content
fingerprint of the model; a model whose fingerprint equals the latest served version's is not pushed again.
Renames are atomic on local and POSIX file systems; on object stores (gs://) they are copy-and-delete.
"""
import dataclasses
import hashlib
import json
import logging
import os
import time
from typing import List, Optional

import tensorflow as tf

PUSH_RECORD_FILE = "hubtfx_push.json"
TEMP_PREFIX = ".tmp-"
# saved_model.pb is written last: TF Serving and tf.saved_model treat it as "this folder is a model".
_SAVED_MODEL_FILE = "saved_model.pb"
_CHUNK_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True)
class PushResult:
    pushed: bool
    version: str
    path: str
    fingerprint: str
    reason: str = ""


def model_files(model_dir: str) -> List[str]:
    """Paths of the model's files relative to `model_dir`, sorted, the push record left out."""
    files = []
    for folder, _, names in tf.io.gfile.walk(model_dir):
        relative_folder = os.path.relpath(folder, model_dir)
        files += [os.path.normpath(os.path.join(relative_folder, n)) for n in names if n != PUSH_RECORD_FILE]
    return sorted(files)


def model_fingerprint(model_dir: str) -> str:
    """sha256 over every file's relative path and content: equal iff the served model would be the same."""
    digest = hashlib.sha256()
    for relative in model_files(model_dir):
        digest.update(relative.encode() + b"\0")
        with tf.io.gfile.GFile(os.path.join(model_dir, relative), "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK_BYTES), b""):
                digest.update(chunk)
    return digest.hexdigest()


def served_versions(base_dir: str) -> List[int]:
    """Numeric version folders under `base_dir`, ascending (what TF Serving would consider)."""
    if not tf.io.gfile.isdir(base_dir):
        return []
    names = [entry.rstrip("/") for entry in tf.io.gfile.listdir(base_dir)]
    return sorted(int(name) for name in names if name.isdigit())


def latest_version_dir(base_dir: str) -> Optional[str]:
    """The folder TF Serving serves by default (the highest version), or None before the first push."""
    versions = served_versions(base_dir)
    return os.path.join(base_dir, str(versions[-1])) if versions else None


def served_fingerprint(version_dir: str) -> str:
    """The fingerprint recorded at push time, or computed for versions pushed by other tools."""
    record_path = os.path.join(version_dir, PUSH_RECORD_FILE)
    if tf.io.gfile.exists(record_path):
        with tf.io.gfile.GFile(record_path) as f:
            return json.load(f)["fingerprint"]
    return model_fingerprint(version_dir)


def remove_stale_temp_folders(base_dir: str) -> List[str]:
    """Deletes `.tmp-*` folders that a killed push left behind; returns their names."""
    if not tf.io.gfile.isdir(base_dir):
        return []
    stale = [e.rstrip("/") for e in tf.io.gfile.listdir(base_dir) if e.startswith(TEMP_PREFIX)]
    for name in stale:
        logging.warning("Removing %s, left behind by an interrupted push.", os.path.join(base_dir, name))
        tf.io.gfile.rmtree(os.path.join(base_dir, name))
    return stale


def next_version(existing: List[int], now: Optional[float] = None) -> int:
    """A Unix-time version, as TFX's Pusher uses, but always above the existing ones (two pushes in a second)."""
    return max(int(now if now is not None else time.time()), (existing[-1] + 1) if existing else 0)


def copy_model(source_dir: str, target_dir: str) -> None:
    """Copies every file, saved_model.pb last."""
    files = model_files(source_dir)
    ordered = [f for f in files if f != _SAVED_MODEL_FILE] + [f for f in files if f == _SAVED_MODEL_FILE]
    for relative in ordered:
        target = os.path.join(target_dir, relative)
        tf.io.gfile.makedirs(os.path.dirname(target))
        tf.io.gfile.copy(os.path.join(source_dir, relative), target, overwrite=True)


def push_model(model_dir: str, base_dir: str) -> PushResult:
    """Publishes `model_dir` as a new version under `base_dir`, unless the latest version is the same model.

    Only one push per base_dir may run at a time (the pipeline's Pusher is its only writer); the temp folder
    of a killed push is cleaned up by the next push.
    """
    fingerprint = model_fingerprint(model_dir)
    remove_stale_temp_folders(base_dir)
    latest_dir = latest_version_dir(base_dir)
    if latest_dir and served_fingerprint(latest_dir) == fingerprint:
        latest = os.path.basename(latest_dir)
        return PushResult(False, latest, latest_dir, fingerprint, f"identical to the served version {latest}")
    version = str(next_version(served_versions(base_dir)))
    temp_dir = os.path.join(base_dir, TEMP_PREFIX + version)
    final_dir = os.path.join(base_dir, version)
    copy_model(model_dir, temp_dir)
    with tf.io.gfile.GFile(os.path.join(temp_dir, PUSH_RECORD_FILE), "w") as f:
        json.dump({"fingerprint": fingerprint, "source": model_dir, "pushed_at": time.time()}, f, indent=2)
    tf.io.gfile.rename(temp_dir, final_dir)
    return PushResult(True, version, final_dir, fingerprint)
