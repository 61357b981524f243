"""matterport's calling conventions: detect_molded, load_image_gt, data_generator, run_graph, find_last,
IMAGE_CHANNEL_COUNT, COMPUTE_BACKBONE_SHAPE, USE_RPN_ROIS, draw_boxes."""

from __future__ import annotations

import logging
import os

import keras
import numpy as np
import pytest

from mrcnn import model as modellib
from mrcnn import utils, visualize
from mrcnn.anchors import compute_backbone_shapes, get_anchors
from mrcnn.backbone import light_graph
from mrcnn.data import data_generator, load_image_gt
from samples.shapes import ShapesDataset
from tests.test_model import TinyInferenceConfig as TinyConfig


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(3)
    return modellib.MaskRCNN("inference", TinyConfig(), model_dir="unused")


def _shapes(count, seed, height=128, width=128):
    ds = ShapesDataset()
    ds.load_shapes(count, height, width, seed=seed)
    ds.prepare()
    return ds


def test_detect_molded_returns_results_in_the_molded_frame(model):
    image = np.random.default_rng(0).integers(0, 255, (90, 200, 3), dtype=np.uint8)
    molded, metas, windows = model.mold_inputs([image])
    assert tuple(windows[0]) == (35, 0, 93, 128)  # scale 0.64: 58 rows, padded 35 + 35
    r = model.detect_molded(molded, metas)[0]
    raw = model.run_inference(molded, metas)["detections"][0]
    boxes = utils.denorm_boxes(raw[raw[:, 4] > 0, :4], (128, 128))
    boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
    assert len(boxes) > 0
    np.testing.assert_array_equal(r["rois"], boxes)
    assert r["masks"].shape == (128, 128, len(boxes))
    # detect() gives the same boxes in the original image's pixels: molded = original * 0.64 + window's corner.
    original = model.detect([image])[0]["rois"]
    np.testing.assert_allclose(original * 0.64 + [35, 0, 35, 0], r["rois"], atol=1.5)
    with pytest.raises(ValueError, match="metas"):
        model.detect_molded(molded, metas[:, :5])


class FourChannelConfig(TinyConfig):
    IMAGE_CHANNEL_COUNT = 4
    MEAN_PIXEL = np.array([123.7, 116.8, 103.9, 100.0])


def test_image_channel_count_four_detects_four_channel_images():
    model = modellib.MaskRCNN("inference", FourChannelConfig(), model_dir="unused")
    flat = np.broadcast_to(np.array([10, 20, 30, 40], np.uint8), (70, 100, 4))
    molded, _, windows = model.mold_inputs([flat])
    assert molded.shape == (1, 128, 128, 4) and tuple(windows[0]) == (19, 0, 109, 128)
    np.testing.assert_allclose(molded[0, 19:109], np.broadcast_to([10, 20, 30, 40] - FourChannelConfig.MEAN_PIXEL,
                                                                   (90, 128, 4)), atol=1e-4)
    image = np.random.default_rng(1).integers(0, 255, (70, 100, 4), dtype=np.uint8)
    r = model.detect([image])[0]
    assert r["masks"].shape[:2] == (70, 100)
    with pytest.raises(ValueError, match="IMAGE_CHANNEL_COUNT = 4"):
        model.detect([image[..., :3]])


def test_rgb_model_still_takes_greyscale_and_rgba(model):
    image = np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    grey = image[..., 0]
    rgba = np.concatenate([image, np.full((64, 64, 1), 255, np.uint8)], axis=-1)
    np.testing.assert_array_equal(model.mold_inputs([rgba])[0], model.mold_inputs([image])[0])
    np.testing.assert_array_equal(model.mold_inputs([grey])[0], model.mold_inputs([np.stack([grey] * 3, -1)])[0])
    with pytest.raises(ValueError, match="RGB"):
        model.mold_inputs([image[..., :2]])


def test_compute_backbone_shape_gives_the_anchor_grid_of_a_callable_backbone():
    calls = []

    def backbone(inputs, stage5=True, train_bn=False):
        return light_graph(inputs, train_bn=train_bn)

    def shapes(image_shape):
        calls.append(tuple(int(v) for v in image_shape))
        return compute_backbone_shapes(image_shape, [4, 8, 16, 32, 64])

    class CallableConfig(TinyConfig):
        BACKBONE = staticmethod(backbone)
        COMPUTE_BACKBONE_SHAPE = staticmethod(shapes)

    model = modellib.MaskRCNN("inference", CallableConfig(), model_dir="unused")
    assert calls == [(128, 128, 3)]
    assert len(model.keras_model.anchors) == 3 * (32 * 32 + 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2)
    assert len(model.detect([np.zeros((50, 50, 3), np.uint8)])) == 1

    class WrongShapes(CallableConfig):
        COMPUTE_BACKBONE_SHAPE = staticmethod(lambda image_shape: [[32, 32], [16, 16]])

    with pytest.raises(ValueError, match="BACKBONE_STRIDES"):
        modellib.MaskRCNN("inference", WrongShapes(), model_dir="unused")


def test_use_rpn_rois_false_is_refused_for_training(tmp_path):
    class NoRpnRois(TinyConfig):
        USE_RPN_ROIS = False

    with pytest.raises(ValueError, match="USE_RPN_ROIS"):
        modellib.MaskRCNN("training", NoRpnRois(), model_dir=str(tmp_path))


def test_load_image_gt_takes_matterports_arguments_in_order():
    ds, config = _shapes(1, 7), TinyConfig()
    image, meta, class_ids, bbox, mask = load_image_gt(ds, config, 0, False, None, True)  # use_mini_mask
    assert image.shape == (128, 128, 3) and mask.shape == (28, 28, len(class_ids))
    plain = load_image_gt(ds, config, 0)
    flipped = seen = 0
    for seed in range(10):
        np.random.seed(seed)
        with pytest.warns(DeprecationWarning, match="augmentation"):
            out = load_image_gt(ds, config, 0, augment=True)
        if np.array_equal(out[0], plain[0]):
            np.testing.assert_array_equal(out[4], plain[4])
            seen += 1
        else:  # matterport's augment: a left-right flip of half the images
            np.testing.assert_array_equal(out[0], plain[0][:, ::-1])
            np.testing.assert_array_equal(out[4], plain[4][:, ::-1])
            flipped += 1
    assert flipped and seen


def test_data_generator_yields_matterports_inputs_and_rpn_targets():
    ds, config = _shapes(3, 8), TinyConfig()
    np.random.seed(0)
    inputs, outputs = next(data_generator(ds, config, shuffle=True, batch_size=2))
    assert outputs == []
    images, metas, rpn_match, rpn_bbox, gt_class_ids, gt_boxes, gt_masks = inputs
    anchors = get_anchors((128, 128), config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, config.BACKBONE_STRIDES, 1)
    assert images.shape == (2, 128, 128, 3) and images.dtype == np.float32
    assert metas.shape == (2, config.IMAGE_META_SIZE)
    assert rpn_match.shape == (2, len(anchors), 1) and rpn_match.dtype == np.int32
    assert rpn_bbox.shape == (2, config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4)
    assert gt_class_ids.shape == (2, config.MAX_GT_INSTANCES) and gt_boxes.dtype == np.int32
    assert gt_masks.shape == (2, 28, 28, config.MAX_GT_INSTANCES) and gt_masks.dtype == bool
    for b in range(2):
        match = rpn_match[b, :, 0]
        positive = np.where(match == 1)[0]
        assert 0 < len(positive) and np.count_nonzero(match) <= config.RPN_TRAIN_ANCHORS_PER_IMAGE
        assert not rpn_bbox[b, len(positive):].any()
        # Each positive anchor, moved by its deltas, lands on a ground-truth box.
        moved = utils.denorm_boxes(
            utils.apply_box_deltas(anchors[positive], rpn_bbox[b, :len(positive)] * config.RPN_BBOX_STD_DEV),
            (128, 128))
        boxes = gt_boxes[b][gt_class_ids[b] > 0]
        assert all(np.abs(boxes - box).max(axis=1).min() <= 1 for box in moved)
    with pytest.raises(NotImplementedError, match="detection_targets"):
        next(data_generator(ds, config, random_rois=100, detection_targets=True))


def test_run_graph_takes_names_layers_and_matterports_pairs(model):
    image = np.random.default_rng(4).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    everything = model.run_graph([image])
    assert list(everything) == list(model.GRAPH_OUTPUTS)
    fpn_p2 = model.keras_model.backbone.get_layer("fpn_p2")
    out = model.run_graph([image], [("rois", "ROI"), ("probs", "mrcnn_class"), ("p2", fpn_p2.output),
                                    "light_stem_conv", ("dets", "mrcnn_detection")])
    assert list(out) == ["rois", "probs", "p2", "light_stem_conv", "dets"]
    np.testing.assert_array_equal(out["rois"], everything["proposals"])
    np.testing.assert_array_equal(out["probs"], everything["mrcnn_class"])
    np.testing.assert_array_equal(out["dets"], everything["detections"])
    np.testing.assert_allclose(out["p2"], everything["features"][0], atol=1e-5)
    assert out["light_stem_conv"].shape[1:3] == (64, 64)
    with pytest.raises(ValueError, match="unknown output 'pre_nms_anchors'"):
        model.run_graph([image], [("pre_nms_anchors", None)])


def test_find_last_skips_a_newer_run_without_checkpoints_and_says_so(tmp_path, caplog):
    os.makedirs(tmp_path / "tiny20240101T0000")
    (tmp_path / "tiny20240101T0000" / "mask_rcnn_tiny_0003.h5").write_bytes(b"")
    os.makedirs(tmp_path / "tiny20250101T0000")
    model = modellib.MaskRCNN.__new__(modellib.MaskRCNN)
    model.config, model.model_dir = TinyConfig(), str(tmp_path)
    with caplog.at_level(logging.WARNING, logger="mrcnn.model"):
        assert model.find_last() == str(tmp_path / "tiny20240101T0000" / "mask_rcnn_tiny_0003.h5")
    assert "tiny20250101T0000" in caplog.text


def test_draw_boxes_puts_captions_on_refined_boxes_at_any_visibility():
    image = np.zeros((64, 64, 3), np.uint8)
    boxes = np.array([[5, 5, 20, 20], [30, 30, 50, 60]])
    ax = visualize.draw_boxes(image, boxes=boxes, refined_boxes=boxes + 2, captions=["a", "b"],
                              visibilities=[0, 0])
    assert [t.get_position() for t in ax.texts] == [(7, 7), (32, 32)]
