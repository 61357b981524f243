"""Model-level tests: matterport weight files, checkpoints and resuming, saving/exporting, detect()."""

from __future__ import annotations

import os

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn import model as modellib
from mrcnn import weights as weightslib
from mrcnn import winograd
from mrcnn.config import Config
from samples.shapes import ShapesConfig, ShapesDataset
from tests.h5_layout import layout_totals, matterport_layout, weighted_groups, write_matterport_h5

HEADS = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]


class CocoLikeConfig(Config):
    NAME = "coco_like"
    NUM_CLASSES = 81
    IMAGES_PER_GPU = 1
    IMAGE_MIN_DIM = 256
    IMAGE_MAX_DIM = 256


def _leaf_values(model) -> dict[str, list[np.ndarray]]:
    """Layer name -> variable values, for every layer that owns variables (rpn_model as one group)."""
    out = {}

    def walk(container):
        for layer in container.layers:
            if layer.name == "rpn_model":
                out["rpn_model"] = [v.numpy() for v in layer.weights]
            elif hasattr(layer, "layers") and layer.layers:
                walk(layer)
            elif layer.weights:
                out[layer.name] = [v.numpy() for v in layer.weights]

    walk(model)
    return out


@pytest.fixture(scope="module")
def coco_file(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("h5") / "mask_rcnn_coco.h5")
    layout = matterport_layout("resnet101", 81)
    values = write_matterport_h5(path, layout, np.random.default_rng(0))
    return path, layout, values


def _expected(layout, values):
    """Group name -> list of arrays in the group's weight order."""
    expected = {}
    for group, weights in weighted_groups(layout):
        expected[group] = [values[f"{group}/{name}"] for name, _ in weights]
    return expected


def test_matterport_file_has_the_documented_size(coco_file):
    _, layout, _ = coco_file
    groups, datasets, count = layout_totals(layout)
    assert (groups, datasets, count) == (233, 690, 64_158_584)


def test_resnet101_coco_file_loads_every_layer_by_name(coco_file):
    path, layout, values = coco_file
    model = modellib.MaskRCNN("inference", CocoLikeConfig(), model_dir="unused")
    report = model.load_weights(path, by_name=True)
    assert len(report.loaded) == 233
    assert not report.model_only and not report.mismatched
    expected = _expected(layout, values)
    got = _leaf_values(model.keras_model)
    assert set(expected) == set(got)
    total = 0
    for name, arrays in expected.items():
        assert len(arrays) == len(got[name]), name
        for want, have in zip(arrays, got[name]):
            np.testing.assert_array_equal(have, want.astype(have.dtype), err_msg=name)
            total += want.size
    assert total == 64_158_584


def test_coco_file_into_two_classes_with_heads_excluded(coco_file):
    path, layout, values = coco_file
    config = CocoLikeConfig()
    config.NUM_CLASSES = 2
    config.__init__()
    model = modellib.MaskRCNN("inference", config, model_dir="unused")
    heads_before = {n: [w.copy() for w in ws] for n, ws in _leaf_values(model.keras_model).items() if n in HEADS}
    report = model.load_weights(path, by_name=True, exclude=HEADS)
    expected = _expected(layout, values)
    got = _leaf_values(model.keras_model)
    for name, arrays in expected.items():
        if name in HEADS:
            # Freshly initialised, shaped for 2 classes, untouched by the file.
            for before, have in zip(heads_before[name], got[name]):
                np.testing.assert_array_equal(before, have)
            continue
        for want, have in zip(arrays, got[name]):
            np.testing.assert_array_equal(have, want.astype(have.dtype), err_msg=name)
    assert got["mrcnn_class_logits"][0].shape == (1024, 2)
    assert got["mrcnn_bbox_fc"][0].shape == (1024, 8)
    assert got["mrcnn_mask"][0].shape == (1, 1, 256, 2)
    assert set(report.excluded) >= {"mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"}


def test_coco_file_into_two_classes_without_exclude_names_the_heads(coco_file):
    path, _, _ = coco_file
    config = CocoLikeConfig()
    config.NUM_CLASSES = 2
    config.__init__()
    model = modellib.MaskRCNN("inference", config, model_dir="unused")
    with pytest.raises(weightslib.WeightsMismatchError, match="mrcnn_class_logits"):
        model.load_weights(path, by_name=True)


def test_resnet50_loading_resnet101_file_reports_skipped_blocks(coco_file):
    path, _, _ = coco_file
    config = CocoLikeConfig()
    config.BACKBONE = "resnet50"
    model = modellib.MaskRCNN("inference", config, model_dir="unused")
    report = model.load_weights(path, by_name=True)
    skipped = set(report.file_only)
    assert "res4g_branch2a" in skipped and "res4w_branch2c" in skipped
    assert "res4f_branch2a" in report.loaded


# --------------------------------------------------------------------------------------------------------
# Training: checkpoints, resuming.


class TinyShapesConfig(ShapesConfig):
    NAME = "tiny"
    IMAGES_PER_GPU = 2
    STEPS_PER_EPOCH = 2
    VALIDATION_STEPS = 1
    DATA_WORKERS = 1


def _shapes(count, seed):
    ds = ShapesDataset()
    ds.load_shapes(count, 128, 128, seed=seed)
    ds.prepare()
    return ds


def test_checkpoint_is_written_each_epoch_and_training_resumes(tmp_path):
    config = TinyShapesConfig()
    train, val = _shapes(6, 1), _shapes(2, 2)
    model = modellib.MaskRCNN("training", config, model_dir=str(tmp_path))
    model.train(train, val, learning_rate=0.01, epochs=1, layers="all")
    last = model.find_last()
    assert os.path.basename(last) == "mask_rcnn_tiny_0001.h5"
    run_dir = os.path.dirname(last)
    assert any(f.startswith("events.out.tfevents") or os.path.isdir(os.path.join(run_dir, f))
               for f in os.listdir(run_dir)), "TensorBoard logs missing"
    with h5py.File(last, "r") as f:
        assert "rpn_model" in f and "mrcnn_mask_conv1" in f

    resumed = modellib.MaskRCNN("training", config, model_dir=str(tmp_path))
    resumed.load_weights(resumed.find_last(), by_name=True)
    assert resumed.epoch == 1
    assert resumed.log_dir == run_dir
    for a, b in zip(model.keras_model.weights, resumed.keras_model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    first_mtime = os.path.getmtime(last)
    resumed.train(train, val, learning_rate=0.01, epochs=2, layers="heads")
    assert os.path.basename(resumed.find_last()) == "mask_rcnn_tiny_0002.h5"
    assert os.path.dirname(resumed.find_last()) == run_dir
    assert os.path.getmtime(last) == first_mtime
    assert resumed.epoch == 2


def test_an_unreadable_image_during_training_raises_the_data_error_that_names_it(tmp_path):
    from mrcnn.dataset import ImageReadError

    train = _shapes(4, 1)
    load, calls = train.load_image, []

    def broken_after_the_first_epoch(image_id):
        # From the second epoch on, Keras reads the batches through tf.data, which wraps a loader's exception in
        # a TensorFlow error whose message is the whole traceback.
        calls.append(image_id)
        if len(calls) > 4:  # 2 steps of 2 images (the workers may read ahead into the second epoch)
            raise ImageReadError(f"shape_{image_id}.png: not a readable image")
        return load(image_id)

    train.load_image = broken_after_the_first_epoch
    model = modellib.MaskRCNN("training", TinyShapesConfig(), model_dir=str(tmp_path))
    with pytest.raises(ImageReadError, match=r"^shape_\d\.png: not a readable image$"):
        model.train(train, None, learning_rate=0.01, epochs=2, layers="heads", verbose=0)


def test_layer_presets_freeze_the_backbone(tmp_path):
    model = modellib.MaskRCNN("training", TinyShapesConfig(), model_dir=str(tmp_path))
    model.set_trainable(modellib.LAYER_PRESETS["heads"], verbose=0)
    trainable = {v.path.split("/")[-2] for v in model.keras_model.trainable_variables}
    assert "fpn_p2" in trainable and "mrcnn_mask" in trainable and "rpn_conv_shared" in trainable
    assert not any(name.startswith("light") for name in trainable)
    model.set_trainable(modellib.LAYER_PRESETS["4+"], verbose=0)
    trainable = {v.path.split("/")[-2] for v in model.keras_model.trainable_variables}
    assert any(name.startswith("light4") for name in trainable)
    assert not any(name.startswith("light3") for name in trainable)


# --------------------------------------------------------------------------------------------------------
# Inference: detect, save / load, export.


class TinyInferenceConfig(ShapesConfig):
    NAME = "tiny"
    IMAGES_PER_GPU = 1
    DETECTION_MIN_CONFIDENCE = 0.0  # An untrained model still returns detections.


@pytest.fixture(scope="module")
def inference_model():
    keras.utils.set_random_seed(3)
    return modellib.MaskRCNN("inference", TinyInferenceConfig(), model_dir="unused")


def test_detect_returns_results_at_the_original_size(inference_model):
    image = np.random.default_rng(0).integers(0, 255, (90, 200, 3), dtype=np.uint8)
    r = inference_model.detect([image])[0]
    n = len(r["class_ids"])
    assert n > 0
    assert r["masks"].shape == (90, 200, n) and r["masks"].dtype == bool
    assert r["rois"].shape == (n, 4)
    assert (r["rois"][:, 0] >= 0).all() and (r["rois"][:, 2] <= 90).all() and (r["rois"][:, 3] <= 200).all()
    assert np.all(np.diff(r["scores"]) <= 0)
    np.testing.assert_allclose(r["class_probs"].sum(axis=1), 1.0, atol=1e-5)
    # Each mask lies inside its box.
    for i in range(n):
        y1, x1, y2, x2 = r["rois"][i]
        outside = r["masks"][:, :, i].copy()
        outside[y1:y2, x1:x2] = False
        assert not outside.any()


def test_saved_model_round_trip_gives_the_same_detections(inference_model, tmp_path):
    image = ShapesDataset.draw_shape(np.full((128, 128, 3), 40, np.uint8), "circle", (64, 64, 30), (200, 10, 10))
    before = inference_model.detect([image])[0]
    path = str(tmp_path / "model.keras")
    inference_model.save(path)
    restored = modellib.MaskRCNN("inference", TinyInferenceConfig(), model_dir="unused")
    restored.keras_model = keras.models.load_model(path)
    after = restored.detect([image])[0]
    np.testing.assert_array_equal(before["class_ids"], after["class_ids"])
    np.testing.assert_allclose(before["scores"], after["scores"], atol=1e-6)
    np.testing.assert_array_equal(before["rois"], after["rois"])
    np.testing.assert_array_equal(before["masks"], after["masks"])


def test_failed_save_keeps_the_earlier_file(inference_model, tmp_path, monkeypatch):
    path = tmp_path / "model.keras"
    path.write_bytes(b"an earlier model")

    def broken_save(filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"PK half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(inference_model.keras_model, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        inference_model.save(str(path))
    assert path.read_bytes() == b"an earlier model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]
    with pytest.raises(ValueError, match=r"model\.h5: a whole model is saved as a \.keras file"):
        inference_model.save(str(tmp_path / "model.h5"))


def test_export_serves_the_same_outputs(inference_model, tmp_path):
    path = str(tmp_path / "exported")
    inference_model.export(path)
    served = tf.saved_model.load(path)
    molded, metas, _ = inference_model.mold_inputs([np.full((128, 128, 3), 90, np.uint8)])
    inputs = {"input_image": tf.constant(molded), "input_image_meta": tf.constant(metas)}
    want = inference_model.run_inference(molded, metas)
    got = served.serve(inputs)
    for key in ("detections", "masks", "class_probs"):
        np.testing.assert_allclose(got[key].numpy(), want[key], atol=1e-5)


@pytest.mark.parametrize("precision, dtype, optimizer", [
    (True, "float16", "LossScaleOptimizer"),  # float16 needs loss scaling against underflowing gradients
    ("bfloat16", "bfloat16", "SGD")])         # bfloat16 has float32's exponent range: no loss scaling
def test_mixed_precision_trains_and_detects(tmp_path, precision, dtype, optimizer):
    config = TinyShapesConfig()
    config.MIXED_PRECISION = precision
    model = modellib.MaskRCNN("training", config, model_dir=str(tmp_path))
    assert model.keras_model.backbone.compute_dtype == dtype
    assert all(v.dtype == "float32" for v in model.keras_model.weights)
    assert keras.mixed_precision.global_policy().name == "float32"  # building leaves the global policy alone
    history = model.train(_shapes(4, 1), None, learning_rate=0.01, epochs=1, layers="all", verbose=0)
    assert type(model.keras_model.optimizer).__name__ == optimizer
    assert all(np.isfinite(v[-1]) for v in history.history.values())
    inference_config = TinyInferenceConfig()
    inference_config.MIXED_PRECISION = precision
    inference = modellib.MaskRCNN("inference", inference_config, model_dir=str(tmp_path))
    inference.load_weights(model.find_last(), by_name=True)
    r = inference.detect([np.full((100, 120, 3), 120, np.uint8)])[0]
    assert r["masks"].shape[:2] == (100, 120)
    assert np.all(np.isfinite(r["scores"]))


@pytest.mark.parametrize("value, policy", [
    (False, "float32"), (None, "float32"), ("float32", "float32"), (True, "mixed_float16"),
    ("float16", "mixed_float16"), ("bfloat16", "mixed_bfloat16"), ("Mixed_BFloat16", "mixed_bfloat16")])
def test_precision_values(value, policy):
    assert modellib.precision_policy(value) == policy


@pytest.mark.parametrize("value", ["half", 1.0, "int8"])
def test_unknown_precision_is_refused(value):
    with pytest.raises(ValueError, match="MIXED_PRECISION"):
        modellib.precision_policy(value)


def test_find_last_matches_the_config_name_exactly(tmp_path):
    for run, epochs in (("tiny20240101T0000", [1, 2]), ("tiny_large20250101T0000", [1]), ("tinyfoo", [3])):
        os.makedirs(tmp_path / run)
        for e in epochs:
            (tmp_path / run / f"mask_rcnn_{run[:-13] if run[-13:-5].isdigit() else run}_{e:04d}.h5").write_bytes(b"")
    model = modellib.MaskRCNN("inference", TinyInferenceConfig(), model_dir=str(tmp_path))
    assert model.find_last() == str(tmp_path / "tiny20240101T0000" / "mask_rcnn_tiny_0002.h5")


def test_jit_compile_trains_and_matches_the_plain_backbone(tmp_path):
    config = TinyShapesConfig()
    config.JIT_COMPILE = True
    model = modellib.MaskRCNN("training", config, model_dir=str(tmp_path))
    history = model.train(_shapes(4, 1), None, learning_rate=0.01, epochs=1, layers="all", verbose=0)
    assert all(np.isfinite(v[-1]) for v in history.history.values())
    plain_config, xla_config = TinyInferenceConfig(), TinyInferenceConfig()
    xla_config.JIT_COMPILE = True
    plain = modellib.MaskRCNN("inference", plain_config, model_dir=str(tmp_path))
    xla = modellib.MaskRCNN("inference", xla_config, model_dir=str(tmp_path))
    plain.load_weights(model.find_last(), by_name=True)
    xla.load_weights(model.find_last(), by_name=True)
    molded, metas, _ = plain.mold_inputs([_shapes(1, 5).load_image(0)])
    # XLA compiles the backbone + FPN: its feature maps equal the plain ones to float32 rounding.
    images = tf.constant(molded)
    for a, b in zip(plain.keras_model.features(images), xla.keras_model.features(images)):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-4 * float(tf.reduce_max(tf.abs(a))))
    # Detections too, except that rounding can flip an NMS decision on a pair of boxes at the IoU threshold
    # (one detection more or less): most detections are the same boxes with the same scores.
    want = plain.run_inference(molded, metas)["detections"][0]
    got = xla.run_inference(molded, metas)["detections"][0]
    want, got = want[want[:, 4] > 0], got[got[:, 4] > 0]
    same = sum(np.abs(got - row).max(axis=1).min() < 1e-3 for row in want) if len(got) else 0
    assert same >= len(want) - 1 and abs(len(got) - len(want)) <= 1


def test_fit_mode_molds_the_square_pixels_without_the_padding(inference_model, tmp_path):
    from mrcnn.data import load_image_gt

    path = str(tmp_path / "weights.h5")
    weightslib.save_weights(inference_model.keras_model, path)
    config = TinyInferenceConfig()
    config.IMAGE_RESIZE_MODE = "fit"
    fit = modellib.MaskRCNN("inference", config, model_dir=str(tmp_path))
    fit.load_weights(path)
    image = np.random.default_rng(5).integers(0, 255, (90, 200, 3), dtype=np.uint8)
    # Scale 128 / 200 -> 58 x 128: rows padded to 64 (3 + 3) instead of to 128 (35 + 35).
    molded, metas, windows = fit.mold_inputs([image])
    square, square_metas, _ = inference_model.mold_inputs([image])
    assert molded.shape == (1, 64, 128, 3) and square.shape == (1, 128, 128, 3)
    np.testing.assert_array_equal(molded[0], square[0, 32:96])
    assert metas[0, 11] == square_metas[0, 11]  # the same scale
    assert tuple(windows[0]) == (3, 0, 61, 128)
    tall = np.ascontiguousarray(np.transpose(image, (1, 0, 2)))
    r_wide, r_tall = fit.detect([image, tall])
    assert r_wide["masks"].shape[:2] == (90, 200) and r_tall["masks"].shape[:2] == (200, 90)
    assert len(r_wide["class_ids"]) > 0 and len(r_tall["class_ids"]) > 0
    # Training batches need one size: "fit" molds them as "square", which scales the same way.
    train_config = TinyShapesConfig()
    train_config.IMAGE_RESIZE_MODE = "fit"
    wide = ShapesDataset()
    wide.load_shapes(1, 128, 256, seed=4)  # scale 0.5: "fit" alone would mold it to 64 x 128
    wide.prepare()
    gt_image, gt_meta = load_image_gt(wide, train_config, 0)[:2]
    assert gt_image.shape == (128, 128, 3)


def test_pad64_detects_at_each_molded_size_like_a_model_built_for_it(inference_model, tmp_path):
    from mrcnn.network import MaskRCNNModel, model_kwargs

    path = str(tmp_path / "weights.h5")
    weightslib.save_weights(inference_model.keras_model, path)
    config = TinyInferenceConfig()
    config.IMAGE_RESIZE_MODE = "pad64"
    config.IMAGE_MIN_DIM = 128
    pad64 = modellib.MaskRCNN("inference", config, model_dir=str(tmp_path))
    pad64.load_weights(path)
    wide = _shapes(1, 8).load_image(0)
    wide = np.concatenate([wide, wide[:, :60]], axis=1)  # 128 x 188 -> molded 128 x 192, no resize
    tall = np.ascontiguousarray(np.transpose(wide, (1, 0, 2)))  # 188 x 128 -> molded 192 x 128
    molded, metas, _ = pad64.mold_inputs([wide])
    assert molded.shape == (1, 128, 192, 3)
    # The same graph built for a 128 x 192 input (its own anchors, RoIAlign levels and window).
    kwargs = model_kwargs(config)
    kwargs["image_shape"] = [128, 192, 3]
    fixed = MaskRCNNModel(**kwargs)
    weightslib.load_weights(fixed, path, by_name=False)
    want = {k: v.numpy() for k, v in fixed({"input_image": tf.constant(molded),
                                            "input_image_meta": tf.constant(metas)}).items()}
    got = pad64.run_inference(molded, metas)
    assert np.sum(want["detections"][0, :, 4] > 0) > 0
    for key in ("detections", "class_probs", "masks"):
        np.testing.assert_allclose(got[key], want[key], atol=1e-4)
    # detect() on images of two shapes runs one batch per molded size, each result at its own size.
    r_wide, r_tall = pad64.detect([wide, tall])
    assert r_wide["masks"].shape[:2] == (128, 188) and r_tall["masks"].shape[:2] == (188, 128)
    assert len(r_wide["class_ids"]) == np.sum(want["detections"][0, :, 4] > 0)
    with pytest.raises(ValueError, match="different sizes"):
        pad64.mold_inputs([wide, tall])


class WinogradConfig(ShapesConfig):
    NAME = "winograd"
    IMAGES_PER_GPU = 1
    IMAGE_MIN_DIM = IMAGE_MAX_DIM = 256  # P2 is 64 x 64
    TOP_DOWN_PYRAMID_SIZE = RPN_HEAD_DEPTH = MASK_HEAD_DEPTH = 256  # wide enough for Winograd (winograd.suits)
    DETECTION_MIN_CONFIDENCE = 0.0


def _xla_functions(graph_def) -> list[str]:
    return [f.signature.name for f in graph_def.library.function
            if "_XlaMustCompile" in f.attr and f.attr["_XlaMustCompile"].b]


def test_winograd_model_matches_direct_convolutions_and_exports_without_it(tmp_path):
    keras.utils.set_random_seed(21)
    fast = modellib.MaskRCNN("inference", WinogradConfig(), model_dir="unused")
    config = WinogradConfig()
    config.WINOGRAD = False
    direct = modellib.MaskRCNN("inference", config, model_dir="unused")
    direct.keras_model.set_weights(fast.keras_model.get_weights())
    km = fast.keras_model
    assert km.winograd and not direct.keras_model.winograd
    assert km.backbone.get_layer("fpn_p2").uses_winograd((1, 64, 64, 256))
    assert km.rpn.get_layer("rpn_conv_shared").uses_winograd((1, 64, 64, 256))

    image = ShapesDataset.draw_shape(np.full((256, 256, 3), 40, np.uint8), "circle", (120, 100, 50), (200, 10, 10))
    names = ["features", "rpn_class", "rpn_bbox"]
    want, got = direct.run_graph([image], names), fast.run_graph([image], names)
    for a, b in zip(got["features"], want["features"]):
        np.testing.assert_allclose(a, b, atol=1e-4 * np.abs(b).max())
    for name in names[1:]:
        np.testing.assert_allclose(got[name], want[name], atol=1e-4 * np.abs(want[name]).max())
    # The mask head on a batch of ROIs known at run time only: a chunk by Winograd, the rest direct.
    assert km.mask_head.get_layer("mrcnn_mask_conv1").uses_winograd((None, 14, 14, 256))
    pooled = tf.constant(np.random.default_rng(22).normal(size=(winograd.CHUNK + 5, 14, 14, 256)), tf.float32)
    masks = [tf.function(lambda t, m=m: m.mask_head(t, training=False),
                         input_signature=[tf.TensorSpec([None, 14, 14, 256])])(pooled).numpy()
             for m in (km, direct.keras_model)]
    np.testing.assert_allclose(masks[0], masks[1], atol=1e-4 * np.abs(masks[1]).max())

    # The inference graph calls the XLA-compiled transforms; the exported one has none, and serves the same
    # outputs as the direct convolutions.
    assert _xla_functions(fast._inference_fn().get_concrete_function().graph.as_graph_def())
    path = str(tmp_path / "exported")
    fast.export(path)
    assert km.backbone.get_layer("fpn_p2").winograd  # restored after the export
    served = tf.saved_model.load(path)
    assert not _xla_functions(served.signatures["serve"].graph.as_graph_def())
    molded, metas, _ = fast.mold_inputs([image])
    out = served.serve({"input_image": tf.constant(molded), "input_image_meta": tf.constant(metas)})
    reference = direct.run_inference(molded, metas)
    for key in ("detections", "class_probs", "masks"):
        np.testing.assert_allclose(out[key].numpy(), reference[key], atol=1e-5)


@pytest.mark.parametrize("height, width", [(100, 128), (128, 96), (0, 0), (-64, 64)])
def test_an_image_size_the_pyramid_cannot_take_is_refused_before_building(height, width):
    from mrcnn.config import check_image_size

    with pytest.raises(ValueError, match=rf"Image size must be a multiple of 64 on both sides .*got {height}x{width}"):
        check_image_size(height, width)
    check_image_size(64, 1024)  # No error.
    config = TinyInferenceConfig()
    config.IMAGE_SHAPE = np.array([height, width, 3])
    with pytest.raises(ValueError, match=rf"IMAGE_SHAPE must be a multiple of 64 .*got {height}x{width}: set IMAGE_MAX"):
        modellib.MaskRCNN("inference", config, model_dir="logs")
