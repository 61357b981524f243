"""Tests of mrcnn.utils with small inputs and hand-computed golden values."""

import random
import time

import numpy as np
import pytest

from mrcnn import utils


def _rect_mask(shape, y1, x1, y2, x2):
    """bool [H, W] mask set on rows y1..y2-1 and columns x1..x2-1."""
    m = np.zeros(shape, dtype=bool)
    m[y1:y2, x1:x2] = True
    return m


# ---------------------------------------------------------------- re-exports

def test_matterport_names_are_exported():
    from mrcnn import anchors, boxes, dataset

    assert utils.Dataset is dataset.Dataset
    assert utils.norm_boxes is boxes.norm_boxes
    assert utils.denorm_boxes is boxes.denorm_boxes
    assert utils.generate_anchors is anchors.generate_anchors
    assert utils.generate_pyramid_anchors is anchors.generate_pyramid_anchors
    for name in utils.__all__:
        assert hasattr(utils, name), name


# ---------------------------------------------------------------- boxes

def test_extract_bboxes_rectangle_and_empty():
    mask = np.zeros((20, 30, 3), dtype=bool)
    mask[2:5, 3:10, 0] = True  # Rows 2..4, columns 3..9 -> (2, 3, 5, 10), exclusive ends.
    mask[19, 29, 1] = True  # One pixel in the corner -> (19, 29, 20, 30).
    boxes = utils.extract_bboxes(mask)
    assert boxes.dtype == np.int32
    np.testing.assert_array_equal(boxes, [[2, 3, 5, 10], [19, 29, 20, 30], [0, 0, 0, 0]])


def test_extract_bboxes_no_instances():
    assert utils.extract_bboxes(np.zeros((5, 5, 0), bool)).shape == (0, 4)


def test_compute_iou_hand_value():
    box = np.array([0, 0, 10, 10])
    boxes = np.array([[5, 5, 15, 15], [0, 0, 10, 10], [20, 20, 30, 30]])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    # Intersection 5x5 = 25, union 100 + 100 - 25 = 175.
    np.testing.assert_allclose(utils.compute_iou(box, boxes, 100, areas), [25 / 175, 1.0, 0.0])


def test_compute_overlaps_hand_values():
    boxes1 = np.array([[0, 0, 10, 10], [0, 0, 10, 20]])
    boxes2 = np.array([[5, 5, 15, 15]])
    # First: 5x5 = 25 shared, union 175. Second: rows 5..10 x cols 5..15 = 50 shared, union 200 + 100 - 50.
    overlaps = utils.compute_overlaps(boxes1, boxes2)
    assert overlaps.shape == (2, 1)
    np.testing.assert_allclose(overlaps[:, 0], [25 / 175, 50 / 250])


def test_compute_overlaps_empty_sets():
    assert utils.compute_overlaps(np.zeros((0, 4)), np.array([[0, 0, 1, 1]])).shape == (0, 1)


def test_compute_overlaps_masks_hand_value():
    a = _rect_mask((10, 10), 0, 0, 4, 4)  # 16 pixels.
    b = _rect_mask((10, 10), 2, 2, 6, 6)  # 16 pixels, 4 shared with a.
    masks1 = np.stack([a], axis=-1)
    masks2 = np.stack([a, b], axis=-1)
    overlaps = utils.compute_overlaps_masks(masks1, masks2)
    np.testing.assert_allclose(overlaps, [[1.0, 4 / 28]])
    assert utils.compute_overlaps_masks(masks1, np.zeros((10, 10, 0), bool)).shape == (1, 0)


def test_non_max_suppression_keeps_right_indices():
    boxes = np.array([
        [0, 0, 10, 10],    # 0: score 0.9, kept.
        [1, 1, 11, 11],    # 1: IoU 81/119 = 0.68 with box 0 -> suppressed at 0.5.
        [20, 20, 30, 30],  # 2: no overlap, kept.
        [5, 5, 15, 15],    # 3: IoU 25/175 = 0.14 with box 0 -> kept.
    ])
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    keep = utils.non_max_suppression(boxes, scores, 0.5)
    assert keep.dtype == np.int32
    # Box 3 (highest) first; it overlaps box 1 by 36/164 = 0.22, so box 1 falls to box 0 only.
    np.testing.assert_array_equal(keep, [3, 0, 2])
    # A looser threshold keeps box 1 too.
    np.testing.assert_array_equal(utils.non_max_suppression(boxes, scores, 0.7), [3, 0, 1, 2])
    assert utils.non_max_suppression(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)


def test_box_refinement_hand_value_and_round_trip():
    box = np.array([[0, 0, 10, 10]], dtype=np.float32)
    gt = np.array([[5, 5, 25, 15]], dtype=np.float32)
    deltas = utils.box_refinement(box, gt)
    # Centres (5, 5) -> (15, 10): dy = 10/10, dx = 5/10; sizes 10 -> 20 and 10: log 2, log 1.
    np.testing.assert_allclose(deltas, [[1.0, 0.5, np.log(2.0), 0.0]], atol=1e-6)
    np.testing.assert_allclose(utils.apply_box_deltas(box, deltas), gt, atol=1e-4)


def test_apply_box_deltas_inverts_box_refinement_random():
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.uniform(0, 50, (20, 2)), rng.uniform(60, 120, (20, 2))], axis=1)
    b = a + rng.uniform(-5, 5, (20, 4))
    back = utils.apply_box_deltas(a, utils.box_refinement(a, b))
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, b, atol=1e-3)


# ---------------------------------------------------------------- resize_image

def _image(h=100, w=50, c=3):
    return (np.arange(h * w * c) % 251).astype(np.uint8).reshape(h, w, c)


def test_resize_image_none():
    image = _image()
    out, window, scale, padding, crop = utils.resize_image(image, mode="none")
    assert out is image
    assert window == (0, 0, 100, 50) and scale == 1 and crop is None
    assert padding == [(0, 0), (0, 0), (0, 0)]


def test_resize_image_square_hand_values():
    # 100x50, min_dim 64: scale = 64 / 50 = 1.28 -> 128x64, which fits max_dim 128;
    # pad 64 columns: 32 left, 32 right.
    out, window, scale, padding, crop = utils.resize_image(_image(), min_dim=64, max_dim=128, mode="square")
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    assert scale == pytest.approx(1.28)
    assert window == (0, 32, 128, 96)
    assert padding == [(0, 0), (32, 32), (0, 0)]
    assert crop is None
    assert not out[:, :32].any() and not out[:, 96:].any()


def test_resize_image_square_shrinks_to_max_dim():
    # 100x50 with max_dim 40: scale 0.4 -> 40x20, pad 10 + 10 columns.
    out, window, scale, padding, _ = utils.resize_image(_image(), min_dim=10, max_dim=40, mode="square")
    assert out.shape == (40, 40, 3)
    assert scale == pytest.approx(0.4)
    assert window == (0, 10, 40, 30)
    assert padding == [(0, 0), (10, 10), (0, 0)]


def test_resize_image_pad64_hand_values():
    # No scaling; 100 -> 128 rows (14 top, 14 bottom), 50 -> 64 columns (7 left, 7 right).
    image = _image()
    out, window, scale, padding, crop = utils.resize_image(image, mode="pad64")
    assert out.shape == (128, 64, 3)
    assert scale == 1 and crop is None
    assert window == (14, 7, 114, 57)
    assert padding == [(14, 14), (7, 7), (0, 0)]
    np.testing.assert_array_equal(out[14:114, 7:57], image)


def test_resize_image_pad64_needs_multiple_of_64():
    with pytest.raises(ValueError, match="multiple of 64"):
        utils.resize_image(_image(), min_dim=100, mode="pad64")


def test_resize_image_fit_hand_values():
    # 300x100, max_dim 256: scale 256 / 300 -> 256 x 85 (85.33 rounded); columns padded to 128 only
    # (43: 21 left, 22 right), where "square" pads them to 256.
    image = np.full((300, 100, 3), 200, np.uint8)
    out, window, scale, padding, crop = utils.resize_image(image, min_dim=64, max_dim=256, mode="fit")
    assert out.shape == (256, 128, 3) and out.dtype == np.uint8 and crop is None
    assert scale == pytest.approx(256 / 300)
    assert window == (0, 21, 256, 106)
    assert padding == [(0, 0), (21, 22), (0, 0)]
    assert (out[:, 21:106] == 200).all() and not out[:, :21].any() and not out[:, 106:].any()
    square = utils.resize_image(image, min_dim=64, max_dim=256, mode="square")
    assert square[2] == scale
    np.testing.assert_array_equal(out, square[0][:, 64:192])


def test_resize_image_fit_scales_up_like_square():
    # 100x50, min_dim 128: scale 2.56 -> 256 x 128, within max_dim 256: no padding at all.
    out, window, scale, padding, _ = utils.resize_image(_image(), min_dim=128, max_dim=256, mode="fit")
    assert out.shape == (256, 128, 3) and scale == pytest.approx(2.56)
    assert window == (0, 0, 256, 128) and padding == [(0, 0), (0, 0), (0, 0)]


@pytest.mark.parametrize("max_dim", [None, 100])
def test_resize_image_fit_needs_max_dim_multiple_of_64(max_dim):
    with pytest.raises(ValueError, match="'fit' needs max_dim"):
        utils.resize_image(_image(), max_dim=max_dim, mode="fit")


def test_resize_image_crop():
    image = _image()
    out, window, scale, padding, crop = utils.resize_image(image, min_dim=32, mode="crop",
                                                           rng=np.random.default_rng(3))
    y, x, h, w = crop
    assert (h, w) == (32, 32) and 0 <= y <= 68 and 0 <= x <= 18
    assert window == (0, 0, 32, 32) and scale == 1
    np.testing.assert_array_equal(out, image[y:y + 32, x:x + 32])
    # Without rng, the random module decides, so random.seed repeats a crop.
    random.seed(7)
    first = utils.resize_image(image, min_dim=32, mode="crop")[4]
    random.seed(7)
    assert utils.resize_image(image, min_dim=32, mode="crop")[4] == first


def test_resize_image_crop_scales_up_first():
    out, _, scale, _, crop = utils.resize_image(_image(), min_dim=32, min_scale=2, mode="crop", rng=0)
    assert scale == 2 and out.shape == (32, 32, 3)
    assert crop[0] <= 200 - 32 and crop[1] <= 100 - 32


def test_resize_image_unknown_mode():
    with pytest.raises(ValueError, match="unknown mode"):
        utils.resize_image(_image(), mode="stretch")


def test_resize_image_float_keeps_dtype():
    image = np.ones((10, 20, 3), dtype=np.float32)
    out, window, scale, _, _ = utils.resize_image(image, min_dim=20, max_dim=40, mode="square")
    assert out.dtype == np.float32 and out.shape == (40, 40, 3)
    assert window == (10, 0, 30, 40)
    np.testing.assert_allclose(out[10:30], 1.0, atol=1e-6)


def test_resize_image_large_photo_fast():
    image = np.full((2848, 4288, 3), 128, dtype=np.uint8)
    start = time.perf_counter()
    out, window, scale, padding, _ = utils.resize_image(image, min_dim=800, max_dim=1024, mode="square")
    elapsed = time.perf_counter() - start
    # 4288 -> 1024 (scale 0.2388), 2848 -> round(680.1) = 680, padded 172 + 172.
    assert out.shape == (1024, 1024, 3) and out.dtype == np.uint8
    assert window == (172, 0, 852, 1024)
    assert padding == [(172, 172), (0, 0), (0, 0)]
    assert (out[172:852] == 128).all()
    assert elapsed < 2.0, f"resize took {elapsed:.2f}s"


def test_resize_mask_matches_resize_image():
    image = _image()
    mask = np.zeros((100, 50, 2), dtype=bool)
    mask[10:30, 5:25, 0] = True
    _, window, scale, padding, crop = utils.resize_image(image, min_dim=64, max_dim=128, mode="square")
    out = utils.resize_mask(mask, scale, padding, crop)
    assert out.shape == (128, 128, 2) and out.dtype == bool
    # Rows 10..29 * 1.28 -> 12.8..38.4, columns 5..24 * 1.28 + 32 -> 38.4..64.
    np.testing.assert_array_equal(utils.extract_bboxes(out)[0], [13, 38, 38, 64])
    assert not out[..., 1].any()


def test_resize_mask_crop():
    mask = np.zeros((100, 50, 1), dtype=bool)
    mask[40:60, 10:20] = True
    out = utils.resize_mask(mask, 1, None, crop=(30, 5, 32, 32))
    assert out.shape == (32, 32, 1)
    np.testing.assert_array_equal(utils.extract_bboxes(out), [[10, 5, 30, 15]])


# ---------------------------------------------------------------- masks

def test_minimize_expand_round_trip_rectangle():
    mask = np.stack([_rect_mask((64, 48), 10, 4, 30, 40), _rect_mask((64, 48), 0, 0, 64, 48)], axis=-1)
    bbox = utils.extract_bboxes(mask)
    mini = utils.minimize_mask(bbox, mask, (16, 16))
    assert mini.shape == (16, 16, 2) and mini.dtype == bool and mini.all()
    np.testing.assert_array_equal(utils.expand_mask(bbox, mini, (64, 48, 3)), mask)


def test_minimize_mask_zero_area_box():
    with pytest.raises(ValueError, match="zero area"):
        utils.minimize_mask(np.array([[5, 5, 5, 9]]), np.ones((10, 10, 1), bool), (4, 4))


def test_unmold_mask_pastes_at_box():
    small = np.zeros((28, 28), dtype=np.float32)
    small[:, 14:] = 0.9  # Right half of the box.
    out = utils.unmold_mask(small, np.array([10, 20, 40, 60]), (100, 80, 3))
    assert out.shape == (100, 80) and out.dtype == bool
    np.testing.assert_array_equal(utils.extract_bboxes(out[..., None]), [[10, 40, 40, 60]])
    assert out[10:40, 40:60].all()


def test_unmold_mask_full_box_and_clipping():
    ones = np.ones((28, 28), np.float32)
    out = utils.unmold_mask(ones, (5, 6, 17, 13), (20, 20))
    np.testing.assert_array_equal(out, _rect_mask((20, 20), 5, 6, 17, 13))
    # A box reaching past the image keeps the part inside.
    out = utils.unmold_mask(ones, (-5, 15, 10, 30), (20, 20))
    np.testing.assert_array_equal(out, _rect_mask((20, 20), 0, 15, 10, 20))
    assert not utils.unmold_mask(ones, (5, 5, 5, 9), (20, 20)).any()


# ---------------------------------------------------------------- evaluation

def test_trim_zeros():
    x = np.array([[1, 2, 3, 4], [0, 0, 0, 0], [0, 0, 0, 1]])
    np.testing.assert_array_equal(utils.trim_zeros(x), [[1, 2, 3, 4], [0, 0, 0, 1]])


def _gt_two():
    masks = np.stack([_rect_mask((40, 40), 0, 0, 10, 10), _rect_mask((40, 40), 20, 20, 30, 30)], axis=-1)
    return utils.extract_bboxes(masks), np.array([1, 1]), masks


def test_compute_ap_perfect():
    boxes, ids, masks = _gt_two()
    ap, precisions, recalls, overlaps = utils.compute_ap(boxes, ids, masks, boxes, ids,
                                                         np.array([0.9, 0.8]), masks)
    assert ap == pytest.approx(1.0)
    np.testing.assert_allclose(overlaps, np.eye(2))
    np.testing.assert_allclose(recalls, [0, 0.5, 1, 1])


def test_compute_ap_no_overlap():
    boxes, ids, masks = _gt_two()
    pred_masks = _rect_mask((40, 40), 35, 35, 40, 40)[..., None]
    ap, _, _, _ = utils.compute_ap(boxes, ids, masks, utils.extract_bboxes(pred_masks), np.array([1]),
                                   np.array([0.9]), pred_masks)
    assert ap == 0.0


def test_compute_ap_one_false_positive_hand_value():
    boxes, ids, masks = _gt_two()
    hit = masks[..., :1]  # Same as GT 0.
    miss = _rect_mask((40, 40), 35, 35, 40, 40)[..., None]
    pred_masks = np.concatenate([hit, miss], axis=-1)
    pred_boxes = utils.extract_bboxes(pred_masks)

    # TP first (0.9), then FP (0.8): precision 1, 1/2; recall 1/2, 1/2. AP = 0.5 * 1 = 0.5.
    ap, precisions, recalls, _ = utils.compute_ap(boxes, ids, masks, pred_boxes, np.array([1, 1]),
                                                  np.array([0.9, 0.8]), pred_masks)
    assert ap == pytest.approx(0.5)
    np.testing.assert_allclose(precisions, [1, 1, 0.5, 0])
    np.testing.assert_allclose(recalls, [0, 0.5, 0.5, 1])

    # FP first (0.95), then TP (0.9): precision 0, 1/2; recall 0, 1/2. AP = 0.5 * 0.5 = 0.25.
    ap, _, _, _ = utils.compute_ap(boxes, ids, masks, pred_boxes, np.array([1, 1]),
                                   np.array([0.9, 0.95]), pred_masks)
    assert ap == pytest.approx(0.25)


def test_compute_ap_wrong_class_is_false_positive():
    boxes, ids, masks = _gt_two()
    ap, _, _, _ = utils.compute_ap(boxes, ids, masks, boxes, np.array([2, 2]), np.array([0.9, 0.8]), masks)
    assert ap == 0.0


def test_compute_ap_no_ground_truth():
    empty_boxes, empty_ids, empty_masks = np.zeros((0, 4)), np.zeros(0, int), np.zeros((40, 40, 0), bool)
    assert utils.compute_ap(empty_boxes, empty_ids, empty_masks, empty_boxes, empty_ids, np.zeros(0),
                            empty_masks)[0] == 1.0
    boxes, ids, masks = _gt_two()
    assert utils.compute_ap(empty_boxes, empty_ids, empty_masks, boxes, ids, np.array([0.9, 0.8]),
                            masks)[0] == 0.0


def test_compute_matches_first_prediction_can_match():
    boxes, ids, masks = _gt_two()
    gt_match, pred_match, _ = utils.compute_matches(boxes, ids, masks, boxes, ids, np.array([0.9, 0.8]), masks)
    np.testing.assert_array_equal(gt_match, [0, 1])
    np.testing.assert_array_equal(pred_match, [0, 1])


def test_compute_ap_range(capsys):
    gt = _rect_mask((40, 40), 0, 0, 20, 20)[..., None]
    pred = _rect_mask((40, 40), 0, 0, 19, 15)[..., None]  # Mask IoU 285 / 400 = 0.7125.
    args = (utils.extract_bboxes(gt), np.array([1]), gt, utils.extract_bboxes(pred), np.array([1]),
            np.array([0.9]), pred)
    # Thresholds 0.50..0.70 (5 of 10) give AP 1, the rest 0: mean 0.5.
    assert utils.compute_ap_range(*args, verbose=1) == pytest.approx(0.5)
    printed = capsys.readouterr().out
    assert "AP @0.50-0.95" in printed and "AP @0.85" in printed
    assert utils.compute_ap_range(*args, iou_thresholds=[0.5, 0.9], verbose=0) == pytest.approx(0.5)


def test_compute_recall():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]])
    pred = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]])
    recall, positive_ids = utils.compute_recall(pred, gt, 0.5)
    assert recall == 0.5  # Both hits are on GT 0.
    np.testing.assert_array_equal(positive_ids, [0, 1])


def test_resize_wrapper():
    out = utils.resize(np.ones((4, 4), np.float32), (8, 8), preserve_range=True)
    assert out.shape == (8, 8)
    np.testing.assert_allclose(out, 1.0)


def test_download_trained_weights_is_a_lazy_wrapper():
    import inspect

    assert list(inspect.signature(utils.download_trained_weights).parameters) == ["coco_model_path", "verbose"]
