"""Guards for the local output folder: one writer at a time, and a clear error when it cannot be written.

The lock is an advisory flock on a file in the folder: the kernel releases it when its holder exits, even on
SIGKILL, so a crashed run never leaves a stale lock behind.
"""
import contextlib
import fcntl
import os
import shutil
import tempfile
from typing import Iterator, Optional

from hubtfx.pipeline.config import ConfigError

# A run writes examples, transformed data, models and ML Metadata: refuse to start with less free space.
MIN_FREE_BYTES = 200 * 1024 * 1024


class OutputFolderError(ConfigError):
    """The output folder cannot be used now; the message names it and says what to do."""


@contextlib.contextmanager
def exclusive_lock(output_dir: str, lock_name: str) -> Iterator[bool]:
    """Yields True if this process holds `<output_dir>/<lock_name>`, False if another process does."""
    os.makedirs(output_dir, exist_ok=True)
    # "a+" rather than "w": opening must not wipe the pid the current holder wrote.
    with open(os.path.join(output_dir, lock_name), "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            handle.truncate(0)
            handle.write(str(os.getpid()))
            handle.flush()
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def holder_pid(output_dir: str, lock_name: str) -> Optional[int]:
    """The pid recorded by the lock's current holder, if it wrote one."""
    try:
        with open(os.path.join(output_dir, lock_name), encoding="utf-8") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def check_writable(folder: str) -> None:
    """Creates `folder` and writes a probe file in it; raises OutputFolderError naming it if that fails or if
    the disk is nearly full, so a run fails at once instead of deep inside a Beam job or the Trainer."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".hubtfx-write-check-") as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
        free = shutil.disk_usage(folder).free
    except OSError as e:
        raise OutputFolderError(
            f"cannot write to the output folder {folder}: {e.strerror or e}. Fix its permissions, free space, or "
            "pass another --output.") from None
    if free < MIN_FREE_BYTES:
        raise OutputFolderError(
            f"the output folder {folder} has only {free // 2**20} MB free; a run needs at least "
            f"{MIN_FREE_BYTES // 2**20} MB. Free space there or pass another --output.")
