"""Tests of mrcnn.boxes: IoU, the normalised format and clipping, with hand-computed values."""

import numpy as np
import tensorflow as tf

from mrcnn.boxes import box_area, clip_boxes, denorm_boxes, norm_boxes, norm_boxes_tf, pairwise_iou


def test_pairwise_iou_hand_values():
    boxes1 = [[0, 0, 10, 10]]
    boxes2 = [[5, 5, 15, 15], [0, 0, 10, 10], [20, 20, 30, 30], [10, 0, 20, 10]]
    # Shared 5 x 5 = 25, union 100 + 100 - 25 = 175; identical -> 1; disjoint -> 0; touching edge -> 0.
    iou = pairwise_iou(tf.constant(boxes1, tf.float32), tf.constant(boxes2, tf.float32))
    assert iou.dtype == tf.float32
    np.testing.assert_allclose(iou.numpy(), [[25 / 175, 1.0, 0.0, 0.0]], rtol=1e-6)


def test_pairwise_iou_shape_and_symmetry():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 20]], np.float32)
    b = np.array([[5, 5, 15, 15]], np.float32)
    # Second row: shared rows 5..10 x cols 5..15 = 50, union 200 + 100 - 50 = 250.
    np.testing.assert_allclose(pairwise_iou(a, b).numpy(), [[25 / 175], [50 / 250]], rtol=1e-6)
    np.testing.assert_allclose(pairwise_iou(b, a).numpy(), [[25 / 175, 50 / 250]], rtol=1e-6)


def test_pairwise_iou_batched_leading_dims():
    a = np.array([[[0, 0, 10, 10]], [[0, 0, 4, 4]]], np.float32)  # [2, 1, 4]
    b = np.array([[[5, 5, 15, 15], [0, 0, 10, 10]], [[0, 0, 2, 4], [0, 0, 4, 4]]], np.float32)  # [2, 2, 4]
    iou = pairwise_iou(a, b).numpy()
    assert iou.shape == (2, 1, 2)
    # Each batch item only against its own boxes: [[25/175, 1]] and [[8/16, 1]].
    np.testing.assert_allclose(iou, [[[25 / 175, 1.0]], [[0.5, 1.0]]], rtol=1e-6)


def test_pairwise_iou_zero_area_is_zero_not_nan():
    iou = pairwise_iou(np.zeros((2, 4), np.float32), np.array([[0, 0, 0, 0], [0, 0, 1, 1]], np.float32)).numpy()
    np.testing.assert_array_equal(iou, np.zeros((2, 2)))


def test_box_area():
    np.testing.assert_allclose(box_area(tf.constant([[0, 0, 2, 3], [5, 5, 4, 8], [1, 1, 1, 1]], tf.float32)).numpy(),
                               [6, 0, 0])


def test_norm_boxes_h_minus_one_convention():
    # Image 11 high, 21 wide: scale (10, 20, 10, 20), y2/x2 exclusive so they lose 1 first.
    shape = (11, 21)
    np.testing.assert_allclose(norm_boxes([[0, 0, 11, 21]], shape), [[0, 0, 1, 1]])
    np.testing.assert_allclose(norm_boxes([[2, 4, 6, 9]], shape), [[0.2, 0.2, 0.5, 0.4]], rtol=1e-6)
    assert norm_boxes([[2, 4, 6, 9]], shape).dtype == np.float32
    np.testing.assert_array_equal(denorm_boxes([[0.2, 0.2, 0.5, 0.4]], shape), [[2, 4, 6, 9]])
    assert denorm_boxes([[0.2, 0.2, 0.5, 0.4]], shape).dtype == np.int32


def test_norm_denorm_round_trip():
    rng = np.random.default_rng(0)
    shape = (480, 640)
    y1 = rng.integers(0, 479, 100)
    x1 = rng.integers(0, 639, 100)
    boxes = np.stack([y1, x1, rng.integers(y1 + 1, 481), rng.integers(x1 + 1, 641)], axis=1)
    np.testing.assert_array_equal(denorm_boxes(norm_boxes(boxes, shape), shape), boxes)
    # Batched leading dims.
    np.testing.assert_array_equal(denorm_boxes(norm_boxes(boxes.reshape(4, 25, 4), shape), shape),
                                  boxes.reshape(4, 25, 4))


def test_norm_boxes_tf_matches_numpy():
    boxes = np.array([[2, 4, 6, 9], [0, 0, 11, 21]], np.float32)
    np.testing.assert_allclose(norm_boxes_tf(tf.constant(boxes), (11, 21)).numpy(), norm_boxes(boxes, (11, 21)),
                               rtol=1e-6)
    np.testing.assert_allclose(norm_boxes_tf(tf.constant(boxes), tf.constant([11, 21])).numpy(),
                               norm_boxes(boxes, (11, 21)), rtol=1e-6)


def test_clip_boxes_single_window():
    boxes = tf.constant([[-0.5, 0.1, 0.5, 1.5], [0.2, 0.2, 0.3, 0.3], [1.2, 1.2, 1.5, 1.5]], tf.float32)
    clipped = clip_boxes(boxes, tf.constant([0.0, 0.0, 1.0, 1.0])).numpy()
    np.testing.assert_allclose(clipped, [[0, 0.1, 0.5, 1], [0.2, 0.2, 0.3, 0.3], [1, 1, 1, 1]])


def test_clip_boxes_per_image_window():
    boxes = tf.constant([[[0.0, 0.0, 1.0, 1.0]], [[0.0, 0.0, 1.0, 1.0]]], tf.float32)  # [2, 1, 4]
    windows = tf.constant([[0.1, 0.2, 0.8, 0.9], [0.0, 0.25, 1.0, 0.75]], tf.float32)  # [2, 4]
    np.testing.assert_allclose(clip_boxes(boxes, windows).numpy(),
                               [[[0.1, 0.2, 0.8, 0.9]], [[0.0, 0.25, 1.0, 0.75]]])
