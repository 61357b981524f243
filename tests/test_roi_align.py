"""Tests of mrcnn.roi_align: level assignment, a slow NumPy reference, the gradient and the output order."""

import math

import numpy as np
import pytest
import tensorflow as tf

from mrcnn.roi_align import PyramidROIAlign, assign_levels, roi_align
from tests.layer_checks import check_layer

IMAGE = (1024, 1024)


def _square(side_px, y=0.0, x=0.0):
    """Normalised box of ``side_px`` pixels of a 1024 x 1024 image, top-left at normalised (y, x)."""
    s = side_px / 1024.0
    return [y, x, y + s, x + s]


def _reference_roi_align(feature_maps, boxes, box_indices, pool_size, levels):
    """Slow per-sample RoIAlign following the module docstring.

    Output cell (i, j) of a box reads the map at y = y1 (h - 1) + i (y2 - y1) (h - 1) / (n - 1) (and the same
    for x), bilinear between the four neighbouring cells, 0 when the sample is outside [0, h - 1] x [0, w - 1].
    """
    out = np.zeros((len(boxes), pool_size, pool_size, feature_maps[0].shape[-1]), np.float64)
    for k, (box, b, level) in enumerate(zip(boxes, box_indices, levels)):
        fmap = feature_maps[level - 2][b].astype(np.float64)
        h, w = fmap.shape[:2]
        y1, x1, y2, x2 = box
        for i in range(pool_size):
            y = y1 * (h - 1) + i * (y2 - y1) * (h - 1) / (pool_size - 1)
            for j in range(pool_size):
                x = x1 * (w - 1) + j * (x2 - x1) * (w - 1) / (pool_size - 1)
                if y < 0 or y > h - 1 or x < 0 or x > w - 1:
                    continue
                y0, x0 = int(math.floor(y)), int(math.floor(x))
                yb, xb = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
                dy, dx = y - y0, x - x0
                out[k, i, j] = ((1 - dy) * (1 - dx) * fmap[y0, x0] + (1 - dy) * dx * fmap[y0, xb]
                                + dy * (1 - dx) * fmap[yb, x0] + dy * dx * fmap[yb, xb])
    return out


def test_assign_levels_golden():
    # sqrt(area) 224 px of a 1024 image -> P4; each halving / doubling one level; clipped to P2..P5.
    boxes = tf.constant([_square(224), _square(112), _square(56), _square(28), _square(448), _square(896),
                         _square(160), _square(150), [0, 0, 112 / 1024, 448 / 1024]], tf.float32)
    # 160: log2(160 / 224) = -0.49 rounds to 0; 150: -0.58 rounds to -1; 112 x 448 has sqrt(area) 224.
    levels = assign_levels(boxes, IMAGE)
    assert levels.dtype == tf.int32
    np.testing.assert_array_equal(levels.numpy(), [4, 3, 2, 2, 5, 5, 4, 3, 4])


def test_assign_levels_relative_to_image_size():
    # In a 512 x 512 image, the canonical 224-pixel box is 224 / 512 of the side.
    np.testing.assert_array_equal(assign_levels(tf.constant([[0, 0, 224 / 512, 224 / 512],
                                                             [0, 0, 112 / 512, 112 / 512]]), (512, 512)).numpy(),
                                  [4, 3])
    # Batched [B, N, 4] -> [B, N]; a zero (padding) box goes to P2 without NaN.
    levels = assign_levels(tf.constant([[_square(224), [0, 0, 0, 0]]], tf.float32), IMAGE)
    np.testing.assert_array_equal(levels.numpy(), [[4, 2]])


def test_roi_align_linear_feature_map_golden():
    # f(y, x) = 10 y + x is linear, so bilinear sampling gives it back exactly at the sample points.
    fmap = (10 * np.arange(5)[:, None] + np.arange(5)[None, :]).astype(np.float32)[None, :, :, None]
    maps = [tf.constant(fmap)] * 4
    # All levels hold the same map, so the level does not matter. y runs from 0.25 * 4 = 1 to 3, x from 0 to 4.
    boxes = tf.constant([[0.25, 0.0, 0.75, 1.0],
                         [-0.25, 0.0, 0.25, 1.0]], tf.float32)  # The second one starts a row above the map.
    out = roi_align(maps, boxes, tf.constant([0, 0]), 3, (1024, 1024))[..., 0].numpy()
    np.testing.assert_allclose(out[0], [[10, 12, 14], [20, 22, 24], [30, 32, 34]], atol=1e-5)
    # Rows sampled at y = -1 (outside: 0), 0 and 1.
    np.testing.assert_allclose(out[1], [[0, 0, 0], [0, 2, 4], [10, 12, 14]], atol=1e-5)


def _random_pyramid(rng, batch=2, channels=3):
    # Non-square maps of different sizes, so a swapped axis or a wrong level shows.
    sizes = [(12, 10), (9, 7), (6, 5), (4, 3)]
    return [rng.normal(size=(batch, h, w, channels)).astype(np.float32) for h, w in sizes]


def _random_boxes(rng, count):
    sides = rng.choice([40, 56, 100, 112, 224, 300, 448, 700], count) / 1024.0
    aspect = rng.uniform(0.5, 2.0, count)
    h, w = sides * np.sqrt(aspect), sides / np.sqrt(aspect)
    # Centres slightly beyond the image too, so some samples fall outside the map.
    cy, cx = rng.uniform(-0.1, 1.1, count), rng.uniform(-0.1, 1.1, count)
    return np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=1).astype(np.float32)


def test_roi_align_matches_reference():
    rng = np.random.default_rng(0)
    maps = _random_pyramid(rng)
    boxes = _random_boxes(rng, 24)
    box_indices = rng.integers(0, 2, 24).astype(np.int32)
    levels = assign_levels(tf.constant(boxes), IMAGE).numpy()
    assert set(levels) == {2, 3, 4, 5}  # Every level is exercised.
    out = roi_align([tf.constant(m) for m in maps], tf.constant(boxes), tf.constant(box_indices), 5, IMAGE)
    assert out.shape == (24, 5, 5, 3) and out.dtype == tf.float32
    expected = _reference_roi_align(maps, boxes, box_indices, 5, levels)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)


def test_roi_align_output_follows_box_order():
    rng = np.random.default_rng(1)
    maps = [tf.constant(m) for m in _random_pyramid(rng)]
    # Levels 5, 2, 4, 3, 2 in input order.
    boxes = np.array([_square(448, 0.1, 0.1), _square(56, 0.5, 0.2), _square(224, 0.3, 0.6),
                      _square(112, 0.7, 0.7), _square(50, 0.2, 0.8)], np.float32)
    np.testing.assert_array_equal(assign_levels(tf.constant(boxes), IMAGE).numpy(), [5, 2, 4, 3, 2])
    indices = tf.constant([0, 1, 1, 0, 0])
    out = roi_align(maps, tf.constant(boxes), indices, 4, IMAGE).numpy()
    perm = [3, 0, 4, 2, 1]
    out_perm = roi_align(maps, tf.constant(boxes[perm]), tf.gather(indices, perm), 4, IMAGE).numpy()
    np.testing.assert_allclose(out_perm, out[perm], atol=1e-6)
    # One box at a time gives the same rows.
    for k in range(5):
        single = roi_align(maps, tf.constant(boxes[k:k + 1]), indices[k:k + 1], 4, IMAGE).numpy()
        np.testing.assert_allclose(single[0], out[k], atol=1e-6)


def test_roi_align_gradient_matches_finite_differences():
    rng = np.random.default_rng(2)
    sizes = [(5, 4), (4, 3), (3, 3), (2, 2)]
    maps = [tf.constant(rng.normal(size=(1, h, w, 1)).astype(np.float32)) for h, w in sizes]
    # One box on each of P2, P3, P4 (none on P5, whose gradient must be zero).
    boxes = tf.constant([_square(56, 0.1, 0.2), _square(112, 0.3, 0.05), _square(224, 0.2, 0.5)], tf.float32)
    indices = tf.zeros([3], tf.int32)

    def f(p2, p3, p4, p5):
        return roi_align([p2, p3, p4, p5], boxes, indices, 3, IMAGE)

    theoretical, numerical = tf.test.compute_gradient(f, maps, delta=1e-2)
    for t, n in zip(theoretical, numerical):
        np.testing.assert_allclose(t, n, atol=2e-3)
    # P2..P4 receive gradient, P5 none.
    assert all(np.abs(t).sum() > 0 for t in theoretical[:3])
    np.testing.assert_array_equal(theoretical[3], np.zeros_like(theoretical[3]))


def test_roi_align_gradient_equals_reference_weights():
    # roi_align is linear in the maps, so d sum(out * g) / d map[cell] is the change of sum(reference * g)
    # when that cell grows by 1.
    rng = np.random.default_rng(3)
    maps = [tf.Variable(m) for m in _random_pyramid(rng, batch=2, channels=2)]
    boxes = _random_boxes(rng, 8)
    indices = rng.integers(0, 2, 8).astype(np.int32)
    upstream = rng.normal(size=(8, 3, 3, 2))
    with tf.GradientTape() as tape:
        out = roi_align(maps, tf.constant(boxes), tf.constant(indices), 3, IMAGE)
        loss = tf.reduce_sum(out * upstream.astype(np.float32))
    grads = tape.gradient(loss, maps)
    levels = assign_levels(tf.constant(boxes), IMAGE).numpy()
    # A few cells (corners and one inside) of every level that holds boxes, both batch items.
    base = [m.numpy() for m in maps]
    for level in sorted(set(levels)):
        g = grads[level - 2].numpy()
        for (y, x) in [(0, 0), (2, 1), (base[level - 2].shape[1] - 1, base[level - 2].shape[2] - 1)]:
            for b in range(2):
                bumped = [m.copy() for m in base]
                bumped[level - 2][b, y, x, 0] += 1.0
                diff = (_reference_roi_align(bumped, boxes, indices, 3, levels)
                        - _reference_roi_align(base, boxes, indices, 3, levels))
                np.testing.assert_allclose(g[b, y, x, 0], np.sum(diff * upstream), atol=1e-4)


def test_roi_align_boxes_carry_no_gradient():
    maps = [tf.ones([1, 4, 4, 1])] * 4
    boxes = tf.Variable([_square(224, 0.2, 0.2)])
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(roi_align(maps, boxes, tf.constant([0]), 2, IMAGE))
    assert tape.gradient(out, boxes) is None


def test_pyramid_roi_align_layer_is_batch_major():
    rng = np.random.default_rng(4)
    maps = [tf.constant(m) for m in _random_pyramid(rng)]
    boxes = _random_boxes(rng, 6).reshape(2, 3, 4)
    layer = PyramidROIAlign(pool_size=4, image_shape=(1024, 1024, 3))
    out = layer(tf.constant(boxes), maps).numpy()
    assert out.shape == (6, 4, 4, 3)
    # Row b * 3 + n is box n of image b.
    flat = roi_align(maps, tf.constant(boxes.reshape(6, 4)), tf.constant([0, 0, 0, 1, 1, 1]), 4, IMAGE).numpy()
    np.testing.assert_allclose(out, flat, atol=1e-6)
    levels = assign_levels(tf.constant(boxes.reshape(6, 4)), IMAGE).numpy()
    np.testing.assert_allclose(out, _reference_roi_align([m.numpy() for m in maps], boxes.reshape(6, 4),
                                                         [0, 0, 0, 1, 1, 1], 4, levels), atol=1e-5)
    # With explicit box indices the boxes are a flat list.
    out_flat = layer(tf.constant(boxes.reshape(6, 4)), maps, box_indices=tf.constant([1, 1, 1, 0, 0, 0])).numpy()
    np.testing.assert_allclose(out_flat[:3], roi_align(maps, tf.constant(boxes[0]), tf.ones([3], tf.int32), 4,
                                                       IMAGE).numpy(), atol=1e-6)


@pytest.mark.parametrize("flat", [False, True], ids=["batched", "box_indices"])
def test_pyramid_roi_align_passes_the_layer_checks(flat):
    # Config round trip, dtypes, static shapes, tf.function and functional model (tests/layer_checks.py), with
    # boxes [B, N, 4] or flat boxes and their image indices. The image size is not the maps' 1024 x 1024, so
    # a config that lost it would assign other levels.
    rng = np.random.default_rng(6)
    maps = _random_pyramid(rng)
    boxes = _random_boxes(rng, 6)
    layer = PyramidROIAlign(pool_size=4, image_shape=(512, 640, 3), name="roi_align")
    kwargs = {"box_indices": np.array([1, 0, 1, 1, 0, 0], np.int32)} if flat else {}
    out, = check_layer(layer, [boxes if flat else boxes.reshape(2, 3, 4), maps], kwargs,
                       expected_shapes=[(6, 4, 4, 3)], expected_dtypes=["float32"])
    indices = kwargs["box_indices"] if flat else [0, 0, 0, 1, 1, 1]
    levels = assign_levels(tf.constant(boxes), (512, 640)).numpy()
    assert len(set(levels)) > 1
    np.testing.assert_allclose(out, _reference_roi_align(maps, boxes, indices, 4, levels), atol=1e-5)


def test_pyramid_roi_align_under_mixed_precision_keeps_float32_boxes():
    rng = np.random.default_rng(5)
    maps = [tf.constant(m) for m in _random_pyramid(rng)]
    boxes = tf.constant(_random_boxes(rng, 6).reshape(2, 3, 4))
    want = PyramidROIAlign(pool_size=4, image_shape=(1024, 1024, 3))(boxes, maps).numpy()
    # Feature maps in bfloat16, as the backbone gives them under mixed_bfloat16; the boxes stay float32.
    layer = PyramidROIAlign(pool_size=4, image_shape=(1024, 1024, 3), dtype="mixed_bfloat16")
    got = layer(boxes, [tf.cast(m, tf.bfloat16) for m in maps])
    assert got.dtype == tf.bfloat16
    exact = roi_align([tf.cast(tf.cast(m, tf.bfloat16), tf.float32) for m in maps],
                      tf.reshape(boxes, [-1, 4]), tf.constant([0, 0, 0, 1, 1, 1]), 4, IMAGE)
    np.testing.assert_array_equal(got.numpy(), tf.cast(exact, tf.bfloat16).numpy())
    np.testing.assert_allclose(tf.cast(got, tf.float32).numpy(), want, rtol=0.02, atol=0.02 * np.abs(want).max())
