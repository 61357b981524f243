"""Small building blocks shared by the backbone and the heads."""

from __future__ import annotations

import math
import weakref

import keras
from keras import ops

from . import winograd as winograd_lib

__all__ = ["BatchNorm", "Conv2D", "conv_bn", "set_winograd"]


@keras.saving.register_keras_serializable(package="mrcnn")
class BatchNorm(keras.layers.BatchNormalization):
    """BatchNormalization whose train/inference mode is fixed at construction.

    Detection batches are small, so by default (``train_bn=False``, matterport's TRAIN_BN=False) BatchNorm always
    runs in inference mode, using the moving statistics, while gamma and beta stay trainable.
    ``train_bn=True`` updates the statistics in training; ``None`` follows the ``training`` argument.

    When the :class:`Conv2D` before it has folded it in (:func:`conv_bn`), an inference call passes its input
    through: the convolution has applied it already.
    """

    def __init__(self, train_bn: bool | None = False, **kwargs):
        super().__init__(**kwargs)
        self.train_bn = train_bn
        self._folded_into = lambda: None  # weak reference to the Conv2D that folds this layer (not tracked)

    def call(self, inputs, training=None):
        conv = self._folded_into()
        if not training and conv is not None and conv.folds(inputs.shape):
            return inputs
        if self.train_bn is not None:
            training = bool(training) and self.train_bn
        return super().call(inputs, training=training)

    def inference_affine(self):
        """(scale, offset), float32 [channels]: the layer with its moving statistics is ``x * scale + offset``."""
        scale = self.gamma * ops.rsqrt(self.moving_variance + self.epsilon)
        return scale, self.beta - self.moving_mean * scale

    def get_config(self):
        config = super().get_config()
        config["train_bn"] = self.train_bn
        return config


@keras.saving.register_keras_serializable(package="mrcnn")
class Conv2D(keras.layers.Conv2D):
    """Keras' Conv2D that computes a convolution covering its whole input as a matrix product, and that, at
    inference, can apply the :class:`BatchNorm` after it folded into its kernel and can run by Winograd's
    algorithm.

    A 'valid' convolution whose kernel is as large as its input (the box head's 7 x 7 convolution on pooled
    ROIs, and the 1 x 1 one after it) is a fully connected layer: the input and kernel are reshaped to one
    matrix product, which oneDNN runs about 2x faster in float32 than the same convolution (measured on the box
    head with 1000 ROIs), in training too. The kernel keeps its [kh, kw, in, out] shape, so weight files are
    unchanged.

    Frozen BatchNorm is a per-channel ``x * scale + offset``; multiplying the kernel by ``scale`` and adding
    ``offset`` to the bias gives the same output without a pass over the activations (which under a mixed
    precision policy also means a cast to float32 and back). The folding is computed in the graph from the
    current variables on every call, so it can never go stale, and only where the kernel is smaller than the
    output of one image (early, high-resolution layers; not the last stage at small sizes). Training calls and
    the weights are unchanged: the two layers keep their own variables and names.

    With ``winograd=True``, an inference call of a 3x3 stride-1 "same" convolution on a map where it is faster
    (float32, wide layers, large maps or many small ones: :func:`mrcnn.winograd.suits`) runs as Winograd
    F(4x4, 3x3) (:mod:`mrcnn.winograd`); training calls always run the direct convolution. ``roi_batch=True``
    says the batch axis holds ROIs (the mask head's), many of them even when their number is unknown.
    """

    def __init__(self, *args, winograd: bool = False, roi_batch: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.winograd = bool(winograd)
        self.roi_batch = bool(roi_batch)
        self._folded_bn = lambda: None  # weak reference to the BatchNorm folded in (not a tracked sublayer)

    def covers_input(self, input_shape) -> bool:
        """Whether the kernel covers the whole (static) input, so the convolution is one matrix product."""
        return (self.padding == "valid" and self.data_format == "channels_last" and self.groups == 1
                and tuple(self.strides) == (1, 1) and tuple(self.dilation_rate) == (1, 1)
                and tuple(input_shape[1:3]) == tuple(self.kernel_size))

    def convolution_op(self, inputs, kernel):
        if not self.covers_input(inputs.shape):
            return super().convolution_op(inputs, kernel)
        # [N, kh, kw, in] . [kh, kw, in, out]: both flattened in the same (kh, kw, in) order.
        depth = math.prod(kernel.shape[:3])
        outputs = ops.matmul(ops.reshape(inputs, (-1, depth)), ops.reshape(kernel, (depth, self.filters)))
        return ops.reshape(outputs, (-1, 1, 1, self.filters))

    def uses_winograd(self, input_shape) -> bool:
        """Whether an inference call on ``input_shape`` runs by Winograd's algorithm."""
        return (self.winograd and tuple(self.kernel_size) == (3, 3) and self.padding == "same"
                and self.data_format == "channels_last" and self.groups == 1 and tuple(self.strides) == (1, 1)
                and tuple(self.dilation_rate) == (1, 1)
                and winograd_lib.suits(input_shape, self.filters, self.compute_dtype, self.roi_batch))

    def folds(self, output_shape) -> bool:
        """Whether an inference call with this output shape applies the folded BatchNorm."""
        if self._folded_bn() is None:
            return False
        dims = tuple(output_shape)[1:]
        if any(d is None for d in dims):
            return True
        return math.prod(self.kernel.shape) <= math.prod(dims)

    def call(self, inputs, training=None):
        kernel = self.kernel
        bias = self.bias if self.use_bias else None
        if not training and self.folds(self.compute_output_shape(inputs.shape)):
            scale, offset = self._folded_bn().inference_affine()
            kernel = kernel * ops.cast(scale, self.compute_dtype)
            bias = offset + bias * scale if bias is not None else offset
        if not training and self.uses_winograd(inputs.shape):
            # Bias and ReLU in the output transform's pass (another activation after it).
            relu = self.activation is keras.activations.relu
            outputs = winograd_lib.conv3x3(inputs, kernel, bias, relu, chunk=winograd_lib.chunk_for(inputs.shape))
            return outputs if relu or self.activation is None else self.activation(outputs)
        outputs = self.convolution_op(inputs, kernel)
        if bias is not None:
            outputs = outputs + ops.cast(bias, outputs.dtype)
        return self.activation(outputs) if self.activation is not None else outputs

    def get_config(self):
        config = super().get_config()
        config["winograd"] = self.winograd
        config["roi_batch"] = self.roi_batch
        return config


def set_winograd(model: keras.layers.Layer, enabled: bool) -> None:
    """Set ``winograd`` on every :class:`Conv2D` inside ``model`` (traced functions keep what they traced)."""
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, Conv2D):
            layer.winograd = bool(enabled)


def conv_bn(inputs, conv: Conv2D, bn: BatchNorm):
    """``bn(conv(inputs))``, with ``bn`` folded into ``conv`` for inference calls (see :class:`Conv2D`)."""
    if conv.activation is not keras.activations.linear or conv.data_format != "channels_last" or conv.groups != 1:
        raise ValueError(f"{conv.name}: only a linear, channels-last, ungrouped convolution can fold BatchNorm")
    if not (bn.center and bn.scale) or bn.axis not in (-1, 3):
        raise ValueError(f"{bn.name}: only a channels-last BatchNorm with center and scale can be folded")
    conv._folded_bn = weakref.ref(bn)
    bn._folded_into = weakref.ref(conv)
    return bn(conv(inputs))
