"""Test helper: a tiny random lesion model saved in matterport's layout, for the detect/evaluate CLI tests.

The light lesion network at 128 px: only the image size differs from the light config, and it changes no weight
shape, so the CLIs get it again with ``--set`` (:data:`TINY_ARGS`).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

TINY = {"IMAGE_MIN_DIM": 128, "IMAGE_MAX_DIM": 128}
TINY_ARGS = ["--set"] + [f"{k}={v}" for k, v in TINY.items()]


def save_tiny_model(folder: Path, classes: str) -> str:
    """Random weights of a light ``classes`` model (``"lesion"`` or ``"diagnosis"``) in ``folder``; returns the path.

    Random heads may call every region background; a strong background bias against it makes the random model
    detect something on every image (the foreground logits keep their random kernels).
    """
    from lesion.config import make_config
    from mrcnn.model import MaskRCNN, iter_layers

    keras.utils.set_random_seed(0)
    config = make_config(light=True, classes=classes, IMAGES_PER_GPU=1, **TINY)
    model = MaskRCNN("inference", config, model_dir=str(folder))
    logits = next(layer for layer in iter_layers(model.keras_model) if layer.name == "mrcnn_class_logits")
    kernel, bias = logits.get_weights()
    logits.set_weights([kernel, np.where(np.arange(bias.size) == 0, -20.0, 0.0).astype(bias.dtype)])
    path = str(Path(folder) / f"tiny_{classes}.h5")
    model.save_weights(path)
    return path
