"""Atomic file writes: a temporary file in the destination folder, then ``os.replace``.

A crash or an exception mid-write never leaves a partial file under the final name, and an earlier file of that
name stays as it was. Used for checkpoints, caches and every output the command-line tools write.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator

__all__ = ["atomic_path", "write_bytes_atomic"]


def _fsync_dir(directory: str) -> None:
    """Persist a rename on POSIX; a no-op where directories cannot be opened (Windows)."""
    if sys.platform.startswith("win"):
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(filepath: str | os.PathLike, fsync: bool = True) -> Iterator[str]:
    """Yield a temporary path next to ``filepath``; move it onto ``filepath`` only if the body succeeds.

    Args:
        filepath: the destination; missing folders are created.
        fsync: flush the file and the rename to disk (checkpoints); off for caches.
    """
    filepath = os.fspath(filepath)
    directory = os.path.dirname(os.path.abspath(filepath))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(filepath)}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, filepath)
        if fsync:
            _fsync_dir(directory)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes, fsync: bool = False) -> str:
    """Write ``data`` to ``path`` atomically; returns ``path`` as a string."""
    with atomic_path(path, fsync=fsync) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return os.fspath(path)
