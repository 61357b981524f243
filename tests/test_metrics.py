"""Tests of lesion.metrics (hand-computed golden values) and of the lesion.plots figures that show them."""

from __future__ import annotations

import csv
import copy

import numpy as np
import pytest

from lesion import metrics
from lesion.metrics import (
    SegmentationEvaluator,
    box_iou,
    classification_metrics,
    coco_metrics,
    confusion_counts,
    mask_box_iou,
    mask_to_box,
    segmentation_scores,
    thresholded_jaccard,
    write_per_image_csv,
)


def _masks_3_1_2_10() -> tuple[np.ndarray, np.ndarray]:
    """4x4 masks with TP=3, FP=1, FN=2, TN=10 (16 pixels)."""
    pred = np.zeros((4, 4), dtype=bool)
    gt = np.zeros((4, 4), dtype=bool)
    pred[0, 0:3] = True  # TP x3 (gt below)
    gt[0, 0:3] = True
    pred[1, 0] = True  # FP
    gt[2, 0:2] = True  # FN x2
    return pred, gt


# ----------------------------------------------------------------------------------------------------------------
# Segmentation scores
# ----------------------------------------------------------------------------------------------------------------


def test_confusion_counts_by_hand():
    pred, gt = _masks_3_1_2_10()
    assert confusion_counts(pred, gt) == {"tp": 3, "fp": 1, "tn": 10, "fn": 2}


def test_segmentation_scores_by_hand():
    pred, gt = _masks_3_1_2_10()
    s = segmentation_scores(pred, gt)
    assert s["jaccard"] == pytest.approx(3 / 6)
    assert s["dice"] == pytest.approx(6 / 9)  # 2 TP / (2 TP + FP + FN) = 6 / (6 + 1 + 2); also 2J / (1 + J).
    assert s["sensitivity"] == pytest.approx(3 / 5)
    assert s["specificity"] == pytest.approx(10 / 11)
    assert s["accuracy"] == pytest.approx(13 / 16)


def test_segmentation_scores_accept_uint8_255_masks():
    pred, gt = _masks_3_1_2_10()
    s = segmentation_scores(pred.astype(np.uint8) * 255, gt.astype(np.uint8) * 255)
    assert s["jaccard"] == pytest.approx(0.5)


def test_dice_equals_2j_over_1_plus_j():
    rng = np.random.default_rng(0)
    pred = rng.random((16, 16)) > 0.5
    gt = rng.random((16, 16)) > 0.4
    s = segmentation_scores(pred, gt)
    assert s["dice"] == pytest.approx(2 * s["jaccard"] / (1 + s["jaccard"]))


def test_both_masks_empty_is_perfect():
    empty = np.zeros((5, 7), dtype=bool)
    s = segmentation_scores(empty, empty)
    assert s == {"jaccard": 1.0, "dice": 1.0, "accuracy": 1.0, "sensitivity": 1.0, "specificity": 1.0}


def test_empty_prediction_of_a_lesion_scores_zero():
    gt = np.zeros((4, 4), dtype=bool)
    gt[1:3, 1:3] = True
    s = segmentation_scores(np.zeros_like(gt), gt)
    assert s["jaccard"] == 0.0 and s["dice"] == 0.0 and s["sensitivity"] == 0.0
    assert s["specificity"] == 1.0
    assert s["accuracy"] == pytest.approx(12 / 16)


def test_all_lesion_truth_has_specificity_one():
    gt = np.ones((2, 2), dtype=bool)
    pred = np.array([[1, 1], [1, 0]], dtype=bool)
    s = segmentation_scores(pred, gt)
    assert s["specificity"] == 1.0  # TN + FP = 0: no background pixel could be wrongly marked.
    assert s["sensitivity"] == pytest.approx(3 / 4)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 5\)"):
        segmentation_scores(np.zeros((4, 4)), np.zeros((4, 5)))


def test_thresholded_jaccard_rule():
    assert thresholded_jaccard([0.64]) == 0.0
    assert thresholded_jaccard([0.66]) == pytest.approx(0.66)
    assert thresholded_jaccard([0.65]) == pytest.approx(0.65)  # Equal to the threshold is kept.
    assert thresholded_jaccard([0.64, 0.66, 1.0]) == pytest.approx((0 + 0.66 + 1.0) / 3)
    assert np.isnan(thresholded_jaccard([]))


# ----------------------------------------------------------------------------------------------------------------
# Boxes
# ----------------------------------------------------------------------------------------------------------------


def test_box_iou_golden():
    # Two 4x4 boxes overlapping in a 2x2 square: 4 / (16 + 16 - 4) = 1/7.
    assert box_iou((0, 0, 4, 4), (2, 2, 6, 6)) == pytest.approx(1 / 7)
    assert box_iou((0, 0, 4, 4), (0, 0, 4, 4)) == 1.0
    assert box_iou((0, 0, 2, 2), (2, 2, 4, 4)) == 0.0  # Touching edges: exclusive ends, no overlap.
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_mask_to_box_is_exclusive():
    mask = np.zeros((6, 8), dtype=bool)
    mask[2, 3] = True
    np.testing.assert_array_equal(mask_to_box(mask), [2, 3, 3, 4])
    mask[4, 6] = True
    np.testing.assert_array_equal(mask_to_box(mask), [2, 3, 5, 7])
    assert mask_to_box(np.zeros((3, 3))) is None


def test_mask_box_iou():
    pred = np.zeros((8, 8), dtype=bool)
    gt = np.zeros((8, 8), dtype=bool)
    pred[0:4, 0:4] = True
    gt[2:6, 2:6] = True
    gt[3, 3] = False  # A hole does not change the box.
    assert mask_box_iou(pred, gt) == pytest.approx(1 / 7)
    assert mask_box_iou(np.zeros_like(gt), np.zeros_like(gt)) == 1.0
    assert mask_box_iou(np.zeros_like(gt), gt) == 0.0


# ----------------------------------------------------------------------------------------------------------------
# Evaluator and CSV
# ----------------------------------------------------------------------------------------------------------------


def test_evaluator_summary_and_rows(tmp_path):
    pred, gt = _masks_3_1_2_10()
    evaluator = SegmentationEvaluator()
    evaluator.process("a", pred, gt, method="otsu")
    evaluator.process("b", gt, gt, method="otsu")  # Perfect.
    evaluator.process("c", np.zeros_like(gt), gt, pred_box=(0, 0, 3, 3), method="otsu")
    summary, rows = evaluator.evaluate()

    assert summary["n_images"] == 3
    assert summary["jaccard"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert summary["dice"] == pytest.approx((6 / 9 + 1.0 + 0.0) / 3)
    assert summary["sensitivity"] == pytest.approx((3 / 5 + 1.0 + 0.0) / 3)
    assert summary["thresholded_jaccard"] == pytest.approx(1.0 / 3)  # 0.5 -> 0, 1 kept, 0 -> 0.
    # Box IoUs: a) pred box (0,0,2,3) vs gt box (0,0,3,3) = 6/9; b) 1; c) the given box equals the gt box: 1.
    assert [r["box_iou"] for r in rows] == pytest.approx([6 / 9, 1.0, 1.0])
    assert summary["median_box_iou"] == pytest.approx(1.0)
    assert rows[0]["image_id"] == "a" and rows[0]["tp"] == 3 and rows[0]["method"] == "otsu"

    path = tmp_path / "sub" / "per_image.csv"
    write_per_image_csv(rows, path)
    with open(path, newline="") as f:
        read = list(csv.DictReader(f))
    assert [r["image_id"] for r in read] == ["a", "b", "c"]
    assert float(read[0]["jaccard"]) == pytest.approx(0.5)
    assert {"dice", "box_iou", "fn", "method"} <= set(read[0])

    evaluator.reset()
    summary, rows = evaluator.evaluate()
    assert summary["n_images"] == 0 and rows == [] and np.isnan(summary["jaccard"])


def test_evaluator_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="does not match"):
        SegmentationEvaluator().process("x", np.zeros((3, 3)), np.zeros((4, 3)))


# ----------------------------------------------------------------------------------------------------------------
# Classification
# ----------------------------------------------------------------------------------------------------------------

# Classes: 0 melanoma, 1 seborrheic keratosis, 2 nevus.
_Y = np.array([0, 0, 1, 1, 2, 2, 2, 2])
_PROBS = np.array(
    [
        [0.70, 0.20, 0.10],  # mel -> mel (right)
        [0.05, 0.10, 0.85],  # mel -> nevus (wrong)
        [0.10, 0.80, 0.10],  # sk -> sk (right)
        [0.20, 0.50, 0.30],  # sk -> sk (right)
        [0.10, 0.10, 0.80],  # nevus -> nevus (right)
        [0.50, 0.10, 0.40],  # nevus -> mel (wrong)
        [0.20, 0.30, 0.50],  # nevus -> nevus (right)
        [0.10, 0.60, 0.30],  # nevus -> sk (wrong)
    ]
)


def test_classification_metrics_by_hand():
    m = classification_metrics(_Y, _PROBS)
    assert m["n"] == 8
    assert m["accuracy"] == pytest.approx(5 / 8)
    # Recalls: melanoma 1/2, SK 2/2, nevus 2/4.
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    # Melanoma scores: positives {.70, .05}, negatives {.10, .20, .10, .50, .20, .10}: .70 beats all 6 pairs, .05
    # beats none: AUC = 6 / 12.
    assert m["melanoma_auc"] == pytest.approx(6 / 12)
    # SK scores: positives {.80, .50}, negatives {.20, .10, .10, .10, .30, .60}: 6 + 5 of 12 pairs.
    assert m["seborrheic_keratosis_auc"] == pytest.approx(11 / 12)
    assert m["mean_auc"] == pytest.approx((6 / 12 + 11 / 12) / 2)
    assert m["confusion_matrix"] == [[1, 0, 1], [0, 2, 0], [1, 1, 2]]
    assert m["class_counts"] == {"melanoma": 2, "seborrheic_keratosis": 2, "nevus": 4}


def test_classification_auc_is_none_with_one_class():
    y = np.array([2, 2, 2])
    probs = np.array([[0.1, 0.1, 0.8], [0.3, 0.3, 0.4], [0.6, 0.2, 0.2]])
    m = classification_metrics(y, probs)
    assert m["melanoma_auc"] is None and m["seborrheic_keratosis_auc"] is None and m["mean_auc"] is None
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)  # Only the nevus class is present.


def test_classification_rejects_bad_shapes():
    with pytest.raises(ValueError, match="probs must have shape"):
        classification_metrics([0, 1], np.zeros((2, 2)))
    with pytest.raises(ValueError, match="labels must lie"):
        classification_metrics([0, 3], np.zeros((2, 3)))


# ----------------------------------------------------------------------------------------------------------------
# COCO AP
# ----------------------------------------------------------------------------------------------------------------


def _coco_case() -> tuple[dict, list[dict]]:
    """Two 32x40 images with one lesion each, and detections identical to the ground truth."""
    from pycocotools import mask as mask_utils

    images, annotations, detections = [], [], []
    for image_id, (y1, x1, y2, x2) in enumerate([(4, 6, 20, 30), (10, 2, 30, 18)], start=1):
        mask = np.zeros((32, 40), dtype=np.uint8)
        mask[y1:y2, x1:x2] = 1
        rle = mask_utils.encode(np.asfortranarray(mask))
        bbox = [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]  # COCO [x, y, w, h].
        images.append({"id": image_id, "height": 32, "width": 40, "file_name": f"{image_id}.jpg"})
        annotations.append({"image_id": image_id, "category_id": 1, "bbox": bbox, "segmentation": rle})
        detections.append(
            {"image_id": image_id, "category_id": 1, "bbox": bbox, "segmentation": rle, "score": 0.9}
        )
    gt = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "lesion"}]}
    return gt, detections


def test_coco_ap_is_one_for_perfect_detections(capsys):
    gt, dets = _coco_case()
    gt_before, dets_before = copy.deepcopy(gt), copy.deepcopy(dets)
    result = coco_metrics(gt, dets)
    for iou_type in ("bbox", "segm"):
        assert result[iou_type] == pytest.approx({"AP": 1.0, "AP50": 1.0, "AP75": 1.0})
    assert capsys.readouterr().out == ""  # COCOeval's printing is captured.
    assert gt == gt_before and dets == dets_before  # Inputs are not modified.


def test_coco_ap_is_zero_without_detections():
    gt, _ = _coco_case()
    result = coco_metrics(gt, [])
    assert result == {"bbox": {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}, "segm": {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}}


def test_coco_ap_is_zero_for_misplaced_detections():
    gt, dets = _coco_case()
    for det in dets:
        det["bbox"] = [0.0, 0.0, 2.0, 2.0]
        del det["segmentation"]
    result = coco_metrics(gt, dets, iou_types=("bbox",))
    assert result["bbox"]["AP"] == 0.0 and result["bbox"]["AP50"] == 0.0


def test_public_api_is_declared():
    for name in metrics.__all__:
        assert hasattr(metrics, name)


# ----------------------------------------------------------------------------------------------------------------
# Figures (lesion.plots): each writes a non-empty PNG.
# ----------------------------------------------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path) -> None:
    with open(path, "rb") as f:
        data = f.read()
    assert len(data) > 1000 and data.startswith(_PNG_SIGNATURE)


def test_plot_score_boxplot(tmp_path):
    from lesion.plots import plot_score_boxplot

    rng = np.random.default_rng(0)
    path = plot_score_boxplot(
        {"Mask R-CNN": rng.uniform(0.6, 1.0, 30), "Otsu": rng.uniform(0.0, 1.0, 30), "empty": []},
        tmp_path / "box.png",
    )
    _assert_png(path)


def test_plot_confusion_matrix(tmp_path):
    from lesion.plots import plot_confusion_matrix

    cm = classification_metrics(_Y, _PROBS)["confusion_matrix"]
    _assert_png(plot_confusion_matrix(cm, tmp_path / "figs" / "cm.png"))
    with pytest.raises(ValueError, match="confusion must be"):
        plot_confusion_matrix([[1, 2], [3, 4]], tmp_path / "bad.png")


def test_plot_roc_and_precision_recall(tmp_path):
    from lesion.plots import plot_precision_recall, plot_roc_curves

    _assert_png(plot_roc_curves(_Y, _PROBS, tmp_path / "roc.png"))
    _assert_png(plot_precision_recall(_Y, _PROBS, tmp_path / "pr.png"))
    # A set without any melanoma still draws (the melanoma curve is marked undefined).
    y = np.array([1, 2, 2])
    _assert_png(plot_roc_curves(y, _PROBS[2:5], tmp_path / "roc1.png"))
    _assert_png(plot_precision_recall(y, _PROBS[2:5], tmp_path / "pr1.png"))


def test_plots_close_their_figures(tmp_path):
    import matplotlib.pyplot as plt

    from lesion.plots import plot_roc_curves

    before = len(plt.get_fignums())
    plot_roc_curves(_Y, _PROBS, tmp_path / "roc.png")
    assert len(plt.get_fignums()) == before


class _Unprintable:
    def __str__(self):
        raise ValueError("cannot be written")


def test_per_image_csv_is_written_atomically(tmp_path):
    path = tmp_path / "per_image.csv"
    write_per_image_csv([{"image_id": "a", "jaccard": 0.5}], path)
    earlier = path.read_bytes()
    # The second row fails half-way through the file: the earlier file stays, and no temporary file is left.
    with pytest.raises(ValueError, match="cannot be written"):
        write_per_image_csv([{"image_id": "b", "jaccard": 0.25}, {"image_id": _Unprintable()}], path)
    assert path.read_bytes() == earlier
    assert [p.name for p in tmp_path.iterdir()] == ["per_image.csv"]


def test_figure_is_written_atomically(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from lesion import plots

    path = tmp_path / "figures" / "confusion.png"
    assert plots.plot_confusion_matrix(np.array([[3, 1, 0], [0, 2, 1], [1, 0, 4]]), path) == str(path)
    earlier = path.read_bytes()
    assert earlier[:8] == b"\x89PNG\r\n\x1a\n"

    def broken_savefig(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        plots.plot_confusion_matrix(np.eye(3, dtype=int), path)
    assert path.read_bytes() == earlier
    assert [p.name for p in path.parent.iterdir()] == ["confusion.png"]


def test_brier_scores_by_hand(tmp_path):
    from lesion.plots import plot_reliability

    y = [0, 2, 1]
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.2, 0.6], [0.0, 1.0, 0.0]])
    m = classification_metrics(y, probs, ["melanoma", "seborrheic_keratosis", "nevus"])
    # (0.04 + 0.01 + 0.01) + (0.04 + 0.04 + 0.16) + 0, over 3 images.
    assert m["brier"] == pytest.approx(0.30 / 3)
    assert m["melanoma_brier"] == pytest.approx((0.04 + 0.04 + 0.0) / 3)
    assert m["seborrheic_keratosis_brier"] == pytest.approx((0.01 + 0.04 + 0.0) / 3)
    path = plot_reliability(y, probs, tmp_path / "reliability.png", ["melanoma", "seborrheic_keratosis", "nevus"])
    assert (tmp_path / "reliability.png").stat().st_size > 1000 and path.endswith("reliability.png")


def test_classification_metrics_count_the_given_decisions():
    y = [0, 1, 2, 2]
    probs = np.array([[0.4, 0.1, 0.5], [0.1, 0.3, 0.6], [0.1, 0.1, 0.8], [0.2, 0.1, 0.7]])
    names = ["melanoma", "seborrheic_keratosis", "nevus"]
    plain = classification_metrics(y, probs, names)
    assert plain["balanced_accuracy"] == pytest.approx(1 / 3)
    given = classification_metrics(y, probs, names, predictions=[0, 1, 2, 0])
    # Recalls 1, 1, 1/2; the AUCs and the Brier score come from the probabilities either way.
    assert given["balanced_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3) and given["accuracy"] == 0.75
    assert given["confusion_matrix"][2] == [1, 0, 1]
    assert given["melanoma_auc"] == plain["melanoma_auc"] and given["brier"] == plain["brier"]
    with pytest.raises(ValueError, match="predictions"):
        classification_metrics(y, probs, names, predictions=[0, 1, 3, 0])
