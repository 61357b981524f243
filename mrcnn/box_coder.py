"""The one box coder: boxes <-> regression deltas.

Box format everywhere in this project: ``(y1, x1, y2, x2)``, either in pixels (y2/x2 exclusive, as matterport's
``extract_bboxes``) or normalised (see :mod:`mrcnn.boxes`). The coder is format-agnostic: it only needs both
arguments in the same one.

Deltas are ``(dy, dx, log(dh), log(dw))`` divided by ``std_dev`` (matterport's BBOX_STD_DEV ``[.1, .1, .2, .2]``,
the same as torchvision/detectron2 weights ``(10, 10, 5, 5)``). Decoding clamps ``log(dh)``, ``log(dw)`` at
``log(1000 / 16)`` so a wild regression cannot overflow ``exp``, and always computes in float32.

Works on NumPy arrays and TF tensors alike (it uses TF ops; NumPy input gives a tf.Tensor back).
"""

from __future__ import annotations

import math
from typing import Sequence

import tensorflow as tf

BBOX_XFORM_CLIP = math.log(1000.0 / 16.0)


def encode(boxes: tf.Tensor, gt_boxes: tf.Tensor, std_dev: Sequence[float] = (0.1, 0.1, 0.2, 0.2)) -> tf.Tensor:
    """Deltas that turn ``boxes`` into ``gt_boxes``.

    Args:
        boxes: [..., (y1, x1, y2, x2)] reference boxes (anchors or proposals).
        gt_boxes: [..., (y1, x1, y2, x2)] target boxes, same shape and format as ``boxes``.
        std_dev: [4] divisors applied to the raw deltas.

    Returns:
        float32 [..., (dy, dx, log(dh), log(dw))] / std_dev.
    """
    boxes = tf.cast(boxes, tf.float32)
    gt_boxes = tf.cast(gt_boxes, tf.float32)
    height = boxes[..., 2] - boxes[..., 0]
    width = boxes[..., 3] - boxes[..., 1]
    center_y = boxes[..., 0] + 0.5 * height
    center_x = boxes[..., 1] + 0.5 * width
    gt_height = gt_boxes[..., 2] - gt_boxes[..., 0]
    gt_width = gt_boxes[..., 3] - gt_boxes[..., 1]
    gt_center_y = gt_boxes[..., 0] + 0.5 * gt_height
    gt_center_x = gt_boxes[..., 1] + 0.5 * gt_width
    # Degenerate (zero-size) padding boxes would give inf/NaN: guard the divisions and logs.
    safe_h = tf.maximum(height, 1e-8)
    safe_w = tf.maximum(width, 1e-8)
    dy = (gt_center_y - center_y) / safe_h
    dx = (gt_center_x - center_x) / safe_w
    dh = tf.math.log(tf.maximum(gt_height, 1e-8) / safe_h)
    dw = tf.math.log(tf.maximum(gt_width, 1e-8) / safe_w)
    deltas = tf.stack([dy, dx, dh, dw], axis=-1)
    return deltas / tf.constant(std_dev, tf.float32)


def decode(boxes: tf.Tensor, deltas: tf.Tensor, std_dev: Sequence[float] = (0.1, 0.1, 0.2, 0.2)) -> tf.Tensor:
    """Apply regression ``deltas`` to ``boxes`` (the inverse of :func:`encode`).

    Args:
        boxes: [..., (y1, x1, y2, x2)] reference boxes.
        deltas: [..., (dy, dx, log(dh), log(dw))] / std_dev, broadcastable against ``boxes``.
        std_dev: [4] the divisors used by :func:`encode`.

    Returns:
        float32 [..., (y1, x1, y2, x2)] in the format of ``boxes``.
    """
    boxes = tf.cast(boxes, tf.float32)
    deltas = tf.cast(deltas, tf.float32) * tf.constant(std_dev, tf.float32)
    height = boxes[..., 2] - boxes[..., 0]
    width = boxes[..., 3] - boxes[..., 1]
    center_y = boxes[..., 0] + 0.5 * height + deltas[..., 0] * height
    center_x = boxes[..., 1] + 0.5 * width + deltas[..., 1] * width
    height = height * tf.exp(tf.minimum(deltas[..., 2], BBOX_XFORM_CLIP))
    width = width * tf.exp(tf.minimum(deltas[..., 3], BBOX_XFORM_CLIP))
    y1 = center_y - 0.5 * height
    x1 = center_x - 0.5 * width
    return tf.stack([y1, x1, y1 + height, x1 + width], axis=-1)
