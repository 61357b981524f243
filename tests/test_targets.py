"""Tests of mrcnn.targets: sampling, RPN anchor labels and detection (head) targets on hand-made cases."""

import math

import keras
import numpy as np
import tensorflow as tf

from mrcnn.targets import detection_targets, random_subsample, rpn_targets, trim_gt


def _seed(n=0):
    return keras.random.SeedGenerator(n)


# ---------------------------------------------------------------- random_subsample

MASK = np.array([[True, False, True, True, False, False],
                 [False, False, False, False, False, True]])


def test_random_subsample_respects_mask_and_puts_valid_first():
    for n in range(5):
        ix, valid = random_subsample(tf.constant(MASK), 4, seed=_seed(n))
        assert ix.shape == (2, 4) and ix.dtype == tf.int32
        np.testing.assert_array_equal(valid.numpy(), [[True, True, True, False], [True, False, False, False]])
        assert sorted(ix.numpy()[0, :3]) == [0, 2, 3]
        assert ix.numpy()[1, 0] == 5


def test_random_subsample_k_and_limit():
    # k = 2 < 3 candidates: two distinct True positions.
    ix, valid = random_subsample(tf.constant(MASK), 2, seed=_seed())
    assert valid.numpy()[0].all() and len(set(ix.numpy()[0])) == 2 and set(ix.numpy()[0]) <= {0, 2, 3}
    # Per-row limit: row 0 may use 2 slots, row 1 none.
    ix, valid = random_subsample(tf.constant(MASK), 4, limit=tf.constant([2, 0]), seed=_seed())
    np.testing.assert_array_equal(valid.numpy(), [[True, True, False, False], [False] * 4])
    assert set(ix.numpy()[0, :2]) <= {0, 2, 3}
    # A scalar limit applies to every row.
    _, valid = random_subsample(tf.constant(MASK), 4, limit=1, seed=_seed())
    np.testing.assert_array_equal(valid.numpy(), [[True, False, False, False], [True, False, False, False]])


def test_random_subsample_pads_when_fewer_columns_than_k():
    ix, valid = random_subsample(tf.constant([[True, False]]), 5, seed=_seed())
    assert ix.shape == (1, 5)
    np.testing.assert_array_equal(valid.numpy(), [[True, False, False, False, False]])
    assert ix.numpy()[0, 0] == 0


def test_random_subsample_is_random_over_candidates():
    seen = set()
    seed = _seed(0)
    for _ in range(30):
        ix, _ = random_subsample(tf.constant(MASK), 1, seed=seed)
        seen.add(int(ix.numpy()[0, 0]))
    assert seen == {0, 2, 3}


# ---------------------------------------------------------------- trim_gt

def test_trim_gt_cuts_to_largest_instance_count():
    ids = tf.constant([[1, -2, 0, 0], [3, 0, 0, 0]])
    boxes = tf.reshape(tf.range(32, dtype=tf.float32), [2, 4, 4])
    ids2, boxes2 = trim_gt(ids, boxes)
    np.testing.assert_array_equal(ids2.numpy(), [[1, -2], [3, 0]])
    np.testing.assert_array_equal(boxes2.numpy(), boxes.numpy()[:, :2])
    # No instances at all: one column is kept.
    ids3, boxes3 = trim_gt(tf.zeros([2, 4], tf.int32), boxes)
    assert ids3.shape == (2, 1) and boxes3.shape == (2, 1, 4)


# ---------------------------------------------------------------- rpn_targets

G1 = [0.1, 0.1, 0.3, 0.3]
G2 = [0.6, 0.05, 0.9, 0.35]
CROWD = [0.5, 0.7, 0.9, 0.95]
RPN_ANCHORS = np.array([
    G1,                          # a0: equal to G1 -> positive, zero deltas.
    [0.1, 0.1, 0.3, 0.32],       # a1: IoU 0.04 / 0.044 = 0.91 with G1 -> positive.
    [0.1, 0.1, 0.3, 0.4],        # a2: IoU 0.04 / 0.06 = 0.67 with G1 -> neutral.
    [0.0, 0.6, 0.2, 0.8],        # a3: touches nothing -> negative.
    [0.6, 0.15, 0.9, 0.45],      # a4: IoU 0.06 / 0.12 = 0.5 with G2, G2's best anchor -> positive.
    [0.6, 0.2, 0.9, 0.5],        # a5: IoU 0.045 / 0.135 = 0.33 with G2 -> neutral.
    CROWD,                       # a6: equal to the crowd box -> never positive, not negative.
    [0.55, 0.65, 0.7, 0.8],      # a7: overlaps the crowd box only -> neutral.
    [0.35, 0.35, 0.45, 0.45],    # a8: touches nothing -> negative.
], np.float32)


def test_rpn_targets_hand_case():
    gt_ids = tf.constant([[1, 2, -1], [0, 0, 0]], tf.int32)  # Image 1 has no instances.
    gt_boxes = tf.constant([[G1, G2, CROWD], [[0] * 4] * 3], tf.float32)
    match, deltas = rpn_targets(tf.constant(RPN_ANCHORS), gt_ids, gt_boxes, anchors_per_image=256, seed=_seed())
    assert match.dtype == tf.int32 and match.shape == (2, 9) and deltas.shape == (2, 9, 4)
    np.testing.assert_array_equal(match.numpy()[0], [1, 1, 0, -1, 1, 0, 0, 0, -1])
    np.testing.assert_array_equal(match.numpy()[1], [-1] * 9)
    expected = np.zeros((9, 4))
    # a1 (h 0.2, w 0.22, centre x 0.21) -> G1 (w 0.2, centre x 0.2): dx = -0.01 / 0.22, dw = log(0.2 / 0.22),
    # divided by std (0.1, 0.1, 0.2, 0.2).
    expected[1] = [0, -0.01 / 0.22 / 0.1, 0, math.log(0.2 / 0.22) / 0.2]
    # a4 (centre x 0.3) -> G2 (centre x 0.2), same size: dx = -0.1 / 0.3 / 0.1.
    expected[4] = [0, -0.1 / 0.3 / 0.1, 0, 0]
    np.testing.assert_allclose(deltas.numpy()[0], expected, atol=1e-5)
    np.testing.assert_array_equal(deltas.numpy()[1], np.zeros((9, 4)))


def test_rpn_targets_in_graph_matches_eager():
    gt_ids = tf.constant([[1, 2, -1], [0, 0, 0]], tf.int32)
    gt_boxes = tf.constant([[G1, G2, CROWD], [[0] * 4] * 3], tf.float32)
    seed = _seed()
    # Traced with the anchor and GT counts unknown, as inside a train step.
    traced = tf.function(lambda a, i, b: rpn_targets(a, i, b, seed=seed), autograph=False,
                         input_signature=[tf.TensorSpec([None, 4]), tf.TensorSpec([None, None], tf.int32),
                                          tf.TensorSpec([None, None, 4])])
    match, _ = traced(tf.constant(RPN_ANCHORS), gt_ids, gt_boxes)
    np.testing.assert_array_equal(match.numpy(), [[1, 1, 0, -1, 1, 0, 0, 0, -1], [-1] * 9])


def test_rpn_targets_custom_thresholds():
    gt_ids = tf.constant([[1, 2, -1]], tf.int32)
    gt_boxes = tf.constant([[G1, G2, CROWD]], tf.float32)
    # positive_iou 0.6 makes a2 (0.67) positive; negative_iou 0.4 makes a5 (0.33) negative.
    match, _ = rpn_targets(tf.constant(RPN_ANCHORS), gt_ids, gt_boxes, positive_iou=0.6, negative_iou=0.4,
                           seed=_seed())
    np.testing.assert_array_equal(match.numpy()[0], [1, 1, 1, -1, 1, -1, 0, 0, -1])


def test_rpn_targets_forced_anchor_targets_its_own_gt():
    ga = [0.0, 0.0, 0.2, 0.2]
    gb = [0.0, 0.3, 0.2, 0.5]
    anchors = np.array([
        ga,                      # Equal to GA.
        [0.0, 0.12, 0.2, 0.32],  # IoU 0.016 / 0.064 = 0.25 with GA, 0.004 / 0.076 = 0.05 with GB: GB's best.
        [0.7, 0.7, 0.9, 0.9],    # Far: negative.
    ], np.float32)
    match, deltas = rpn_targets(tf.constant(anchors), tf.constant([[1, 1]]), tf.constant([[ga, gb]], tf.float32),
                                seed=_seed())
    np.testing.assert_array_equal(match.numpy()[0], [1, 1, -1])
    # Anchor 1 is positive for GB, so it regresses to GB (centre x 0.22 -> 0.4, width 0.2: dx 0.9 / 0.1),
    # not to GA, its highest IoU.
    np.testing.assert_allclose(deltas.numpy()[0, 1], [0, 9, 0, 0], atol=1e-5)


def test_rpn_targets_balance_limits():
    gt = [0.2, 0.2, 0.4, 0.4]
    # Ten anchors on the GT (IoU 1) and ten far from it.
    anchors = np.array([gt] * 10 + [[0.7, 0.7, 0.9, 0.9]] * 10, np.float32)
    gt_ids = tf.constant([[1], [1]], tf.int32)
    gt_boxes = tf.constant([[gt], [gt]], tf.float32)
    for n in range(3):
        match, deltas = rpn_targets(tf.constant(anchors), gt_ids, gt_boxes, anchors_per_image=8, seed=_seed(n))
        match = match.numpy()
        # At most half positive (4 of 10 kept), the rest of the 8 negatives.
        np.testing.assert_array_equal((match == 1).sum(axis=1), [4, 4])
        np.testing.assert_array_equal((match == -1).sum(axis=1), [4, 4])
        assert (match[:, :10] >= 0).all() and (match[:, 10:] <= 0).all()
        np.testing.assert_array_equal(deltas.numpy(), np.zeros((2, 20, 4)))
    # With a single positive anchor, negatives fill the other 7 samples.
    anchors = np.array([gt] + [[0.7, 0.7, 0.9, 0.9]] * 10, np.float32)
    match, _ = rpn_targets(tf.constant(anchors), gt_ids[:1], gt_boxes[:1], anchors_per_image=8, seed=_seed())
    assert (match.numpy() == 1).sum() == 1 and (match.numpy() == -1).sum() == 7


# ---------------------------------------------------------------- detection_targets

H = W = 16
# GT box: pixel rows 4..7, columns 4..11 -> (4, 4, 8, 12) -> normalised (4, 4, 7, 11) / 15.
GT_BOX = [4 / 15, 4 / 15, 7 / 15, 11 / 15]
# The same box one column to the right: IoU 6 / 8 = 0.75 in normalised coordinates.
SHIFTED = [4 / 15, 5 / 15, 7 / 15, 12 / 15]
FAR1 = [0.0, 0.0, 0.1, 0.1]
FAR2 = [0.8, 0.8, 0.95, 0.95]
CROWD_BOX = [0.8, 0.0, 1.0, 0.2]


def _gt_mask():
    m = np.zeros((H, W), np.float32)
    m[4:8, 4:6] = 1  # Two left columns of the box.
    m[7, 4:12] = 1  # Its bottom row.
    m[5, 9] = 1
    return m


def _detection_inputs(use_mini_mask):
    """Image 0: one GT (class 3), one crowd box; proposals SHIFTED, FAR1, FAR2 and the crowd box itself.
    Image 1: no instances."""
    proposals = tf.constant([[SHIFTED, FAR1, FAR2, CROWD_BOX],
                             [SHIFTED, FAR1, FAR2, [0] * 4]], tf.float32)
    gt_ids = tf.constant([[3, -1], [0, 0]], tf.int32)
    gt_boxes = tf.constant([[GT_BOX, CROWD_BOX], [[0] * 4] * 2], tf.float32)
    full = _gt_mask()
    crowd = np.zeros((H, W), np.float32)
    crowd[13:, :4] = 1
    if use_mini_mask:
        # Mini masks hold the box contents; the GT box is 4 x 8 pixels, so at mini shape (4, 8) it is a copy.
        masks = np.zeros((2, 2, 4, 8), np.float32)
        masks[0, 0] = full[4:8, 4:12]
        masks[0, 1] = 1
    else:
        masks = np.zeros((2, 2, H, W), np.float32)
        masks[0, 0] = full
        masks[0, 1] = crowd
    return proposals, gt_ids, gt_boxes, tf.constant(masks)


def _check_detection_targets(out):
    rois, valid, ids, deltas, masks = (out[k].numpy() for k in ("rois", "roi_valid", "class_ids", "deltas", "masks"))
    # T = 6, positive_ratio 0.5 -> P = 3 positive slots.
    assert rois.shape == (2, 6, 4) and deltas.shape == (2, 3, 4) and masks.shape == (2, 3, 4, 8)
    # Image 0: positives are the appended GT and SHIFTED; 2 positives / 0.5 - 2 = 2 negatives, FAR1 and FAR2.
    # The crowd proposal is neither (and the crowd GT is not appended).
    np.testing.assert_array_equal(valid[0], [True, True, False, True, True, False])
    np.testing.assert_array_equal(ids[0], [3, 3, 0, 0, 0, 0])
    np.testing.assert_array_equal(rois[0, [2, 5]], np.zeros((2, 4)))
    gt_slot = int(np.argmin(np.abs(rois[0, :2] - GT_BOX).sum(axis=1)))
    shifted_slot = 1 - gt_slot
    np.testing.assert_allclose(rois[0, gt_slot], GT_BOX, atol=1e-6)
    np.testing.assert_allclose(rois[0, shifted_slot], SHIFTED, atol=1e-6)
    np.testing.assert_allclose(sorted(rois[0, 3:5].tolist()), sorted([FAR1, FAR2]), atol=1e-6)
    # The GT itself needs no correction; SHIFTED moves left by 1/15 of a 7/15-wide box: dx = -1/7 / 0.1.
    np.testing.assert_allclose(deltas[0, gt_slot], [0, 0, 0, 0], atol=1e-5)
    np.testing.assert_allclose(deltas[0, shifted_slot], [0, -10 / 7, 0, 0], atol=1e-5)
    np.testing.assert_array_equal(deltas[0, 2], [0, 0, 0, 0])
    # Mask targets: the GT mask under each ROI (column 12 is outside the GT box, so 0).
    gt_mask = _gt_mask()
    np.testing.assert_array_equal(masks[0, gt_slot], gt_mask[4:8, 4:12])
    np.testing.assert_array_equal(masks[0, shifted_slot], gt_mask[4:8, 5:13])
    np.testing.assert_array_equal(masks[0, 2], np.zeros((4, 8)))
    # Image 1: no GT, so no positives, and no negatives either (their number follows the positives').
    assert not valid[1].any() and not ids[1].any()
    np.testing.assert_array_equal(rois[1], np.zeros((6, 4)))
    np.testing.assert_array_equal(deltas[1], np.zeros((3, 4)))
    np.testing.assert_array_equal(masks[1], np.zeros((3, 4, 8)))


def test_detection_targets_full_masks():
    out = detection_targets(*_detection_inputs(False), rois_per_image=6, positive_ratio=0.5, mask_shape=(4, 8),
                            use_mini_mask=False, seed=_seed())
    _check_detection_targets(out)


def test_detection_targets_mini_masks():
    out = detection_targets(*_detection_inputs(True), rois_per_image=6, positive_ratio=0.5, mask_shape=(4, 8),
                            use_mini_mask=True, seed=_seed())
    _check_detection_targets(out)


def test_detection_targets_in_graph():
    seed = _seed()
    traced = tf.function(
        lambda p, i, b, m: detection_targets(p, i, b, m, rois_per_image=6, positive_ratio=0.5, mask_shape=(4, 8),
                                             use_mini_mask=False, seed=seed), autograph=False)
    _check_detection_targets(traced(*_detection_inputs(False)))


def test_detection_targets_without_append_gt():
    proposals, gt_ids, gt_boxes, masks = _detection_inputs(False)
    out = detection_targets(proposals, gt_ids, gt_boxes, masks, rois_per_image=6, positive_ratio=0.5,
                            mask_shape=(4, 8), use_mini_mask=False, append_gt=False, seed=_seed())
    # Only SHIFTED is positive; 1 / 0.5 - 1 = 1 negative.
    np.testing.assert_array_equal(out["roi_valid"].numpy()[0], [True, False, False, True, False, False])
    np.testing.assert_allclose(out["rois"].numpy()[0, 0], SHIFTED, atol=1e-6)
    np.testing.assert_array_equal(out["class_ids"].numpy()[0], [3, 0, 0, 0, 0, 0])
    # Padding proposals only, no appended GT: nothing is sampled.
    out = detection_targets(tf.zeros([1, 4, 4]), gt_ids[:1], gt_boxes[:1], masks[:1], rois_per_image=6,
                            positive_ratio=0.5, mask_shape=(4, 8), use_mini_mask=False, append_gt=False,
                            seed=_seed())
    assert not out["roi_valid"].numpy().any()


def test_detection_targets_positive_and_negative_counts():
    gt = [0.2, 0.2, 0.6, 0.6]
    far = [0.7, 0.7, 0.9, 0.9]
    gt_ids = tf.constant([[1]], tf.int32)
    gt_boxes = tf.constant([[gt]], tf.float32)
    masks = tf.ones([1, 1, 4, 4])
    # T = 8, positive_ratio 0.25 -> P = 2. Five candidate positives (plus the appended GT), ten negatives:
    # 2 positives, 2 / 0.25 - 2 = 6 negatives.
    proposals = tf.constant([[gt] * 5 + [far] * 10], tf.float32)
    out = detection_targets(proposals, gt_ids, gt_boxes, masks, rois_per_image=8, positive_ratio=0.25,
                            mask_shape=(4, 4), seed=_seed())
    np.testing.assert_array_equal(out["roi_valid"].numpy()[0], [True] * 8)
    np.testing.assert_array_equal(out["class_ids"].numpy()[0], [1, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(out["masks"].numpy(), np.ones((1, 2, 4, 4)))
    # Only the appended GT is positive: 1 / 0.25 - 1 = 3 negatives.
    proposals = tf.constant([[far] * 10], tf.float32)
    out = detection_targets(proposals, gt_ids, gt_boxes, masks, rois_per_image=8, positive_ratio=0.25,
                            mask_shape=(4, 4), seed=_seed())
    np.testing.assert_array_equal(out["roi_valid"].numpy()[0], [True, False, True, True, True, False, False, False])
    np.testing.assert_array_equal(out["class_ids"].numpy()[0], [1, 0, 0, 0, 0, 0, 0, 0])


def test_targets_carry_no_gradient():
    proposals = tf.Variable([[SHIFTED, FAR1]])
    gt_boxes = tf.Variable([[GT_BOX]])
    with tf.GradientTape(persistent=True) as tape:
        out = detection_targets(proposals, tf.constant([[3]]), gt_boxes, tf.ones([1, 1, 4, 8]), rois_per_image=4,
                                positive_ratio=0.5, mask_shape=(4, 8), seed=_seed())
        total = sum(tf.reduce_sum(tf.cast(v, tf.float32)) for v in out.values())
        match, deltas = rpn_targets(tf.constant(RPN_ANCHORS[:2]), tf.constant([[1]]), gt_boxes, seed=_seed())
        rpn_total = tf.reduce_sum(deltas)
    assert tape.gradient(total, [proposals, gt_boxes]) == [None, None]
    assert tape.gradient(rpn_total, gt_boxes) is None
