"""Pyramid anchors, computed once in NumPy for a fixed image shape.

Anchors are ``(y1, x1, y2, x2)`` boxes. Ratios are **width / height** (matterport's convention): ratio 2 is a
box twice as wide as high. For each pyramid level the anchors are ordered position-major: for every feature
map cell (row-major, stride ``anchor_stride``) all ``len(scales) * len(ratios)`` shapes of that level (one scale
per level in the FPN setting, so ``len(ratios)`` anchors per cell). This is the order in which the RPN head
flattens its outputs, so the two line up.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .boxes import norm_boxes

__all__ = ["generate_anchors", "generate_pyramid_anchors", "compute_backbone_shapes", "get_anchors", "octave_scales",
           "anchor_settings", "anchors_for_size"]


def generate_anchors(scales: float | Sequence[float], ratios: Sequence[float], shape: Sequence[int], feature_stride: int,
                     anchor_stride: int) -> np.ndarray:
    """Anchors of one pyramid level, in pixels.

    Args:
        scales: anchor side(s) in pixels (for ratio 1); scalar or 1-D.
        ratios: width / height ratios.
        shape: (height, width) of the feature map.
        feature_stride: pixels per feature-map cell.
        anchor_stride: place anchors at every ``anchor_stride``-th cell.

    Returns:
        float [shape[0] * shape[1] / anchor_stride**2 * len(scales) * len(ratios), (y1, x1, y2, x2)] pixels,
        centred on ``cell * feature_stride`` (the top-left pixel of each cell, as matterport).
    """
    scales, ratios = np.meshgrid(np.array(scales, dtype=np.float64).ravel(), np.array(ratios, dtype=np.float64))
    scales = scales.flatten()
    ratios = ratios.flatten()
    heights = scales / np.sqrt(ratios)
    widths = scales * np.sqrt(ratios)

    shifts_y = np.arange(0, shape[0], anchor_stride) * feature_stride
    shifts_x = np.arange(0, shape[1], anchor_stride) * feature_stride
    shifts_x, shifts_y = np.meshgrid(shifts_x, shifts_y)

    # [cells, shapes] grids of centres and sizes; cells vary slowest.
    box_widths, box_centers_x = np.meshgrid(widths, shifts_x)
    box_heights, box_centers_y = np.meshgrid(heights, shifts_y)
    centers = np.stack([box_centers_y, box_centers_x], axis=2).reshape([-1, 2])
    sizes = np.stack([box_heights, box_widths], axis=2).reshape([-1, 2])
    return np.concatenate([centers - 0.5 * sizes, centers + 0.5 * sizes], axis=1)


def generate_pyramid_anchors(scales: Sequence[float | Sequence[float]], ratios: Sequence[float],
                             feature_shapes: Sequence[Sequence[int]], feature_strides: Sequence[int],
                             anchor_stride: int) -> np.ndarray:
    """Anchors of all levels, concatenated level by level (scale ``scales[i]`` on level ``i``), in pixels."""
    anchors = [
        generate_anchors(scales[i], ratios, feature_shapes[i], feature_strides[i], anchor_stride)
        for i in range(len(scales))
    ]
    return np.concatenate(anchors, axis=0)


def compute_backbone_shapes(image_shape: Sequence[int], strides: Sequence[int]) -> np.ndarray:
    """Feature-map (height, width) of each pyramid level for an input of ``image_shape``."""
    return np.array(
        [[int(np.ceil(image_shape[0] / s)), int(np.ceil(image_shape[1] / s))] for s in strides]
    )


def octave_scales(scales: Sequence[float], scales_per_octave: int = 1) -> list[list[float]]:
    """Anchor sizes of each level: ``s * 2 ** (k / n)`` for ``k < n`` (``n = 1`` gives ``[[s] for s in scales]``)."""
    n = int(scales_per_octave)
    return [[float(s) * 2.0 ** (k / n) for k in range(n)] for s in scales]


def get_anchors(image_shape: Sequence[int], scales: Sequence[float], ratios: Sequence[float], strides: Sequence[int],
                anchor_stride: int, scales_per_octave: int = 1,
                backbone_shapes: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """Normalised float32 anchors [A, (y1, x1, y2, x2)] for an input of ``image_shape``.

    With ``scales_per_octave`` n > 1 every level has n sizes (see :func:`octave_scales`), so each cell has
    ``n * len(ratios)`` anchors. ``backbone_shapes`` [levels, (h, w)] overrides the feature-map sizes of
    :func:`compute_backbone_shapes` (matterport's ``COMPUTE_BACKBONE_SHAPE`` for a callable backbone).
    """
    scales = octave_scales(scales, scales_per_octave)
    if backbone_shapes is None:
        shapes = compute_backbone_shapes(image_shape, strides)
    else:
        shapes = np.asarray(backbone_shapes, dtype=np.int64)
        if shapes.shape != (len(strides), 2):
            raise ValueError(f"Backbone shapes must be [{len(strides)} levels, (height, width)] like "
                             f"BACKBONE_STRIDES, got {shapes.tolist()}")
    anchors = generate_pyramid_anchors(scales, ratios, shapes, strides, anchor_stride)
    return norm_boxes(anchors, image_shape[:2])


def anchor_settings(config) -> dict:
    """The anchor arguments of a :class:`mrcnn.config.Config` (the one place they are read from a config): the
    keyword arguments of :func:`anchors_for_size`, also :class:`mrcnn.network.MaskRCNNModel`'s."""
    return dict(
        backbone_strides=[int(s) for s in config.BACKBONE_STRIDES],
        anchor_scales=[float(s) for s in config.RPN_ANCHOR_SCALES],
        anchor_ratios=[float(r) for r in config.RPN_ANCHOR_RATIOS],
        anchor_stride=int(config.RPN_ANCHOR_STRIDE),
        anchor_scales_per_octave=int(getattr(config, "RPN_ANCHOR_SCALES_PER_OCTAVE", 1)),
        # matterport's COMPUTE_BACKBONE_SHAPE(image_shape) -> [levels, (h, w)], used with a callable backbone.
        compute_backbone_shape=(config.COMPUTE_BACKBONE_SHAPE if callable(config.BACKBONE) else None),
    )


def anchors_for_size(size: Sequence[int], channels: int, backbone_strides, anchor_scales, anchor_ratios,
                     anchor_stride: int, anchor_scales_per_octave: int = 1, compute_backbone_shape=None) -> np.ndarray:
    """Normalised float32 anchors [A, (y1, x1, y2, x2)] of a molded input of ``size`` (H, W) with ``channels``,
    from the arguments of :func:`anchor_settings` (the model's and the training data's anchors alike)."""
    size = (int(size[0]), int(size[1]))
    shapes = None
    if compute_backbone_shape is not None:
        shapes = compute_backbone_shape(np.array(size + (int(channels),)))
    return get_anchors(size, anchor_scales, anchor_ratios, backbone_strides, anchor_stride, anchor_scales_per_octave,
                       backbone_shapes=shapes).astype(np.float32)
