"""Proposal layer: RPN scores and deltas -> the top boxes after non-maximum suppression."""

from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

from . import box_coder

__all__ = ["nms_padded", "ProposalLayer"]


def nms_padded(boxes: tf.Tensor, scores: tf.Tensor, max_output: int, iou_threshold: float,
               score_threshold: float = float("-inf")) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Greedy NMS for one image, with outputs padded to a fixed size.

    Args:
        boxes: [N, (y1, x1, y2, x2)].
        scores: [N].
        max_output: number of boxes kept at most (and the padded output size).
        iou_threshold: boxes overlapping a kept, higher-scoring box by more than this are dropped.
        score_threshold: boxes scoring below this are dropped.

    Returns:
        (indices int32 [max_output] into ``boxes`` (0 where padded), valid bool [max_output], count int32).
    """
    keep = tf.image.non_max_suppression(boxes, scores, max_output, iou_threshold, score_threshold)
    count = tf.shape(keep)[0]
    pad = max_output - count
    keep = tf.pad(keep, [[0, pad]])
    valid = tf.range(max_output) < count
    return keep, valid, count


@keras.saving.register_keras_serializable(package="mrcnn")
class ProposalLayer(keras.layers.Layer):
    """Select proposals: top ``pre_nms_limit`` anchors by foreground score, decode, clip, NMS.

    Call with ``rpn_probs`` [B, A, 2], ``rpn_bbox`` [B, A, 4] (deltas / RPN_BBOX_STD_DEV) and ``anchors``
    [A, (y1, x1, y2, x2)] normalised. Returns [B, proposal_count, (y1, x1, y2, x2)] normalised, clipped to the
    image, sorted by score, zero-padded. Proposals carry no gradient.
    """

    def __init__(self, proposal_count: int, nms_threshold: float, pre_nms_limit: int = 6000,
                 std_dev: Sequence[float] = (0.1, 0.1, 0.2, 0.2), **kwargs):
        # No input casting under a mixed precision policy: scores and deltas are decoded in float32, not rounded
        # to float16 / bfloat16 first (this layer has no variables).
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.proposal_count = int(proposal_count)
        self.nms_threshold = float(nms_threshold)
        self.pre_nms_limit = int(pre_nms_limit)
        self.std_dev = [float(s) for s in std_dev]

    def call(self, rpn_probs, rpn_bbox, anchors):
        scores = tf.cast(rpn_probs[..., 1], tf.float32)
        deltas = tf.cast(rpn_bbox, tf.float32)
        num_anchors = anchors.shape[0] if anchors.shape[0] is not None else tf.shape(anchors)[0]
        k = min(self.pre_nms_limit, num_anchors) if isinstance(num_anchors, int) else tf.minimum(
            self.pre_nms_limit, num_anchors)
        scores, ix = tf.math.top_k(scores, k, sorted=True)  # [B, k]
        deltas = tf.gather(deltas, ix, batch_dims=1)  # [B, k, 4]
        pre_boxes = tf.gather(tf.cast(anchors, tf.float32), ix)  # [B, k, 4]
        boxes = box_coder.decode(pre_boxes, deltas, self.std_dev)
        boxes = tf.clip_by_value(boxes, 0.0, 1.0)

        def one_image(args):
            b, s = args
            keep, valid, _ = nms_padded(b, s, self.proposal_count, self.nms_threshold)
            return tf.gather(b, keep) * tf.cast(valid, tf.float32)[:, None]

        proposals = tf.map_fn(one_image, (boxes, scores),
                              fn_output_signature=tf.TensorSpec([self.proposal_count, 4], tf.float32))
        return tf.stop_gradient(proposals)

    def get_config(self):
        config = super().get_config()
        config.update(proposal_count=self.proposal_count, nms_threshold=self.nms_threshold,
                      pre_nms_limit=self.pre_nms_limit, std_dev=self.std_dev)
        return config
