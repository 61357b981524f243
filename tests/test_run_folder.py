"""mrcnn.run_folder: the lock of a run folder (refused, stale, re-entrant, released) and leftover temporary files."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys

import pytest

from mrcnn import atomic
from mrcnn.run_folder import LOCK_NAME, RunFolderInUseError, hold_run_folder


def _write_lock(folder, pid, host=None):
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    lock.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "started": "2024-05-01T10:12:33"}))
    return lock


def _dead_pid() -> int:
    """The PID of a process that has ended (and was reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(done.stdout)


def test_lock_is_created_named_and_released(tmp_path):
    run = tmp_path / "run"
    with hold_run_folder(run) as folder:
        assert folder == str(run)
        content = json.loads((run / LOCK_NAME).read_text())
        assert content["pid"] == os.getpid() and content["host"] == socket.gethostname()
        with hold_run_folder(run):  # Re-entrant in one process (lesion/train.py, then MaskRCNN.train).
            pass
        assert (run / LOCK_NAME).exists()  # Still held by the outer block.
    assert not (run / LOCK_NAME).exists()


def test_lock_is_released_on_an_exception(tmp_path):
    with pytest.raises(KeyError):
        with hold_run_folder(tmp_path):
            raise KeyError("boom")
    assert not (tmp_path / LOCK_NAME).exists()
    with hold_run_folder(tmp_path):  # And can be taken again.
        pass


def test_folder_held_by_a_live_process_is_refused(tmp_path):
    lock = _write_lock(tmp_path / "run", os.getpid())  # This test process runs: the lock is live.
    with pytest.raises(RunFolderInUseError) as refused:
        with hold_run_folder(tmp_path / "run"):
            raise AssertionError("entered a folder in use")
    message = str(refused.value)
    assert message.startswith(f"{tmp_path / 'run'}: the run folder is in use by another training run")
    assert f"PID {os.getpid()} on {socket.gethostname()}" in message and str(lock) in message
    assert lock.exists()  # Left to its holder.


def test_lock_of_another_host_is_kept(tmp_path):
    _write_lock(tmp_path, 1, host="elsewhere.invalid")
    with pytest.raises(RunFolderInUseError, match="on elsewhere.invalid.*cannot be checked from here"):
        with hold_run_folder(tmp_path):
            pass


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path, caplog):
    pid = _dead_pid()
    lock = _write_lock(tmp_path, pid)
    with caplog.at_level(logging.WARNING, logger="mrcnn.run_folder"):
        with hold_run_folder(tmp_path):
            assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert f"taking over the lock left by a training run that no longer runs (PID {pid} on" in caplog.text
    assert str(lock) in caplog.text
    assert not lock.exists() and os.listdir(tmp_path) == []  # Nothing left aside.


def test_leftover_temporary_files_are_removed_and_named(tmp_path, caplog):
    # A writer killed (SIGKILL) in the middle of an atomic checkpoint write, as `kill -9` does.
    target = tmp_path / "mask_rcnn_x_0001.h5"
    code = ("import os, signal, sys; from mrcnn.atomic import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n"
            "    open(tmp, 'wb').write(b'half a checkpoint'); os.kill(os.getpid(), signal.SIGKILL)\n")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    killed = subprocess.run([sys.executable, "-c", code, str(target)], cwd=repo, capture_output=True)
    assert killed.returncode == -9
    [leftover] = os.listdir(tmp_path)
    assert leftover.startswith(".mask_rcnn_x_0001.h5.") and leftover.endswith(".tmp") and not target.exists()
    (tmp_path / "notes.tmp").write_text("not a temporary file of atomic_path: kept")
    (tmp_path / f"{leftover}.bak").write_text("kept")
    assert atomic.leftover_temp_files(tmp_path) == [str(tmp_path / leftover)]
    with caplog.at_level(logging.WARNING, logger="mrcnn.run_folder"):
        with hold_run_folder(tmp_path):
            pass
    assert f"{tmp_path}: removed 1 temporary file(s) left by an interrupted write: {leftover}" in caplog.text
    assert sorted(os.listdir(tmp_path)) == sorted(["notes.tmp", f"{leftover}.bak"])


def test_temporary_files_of_a_live_run_are_left_alone(tmp_path):
    _write_lock(tmp_path, os.getpid())
    (tmp_path / ".mask_rcnn_x_0002.h5.abcdefgh.tmp").write_bytes(b"being written")
    with pytest.raises(RunFolderInUseError):
        with hold_run_folder(tmp_path):
            pass
    assert (tmp_path / ".mask_rcnn_x_0002.h5.abcdefgh.tmp").exists()
