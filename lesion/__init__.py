"""Skin-lesion segmentation and diagnosis on Mask R-CNN (ISIC dermoscopy images).

The one-call API (:mod:`lesion.api`)::

    import lesion
    results = lesion.segment(["image1.jpg", "image2.jpg"])  # the bundled model, loaded once
    results[0].mask, results[0].diagnosis, results[0].probabilities, results[0].score

The command lines are ``lesion/train.py``, ``lesion/detect.py`` and ``lesion/evaluate.py``. Names are imported on
first use, so ``import lesion`` does not import TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {"segment": "lesion.api", "Segmentation": "lesion.api", "load": "lesion.api"}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    """Imports a public name on first use (PEP 562); submodules import as usual."""
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lesion' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
