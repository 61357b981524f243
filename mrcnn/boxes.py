"""Box formats and the TF box ops shared by the layers.

Formats (named once, used everywhere):

- **pixel**: ``(y1, x1, y2, x2)`` in image pixels; ``y2``/``x2`` are exclusive, so a box covering pixel rows
  10..19 is ``y1=10, y2=20`` (matterport's ``extract_bboxes`` convention).
- **normalised**: ``(y1, x1, y2, x2)`` with ``(0, 0, 1, 1)`` the whole (molded) image. Conversion follows
  matterport: ``norm = (pixel - (0, 0, 1, 1)) / (h - 1, w - 1, h - 1, w - 1)``, so the last pixel maps to 1.

Everything inside the model (anchors, proposals, ROIs, detections before unmolding) is normalised.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf


def norm_boxes(boxes: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Pixel boxes [..., 4] to normalised, for an image of ``shape`` (height, width)."""
    h, w = shape[0], shape[1]
    scale = np.array([h - 1, w - 1, h - 1, w - 1], dtype=np.float32)
    shift = np.array([0, 0, 1, 1], dtype=np.float32)
    return np.divide((np.asarray(boxes, dtype=np.float32) - shift), scale).astype(np.float32)


def denorm_boxes(boxes: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Normalised boxes [..., 4] to integer pixel boxes, for an image of ``shape`` (height, width)."""
    h, w = shape[0], shape[1]
    scale = np.array([h - 1, w - 1, h - 1, w - 1], dtype=np.float32)
    shift = np.array([0, 0, 1, 1], dtype=np.float32)
    return np.around(np.multiply(np.asarray(boxes, dtype=np.float32), scale) + shift).astype(np.int32)


def norm_boxes_tf(boxes: tf.Tensor, shape: Sequence[int] | tf.Tensor) -> tf.Tensor:
    """TF version of :func:`norm_boxes`; ``shape`` is a (height, width) tensor or tuple."""
    shape = tf.cast(shape, tf.float32)
    h, w = shape[0], shape[1]
    scale = tf.stack([h - 1.0, w - 1.0, h - 1.0, w - 1.0])
    shift = tf.constant([0.0, 0.0, 1.0, 1.0])
    return (tf.cast(boxes, tf.float32) - shift) / scale


def box_area(boxes: tf.Tensor) -> tf.Tensor:
    """Areas of [..., (y1, x1, y2, x2)] boxes; degenerate boxes give 0."""
    return tf.maximum(boxes[..., 2] - boxes[..., 0], 0.0) * tf.maximum(boxes[..., 3] - boxes[..., 1], 0.0)


def pairwise_iou(boxes1: tf.Tensor, boxes2: tf.Tensor) -> tf.Tensor:
    """IoU of every box in ``boxes1`` with every box in ``boxes2``.

    Args:
        boxes1: [..., N, (y1, x1, y2, x2)].
        boxes2: [..., M, (y1, x1, y2, x2)], same leading (batch) dimensions and format.

    Returns:
        [..., N, M] float32 IoU; 0 where either box has no area.
    """
    boxes1 = tf.cast(boxes1, tf.float32)
    boxes2 = tf.cast(boxes2, tf.float32)
    # [..., N, 1, 4] against [..., 1, M, 4] broadcasts to [..., N, M].
    b1 = boxes1[..., :, None, :]
    b2 = boxes2[..., None, :, :]
    y1 = tf.maximum(b1[..., 0], b2[..., 0])
    x1 = tf.maximum(b1[..., 1], b2[..., 1])
    y2 = tf.minimum(b1[..., 2], b2[..., 2])
    x2 = tf.minimum(b1[..., 3], b2[..., 3])
    inter = tf.maximum(y2 - y1, 0.0) * tf.maximum(x2 - x1, 0.0)
    union = box_area(b1) + box_area(b2) - inter
    return tf.math.divide_no_nan(inter, union)


def clip_boxes(boxes: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    """Clip [..., N, 4] boxes to ``window`` [..., 4] (y1, x1, y2, x2), same format."""
    wy1, wx1, wy2, wx2 = tf.split(tf.cast(window, boxes.dtype)[..., None, :], 4, axis=-1)
    y1, x1, y2, x2 = tf.split(boxes, 4, axis=-1)
    y1 = tf.clip_by_value(y1, wy1, wy2)
    x1 = tf.clip_by_value(x1, wx1, wx2)
    y2 = tf.clip_by_value(y2, wy1, wy2)
    x2 = tf.clip_by_value(x2, wx1, wx2)
    return tf.concat([y1, x1, y2, x2], axis=-1)
