"""Skin-lesion segmentation and diagnosis on Mask R-CNN (ISIC dermoscopy images).

The one-call API (:mod:`lesion.api`)::

    import lesion
    results = lesion.segment(["image1.jpg", "image2.jpg"])  # the bundled model, loaded once
    results[0].mask, results[0].diagnosis, results[0].probabilities, results[0].score

The command lines are ``lesion/train.py``, ``lesion/detect.py`` and ``lesion/evaluate.py``. Names are imported on
first use, so ``import lesion`` does not import TensorFlow.
"""

from __future__ import annotations

from mrcnn.lazy import lazy_exports

_NAMES = {"segment": "lesion.api", "Segmentation": "lesion.api", "load": "lesion.api"}

__all__ = sorted(_NAMES)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _NAMES)
del lazy_exports
