"""Detection decoding: box-head outputs -> final detections with per-class NMS."""

from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

from . import box_coder
from .boxes import clip_boxes
from .proposals import nms_padded

__all__ = ["DetectionLayer"]


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionLayer(keras.layers.Layer):
    """Refine ROIs with the class-specific deltas, drop background and weak boxes, NMS per class.

    Call with ``rois`` [B, N, 4] normalised, ``probs`` [B, N, C], ``deltas`` [B, N, C, 4] (divided by
    BBOX_STD_DEV) and ``window`` [B, (y1, x1, y2, x2)] normalised (the part of the molded image that holds the
    real image). Returns ``(detections, class_probs)``:

    - detections [B, max_detections, (y1, x1, y2, x2, class_id, score)], boxes normalised and clipped to the
      window, sorted by score, zero rows as padding;
    - class_probs [B, max_detections, C]: the full class distribution of each detection.

    Per-class NMS runs as one NMS call: each class's boxes are shifted by ``2 * class_id`` so that boxes of
    different classes never overlap (no Python loop over classes). With ``class_agnostic=True`` (config
    DETECTION_CLASS_AGNOSTIC_NMS) the boxes are not shifted: a box suppresses overlapping boxes of every class,
    so one object gets one detection, with the class distribution of the highest-scoring box (for one object a
    picture, such as a lesion, whose class is a diagnosis rather than another object).
    """

    def __init__(self, max_detections: int = 100, min_confidence: float = 0.7, nms_threshold: float = 0.3,
                 std_dev: Sequence[float] = (0.1, 0.1, 0.2, 0.2), class_agnostic: bool = False, **kwargs):
        # No input casting under a mixed precision policy: boxes, scores and deltas are decoded in float32, not
        # rounded to float16 / bfloat16 first (this layer has no variables).
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.max_detections = int(max_detections)
        self.min_confidence = float(min_confidence)
        self.nms_threshold = float(nms_threshold)
        self.std_dev = [float(s) for s in std_dev]
        self.class_agnostic = bool(class_agnostic)

    def call(self, rois, probs, deltas, window):
        rois = tf.cast(rois, tf.float32)
        probs = tf.cast(probs, tf.float32)
        deltas = tf.cast(deltas, tf.float32)
        class_ids = tf.argmax(probs, axis=-1, output_type=tf.int32)  # [B, N]
        scores = tf.reduce_max(probs, axis=-1)  # [B, N]
        class_deltas = tf.gather(deltas, class_ids, batch_dims=2)  # [B, N, 4]
        boxes = box_coder.decode(rois, class_deltas, self.std_dev)
        boxes = clip_boxes(boxes, window)
        roi_valid = tf.reduce_any(tf.not_equal(rois, 0.0), axis=-1)
        keep = roi_valid & (class_ids > 0) & (scores >= self.min_confidence)
        scores = tf.where(keep, scores, -1.0)
        shifted = boxes if self.class_agnostic else boxes + 2.0 * tf.cast(class_ids, tf.float32)[..., None]
        d = self.max_detections

        def one_image(args):
            b, shifted_b, s, c, p = args
            ix, valid, _ = nms_padded(shifted_b, s, d, self.nms_threshold, score_threshold=0.0)
            validf = tf.cast(valid, tf.float32)[:, None]
            det = tf.concat([tf.gather(b, ix), tf.cast(tf.gather(c, ix), tf.float32)[:, None],
                             tf.gather(s, ix)[:, None]], axis=1)
            return det * validf, tf.gather(p, ix) * validf

        num_classes = probs.shape[-1]
        return tf.map_fn(
            one_image, (boxes, shifted, scores, class_ids, probs),
            fn_output_signature=(tf.TensorSpec([d, 6], tf.float32), tf.TensorSpec([d, num_classes], tf.float32)))

    def get_config(self):
        config = super().get_config()
        config.update(max_detections=self.max_detections, min_confidence=self.min_confidence,
                      nms_threshold=self.nms_threshold, std_dev=self.std_dev, class_agnostic=self.class_agnostic)
        return config
