"""The five Mask R-CNN losses, as free functions over shape-documented tensors.

Each returns a float32 scalar and is 0 (not NaN) when nothing qualifies: no sampled anchors, no positive ROIs.
:func:`mask_rcnn_losses` returns them as a dict keyed by matterport's names.

Under a ``tf.distribute`` strategy with several replicas in sync, each loss is a mean over the global batch: a
replica returns its share, the sum over its own images divided by the count (of sampled anchors, ROIs, positive
ROIs) over all replicas, so the replicas' losses add up to the loss of the whole batch, and their summed gradients
are the gradients one device would compute on it. Outside a strategy (or with one replica) it is the plain mean.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["smooth_l1", "rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss",
           "mrcnn_mask_loss", "mask_rcnn_losses", "LOSS_NAMES"]

LOSS_NAMES = ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss")


def _global_count(count: tf.Tensor) -> tf.Tensor:
    """``count`` summed over the replicas in sync (itself outside a strategy or with one replica)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return count
    return context.all_reduce(tf.distribute.ReduceOp.SUM, count)


def _masked_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mean of ``values`` where ``mask`` is set; this replica's share of the global mean under a strategy."""
    mask = tf.cast(mask, tf.float32)
    count = _global_count(tf.reduce_sum(mask))
    return tf.math.divide_no_nan(tf.reduce_sum(tf.cast(values, tf.float32) * mask), count)


def smooth_l1(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Element-wise smooth L1 (Huber with delta 1): 0.5 d^2 for |d| < 1, |d| - 0.5 beyond."""
    diff = tf.abs(tf.cast(y_true, tf.float32) - tf.cast(y_pred, tf.float32))
    return tf.where(diff < 1.0, 0.5 * tf.square(diff), diff - 0.5)


def rpn_class_loss(rpn_match: tf.Tensor, rpn_class_logits: tf.Tensor) -> tf.Tensor:
    """Anchor classifier cross-entropy over the sampled anchors.

    Args:
        rpn_match: int32 [B, A]: 1 positive, -1 negative, 0 not sampled.
        rpn_class_logits: [B, A, 2] (background, foreground) logits.
    """
    labels = tf.cast(rpn_match == 1, tf.int32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, tf.cast(rpn_class_logits, tf.float32))
    return _masked_mean(ce, tf.not_equal(rpn_match, 0))


def rpn_bbox_loss(rpn_match: tf.Tensor, target_deltas: tf.Tensor, rpn_bbox: tf.Tensor) -> tf.Tensor:
    """Smooth L1 on the positive anchors' deltas, averaged over positive anchors and the 4 coordinates.

    Args:
        rpn_match: int32 [B, A].
        target_deltas: [B, A, 4] (meaningful where rpn_match == 1).
        rpn_bbox: [B, A, 4] predicted deltas.
    """
    loss = tf.reduce_mean(smooth_l1(target_deltas, rpn_bbox), axis=-1)
    return _masked_mean(loss, rpn_match == 1)


def mrcnn_class_loss(target_class_ids: tf.Tensor, roi_valid: tf.Tensor, class_logits: tf.Tensor) -> tf.Tensor:
    """Head classifier cross-entropy over the sampled ROIs.

    Args:
        target_class_ids: int32 [B, T] (0 = background).
        roi_valid: bool [B, T]: sampled ROI (positive or negative), not padding.
        class_logits: [B, T, C].
    """
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
        tf.cast(target_class_ids, tf.int32), tf.cast(class_logits, tf.float32))
    return _masked_mean(ce, roi_valid)


def mrcnn_bbox_loss(target_class_ids: tf.Tensor, target_deltas: tf.Tensor, pred_deltas: tf.Tensor) -> tf.Tensor:
    """Smooth L1 on the positive ROIs' deltas for their true class, averaged over ROIs and coordinates.

    Args:
        target_class_ids: int32 [B, P] for the positive slots (0 where unused).
        target_deltas: [B, P, 4].
        pred_deltas: [B, P, C, 4].
    """
    class_ids = tf.maximum(tf.cast(target_class_ids, tf.int32), 0)
    pred = tf.gather(tf.cast(pred_deltas, tf.float32), class_ids, batch_dims=2)  # [B, P, 4]
    loss = tf.reduce_mean(smooth_l1(target_deltas, pred), axis=-1)
    return _masked_mean(loss, target_class_ids > 0)


def mrcnn_mask_loss(target_class_ids: tf.Tensor, target_masks: tf.Tensor, mask_logits: tf.Tensor) -> tf.Tensor:
    """Per-pixel binary cross-entropy on the positive ROIs' masks for their true class.

    Args:
        target_class_ids: int32 [B, P] (0 where unused).
        target_masks: [B, P, h, w] with values 0/1.
        mask_logits: [B, P, h, w, C].
    """
    class_ids = tf.maximum(tf.cast(target_class_ids, tf.int32), 0)
    # [B, P, h, w, C] -> [B, P, C, h, w] so the class can be gathered per ROI.
    logits = tf.transpose(tf.cast(mask_logits, tf.float32), [0, 1, 4, 2, 3])
    logits = tf.gather(logits, class_ids, batch_dims=2)  # [B, P, h, w]
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(target_masks, tf.float32), logits=logits)
    bce = tf.reduce_mean(bce, axis=[2, 3])
    return _masked_mean(bce, target_class_ids > 0)


def mask_rcnn_losses(rpn_match, rpn_deltas, rpn_class_logits, rpn_bbox, targets: dict, class_logits, pred_deltas,
                     mask_logits) -> dict:
    """All five losses.

    Args:
        rpn_match, rpn_deltas: from :func:`mrcnn.targets.rpn_targets`.
        rpn_class_logits, rpn_bbox: RPN outputs [B, A, 2], [B, A, 4].
        targets: from :func:`mrcnn.targets.detection_targets` (P positive slots of T).
        class_logits: [B, T, C]; pred_deltas: [B, T, C, 4] or [B, P, C, 4]; mask_logits: [B, P, h, w, C].

    Returns:
        dict: loss name -> float32 scalar.
    """
    p = targets["deltas"].shape[1] if targets["deltas"].shape[1] is not None else tf.shape(targets["deltas"])[1]
    pos_class_ids = targets["class_ids"][:, :p]
    return {
        "rpn_class_loss": rpn_class_loss(rpn_match, rpn_class_logits),
        "rpn_bbox_loss": rpn_bbox_loss(rpn_match, rpn_deltas, rpn_bbox),
        "mrcnn_class_loss": mrcnn_class_loss(targets["class_ids"], targets["roi_valid"], class_logits),
        "mrcnn_bbox_loss": mrcnn_bbox_loss(pos_class_ids, targets["deltas"], pred_deltas[:, :p]),
        "mrcnn_mask_loss": mrcnn_mask_loss(pos_class_ids, targets["masks"], mask_logits),
    }
