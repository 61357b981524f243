"""Tests of mrcnn.losses on tiny hand-computed cases, and the no-positives guard."""

import math

import numpy as np
import tensorflow as tf

from mrcnn.losses import (LOSS_NAMES, mask_rcnn_losses, mrcnn_bbox_loss, mrcnn_class_loss, mrcnn_mask_loss,
                          rpn_bbox_loss, rpn_class_loss, smooth_l1)

LOG2 = math.log(2.0)


def test_smooth_l1_values():
    diffs = tf.constant([0.0, 0.5, -0.5, 1.0, 2.0, -2.0])
    # 0.5 d^2 below 1, |d| - 0.5 from 1 on (both 0.5 at |d| = 1).
    np.testing.assert_allclose(smooth_l1(tf.zeros([6]), diffs).numpy(), [0, 0.125, 0.125, 0.5, 1.5, 1.5])


def test_rpn_class_loss():
    match = tf.constant([[1, -1, 0]])
    # Zero logits -> log 2 for each sampled anchor; the neutral anchor's confident wrong logits are ignored.
    logits = tf.constant([[[0.0, 0.0], [0.0, 0.0], [50.0, -50.0]]])
    np.testing.assert_allclose(rpn_class_loss(match, logits).numpy(), LOG2, rtol=1e-6)
    # Positive with logits (0, log 3): p(fg) = 3/4; negative with (log 3, 0): p(bg) = 3/4 -> both -log(3/4).
    logits = tf.constant([[[0.0, math.log(3)], [math.log(3), 0.0], [0.0, 0.0]]])
    np.testing.assert_allclose(rpn_class_loss(match, logits).numpy(), -math.log(0.75), rtol=1e-6)


def test_rpn_bbox_loss():
    match = tf.constant([[1, 1, -1, 0]])
    target = tf.constant([[[0.5, 0, 0, 0], [2, 0, 0, 0], [9, 9, 9, 9], [9, 9, 9, 9]]], tf.float32)
    # Positives only: (0.125 / 4 + 1.5 / 4) / 2 = 0.203125.
    np.testing.assert_allclose(rpn_bbox_loss(match, target, tf.zeros([1, 4, 4])).numpy(), 0.203125, rtol=1e-6)


def test_mrcnn_class_loss():
    ids = tf.constant([[1, 0, 2]])
    valid = tf.constant([[True, True, False]])
    # Three classes, zero logits: log 3 per valid ROI; the padding slot is ignored.
    np.testing.assert_allclose(mrcnn_class_loss(ids, valid, tf.zeros([1, 3, 3])).numpy(), math.log(3), rtol=1e-6)
    logits = tf.constant([[[0.0, math.log(2), 0.0], [math.log(2), 0.0, 0.0], [0, 0, 0]]])
    # p(true class) = 2 / 4 for both valid ROIs.
    np.testing.assert_allclose(mrcnn_class_loss(ids, valid, logits).numpy(), LOG2, rtol=1e-6)


def test_mrcnn_bbox_loss_uses_true_class_deltas():
    ids = tf.constant([[2, 0]])
    target = tf.constant([[[2, 0, 0, 0], [5, 5, 5, 5]]], tf.float32)
    pred = np.zeros((1, 2, 3, 4), np.float32)
    pred[0, 0, 1] = [2, 0, 0, 0]  # The wrong class matches the target exactly; it must not be used.
    # Class 2 predicts 0: smooth_l1(2) = 1.5 over 4 coordinates; the unused slot is ignored.
    np.testing.assert_allclose(mrcnn_bbox_loss(ids, target, tf.constant(pred)).numpy(), 0.375, rtol=1e-6)


def test_mrcnn_mask_loss():
    ids = tf.constant([[1, 0]])
    target = tf.constant([[[[1, 0], [0, 1]], [[1, 1], [1, 1]]]], tf.float32)  # [1, 2, 2, 2]
    # Zero logits: log 2 per pixel whatever the target.
    np.testing.assert_allclose(mrcnn_mask_loss(ids, target, tf.zeros([1, 2, 2, 2, 3])).numpy(), LOG2, rtol=1e-6)
    # Class 1 logits +-log 3 on the right side: p = 3/4 per pixel -> -log(3/4). Class 2 logits are wrong and
    # unused.
    logits = np.zeros((1, 2, 2, 2, 3), np.float32)
    logits[0, 0, :, :, 1] = math.log(3) * (2 * target.numpy()[0, 0] - 1)
    logits[0, 0, :, :, 2] = -50 * (2 * target.numpy()[0, 0] - 1)
    np.testing.assert_allclose(mrcnn_mask_loss(ids, target, tf.constant(logits)).numpy(), -math.log(0.75),
                               rtol=1e-6)


def test_no_positives_gives_zero_and_finite_gradient():
    rpn_logits = tf.Variable(tf.random.normal([1, 4, 2]))
    rpn_bbox = tf.Variable(tf.random.normal([1, 4, 4]))
    class_logits = tf.Variable(tf.random.normal([1, 3, 3]))
    pred_deltas = tf.Variable(tf.random.normal([1, 2, 3, 4]))
    mask_logits = tf.Variable(tf.random.normal([1, 2, 2, 2, 3]))
    variables = [rpn_logits, rpn_bbox, class_logits, pred_deltas, mask_logits]
    with tf.GradientTape(persistent=True) as tape:
        losses = [
            rpn_class_loss(tf.zeros([1, 4], tf.int32), rpn_logits),
            rpn_bbox_loss(tf.constant([[-1, -1, 0, 0]]), tf.zeros([1, 4, 4]), rpn_bbox),
            mrcnn_class_loss(tf.zeros([1, 3], tf.int32), tf.zeros([1, 3], tf.bool), class_logits),
            mrcnn_bbox_loss(tf.zeros([1, 2], tf.int32), tf.zeros([1, 2, 4]), pred_deltas),
            mrcnn_mask_loss(tf.zeros([1, 2], tf.int32), tf.zeros([1, 2, 2, 2]), mask_logits),
        ]
    for loss, var in zip(losses, variables):
        assert loss.dtype == tf.float32 and loss.shape == ()
        assert loss.numpy() == 0.0
        grad = tape.gradient(loss, var)
        assert grad is not None and np.all(np.isfinite(grad.numpy()))


def test_mask_rcnn_losses_dict():
    # T = 3 ROIs, P = 2 positive slots, 2 classes; every head gives zero logits / deltas.
    targets = {
        "class_ids": tf.constant([[1, 0, 0]]),
        "roi_valid": tf.constant([[True, False, True]]),
        "deltas": tf.constant([[[0.5, 0, 0, 0], [0, 0, 0, 0]]], tf.float32),
        "masks": tf.ones([1, 2, 2, 2]),
    }
    rpn_match = tf.constant([[1, -1]])
    rpn_deltas = tf.constant([[[2, 0, 0, 0], [0, 0, 0, 0]]], tf.float32)
    pred_deltas = np.zeros((1, 3, 2, 4), np.float32)
    pred_deltas[0, 2, 1] = 100  # A negative slot beyond P: cut off, never reaches the box loss.
    losses = mask_rcnn_losses(rpn_match, rpn_deltas, tf.zeros([1, 2, 2]), tf.zeros([1, 2, 4]), targets,
                              tf.zeros([1, 3, 2]), tf.constant(pred_deltas), tf.zeros([1, 2, 2, 2, 2]))
    assert tuple(losses) == LOSS_NAMES
    expected = {
        "rpn_class_loss": LOG2,
        "rpn_bbox_loss": 1.5 / 4,  # One positive anchor, dy off by 2.
        "mrcnn_class_loss": LOG2,  # Two valid ROIs, two classes, zero logits.
        "mrcnn_bbox_loss": 0.125 / 4,  # One positive slot, dy off by 0.5.
        "mrcnn_mask_loss": LOG2,
    }
    for name, value in expected.items():
        np.testing.assert_allclose(losses[name].numpy(), value, rtol=1e-6, err_msg=name)
