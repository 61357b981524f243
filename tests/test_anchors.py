"""Tests of mrcnn.anchors with hand-computed boxes and counts."""

import math

import numpy as np

from mrcnn.anchors import compute_backbone_shapes, generate_anchors, generate_pyramid_anchors, get_anchors

STRIDES = [4, 8, 16, 32, 64]
R2 = math.sqrt(2.0)


def _box(cy, cx, h, w):
    return [cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2]


def test_generate_anchors_one_scale_three_ratios_2x2_map():
    anchors = generate_anchors(8, [0.5, 1, 2], (2, 2), feature_stride=4, anchor_stride=1)
    # Ratio is width / height: 0.5 -> tall (h 8*sqrt2, w 8/sqrt2), 1 -> 8x8, 2 -> wide (h 8/sqrt2, w 8*sqrt2).
    shapes = [(8 * R2, 8 / R2), (8.0, 8.0), (8 / R2, 8 * R2)]
    # Cells row-major, centred on cell * stride: (0, 0), (0, 4), (4, 0), (4, 4); all shapes of a cell together.
    centres = [(0, 0), (0, 4), (4, 0), (4, 4)]
    expected = [_box(cy, cx, h, w) for cy, cx in centres for h, w in shapes]
    assert anchors.shape == (12, 4)
    np.testing.assert_allclose(anchors, expected, atol=1e-9)
    # Spelled out once: the wide anchor of the last cell.
    np.testing.assert_allclose(anchors[11], [4 - 2 * R2, 4 - 4 * R2, 4 + 2 * R2, 4 + 4 * R2])


def test_generate_anchors_width_over_height_convention():
    anchors = generate_anchors(16, [2], (1, 1), feature_stride=8, anchor_stride=1)
    height = anchors[0, 2] - anchors[0, 0]
    width = anchors[0, 3] - anchors[0, 1]
    np.testing.assert_allclose(width / height, 2.0)
    np.testing.assert_allclose(width * height, 16 * 16)


def test_generate_anchors_non_square_map_and_anchor_stride():
    # A 3 (rows) x 5 (columns) map, stride 10, anchors on every second cell: rows 0, 2 and columns 0, 2, 4.
    anchors = generate_anchors(4, [1], (3, 5), feature_stride=10, anchor_stride=2)
    centres = [(y, x) for y in (0, 20) for x in (0, 20, 40)]
    np.testing.assert_allclose(anchors, [_box(cy, cx, 4, 4) for cy, cx in centres])


def test_generate_anchors_several_scales_on_one_level():
    anchors = generate_anchors([2, 4], [1], (1, 1), feature_stride=4, anchor_stride=1)
    np.testing.assert_allclose(anchors, [[-1, -1, 1, 1], [-2, -2, 2, 2]])


def test_compute_backbone_shapes():
    np.testing.assert_array_equal(compute_backbone_shapes((64, 64), STRIDES),
                                  [[16, 16], [8, 8], [4, 4], [2, 2], [1, 1]])
    # Sizes that do not divide: ceil(100 / s), ceil(60 / s).
    np.testing.assert_array_equal(compute_backbone_shapes((100, 60, 3), STRIDES),
                                  [[25, 15], [13, 8], [7, 4], [4, 2], [2, 1]])


def test_generate_pyramid_anchors_counts_and_level_order():
    shapes = compute_backbone_shapes((64, 64), STRIDES)
    scales = (8, 16, 32, 64, 128)
    ratios = [0.5, 1, 2]
    # anchor_stride 1: (16^2 + 8^2 + 4^2 + 2^2 + 1) cells * 3 ratios = 341 * 3.
    anchors = generate_pyramid_anchors(scales, ratios, shapes, STRIDES, 1)
    assert anchors.shape == (1023, 4)
    # Level by level: the first 768 are P2 (scale 8), the last 3 are P6 (scale 128) at (0, 0).
    np.testing.assert_allclose(anchors[:768], generate_anchors(8, ratios, (16, 16), 4, 1))
    np.testing.assert_allclose(anchors[-2], [-64, -64, 64, 64])
    # anchor_stride 2: (8^2 + 4^2 + 2^2 + 1 + 1) cells * 3 = 86 * 3.
    assert generate_pyramid_anchors(scales, ratios, shapes, STRIDES, 2).shape == (258, 4)


def test_get_anchors_normalised():
    anchors = get_anchors((64, 64, 3), (8, 16, 32, 64, 128), [0.5, 1, 2], STRIDES, 1)
    assert anchors.dtype == np.float32
    assert anchors.shape == (1023, 4)
    # The square P2 anchor of cell (0, 1) is pixels (-4, 0, 4, 8) -> (y - (0, 0, 1, 1)) / 63.
    np.testing.assert_allclose(anchors[4], [-4 / 63, 0, 3 / 63, 7 / 63], rtol=1e-6)
    # The P6 square anchor (-64, -64, 64, 64).
    np.testing.assert_allclose(anchors[-2], [-64 / 63, -64 / 63, 63 / 63, 63 / 63], rtol=1e-6)


def test_octave_scales_give_n_sizes_per_level():
    from mrcnn.anchors import octave_scales

    assert octave_scales([32, 64], 1) == [[32.0], [64.0]]
    two = octave_scales([32, 64], 2)
    np.testing.assert_allclose(two, [[32.0, 32.0 * 2 ** 0.5], [64.0, 64.0 * 2 ** 0.5]])


def test_get_anchors_with_two_scales_per_octave_doubles_the_count():
    one = get_anchors((64, 64), [8, 16, 32, 64, 128], [0.5, 1, 2], [4, 8, 16, 32, 64], 1)
    two = get_anchors((64, 64), [8, 16, 32, 64, 128], [0.5, 1, 2], [4, 8, 16, 32, 64], 1, scales_per_octave=2)
    assert two.shape[0] == 2 * one.shape[0]
    # First cell of the first level: ratio 1 anchors of sizes 8 and 8*sqrt(2), centred on pixel (0, 0).
    # Normalised sides are (pixels - 1) / 63 (the (h - 1) convention of norm_boxes).
    sides = sorted({round(float((b[2] - b[0]) * 63 + 1), 3) for b in two[:6] if abs((b[2] - b[0]) - (b[3] - b[1])) < 1e-6})
    np.testing.assert_allclose(sides, [8.0, 8.0 * 2 ** 0.5], atol=1e-3)


def test_anchor_settings_of_a_config_give_its_anchors():
    from mrcnn.anchors import anchor_settings, anchors_for_size
    from mrcnn.config import Config

    config = Config()
    settings = anchor_settings(config)
    assert settings == {"backbone_strides": [4, 8, 16, 32, 64], "anchor_scales": [32.0, 64.0, 128.0, 256.0, 512.0],
                        "anchor_ratios": [0.5, 1.0, 2.0], "anchor_stride": 1, "anchor_scales_per_octave": 1,
                        "compute_backbone_shape": None}
    anchors = anchors_for_size((128, 192), 3, **settings)
    # 3 ratios per cell of the 32x48, 16x24, 8x12, 4x6 and 2x3 feature maps.
    assert anchors.dtype == np.float32 and anchors.shape == (3 * (32 * 48 + 16 * 24 + 8 * 12 + 4 * 6 + 2 * 3), 4)
    np.testing.assert_array_equal(anchors, get_anchors((128, 192), (32, 64, 128, 256, 512), (0.5, 1, 2),
                                                       (4, 8, 16, 32, 64), 1).astype(np.float32))
    # A callable backbone's COMPUTE_BACKBONE_SHAPE gets the molded shape with its channels.
    config.BACKBONE = lambda *args, **kwargs: None
    seen = []
    config.COMPUTE_BACKBONE_SHAPE = lambda shape: seen.append(list(shape)) or compute_backbone_shapes(shape, [4] * 5)
    assert anchors_for_size((128, 192), 3, **anchor_settings(config)).shape == (3 * 5 * 32 * 48, 4)
    assert seen == [[128, 192, 3]]
