"""The training state saved beside each checkpoint, so that a resumed run continues where it stopped.

A checkpoint ``mask_rcnn_<name>_0007.h5`` (matterport's layout, weights only, readable by any matterport loader) gets
a sibling ``mask_rcnn_<name>_0007.state.npz`` with the optimizer's variables (iteration count, momentum or Adam
moments, a loss-scale factor under mixed precision), the state of the model's random generator (the anchor and ROI
sampling) and what they belong to: the trainable layer pattern and the epoch the stage trains up to.
:meth:`mrcnn.model.MaskRCNN.train` restores them when it continues the same stage of the same run, so momentum, the
iteration count and the sampling generator go on from where they stopped; a new stage starts a new optimizer, as
an uninterrupted run does.
"""

from __future__ import annotations

import io
import json
import logging
import os

import numpy as np

from .atomic import write_bytes_atomic

__all__ = ["STATE_SUFFIX", "TrainStateError", "load_train_state", "restore_optimizer", "restore_random_states",
           "save_train_state", "state_path"]

logger = logging.getLogger(__name__)

STATE_SUFFIX = ".state.npz"
FORMAT_VERSION = 1


class TrainStateError(ValueError):
    """A state file that cannot be read or does not fit the optimizer (the message names the file)."""


def state_path(checkpoint_path: str | os.PathLike) -> str:
    """``.../mask_rcnn_x_0007.h5`` -> ``.../mask_rcnn_x_0007.state.npz``."""
    path = os.fspath(checkpoint_path)
    root = path[:-3] if path.endswith(".h5") else path
    return root + STATE_SUFFIX


def save_train_state(checkpoint_path: str | os.PathLike, optimizer, layer_regex: str, stage_epochs: int,
                     epoch: int, random_states=()) -> str:
    """Write the optimizer's variables beside ``checkpoint_path``, atomically; returns the state file's path.

    Args:
        checkpoint_path: the checkpoint these variables go with.
        optimizer: a built Keras optimizer.
        layer_regex: the trainable-layer pattern of the stage.
        stage_epochs: the epoch the stage trains up to.
        epoch: the epoch just finished (the checkpoint's number).
        random_states: the model's random-generator state variables (the ROI and anchor sampling), restored
            whatever the stage.
    """
    variables = list(optimizer.variables)
    random_states = list(random_states)
    meta = {"version": FORMAT_VERSION, "layer_regex": layer_regex, "stage_epochs": int(stage_epochs),
            "epoch": int(epoch), "names": [v.path for v in variables],
            "shapes": [list(v.shape) for v in variables]}
    meta["random_states"] = len(random_states)
    arrays = {f"v{i:05d}": np.asarray(v.numpy() if hasattr(v, "numpy") else v) for i, v in enumerate(variables)}
    arrays.update({f"r{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(random_states)})
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8), **arrays)
    return write_bytes_atomic(state_path(checkpoint_path), buffer.getvalue())


def load_train_state(path: str | os.PathLike) -> tuple[dict, list[np.ndarray], list[np.ndarray]]:
    """``(meta, optimizer values, random states)`` of a state file.

    Raises:
        TrainStateError: not a state file of this project (damaged, truncated, another format).
    """
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode("utf-8"))
            values = [data[f"v{i:05d}"] for i in range(len(meta["names"]))]
            randoms = [data[f"r{i:05d}"] for i in range(int(meta.get("random_states", 0)))]
    except (OSError, ValueError, KeyError, EOFError, UnicodeDecodeError) as error:
        raise TrainStateError(f"{path}: not a readable training state ({type(error).__name__}: {error}); move it "
                              "away to resume with a fresh optimizer") from None
    if meta.get("version") != FORMAT_VERSION:
        raise TrainStateError(f"{path}: training state version {meta.get('version')!r}, expected {FORMAT_VERSION}")
    return meta, values, randoms


def restore_random_states(random_states, path: str | os.PathLike) -> bool:
    """Set the model's random-generator states from a state file (so the sampling goes on as uninterrupted);
    returns whether the file had as many states as given."""
    _, _, saved = load_train_state(path)
    random_states = list(random_states)
    if len(saved) != len(random_states) or any(tuple(v.shape) != s.shape for v, s in zip(random_states, saved)):
        logger.warning("%s: %d random states saved, the model has %d: sampling starts afresh", path, len(saved),
                       len(random_states))
        return False
    for variable, value in zip(random_states, saved):
        variable.assign(value)
    return True


def restore_optimizer(optimizer, trainable_variables, path: str | os.PathLike, layer_regex: str,
                      stage_epochs: int) -> bool:
    """Load a state file into ``optimizer`` if it belongs to the same stage; returns whether it did.

    A state of another stage (other layers, another end epoch) is left alone: that stage starts a new optimizer,
    as it would have without the interruption.

    Raises:
        TrainStateError: the file is damaged, or belongs to this stage but not to this model (another number or
            shape of variables).
    """
    meta, values, _ = load_train_state(path)
    if meta["layer_regex"] != layer_regex or meta["stage_epochs"] != int(stage_epochs):
        logger.info("Training state %s is of another stage (%s up to epoch %d): starting a new optimizer", path,
                    meta["layer_regex"], meta["stage_epochs"])
        return False
    if not optimizer.built:
        optimizer.build(trainable_variables)
    variables = list(optimizer.variables)
    if len(variables) != len(values):
        raise TrainStateError(f"{path}: {len(values)} optimizer variables saved, the optimizer has {len(variables)} "
                              "(another model or optimizer); move it away to resume with a fresh optimizer")
    for variable, value, name in zip(variables, values, meta["names"]):
        if tuple(variable.shape) != tuple(value.shape):
            raise TrainStateError(f"{path}: optimizer variable {name} has shape {tuple(value.shape)} in the file, "
                                  f"{tuple(variable.shape)} in the model; move it away to resume with a fresh "
                                  "optimizer")
    for variable, value in zip(variables, values):
        variable.assign(value.astype(variable.dtype) if hasattr(value, "astype") else value)
    logger.info("Restored the optimizer state of epoch %d from %s", meta["epoch"], path)
    return True
