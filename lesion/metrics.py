"""Evaluation metrics for the skin-lesion application: segmentation, lesion box, classification and COCO AP.

Pure NumPy / scikit-learn / pycocotools: nothing here imports TensorFlow, so evaluation can run on any machine
from saved predictions.

Segmentation scores follow the ISIC 2017 challenge, Part 1 (Codella et al., arXiv:1710.05006), computed per image
from the pixel counts TP, FP, TN, FN of a binary prediction against a binary ground truth:

- ``jaccard = TP / (TP + FP + FN)``; 1.0 when both masks are empty (perfect agreement on "no lesion").
- ``dice = 2 TP / (2 TP + FP + FN)``; 1.0 when both masks are empty.
- ``accuracy = (TP + TN) / (TP + FP + TN + FN)``; a 0-pixel mask is a ValueError.
- ``sensitivity = TP / (TP + FN)``; 1.0 when the truth has no lesion pixel (none could be missed).
- ``specificity = TN / (TN + FP)``; 1.0 when the truth has no background pixel (none could be wrongly marked).

``thresholded_jaccard`` is the ISIC 2018 Task 1 score: a per-image Jaccard below 0.65 counts as 0, then the mean
is taken over images.

Boxes are ``(y1, x1, y2, x2)`` in pixels with ``y2``/``x2`` exclusive (the project-wide format, as matterport's
``extract_bboxes``): a single pixel at ``(r, c)`` is the box ``(r, c, r + 1, c + 1)`` of area 1.

Classification follows ISIC 2017 Part 3: three classes in the order :data:`CLASS_NAMES`, one-vs-rest ROC AUC for
melanoma and for seborrheic keratosis.

Example::

    evaluator = SegmentationEvaluator()
    for image_id, pred, gt in predictions:
        evaluator.process(image_id, pred, gt)
    summary, rows = evaluator.evaluate()
    write_per_image_csv(rows, "per_image.csv")
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import math
import os
from typing import Any, Mapping, Sequence

import numpy as np

from mrcnn.atomic import atomic_path
from mrcnn.utils import compute_overlaps

__all__ = [
    "CLASS_NAMES",
    "JACCARD_THRESHOLD",
    "SEGMENTATION_KEYS",
    "confusion_counts",
    "segmentation_scores",
    "thresholded_jaccard",
    "mask_to_box",
    "box_iou",
    "mask_box_iou",
    "SegmentationEvaluator",
    "write_per_image_csv",
    "balanced_accuracy",
    "classification_metrics",
    "coco_metrics",
]

CLASS_NAMES: tuple[str, ...] = ("melanoma", "seborrheic_keratosis", "nevus")
"""ISIC 2017 Part 3 classes, in the index order used for labels and probability columns."""

JACCARD_THRESHOLD = 0.65
"""ISIC 2018 Task 1: per-image Jaccard scores below this count as 0."""

SEGMENTATION_KEYS: tuple[str, ...] = ("jaccard", "dice", "accuracy", "sensitivity", "specificity")
"""Names of the per-image scores returned by :func:`segmentation_scores`."""


# ----------------------------------------------------------------------------------------------------------------
# Per-image segmentation scores
# ----------------------------------------------------------------------------------------------------------------


def _as_bool_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Checks that two masks have the same shape and returns them as bool arrays."""
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(
            f"pred mask shape {pred.shape} does not match gt mask shape {gt.shape}; resize the prediction to the "
            "ground-truth size (nearest neighbour) before scoring."
        )
    return pred.astype(bool), gt.astype(bool)


def confusion_counts(pred: np.ndarray, gt: np.ndarray) -> dict[str, int]:
    """Pixel counts of a binary prediction against a binary ground truth.

    Args:
        pred: [H, W] predicted mask; any non-zero value is lesion.
        gt: [H, W] ground-truth mask, same shape as ``pred``; any non-zero value is lesion (threshold 8-bit ISIC
            masks at > 127 before calling).

    Returns:
        dict with int ``tp``, ``fp``, ``tn``, ``fn``.

    Raises:
        ValueError: if the shapes differ.
    """
    pred, gt = _as_bool_pair(pred, gt)
    tp = int(np.count_nonzero(pred & gt))
    fp = int(np.count_nonzero(pred & ~gt))
    fn = int(np.count_nonzero(~pred & gt))
    tn = int(pred.size - tp - fp - fn)
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn}


def _ratio(num: float, den: float, if_zero: float) -> float:
    """``num / den``, or ``if_zero`` when ``den`` is 0."""
    return float(num) / float(den) if den > 0 else float(if_zero)


def segmentation_scores(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """ISIC 2017 Part 1 scores of one predicted mask (the 0/0 conventions are in the module docstring).

    Args:
        pred: [H, W] predicted mask; any non-zero value is lesion.
        gt: [H, W] ground-truth mask, same shape; any non-zero value is lesion.

    Returns:
        dict with float ``jaccard``, ``dice``, ``accuracy``, ``sensitivity``, ``specificity``.

    Raises:
        ValueError: if the shapes differ or the masks have no pixel at all.
    """
    c = confusion_counts(pred, gt)
    tp, fp, tn, fn = c["tp"], c["fp"], c["tn"], c["fn"]
    total = tp + fp + tn + fn
    if total == 0:
        raise ValueError("cannot score empty (0-pixel) masks")
    return {
        "jaccard": _ratio(tp, tp + fp + fn, 1.0),
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, 1.0),
        "accuracy": (tp + tn) / total,
        "sensitivity": _ratio(tp, tp + fn, 1.0),
        "specificity": _ratio(tn, tn + fp, 1.0),
    }


def thresholded_jaccard(jaccards: Sequence[float] | np.ndarray, threshold: float = JACCARD_THRESHOLD) -> float:
    """ISIC 2018 thresholded Jaccard: per-image scores below ``threshold`` count as 0, then the mean.

    Args:
        jaccards: [N] per-image Jaccard indices.
        threshold: scores strictly below this become 0 (a score equal to it is kept).

    Returns:
        The mean of the thresholded scores, or NaN for an empty input.
    """
    values = np.asarray(jaccards, dtype=np.float64).reshape(-1)
    if values.size == 0:
        return float("nan")
    return float(np.mean(np.where(values < threshold, 0.0, values)))


# ----------------------------------------------------------------------------------------------------------------
# Lesion box
# ----------------------------------------------------------------------------------------------------------------


def mask_to_box(mask: np.ndarray) -> np.ndarray | None:
    """Tight bounding box of the non-zero pixels of a mask.

    Args:
        mask: [H, W] mask; any non-zero value is foreground.

    Returns:
        int64 [4] ``(y1, x1, y2, x2)`` in pixels, ``y2``/``x2`` exclusive; None when the mask is empty.
    """
    mask = np.asarray(mask).astype(bool)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1], dtype=np.int64)


def box_iou(box_a: Sequence[float] | np.ndarray, box_b: Sequence[float] | np.ndarray) -> float:
    """Intersection over union of two boxes (:func:`mrcnn.utils.compute_overlaps` of the two).

    Args:
        box_a: [4] ``(y1, x1, y2, x2)`` in pixels, ``y2``/``x2`` exclusive.
        box_b: [4] same format.

    Returns:
        IoU in [0, 1]; 0 when the union has no area (two degenerate boxes).
    """
    a = np.asarray(box_a, dtype=np.float64)
    b = np.asarray(box_b, dtype=np.float64)
    if a.shape != (4,) or b.shape != (4,):
        raise ValueError(f"boxes must have shape (4,) as (y1, x1, y2, x2); got {a.shape} and {b.shape}")
    return float(compute_overlaps(a[None], b[None])[0, 0])


def mask_box_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of the bounding boxes of two masks (the lesion-localisation score).

    Args:
        pred: [H, W] predicted mask.
        gt: [H, W] ground-truth mask, same shape.

    Returns:
        The box IoU; 1.0 when both masks are empty, 0.0 when exactly one is.

    Raises:
        ValueError: if the shapes differ.
    """
    pred, gt = _as_bool_pair(pred, gt)
    box_p, box_g = mask_to_box(pred), mask_to_box(gt)
    if box_p is None and box_g is None:
        return 1.0
    if box_p is None or box_g is None:
        return 0.0
    return box_iou(box_p, box_g)


# ----------------------------------------------------------------------------------------------------------------
# Evaluator
# ----------------------------------------------------------------------------------------------------------------


class SegmentationEvaluator:
    """Accumulates per-image segmentation and box scores, then summarises them.

    Follows the reset / process / evaluate pattern of detectron2's evaluators::

        evaluator = SegmentationEvaluator()
        evaluator.reset()
        for image_id, pred, gt in ...:
            evaluator.process(image_id, pred, gt, method="otsu")
        summary, rows = evaluator.evaluate()

    Args:
        jaccard_threshold: threshold of the ISIC 2018 thresholded Jaccard.
    """

    def __init__(self, jaccard_threshold: float = JACCARD_THRESHOLD) -> None:
        self.jaccard_threshold = float(jaccard_threshold)
        self._rows: list[dict[str, Any]] = []

    def reset(self) -> None:
        """Forgets every processed image."""
        self._rows = []

    def process(
        self,
        image_id: str,
        pred_mask: np.ndarray,
        gt_mask: np.ndarray,
        pred_box: Sequence[float] | np.ndarray | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Scores one image and stores its row.

        Args:
            image_id: identifier written in the ``image_id`` column.
            pred_mask: [H, W] predicted lesion mask (non-zero = lesion).
            gt_mask: [H, W] ground-truth lesion mask, same shape (non-zero = lesion).
            pred_box: optional [4] ``(y1, x1, y2, x2)`` pixel box predicted by a detector; when None the box IoU
                uses the bounding box of ``pred_mask``.
            **extra: further columns stored as they are (e.g. ``score=0.98``, ``method="otsu"``).

        Returns:
            The stored row: ``image_id``, the :data:`SEGMENTATION_KEYS` scores, ``box_iou``, the counts ``tp``,
            ``fp``, ``tn``, ``fn``, then ``extra``.

        Raises:
            ValueError: if the mask shapes differ.
        """
        counts = confusion_counts(pred_mask, gt_mask)
        scores = segmentation_scores(pred_mask, gt_mask)
        if pred_box is None:
            iou = mask_box_iou(pred_mask, gt_mask)
        else:
            gt_box = mask_to_box(gt_mask)
            iou = 0.0 if gt_box is None else box_iou(pred_box, gt_box)
        row: dict[str, Any] = {"image_id": image_id, **scores, "box_iou": iou, **counts, **extra}
        self._rows.append(row)
        return row

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The per-image rows processed so far (a copy of the list)."""
        return list(self._rows)

    def evaluate(self) -> tuple[dict[str, float | int], list[dict[str, Any]]]:
        """Summarises the processed images.

        Returns:
            ``(summary, rows)``: ``summary`` has the means of ``jaccard``, ``dice``, ``accuracy``,
            ``sensitivity``, ``specificity``, the ``thresholded_jaccard``, the ``median_box_iou`` and the int
            ``n_images`` (every float is NaN when nothing was processed); ``rows`` is the list of per-image dicts
            for :func:`write_per_image_csv`.
        """
        rows = self.rows
        summary: dict[str, float | int] = {}
        for key in SEGMENTATION_KEYS:
            values = np.array([r[key] for r in rows], dtype=np.float64)
            summary[key] = float(values.mean()) if values.size else float("nan")
        summary["thresholded_jaccard"] = thresholded_jaccard([r["jaccard"] for r in rows], self.jaccard_threshold)
        box_ious = np.array([r["box_iou"] for r in rows], dtype=np.float64)
        summary["median_box_iou"] = float(np.median(box_ious)) if box_ious.size else float("nan")
        summary["n_images"] = len(rows)
        return summary, rows


def write_per_image_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> None:
    """Writes per-image rows (from :meth:`SegmentationEvaluator.evaluate`) to a CSV file.

    The columns are the union of the rows' keys in first-seen order; a row lacking a column leaves it empty.
    Floats are written with 6 significant digits.

    Args:
        rows: per-image dicts.
        path: output file; its parent folder is created when missing. The write is atomic: a failure leaves an
            earlier file of that name as it was.
    """
    fields: list[str] = []
    for row in rows:
        for key in row:
            if key not in fields:
                fields.append(key)
    with atomic_path(path, fsync=False) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: (f"{v:.6g}" if isinstance(v, (float, np.floating)) else v) for k, v in row.items()}
            )


# ----------------------------------------------------------------------------------------------------------------
# Classification (ISIC 2017 Part 3)
# ----------------------------------------------------------------------------------------------------------------


def _one_vs_rest_auc(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC of ``scores`` for a binary ``positive`` vector; None when only one class is present."""
    from sklearn.metrics import roc_auc_score

    if positive.size == 0 or positive.all() or not positive.any():
        return None
    return float(roc_auc_score(positive, scores))


def balanced_accuracy(labels: Sequence[int] | np.ndarray, predictions: Sequence[int] | np.ndarray,
                      num_classes: int) -> float:
    """Mean per-class recall over the classes present in ``labels`` (NaN when there is no label)."""
    labels, predictions = np.asarray(labels).reshape(-1), np.asarray(predictions).reshape(-1)
    recalls = [np.mean(predictions[labels == k] == k) for k in range(num_classes) if np.any(labels == k)]
    return float(np.mean(recalls)) if recalls else float("nan")


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str] = CLASS_NAMES,
    predictions: Sequence[int] | np.ndarray | None = None,
) -> dict[str, Any]:
    """ISIC 2017 Part 3 classification metrics.

    The predicted class is ``predictions`` when given (the model's decisions, e.g. a classifier's
    weighted arg-max), else the arg-max of ``probs``; accuracy, balanced accuracy and the confusion matrix count
    it, the AUCs and Brier scores use ``probs``. ROC AUCs are one-vs-rest on the melanoma and on the
    seborrheic keratosis probability column, as in the challenge ranking.

    Args:
        y_true: [N] int class indices into ``class_names``.
        probs: [N, C] class probabilities (or any scores), columns in the order of ``class_names``.
        class_names: [C] class names; must contain ``"melanoma"`` and ``"seborrheic_keratosis"`` for their AUCs
            (a missing name gives None).
        predictions: [N] int predicted class indices, or None for the arg-max of ``probs``.

    Returns:
        dict with ``n`` (int), ``accuracy``, ``balanced_accuracy`` (mean per-class recall over the classes present
        in ``y_true``), ``melanoma_auc``, ``seborrheic_keratosis_auc``, ``mean_auc`` (their mean; each AUC is None
        when ``y_true`` holds only one side of that split), ``confusion_matrix`` ([C][C] list of int lists, rows
        = truth, columns = prediction), ``class_counts`` ({name: number of true samples}), ``class_names``, and
        the calibration: ``brier`` (multi-class Brier score) and ``melanoma_brier`` / ``seborrheic_keratosis_brier``
        (one vs rest).

    Raises:
        ValueError: on inconsistent shapes or labels outside ``[0, C)``.
    """
    from sklearn.metrics import confusion_matrix

    y = np.asarray(y_true).astype(np.int64).reshape(-1)
    p = np.asarray(probs, dtype=np.float64)
    names = list(class_names)
    num_classes = len(names)
    if p.ndim != 2 or p.shape != (y.size, num_classes):
        raise ValueError(
            f"probs must have shape [N, C] = [{y.size}, {num_classes}] (N labels, C class names); got {p.shape}"
        )
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}); got range [{y.min()}, {y.max()}]")
    if predictions is None:
        pred = p.argmax(axis=1) if y.size else np.zeros(0, np.int64)
    else:
        pred = np.asarray(predictions).astype(np.int64).reshape(-1)
        if pred.shape != y.shape or (pred.size and (pred.min() < 0 or pred.max() >= num_classes)):
            raise ValueError(f"predictions must be {y.size} class indices in [0, {num_classes}); got shape "
                             f"{pred.shape}" + (f", range [{pred.min()}, {pred.max()}]" if pred.size else ""))
    cm = confusion_matrix(y, pred, labels=list(range(num_classes))) if y.size else np.zeros((num_classes,) * 2)
    result: dict[str, Any] = {
        "n": int(y.size),
        "accuracy": float(np.mean(pred == y)) if y.size else float("nan"),
        "balanced_accuracy": balanced_accuracy(y, pred, num_classes),
    }
    aucs = []
    for name in ("melanoma", "seborrheic_keratosis"):
        auc = None
        if name in names:
            k = names.index(name)
            auc = _one_vs_rest_auc(y == k, p[:, k])
        result[f"{name}_auc"] = auc
        aucs.append(auc)
    result["mean_auc"] = None if any(a is None for a in aucs) else float(np.mean(aucs))
    # Calibration: the multi-class Brier score (mean over images of the squared distance between the probability
    # vector and the one-hot truth; 0 perfect, a uniform guess over 3 classes 0.667) and one-vs-rest per class.
    onehot = np.eye(num_classes)[y] if y.size else np.zeros((0, num_classes))
    result["brier"] = float(np.mean(np.sum((p - onehot) ** 2, axis=1))) if y.size else float("nan")
    for name in ("melanoma", "seborrheic_keratosis"):
        if name in names:
            k = names.index(name)
            result[f"{name}_brier"] = float(np.mean((p[:, k] - onehot[:, k]) ** 2)) if y.size else float("nan")
    result["confusion_matrix"] = [[int(v) for v in row] for row in cm]
    result["class_counts"] = {name: int(n) for name, n in zip(names, cm.sum(axis=1))}
    result["class_names"] = names
    return result


# ----------------------------------------------------------------------------------------------------------------
# COCO AP
# ----------------------------------------------------------------------------------------------------------------

_COCO_STAT_NAMES = ("AP", "AP50", "AP75")


def _coco_gt_with_defaults(gt_coco_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Deep copy of a COCO ground-truth dict with the fields COCOeval needs filled in."""
    from pycocotools import mask as mask_utils

    gt = copy.deepcopy(dict(gt_coco_dict))
    gt.setdefault("info", {})
    gt.setdefault("licenses", [])
    for key in ("images", "annotations", "categories"):
        if key not in gt:
            raise ValueError(f"gt_coco_dict lacks the COCO key {key!r}")
    for i, ann in enumerate(gt["annotations"]):
        ann.setdefault("id", i + 1)
        ann.setdefault("iscrowd", 0)
        if "area" not in ann:
            seg = ann.get("segmentation")
            if isinstance(seg, dict):
                ann["area"] = float(mask_utils.area(seg))
            else:
                ann["area"] = float(ann["bbox"][2] * ann["bbox"][3])
    return gt


def coco_metrics(
    gt_coco_dict: Mapping[str, Any],
    det_coco_list: Sequence[Mapping[str, Any]],
    iou_types: Sequence[str] = ("bbox", "segm"),
) -> dict[str, dict[str, float]]:
    """COCO AP, AP50 and AP75 of detections with pycocotools' COCOeval (its printing is captured).

    Args:
        gt_coco_dict: COCO ground truth: ``images`` (with ``id``, ``height``, ``width``), ``annotations`` (with
            ``image_id``, ``category_id``, ``bbox`` as ``[x, y, w, h]`` and, for ``segm``, ``segmentation`` as
            RLE or polygons), ``categories``. Missing ``id``/``iscrowd``/``area`` are filled in; the input is not
            modified.
        det_coco_list: COCO results: dicts with ``image_id``, ``category_id``, ``score``, ``bbox`` and, for
            ``segm``, ``segmentation`` (compressed RLE). The input is not modified.
        iou_types: any of ``"bbox"``, ``"segm"``.

    Returns:
        ``{iou_type: {"AP": ..., "AP50": ..., "AP75": ...}}`` as fractions in [0, 1] (not percent). With no
        detections every AP is 0.0; with no ground-truth annotation it is NaN (COCOeval's -1).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = _coco_gt_with_defaults(gt_coco_dict)
    dets = copy.deepcopy(list(det_coco_list))
    results: dict[str, dict[str, float]] = {}
    for iou_type in iou_types:
        if iou_type not in ("bbox", "segm"):
            raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
        if not gt["annotations"]:
            results[iou_type] = {name: float("nan") for name in _COCO_STAT_NAMES}
            continue
        if not dets:
            results[iou_type] = {name: 0.0 for name in _COCO_STAT_NAMES}
            continue
        if iou_type == "segm" and any("segmentation" not in d for d in dets):
            raise ValueError("segm evaluation needs a 'segmentation' (RLE) in every detection")
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = COCO()
            coco_gt.dataset = copy.deepcopy(gt)
            coco_gt.createIndex()
            coco_dt = coco_gt.loadRes(copy.deepcopy(dets))
            coco_eval = COCOeval(coco_gt, coco_dt, iouType=iou_type)
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        stats = coco_eval.stats[:3]
        results[iou_type] = {
            name: (float("nan") if v < 0 or math.isnan(v) else float(v)) for name, v in zip(_COCO_STAT_NAMES, stats)
        }
    return results
