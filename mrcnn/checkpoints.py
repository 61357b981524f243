"""Run folders and checkpoint files: their names, what a name says, and finding the last checkpoint.

A training run of a config named ``NAME`` writes into the run folder ``<model_dir>/<name><YYYYmmddTHHMM>``
(``name`` is ``NAME`` lower-cased, the time is when the run started) one checkpoint per epoch,
``mask_rcnn_<name>_<epoch:04d>.h5``, after the epoch that just finished (1-based), as matterport did. Loading a
checkpoint continues its run: the same folder, and the epoch counter of its name.

This module imports only the standard library, so command lines can find checkpoints without TensorFlow.

Example::

    from mrcnn import checkpoints
    path = checkpoints.find_last("logs", "lesion_light")
    # logs/lesion_light20250101T1200/mask_rcnn_lesion_light_0030.h5
    checkpoints.epoch_from_checkpoint_name(path)  # 30
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import logging
import os
import re

__all__ = [
    "RunDir",
    "run_name",
    "run_dir_name",
    "checkpoint_name",
    "epoch_from_checkpoint_name",
    "run_dir_for",
    "find_last",
]

logger = logging.getLogger(__name__)

_TIME_FORMAT = "%Y%m%dT%H%M"
_RUN_TIME_RE = r"\d{8}T\d{4}"

# mask_rcnn_<name>_<epoch>.h5, where <name> may contain underscores; Keras 3's ".weights.h5" suffix is accepted.
_CHECKPOINT_RE = re.compile(r"^mask_rcnn_[\w-]+?_(\d{4,})(?:\.weights)?\.h5$")
# matterport's own pattern: the last four digits before ".h5", with or without an underscore before them.
_CHECKPOINT_RE_MATTERPORT = re.compile(r"^mask_rcnn_[\w-]+?(\d{4})(?:\.weights)?\.h5$")
# matterport's set_log_dir: .../<name>20171029T2315/mask_rcnn_<name>_0001.h5 -> the run's start time and epoch.
_CHECKPOINT_PATH_RE = re.compile(
    r".*[/\\][\w-]+(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})[/\\]mask\_rcnn\_[\w-]+(\d{4})\.h5")


def run_name(config_name: str | None) -> str:
    """The name of a config's runs and checkpoints: ``NAME`` lower-cased (``"model"`` for an empty name)."""
    return (config_name or "model").lower()


def run_dir_name(name: str, started: datetime.datetime) -> str:
    """``"<name><YYYYmmddTHHMM>"``, the folder of the run of ``name`` started at ``started``."""
    return f"{name}{started:{_TIME_FORMAT}}"


def checkpoint_name(name: str, epoch: int) -> str:
    """``"mask_rcnn_<name>_<epoch:04d>.h5"``, the checkpoint written after ``epoch`` (1-based)."""
    return f"mask_rcnn_{name}_{epoch:04d}.h5"


def epoch_from_checkpoint_name(path: str | os.PathLike) -> int | None:
    """The epoch number in a checkpoint file name, as matterport's ``set_log_dir`` parsed it.

    Checkpoints are named ``mask_rcnn_<name>_<epoch:04d>.h5`` after the epoch that just finished (1-based), so the
    number is also the epoch training resumes from (Keras' ``initial_epoch``).

    Args:
        path: a file name or path, e.g. ``logs/coco20171029T2315/mask_rcnn_coco_0005.h5``; the folder is ignored.

    Returns:
        The epoch (5 above), or None if the name is not a checkpoint name (``mask_rcnn_coco.h5`` is not).

    Example:
        >>> epoch_from_checkpoint_name("mask_rcnn_skin_lesion_0012.h5")
        12
    """
    name = os.path.basename(os.fspath(path))
    match = _CHECKPOINT_RE.match(name) or _CHECKPOINT_RE_MATTERPORT.match(name)
    return int(match.group(1)) if match else None


@dataclasses.dataclass(frozen=True)
class RunDir:
    """Where a run writes: ``log_dir``, the ``checkpoint_path`` template (``{epoch:04d}`` left to format), and the
    ``epoch`` it continues from (0 for a new run)."""

    log_dir: str
    checkpoint_path: str
    epoch: int


def run_dir_for(model_dir: str | os.PathLike, name: str, model_path: str | os.PathLike | None = None,
                now: datetime.datetime | None = None) -> RunDir:
    """The run folder, checkpoint template and epoch counter of a run (matterport's ``set_log_dir``).

    Args:
        model_dir: the folder of the run folders.
        name: the run name (:func:`run_name` of the config's NAME).
        model_path: a checkpoint being loaded, or None. A checkpoint path ``.../<any><YYYYmmddTHHMM>/
            mask_rcnn_<any>NNNN.h5`` continues that run: the run folder of its start time and epoch ``NNNN`` (the
            checkpoint of epoch N was written after epoch N; training continues with N + 1). Any other path
            starts a new run.
        now: the start time of a new run (default: the current time).

    Returns:
        A :class:`RunDir`.
    """
    started = now or datetime.datetime.now()
    epoch = 0
    if model_path:
        match = _CHECKPOINT_PATH_RE.match(os.fspath(model_path).replace("\\", "/"))
        if match:
            started = datetime.datetime(*(int(match.group(k)) for k in range(1, 6)))
            epoch = int(match.group(6))
            logger.info("Re-starting from epoch %d", epoch)
    log_dir = os.path.join(os.fspath(model_dir), run_dir_name(name, started))
    return RunDir(log_dir, os.path.join(log_dir, f"mask_rcnn_{name}_{{epoch:04d}}.h5"), epoch)


def find_last(model_dir: str | os.PathLike, name: str) -> str:
    """The last checkpoint of the newest run folder of ``name`` that holds one.

    Run folders are ``<name><YYYYmmddTHHMM>`` with the name matched exactly, so ``"lesion"`` does not pick up
    ``lesion_light`` runs; their checkpoints are the files with a checkpoint name
    (:func:`epoch_from_checkpoint_name`), the last one the highest epoch. A newer run folder without a checkpoint
    (a run stopped before its first epoch ended) is skipped with a warning that names it; matterport raised
    FileNotFoundError there.

    Args:
        model_dir: the folder of the run folders.
        name: the run name (:func:`run_name` of the config's NAME).

    Returns:
        The checkpoint's path, ``<model_dir>/<run folder>/<checkpoint>``.

    Raises:
        FileNotFoundError: no run folder of ``name``, or none holds a checkpoint.
    """
    model_dir = os.fspath(model_dir)
    pattern = re.compile(re.escape(name) + _RUN_TIME_RE)
    dir_names = sorted(d for d in (next(os.walk(model_dir))[1] if os.path.isdir(model_dir) else [])
                       if pattern.fullmatch(d))
    if not dir_names:
        raise FileNotFoundError(errno.ENOENT, f"Could not find model directory under {model_dir}")
    for position in range(len(dir_names) - 1, -1, -1):
        dir_path = os.path.join(model_dir, dir_names[position])
        checkpoints = sorted((epoch_from_checkpoint_name(f), f) for f in os.listdir(dir_path)
                             if epoch_from_checkpoint_name(f) is not None)
        if checkpoints:
            last = checkpoints[-1][1]
            skipped = dir_names[position + 1:]
            if skipped:
                logger.warning("find_last: no checkpoint in the newer run folder(s) %s under %s; using %s",
                               ", ".join(skipped), model_dir, os.path.join(dir_names[position], last))
            return os.path.join(dir_path, last)
    raise FileNotFoundError(errno.ENOENT, f"Could not find weight files in {model_dir}/{dir_names[-1]}")
