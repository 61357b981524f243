"""NumPy utilities with matterport's ``mrcnn.utils`` names: boxes, masks and VOC-style AP.

Box format (see :mod:`mrcnn.boxes`): ``(y1, x1, y2, x2)`` in image pixels, with ``y2``/``x2`` exclusive, so a box
covering pixel rows 10..19 has ``y1=10, y2=20``. Masks are ``[height, width, instances]`` (instances last).

This module also re-exports :class:`Dataset`, :func:`norm_boxes`, :func:`denorm_boxes`, :func:`generate_anchors`
and :func:`generate_pyramid_anchors`, and the image and mask resizing of :mod:`mrcnn.transform` (:func:`resize`,
:func:`resize_image`, :func:`resize_mask`, :func:`minimize_mask`, :func:`expand_mask`, :func:`unmold_mask`,
:func:`training_resize_mode`; their differences from matterport are listed there), so scripts written against
``mrcnn.utils`` keep working. Importing it does not import TensorFlow (the NumPy box IoU, masks and AP need
none): the re-exports from :mod:`mrcnn.boxes` and :mod:`mrcnn.anchors` and the box coder are imported on first
use.

Differences from matterport (all deliberate):

- :func:`apply_box_deltas` and :func:`box_refinement` call the project's one box coder
  (:mod:`mrcnn.box_coder`) with ``std_dev=(1, 1, 1, 1)``; decoding therefore clamps ``log(dh)``/``log(dw)`` at
  ``log(1000 / 16)`` and encoding guards zero-size boxes instead of returning inf/NaN.
- :func:`compute_matches` treats a ground truth matched to prediction 0 as matched (matterport tested
  ``gt_match[j] > 0``) and returns int32 match arrays; :func:`compute_ap` returns 1.0 when there is neither
  ground truth nor prediction and 0.0 for predictions without ground truth, instead of NaN.
- :func:`non_max_suppression` returns an empty array for no boxes and breaks score ties by the lower index.
"""

from __future__ import annotations

import numpy as np

from .dataset import Dataset
# Image resizing and masks live in mrcnn.transform (pre/post-processing); re-exported: matterport's names.
from .transform import (RESIZE_MODES, expand_mask, minimize_mask, resize, resize_image, resize_mask,  # noqa: F401
                        training_resize_mode, unmold_mask)

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
