"""Test helper: matterport's Mask R-CNN weight-file layout, and a writer for files in that layout.

The released ``mask_rcnn_coco.h5`` cannot be downloaded in the test environment, so tests build a file with the
same groups, dataset names and shapes (random values) and load that. The layout follows
``/work/shared/docs/matterport-h5-layout.md``:

* ``matterport_layout`` lists every layer group of matterport's model in ``model.layers`` order, as
  ``(group_name, [(weight_name, shape), ...])``; weightless layers have an empty list. ``weight_name`` is the
  name stored in the group's ``weight_names`` attribute (``"conv1/kernel:0"``; for the nested ``rpn_model``,
  ``"rpn_conv_shared/kernel:0"``). The weighted groups are in matterport's construction order; the weightless
  names in between (``activation_12``, ``add_3``, ...) follow Keras 2's auto-naming and are close to, not
  exactly, the released file's list (loading goes by name, so their position does not matter).
* ``write_matterport_h5`` writes such a layout as a Keras-2 ``save_weights`` HDF5 file and returns the values it
  wrote, keyed ``"<group>/<weight_name>"`` (``"conv1/conv1/kernel:0"``, ``"rpn_model/rpn_conv_shared/kernel:0"``).

Usage for a full model test::

    values = write_matterport_h5(path, matterport_layout("resnet101", 81), np.random.default_rng(0))
"""

from __future__ import annotations

import os
from typing import Sequence

import h5py
import numpy as np

__all__ = [
    "Layout",
    "matterport_layout",
    "weighted_groups",
    "layout_totals",
    "write_matterport_h5",
]

# One entry per layer: (group name, [(weight name, shape), ...]).
Layout = list[tuple[str, list[tuple[str, tuple[int, ...]]]]]

_STAGE4_BLOCKS = {"resnet50": 6, "resnet101": 23}
_BN_VARS = ("gamma", "beta", "moving_mean", "moving_variance")


class _Builder:
    """Accumulates layer groups and Keras 2 style auto-names for weightless layers."""

    def __init__(self) -> None:
        self.layout: Layout = []
        self._counters: dict[str, int] = {}

    def auto(self, kind: str) -> None:
        """A weightless layer named the Keras 2 way (``activation_1``, ``add_1``, ...)."""
        self._counters[kind] = self._counters.get(kind, 0) + 1
        self.layout.append((f"{kind}_{self._counters[kind]}", []))

    def plain(self, name: str) -> None:
        """A weightless layer with an explicit name."""
        self.layout.append((name, []))

    def conv(self, name: str, kernel: tuple[int, ...], bias_size: int | None = None) -> None:
        """A Conv2D / Dense / Conv2DTranspose group: kernel, then bias (size ``bias_size``, default kernel[-1])."""
        bias = kernel[-1] if bias_size is None else bias_size
        self.layout.append((name, [(f"{name}/kernel:0", tuple(kernel)), (f"{name}/bias:0", (bias,))]))

    def bn(self, name: str, channels: int) -> None:
        """A BatchNormalization group: gamma, beta, moving_mean, moving_variance."""
        self.layout.append((name, [(f"{name}/{v}:0", (channels,)) for v in _BN_VARS]))


def _conv_block(b: _Builder, in_ch: int, filters: Sequence[int], stage: int, block: str) -> int:
    f1, f2, f3 = filters
    conv, bn = f"res{stage}{block}_branch", f"bn{stage}{block}_branch"
    b.conv(conv + "2a", (1, 1, in_ch, f1))
    b.bn(bn + "2a", f1)
    b.auto("activation")
    b.conv(conv + "2b", (3, 3, f1, f2))
    b.bn(bn + "2b", f2)
    b.auto("activation")
    # Keras 2 lists layers by graph depth, so the two branch ends interleave.
    b.conv(conv + "2c", (1, 1, f2, f3))
    b.conv(conv + "1", (1, 1, in_ch, f3))
    b.bn(bn + "2c", f3)
    b.bn(bn + "1", f3)
    b.auto("add")
    b.plain(f"res{stage}{block}_out")
    return f3


def _identity_block(b: _Builder, in_ch: int, filters: Sequence[int], stage: int, block: str) -> int:
    f1, f2, f3 = filters
    conv, bn = f"res{stage}{block}_branch", f"bn{stage}{block}_branch"
    b.conv(conv + "2a", (1, 1, in_ch, f1))
    b.bn(bn + "2a", f1)
    b.auto("activation")
    b.conv(conv + "2b", (3, 3, f1, f2))
    b.bn(bn + "2b", f2)
    b.auto("activation")
    b.conv(conv + "2c", (1, 1, f2, f3))
    b.bn(bn + "2c", f3)
    b.auto("add")
    b.plain(f"res{stage}{block}_out")
    return f3


def _block_letters(n: int) -> list[str]:
    return [chr(ord("a") + i) for i in range(n)]


def matterport_layout(backbone: str = "resnet101", num_classes: int = 81, fpn_size: int = 256,
                      anchors_per_location: int = 3, fc_size: int = 1024) -> Layout:
    """Every layer group of matterport's Mask R-CNN, in ``model.layers`` order.

    Args:
        backbone: ``"resnet101"`` (stage 4 blocks a-w) or ``"resnet50"`` (stage 4 blocks a-f).
        num_classes: NUM_CLASSES, background included (81 for COCO).
        fpn_size: TOP_DOWN_PYRAMID_SIZE, the FPN channel count.
        anchors_per_location: len(RPN_ANCHOR_RATIOS).
        fc_size: FPN_CLASSIF_FC_LAYERS_SIZE.

    Returns:
        ``[(group_name, [(weight_name, shape), ...]), ...]``; weightless layers have ``[]``. For ResNet-101 with
        81 classes: 233 weighted groups, 690 weights, 64,158,584 values.

    Raises:
        ValueError: unknown backbone.
    """
    if backbone not in _STAGE4_BLOCKS:
        raise ValueError(f"tests/h5_layout.py: backbone must be one of {sorted(_STAGE4_BLOCKS)}, got {backbone!r}")
    b = _Builder()

    # Backbone.
    b.plain("input_image")
    b.auto("zero_padding2d")
    b.conv("conv1", (7, 7, 3, 64))
    b.bn("bn_conv1", 64)
    b.auto("activation")
    b.auto("max_pooling2d")
    stages = [
        (2, (64, 64, 256), 3),
        (3, (128, 128, 512), 4),
        (4, (256, 256, 1024), _STAGE4_BLOCKS[backbone]),
        (5, (512, 512, 2048), 3),
    ]
    channels = 64
    for stage, filters, blocks in stages:
        for i, letter in enumerate(_block_letters(blocks)):
            block_fn = _conv_block if i == 0 else _identity_block
            channels = block_fn(b, channels, filters, stage, letter)

    # Feature pyramid.
    b.conv("fpn_c5p5", (1, 1, 2048, fpn_size))
    b.plain("fpn_p5upsampled")
    b.conv("fpn_c4p4", (1, 1, 1024, fpn_size))
    b.plain("fpn_p4add")
    b.plain("fpn_p4upsampled")
    b.conv("fpn_c3p3", (1, 1, 512, fpn_size))
    b.plain("fpn_p3add")
    b.plain("fpn_p3upsampled")
    b.conv("fpn_c2p2", (1, 1, 256, fpn_size))
    b.plain("fpn_p2add")
    for level in (2, 3, 4, 5):
        b.conv(f"fpn_p{level}", (3, 3, fpn_size, fpn_size))
    b.plain("fpn_p6")

    # Region proposal network: one nested model shared by all levels, stored as one group.
    b.plain("input_anchors")
    rpn = []
    for inner, kernel in (("rpn_conv_shared", (3, 3, fpn_size, 512)),
                          ("rpn_class_raw", (1, 1, 512, 2 * anchors_per_location)),
                          ("rpn_bbox_pred", (1, 1, 512, 4 * anchors_per_location))):
        rpn += [(f"{inner}/kernel:0", kernel), (f"{inner}/bias:0", (kernel[-1],))]
    b.layout.append(("rpn_model", rpn))
    for name in ("rpn_class_logits", "rpn_class", "rpn_bbox", "ROI", "input_image_meta"):
        b.plain(name)

    # Box / class head (TimeDistributed wrappers: weights stored under the wrapper's name).
    b.plain("roi_align_classifier")
    b.conv("mrcnn_class_conv1", (7, 7, fpn_size, fc_size))
    b.bn("mrcnn_class_bn1", fc_size)
    b.auto("activation")
    b.conv("mrcnn_class_conv2", (1, 1, fc_size, fc_size))
    b.bn("mrcnn_class_bn2", fc_size)
    b.auto("activation")
    b.plain("pool_squeeze")
    b.conv("mrcnn_class_logits", (fc_size, num_classes))
    b.conv("mrcnn_bbox_fc", (fc_size, 4 * num_classes))
    b.plain("mrcnn_class")
    b.plain("mrcnn_bbox")
    b.plain("mrcnn_detection")

    # Mask head.
    b.plain("roi_align_mask")
    for i in range(1, 5):
        b.conv(f"mrcnn_mask_conv{i}", (3, 3, fpn_size if i == 1 else 256, 256))
        b.bn(f"mrcnn_mask_bn{i}", 256)
        b.auto("activation")
    # Conv2DTranspose kernel: (kh, kw, out, in); the bias has the output size.
    b.conv("mrcnn_mask_deconv", (2, 2, 256, 256), bias_size=256)
    b.conv("mrcnn_mask", (1, 1, 256, num_classes))
    return b.layout


def weighted_groups(layout: Layout) -> Layout:
    """The entries of ``layout`` that have weights, in order."""
    return [(name, weights) for name, weights in layout if weights]


def layout_totals(layout: Layout) -> tuple[int, int, int]:
    """(weighted groups, datasets, values) of a layout."""
    groups = weighted_groups(layout)
    datasets = sum(len(w) for _, w in groups)
    values = sum(int(np.prod(shape)) for _, w in groups for _, shape in w)
    return len(groups), datasets, values


def _str_attr(values: Sequence[str], as_bytes: bool) -> np.ndarray:
    if as_bytes:
        # Keras 2 wrote fixed-length byte strings; old h5py returned them as ``bytes``.
        return np.array([v.encode("utf8") for v in values], dtype=bytes) if values else np.zeros((0,), "S1")
    return np.array(list(values), dtype=h5py.string_dtype("utf-8"))


def _scalar_attr(value: str, as_bytes: bool):
    return np.bytes_(value.encode("utf8")) if as_bytes else value


def write_matterport_h5(path: str | os.PathLike, layout: Layout, rng: np.random.Generator,
                        full_model: bool = False, attrs_as_bytes: bool = False) -> dict[str, np.ndarray]:
    """Write ``layout`` as a Keras-2 ``save_weights`` HDF5 file with random normal float32 values.

    Args:
        path: file to create (overwritten).
        layout: as returned by :func:`matterport_layout` (or a hand-made subset).
        rng: source of the values; every dataset gets its own draw, so values are distinguishable.
        full_model: put everything under a top-level ``model_weights`` group, as Keras 2's ``model.save``.
        attrs_as_bytes: store string attributes as fixed-length bytes (what Keras 2 wrote and older h5py read
            back as ``bytes``) instead of variable-length ``str``.

    Returns:
        ``{"<group>/<weight_name>": array}`` for every dataset written, e.g. ``"conv1/conv1/kernel:0"``.
    """
    values: dict[str, np.ndarray] = {}
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if full_model else f
        if full_model:
            f.attrs["keras_version"] = _scalar_attr("2.1.3", attrs_as_bytes)
            f.attrs["backend"] = _scalar_attr("tensorflow", attrs_as_bytes)
            f.attrs["model_config"] = _scalar_attr('{"class_name": "Model"}', attrs_as_bytes)
        root.attrs["layer_names"] = _str_attr([name for name, _ in layout], attrs_as_bytes)
        root.attrs["backend"] = _scalar_attr("tensorflow", attrs_as_bytes)
        root.attrs["keras_version"] = _scalar_attr("2.1.3", attrs_as_bytes)
        for name, weights in layout:
            g = root.create_group(name)
            g.attrs["weight_names"] = _str_attr([w for w, _ in weights], attrs_as_bytes)
            for weight_name, shape in weights:
                value = rng.standard_normal(shape, dtype=np.float32)
                # The weight name contains "/", so the dataset nests: /conv1/conv1/kernel:0.
                g.create_dataset(weight_name, data=value)
                values[f"{name}/{weight_name}"] = value
    return values
