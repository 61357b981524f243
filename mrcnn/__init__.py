"""Mask R-CNN on Keras 3 / TensorFlow 2 with matterport's API.

matterport's imports work as they are (``from mrcnn import model as modellib, utils, visualize``,
``from mrcnn.config import Config``), and the main names are here too::

    import mrcnn
    model = mrcnn.MaskRCNN(mode="inference", config=mrcnn.Config(), model_dir="logs")

Everything is imported on first use (PEP 562), so ``import mrcnn`` (and a command line's ``--help``) does not
import TensorFlow.
"""

from __future__ import annotations

from .lazy import lazy_exports

__version__ = "1.0.0"

_NAMES = {
    "MaskRCNN": "mrcnn.model",
    "Config": "mrcnn.config",
    "Dataset": "mrcnn.dataset",
    "DatasetError": "mrcnn.dataset",
    "log": "mrcnn.model",
    "load_image_gt": "mrcnn.model",
    "data_generator": "mrcnn.model",
    "build_rpn_targets": "mrcnn.model",
    "mold_image": "mrcnn.model",
    "unmold_image": "mrcnn.model",
    "compose_image_meta": "mrcnn.model",
    "parse_image_meta": "mrcnn.model",
    "load_weights": "mrcnn.weights",
    "save_weights": "mrcnn.weights",
    "download_trained_weights": "mrcnn.weights",
}
_SUBMODULES = ("model", "config", "utils", "visualize", "dataset", "weights", "checkpoints", "console",
               "transform")

__all__ = sorted(_NAMES) + list(_SUBMODULES) + ["__version__"]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _NAMES, _SUBMODULES)
del lazy_exports
