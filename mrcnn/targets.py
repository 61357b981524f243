"""Training targets, computed in TF inside the train step, batched, with fixed output shapes.

- :func:`rpn_targets`: label anchors positive / negative / neutral against the ground truth and give the box
  deltas of the positives (matterport's ``build_rpn_targets``, without its NumPy copy of the box maths).
- :func:`detection_targets`: sample ROIs from the proposals for the heads, with their class, box deltas and mask
  targets (matterport's ``DetectionTargetLayer``). Positives are placed first, in a fixed number of slots, so the
  mask head only runs on them.

Ground-truth conventions: ``gt_class_ids`` [B, G] int32 with 0 for padding and a negative id for crowd boxes
(they are never positives, and anchors/ROIs that touch them are not negatives); ``gt_boxes`` [B, G, 4]
normalised; padding rows are zeros.
"""

from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

from . import box_coder
from .boxes import pairwise_iou

__all__ = ["random_subsample", "rpn_targets", "detection_targets", "trim_gt"]


def random_subsample(mask: tf.Tensor, k: int, limit: int | tf.Tensor | None = None,
                     seed: keras.random.SeedGenerator | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """Pick up to ``k`` random True positions per row of ``mask``.

    Args:
        mask: bool [B, N].
        k: number of slots (static).
        limit: optional int32 [B] (or scalar): use at most this many of the ``k`` slots.
        seed: a ``keras.random.SeedGenerator`` or None.

    Returns:
        (indices int32 [B, k] into N, valid bool [B, k]); valid slots come first.
    """
    n = tf.shape(mask)[1]
    r = keras.random.uniform(tf.shape(mask), seed=seed)
    score = tf.where(mask, r, -1.0)
    kk = tf.minimum(k, n)
    values, indices = tf.math.top_k(score, kk, sorted=True)
    # Pad to k columns when N < k (small images, tests).
    values = tf.pad(values, [[0, 0], [0, k - kk]], constant_values=-1.0)
    indices = tf.pad(indices, [[0, 0], [0, k - kk]])
    # Static shapes [B, k] (top_k with a dynamic k loses them).
    values = tf.reshape(values, [-1, k])
    indices = tf.reshape(indices, [-1, k])
    valid = values >= 0.0
    if limit is not None:
        limit = tf.cast(limit, tf.int32)
        limit = tf.reshape(limit, [-1, 1]) if limit.shape.rank else limit
        valid &= tf.range(k)[None, :] < limit
    return indices, valid


def trim_gt(gt_class_ids: tf.Tensor, *tensors: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """Cut the padded GT axis down to the largest number of instances in the batch (a dynamic size).

    Returns ``gt_class_ids`` and each of ``tensors`` sliced to [B, g, ...]; keeps at least one column.
    """
    count = tf.reduce_sum(tf.cast(tf.not_equal(gt_class_ids, 0), tf.int32), axis=1)
    g = tf.maximum(tf.reduce_max(count), 1)
    # Padding is at the end of each row, so the first g columns hold every instance.
    return (gt_class_ids[:, :g],) + tuple(t[:, :g] for t in tensors)


def rpn_targets(anchors: tf.Tensor, gt_class_ids: tf.Tensor, gt_boxes: tf.Tensor, anchors_per_image: int = 256,
                positive_iou: float = 0.7, negative_iou: float = 0.3,
                std_dev: Sequence[float] = (0.1, 0.1, 0.2, 0.2), seed=None) -> tuple[tf.Tensor, tf.Tensor]:
    """Anchor labels and box targets for the RPN.

    Args:
        anchors: [A, 4] normalised.
        gt_class_ids: [B, G] int32 (0 padding, < 0 crowd).
        gt_boxes: [B, G, 4] normalised.
        anchors_per_image: anchors sampled per image; at most half of them positive.

    Returns:
        rpn_match int32 [B, A]: 1 positive, -1 negative, 0 neutral (not trained on);
        rpn_deltas float32 [B, A, 4]: targets / std_dev for the positives, 0 elsewhere.
    """
    gt_class_ids, gt_boxes = trim_gt(gt_class_ids, gt_boxes)
    anchors = tf.cast(anchors, tf.float32)
    num_anchors = tf.shape(anchors)[0]
    batch = tf.shape(gt_boxes)[0]
    is_gt = gt_class_ids > 0
    is_crowd = gt_class_ids < 0
    iou = pairwise_iou(anchors[None], gt_boxes)  # [B, A, g]
    iou_gt = tf.where(is_gt[:, None, :], iou, -1.0)
    max_iou = tf.reduce_max(iou_gt, axis=2)  # [B, A]
    best_gt = tf.argmax(iou_gt, axis=2, output_type=tf.int32)  # [B, A]
    crowd_iou = tf.reduce_max(tf.where(is_crowd[:, None, :], iou, 0.0), axis=2)

    positive = max_iou >= positive_iou
    # Every GT box gets its best anchor, even below the threshold.
    best_anchor = tf.argmax(iou_gt, axis=1, output_type=tf.int32)  # [B, g]
    b_idx = tf.broadcast_to(tf.range(batch)[:, None], tf.shape(best_anchor))
    idx = tf.stack([b_idx, best_anchor], axis=-1)  # [B, g, 2]
    gt_idx = tf.boolean_mask(idx, is_gt)
    forced = tf.tensor_scatter_nd_update(
        tf.zeros([batch, num_anchors], tf.bool), gt_idx, tf.ones([tf.shape(gt_idx)[0]], tf.bool))
    # Anchors forced positive for a GT also take that GT as their target (if two GTs pick the same anchor,
    # one of them wins).
    gt_numbers = tf.broadcast_to(tf.range(tf.shape(gt_boxes)[1])[None], tf.shape(best_anchor))
    forced_gt = tf.tensor_scatter_nd_update(
        tf.zeros([batch, num_anchors], tf.int32), gt_idx, tf.boolean_mask(gt_numbers, is_gt))
    best_gt = tf.where(forced & ~positive, forced_gt, best_gt)
    positive |= forced
    negative = (max_iou < negative_iou) & (crowd_iou < 0.001) & ~positive

    half = anchors_per_image // 2
    pos_ix, pos_valid = random_subsample(positive, half, seed=seed)
    pos_count = tf.reduce_sum(tf.cast(pos_valid, tf.int32), axis=1)
    neg_ix, neg_valid = random_subsample(negative, anchors_per_image, limit=anchors_per_image - pos_count, seed=seed)

    def scatter(ix, valid, value):
        b = tf.broadcast_to(tf.range(batch)[:, None], tf.shape(ix))
        idx = tf.boolean_mask(tf.stack([b, ix], axis=-1), valid)
        return tf.scatter_nd(idx, tf.fill([tf.shape(idx)[0]], value), [batch, num_anchors])

    rpn_match = scatter(pos_ix, pos_valid, 1) + scatter(neg_ix, neg_valid, -1)
    matched_boxes = tf.gather(gt_boxes, best_gt, batch_dims=1)  # [B, A, 4]
    deltas = box_coder.encode(tf.broadcast_to(anchors[None], tf.shape(matched_boxes)), matched_boxes, std_dev)
    deltas = tf.where((rpn_match == 1)[..., None], deltas, 0.0)
    return tf.stop_gradient(rpn_match), tf.stop_gradient(deltas)


def detection_targets(proposals: tf.Tensor, gt_class_ids: tf.Tensor, gt_boxes: tf.Tensor, gt_masks: tf.Tensor,
                      rois_per_image: int = 200, positive_ratio: float = 0.33, mask_shape=(28, 28),
                      std_dev: Sequence[float] = (0.1, 0.1, 0.2, 0.2), use_mini_mask: bool = True,
                      append_gt: bool = True, seed=None) -> dict:
    """Sample ROIs for the heads and compute their targets.

    Args:
        proposals: [B, N, 4] normalised, zero-padded.
        gt_class_ids: [B, G] int32 (0 padding, < 0 crowd).
        gt_boxes: [B, G, 4] normalised.
        gt_masks: [B, G, mh, mw] float or bool: full-image masks (mh, mw = image size) or, with
            ``use_mini_mask``, masks of the box contents resized to the mini-mask shape.
        rois_per_image: T, ROIs sampled per image.
        positive_ratio: at most ``P = int(T * positive_ratio)`` positives; negatives are added so positives are
            ``positive_ratio`` of the sample (matterport's rule).
        append_gt: add the GT boxes to the proposals (so the heads always have positives to learn from).

    Returns:
        dict with ``rois`` [B, T, 4] (positives in slots [0, P), negatives after them, zero rows unused),
        ``roi_valid`` bool [B, T], ``class_ids`` int32 [B, T] (0 for negatives and padding),
        ``deltas`` [B, P, 4] and ``masks`` [B, P, mask_h, mask_w] (0/1 float) for the positive slots.
    """
    gt_class_ids, gt_boxes, gt_masks = trim_gt(gt_class_ids, gt_boxes, gt_masks)
    proposals = tf.cast(proposals, tf.float32)
    gt_boxes = tf.cast(gt_boxes, tf.float32)
    is_gt = gt_class_ids > 0
    is_crowd = gt_class_ids < 0
    if append_gt:
        proposals = tf.concat([proposals, gt_boxes * tf.cast(is_gt, tf.float32)[..., None]], axis=1)
    proposal_valid = tf.reduce_any(tf.not_equal(proposals, 0.0), axis=-1)  # [B, N']

    iou = pairwise_iou(proposals, gt_boxes)  # [B, N', g]
    iou_gt = tf.where(is_gt[:, None, :], iou, -1.0)
    max_iou = tf.reduce_max(iou_gt, axis=2)
    best_gt = tf.argmax(iou_gt, axis=2, output_type=tf.int32)
    crowd_iou = tf.reduce_max(tf.where(is_crowd[:, None, :], iou, 0.0), axis=2)
    positive = proposal_valid & (max_iou >= 0.5)
    negative = proposal_valid & (max_iou < 0.5) & (crowd_iou < 0.001)

    p = int(rois_per_image * positive_ratio)
    pos_ix, pos_valid = random_subsample(positive, p, seed=seed)
    pos_count = tf.reduce_sum(tf.cast(pos_valid, tf.int32), axis=1)
    neg_wanted = tf.cast(tf.cast(pos_count, tf.float32) / positive_ratio, tf.int32) - pos_count
    neg_ix, neg_valid = random_subsample(negative, rois_per_image - p, limit=neg_wanted, seed=seed)

    pos_validf = tf.cast(pos_valid, tf.float32)[..., None]
    pos_rois = tf.gather(proposals, pos_ix, batch_dims=1) * pos_validf  # [B, P, 4]
    neg_rois = tf.gather(proposals, neg_ix, batch_dims=1) * tf.cast(neg_valid, tf.float32)[..., None]
    assigned = tf.gather(best_gt, pos_ix, batch_dims=1)  # [B, P]
    class_ids = tf.gather(gt_class_ids, assigned, batch_dims=1) * tf.cast(pos_valid, tf.int32)
    assigned_boxes = tf.gather(gt_boxes, assigned, batch_dims=1)
    deltas = box_coder.encode(pos_rois, assigned_boxes, std_dev) * pos_validf

    # Mask targets: crop each positive ROI out of its GT mask.
    batch = tf.shape(gt_masks)[0]
    g = tf.shape(gt_masks)[1]
    mh, mw = tf.shape(gt_masks)[2], tf.shape(gt_masks)[3]
    masks_flat = tf.reshape(tf.cast(gt_masks, tf.float32), [batch * g, mh, mw, 1])
    box_ind = tf.reshape(tf.range(batch)[:, None] * g + assigned, [-1])
    crop_boxes = pos_rois
    if use_mini_mask:
        # Mini masks cover the GT box only: express the ROI in the GT box's own normalised frame.
        gy1, gx1, gy2, gx2 = tf.unstack(assigned_boxes, axis=-1)
        ry1, rx1, ry2, rx2 = tf.unstack(pos_rois, axis=-1)
        gh = tf.maximum(gy2 - gy1, 1e-6)
        gw = tf.maximum(gx2 - gx1, 1e-6)
        crop_boxes = tf.stack([(ry1 - gy1) / gh, (rx1 - gx1) / gw, (ry2 - gy1) / gh, (rx2 - gx1) / gw], axis=-1)
    masks = tf.image.crop_and_resize(masks_flat, tf.reshape(crop_boxes, [-1, 4]), box_ind, list(mask_shape))
    masks = tf.round(tf.reshape(masks, [batch, p, mask_shape[0], mask_shape[1]]))
    masks = masks * pos_validf[..., None]

    neg_class = tf.zeros_like(neg_ix)
    out = {
        "rois": tf.concat([pos_rois, neg_rois], axis=1),
        "roi_valid": tf.concat([pos_valid, neg_valid], axis=1),
        "class_ids": tf.concat([class_ids, neg_class], axis=1),
        "deltas": deltas,
        "masks": masks,
    }
    return {k: tf.stop_gradient(v) for k, v in out.items()}
