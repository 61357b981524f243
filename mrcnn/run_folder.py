"""A training run's hold on its run folder: one run at a time, and the leftovers of a killed run cleared.

:func:`hold_run_folder` (used by ``MaskRCNN.train``, and by ``lesion/train.py`` around everything it writes in the
folder) creates the lock file ``<run folder>/train.lock``, which names the process (PID, host, start time):

- a second run into a folder in use is refused with :class:`RunFolderInUseError`, which names the folder and the
  process that holds it;
- a lock left by a process that no longer runs (``kill -9``, a crash, a power cut) is recognised, taken over and
  named in a warning;
- once the lock is held, the temporary files of interrupted atomic writes (:func:`mrcnn.atomic.leftover_temp_files`,
  e.g. a checkpoint cut short by ``kill -9``) are deleted and named in a warning;
- the lock is released when the ``with`` block ends, also on an exception. Within one process the hold is
  re-entrant (``lesion/train.py`` holds the folder while ``MaskRCNN.train`` takes it again).

Whether the holder still runs is asked of the operating system on POSIX (``kill(pid, 0)``, and on Linux the
process start time in ``/proc``, so a PID reused by another process does not keep a stale lock alive). A lock
written on another host, or on a system where this cannot be asked, is taken as held: the message says which file
to delete once that run is known to be over.

Example::

    with hold_run_folder("logs/lesion20240501T1012"):
        ...  # write checkpoints
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket
import tempfile
import threading
import uuid
from typing import Iterator

from .atomic import remove_leftover_temp_files

__all__ = ["LOCK_NAME", "RunFolderInUseError", "hold_run_folder"]

logger = logging.getLogger(__name__)

LOCK_NAME = "train.lock"
"""The lock file's name inside a run folder."""

# Folders this process holds: real path -> [nesting depth, the token written in the lock file].
_held: dict[str, list] = {}
_held_guard = threading.Lock()


class RunFolderInUseError(RuntimeError):
    """Another training run holds the run folder; the message names the folder, the process and the lock file."""


def _process_start(pid: int) -> str | None:
    """The start time of a process in clock ticks since boot (Linux /proc), None where unknown; "zombie" for a
    process that has exited but was not yet reaped."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rpartition(")")[2].split()  # After the command name, which may hold spaces.
    except OSError:
        return None
    if len(fields) < 20:
        return None
    return "zombie" if fields[0] in ("Z", "X") else fields[19]


def _runs(holder: dict) -> bool:
    """Whether the process that wrote the lock ``holder`` may still run (True where it cannot be told)."""
    if holder.get("host") != socket.gethostname() or os.name != "posix":
        return True
    pid = holder.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: a process of another user.
        return True
    start = _process_start(pid)
    if start == "zombie":
        return False
    recorded = holder.get("process_start")
    return not (start is not None and recorded is not None and start != recorded)  # Else the PID was reused.


def _describe(holder: dict) -> str:
    return f"PID {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}"


def _read(lock: str) -> tuple[str, dict] | None:
    """The raw text and the parsed content of the lock file; None when it is gone. Unreadable content is ``{}``."""
    try:
        with open(lock, encoding="utf-8", errors="replace") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(raw)
    except json.JSONDecodeError:
        holder = {}
    return raw, holder if isinstance(holder, dict) else {}


def _create(lock: str, content: str) -> bool:
    """Create the lock file with ``content`` in one step (a hard link of a complete file); False if it exists."""
    directory = os.path.dirname(lock)
    fd, tmp = tempfile.mkstemp(prefix=f".{LOCK_NAME}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        try:
            os.link(tmp, lock)
        except FileExistsError:
            return False
        except FileNotFoundError:  # Another run cleared the temporary file as a leftover: try again.
            return False
        except OSError:  # No hard links on this file system: an exclusive create (content written just after).
            try:
                with open(lock, "x", encoding="utf-8") as f:
                    f.write(content)
            except FileExistsError:
                return False
        return True
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)


def _take_over(lock: str, seen: str) -> None:
    """Remove the stale lock whose content was ``seen``, unless another run took it over meanwhile."""
    aside = f"{lock}.stale.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        os.rename(lock, aside)  # Only one of several runs doing this at once moves the file.
    except FileNotFoundError:
        return
    try:
        with open(aside, encoding="utf-8", errors="replace") as f:
            moved = f.read()
        if moved != seen:  # A live run's lock, created since we read the stale one: put it back.
            with contextlib.suppress(OSError):
                os.link(aside, lock)
    finally:
        with contextlib.suppress(OSError):
            os.remove(aside)


def _acquire(folder: str, lock: str, token: str) -> None:
    content = json.dumps({
        "pid": os.getpid(), "host": socket.gethostname(), "process_start": _process_start(os.getpid()),
        "started": datetime.datetime.now().isoformat(timespec="seconds"), "token": token}) + "\n"
    for _ in range(20):
        if _create(lock, content):
            return
        found = _read(lock)
        if found is None:
            continue  # Released meanwhile.
        raw, holder = found
        if holder and _runs(holder):
            checked = "" if holder.get("host") == socket.gethostname() and os.name == "posix" else \
                "; whether it still runs cannot be checked from here"
            raise RunFolderInUseError(
                f"{folder}: the run folder is in use by another training run ({_describe(holder)}{checked}); wait "
                f"for it to end or train into another folder; if no such run is going on, delete {lock}")
        what = f"a training run that no longer runs ({_describe(holder)})" if holder else "an unreadable lock file"
        logger.warning("%s: taking over the lock left by %s: %s", folder, what, lock)
        _take_over(lock, raw)
    raise RunFolderInUseError(f"{folder}: could not take the lock {lock}: other runs keep changing it")


@contextlib.contextmanager
def hold_run_folder(folder: str | os.PathLike) -> Iterator[str]:
    """Hold a run folder for training (see the module docstring): create it, lock it, clear leftover temporary files.

    Args:
        folder: the run folder (created if missing).

    Yields:
        ``folder`` as a string.

    Raises:
        RunFolderInUseError: another process that still runs holds the folder.
    """
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    key = os.path.realpath(folder)
    lock = os.path.join(folder, LOCK_NAME)
    with _held_guard:
        entry = _held.get(key)
        if entry is None:
            token = uuid.uuid4().hex
            _acquire(folder, lock, token)
            entry = _held[key] = [0, token]
            removed = remove_leftover_temp_files(folder)
            if removed:
                logger.warning("%s: removed %d temporary file(s) left by an interrupted write: %s", folder,
                               len(removed), ", ".join(os.path.basename(p) for p in removed))
        entry[0] += 1
    try:
        yield folder
    finally:
        with _held_guard:
            entry[0] -= 1
            if entry[0] == 0:
                del _held[key]
                found = _read(lock)
                if found is not None and found[1].get("token") == entry[1]:
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(lock)
