"""Winograd F(4x4, 3x3) convolution: hand values, the direct convolution as reference, and where it is used."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn import winograd
from mrcnn.layers import BatchNorm, Conv2D, conv_bn, set_winograd
from tests.test_layers import _op_types


def _direct(x, kernel):
    return tf.nn.conv2d(x, kernel, strides=1, padding="SAME").numpy()


def test_ones_count_the_neighbours_inside_the_image():
    # Ones in, ones kernel: each output is (channels) x (rows of its 3x3 window inside the image) x (columns).
    # 6 x 7 spans two tiles down and two across, the second ones partly outside the image.
    x = tf.ones((1, 6, 7, 2))
    y = winograd.conv3x3(x, tf.ones((3, 3, 2, 1))).numpy()[0, :, :, 0]
    rows = np.array([2, 3, 3, 3, 3, 2])
    cols = np.array([2, 3, 3, 3, 3, 3, 2])
    np.testing.assert_allclose(y, 2 * np.outer(rows, cols), rtol=1e-6)
    assert y[0, 0] == pytest.approx(8) and y[2, 3] == pytest.approx(18) and y[5, 3] == pytest.approx(12)


def test_single_tap_kernel_shifts_the_image():
    # A kernel with one 1 at (0, 2) gives out[i, j] = in[i - 1, j + 1] (0 outside).
    x = np.arange(1 * 8 * 9 * 1, dtype="float32").reshape(1, 8, 9, 1)
    kernel = np.zeros((3, 3, 1, 1), "float32")
    kernel[0, 2] = 1
    y = winograd.conv3x3(tf.constant(x), tf.constant(kernel)).numpy()[0, :, :, 0]
    want = np.zeros((8, 9), "float32")
    want[1:, :-1] = x[0, :-1, 1:, 0]
    np.testing.assert_allclose(y, want, atol=1e-4 * x.max())


@pytest.mark.parametrize("shape, filters", [((2, 8, 8, 3), 5), ((1, 5, 9, 4), 3), ((3, 13, 6, 8), 16),
                                            ((1, 64, 64, 128), 128)])
def test_matches_the_direct_convolution(shape, filters):
    rng = np.random.default_rng(sum(shape) + filters)
    x = tf.constant(rng.normal(size=shape).astype("float32"))
    kernel = tf.constant(rng.normal(0, (9 * shape[-1]) ** -0.5, size=(3, 3, shape[-1], filters)).astype("float32"))
    want = _direct(x, kernel)
    got = winograd.conv3x3(x, kernel).numpy()
    assert got.shape == want.shape
    # Rounding only: the transforms' coefficients reach 25 and 1/24, so float32 keeps about 1e-5 of the scale.
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("chunk", [None, 2])
def test_bias_and_relu_in_the_output_transform(chunk):
    # Chunks of 2 for 5 images: the odd one out (direct) gets the same bias and ReLU.
    rng = np.random.default_rng(4)
    x = tf.constant(rng.normal(size=(5, 10, 11, 3)).astype("float32"))
    kernel = tf.constant(rng.normal(size=(3, 3, 3, 4)).astype("float32"))
    bias = np.array([-1.0, 0.0, 0.5, 2.0], "float32")
    linear = _direct(x, kernel) + bias
    atol = 1e-4 * np.abs(linear).max()
    np.testing.assert_allclose(winograd.conv3x3(x, kernel, bias, chunk=chunk).numpy(), linear, atol=atol)
    got = winograd.conv3x3(x, kernel, bias, relu=True, chunk=chunk).numpy()
    np.testing.assert_allclose(got, np.maximum(linear, 0), atol=atol)
    assert (got >= 0).all() and (got == 0).mean() > 0.2


@pytest.mark.parametrize("band_bytes", [1, 36 * 3 * 6 * 4 * 2])  # one tile row per band; two rows
def test_bands_of_tile_rows_give_the_whole_map(band_bytes):
    # 17 rows are 5 tile rows (the last one mostly padding): 5 bands of 1 tile row, or 3 bands of 2, the last
    # one reaching a tile row past the padded map.
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(2, 17, 10, 4)).astype("float32"))
    kernel = tf.constant(rng.normal(size=(3, 3, 4, 6)).astype("float32"))
    want = _direct(x, kernel)
    np.testing.assert_allclose(winograd.conv3x3(x, kernel, band_bytes=band_bytes).numpy(), want,
                               atol=1e-4 * np.abs(want).max())


def test_any_batch_size_in_a_traced_function():
    rng = np.random.default_rng(0)
    kernel = tf.constant(rng.normal(size=(3, 3, 4, 6)).astype("float32"))
    fn = tf.function(lambda t: winograd.conv3x3(t, kernel), input_signature=[tf.TensorSpec([None, 12, 16, 4])])
    for batch in (1, 3):
        x = tf.constant(rng.normal(size=(batch, 12, 16, 4)).astype("float32"))
        np.testing.assert_allclose(fn(x).numpy(), _direct(x, kernel), atol=1e-4 * 12)


@pytest.mark.parametrize("batch", [0, 1, 4, 5, 7])
def test_chunks_of_a_batch_known_only_at_run_time(batch):
    # Chunks of 2 images by Winograd, the odd one (if any) by the direct convolution: 7 images are 3 chunks
    # and 1 left over; 0 images give an empty result.
    rng = np.random.default_rng(batch)
    kernel = tf.constant(rng.normal(size=(3, 3, 4, 6)).astype("float32"))
    fn = tf.function(lambda t: winograd.conv3x3(t, kernel, chunk=2),
                     input_signature=[tf.TensorSpec([None, 9, 7, 4])])
    x = tf.constant(rng.normal(size=(batch, 9, 7, 4)).astype("float32"))
    got = fn(x).numpy()
    assert got.shape == (batch, 9, 7, 6)
    if batch:  # (TensorFlow's own convolution of an empty batch returns the input's shape)
        np.testing.assert_allclose(got, _direct(x, kernel), atol=1e-4 * 20)


def test_chunks_run_by_winograd():
    # The traced graph: the loop over chunks has the 36 matrix products and no convolution; the direct
    # convolution is only in the branch for the images left over.
    fn = tf.function(lambda t: winograd.conv3x3(t, tf.ones((3, 3, 4, 6)), chunk=2))
    graph = fn.get_concrete_function(tf.TensorSpec([None, 9, 7, 4])).graph.as_graph_def()
    functions = {f.signature.name: f for f in graph.library.function}

    def op_types(name, seen=()):  # a function's ops, with the functions it calls
        types = set()
        for node in functions[name].node_def:
            types.add(node.op)
            for value in node.attr.values():
                if value.func.name in functions and value.func.name not in seen:
                    types |= op_types(value.func.name, seen + (name,))
        return types

    loops = [n for n in graph.node if n.op in ("While", "StatelessWhile")]
    assert len(loops) == 1
    body = op_types(loops[0].attr["body"].func.name)
    assert sum(1 for n in functions[loops[0].attr["body"].func.name].node_def if n.op == "MatMul") == 36
    assert "Conv2D" not in body
    branches = [n for n in graph.node if n.op in ("If", "StatelessIf")]
    assert len(branches) == 1 and "Conv2D" in op_types(branches[0].attr["then_branch"].func.name)


def test_refuses_what_it_cannot_compute():
    with pytest.raises(ValueError, match="3x3 kernel"):
        winograd.conv3x3(tf.ones((1, 8, 8, 2)), tf.ones((5, 5, 2, 2)))
    fn = tf.function(lambda t: winograd.conv3x3(t, tf.ones((3, 3, 2, 2))))
    with pytest.raises(ValueError, match="static height and width"):
        fn.get_concrete_function(tf.TensorSpec([1, None, None, 2]))


def test_suits_large_wide_float32_maps_only():
    assert winograd.suits((None, 64, 64, 256), 256, "float32")
    assert winograd.suits((2, 32, 128, 256), 512, "float32")
    assert not winograd.suits((None, 63, 64, 256), 256, "float32")  # too few pixels
    assert not winograd.suits((None, 64, 64, 128), 256, "float32")  # too narrow in
    assert not winograd.suits((None, 64, 64, 256), 128, "float32")  # too narrow out
    assert not winograd.suits((None, 64, 64, 256), 256, "bfloat16")
    assert not winograd.suits((None, None, None, 256), 256, "float32")
    # Batches of small maps (the mask head's ROIs): by chunks of CHUNK, if a chunk makes MIN_PIXELS.
    assert winograd.suits((None, 14, 14, 256), 256, "float32", roi_batch=True)
    assert not winograd.suits((None, 14, 14, 256), 256, "float32")  # may be one image
    assert winograd.chunk_for((None, 14, 14, 256)) == winograd.CHUNK
    assert winograd.chunk_for((None, 64, 64, 256)) is None
    assert winograd.suits((winograd.CHUNK, 14, 14, 256), 256, "float32")
    assert not winograd.suits((winograd.CHUNK - 1, 14, 14, 256), 256, "float32")  # not one chunk
    assert not winograd.suits((None, 11, 11, 256), 256, "float32", roi_batch=True)  # 121 x 32 < 64 x 64


# The layer: inference only, BatchNorm folding, mixed precision, configuration.


def _layer(**kwargs):
    keras.utils.set_random_seed(11)
    conv = Conv2D(256, 3, padding="same", activation="relu", winograd=True, **kwargs)
    conv.build((None, 64, 64, 256))
    conv.bias.assign(np.random.default_rng(12).normal(size=256).astype("float32"))
    return conv


def test_layer_runs_inference_by_winograd_and_training_directly():
    conv = _layer()
    spec = tf.TensorSpec([None, 64, 64, 256])
    assert conv.uses_winograd(spec.shape)
    inference_ops = _op_types(lambda t: conv(t, training=False), spec)
    assert "Conv2D" not in inference_ops and "MatMul" in inference_ops
    assert "Relu" not in inference_ops  # applied by the compiled output transform, with the bias
    assert "Conv2D" in _op_types(lambda t: conv(t, training=True), spec)

    x = tf.constant(np.random.default_rng(13).normal(size=(2, 64, 64, 256)).astype("float32"))
    want = np.maximum(_direct(x, conv.kernel) + conv.bias.numpy(), 0)
    np.testing.assert_allclose(conv(x, training=False).numpy(), want, atol=1e-4 * np.abs(want).max())
    np.testing.assert_allclose(conv(x, training=True).numpy(), want, rtol=1e-5, atol=1e-5)


def test_layer_keeps_the_direct_convolution_where_winograd_does_not_pay():
    conv = _layer()
    assert not conv.uses_winograd((None, 32, 32, 256))
    assert "Conv2D" in _op_types(lambda t: conv(t, training=False), tf.TensorSpec([None, 32, 32, 256]))
    strided = Conv2D(256, 3, strides=2, padding="same", winograd=True)
    assert not strided.uses_winograd((None, 64, 64, 256))
    conv.winograd = False
    assert not conv.uses_winograd((None, 64, 64, 256))


def test_layer_on_a_batch_of_rois_runs_chunks():
    keras.utils.set_random_seed(16)
    conv = Conv2D(256, 3, padding="same", winograd=True, roi_batch=True)
    conv.build((None, 14, 14, 256))
    assert conv.uses_winograd((None, 14, 14, 256)) and not _layer().uses_winograd((None, 14, 14, 256))
    fn = tf.function(lambda t: conv(t, training=False), input_signature=[tf.TensorSpec([None, 14, 14, 256])])
    x = tf.constant(np.random.default_rng(17).normal(size=(winograd.CHUNK + 3, 14, 14, 256)).astype("float32"))
    want = _direct(x, conv.kernel)
    np.testing.assert_allclose(fn(x).numpy(), want, atol=1e-4 * np.abs(want).max())


def test_layer_config_round_trip():
    conv = Conv2D(256, 3, padding="same", winograd=True, roi_batch=True)
    copy = Conv2D.from_config(conv.get_config())
    assert copy.winograd and copy.roi_batch
    assert not Conv2D(256, 3, padding="same").winograd and not Conv2D(256, 3, padding="same").roi_batch


def test_folded_batchnorm_by_winograd_matches_conv_then_batchnorm():
    keras.utils.set_random_seed(14)
    inputs = keras.Input((64, 64, 256))
    conv = Conv2D(256, 3, padding="same", winograd=True)
    bn = BatchNorm(epsilon=1e-3)
    model = keras.Model(inputs, conv_bn(inputs, conv, bn))
    rng = np.random.default_rng(15)
    bn.gamma.assign(rng.uniform(0.5, 2.0, 256).astype("float32"))
    bn.beta.assign(rng.normal(0, 0.5, 256).astype("float32"))
    bn.moving_mean.assign(rng.normal(0, 0.5, 256).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.2, 3.0, 256).astype("float32"))
    x = rng.normal(size=(1, 64, 64, 256)).astype("float32")
    assert conv.folds(conv.compute_output_shape(x.shape)) and conv.uses_winograd(x.shape)
    y = _direct(x, conv.kernel) + conv.bias.numpy()
    want = (y - bn.moving_mean.numpy()) / np.sqrt(bn.moving_variance.numpy() + 1e-3) * bn.gamma.numpy() \
        + bn.beta.numpy()
    np.testing.assert_allclose(model(x, training=False).numpy(), want, atol=1e-4 * np.abs(want).max())


def test_mixed_bfloat16_keeps_the_direct_convolution():
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        conv = Conv2D(256, 3, padding="same", winograd=True)
        conv.build((None, 64, 64, 256))
        assert not conv.uses_winograd((None, 64, 64, 256))
        assert "Conv2D" in _op_types(lambda t: conv(t, training=False), tf.TensorSpec([None, 64, 64, 256]))
    finally:
        keras.config.set_dtype_policy(policy)


def test_set_winograd_reaches_nested_models():
    inner_in = keras.Input((64, 64, 256))
    inner = keras.Model(inner_in, Conv2D(256, 3, padding="same", name="inner_conv")(inner_in))
    outer_in = keras.Input((64, 64, 256))
    outer = keras.Model(outer_in, Conv2D(256, 3, padding="same", name="outer_conv")(inner(outer_in)))
    set_winograd(outer, True)
    assert inner.get_layer("inner_conv").winograd and outer.get_layer("outer_conv").winograd
    set_winograd(outer, False)
    assert not inner.get_layer("inner_conv").winograd
