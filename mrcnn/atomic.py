"""Atomic file writes: a temporary file in the destination folder, then ``os.replace``.

A crash or an exception mid-write never leaves a partial file under the final name, and an earlier file of that
name stays as it was. Used for checkpoints, caches and every output the command-line tools write.

The file gets the permissions a plain ``open(path, "w")`` would give it: those of the file it replaces, else
0o666 less the process umask (the temporary file itself is created private, 0o600).

The temporary file is ``.<name>.<8 random characters><suffix>`` (suffix ``.tmp`` by default). A process killed
mid-write (``kill -9``, a power cut) leaves it behind: :func:`remove_leftover_temp_files` clears a folder of them
once nothing writes there any more (training does it when it takes its run folder).

Writers on top of :func:`atomic_path`: raw bytes (:func:`write_bytes_atomic`), an image encoded by its extension
(:func:`write_image_atomic`), strict JSON (:func:`write_json_atomic`, NumPy values and NaN handled by
:func:`json_safe`) and CSV (:func:`write_csv_atomic`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import sys
import tempfile
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

__all__ = ["OutputDirError", "atomic_path", "ensure_output_dir", "json_safe", "leftover_temp_files",
           "remove_leftover_temp_files", "write_bytes_atomic", "write_csv_atomic", "write_image_atomic",
           "write_json_atomic"]

# The name atomic_path gives its temporary file with the default suffix: "." + the final name + "." + the 8 random
# characters of tempfile.mkstemp (lower-case letters, digits, "_") + ".tmp".
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


class OutputDirError(OSError):
    """An output folder that cannot be created or written; the message is ``<path>: <problem>``."""


def _read_umask() -> int:
    """The process umask, without changing it where the system reports it (Linux: /proc/self/status), since
    setting it to read it races with other threads creating files."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _final_mode(filepath: str) -> int:
    """Permission bits for a new version of ``filepath``: the old file's, else 0o666 less the umask."""
    try:
        return os.stat(filepath).st_mode & 0o7777
    except OSError:
        return 0o666 & ~_read_umask()


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
def atomic_path(filepath: str | os.PathLike, fsync: bool = True, suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temporary path next to ``filepath``; move it onto ``filepath`` only if the body succeeds.

    Args:
        filepath: the destination; missing folders are created.
        fsync: flush the file and the rename to disk (checkpoints); off for caches.
        suffix: the temporary file's extension, for writers that insist on one (Keras: ".keras").
    """
    filepath = os.fspath(filepath)
    directory = os.path.dirname(os.path.abspath(filepath))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(filepath)}.", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _final_mode(filepath))
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


def leftover_temp_files(directory: str | os.PathLike) -> list[str]:
    """The temporary files of :func:`atomic_path` (default suffix) in ``directory``, sorted; [] for no folder.

    Any such file is a leftover of a process killed while writing, unless a writer is busy in the folder now.
    """
    directory = os.fspath(directory)
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(os.path.join(directory, n) for n in names
                  if _TEMP_NAME.fullmatch(n) and os.path.isfile(os.path.join(directory, n)))


def remove_leftover_temp_files(directory: str | os.PathLike) -> list[str]:
    """Delete the :func:`leftover_temp_files` of ``directory``; call it only while no other process writes there.

    Returns:
        The paths removed (a file another process removed first is left out).
    """
    removed = []
    for path in leftover_temp_files(directory):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
            removed.append(path)
    return removed


def write_bytes_atomic(path: str | os.PathLike, data: bytes, fsync: bool = False) -> str:
    """Write ``data`` to ``path`` atomically; returns ``path`` as a string."""
    with atomic_path(path, fsync=fsync) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return os.fspath(path)


def write_image_atomic(path: str | os.PathLike, image: np.ndarray, jpeg_quality: int = 90) -> str:
    """Encode an image by the extension of ``path`` (PNG, JPEG) with OpenCV and write it atomically.

    Args:
        path: output file.
        image: uint8 [H, W] grey, [H, W, 3] RGB or [H, W, 4] RGBA.
        jpeg_quality: JPEG quality (JPEG files only).
    """
    import cv2

    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    ext = os.path.splitext(os.fspath(path))[1].lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if ext in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(ext, image, params)
    if not ok:
        raise OSError(f"{path}: OpenCV could not encode a {image.shape} {image.dtype} image as {ext}")
    return write_bytes_atomic(path, encoded.tobytes())


def json_safe(value: Any) -> Any:
    """``value`` with NumPy scalars and arrays as Python values and NaN / infinity as None (strict JSON)."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: str | os.PathLike, data: Any, indent: int | None = 1) -> str:
    """Write ``data`` as strict JSON (see :func:`json_safe`), atomically."""
    text = json.dumps(json_safe(data), indent=indent, allow_nan=False)
    return write_bytes_atomic(path, (text + "\n").encode("utf8"))


def write_csv_atomic(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]],
                     fields: Sequence[str] | None = None) -> str:
    """Write rows as CSV, atomically; floats with 6 significant digits, None as an empty cell.

    Args:
        path: output file.
        rows: dicts; the columns are ``fields``, or the union of the rows' keys in first-seen order.
        fields: column order.
    """
    if fields is None:
        fields = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else f"{v:.6g}" if isinstance(v, (float, np.floating)) else v)
                         for k, v in row.items()})
    return write_bytes_atomic(path, buffer.getvalue().encode("utf8"))


def _file_on_the_way(path: str) -> str | None:
    """The first existing component of ``path`` (itself included) that is not a folder, or None."""
    parts = os.path.abspath(path).split(os.sep)
    for i in range(2, len(parts) + 1):
        prefix = os.sep.join(parts[:i])
        if os.path.lexists(prefix) and not os.path.isdir(prefix):
            return prefix
    return None


def ensure_output_dir(path: str | os.PathLike) -> str:
    """Create the output folder ``path`` (and its parents) if needed and check that files can be written in it.

    For the command-line tools, before anything slow: a bad ``--out`` is reported before a model or data set is
    loaded, not after the work is done.

    Args:
        path: the folder.

    Returns:
        ``path`` as a string.

    Raises:
        OutputDirError: ``path`` (or a folder on the way to it) is a file, or the folder cannot be created or
            written (permissions, a read-only file system); the message is ``<path>: <problem>``.
    """
    path = os.fspath(path)
    blocker = _file_on_the_way(path)
    if blocker is not None:
        what = "is a file, not a folder" if blocker == os.path.abspath(path) else f"{blocker} is a file, not a folder"
        raise OutputDirError(f"{path}: {what}")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise OutputDirError(f"{path}: cannot create the folder ({exc.strerror or exc})") from exc
    try:  # os.access is not the truth on read-only mounts or with ACLs: try a file.
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise OutputDirError(f"{path}: the folder is not writable ({exc.strerror or exc})") from exc
    return path
