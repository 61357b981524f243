"""BatchNorm folded into the convolution before it: same outputs, training untouched."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.backbone import build_backbone
from mrcnn.layers import BatchNorm, Conv2D, conv_bn
from tests.layer_checks import check_layer


def _randomize_bn(layers, rng):
    """Moving statistics and affine parameters far from the identity, so a missing BatchNorm shows."""
    for layer in layers:
        if isinstance(layer, BatchNorm):
            c = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 2.0, c).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.5, c).astype("float32"))
            layer.moving_mean.assign(rng.normal(0, 0.5, c).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.2, 3.0, c).astype("float32"))


def _conv_bn_model(kernel_size, size, use_bias, train_bn=False):
    inputs = keras.Input((size, size, 3))
    conv = Conv2D(4, kernel_size, padding="same", use_bias=use_bias)
    bn = BatchNorm(train_bn=train_bn, epsilon=1e-3)
    model = keras.Model(inputs, conv_bn(inputs, conv, bn))
    _randomize_bn([bn], np.random.default_rng(0))
    return model, conv, bn


def _by_hand(x, conv, bn):
    """Convolution then the BatchNorm formula with the moving statistics, in NumPy after the convolution."""
    y = tf.nn.conv2d(x, conv.kernel, strides=1, padding="SAME").numpy()
    if conv.use_bias:
        y = y + conv.bias.numpy()
    mean, var = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    return (y - mean) / np.sqrt(var + bn.epsilon) * bn.gamma.numpy() + bn.beta.numpy()


@pytest.mark.parametrize("use_bias", [True, False])
def test_folded_inference_equals_conv_then_batchnorm(use_bias):
    model, conv, bn = _conv_bn_model(3, 16, use_bias)
    x = np.random.default_rng(1).normal(size=(2, 16, 16, 3)).astype("float32")
    assert conv.folds(conv.compute_output_shape(x.shape))  # 3*3*3*4 kernel elements < 16*16*4 outputs
    np.testing.assert_allclose(model(x, training=False).numpy(), _by_hand(x, conv, bn), rtol=1e-4, atol=1e-4)


def test_folding_is_skipped_where_the_kernel_outweighs_the_output():
    model, conv, bn = _conv_bn_model(7, 2, True)  # 7*7*3*4 = 588 kernel elements > 2*2*4 = 16 outputs
    x = np.random.default_rng(1).normal(size=(1, 2, 2, 3)).astype("float32")
    assert not conv.folds(conv.compute_output_shape(x.shape))
    np.testing.assert_allclose(model(x, training=False).numpy(), _by_hand(x, conv, bn), rtol=1e-4, atol=1e-4)


def test_training_uses_batch_statistics_and_trains_gamma_and_beta():
    keras.utils.set_random_seed(2)
    model, conv, bn = _conv_bn_model(3, 8, True, train_bn=True)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    # Weights that vary over positions: with one weight per channel, the gradient of gamma would be that
    # weight times the sum of the normalised activations, which batch statistics make zero.
    w = rng.normal(size=(4, 8, 8, 4)).astype("float32")
    with tf.GradientTape() as tape:
        y = model(x, training=True)
        loss = tf.reduce_sum(y * w)
    # Batch statistics: each channel is normalised to mean beta over the batch.
    np.testing.assert_allclose(y.numpy().mean(axis=(0, 1, 2)), bn.beta.numpy(), atol=1e-4)
    grads = dict(zip([v.path for v in model.trainable_variables],
                     tape.gradient(loss, model.trainable_variables)))
    assert set(grads) == {conv.kernel.path, conv.bias.path, bn.gamma.path, bn.beta.path}
    z = (tf.nn.conv2d(x, conv.kernel, strides=1, padding="SAME") + conv.bias).numpy()
    normalised = (z - z.mean(axis=(0, 1, 2))) / np.sqrt(z.var(axis=(0, 1, 2)) + bn.epsilon)
    np.testing.assert_allclose(grads[bn.gamma.path].numpy(), (normalised * w).sum(axis=(0, 1, 2)),
                               rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(grads[bn.beta.path].numpy(), w.sum(axis=(0, 1, 2)), rtol=1e-4, atol=1e-4)


def test_frozen_batchnorm_in_training_matches_the_folded_inference():
    model, conv, bn = _conv_bn_model(3, 8, True, train_bn=False)
    x = np.random.default_rng(3).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(model(x, training=True).numpy(), model(x, training=False).numpy(),
                               rtol=1e-4, atol=1e-4)


def test_conv_bn_refuses_what_it_cannot_fold():
    x = keras.Input((8, 8, 3))
    with pytest.raises(ValueError, match="linear"):
        conv_bn(x, Conv2D(4, 3, activation="relu"), BatchNorm())
    with pytest.raises(ValueError, match="center and scale"):
        conv_bn(x, Conv2D(4, 3), BatchNorm(scale=False))


@pytest.mark.parametrize("architecture", ["resnet50", "light"])
def test_backbone_with_folding_matches_the_backbone_without(architecture):
    keras.utils.set_random_seed(4)
    model = build_backbone((128, 128, 3), architecture, pyramid_size=32)
    _randomize_bn(model.layers, np.random.default_rng(5))
    x = np.random.default_rng(6).normal(size=(1, 128, 128, 3)).astype("float32")
    convs = [layer for layer in model.layers if isinstance(layer, Conv2D) and layer._folded_bn() is not None]
    assert any(c.folds(c.compute_output_shape(c.input.shape)) for c in convs)
    folded = [p.numpy() for p in model(x, training=False)]
    for conv in convs:  # unlink every pair: plain convolution, then BatchNorm
        conv._folded_bn()._folded_into = lambda: None
        conv._folded_bn = lambda: None
    plain = [p.numpy() for p in model(x, training=False)]
    for a, b in zip(folded, plain):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * np.abs(b).max())


def _op_types(fn, *specs):
    return {op.type for op in tf.function(fn).get_concrete_function(*specs).graph.get_operations()}


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_convolution_covering_its_input_runs_as_a_matrix_product(kernel_size):
    keras.utils.set_random_seed(7)
    conv = Conv2D(5, kernel_size, padding="valid")
    x = tf.constant(np.random.default_rng(8).normal(size=(6, kernel_size, kernel_size, 4)).astype("float32"))
    conv.build(x.shape)
    conv.bias.assign(np.arange(5, dtype="float32"))
    assert conv.covers_input(x.shape)
    ops_used = _op_types(conv, tf.TensorSpec([None, kernel_size, kernel_size, 4]))
    assert "MatMul" in ops_used and "Conv2D" not in ops_used

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = conv(x)
        loss = tf.reduce_sum(y * tf.range(5, dtype=y.dtype))
        ref = tf.nn.conv2d(x, conv.kernel, strides=1, padding="VALID") + conv.bias
        ref_loss = tf.reduce_sum(ref * tf.range(5, dtype=ref.dtype))
    assert y.shape == (6, 1, 1, 5)
    np.testing.assert_allclose(y.numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)
    for target in (x, conv.kernel):
        np.testing.assert_allclose(tape.gradient(loss, target).numpy(), tape.gradient(ref_loss, target).numpy(),
                                   rtol=1e-5, atol=1e-5)


def test_convolution_smaller_than_its_input_stays_a_convolution():
    conv = Conv2D(5, 3, padding="valid")
    assert not conv.covers_input((None, 5, 5, 4))
    assert not Conv2D(5, 3, padding="same").covers_input((None, 3, 3, 4))
    assert not Conv2D(5, 3, padding="valid").covers_input((None, None, None, 4))
    ops_used = _op_types(conv, tf.TensorSpec([None, 5, 5, 4]))
    assert "Conv2D" in ops_used and "MatMul" not in ops_used


def test_box_head_runs_without_convolutions_and_keeps_matterport_kernel_shapes():
    from mrcnn.heads import build_box_head

    head = build_box_head(7, 16, num_classes=3, fc_size=32)
    assert head.get_layer("mrcnn_class_conv1").kernel.shape == (7, 7, 16, 32)
    assert head.get_layer("mrcnn_class_conv2").kernel.shape == (1, 1, 32, 32)
    assert "Conv2D" not in _op_types(lambda p: head(p, training=False), tf.TensorSpec([None, 7, 7, 16]))


def test_matrix_product_path_under_mixed_bfloat16():
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(9)
        conv = Conv2D(8, 7, padding="valid")
        x = np.random.default_rng(10).normal(size=(3, 7, 7, 16)).astype("float32")
        y = conv(x)
    finally:
        keras.config.set_dtype_policy(policy)
    assert y.dtype == tf.bfloat16 and conv.kernel.dtype == "float32"
    ref = tf.nn.conv2d(x, conv.kernel, strides=1, padding="VALID") + conv.bias
    np.testing.assert_allclose(tf.cast(y, tf.float32).numpy(), ref.numpy(), rtol=0.05, atol=0.05)


@pytest.mark.parametrize("train_bn", [False, True, None])
def test_batchnorm_passes_the_layer_checks(train_bn):
    # Config round trip, dtypes, static shapes, tf.function and functional model (tests/layer_checks.py), called
    # in training: train_bn=False keeps the moving statistics, True and None (follow ``training``) use the batch's.
    bn = BatchNorm(train_bn=train_bn, epsilon=1e-3, name="bn")
    bn.build((None, 5, 5, 3))
    _randomize_bn([bn], np.random.default_rng(11))
    mean, var = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    x = np.random.default_rng(12).normal(size=(2, 5, 5, 3)).astype("float32")
    out, = check_layer(bn, [x], call_kwargs={"training": True}, expected_shapes=[(2, 5, 5, 3)],
                       expected_dtypes=["float32"], atol=1e-5)
    if train_bn is not False:
        mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    want = (x - mean) / np.sqrt(var + bn.epsilon) * bn.gamma.numpy() + bn.beta.numpy()
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", ["same", "covering", "winograd"])
def test_conv2d_passes_the_layer_checks(case):
    # Config round trip, dtypes, static shapes, tf.function and functional model (tests/layer_checks.py) on the
    # three ways Conv2D runs: a plain convolution, a matrix product (kernel as large as the input) and, traced on
    # a batch of ROIs of unknown size, Winograd's algorithm (which the eager call on 2 maps does not use).
    keras.utils.set_random_seed(13)
    size, channels, kernel, padding = {"same": (6, 4, 3, "same"), "covering": (4, 4, 4, "valid"),
                                       "winograd": (12, 256, 3, "same")}[case]
    conv = Conv2D(channels, kernel, padding=padding, activation="relu", winograd=case == "winograd",
                  roi_batch=case == "winograd", name="conv")
    x = np.random.default_rng(14).normal(size=(2, size, size, channels)).astype("float32")
    out_size = size if padding == "same" else 1
    if case == "winograd":
        assert not conv.uses_winograd(x.shape) and conv.uses_winograd((None,) + x.shape[1:])
    out, = check_layer(conv, [x], expected_shapes=[(2, out_size, out_size, channels)], expected_dtypes=["float32"],
                       atol=1e-4 if case == "winograd" else 1e-6)
    want = tf.nn.relu(tf.nn.conv2d(x, conv.kernel, strides=1, padding=padding.upper()) + conv.bias).numpy()
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
