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


# ------------------------------------------------------------------------------------------------------------
# build_rpn_targets, the trainable layers, ancestor, the weight statistics (samples/coco/inspect_weights.ipynb).


class FewAnchorsConfig(TinyConfig):
    RPN_TRAIN_ANCHORS_PER_IMAGE = 8


def test_build_rpn_targets_hand_values():
    # 64 x 64 image, one box (10, 10, 30, 30). Anchors: the box itself (IoU 1), shifted 2 px right (IoU 0.81),
    # far away (IoU 0: negative), 10 px right (IoU 0.31: neutral, between 0.3 and 0.7).
    anchors = np.array([[10, 10, 30, 30], [10, 12, 30, 32], [40, 40, 60, 60], [10, 20, 30, 40]], np.float32)
    match, bbox = modellib.build_rpn_targets((64, 64, 3), anchors, np.array([1]), np.array([[10, 10, 30, 30]]),
                                             FewAnchorsConfig())
    assert match.dtype == np.int32 and match.tolist() == [1, 1, -1, 0]
    assert bbox.shape == (8, 4) and bbox.dtype == np.float32
    # Boxes in the normalised frame the train step uses: (y1, x1, y2 - 1, x2 - 1) / 63, so both boxes are 19 wide
    # and their centres 2 apart: dx = -2 / 19, divided by RPN_BBOX_STD_DEV 0.1; dy = log(dh) = log(dw) = 0.
    np.testing.assert_allclose(bbox[:2], [[0, 0, 0, 0], [0, -2 / 19 / 0.1, 0, 0]], atol=1e-5)
    assert not bbox[2:].any()

    # A crowd box (negative class id) over the far anchor: it is no longer a negative.
    match, _ = modellib.build_rpn_targets((64, 64), anchors, np.array([1, -1]),
                                          np.array([[10, 10, 30, 30], [40, 40, 60, 60]]), FewAnchorsConfig())
    assert match.tolist() == [1, 1, 0, 0]
    # No instance: the sampled anchors are all negatives, none positive.
    match, bbox = modellib.build_rpn_targets((64, 64), anchors, np.zeros([0], int), np.zeros([0, 4]),
                                             FewAnchorsConfig())
    assert match.tolist() == [-1, -1, -1, -1] and not bbox.any()
    with pytest.raises(ValueError, match="2 class ids but 1 boxes"):
        modellib.build_rpn_targets((64, 64), anchors, np.array([1, 1]), np.array([[10, 10, 30, 30]]),
                                   FewAnchorsConfig())


def test_build_rpn_targets_with_the_models_anchors(model):
    ds = _shapes(1, seed=5)
    config = model.config
    _, _, class_ids, boxes, _ = load_image_gt(ds, config, ds.image_ids[0])
    anchors = model.get_anchors()
    match, bbox = modellib.build_rpn_targets(config.IMAGE_SHAPE, anchors, class_ids, boxes, config)
    assert match.shape == (len(anchors),)
    positives = int((match == 1).sum())
    # Every box has its best anchor; at most half of the sampled anchors are positive, all of them sampled.
    assert len(class_ids) <= positives <= config.RPN_TRAIN_ANCHORS_PER_IMAGE // 2
    assert int((match != 0).sum()) == config.RPN_TRAIN_ANCHORS_PER_IMAGE
    assert np.abs(bbox[:positives]).sum() > 0 and not bbox[positives:].any()


def test_trainable_layers_cover_every_weight_once(model):
    layers = model.get_trainable_layers()
    names = [layer.name for layer in layers]
    assert len(names) == len(set(names))
    assert {"light_stem_conv", "fpn_p2", "rpn_conv_shared", "mrcnn_class_logits", "mrcnn_mask"} <= set(names)
    assert all(layer.weights and not getattr(layer, "layers", None) for layer in layers)
    listed = [id(v) for layer in layers for v in layer.weights]
    assert sorted(listed) == sorted(id(v) for v in model.keras_model.weights)


def test_find_trainable_layer_unwraps_time_distributed(model):
    dense = keras.layers.Dense(3)
    wrapped = keras.layers.TimeDistributed(keras.layers.TimeDistributed(dense))
    assert model.find_trainable_layer(wrapped) is dense
    assert model.find_trainable_layer(dense) is dense


def test_ancestor_searches_the_functional_graph(model):
    backbone = model.keras_model.backbone
    p2 = backbone.get_layer("fpn_p2").output
    found = model.ancestor(p2, "fpn_c2p2")
    assert found is backbone.get_layer("fpn_c2p2").output
    deep = model.ancestor(p2, "light_stem_conv:0")  # matterport's tensor names end in :0
    assert deep is not None and deep._keras_history.operation.name == "light_stem_conv"
    assert model.ancestor(p2, r"fpn_c\dp\d") is not None  # a regular expression, matched in full
    assert model.ancestor(p2, "fpn_p3") is None  # a sibling, not upstream
    assert model.ancestor(p2, "ROI/pre_nms_anchors:0") is None  # TensorFlow 1 operations do not exist in Keras 3


def test_display_weight_stats_lists_every_weight_and_flags_dead_and_overflow(model, capsys):
    conv = model.keras_model.backbone.get_layer("fpn_c2p2")
    dense = next(layer for layer in model.get_trainable_layers() if layer.name == "mrcnn_class_logits")
    saved = conv.get_weights(), dense.get_weights()
    try:
        kernel, bias = saved[0]
        conv.set_weights([np.zeros_like(kernel), np.zeros_like(bias)])  # kernel dead; a zero bias is normal
        d_kernel, d_bias = saved[1]
        d_kernel = d_kernel.copy()
        d_kernel[0, 0] = 5000.0
        dense.set_weights([d_kernel, d_bias])
        table = visualize.display_weight_stats(model)
    finally:
        conv.set_weights(saved[0])
        dense.set_weights(saved[1])
    assert table[0] == ["WEIGHT NAME", "SHAPE", "MIN", "MAX", "STD"]
    assert len(table) == 1 + len(model.keras_model.weights)
    rows = {row[0].split("  ")[0]: row for row in table[1:]}
    assert "dead?" in rows["fpn_c2p2/kernel"][0] and "dead?" not in rows["fpn_c2p2/bias"][0]
    assert "Overflow?" in rows["mrcnn_class_logits/kernel"][0]
    assert rows["fpn_c2p2/kernel"][1] == str(kernel.shape) and float(rows["fpn_c2p2/kernel"][3]) == 0.0
    assert float(rows["mrcnn_class_logits/kernel"][3]) == 5000.0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["WEIGHT", "NAME", "SHAPE", "MIN", "MAX", "STD"] and set(out[1]) <= {"-", " "}
    assert len(out) == len(table) + 1 and "<span" not in "\n".join(out)


def test_display_table_prints_aligned_text(capsys):
    text = visualize.display_table([["A", "BB"], ["long value", 1], ["x<span style='color:red'> !</span>", 2.5]])
    assert text.splitlines() == ["A           BB", "----------  ---", "long value  1", "x !         2.5"]
    assert capsys.readouterr().out == text + "\n"


def test_inspect_weights_notebook_runs_cell_by_cell(tmp_path, capsys):
    """The cells of samples/coco/inspect_weights.ipynb, with a small weight file saved here instead of COCO's."""
    import matplotlib.pyplot as plt
    import tensorflow as tf

    from mrcnn import weights as weightslib
    from mrcnn.model import log  # noqa: F401  (the notebook's first cell imports it)

    keras.utils.set_random_seed(11)
    weights_path = str(tmp_path / "mask_rcnn_shapes.h5")
    weightslib.save_weights(modellib.MaskRCNN("inference", TinyConfig(), str(tmp_path)).keras_model, weights_path)

    # Configurations; Notebook Preferences.
    config = TinyConfig()
    DEVICE = "/cpu:0"

    def get_ax(rows=1, cols=1, size=16):
        _, ax = plt.subplots(rows, cols, figsize=(size * cols, size * rows))
        return ax

    # Load Model.
    with tf.device(DEVICE):
        model = modellib.MaskRCNN(mode="inference", model_dir=str(tmp_path), config=config)
    print("Loading weights ", weights_path)
    model.load_weights(weights_path, by_name=True)

    # Review Weight Stats.
    visualize.display_weight_stats(model)
    assert "conv1/kernel" in capsys.readouterr().out  # light_stem's and the heads' kernels listed

    # Histograms of Weights.
    LAYER_TYPES = ['Conv2D', 'Dense', 'Conv2DTranspose']
    layers = model.get_trainable_layers()
    layers = list(filter(lambda l: l.__class__.__name__ in LAYER_TYPES, layers))  # noqa: E741
    assert len(layers) > 10
    fig, ax = plt.subplots(len(layers), 2, figsize=(10, 3 * len(layers)), gridspec_kw={"hspace": 1})
    try:
        for l, layer in enumerate(layers):  # noqa: E741
            weights = layer.get_weights()
            for w, weight in enumerate(weights):
                tensor = layer.weights[w]
                ax[l, w].set_title(tensor.name)
                _ = ax[l, w].hist(weight[w].flatten(), 50)
        assert ax[0, 0].get_title() == "kernel" and len(ax[0, 0].patches) == 50
    finally:
        plt.close(fig)
    plt.close("all")
    assert get_ax is not None


def test_training_survives_the_np_bool_shim(tmp_path, monkeypatch):
    """Old matterport scripts set `np.bool = bool` (NumPy 2 removed np.bool); the masks of a batch are then
    named "bool8", which Keras refused. The training batches carry 0/1 uint8 masks."""
    from mrcnn.data import MaskRCNNSequence
    from tests.test_model import TinyShapesConfig

    class OneStepConfig(TinyShapesConfig):
        IMAGES_PER_GPU = 1
        STEPS_PER_EPOCH = 1

    monkeypatch.setattr(np, "bool", bool, raising=False)  # undone after the test
    config = OneStepConfig()
    train = _shapes(2, seed=7)
    batch = MaskRCNNSequence(train, config, shuffle=False, steps=1)[0]
    assert batch["input_gt_masks"].dtype == np.uint8 and set(np.unique(batch["input_gt_masks"])) == {0, 1}
    model = modellib.MaskRCNN("training", config, model_dir=str(tmp_path))
    history = model.train(train, None, learning_rate=0.01, epochs=1, layers="heads", verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert os.path.isfile(model.checkpoint_path.format(epoch=1))
