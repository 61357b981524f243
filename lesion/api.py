"""The one-call Python API: ``lesion.segment(images)`` -> per image the lesion mask, the diagnosis and the score.

It runs what ``lesion/detect.py`` runs, on the same pieces: :func:`lesion.inference.load_model` (by default the
bundled light model and its diagnosis classifier), the batching predictor :func:`lesion.inference.iter_detections`
(images decoded and molded in worker threads), :func:`lesion.inference.finish_result` (one detection per lesion,
diagnosed by the classifier) and :func:`lesion.inference.lesion_mask`, so its results are those ``detect.py``
writes for the same image. The model is loaded once per set of loading arguments and kept for later calls.

Example::

    import lesion
    for seg in lesion.segment(["demo/isic2017/ISIC-2017_Training_Data/ISIC_0000000.jpg"]):
        print(seg.diagnosis, seg.probabilities, seg.score, seg.mask.sum())
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["Segmentation", "load", "segment"]


@dataclasses.dataclass(frozen=True)
class Segmentation:
    """The result of one image.

    Attributes:
        mask: bool [H, W] lesion mask at the image's size (all False when nothing was detected).
        diagnosis: the class name of the top-scoring detection (with the bundled model: ``"melanoma"``,
            ``"seborrheic_keratosis"`` or ``"nevus"``), or None when nothing was detected.
        probabilities: foreground class name -> probability of the top detection (background excluded, summing to
            1; uniform when nothing was detected).
        score: the top detection's score (how sure the model is that there is a lesion), or None.
        result: the whole result (``rois`` [N, (y1, x1, y2, x2)] pixels, ``class_ids`` [N], ``scores`` [N],
            ``masks`` bool [H, W, N], ``class_probs`` [N, classes]), one detection per lesion, by decreasing score.
    """

    mask: np.ndarray
    diagnosis: str | None
    probabilities: dict[str, float]
    score: float | None
    result: dict = dataclasses.field(repr=False)


_models: dict[tuple, tuple[Any, Any]] = {}
_lock = threading.Lock()


def load(weights: str | None = None, classifier: str | None = "auto", **kwargs: Any) -> tuple[Any, Any]:
    """The ``(model, info)`` of :func:`lesion.inference.load_model`, loaded once for the same arguments.

    Args:
        weights: a ``.h5`` path, ``"last"``, or None for the bundled model.
        classifier: the diagnosis classifier (``"auto"``: the bundled one with the bundled model).
        **kwargs: further arguments of :func:`lesion.inference.load_model` (``config_name``, ``classes``,
            ``overrides``, ``min_confidence``, ``batch_size``, ``logs_dir``).

    Raises:
        lesion.cli.UsageError: missing or unfitting weights, a bad option.
    """
    from lesion import inference

    key = (weights, classifier, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
    with _lock:
        if key not in _models:
            _models[key] = inference.load_model(weights=weights, classifier=classifier, **kwargs)
        return _models[key]


def _load_image(item: tuple[int, Any]) -> np.ndarray:
    from mrcnn.dataset import read_image

    index, image = item
    if isinstance(image, (str, os.PathLike)):
        return read_image(os.fspath(image))
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"image {index}: expected a path or a uint8 RGB array [H, W, 3], got a {array.dtype} "
                         f"array of shape {array.shape}")
    return array


def segment(images: str | os.PathLike | np.ndarray | Sequence[str | os.PathLike | np.ndarray], *,
            model: tuple[Any, Any] | None = None, mask_rule: str = "top", batch_size: int | None = None,
            workers: int = 2, **load_kwargs: Any) -> list[Segmentation]:
    """Segment and diagnose the lesion of each image.

    Args:
        images: image paths or uint8 RGB arrays [H, W, 3] (a single path or array is a list of one).
        model: a ``(model, info)`` pair of :func:`lesion.inference.load_model`; None for :func:`load` of
            ``load_kwargs`` (the bundled model and classifier by default), loaded once and kept.
        mask_rule: ``"top"`` (the top detection's mask, as ``detect.py`` by default) or ``"union"``.
        batch_size: images per inference call; the config's when None.
        workers: threads that decode and mold the next images while the model runs.
        **load_kwargs: arguments of :func:`load` (``weights``, ``classifier``, ``min_confidence``, ...).

    Returns:
        One :class:`Segmentation` per image, in input order.

    Raises:
        mrcnn.dataset.ImageReadError: an image file that cannot be read (the message names it).
        ValueError: an array that is not uint8 RGB, or an unknown ``mask_rule``.
    """
    from lesion import inference

    if mask_rule not in inference.MASK_RULES:
        raise ValueError(f"mask_rule must be one of {inference.MASK_RULES}; got {mask_rule!r}")
    if isinstance(images, (str, os.PathLike)) or (isinstance(images, np.ndarray) and images.ndim == 3):
        images = [images]
    if model is not None and load_kwargs:
        raise ValueError(f"segment: give either model or loading arguments ({', '.join(load_kwargs)}), not both")
    net, info = model if model is not None else load(**load_kwargs)
    prepared = inference.iter_prepared(net, enumerate(images), _load_image, workers=workers)
    detections = inference.iter_detections(net, prepared, batch_size)
    out: list[Segmentation] = []
    try:
        for _, p, result, error in detections:
            if error is not None:
                raise error
            result = inference.finish_result(result, p.image, info)
            out.append(_segmentation(result, info.class_names, mask_rule))
    finally:
        detections.close()
        prepared.close()
    return out


def _segmentation(result: Mapping[str, np.ndarray], names: Sequence[str], mask_rule: str) -> Segmentation:
    from lesion import inference

    k = inference.top_index(result)
    probs = inference.diagnosis_probabilities(result, len(names) - 1)
    return Segmentation(
        mask=inference.lesion_mask(result, mask_rule),
        diagnosis=None if k is None else names[int(result["class_ids"][k])],
        probabilities={name: float(p) for name, p in zip(names[1:], probs)},
        score=None if k is None else float(result["scores"][k]),
        result=dict(result))
