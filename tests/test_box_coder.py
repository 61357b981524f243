"""Tests of mrcnn.box_coder: hand-computed deltas, round trips, the clamp and degenerate boxes."""

import math

import numpy as np
import tensorflow as tf

from mrcnn import box_coder

ONES = (1.0, 1.0, 1.0, 1.0)


def test_encode_hand_case_unit_std():
    # Box: centre (5, 5), 10 x 10. GT: centre (10, 15), 10 high, 20 wide.
    # dy = (10 - 5) / 10 = 0.5, dx = (15 - 5) / 10 = 1, dh = log(10 / 10) = 0, dw = log(20 / 10) = log 2.
    deltas = box_coder.encode([[0, 0, 10, 10]], [[5, 5, 15, 25]], ONES)
    assert isinstance(deltas, tf.Tensor) and deltas.dtype == tf.float32
    np.testing.assert_allclose(deltas.numpy(), [[0.5, 1.0, 0.0, math.log(2)]], rtol=1e-6)


def test_encode_hand_case_default_std():
    # The same raw deltas divided by (0.1, 0.1, 0.2, 0.2), i.e. multiplied by the weights (10, 10, 5, 5).
    deltas = box_coder.encode([[0, 0, 10, 10]], [[5, 5, 15, 25]])
    np.testing.assert_allclose(deltas.numpy(), [[5.0, 10.0, 0.0, 5 * math.log(2)]], rtol=1e-6)


def test_decode_hand_case_is_inverse():
    boxes = box_coder.decode([[0, 0, 10, 10]], [[5.0, 10.0, 0.0, 5 * math.log(2)]])
    np.testing.assert_allclose(boxes.numpy(), [[5, 5, 15, 25]], atol=1e-5)
    boxes = box_coder.decode([[0, 0, 10, 10]], [[0.5, 1.0, 0.0, math.log(2)]], ONES)
    np.testing.assert_allclose(boxes.numpy(), [[5, 5, 15, 25]], atol=1e-5)


def test_identical_boxes_give_zero_deltas():
    boxes = np.array([[0.1, 0.2, 0.5, 0.9], [3, 4, 8, 5]], np.float32)
    np.testing.assert_allclose(box_coder.encode(boxes, boxes).numpy(), np.zeros((2, 4)), atol=1e-6)


def _random_boxes(rng, shape, lo, hi):
    y1 = rng.uniform(lo, hi, shape)
    x1 = rng.uniform(lo, hi, shape)
    h = rng.uniform(0.05 * (hi - lo), hi - lo, shape)
    w = rng.uniform(0.05 * (hi - lo), hi - lo, shape)
    return np.stack([y1, x1, y1 + h, x1 + w], axis=-1).astype(np.float32)


def test_encode_decode_round_trip_random_boxes():
    rng = np.random.default_rng(0)
    for lo, hi in ((0.0, 1.0), (0.0, 100.0)):
        boxes = _random_boxes(rng, (3, 50), lo, hi)  # Leading batch dimensions are carried through.
        gt = _random_boxes(rng, (3, 50), lo, hi)
        for std in (ONES, (0.1, 0.1, 0.2, 0.2)):
            deltas = box_coder.encode(boxes, gt, std)
            assert deltas.shape == (3, 50, 4)
            decoded = box_coder.decode(boxes, deltas, std).numpy()
            np.testing.assert_allclose(decoded, gt, atol=1e-4 * hi)


def test_decode_broadcasts_deltas():
    # One delta row applied to two boxes.
    boxes = box_coder.decode([[0, 0, 10, 10], [0, 0, 20, 20]], [[0.0, 0.0, 0.0, math.log(2)]], ONES)
    np.testing.assert_allclose(boxes.numpy(), [[0, -5, 10, 15], [0, -10, 20, 30]], atol=1e-5)


def test_decode_clamps_log_scale():
    assert box_coder.BBOX_XFORM_CLIP == math.log(1000.0 / 16.0)
    # dh = 100 would overflow exp; it is clamped to log(62.5), so the height grows 62.5x at most.
    boxes = box_coder.decode([[0, 0, 10, 10]], [[0.0, 0.0, 100.0, 1e4]], ONES).numpy()
    assert np.all(np.isfinite(boxes))
    np.testing.assert_allclose(boxes[0, 2] - boxes[0, 0], 625.0, rtol=1e-5)
    np.testing.assert_allclose(boxes[0, 3] - boxes[0, 1], 625.0, rtol=1e-5)
    # The centre does not move.
    np.testing.assert_allclose(boxes[0], [5 - 312.5, 5 - 312.5, 5 + 312.5, 5 + 312.5], rtol=1e-5)


def test_decode_computes_in_float32():
    boxes = box_coder.decode(tf.constant([[0, 0, 10, 10]], tf.float16), tf.constant([[0, 0, 0, 0]], tf.float16))
    assert boxes.dtype == tf.float32


def test_zero_size_boxes_give_finite_values():
    zero = [[5, 5, 5, 5]]
    real = [[0, 0, 10, 10]]
    for a, b in ((zero, real), (real, zero), (zero, zero)):
        assert np.all(np.isfinite(box_coder.encode(a, b).numpy()))
    assert np.all(np.isfinite(box_coder.decode(zero, [[1.0, 1.0, 1.0, 1.0]]).numpy()))
    # Zero-padding rows (all zeros) against zero-padding GT, as in batched targets.
    assert np.all(np.isfinite(box_coder.encode(np.zeros((3, 4)), np.zeros((3, 4))).numpy()))
