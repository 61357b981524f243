"""Tests of mrcnn.proposals: padded NMS and the proposal layer on hand-made anchors."""

import numpy as np
import tensorflow as tf

from mrcnn.proposals import ProposalLayer, nms_padded
from tests.layer_checks import check_layer

# A [0, 0, 10, 10] 0.9; B shifted one column: IoU 90 / 110 = 0.82 with A; C disjoint;
# D shifted five columns: IoU 50 / 150 = 0.33 with A.
NMS_BOXES = np.array([[0, 0, 10, 10], [0, 1, 10, 11], [20, 20, 30, 30], [0, 5, 10, 15]], np.float32)
NMS_SCORES = np.array([0.9, 0.8, 0.7, 0.6], np.float32)


def test_nms_padded_hand_case_pads_with_zero():
    keep, valid, count = nms_padded(NMS_BOXES, NMS_SCORES, max_output=5, iou_threshold=0.5)
    # B is dropped (0.82 > 0.5 with A); D survives (0.33).
    np.testing.assert_array_equal(keep.numpy(), [0, 2, 3, 0, 0])
    np.testing.assert_array_equal(valid.numpy(), [True, True, True, False, False])
    assert int(count) == 3
    assert keep.dtype == tf.int32


def test_nms_padded_threshold_score_and_max_output():
    # Threshold 0.3: D (0.33 with A) goes too.
    keep, valid, count = nms_padded(NMS_BOXES, NMS_SCORES, 4, 0.3)
    np.testing.assert_array_equal(keep.numpy(), [0, 2, 0, 0])
    assert int(count) == 2
    # Score threshold 0.65 drops D before NMS.
    keep, _, count = nms_padded(NMS_BOXES, NMS_SCORES, 4, 0.5, score_threshold=0.65)
    np.testing.assert_array_equal(keep.numpy(), [0, 2, 0, 0])
    # At most max_output, the highest scores first.
    keep, valid, count = nms_padded(NMS_BOXES, NMS_SCORES, 2, 0.5)
    np.testing.assert_array_equal(keep.numpy(), [0, 2])
    assert valid.numpy().all() and int(count) == 2


def test_nms_padded_order_follows_score_not_input():
    scores = np.array([0.1, 0.2, 0.9, 0.5], np.float32)
    keep, _, _ = nms_padded(NMS_BOXES, scores, 4, 0.5)
    # C (0.9), D (0.5), then B (0.2), which overlaps D by 60 / 140 = 0.43; A (0.1) overlaps B by 0.82 and goes.
    np.testing.assert_array_equal(keep.numpy(), [2, 3, 1, 0])
    _, valid, count = nms_padded(NMS_BOXES, scores, 4, 0.5)
    assert int(count) == 3 and not valid.numpy()[3]


# Normalised anchors: a1 overlaps a0 by 0.036 / 0.044 = 0.82; a3 sticks out of the image (clipped to
# [0, 0, 0.2, 0.2], IoU 0.01 / 0.07 with a0); a4 is disjoint from all but has the lowest score.
ANCHORS = np.array([[0.1, 0.1, 0.3, 0.3],
                    [0.1, 0.12, 0.3, 0.32],
                    [0.5, 0.5, 0.9, 0.9],
                    [-0.1, -0.1, 0.2, 0.2],
                    [0.6, 0.1, 0.8, 0.3]], np.float32)


def _probs(scores):
    scores = np.asarray(scores, np.float32)
    return np.stack([1 - scores, scores], axis=-1)


def test_proposal_layer_zero_deltas_top_anchors_after_nms():
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.1],
                       [0.1, 0.8, 0.2, 0.3, 0.9]], np.float32)
    layer = ProposalLayer(proposal_count=5, nms_threshold=0.7, pre_nms_limit=4)
    out = layer(tf.constant(_probs(scores)), tf.zeros([2, 5, 4]), tf.constant(ANCHORS)).numpy()
    assert out.shape == (2, 5, 4)
    # Image 0: top-4 by score are a0..a3 (a4 is cut by pre_nms_limit); a1 is suppressed by a0; a3 clipped.
    np.testing.assert_allclose(out[0], [[0.1, 0.1, 0.3, 0.3],
                                        [0.5, 0.5, 0.9, 0.9],
                                        [0.0, 0.0, 0.2, 0.2],
                                        [0, 0, 0, 0],
                                        [0, 0, 0, 0]], atol=1e-6)
    # Image 1: top-4 are a4 (0.9), a1 (0.8), a3 (0.3), a2 (0.2); a0, the only box a1 overlaps, is cut by
    # pre_nms_limit, so nothing is suppressed.
    np.testing.assert_allclose(out[1], [[0.6, 0.1, 0.8, 0.3],
                                        [0.1, 0.12, 0.3, 0.32],
                                        [0.0, 0.0, 0.2, 0.2],
                                        [0.5, 0.5, 0.9, 0.9],
                                        [0, 0, 0, 0]], atol=1e-6)


def test_proposal_layer_applies_deltas_with_std_and_clips():
    anchors = np.array([[0.2, 0.2, 0.4, 0.4], [0.8, 0.8, 1.0, 1.0]], np.float32)
    # rpn_bbox is divided by std (0.1, 0.1, 0.2, 0.2): dy 1 -> 0.1 * height 0.2 = 0.02 down.
    # The second anchor grows 2x (log 2 / 0.2) around (0.9, 0.9): [0.7, 0.7, 1.1, 1.1] -> clipped at 1.
    deltas = np.array([[[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, np.log(2) / 0.2, np.log(2) / 0.2]]], np.float32)
    layer = ProposalLayer(proposal_count=3, nms_threshold=0.7)
    out = layer(tf.constant(_probs([[0.9, 0.8]])), tf.constant(deltas), tf.constant(anchors)).numpy()
    np.testing.assert_allclose(out[0], [[0.22, 0.2, 0.42, 0.4], [0.7, 0.7, 1.0, 1.0], [0, 0, 0, 0]], atol=1e-6)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_proposal_layer_passes_no_gradient():
    layer = ProposalLayer(proposal_count=3, nms_threshold=0.7)
    probs = tf.Variable(_probs([[0.9, 0.8, 0.7, 0.6, 0.1]]))
    deltas = tf.Variable(tf.zeros([1, 5, 4]))
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(layer(probs, deltas, tf.constant(ANCHORS)))
    grads = tape.gradient(out, [probs, deltas])
    assert all(g is None for g in grads)


def test_proposal_layer_passes_the_layer_checks():
    # Config round trip, dtypes, static shapes, tf.function and functional model (tests/layer_checks.py); random
    # scores and deltas on the hand-made anchors, std_dev and pre_nms_limit away from their defaults.
    rng = np.random.default_rng(0)
    layer = ProposalLayer(proposal_count=4, nms_threshold=0.6, pre_nms_limit=3, std_dev=(0.2, 0.2, 0.1, 0.1),
                          name="proposals")
    out, = check_layer(layer, [_probs(rng.uniform(size=(2, 5))), rng.normal(size=(2, 5, 4)).astype(np.float32),
                               ANCHORS], expected_shapes=[(2, 4, 4)], expected_dtypes=["float32"])
    assert out.min() >= 0.0 and out.max() <= 1.0 and (out[:, 3] == 0).all()  # 3 boxes at most before NMS


def test_proposal_layer_in_graph_with_unknown_anchor_count():
    # Same hand case as above, traced with the number of anchors unknown and pre_nms_limit above it.
    layer = ProposalLayer(proposal_count=5, nms_threshold=0.7, pre_nms_limit=100)
    call = tf.function(layer.call, input_signature=[tf.TensorSpec([None, None, 2]), tf.TensorSpec([None, None, 4]),
                                                    tf.TensorSpec([None, 4])])
    out = call(tf.constant(_probs([[0.9, 0.8, 0.7, 0.6, 0.1]])), tf.zeros([1, 5, 4]), tf.constant(ANCHORS)).numpy()
    # All five anchors now enter NMS: a4 (disjoint from the others) comes last.
    np.testing.assert_allclose(out[0], [[0.1, 0.1, 0.3, 0.3],
                                        [0.5, 0.5, 0.9, 0.9],
                                        [0.0, 0.0, 0.2, 0.2],
                                        [0.6, 0.1, 0.8, 0.3],
                                        [0, 0, 0, 0]], atol=1e-6)


def test_proposal_layer_under_mixed_precision_decodes_in_float32():
    scores = np.array([[0.9991, 0.9987, 0.7, 0.6, 0.1]], np.float32)  # equal in bfloat16
    deltas = np.full((1, 5, 4), 0.0123, np.float32)
    args = (tf.constant(_probs(scores)), tf.constant(deltas), tf.constant(ANCHORS))
    want = ProposalLayer(proposal_count=5, nms_threshold=0.7)(*args).numpy()
    got = ProposalLayer(proposal_count=5, nms_threshold=0.7, dtype="mixed_bfloat16")(*args).numpy()
    np.testing.assert_array_equal(got, want)
