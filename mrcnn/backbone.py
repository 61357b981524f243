"""Backbones (ResNet-50/101 and a light CPU network) and the feature pyramid (FPN).

Layer names follow matterport exactly (``conv1``, ``bn_conv1``, ``res2a_branch2a``, ``bn2a_branch2a``, ...,
``fpn_c5p5``, ``fpn_p2``), so matterport's COCO and ImageNet weight files load by name.

Feature maps: ``C2..C5`` at strides 4, 8, 16, 32; the pyramid gives ``P2..P5`` plus ``P6`` (a stride-2 subsample
of ``P5``, used by the RPN only).

The light backbone ("light") is a small ResNet-18-style network (basic blocks, widths 32-64-128-256-384) for CPU
work and tests: about 4.6 M parameters with a 128-wide pyramid, versus 44.7 M for ResNet-101 (see
``benchmarks/README.md`` for its speed). It has no pretrained weights.
"""

from __future__ import annotations

import keras
from keras import layers

from .config import check_image_size
from .layers import BatchNorm, Conv2D, conv_bn

__all__ = ["build_backbone", "resnet_graph", "light_graph", "fpn_graph", "BACKBONES"]


def _bottleneck(x, kernel_size: int, filters, stage: int, block: str, use_bias: bool, train_bn, strides=None):
    """ResNet bottleneck block with matterport's names.

    With ``strides`` (the first block of a stage) the shortcut is a strided 1x1 projection (``res{s}a_branch1``)
    and the stride sits on the first 1x1 convolution, as in Caffe's ResNet; without, the shortcut is the identity.
    """
    f1, f2, f3 = filters
    conv = f"res{stage}{block}_branch"
    bn = f"bn{stage}{block}_branch"
    y = conv_bn(x, Conv2D(f1, 1, strides=strides or (1, 1), name=conv + "2a", use_bias=use_bias),
                 BatchNorm(train_bn=train_bn, name=bn + "2a"))
    y = layers.Activation("relu")(y)
    y = conv_bn(y, Conv2D(f2, kernel_size, padding="same", name=conv + "2b", use_bias=use_bias),
                 BatchNorm(train_bn=train_bn, name=bn + "2b"))
    y = layers.Activation("relu")(y)
    y = conv_bn(y, Conv2D(f3, 1, name=conv + "2c", use_bias=use_bias),
                 BatchNorm(train_bn=train_bn, name=bn + "2c"))
    shortcut = x
    if strides is not None:
        shortcut = conv_bn(x, Conv2D(f3, 1, strides=strides, name=conv + "1", use_bias=use_bias),
                            BatchNorm(train_bn=train_bn, name=bn + "1"))
    y = layers.Add()([y, shortcut])
    return layers.Activation("relu", name=f"res{stage}{block}_out")(y)


def resnet_graph(input_image, architecture: str, stage5: bool = True, train_bn=False):
    """ResNet-50/101 (Caffe-style bottlenecks, matterport's layer names).

    Args:
        input_image: [batch, H, W, 3] Keras tensor.
        architecture: "resnet50" or "resnet101".
        stage5: build stage 5 (C5 is None otherwise).
        train_bn: see :class:`mrcnn.layers.BatchNorm`.

    Returns:
        [C1, C2, C3, C4, C5] feature tensors (strides 2, 4, 8, 16, 32).
    """
    if architecture not in ("resnet50", "resnet101"):
        raise ValueError(f"architecture must be 'resnet50' or 'resnet101', got {architecture!r}")
    # Stage 1
    x = layers.ZeroPadding2D((3, 3))(input_image)
    x = conv_bn(x, Conv2D(64, 7, strides=2, name="conv1", use_bias=True),
                 BatchNorm(train_bn=train_bn, name="bn_conv1"))
    x = layers.Activation("relu")(x)
    c1 = x = layers.MaxPooling2D((3, 3), strides=(2, 2), padding="same")(x)
    # Stage 2
    x = _bottleneck(x, 3, [64, 64, 256], 2, "a", True, train_bn, strides=(1, 1))
    x = _bottleneck(x, 3, [64, 64, 256], 2, "b", True, train_bn)
    c2 = x = _bottleneck(x, 3, [64, 64, 256], 2, "c", True, train_bn)
    # Stage 3
    x = _bottleneck(x, 3, [128, 128, 512], 3, "a", True, train_bn, strides=(2, 2))
    for block in "bcd":
        x = _bottleneck(x, 3, [128, 128, 512], 3, block, True, train_bn)
    c3 = x
    # Stage 4: 6 blocks (ResNet-50) or 23 (ResNet-101), named a, b, ..., w.
    x = _bottleneck(x, 3, [256, 256, 1024], 4, "a", True, train_bn, strides=(2, 2))
    block_count = {"resnet50": 5, "resnet101": 22}[architecture]
    for i in range(block_count):
        x = _bottleneck(x, 3, [256, 256, 1024], 4, chr(98 + i), True, train_bn)
    c4 = x
    # Stage 5
    if stage5:
        x = _bottleneck(x, 3, [512, 512, 2048], 5, "a", True, train_bn, strides=(2, 2))
        x = _bottleneck(x, 3, [512, 512, 2048], 5, "b", True, train_bn)
        c5 = _bottleneck(x, 3, [512, 512, 2048], 5, "c", True, train_bn)
    else:
        c5 = None
    return [c1, c2, c3, c4, c5]


def _basic_block(x, filters: int, stage: int, block: str, strides: int, train_bn):
    """ResNet basic block (two 3x3 convolutions) for the light backbone."""
    name = f"light{stage}{block}"
    y = conv_bn(x, Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=name + "_conv1"),
                 BatchNorm(train_bn=train_bn, name=name + "_bn1"))
    y = layers.Activation("relu")(y)
    y = conv_bn(y, Conv2D(filters, 3, padding="same", use_bias=False, name=name + "_conv2"),
                 BatchNorm(train_bn=train_bn, name=name + "_bn2"))
    if strides != 1 or x.shape[-1] != filters:
        x = conv_bn(x, Conv2D(filters, 1, strides=strides, use_bias=False, name=name + "_proj"),
                     BatchNorm(train_bn=train_bn, name=name + "_proj_bn"))
    y = layers.Add()([y, x])
    return layers.Activation("relu")(y)


LIGHT_WIDTHS = (32, 64, 128, 256, 384)


def light_graph(input_image, train_bn=False):
    """A small ResNet-18-style backbone for CPU training and inference.

    Returns:
        [C1, C2, C3, C4, C5] with strides 2, 4, 8, 16, 32 and widths 32, 64, 128, 256, 384.
    """
    w = LIGHT_WIDTHS
    x = conv_bn(input_image, Conv2D(w[0], 3, strides=2, padding="same", use_bias=False, name="light_stem_conv"),
                 BatchNorm(train_bn=train_bn, name="light_stem_bn"))
    c1 = x = layers.Activation("relu")(x)
    outputs = [c1]
    for stage, width in zip(range(2, 6), w[1:]):
        x = _basic_block(x, width, stage, "a", 2, train_bn)
        x = _basic_block(x, width, stage, "b", 1, train_bn)
        outputs.append(x)
    return outputs


def fpn_graph(c2, c3, c4, c5, pyramid_size: int):
    """Feature pyramid (matterport names ``fpn_c5p5`` ... ``fpn_p2``).

    Returns:
        [P2, P3, P4, P5, P6], each with ``pyramid_size`` channels.
    """
    p5 = layers.Conv2D(pyramid_size, 1, name="fpn_c5p5")(c5)
    p4 = layers.Add(name="fpn_p4add")(
        [layers.UpSampling2D(size=(2, 2), name="fpn_p5upsampled")(p5),
         layers.Conv2D(pyramid_size, 1, name="fpn_c4p4")(c4)])
    p3 = layers.Add(name="fpn_p3add")(
        [layers.UpSampling2D(size=(2, 2), name="fpn_p4upsampled")(p4),
         layers.Conv2D(pyramid_size, 1, name="fpn_c3p3")(c3)])
    p2 = layers.Add(name="fpn_p2add")(
        [layers.UpSampling2D(size=(2, 2), name="fpn_p3upsampled")(p3),
         layers.Conv2D(pyramid_size, 1, name="fpn_c2p2")(c2)])
    # 3x3 convolutions on the merged maps reduce upsampling aliasing.
    p2 = Conv2D(pyramid_size, 3, padding="same", name="fpn_p2")(p2)
    p3 = Conv2D(pyramid_size, 3, padding="same", name="fpn_p3")(p3)
    p4 = Conv2D(pyramid_size, 3, padding="same", name="fpn_p4")(p4)
    p5 = Conv2D(pyramid_size, 3, padding="same", name="fpn_p5")(p5)
    # P6 is used for the 5th anchor scale in the RPN only.
    p6 = layers.MaxPooling2D(pool_size=(1, 1), strides=2, name="fpn_p6")(p5)
    return [p2, p3, p4, p5, p6]


BACKBONES = ("resnet50", "resnet101", "light")


def build_backbone(image_shape, backbone="resnet101", pyramid_size: int = 256, train_bn=False,
                   name: str = "backbone") -> keras.Model:
    """The backbone + FPN as one functional model: image [B, H, W, C] -> [P2, P3, P4, P5, P6].

    Args:
        image_shape: (H, W, C) of the molded input; H and W must be divisible by 64.
        backbone: "resnet50", "resnet101", "light", or a callable
            ``f(input_image, stage5=True, train_bn=...) -> [C1?, C2, C3, C4, C5]`` (the last four are used).
        pyramid_size: FPN channels (TOP_DOWN_PYRAMID_SIZE).
        train_bn: see :class:`mrcnn.layers.BatchNorm`.
    """
    check_image_size(int(image_shape[0]), int(image_shape[1]))
    # Height and width open: inference runs at the molded size of each image ("pad64" and "none" modes).
    inputs = keras.Input(shape=(None, None, int(image_shape[2])), name="input_image")
    if callable(backbone):
        feats = backbone(inputs, stage5=True, train_bn=train_bn)
    elif backbone == "light":
        feats = light_graph(inputs, train_bn=train_bn)
    elif backbone in ("resnet50", "resnet101"):
        feats = resnet_graph(inputs, backbone, stage5=True, train_bn=train_bn)
    else:
        raise ValueError(f"Unknown BACKBONE {backbone!r}: use one of {BACKBONES} or a callable")
    c2, c3, c4, c5 = feats[-4:]
    return keras.Model(inputs, fpn_graph(c2, c3, c4, c5, pyramid_size), name=name)
