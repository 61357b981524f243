"""The speed benchmark's own arithmetic and config names (its timings are checked by running it, not here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import tensorflow as tf

_SPEC = importlib.util.spec_from_file_location("bench_speed", Path(__file__).parents[1] / "benchmarks" / "speed.py")
speed = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(speed)


def test_graph_gmacs_counts_by_hand():
    # 3x3 'same' conv 8 -> 16 on 10 x 10: 10*10*16 outputs x 9*8 products = 115200.
    # Matrix product [5, 8] x [8, 3]: 15 outputs x 8 = 120; with transpose_a ([8, 5]^T) the same.
    # 2x2 stride-2 transposed conv 6 -> 5 on 4 x 4: each of the 4*4*6 inputs meets 2*2*5 weights = 1920.
    conv = tf.random.normal((3, 3, 8, 16))
    dense = tf.random.normal((8, 3))
    deconv = tf.random.normal((2, 2, 5, 6))

    def fn(x, a, at, d):
        y = tf.nn.conv2d(x, conv, 1, "SAME")
        z = tf.matmul(a, dense) + tf.matmul(at, dense, transpose_a=True)
        t = tf.nn.conv2d_transpose(d, deconv, (1, 8, 8, 5), 2)
        return y, z, t

    specs = (tf.TensorSpec((1, 10, 10, 8)), tf.TensorSpec((5, 8)), tf.TensorSpec((8, 5)),
             tf.TensorSpec((1, 4, 4, 6)))
    assert speed.graph_gmacs(fn, *specs) * 1e9 == pytest.approx(115200 + 120 + 120 + 1920)


@pytest.mark.parametrize("name, backbone, size, mode, detections", [
    ("resnet50@512", "resnet50", (512, 512), "square", 100),
    ("resnet50@1024-fit", "resnet50", (1024, 1024), "fit", 100),
    ("lesion", "resnet101", (1024, 1024), "square", 10),
    ("light", "light", (320, 320), "square", None),
])
def test_config_names(name, backbone, size, mode, detections):
    cfg = speed.make_config(name, "bfloat16", winograd=False)
    assert cfg.BACKBONE == backbone
    assert (cfg.IMAGE_MIN_DIM, cfg.IMAGE_MAX_DIM) == size
    assert cfg.IMAGE_RESIZE_MODE == mode
    assert cfg.IMAGES_PER_GPU == 1 and cfg.BATCH_SIZE == 1
    # Every detection the model keeps is decoded and masked: the worst case of the config.
    assert cfg.DETECTION_MIN_CONFIDENCE == 0.0
    assert cfg.MIXED_PRECISION == "bfloat16" and cfg.WINOGRAD is False
    if detections:
        assert cfg.DETECTION_MAX_INSTANCES == detections


def test_pad64_scales_the_short_side_with_the_long_one():
    # A 767 x 1022 image at 1088 px: the long side 1088, the short side 767 * 1088 / 1022 = 816.5 -> 832.
    cfg = speed.make_config("resnet50@1088-pad64", image_shape=(767, 1022, 3))
    assert cfg.IMAGE_RESIZE_MODE == "pad64" and cfg.IMAGE_MAX_DIM == 1088 and cfg.IMAGE_MIN_DIM == 832
