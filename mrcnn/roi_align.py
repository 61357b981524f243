"""Pyramid RoIAlign: pool a fixed-size feature patch for each ROI from the FPN level that suits its size.

Sampling (the same as matterport, so its trained weights see the features they were trained on): bilinear
interpolation, one sample per output cell, corners aligned, as ``tf.image.crop_and_resize``. For a normalised box
``(y1, x1, y2, x2)`` on a feature map of height ``h`` and an output of ``n`` rows, output row ``i`` samples the
feature map at

    y = y1 * (h - 1) + i * (y2 - y1) * (h - 1) / (n - 1)

(and the same for x); samples outside the map read 0. ``tests/test_roi_align.py`` checks this against a slow
per-sample reference and checks the gradient.

Level assignment (FPN paper, eq. 1, with matterport's normalisation): a box of ``sqrt(area) = 224`` pixels
of the input image goes to P4; each halving or doubling moves one level, clipped to P2..P5.
"""

from __future__ import annotations

import math
from typing import Sequence

import keras
import tensorflow as tf

__all__ = ["assign_levels", "roi_align", "PyramidROIAlign"]


def assign_levels(boxes: tf.Tensor, image_shape: Sequence[int] | tf.Tensor) -> tf.Tensor:
    """Pyramid level (2..5) of each box.

    Args:
        boxes: [..., (y1, x1, y2, x2)] normalised.
        image_shape: (H, W) of the molded image in pixels.

    Returns:
        int32 [...] levels.
    """
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    image_area = float(image_shape[0]) * float(image_shape[1])
    # sqrt(h * w) is relative to the image; 224 / sqrt(area) is the canonical ImageNet box, relative too.
    ratio = tf.sqrt(tf.maximum(h * w, 1e-12)) / (224.0 / math.sqrt(image_area))
    level = 4.0 + tf.round(tf.math.log(ratio) / math.log(2.0))
    return tf.cast(tf.clip_by_value(level, 2.0, 5.0), tf.int32)


def roi_align(feature_maps: Sequence[tf.Tensor], boxes: tf.Tensor, box_indices: tf.Tensor, pool_size: int,
              image_shape: Sequence[int] | tf.Tensor) -> tf.Tensor:
    """Pool ``pool_size`` x ``pool_size`` patches for a flat list of boxes.

    Args:
        feature_maps: [P2, P3, P4, P5], each [B, h_l, w_l, C].
        boxes: [K, (y1, x1, y2, x2)] normalised.
        box_indices: int32 [K], the batch item of each box.
        pool_size: output side.
        image_shape: (H, W) of the molded image.

    Returns:
        [K, pool_size, pool_size, C] in the dtype of the feature maps, in the order of ``boxes``.
    """
    boxes = tf.stop_gradient(tf.cast(boxes, tf.float32))
    box_indices = tf.cast(box_indices, tf.int32)
    levels = assign_levels(boxes, image_shape)
    pooled, order = [], []
    for i, fmap in enumerate(feature_maps):
        ix = tf.where(tf.equal(levels, i + 2))[:, 0]
        crops = tf.image.crop_and_resize(
            tf.cast(fmap, tf.float32), tf.gather(boxes, ix), tf.gather(box_indices, ix),
            [pool_size, pool_size], method="bilinear")
        pooled.append(tf.cast(crops, fmap.dtype))
        order.append(ix)
    pooled = tf.concat(pooled, axis=0)
    # Rows are grouped by level; put them back in box order.
    inverse = tf.argsort(tf.concat(order, axis=0))
    return tf.gather(pooled, inverse)


@keras.saving.register_keras_serializable(package="mrcnn")
class PyramidROIAlign(keras.layers.Layer):
    """Layer form of :func:`roi_align` for batched ROIs.

    Call with ``boxes`` [B, N, (y1, x1, y2, x2)] normalised and the list [P2, P3, P4, P5]; returns
    [B * N, pool, pool, C] (batch-major), or with ``box_indices`` given, flat boxes [K, 4] -> [K, pool, pool, C].
    """

    def __init__(self, pool_size: int, image_shape, **kwargs):
        # No input casting under a mixed precision policy: the boxes stay float32, the feature maps keep their
        # own dtype.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.pool_size = int(pool_size)
        self.image_shape = tuple(int(s) for s in image_shape[:2])

    def call(self, boxes, feature_maps, box_indices=None, image_shape=None):
        """``image_shape`` (H, W): the molded input's size when it is not the one given at construction."""
        if box_indices is None:
            batch = tf.shape(boxes)[0]
            n = tf.shape(boxes)[1]
            # [B, N, 4] -> [B*N, 4] with the batch index of each row.
            box_indices = tf.repeat(tf.range(batch), n)
            boxes = tf.reshape(boxes, [-1, 4])
        return roi_align(feature_maps, boxes, box_indices, self.pool_size, image_shape or self.image_shape)

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size, image_shape=self.image_shape)
        return config
