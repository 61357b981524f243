"""NumPy utilities with matterport's ``mrcnn.utils`` names: boxes, masks, image resizing and VOC-style AP.

Box format (see :mod:`mrcnn.boxes`): ``(y1, x1, y2, x2)`` in image pixels, with ``y2``/``x2`` exclusive, so a box
covering pixel rows 10..19 has ``y1=10, y2=20``. Masks are ``[height, width, instances]`` (instances last).

This module also re-exports :class:`Dataset`, :func:`norm_boxes`, :func:`denorm_boxes`, :func:`generate_anchors`
and :func:`generate_pyramid_anchors`, so scripts written against ``mrcnn.utils`` keep working. Importing it does not
import TensorFlow (the NumPy box IoU, masks and AP need none): the re-exports from :mod:`mrcnn.boxes` and
:mod:`mrcnn.anchors` and the box coder are imported on first use.

Differences from matterport (all deliberate):

- :func:`apply_box_deltas` and :func:`box_refinement` call the project's one box coder
  (:mod:`mrcnn.box_coder`) with ``std_dev=(1, 1, 1, 1)``; decoding therefore clamps ``log(dh)``/``log(dw)`` at
  ``log(1000 / 16)`` and encoding guards zero-size boxes instead of returning inf/NaN.
- :func:`resize_image` resizes uint8 images with OpenCV (``INTER_AREA`` when shrinking, ``INTER_LINEAR`` when
  enlarging): a 4288x2848 photo goes to 1024 px in milliseconds and without a float64 copy. Other dtypes go
  through :func:`resize` (scikit-image, bilinear) as before. The ``crop`` mode takes an optional ``rng``.
- :func:`resize_mask` uses centre-aligned nearest-neighbour sampling (the same pixel grid as the OpenCV image
  resize) in NumPy; the output shape is ``round(side * scale)`` as matterport's ``scipy.ndimage.zoom``.
- :func:`unmold_mask` resizes the small mask only to the box size with OpenCV bilinear interpolation (edges
  replicated, so a mask that fills its box fills it to the edge) and pastes the part inside the image.
- :func:`compute_matches` treats a ground truth matched to prediction 0 as matched (matterport tested
  ``gt_match[j] > 0``) and returns int32 match arrays; :func:`compute_ap` returns 1.0 when there is neither
  ground truth nor prediction and 0.0 for predictions without ground truth, instead of NaN.
- :func:`non_max_suppression` returns an empty array for no boxes and breaks score ties by the lower index.
"""

from __future__ import annotations

import random
from typing import Sequence

import cv2
import numpy as np
import skimage.transform

from .dataset import Dataset

__all__ = [
    "Dataset",
    "norm_boxes",
    "denorm_boxes",
    "generate_anchors",
    "generate_pyramid_anchors",
    "extract_bboxes",
    "compute_iou",
    "compute_overlaps",
    "compute_overlaps_masks",
    "non_max_suppression",
    "apply_box_deltas",
    "box_refinement",
    "resize",
    "resize_image",
    "resize_mask",
    "minimize_mask",
    "expand_mask",
    "unmold_mask",
    "trim_zeros",
    "compute_matches",
    "compute_ap",
    "compute_ap_range",
    "compute_recall",
    "download_trained_weights",
    "training_resize_mode",
]

_LAZY = {"norm_boxes": "boxes", "denorm_boxes": "boxes", "generate_anchors": "anchors",
         "generate_pyramid_anchors": "anchors"}


def __getattr__(name: str):
    """The re-exports of TensorFlow-importing modules, imported on first use (PEP 562)."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"mrcnn.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

RESIZE_MODES = ("none", "square", "pad64", "crop", "fit")

# OpenCV's resize handles at most this many channels at once (CV_CN_MAX).
_CV_MAX_CHANNELS = 512


############################################################
#  Boxes
############################################################

def extract_bboxes(mask: np.ndarray) -> np.ndarray:
    """Tight boxes around instance masks.

    Args:
        mask: [height, width, num_instances] bool or 0/1 masks.

    Returns:
        int32 [num_instances, (y1, x1, y2, x2)] pixel boxes, ``y2``/``x2`` exclusive; all zeros for an empty
        mask (an instance lost to resizing or cropping).
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"extract_bboxes expects masks of shape [height, width, instances], got {mask.shape}")
    height, width = mask.shape[:2]
    rows = np.any(mask, axis=1)  # [H, N]: does row y of instance n have a pixel?
    cols = np.any(mask, axis=0)  # [W, N]
    present = rows.any(axis=0)  # [N]
    y1 = np.argmax(rows, axis=0)
    y2 = height - np.argmax(rows[::-1], axis=0)  # First set row from the bottom, made exclusive.
    x1 = np.argmax(cols, axis=0)
    x2 = width - np.argmax(cols[::-1], axis=0)
    boxes = np.stack([y1, x1, y2, x2], axis=1).astype(np.int32)
    boxes[~present] = 0
    return boxes.reshape(-1, 4)


def _areas(boxes: np.ndarray) -> np.ndarray:
    """Areas of [N, (y1, x1, y2, x2)] boxes (may be negative for inverted boxes, as matterport)."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _iou_matrix(boxes1: np.ndarray, boxes2: np.ndarray, areas1: np.ndarray, areas2: np.ndarray) -> np.ndarray:
    """float64 [N, M] IoU of [N, 4] and [M, 4] boxes given their areas; 0 where the union is empty."""
    # [N, 1] against [1, M] broadcasts to [N, M].
    y1 = np.maximum(boxes1[:, None, 0], boxes2[None, :, 0])
    x1 = np.maximum(boxes1[:, None, 1], boxes2[None, :, 1])
    y2 = np.minimum(boxes1[:, None, 2], boxes2[None, :, 2])
    x2 = np.minimum(boxes1[:, None, 3], boxes2[None, :, 3])
    intersection = np.maximum(y2 - y1, 0) * np.maximum(x2 - x1, 0)
    union = areas1[:, None] + areas2[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def compute_iou(box: np.ndarray, boxes: np.ndarray, box_area: float, boxes_area: np.ndarray) -> np.ndarray:
    """IoU of one box with each of ``boxes`` (matterport's signature; :func:`compute_overlaps` for one row).

    The areas are passed in so a caller that compares many boxes computes them once.

    Args:
        box: [(y1, x1, y2, x2)].
        boxes: [N, (y1, x1, y2, x2)], same format as ``box``.
        box_area: area of ``box``.
        boxes_area: [N] areas of ``boxes``.

    Returns:
        float [N] IoU; 0 where the union is empty.
    """
    box = np.asarray(box, dtype=np.float64).reshape(1, 4)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    areas = np.asarray(boxes_area, dtype=np.float64).reshape(-1)
    return _iou_matrix(box, boxes, np.array([box_area], dtype=np.float64), areas)[0]


def compute_overlaps(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """Pairwise IoU of two sets of boxes (the NumPy box IoU of the project).

    Args:
        boxes1: [N, (y1, x1, y2, x2)].
        boxes2: [M, (y1, x1, y2, x2)], same format.

    Returns:
        float [N, M] IoU matrix; 0 where the union is empty.
    """
    boxes1 = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    boxes2 = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    return _iou_matrix(boxes1, boxes2, _areas(boxes1), _areas(boxes2))


def compute_overlaps_masks(masks1: np.ndarray, masks2: np.ndarray) -> np.ndarray:
    """Pairwise IoU of two sets of masks (pixels > 0.5 count as inside).

    Args:
        masks1: [height, width, N].
        masks2: [height, width, M], same height and width.

    Returns:
        float32 [N, M] IoU matrix; zeros of that shape if either set is empty, 0 where both masks are empty.
    """
    n1, n2 = masks1.shape[-1], masks2.shape[-1]
    if n1 == 0 or n2 == 0 or masks1.size == 0 or masks2.size == 0:
        return np.zeros((n1, n2), dtype=np.float32)
    if masks1.shape[:2] != masks2.shape[:2]:
        raise ValueError(f"compute_overlaps_masks: mask sizes differ, {masks1.shape[:2]} vs {masks2.shape[:2]}")
    # Flatten to [pixels, instances] so the intersections are one matrix product.
    flat1 = np.reshape(masks1 > 0.5, (-1, n1)).astype(np.float32)
    flat2 = np.reshape(masks2 > 0.5, (-1, n2)).astype(np.float32)
    area1 = flat1.sum(axis=0)
    area2 = flat2.sum(axis=0)
    intersections = flat1.T @ flat2
    union = area1[:, None] + area2[None, :] - intersections
    return np.divide(intersections, union, out=np.zeros_like(intersections), where=union > 0)


def non_max_suppression(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression.

    Args:
        boxes: [N, (y1, x1, y2, x2)].
        scores: [N] box scores.
        threshold: IoU above which a lower-scored box is suppressed.

    Returns:
        int32 [K] indices into ``boxes`` of the kept boxes, highest score first.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores).reshape(-1)
    if boxes.shape[0] != scores.shape[0]:
        raise ValueError(f"non_max_suppression: {boxes.shape[0]} boxes but {scores.shape[0]} scores")
    area = _areas(boxes)
    order = np.argsort(-scores, kind="stable")  # Highest first; ties keep the lower index first.
    keep = []
    while order.size > 0:
        best = order[0]
        keep.append(best)
        rest = order[1:]
        iou = compute_iou(boxes[best], boxes[rest], area[best], area[rest])
        order = rest[iou <= threshold]
    return np.array(keep, dtype=np.int32)


def apply_box_deltas(boxes: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """Apply raw (not std-dev scaled) regression deltas to boxes, with :func:`mrcnn.box_coder.decode`.

    Args:
        boxes: [N, (y1, x1, y2, x2)].
        deltas: [N, (dy, dx, log(dh), log(dw))].

    Returns:
        float32 [N, (y1, x1, y2, x2)] in the format of ``boxes``.
    """
    from . import box_coder

    return np.asarray(box_coder.decode(boxes, deltas, std_dev=(1.0, 1.0, 1.0, 1.0)))


def box_refinement(box: np.ndarray, gt_box: np.ndarray) -> np.ndarray:
    """Raw (not std-dev scaled) deltas that turn ``box`` into ``gt_box``, with :func:`mrcnn.box_coder.encode`.

    Args:
        box: [N, (y1, x1, y2, x2)].
        gt_box: [N, (y1, x1, y2, x2)], same format.

    Returns:
        float32 [N, (dy, dx, log(dh), log(dw))].
    """
    from . import box_coder

    return np.asarray(box_coder.encode(box, gt_box, std_dev=(1.0, 1.0, 1.0, 1.0)))


############################################################
#  Images
############################################################

def resize(image: np.ndarray, output_shape, order: int = 1, mode: str = "constant", cval: float = 0,
           clip: bool = True, preserve_range: bool = False, anti_aliasing: bool = False,
           anti_aliasing_sigma=None) -> np.ndarray:
    """:func:`skimage.transform.resize` with matterport's defaults (no anti-aliasing unless asked).

    Args:
        image: [H, W] or [H, W, C] array.
        output_shape: (height, width) or (height, width, channels).
        order: spline order, 0 nearest, 1 bilinear.
        mode, cval, clip, preserve_range, anti_aliasing, anti_aliasing_sigma: as scikit-image.

    Returns:
        The resized image; float unless ``preserve_range`` and ``order == 0`` keep the dtype.
    """
    return skimage.transform.resize(
        image, output_shape, order=order, mode=mode, cval=cval, clip=clip, preserve_range=preserve_range,
        anti_aliasing=anti_aliasing, anti_aliasing_sigma=anti_aliasing_sigma)


def _cv2_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """OpenCV resize of [H, W] or [H, W, C]: area averaging when shrinking, bilinear when enlarging."""
    shrinking = height * width < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    if image.ndim == 2:
        return cv2.resize(image, (width, height), interpolation=interpolation)
    # OpenCV takes at most 512 channels and returns [H, W] for one channel: resize in chunks and restore C.
    chunks = []
    for start in range(0, image.shape[2], _CV_MAX_CHANNELS):
        chunk = np.ascontiguousarray(image[:, :, start:start + _CV_MAX_CHANNELS])
        out = cv2.resize(chunk, (width, height), interpolation=interpolation)
        chunks.append(out.reshape(height, width, chunk.shape[2]))
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks, axis=2)


def _pad(image: np.ndarray, padding) -> np.ndarray:
    """Zero-pad the two spatial axes of [H, W] or [H, W, C] with ``padding`` [(top, bottom), (left, right), ...]."""
    pad = list(padding[:2]) + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, pad, mode="constant", constant_values=0)


def training_resize_mode(mode: str) -> str:
    """The ``IMAGE_RESIZE_MODE`` training batches are molded with: ``"fit"`` gives each image shape its own
    size, which one batch cannot hold, so it trains as ``"square"``, which scales the image the same way."""
    return "square" if mode == "fit" else mode


def resize_image(image: np.ndarray, min_dim: int | None = None, max_dim: int | None = None,
                 min_scale: float | None = None, mode: str = "square", rng=None):
    """Resize an image keeping its aspect ratio, then pad or crop it as ``mode`` says.

    The scale is ``max(1, min_dim / min(h, w))`` (never down to reach ``min_dim``), at least ``min_scale``, and
    in ``"square"`` and ``"fit"`` modes at most what keeps the long side within ``max_dim``. uint8 images are
    resized with OpenCV (``INTER_AREA`` when shrinking, ``INTER_LINEAR`` when enlarging), which is fast and
    memory-light on large photos; other dtypes with scikit-image bilinear interpolation. The dtype is kept.

    Modes:
        ``"none"``: return the image unchanged.
        ``"square"``: scale, then zero-pad to ``[max_dim, max_dim]``, the image centred.
        ``"pad64"``: scale up for ``min_dim``/``min_scale`` (``max_dim`` ignored), then zero-pad each side to a
        multiple of 64, the image centred.
        ``"crop"``: scale up for ``min_dim``/``min_scale``, then take a random ``min_dim`` x ``min_dim`` crop
        (training only).
        ``"fit"`` (not in matterport): scale as ``"square"`` does, then zero-pad each side to a multiple of 64
        only, the image centred. The same pixels at the same scale as ``"square"`` without the padding to a
        square (a quarter of the compute for a 4:3 image), at one molded size per image shape; training
        batches, which need one size, are molded as ``"square"``.

    Args:
        image: [H, W, C] (or [H, W]) image.
        min_dim: the short side is scaled up to at least this; required for ``"crop"``.
        max_dim: the long side's limit and the output side in ``"square"`` mode; required there and in
            ``"fit"`` mode (a multiple of 64).
        min_scale: a lower bound on the scale.
        mode: one of ``"none"``, ``"square"``, ``"pad64"``, ``"crop"``, ``"fit"``.
        rng: for ``"crop"``, a ``numpy.random.Generator`` or a seed; ``None`` uses Python's ``random`` module
            (as matterport, so ``random.seed`` makes crops repeatable).

    Returns:
        image: the resized image, same dtype.
        window: (y1, x1, y2, x2) of the image inside the padded output (y2, x2 exclusive).
        scale: the factor the image was scaled by.
        padding: [(top, bottom), (left, right), (0, 0)] zero padding added.
        crop: (y, x, height, width) of the crop in ``"crop"`` mode, else ``None``.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize_image: unknown mode {mode!r}; use one of {RESIZE_MODES}")
    image = np.asarray(image)
    image_dtype = image.dtype
    h, w = image.shape[:2]
    window = (0, 0, h, w)
    scale = 1.0
    padding = [(0, 0), (0, 0), (0, 0)]
    crop = None

    if mode == "none":
        return image, window, scale, padding, crop
    if mode == "square" and not max_dim:
        raise ValueError("resize_image: mode 'square' needs max_dim (the output side)")
    if mode == "fit" and (not max_dim or max_dim % 64 != 0):
        raise ValueError(f"resize_image: mode 'fit' needs max_dim, a multiple of 64, got {max_dim}")
    if mode == "crop" and not min_dim:
        raise ValueError("resize_image: mode 'crop' needs min_dim (the crop side)")
    if mode == "pad64" and min_dim and min_dim % 64 != 0:
        raise ValueError(f"resize_image: mode 'pad64' needs min_dim to be a multiple of 64, got {min_dim}")

    if min_dim:
        scale = max(1.0, min_dim / min(h, w))  # Scale up, never down.
    if min_scale and scale < min_scale:
        scale = float(min_scale)
    if max_dim and mode in ("square", "fit"):
        image_max = max(h, w)
        if round(image_max * scale) > max_dim:
            scale = max_dim / image_max

    if scale != 1:
        new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
        if image_dtype == np.uint8:
            image = _cv2_resize(image, new_h, new_w)
        else:
            out_shape = (new_h, new_w) + image.shape[2:]
            image = resize(image, out_shape, order=1, mode="constant", preserve_range=True)
    h, w = image.shape[:2]

    if mode == "square":
        top = (max_dim - h) // 2
        left = (max_dim - w) // 2
        padding = [(top, max_dim - h - top), (left, max_dim - w - left), (0, 0)]
        image = _pad(image, padding)
        window = (top, left, h + top, w + left)
    elif mode in ("pad64", "fit"):
        pad_h = (-h) % 64  # Rows to add to reach the next multiple of 64.
        pad_w = (-w) % 64
        padding = [(pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)]
        image = _pad(image, padding)
        window = (pad_h // 2, pad_w // 2, h + pad_h // 2, w + pad_w // 2)
    else:  # crop
        if h < min_dim or w < min_dim:
            raise ValueError(f"resize_image: the scaled image {h}x{w} is smaller than the crop {min_dim}")
        if rng is None:
            y = random.randint(0, h - min_dim)
            x = random.randint(0, w - min_dim)
        else:
            rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
            y = int(rng.integers(0, h - min_dim + 1))
            x = int(rng.integers(0, w - min_dim + 1))
        crop = (y, x, min_dim, min_dim)
        image = image[y:y + min_dim, x:x + min_dim]
        window = (0, 0, min_dim, min_dim)
    return image.astype(image_dtype, copy=False), window, scale, padding, crop


############################################################
#  Masks
############################################################

def _nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each of ``n_out`` output pixels, sampling pixel centres (nearest neighbour)."""
    idx = np.floor((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64)
    return np.minimum(idx, n_in - 1)


def resize_mask(mask: np.ndarray, scale: float, padding, crop=None) -> np.ndarray:
    """Resize masks like :func:`resize_image` resized their image (same ``scale``, ``padding``, ``crop``).

    Args:
        mask: [H, W, N] (or [H, W]) masks, any dtype.
        scale: the scale returned by :func:`resize_image`.
        padding: [(top, bottom), (left, right), (0, 0)] returned by :func:`resize_image`.
        crop: (y, x, height, width) returned by :func:`resize_image` in ``"crop"`` mode, else ``None``.

    Returns:
        [round(H * scale) padded or cropped, ..., N] masks, same dtype (nearest-neighbour sampling).
    """
    mask = np.asarray(mask)
    h, w = mask.shape[:2]
    if scale != 1:
        new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
        # Rows first, then columns: two gathers, no [new_h, new_w] index grid.
        mask = np.take(mask, _nearest_indices(h, new_h), axis=0)
        mask = np.take(mask, _nearest_indices(w, new_w), axis=1)
    if crop is not None:
        y, x, ch, cw = crop
        return mask[y:y + ch, x:x + cw]
    return _pad(mask, padding)


def minimize_mask(bbox: np.ndarray, mask: np.ndarray, mini_shape: Sequence[int]) -> np.ndarray:
    """Crop each mask to its box and resize it to ``mini_shape`` (matterport's mini-masks, to save memory).

    Args:
        bbox: [N, (y1, x1, y2, x2)] pixel boxes (as :func:`extract_bboxes`).
        mask: [H, W, N] masks.
        mini_shape: (height, width) of the mini-masks, e.g. (56, 56).

    Returns:
        bool [mini_h, mini_w, N]; bilinear resize thresholded at 0.5.

    Raises:
        ValueError: a box has zero area.
    """
    mini_h, mini_w = int(mini_shape[0]), int(mini_shape[1])
    mini_mask = np.zeros((mini_h, mini_w, mask.shape[-1]), dtype=bool)
    for i in range(mask.shape[-1]):
        y1, x1, y2, x2 = (int(v) for v in bbox[i][:4])
        m = mask[y1:y2, x1:x2, i]
        if m.size == 0:
            raise ValueError(f"minimize_mask: instance {i} has a box of zero area {(y1, x1, y2, x2)}")
        m = cv2.resize(m.astype(np.float32), (mini_w, mini_h), interpolation=cv2.INTER_LINEAR)
        mini_mask[:, :, i] = m >= 0.5
    return mini_mask


def expand_mask(bbox: np.ndarray, mini_mask: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    """Paste mini-masks back at their boxes in full-size masks (the inverse of :func:`minimize_mask`).

    Args:
        bbox: [N, (y1, x1, y2, x2)] pixel boxes.
        mini_mask: [mini_h, mini_w, N] masks.
        image_shape: (height, width, ...) of the image.

    Returns:
        bool [height, width, N]; bilinear resize thresholded at 0.5; zero-area boxes give empty masks.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    mask = np.zeros((height, width, mini_mask.shape[-1]), dtype=bool)
    for i in range(mask.shape[-1]):
        mask[:, :, i] = unmold_mask(mini_mask[:, :, i], bbox[i][:4], (height, width))
    return mask


def unmold_mask(mask: np.ndarray, bbox, image_shape: Sequence[int], out: np.ndarray | None = None) -> np.ndarray:
    """Paste a small float mask (e.g. the 28x28 head output) at its box in a full-size binary mask.

    Only the box-sized patch is resized (OpenCV bilinear) and thresholded at 0.5; the part of the box outside
    the image is dropped.

    Args:
        mask: [mask_h, mask_w] float mask in [0, 1].
        bbox: (y1, x1, y2, x2) integer pixel box.
        image_shape: (height, width, ...) of the image.
        out: optional zero-filled bool [height, width] array to paste into (saves an allocation per mask).

    Returns:
        bool [height, width] (``out`` when given).
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    y1, x1, y2, x2 = (int(round(float(v))) for v in bbox[:4])
    full_mask = np.zeros((height, width), dtype=bool) if out is None else out
    box_h, box_w = y2 - y1, x2 - x1
    if box_h <= 0 or box_w <= 0:
        return full_mask
    patch = cv2.resize(np.asarray(mask, dtype=np.float32), (box_w, box_h), interpolation=cv2.INTER_LINEAR)
    patch = patch.reshape(box_h, box_w) >= 0.5
    # Clip the box to the image and take the matching part of the patch.
    cy1, cx1 = max(y1, 0), max(x1, 0)
    cy2, cx2 = min(y2, height), min(x2, width)
    if cy2 > cy1 and cx2 > cx1:
        full_mask[cy1:cy2, cx1:cx2] = patch[cy1 - y1:cy2 - y1, cx1 - x1:cx2 - x1]
    return full_mask


############################################################
#  Evaluation
############################################################

def trim_zeros(x: np.ndarray) -> np.ndarray:
    """Drop the all-zero rows (padding) of a [rows, columns] array."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"trim_zeros expects a 2-D array, got shape {x.shape}")
    return x[~np.all(x == 0, axis=1)]


def compute_matches(gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores, pred_masks,
                    iou_threshold: float = 0.5, score_threshold: float = 0.0):
    """Match predictions to ground truth by mask IoU, highest-scored prediction first.

    Each prediction takes the unmatched ground truth of the same class with the highest IoU, if that IoU is at
    least ``iou_threshold``. Zero rows (padding) of the boxes are trimmed first.

    Args:
        gt_boxes: [G, (y1, x1, y2, x2)].
        gt_class_ids: [G] int.
        gt_masks: [H, W, G].
        pred_boxes: [P, (y1, x1, y2, x2)].
        pred_class_ids: [P] int.
        pred_scores: [P] float.
        pred_masks: [H, W, P].
        iou_threshold: the least mask IoU of a match.
        score_threshold: ground truths with an IoU below this are not considered for a prediction (the name is
            matterport's; it thresholds IoU, not scores).

    Returns:
        gt_match: int32 [G], index (in score order) of the prediction matched to each ground truth, or -1.
        pred_match: int32 [P], index of the ground truth matched to each prediction (in score order), or -1.
        overlaps: float32 [P, G] mask IoU, predictions in score order.
    """
    gt_boxes = trim_zeros(np.asarray(gt_boxes).reshape(-1, 4))
    n_gt = gt_boxes.shape[0]
    gt_class_ids = np.asarray(gt_class_ids)[:n_gt]
    gt_masks = np.asarray(gt_masks)[..., :n_gt]
    pred_boxes = trim_zeros(np.asarray(pred_boxes).reshape(-1, 4))
    n_pred = pred_boxes.shape[0]
    pred_scores = np.asarray(pred_scores)[:n_pred]
    order = np.argsort(-pred_scores, kind="stable")  # Highest score first.
    pred_class_ids = np.asarray(pred_class_ids)[order]
    pred_masks = np.asarray(pred_masks)[..., order]

    overlaps = compute_overlaps_masks(pred_masks, gt_masks)  # [P, G]

    pred_match = -np.ones(n_pred, dtype=np.int32)
    gt_match = -np.ones(n_gt, dtype=np.int32)
    for i in range(n_pred):
        candidates = np.argsort(-overlaps[i], kind="stable")  # Ground truths by IoU, best first.
        candidates = candidates[overlaps[i, candidates] >= score_threshold]
        for j in candidates:
            if gt_match[j] > -1:
                continue
            if overlaps[i, j] < iou_threshold:
                break
            if pred_class_ids[i] == gt_class_ids[j]:
                gt_match[j] = i
                pred_match[i] = j
                break
    return gt_match, pred_match, overlaps


def compute_ap(gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores, pred_masks,
               iou_threshold: float = 0.5):
    """VOC-style average precision of one image's predictions, by mask IoU at ``iou_threshold``.

    Precision is made monotone (the best precision at any higher recall) and integrated over the recall steps.

    Args:
        gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores, pred_masks: as
            :func:`compute_matches`.
        iou_threshold: the least mask IoU of a true positive.

    Returns:
        mAP: float AP. With no ground truth: 1.0 if there are no predictions either, else 0.0.
        precisions: [P + 2] monotone precisions, padded with a leading and a trailing 0.
        recalls: [P + 2] recalls, padded with a leading 0 and a trailing 1.
        overlaps: float32 [P, G] mask IoU, predictions in score order.
    """
    gt_match, pred_match, overlaps = compute_matches(
        gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores, pred_masks, iou_threshold)
    true_positives = np.cumsum(pred_match > -1)
    precisions = true_positives / (np.arange(len(pred_match)) + 1)
    if len(gt_match) == 0:
        recalls = np.zeros(len(pred_match))
    else:
        recalls = true_positives / len(gt_match)

    precisions = np.concatenate([[0.0], precisions, [0.0]])
    recalls = np.concatenate([[0.0], recalls, [1.0]])
    # Each precision becomes the best precision at this or any higher recall.
    precisions = np.maximum.accumulate(precisions[::-1])[::-1]

    if len(gt_match) == 0:
        m_ap = 1.0 if len(pred_match) == 0 else 0.0
    else:
        steps = np.where(recalls[:-1] != recalls[1:])[0] + 1
        m_ap = float(np.sum((recalls[steps] - recalls[steps - 1]) * precisions[steps]))
    return m_ap, precisions, recalls, overlaps


def compute_ap_range(gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score, pred_mask,
                     iou_thresholds=None, verbose: int = 1) -> float:
    """Mean of :func:`compute_ap` over IoU thresholds (default 0.50:0.95:0.05, as COCO).

    Args:
        gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score, pred_mask: as :func:`compute_ap`.
        iou_thresholds: the thresholds; default ``[0.5, 0.55, ..., 0.95]``.
        verbose: print the AP at each threshold and the mean.

    Returns:
        The mean AP.
    """
    if iou_thresholds is None:
        iou_thresholds = np.linspace(0.5, 0.95, 10)
    aps = []
    for iou_threshold in iou_thresholds:
        ap = compute_ap(gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score, pred_mask,
                        iou_threshold=iou_threshold)[0]
        if verbose:
            print(f"AP @{iou_threshold:.2f}:\t {ap:.3f}")
        aps.append(ap)
    mean_ap = float(np.mean(aps))
    if verbose:
        print(f"AP @{iou_thresholds[0]:.2f}-{iou_thresholds[-1]:.2f}:\t {mean_ap:.3f}")
    return mean_ap


def compute_recall(pred_boxes: np.ndarray, gt_boxes: np.ndarray, iou: float):
    """Share of ground-truth boxes that some prediction overlaps with IoU >= ``iou``.

    Args:
        pred_boxes: [P, (y1, x1, y2, x2)] pixel boxes.
        gt_boxes: [G, (y1, x1, y2, x2)] pixel boxes.
        iou: the IoU threshold.

    Returns:
        recall: float, distinct ground truths that are the best match of a prediction over G (0 if G is 0).
        positive_ids: int [K] indices of the predictions whose best IoU is >= ``iou``.
    """
    overlaps = compute_overlaps(pred_boxes, gt_boxes)  # [P, G]
    if overlaps.shape[0] == 0 or overlaps.shape[1] == 0:
        return 0.0, np.zeros([0], dtype=np.int64)
    iou_max = overlaps.max(axis=1)
    iou_argmax = overlaps.argmax(axis=1)
    positive_ids = np.where(iou_max >= iou)[0]
    recall = len(set(iou_argmax[positive_ids].tolist())) / overlaps.shape[1]
    return recall, positive_ids


############################################################
#  Weights
############################################################

def download_trained_weights(coco_model_path, verbose=1):
    """Download the COCO-trained Mask R-CNN weights to ``coco_model_path`` (see :mod:`mrcnn.weights`)."""
    from .weights import download_trained_weights as _download

    return _download(coco_model_path, verbose=verbose)
