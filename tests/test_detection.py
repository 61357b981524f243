"""Tests of mrcnn.detection.DetectionLayer on a hand-made set of ROIs."""

import math

import numpy as np
import tensorflow as tf

from mrcnn.detection import DetectionLayer
from tests.layer_checks import check_layer

R0 = [0.1, 0.1, 0.4, 0.4]
R1 = [0.1, 0.12, 0.4, 0.42]  # IoU 0.084 / 0.096 = 0.875 with R0.
FAR = [0.6, 0.6, 0.8, 0.8]
WIDE = [0.5, 0.5, 0.95, 1.2]  # Sticks out of the window on the right.

# ROIs of image 0, with their class probabilities (background, class 1, class 2):
ROIS = [R0, R1, R1, FAR, FAR, WIDE, [0, 0, 0, 0]]
PROBS = [
    [0.05, 0.9, 0.05],  # R0, class 1, 0.9: kept.
    [0.1, 0.8, 0.1],    # R1, class 1, 0.8: suppressed by R0 (same class).
    [0.1, 0.05, 0.85],  # R1, class 2, 0.85: kept (NMS is per class).
    [0.9, 0.05, 0.05],  # FAR, background: dropped.
    [0.3, 0.1, 0.6],    # FAR, class 2, 0.6 < min_confidence 0.7: dropped.
    [0.2, 0.75, 0.05],  # WIDE, class 1, 0.75: kept, clipped to the window.
    [0.0, 1.0, 0.0],    # Padding ROI: dropped whatever its scores.
]
WINDOW = [0.0, 0.0, 1.0, 0.9]


def _run(layer, rois, probs, deltas=None, window=None):
    rois = tf.constant(rois, tf.float32)
    probs = tf.constant(probs, tf.float32)
    if deltas is None:
        deltas = tf.zeros(probs.shape + (4,))
    if window is None:
        window = [WINDOW] * rois.shape[0]
    det, class_probs = layer(rois, probs, tf.constant(deltas, tf.float32), tf.constant(window, tf.float32))
    return det.numpy(), class_probs.numpy()


def test_detection_layer_hand_case():
    layer = DetectionLayer(max_detections=5, min_confidence=0.7, nms_threshold=0.3)
    # Image 1 holds only background and weak boxes.
    rois = [ROIS, [R0, FAR, WIDE, R1, R0, FAR, R1]]
    probs = [PROBS, [[0.9, 0.05, 0.05], [0.4, 0.3, 0.3], [0.35, 0.6, 0.05]] + [[1.0, 0.0, 0.0]] * 4]
    det, class_probs = _run(layer, rois, probs)
    assert det.shape == (2, 5, 6) and class_probs.shape == (2, 5, 3)
    # Sorted by score, (y1, x1, y2, x2, class_id, score), zero rows as padding.
    np.testing.assert_allclose(det[0], [R0 + [1, 0.9],
                                        R1 + [2, 0.85],
                                        [0.5, 0.5, 0.95, 0.9, 1, 0.75],
                                        [0] * 6,
                                        [0] * 6], atol=1e-6)
    np.testing.assert_allclose(class_probs[0], [PROBS[0], PROBS[2], PROBS[5], [0] * 3, [0] * 3], atol=1e-6)
    np.testing.assert_array_equal(det[1], np.zeros((5, 6)))
    np.testing.assert_array_equal(class_probs[1], np.zeros((5, 3)))


def test_detection_layer_max_detections_keeps_top_scores():
    layer = DetectionLayer(max_detections=2, min_confidence=0.7, nms_threshold=0.3)
    det, class_probs = _run(layer, [ROIS], [PROBS])
    np.testing.assert_allclose(det[0], [R0 + [1, 0.9], R1 + [2, 0.85]], atol=1e-6)
    np.testing.assert_allclose(class_probs[0], [PROBS[0], PROBS[2]], atol=1e-6)


def test_detection_layer_nms_threshold():
    # At threshold 0.9 the same-class pair R0 / R1 (IoU 0.875) both survive.
    layer = DetectionLayer(max_detections=5, min_confidence=0.7, nms_threshold=0.9)
    det, _ = _run(layer, [ROIS], [PROBS])
    np.testing.assert_allclose(det[0, :4, 4:], [[1, 0.9], [2, 0.85], [1, 0.8], [1, 0.75]], atol=1e-6)


def test_detection_layer_uses_class_specific_deltas():
    layer = DetectionLayer(max_detections=2, min_confidence=0.5)
    deltas = np.zeros((1, 1, 3, 4), np.float32)
    # Class 1 (the winner): dy = 1 -> 0.1 of the height 0.2 = 0.02 down; dw = log 2 / 0.2 -> twice as wide.
    deltas[0, 0, 1] = [1.0, 0.0, 0.0, math.log(2) / 0.2]
    deltas[0, 0, 2] = [5.0, 5.0, 5.0, 5.0]  # Another class's deltas, not used.
    deltas[0, 0, 0] = [-5.0, -5.0, 0.0, 0.0]
    det, _ = _run(layer, [[[0.2, 0.3, 0.4, 0.5]]], [[[0.1, 0.8, 0.1]]], deltas, [[0.0, 0.0, 1.0, 1.0]])
    np.testing.assert_allclose(det[0, 0], [0.22, 0.2, 0.42, 0.6, 1, 0.8], atol=1e-6)
    np.testing.assert_array_equal(det[0, 1], np.zeros(6))


def test_detection_layer_per_image_window():
    layer = DetectionLayer(max_detections=1, min_confidence=0.5)
    rois = [[[0.0, 0.0, 1.0, 1.0]], [[0.0, 0.0, 1.0, 1.0]]]
    probs = [[[0.0, 1.0]], [[0.0, 1.0]]]
    windows = [[0.1, 0.2, 0.8, 0.9], [0.25, 0.0, 0.75, 1.0]]
    det, _ = _run(layer, rois, probs, window=windows)
    np.testing.assert_allclose(det[:, 0], [[0.1, 0.2, 0.8, 0.9, 1, 1], [0.25, 0.0, 0.75, 1.0, 1, 1]], atol=1e-6)


def test_detection_layer_passes_the_layer_checks():
    # Config round trip, dtypes, static shapes, tf.function and functional model (tests/layer_checks.py) on the
    # hand case with small random deltas and every argument away from its default: R1 of class 2 overlaps R0 of
    # class 1, so the class-agnostic NMS shows in the outputs (a config without it would not match).
    deltas = np.random.default_rng(0).normal(scale=0.1, size=(2, len(ROIS), 3, 4)).astype(np.float32)
    layer = DetectionLayer(max_detections=4, min_confidence=0.5, nms_threshold=0.4, std_dev=(0.2, 0.2, 0.1, 0.1),
                           class_agnostic=True, name="detections")
    det, class_probs = check_layer(
        layer, [np.array([ROIS] * 2, np.float32), np.array([PROBS, PROBS[::-1]], np.float32), deltas,
                np.array([WINDOW, [0.1, 0.0, 0.9, 1.0]], np.float32)],
        expected_shapes=[(2, 4, 6), (2, 4, 3)], expected_dtypes=["float32", "float32"])
    assert (det[..., 4] > 0).sum() >= 4 and set(det[..., 4].ravel()) <= {0.0, 1.0, 2.0}
    np.testing.assert_allclose(class_probs.sum(-1), (det[..., 5] > 0).astype(np.float32), atol=1e-6)


def test_detection_layer_under_mixed_precision_decodes_in_float32():
    # Scores and deltas that bfloat16 (8 mantissa bits) cannot hold: a mixed policy must not round them.
    probs = [[0.001, 0.9987, 0.0003], [0.0013, 0.0004, 0.9983]]
    deltas = np.full((1, 2, 3, 4), 0.0123, np.float32)
    want = _run(DetectionLayer(5, 0.7, 0.3), [[R0, FAR]], [probs], deltas)
    got = _run(DetectionLayer(5, 0.7, 0.3, dtype="mixed_bfloat16"), [[R0, FAR]], [probs], deltas)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert got[0][0, 0, 5] == np.float32(0.9987)


def test_detection_layer_class_agnostic_nms_keeps_one_box_per_object():
    # R1 of class 2 (0.85) overlaps R0 of class 1 (0.9) at IoU 0.875: per class both stay, class-agnostic only R0,
    # with R0's class distribution.
    per_class, _ = _run(DetectionLayer(5, 0.7, 0.3), [ROIS], [PROBS])
    agnostic, class_probs = _run(DetectionLayer(5, 0.7, 0.3, class_agnostic=True), [ROIS], [PROBS])
    np.testing.assert_allclose(per_class[0, :3, 4], [1, 2, 1])
    np.testing.assert_allclose(agnostic[0], [R0 + [1, 0.9],
                                             [0.5, 0.5, 0.95, 0.9, 1, 0.75],
                                             [0] * 6, [0] * 6, [0] * 6], atol=1e-6)
    np.testing.assert_allclose(class_probs[0, :2], [PROBS[0], PROBS[5]], atol=1e-6)
