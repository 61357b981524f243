"""The network heads: RPN, box/class head and mask head.

Layer names follow matterport so its weight files load by name: the RPN is a nested model ``rpn_model``
(``rpn_conv_shared``, ``rpn_class_raw``, ``rpn_bbox_pred``), shared across pyramid levels; the box head is
``mrcnn_class_conv1``/``mrcnn_class_bn1``/``mrcnn_class_conv2``/``mrcnn_class_bn2``/``mrcnn_class_logits``/
``mrcnn_bbox_fc``; the mask head ``mrcnn_mask_conv1..4``/``mrcnn_mask_bn1..4``/``mrcnn_mask_deconv``/``mrcnn_mask``.

matterport wrapped the heads in ``TimeDistributed``; here the heads take a flat batch of pooled ROIs
[num_rois, pool, pool, channels] instead (the caller folds [batch, rois] into one axis), which is the same
computation with the same weights and lets the mask head run on a variable number of ROIs.
"""

from __future__ import annotations

import keras
from keras import layers

from .layers import BatchNorm, Conv2D

__all__ = ["build_rpn_model", "build_box_head", "build_mask_head"]


def build_rpn_model(anchor_stride: int, anchors_per_location: int, depth: int,
                    conv_depth: int = 512) -> keras.Model:
    """Region proposal head, applied to every pyramid level.

    Args:
        anchor_stride: 1 for anchors at every feature-map cell, 2 for every other cell.
        anchors_per_location: anchors per cell (number of ratios).
        depth: channels of the feature maps.
        conv_depth: channels of the shared 3x3 convolution (matterport: 512).

    Returns:
        Model: feature map [B, h, w, depth] -> (rpn_class_logits [B, h*w*k, 2], rpn_probs [B, h*w*k, 2],
        rpn_bbox [B, h*w*k, (dy, dx, log(dh), log(dw))]), anchors ordered as :mod:`mrcnn.anchors`.
    """
    feature_map = keras.Input(shape=(None, None, depth), name="input_rpn_feature_map")
    shared = Conv2D(conv_depth, 3, padding="same", activation="relu", strides=anchor_stride,
                    name="rpn_conv_shared")(feature_map)
    # [B, h, w, 2k] -> [B, h*w*k, 2]: cell-major, then anchor shape, matching the anchor order.
    x = layers.Conv2D(2 * anchors_per_location, 1, padding="valid", activation="linear",
                      name="rpn_class_raw")(shared)
    rpn_class_logits = layers.Reshape((-1, 2))(x)
    rpn_probs = layers.Activation("softmax", name="rpn_class_xxx", dtype="float32")(rpn_class_logits)
    x = layers.Conv2D(anchors_per_location * 4, 1, padding="valid", activation="linear",
                      name="rpn_bbox_pred")(shared)
    rpn_bbox = layers.Reshape((-1, 4))(x)
    return keras.Model(feature_map, [rpn_class_logits, rpn_probs, rpn_bbox], name="rpn_model")


def build_box_head(pool_size: int, depth: int, num_classes: int, fc_size: int = 1024,
                   train_bn=False) -> keras.Model:
    """Box/class head on pooled ROIs.

    Returns:
        Model: pooled [R, pool, pool, depth] -> (mrcnn_class_logits [R, C], mrcnn_probs [R, C],
        mrcnn_bbox [R, C, (dy, dx, log(dh), log(dw))]), R ROIs of all images together.
    """
    pooled = keras.Input(shape=(pool_size, pool_size, depth), name="input_pooled_rois")
    # A pool_size x pool_size 'valid' convolution is a fully connected layer on the pooled ROI; Conv2D runs
    # it, and the 1 x 1 one after it, as a matrix product (matterport's kernel shapes, so its weights load).
    x = Conv2D(fc_size, pool_size, padding="valid", name="mrcnn_class_conv1")(pooled)
    x = BatchNorm(train_bn=train_bn, name="mrcnn_class_bn1")(x)
    x = layers.Activation("relu")(x)
    x = Conv2D(fc_size, 1, name="mrcnn_class_conv2")(x)
    x = BatchNorm(train_bn=train_bn, name="mrcnn_class_bn2")(x)
    x = layers.Activation("relu")(x)
    shared = layers.Reshape((fc_size,), name="pool_squeeze")(x)
    class_logits = layers.Dense(num_classes, name="mrcnn_class_logits", dtype="float32")(shared)
    probs = layers.Activation("softmax", name="mrcnn_class", dtype="float32")(class_logits)
    x = layers.Dense(num_classes * 4, activation="linear", name="mrcnn_bbox_fc", dtype="float32")(shared)
    bbox = layers.Reshape((num_classes, 4), name="mrcnn_bbox")(x)
    return keras.Model(pooled, [class_logits, probs, bbox], name="mrcnn_box_head")


def build_mask_head(pool_size: int, depth: int, num_classes: int, train_bn=False,
                    conv_depth: int = 256) -> keras.Model:
    """Mask head on pooled ROIs.

    Returns:
        Model: pooled [R, pool, pool, depth] -> mask logits [R, 2*pool, 2*pool, C] (float32).
    """
    pooled = keras.Input(shape=(pool_size, pool_size, depth), name="input_mask_pooled_rois")
    x = pooled
    for i in range(1, 5):
        # A batch of ROIs: at inference, many of them run by Winograd's algorithm in chunks (mrcnn.winograd).
        x = Conv2D(conv_depth, 3, padding="same", roi_batch=True, name=f"mrcnn_mask_conv{i}")(x)
        x = BatchNorm(train_bn=train_bn, name=f"mrcnn_mask_bn{i}")(x)
        x = layers.Activation("relu")(x)
    x = layers.Conv2DTranspose(conv_depth, 2, strides=2, activation="relu", name="mrcnn_mask_deconv")(x)
    # Logits (matterport put the sigmoid inside this layer; the weights are the same). The loss works on
    # logits for numerical stability, inference applies the sigmoid.
    x = layers.Conv2D(num_classes, 1, activation="linear", name="mrcnn_mask", dtype="float32")(x)
    return keras.Model(pooled, x, name="mrcnn_mask_head")
