"""Tests for mrcnn/weights.py: matterport / Keras-2 .h5 files into Keras 3 models and back.

The models here are small but use matterport's layer names, and the files are written in matterport's layout by
tests/h5_layout.py (random values), so every loaded value can be traced back to the group it came from.
"""

from __future__ import annotations

import logging
import os
import pathlib
import urllib.request

import h5py
import keras
import numpy as np
import pytest
from keras import layers

from mrcnn import weights as W
from mrcnn.weights import (LoadReport, WeightsDownloadError, WeightsFileError, WeightsMismatchError,
                           download_trained_weights, epoch_from_checkpoint_name, get_imagenet_weights,
                           load_weights, save_weights)
from tests.h5_layout import layout_totals, matterport_layout, weighted_groups, write_matterport_h5

ANCHORS = 3  # anchors per location
FEAT = 8  # backbone channels
RPN_DEPTH = 6  # rpn_conv_shared channels (512 in matterport)
MASK_DEPTH = 5  # mask head channels (256 in matterport)


def build_rpn_model() -> keras.Model:
    feature_map = keras.Input((None, None, FEAT), name="input_rpn_feature_map")
    shared = layers.Conv2D(RPN_DEPTH, 3, padding="same", activation="relu", name="rpn_conv_shared")(feature_map)
    logits = layers.Conv2D(2 * ANCHORS, 1, name="rpn_class_raw")(shared)
    deltas = layers.Conv2D(4 * ANCHORS, 1, name="rpn_bbox_pred")(shared)
    return keras.Model(feature_map, [logits, deltas], name="rpn_model")


def build_mask_head(num_classes: int) -> keras.Model:
    """A head built as its own model, as in the port: its layers must match matterport's flat groups."""
    x_in = keras.Input((4, 4, FEAT), name="input_mask_pooled_rois")
    x = layers.Conv2DTranspose(MASK_DEPTH, 2, strides=2, activation="relu", name="mrcnn_mask_deconv")(x_in)
    x = layers.Conv2D(num_classes, 1, name="mrcnn_mask")(x)
    return keras.Model(x_in, x, name="mrcnn_mask_head")


def build_model(num_classes: int = 4) -> keras.Model:
    image = keras.Input((8, 8, 3), name="input_image")
    x = layers.Conv2D(FEAT, 3, padding="same", name="conv1")(image)
    x = layers.BatchNormalization(name="bn_conv1")(x)
    x = layers.Activation("relu")(x)
    rpn_logits, rpn_deltas = build_rpn_model()(x)
    pooled = layers.GlobalAveragePooling2D(name="pool_squeeze")(x)
    logits = layers.Dense(num_classes, name="mrcnn_class_logits")(pooled)
    # matterport's heads were TimeDistributed wrappers, stored under the wrapper's name.
    rois = layers.Reshape((1, FEAT), name="roi_reshape")(pooled)
    bbox = layers.TimeDistributed(layers.Dense(4 * num_classes), name="mrcnn_bbox_fc")(rois)
    mask = build_mask_head(num_classes)(layers.MaxPooling2D(2, name="roi_align_mask")(x))
    return keras.Model(image, [rpn_logits, rpn_deltas, logits, bbox, mask], name="mask_rcnn")


def small_layout(num_classes: int = 4):
    """The groups of build_model(num_classes) exactly as matterport would have saved them."""

    def conv(name, kernel, bias=None):
        return name, [(f"{name}/kernel:0", kernel), (f"{name}/bias:0", (kernel[-1] if bias is None else bias,))]

    rpn = []
    for inner, kernel in (("rpn_conv_shared", (3, 3, FEAT, RPN_DEPTH)),
                          ("rpn_class_raw", (1, 1, RPN_DEPTH, 2 * ANCHORS)),
                          ("rpn_bbox_pred", (1, 1, RPN_DEPTH, 4 * ANCHORS))):
        rpn += [(f"{inner}/kernel:0", kernel), (f"{inner}/bias:0", (kernel[-1],))]
    return [
        ("input_image", []),
        conv("conv1", (3, 3, 3, FEAT)),
        ("bn_conv1", [(f"bn_conv1/{v}:0", (FEAT,)) for v in ("gamma", "beta", "moving_mean", "moving_variance")]),
        ("activation_1", []),
        ("rpn_model", rpn),
        ("pool_squeeze", []),
        conv("mrcnn_class_logits", (FEAT, num_classes)),
        conv("mrcnn_bbox_fc", (FEAT, 4 * num_classes)),
        ("mrcnn_bbox", []),
        conv("mrcnn_mask_deconv", (2, 2, MASK_DEPTH, FEAT), bias=MASK_DEPTH),  # (kh, kw, out, in)
        conv("mrcnn_mask", (1, 1, MASK_DEPTH, num_classes)),
    ]


def find_layer(model: keras.Model, name: str):
    """The layer called ``name`` anywhere in ``model`` (nested models included)."""
    stack = list(model.layers)
    while stack:
        layer = stack.pop()
        if layer.name == name:
            return layer
        stack.extend(getattr(layer, "layers", []))
    raise KeyError(name)


def value_of(var) -> np.ndarray:
    return var.value.numpy()


def model_values(model: keras.Model) -> list[np.ndarray]:
    return [value_of(w) for w in model.weights]


def assert_loaded(model: keras.Model, values: dict, groups: list[str]) -> None:
    """Every dataset of ``groups`` sits, in order, in the weights of the model layer of that name."""
    for group in groups:
        expected = [v for k, v in values.items() if k.startswith(group + "/")]
        actual = find_layer(model, group).weights
        assert len(actual) == len(expected), group
        for var, value in zip(actual, expected):
            np.testing.assert_array_equal(value_of(var), value, err_msg=f"{group}/{var.name}")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def model():
    return build_model()


WEIGHTED = ["conv1", "bn_conv1", "rpn_model", "mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask_deconv",
            "mrcnn_mask"]


def test_resnet101_layout_matches_the_released_coco_file():
    layout = matterport_layout("resnet101", 81)
    assert layout_totals(layout) == (233, 690, 64_158_584)
    names = [name for name, _ in layout]
    assert len(names) == len(set(names))
    moving = sum(int(np.prod(shape)) for _, ws in layout for w, shape in ws if "moving_" in w)
    assert moving == 111_488
    groups = dict(layout)
    assert groups["rpn_model"][0] == ("rpn_conv_shared/kernel:0", (3, 3, 256, 512))
    assert groups["rpn_model"][3] == ("rpn_class_raw/bias:0", (6,))
    assert groups["rpn_model"][4] == ("rpn_bbox_pred/kernel:0", (1, 1, 512, 12))
    assert groups["mrcnn_bbox_fc"] == [("mrcnn_bbox_fc/kernel:0", (1024, 324)), ("mrcnn_bbox_fc/bias:0", (324,))]
    assert groups["mrcnn_mask_deconv"][0] == ("mrcnn_mask_deconv/kernel:0", (2, 2, 256, 256))
    assert "res4w_branch2c" in groups and "res4x_branch2a" not in groups
    weighted = [name for name, _ in weighted_groups(layout)]
    assert weighted[:4] == ["conv1", "bn_conv1", "res2a_branch2a", "bn2a_branch2a"]
    assert weighted[-2:] == ["mrcnn_mask_deconv", "mrcnn_mask"]


def test_resnet50_layout_has_stage4_blocks_a_to_f():
    groups = dict(matterport_layout("resnet50", 2))
    assert "res4f_branch2c" in groups and "res4g_branch2a" not in groups
    assert groups["mrcnn_class_logits"][0] == ("mrcnn_class_logits/kernel:0", (1024, 2))
    assert groups["mrcnn_mask"][0] == ("mrcnn_mask/kernel:0", (1, 1, 256, 2))


@pytest.mark.parametrize("attrs_as_bytes", [False, True])
@pytest.mark.parametrize("full_model", [False, True])
def test_written_file_has_the_keras2_layout(tmp_path, rng, attrs_as_bytes, full_model):
    path = tmp_path / "w.h5"
    values = write_matterport_h5(path, small_layout(), rng, full_model=full_model, attrs_as_bytes=attrs_as_bytes)
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if full_model else f
        assert ("layer_names" in f.attrs) is not full_model
        names = root.attrs["layer_names"]
        assert isinstance(names[0], bytes if attrs_as_bytes else str)
        assert [n.decode() if attrs_as_bytes else n for n in names] == [n for n, _ in small_layout()]
        np.testing.assert_array_equal(root["conv1/conv1/kernel:0"][()], values["conv1/conv1/kernel:0"])
        np.testing.assert_array_equal(root["rpn_model/rpn_conv_shared/kernel:0"][()],
                                      values["rpn_model/rpn_conv_shared/kernel:0"])
        assert len(root["input_image"].attrs["weight_names"]) == 0
    assert len(values) == 20


@pytest.mark.parametrize("attrs_as_bytes", [False, True])
@pytest.mark.parametrize("full_model", [False, True])
def test_every_value_lands_in_the_layer_of_the_same_name(tmp_path, rng, model, attrs_as_bytes, full_model):
    path = tmp_path / "w.h5"
    values = write_matterport_h5(path, small_layout(), rng, full_model=full_model, attrs_as_bytes=attrs_as_bytes)
    report = load_weights(model, path)
    assert isinstance(report, LoadReport)
    assert report.loaded == WEIGHTED
    assert report.file_only == [] and report.model_only == [] and report.excluded == [] and not report.mismatched
    assert report.num_values == sum(v.size for v in values.values())
    assert_loaded(model, values, WEIGHTED)
    # The nested rpn_model group fills the inner layers in order.
    np.testing.assert_array_equal(value_of(find_layer(model, "rpn_bbox_pred").kernel),
                                  values["rpn_model/rpn_bbox_pred/kernel:0"])
    # BatchNorm: gamma, beta, moving_mean, moving_variance.
    bn = find_layer(model, "bn_conv1")
    np.testing.assert_array_equal(value_of(bn.moving_variance), values["bn_conv1/bn_conv1/moving_variance:0"])
    # Conv2DTranspose kernels are (kh, kw, out, in) in both Keras versions.
    np.testing.assert_array_equal(value_of(find_layer(model, "mrcnn_mask_deconv").kernel),
                                  values["mrcnn_mask_deconv/mrcnn_mask_deconv/kernel:0"])


def test_nested_group_matched_by_inner_names_when_order_differs(tmp_path, rng, model):
    layout = small_layout()
    groups = dict(layout)
    rpn = groups["rpn_model"]
    reordered = rpn[4:] + rpn[:4]  # rpn_bbox_pred first
    layout = [(n, reordered if n == "rpn_model" else w) for n, w in layout]
    values = write_matterport_h5(tmp_path / "w.h5", layout, rng)
    load_weights(model, tmp_path / "w.h5")
    for inner in ("rpn_conv_shared", "rpn_class_raw", "rpn_bbox_pred"):
        layer = find_layer(model, inner)
        np.testing.assert_array_equal(value_of(layer.kernel), values[f"rpn_model/{inner}/kernel:0"])
        np.testing.assert_array_equal(value_of(layer.bias), values[f"rpn_model/{inner}/bias:0"])


def test_summary_is_logged(tmp_path, rng, model, caplog):
    write_matterport_h5(tmp_path / "w.h5", small_layout(), rng)
    with caplog.at_level(logging.INFO, logger="mrcnn.weights"):
        report = load_weights(model, tmp_path / "w.h5")
    assert report.summary() in caplog.text
    assert "Loaded 7 layers" in report.summary()
    assert "2.1.3" in report.summary()


def test_exclude_class_specific_heads_for_another_class_count(tmp_path, rng):
    values = write_matterport_h5(tmp_path / "coco.h5", small_layout(num_classes=81), rng)
    model = build_model(num_classes=2)
    heads = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"]
    before = {h: model_values(find_layer(model, h)) for h in heads}
    report = load_weights(model, tmp_path / "coco.h5",
                          exclude=["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"])
    assert report.excluded == ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"]
    assert report.loaded == ["conv1", "bn_conv1", "rpn_model", "mrcnn_mask_deconv"]
    assert_loaded(model, values, report.loaded)
    for h in heads:
        for old, new in zip(before[h], model_values(find_layer(model, h))):
            np.testing.assert_array_equal(old, new)


def test_exclude_accepts_regular_expressions(tmp_path, rng, model):
    write_matterport_h5(tmp_path / "w.h5", small_layout(), rng)
    report = load_weights(model, tmp_path / "w.h5", exclude=[r"mrcnn_.*", "rpn_model"])
    assert report.loaded == ["conv1", "bn_conv1"]
    assert report.excluded == ["rpn_model", "mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask_deconv",
                               "mrcnn_mask"]


def test_shape_mismatch_names_layer_variable_shapes_and_the_exclude_fix(tmp_path, rng):
    write_matterport_h5(tmp_path / "coco.h5", small_layout(num_classes=81), rng)
    model = build_model(num_classes=2)
    with pytest.raises(WeightsMismatchError) as info:
        load_weights(model, tmp_path / "coco.h5")
    message = str(info.value)
    assert "coco.h5" in message
    assert "layer 'mrcnn_class_logits', variable 'mrcnn_class_logits/kernel'" in message
    assert "(8, 2)" in message and "(8, 81)" in message
    assert "exclude=['mrcnn_class_logits', 'mrcnn_bbox_fc', 'mrcnn_bbox', 'mrcnn_mask']" in message
    assert "NUM_CLASSES" in message


def test_skip_mismatch_lists_the_skipped_layers(tmp_path, rng):
    values = write_matterport_h5(tmp_path / "coco.h5", small_layout(num_classes=81), rng)
    model = build_model(num_classes=2)
    report = load_weights(model, tmp_path / "coco.h5", skip_mismatch=True)
    assert list(report.mismatched) == ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"]
    assert "(8, 81)" in report.mismatched["mrcnn_class_logits"]
    assert report.loaded == ["conv1", "bn_conv1", "rpn_model", "mrcnn_mask_deconv"]
    assert_loaded(model, values, report.loaded)
    assert "shape mismatch, skipped (3)" in report.summary()


def test_rpn_model_weight_count_mismatch(tmp_path, rng, model):
    layout = [(n, w[:4] if n == "rpn_model" else w) for n, w in small_layout()]
    write_matterport_h5(tmp_path / "w.h5", layout, rng)
    with pytest.raises(WeightsMismatchError) as info:
        load_weights(model, tmp_path / "w.h5")
    message = str(info.value)
    assert "layer 'rpn_model'" in message and "4 weights" in message and "has 6" in message
    assert "rpn_bbox_pred/kernel:0" in message


def test_failed_load_leaves_the_model_unchanged(tmp_path, rng, model):
    # Everything fits except the last group, which is read after all the others.
    layout = [(n, [(w[0][0], (1, 1, MASK_DEPTH, 9)), w[1]] if n == "mrcnn_mask" else w) for n, w in small_layout()]
    write_matterport_h5(tmp_path / "w.h5", layout, rng)
    before = model_values(model)
    with pytest.raises(WeightsMismatchError, match="mrcnn_mask"):
        load_weights(model, tmp_path / "w.h5")
    for old, new in zip(before, model_values(model)):
        np.testing.assert_array_equal(old, new)


def test_resnet50_model_reading_a_resnet101_file_reports_what_was_skipped(tmp_path, rng):
    # Stage 4 only, two channels: a ResNet-50 has res4a..res4f, the file's ResNet-101 res4a..res4w.
    def block(letter):
        return f"res4{letter}_branch2a"

    letters101 = [chr(ord("a") + i) for i in range(23)]
    layout = [(block(c), [(f"{block(c)}/kernel:0", (1, 1, 2, 2)), (f"{block(c)}/bias:0", (2,))])
              for c in letters101]
    values = write_matterport_h5(tmp_path / "r101.h5", layout, rng)
    x = image = keras.Input((4, 4, 2))
    for c in letters101[:6]:
        x = layers.Conv2D(2, 1, name=block(c))(x)
    model = keras.Model(image, x)
    report = load_weights(model, tmp_path / "r101.h5")
    assert report.loaded == [block(c) for c in letters101[:6]]
    assert report.file_only == [block(c) for c in letters101[6:]]
    assert_loaded(model, values, report.loaded)
    assert "in the file, not in the model, skipped (17): res4g_branch2a" in report.summary()


def test_model_layers_missing_from_the_file_are_reported(tmp_path, rng, model):
    layout = [entry for entry in small_layout() if entry[0] != "mrcnn_mask"]
    write_matterport_h5(tmp_path / "w.h5", layout, rng)
    report = load_weights(model, tmp_path / "w.h5")
    assert report.model_only == ["mrcnn_mask"]
    assert "in the model, not in the file, left as they were (1): mrcnn_mask" in report.summary()


def test_by_name_false_requires_every_weighted_layer(tmp_path, rng, model):
    layout = [entry for entry in small_layout() if entry[0] != "mrcnn_mask"]
    write_matterport_h5(tmp_path / "partial.h5", layout, rng)
    with pytest.raises(WeightsMismatchError, match="by_name=False.*not in the file: \\['mrcnn_mask'\\]"):
        load_weights(model, tmp_path / "partial.h5", by_name=False)
    values = write_matterport_h5(tmp_path / "full.h5", small_layout(), rng)
    report = load_weights(model, tmp_path / "full.h5", by_name=False)
    assert_loaded(model, values, report.loaded)


def test_missing_file_says_where_to_get_the_coco_weights(tmp_path, model):
    with pytest.raises(FileNotFoundError) as info:
        load_weights(model, tmp_path / "mask_rcnn_coco.h5")
    message = str(info.value)
    assert "mask_rcnn_coco.h5" in message
    assert W.COCO_MODEL_URL in message and "weights/" in message


def test_truncated_file_reports_its_size(tmp_path, rng, model):
    write_matterport_h5(tmp_path / "full.h5", small_layout(), rng)
    data = (tmp_path / "full.h5").read_bytes()
    half = tmp_path / "mask_rcnn_coco.h5"
    half.write_bytes(data[: len(data) // 2])
    before = model_values(model)
    with pytest.raises(WeightsFileError) as info:
        load_weights(model, half)
    message = str(info.value)
    assert f"{len(data) // 2:,} bytes" in message
    assert "truncated" in message and "257,557,808" in message
    for old, new in zip(before, model_values(model)):
        np.testing.assert_array_equal(old, new)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused_and_the_model_unchanged(tmp_path, rng, model, bad):
    path = tmp_path / "diverged.h5"
    write_matterport_h5(path, small_layout(), rng)
    with h5py.File(path, "r+") as f:
        f["mrcnn_mask/mrcnn_mask/kernel:0"][0, 0, 1, 2] = bad  # The last group read: everything else is fine.
    before = model_values(model)
    with pytest.raises(WeightsFileError) as info:
        load_weights(model, path)
    message = str(info.value)
    assert message.startswith(f"{path}: layer 'mrcnn_mask', weight 'mrcnn_mask/kernel:0' holds 1 NaN or infinite")
    for old, new in zip(before, model_values(model)):
        np.testing.assert_array_equal(old, new)


def test_unreadable_file_is_a_permission_problem_not_a_corrupt_one(tmp_path, rng, model, monkeypatch):
    path = tmp_path / "mask_rcnn_coco.h5"
    write_matterport_h5(path, small_layout(), rng)

    def denied(name, mode="r", *args, **kwargs):  # What h5py raises for a file without read permission.
        raise PermissionError(13, f"Unable to synchronously open file (unable to open file: name = '{name}', "
                                  "errno = 13, error message = 'Permission denied', flags = 0, o_flags = 0)")

    monkeypatch.setattr(W.h5py, "File", denied)
    with pytest.raises(WeightsFileError) as info:
        load_weights(model, path)
    message = str(info.value)
    assert message.startswith(f"{path}: the file is not readable (permission denied)")
    assert "corrupt" not in message and "delete" not in message and "download" not in message


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads files without permission")
def test_file_without_read_permission(tmp_path, rng, model):
    path = tmp_path / "w.h5"
    write_matterport_h5(path, small_layout(), rng)
    path.chmod(0)
    with pytest.raises(WeightsFileError, match=r"the file is not readable \(permission denied\)"):
        load_weights(model, path)


def test_not_an_hdf5_file(tmp_path, model):
    path = tmp_path / "page.h5"
    path.write_text("<html>Not Found</html>")
    with pytest.raises(WeightsFileError, match="truncated or corrupt"):
        load_weights(model, path)


def test_hdf5_file_without_the_keras2_layout(tmp_path, model):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(WeightsFileError, match="no 'layer_names' attribute"):
        load_weights(model, tmp_path / "other.h5")


def test_save_load_round_trip_is_exact(tmp_path):
    source = build_model()
    for var in source.weights:  # non-default values everywhere, BatchNorm statistics included
        var.assign(np.random.default_rng(len(var.path)).standard_normal(var.shape).astype("float32"))
    target = build_model()
    path = save_weights(source, tmp_path / "mask_rcnn_lesion_0003.h5")
    assert path == str(tmp_path / "mask_rcnn_lesion_0003.h5")
    report = load_weights(target, path)
    assert report.loaded == WEIGHTED and not report.file_only and not report.model_only
    for a, b in zip(source.weights, target.weights):
        np.testing.assert_array_equal(value_of(a), value_of(b), err_msg=a.path)


def test_saved_file_uses_matterports_layout(tmp_path, model):
    path = save_weights(model, tmp_path / "w.h5")
    with h5py.File(path, "r") as f:
        names = [n.decode() for n in f.attrs["layer_names"]]
        assert names[:3] == ["input_image", "conv1", "bn_conv1"]
        assert {"rpn_model", "mrcnn_mask_deconv", "mrcnn_mask", "roi_reshape"} <= set(names)
        assert "mrcnn_mask_head" not in names  # a nested model other than rpn_model is stored layer by layer
        assert f.attrs["backend"] == b"tensorflow"
        assert [n.decode() for n in f["rpn_model"].attrs["weight_names"]] == [
            "rpn_conv_shared/kernel:0", "rpn_conv_shared/bias:0", "rpn_class_raw/kernel:0", "rpn_class_raw/bias:0",
            "rpn_bbox_pred/kernel:0", "rpn_bbox_pred/bias:0"]
        assert f["rpn_model/rpn_conv_shared/kernel:0"].shape == (3, 3, FEAT, RPN_DEPTH)
        assert [n.decode() for n in f["mrcnn_bbox_fc"].attrs["weight_names"]] == [
            "mrcnn_bbox_fc/kernel:0", "mrcnn_bbox_fc/bias:0"]
        assert [n.decode() for n in f["bn_conv1"].attrs["weight_names"]] == [
            "bn_conv1/gamma:0", "bn_conv1/beta:0", "bn_conv1/moving_mean:0", "bn_conv1/moving_variance:0"]
        assert len(f["input_image"].attrs["weight_names"]) == 0


def test_save_is_atomic(tmp_path, model, monkeypatch):
    path = tmp_path / "mask_rcnn_lesion_0001.h5"
    save_weights(model, path)
    previous = path.read_bytes()
    calls = {"n": 0}
    original = h5py.Group.create_dataset

    def failing_create_dataset(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError("disk full (simulated)")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing_create_dataset)
    with pytest.raises(OSError, match="simulated"):
        save_weights(model, path)
    with pytest.raises(OSError, match="simulated"):
        save_weights(model, tmp_path / "new.h5")
    assert path.read_bytes() == previous
    assert sorted(os.listdir(tmp_path)) == ["mask_rcnn_lesion_0001.h5"]


def test_long_layer_name_lists_are_chunked(tmp_path):
    names = [f"layer_{i:05d}_with_a_long_name" for i in range(5000)]
    with h5py.File(tmp_path / "a.h5", "w") as f:
        W._write_str_list(f, "layer_names", names)
        assert "layer_names0" in f.attrs
        assert W._read_str_list(f, "layer_names") == names


@pytest.mark.parametrize("name, epoch", [
    ("mask_rcnn_coco_0005.h5", 5),
    ("logs/coco20171029T2315/mask_rcnn_coco_0160.h5", 160),
    ("mask_rcnn_skin_lesion_0012.h5", 12),
    ("mask_rcnn_skin_lesion_v2_0001.h5", 1),
    ("mask_rcnn_my-data_12345.h5", 12345),
    ("mask_rcnn_shapes0007.h5", 7),
    ("mask_rcnn_lesion_0004.weights.h5", 4),
    (pathlib.Path("logs") / "mask_rcnn_balloon_0030.h5", 30),
    ("mask_rcnn_coco.h5", None),
    ("resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", None),
    ("mask_rcnn_coco_0005.h5.tmp", None),
])
def test_epoch_from_checkpoint_name(name, epoch):
    assert epoch_from_checkpoint_name(name) == epoch


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the network must not be touched")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_existing_files_are_returned_without_network(tmp_path, no_network):
    coco = tmp_path / "mask_rcnn_coco.h5"
    coco.write_bytes(b"present")
    assert download_trained_weights(coco, verbose=0) == str(coco)
    (tmp_path / W.IMAGENET_WEIGHTS_FILENAME).write_bytes(b"present")
    assert get_imagenet_weights(tmp_path) == str(tmp_path / W.IMAGENET_WEIGHTS_FILENAME)


def test_download_trained_weights_from_a_file_url(tmp_path, rng, monkeypatch):
    source = tmp_path / "server" / "mask_rcnn_coco.h5"
    source.parent.mkdir()
    write_matterport_h5(source, small_layout(), rng)
    monkeypatch.setattr(W, "COCO_MODEL_URL", source.as_uri())
    dest = tmp_path / "weights" / "mask_rcnn_coco.h5"
    assert download_trained_weights(dest, verbose=0) == str(dest)
    assert dest.read_bytes() == source.read_bytes()
    assert os.listdir(dest.parent) == ["mask_rcnn_coco.h5"]


def test_get_imagenet_weights_from_a_file_url(tmp_path, rng, monkeypatch, capsys):
    source = tmp_path / "server.h5"
    write_matterport_h5(source, [("conv1", [("conv1/kernel:0", (7, 7, 3, 64))])], rng)
    monkeypatch.setattr(W, "IMAGENET_WEIGHTS_URL", source.as_uri())
    path = get_imagenet_weights(tmp_path / "cache")
    assert path == str(tmp_path / "cache" / W.IMAGENET_WEIGHTS_FILENAME)
    assert pathlib.Path(path).read_bytes() == source.read_bytes()
    assert "Downloading the ImageNet ResNet-50 weights" in capsys.readouterr().out


def test_download_failure_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(W, "COCO_MODEL_URL", (tmp_path / "absent.h5").as_uri())
    dest = tmp_path / "weights" / "mask_rcnn_coco.h5"
    with pytest.raises(WeightsDownloadError) as info:
        download_trained_weights(dest, verbose=0)
    assert str(dest) in str(info.value) and "by hand" in str(info.value)
    assert not dest.exists() and os.listdir(dest.parent) == []


def test_download_of_something_not_hdf5_leaves_no_file(tmp_path, monkeypatch):
    page = tmp_path / "error.html"
    page.write_text("<html>rate limited</html>")
    monkeypatch.setattr(W, "COCO_MODEL_URL", page.as_uri())
    dest = tmp_path / "mask_rcnn_coco.h5"
    with pytest.raises(WeightsDownloadError, match="did not give an HDF5 file"):
        download_trained_weights(dest, verbose=0)
    assert not dest.exists()
    assert sorted(os.listdir(tmp_path)) == ["error.html"]


def test_duplicate_layer_names_are_refused(tmp_path, rng):
    def head(name):
        x_in = keras.Input((FEAT,))
        return keras.Model(x_in, layers.Dense(2, name="mrcnn_class_logits")(x_in), name=name)

    x_in = keras.Input((FEAT,))
    model = keras.Model(x_in, [head("head_a")(x_in), head("head_b")(x_in)])
    with pytest.raises(ValueError, match=r"several layers named \['mrcnn_class_logits'\]"):
        save_weights(model, tmp_path / "w.h5")
    write_matterport_h5(tmp_path / "w.h5", [("mrcnn_class_logits", [("mrcnn_class_logits/kernel:0", (FEAT, 2)),
                                                                   ("mrcnn_class_logits/bias:0", (2,))])], rng)
    with pytest.raises(WeightsMismatchError, match="several layers named"):
        load_weights(model, tmp_path / "w.h5")


def test_save_in_float16_halves_the_file_and_loads_back_close(tmp_path):
    import keras as _keras

    inputs = _keras.Input((8, 8, 32))
    x = _keras.layers.Conv2D(64, 3, name="conv1")(inputs)
    x = _keras.layers.BatchNormalization(name="bn_conv1")(x)
    model = _keras.Model(inputs, x)
    full = W.save_weights(model, tmp_path / "full.h5")
    half = W.save_weights(model, tmp_path / "half.h5", dtype="float16")
    with h5py.File(half, "r") as f:
        assert f["conv1/conv1/kernel:0"].dtype == np.float16
    assert os.path.getsize(half) < 0.75 * os.path.getsize(full)
    variance = model.get_layer("bn_conv1").moving_variance
    variance.assign(np.full(variance.shape, 1e6, "float32"))  # beyond float16's range: kept as float32
    half = W.save_weights(model, tmp_path / "half.h5", dtype="float16")
    with h5py.File(half, "r") as f:
        assert f["bn_conv1/bn_conv1/moving_variance:0"].dtype == np.float32
    before = [w.numpy().copy() for w in model.weights]
    for w in model.weights:
        w.assign(np.zeros(w.shape, w.dtype))
    W.load_weights(model, half)
    for b, w in zip(before, model.weights):
        assert w.dtype == "float32"
        np.testing.assert_allclose(w.numpy(), b, rtol=1e-3, atol=1e-3)


def test_truncated_checkpoint_quotes_no_download_size_and_a_folder_is_named(tmp_path, rng, model):
    write_matterport_h5(tmp_path / "full.h5", small_layout(), rng)
    data = (tmp_path / "full.h5").read_bytes()
    half = tmp_path / "mask_rcnn_lesion_light_0007.h5"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsFileError) as info:
        load_weights(model, half)
    message = str(info.value)
    assert "truncated" in message and "257,557,808" not in message and "earlier checkpoint" in message
    with pytest.raises(WeightsFileError, match="is a folder"):
        load_weights(model, tmp_path)


# ------------------------------------------------------------------------------------------------------------
# inspect_weights.


def _head_layout(backbone_group: str, num_classes: int):
    return [(backbone_group, [(f"{backbone_group}/kernel:0", (1, 1, 2, 2))]), ("activation_1", []),
            ("mrcnn_class_logits", [("mrcnn_class_logits/kernel:0", (8, num_classes)),
                                    ("mrcnn_class_logits/bias:0", (num_classes,))])]


@pytest.mark.parametrize("group, num_classes, backbone, full_model, as_bytes", [
    ("res4a_branch2a", 81, "resnet50", False, False),
    ("res4w_branch2a", 4, "resnet101", True, True),
    ("light4_conv", 2, "light", False, True),
    ("conv1", 3, None, True, False),
])
def test_inspect_weights_reads_classes_and_backbone(tmp_path, group, num_classes, backbone, full_model, as_bytes):
    path = tmp_path / "w.h5"
    write_matterport_h5(path, _head_layout(group, num_classes), np.random.default_rng(0), full_model=full_model,
                        attrs_as_bytes=as_bytes)
    assert W.inspect_weights(path) == W.WeightsInfo(num_classes, backbone)


def test_inspect_weights_of_what_is_not_a_weight_file(tmp_path):
    (tmp_path / "text.h5").write_text("not HDF5")
    with h5py.File(tmp_path / "empty.h5", "w"):
        pass
    for name in ("text.h5", "empty.h5", "absent.h5"):
        assert W.inspect_weights(tmp_path / name) == W.WeightsInfo(None, None)
