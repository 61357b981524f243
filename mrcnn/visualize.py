"""Drawing detections, masks and evaluation plots (matterport's ``mrcnn.visualize`` names), headless-safe.

Importing this module on a machine without a display (no ``DISPLAY``/``WAYLAND_DISPLAY``, no ``MPLBACKEND``, not
inside a Jupyter kernel, pyplot not yet imported) selects matplotlib's Agg backend, and no function calls
``plt.show()`` unless the backend is interactive. So the same script runs on a laptop and on a training server.

Every matplotlib function takes ``ax=None``: given an axes it draws there; otherwise it makes its own figure
(shown when the backend is interactive, registered with pyplot only then, so a headless loop does not pile up
open figures). Single-panel functions return the ``Axes``, multi-panel ones the ``Figure``; save with
``ax.figure.savefig(path)`` or ``fig.savefig(path)``.

Colours are RGB tuples in [0, 1] (as :func:`random_colors` gives). Boxes are ``(y1, x1, y2, x2)`` in image pixels,
``y2``/``x2`` exclusive; masks are ``[height, width, instances]``.

For writing overlays of many images, :func:`draw_instances_cv2` draws with OpenCV onto a uint8 copy and never
touches matplotlib.
"""

from __future__ import annotations

import colorsys
import itertools
import os
import random
import re
import sys

import matplotlib

if (
    "matplotlib.pyplot" not in sys.modules
    and "ipykernel" not in sys.modules
    and not os.environ.get("MPLBACKEND")
    and not os.environ.get("DISPLAY")
    and not os.environ.get("WAYLAND_DISPLAY")
    and sys.platform.startswith("linux")
):
    matplotlib.use("Agg")

import cv2  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import lines, patches  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Polygon  # noqa: E402
from skimage.measure import find_contours  # noqa: E402

from . import utils  # noqa: E402

__all__ = [
    "random_colors",
    "apply_mask",
    "display_images",
    "display_instances",
    "display_differences",
    "draw_rois",
    "draw_box",
    "draw_boxes",
    "display_top_masks",
    "plot_precision_recall",
    "plot_overlaps",
    "draw_instances_cv2",
    "display_table",
    "display_weight_stats",
    "is_interactive_backend",
]

# Backends that render to files only: plt.show() would do nothing useful (and warns).
_NON_INTERACTIVE_BACKENDS = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


def is_interactive_backend() -> bool:
    """Whether matplotlib's current backend can show a window or inline figure."""
    return matplotlib.get_backend().lower() not in _NON_INTERACTIVE_BACKENDS


def _new_figure(nrows: int = 1, ncols: int = 1, figsize=(12, 12)):
    """A figure and its axes: through pyplot when it can be shown, a standalone ``Figure`` otherwise."""
    if is_interactive_backend():
        fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False)
    else:
        fig = Figure(figsize=figsize)
        axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _show(fig) -> None:
    """Show a figure this module created, if the backend can."""
    if is_interactive_backend() and plt.fignum_exists(getattr(fig, "number", None)):
        plt.show()


def random_colors(N: int, bright: bool = True, rng=None) -> list[tuple[float, float, float]]:
    """``N`` visually distinct RGB colours in [0, 1], evenly spaced in hue, in random order.

    Args:
        N: number of colours.
        bright: full brightness if True, else 0.7.
        rng: a ``random.Random`` to shuffle with; ``None`` uses the ``random`` module.

    Returns:
        A list of N (r, g, b) tuples.
    """
    brightness = 1.0 if bright else 0.7
    colors = [colorsys.hsv_to_rgb(i / max(N, 1), 1.0, brightness) for i in range(N)]
    (rng or random).shuffle(colors)
    return colors


def apply_mask(image: np.ndarray, mask: np.ndarray, color, alpha: float = 0.5) -> np.ndarray:
    """Blend ``color`` into ``image`` where ``mask`` is set, in place.

    Args:
        image: [H, W, 3] image (modified in place).
        mask: [H, W] bool, 0/1 or probability mask (> 0.5 counts as set).
        color: (r, g, b) in [0, 1].
        alpha: opacity of the colour.

    Returns:
        ``image``.
    """
    inside = np.asarray(mask) > 0.5
    rgb = np.asarray(color[:3], dtype=np.float64) * 255.0
    image[inside] = image[inside] * (1 - alpha) + alpha * rgb
    return image


def _mask_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """Outlines of a [H, W] mask as (x, y) vertex arrays; padded so masks touching the edge close."""
    padded = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), dtype=np.uint8)
    padded[1:-1, 1:-1] = mask > 0.5
    # find_contours gives (row, col); remove the padding and flip to (x, y).
    return [np.fliplr(verts) - 1 for verts in find_contours(padded, 0.5)]


def _draw_mask(ax, masked_image: np.ndarray, mask: np.ndarray, fill_color, edge_color, fill: bool = True) -> None:
    """Tint ``mask`` [H, W] into ``masked_image`` (float [H, W, 3], in place) with ``fill_color`` when ``fill``, and
    outline it on ``ax`` in ``edge_color``."""
    if fill:
        apply_mask(masked_image, mask, fill_color)
    for verts in _mask_polygons(mask):
        ax.add_patch(Polygon(verts, facecolor="none", edgecolor=edge_color))


def _show_masked(ax, masked_image: np.ndarray, created: bool):
    """Draw ``masked_image`` on ``ax``; show the figure when this call created it; returns ``ax``."""
    ax.imshow(np.clip(masked_image, 0, 255).astype(np.uint8))
    if created:
        _show(ax.figure)
    return ax


def display_images(images, titles=None, cols: int = 4, cmap=None, norm=None, interpolation=None, ax=None):
    """Show images in a grid, each with an optional title.

    Args:
        images: list of [H, W] or [H, W, C] images.
        titles: list of titles, one per image.
        cols: images per row.
        cmap, norm, interpolation: passed to ``imshow``.
        ax: optional sequence (or array) of at least ``len(images)`` axes to draw in.

    Returns:
        The matplotlib ``Figure``.
    """
    titles = titles if titles is not None else [""] * len(images)
    created = ax is None
    if created:
        rows = max(1, -(-len(images) // cols))
        fig, axes = _new_figure(rows, cols, figsize=(14, max(2, 14 * rows // cols)))
        axes = list(axes.flat)
    else:
        axes = list(np.asarray(ax, dtype=object).flat)
        if len(axes) < len(images):
            raise ValueError(f"display_images: {len(images)} images but only {len(axes)} axes")
        fig = axes[0].figure
    for axis in axes:
        axis.axis("off")
    for axis, image, title in zip(axes, images, titles):
        axis.set_title(title, fontsize=9)
        image = np.asarray(image)
        if image.ndim == 3:  # Colour images are shown as uint8; single-channel ones keep values for cmap.
            image = image.astype(np.uint8)
        axis.imshow(image, cmap=cmap, norm=norm, interpolation=interpolation)
    if created:
        _show(fig)
    return fig


def display_instances(image, boxes, masks, class_ids, class_names, scores=None, title: str = "",
                      figsize=(16, 16), ax=None, show_mask: bool = True, show_bbox: bool = True,
                      colors=None, captions=None):
    """Draw instances: dashed boxes, translucent masks with outlines, and "class score" captions.

    Args:
        image: [H, W, 3] image.
        boxes: [N, (y1, x1, y2, x2)] pixel boxes; all-zero rows (lost instances) are skipped.
        masks: [H, W, N] masks.
        class_ids: [N] int class ids.
        class_names: list of class names indexed by class id.
        scores: optional [N] confidences shown in the captions.
        title: axes title.
        figsize: figure size when ``ax`` is None.
        ax: axes to draw in; a new figure if None.
        show_mask, show_bbox: draw the masks / boxes.
        colors: optional list of N (r, g, b) colours in [0, 1]; random if None.
        captions: optional list of N caption strings, replacing "class score".

    Returns:
        The matplotlib ``Axes``.
    """
    boxes = np.asarray(boxes)
    n = boxes.shape[0]
    if not n:
        print("\n*** No instances to display *** \n")
    elif not (n == masks.shape[-1] == len(class_ids)):
        raise ValueError(f"display_instances: {n} boxes, {masks.shape[-1]} masks and {len(class_ids)} class ids;"
                         " they must be the same count")
    created = ax is None
    if created:
        fig, axes = _new_figure(figsize=figsize)
        ax = axes[0, 0]
    colors = random_colors(n) if colors is None else colors

    height, width = image.shape[:2]
    ax.set_ylim(height + 10, -10)  # A margin shows boxes that touch the border.
    ax.set_xlim(-10, width + 10)
    ax.axis("off")
    ax.set_title(title)

    masked_image = np.asarray(image).astype(np.float64)
    for i in range(n):
        color = colors[i]
        if not np.any(boxes[i]):
            continue  # No box: the instance was lost in resizing or cropping.
        y1, x1, y2, x2 = boxes[i][:4]
        if show_bbox:
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=2, alpha=0.7,
                                           linestyle="dashed", edgecolor=color, facecolor="none"))
        if captions is None:
            label = class_names[int(class_ids[i])]
            caption = f"{label} {scores[i]:.3f}" if scores is not None else label
        else:
            caption = captions[i]
        ax.text(x1, y1 + 8, caption, color="w", size=11, backgroundcolor="none")

        _draw_mask(ax, masked_image, masks[:, :, i], color, color, fill=show_mask)
    return _show_masked(ax, masked_image, created)


def display_differences(image, gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score, pred_mask,
                        class_names, title: str = "", ax=None, show_mask: bool = True, show_box: bool = True,
                        iou_threshold: float = 0.5, score_threshold: float = 0.5):
    """Ground truth (green) and predictions (red) on one image; captions "score / IoU" for predictions.

    Args:
        image: [H, W, 3] image.
        gt_box, gt_class_id, gt_mask: ground truth, as :func:`mrcnn.utils.compute_matches`.
        pred_box, pred_class_id, pred_score, pred_mask: predictions, same.
        class_names: list of class names.
        title: axes title; a legend-like default if empty.
        ax: axes to draw in; a new figure if None.
        show_mask, show_box: draw masks / boxes.
        iou_threshold, score_threshold: as :func:`mrcnn.utils.compute_matches`.

    Returns:
        The matplotlib ``Axes``.
    """
    gt_match, pred_match, overlaps = utils.compute_matches(
        gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score, pred_mask,
        iou_threshold=iou_threshold, score_threshold=score_threshold)
    # compute_matches orders predictions by score: use the same order here.
    order = np.argsort(-np.asarray(pred_score)[:len(pred_match)], kind="stable")
    pred_box = np.asarray(pred_box)[order]
    pred_class_id = np.asarray(pred_class_id)[order]
    pred_score = np.asarray(pred_score)[order]
    pred_mask = np.asarray(pred_mask)[..., order]
    gt_box = np.asarray(gt_box)[:len(gt_match)]
    gt_class_id = np.asarray(gt_class_id)[:len(gt_match)]
    gt_mask = np.asarray(gt_mask)[..., :len(gt_match)]

    colors = [(0, 1, 0, 0.8)] * len(gt_match) + [(1, 0, 0, 1)] * len(pred_match)
    class_ids = np.concatenate([gt_class_id, pred_class_id]).astype(np.int32)
    scores = np.concatenate([np.zeros([len(gt_match)]), pred_score])
    boxes = np.concatenate([gt_box.reshape(-1, 4), pred_box.reshape(-1, 4)])
    masks = np.concatenate([gt_mask, pred_mask], axis=-1)
    captions = [""] * len(gt_match)
    for i in range(len(pred_match)):
        if pred_match[i] > -1:
            iou = overlaps[i, pred_match[i]]
        else:
            iou = overlaps[i].max() if overlaps.shape[1] else 0.0
        captions.append(f"{pred_score[i]:.2f} / {iou:.2f}")
    title = title or "Ground Truth and Detections\n GT=green, pred=red, captions: score/IoU"
    return display_instances(image, boxes, masks, class_ids, class_names, scores, ax=ax, show_bbox=show_box,
                             show_mask=show_mask, colors=colors, captions=captions, title=title)


def draw_rois(image, rois, refined_rois, mask, class_ids, class_names, limit: int = 10, ax=None):
    """Draw ROIs (dashed), their refinements (solid) and the masks of positive ROIs.

    Args:
        image: [H, W, 3] image.
        rois: [R, (y1, x1, y2, x2)] pixel boxes.
        refined_rois: [R, (y1, x1, y2, x2)] the ROIs after box refinement.
        mask: [R, mask_h, mask_w] float masks of each ROI's class.
        class_ids: [R] class ids (0 = negative ROI).
        class_names: list of class names.
        limit: at most this many ROIs, picked at random.
        ax: axes to draw in; a new figure if None.

    Returns:
        The matplotlib ``Axes``.
    """
    masked_image = np.asarray(image).astype(np.float64)
    ids = np.arange(rois.shape[0], dtype=np.int32)
    if ids.shape[0] > limit:
        ids = np.random.choice(ids, limit, replace=False)
    created = ax is None
    if created:
        fig, axes = _new_figure(figsize=(12, 12))
        ax = axes[0, 0]
    if rois.shape[0] > limit:
        ax.set_title(f"Showing {len(ids)} random ROIs out of {rois.shape[0]}")
    else:
        ax.set_title(f"{len(ids)} ROIs")
    ax.set_ylim(image.shape[0] + 20, -20)
    ax.set_xlim(-50, image.shape[1] + 20)
    ax.axis("off")

    for roi_id in ids:
        color = np.random.rand(3)
        class_id = int(class_ids[roi_id])
        y1, x1, y2, x2 = rois[roi_id][:4]
        ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=2,
                                       edgecolor=color if class_id else "gray", facecolor="none",
                                       linestyle="dashed"))
        if class_id:
            ry1, rx1, ry2, rx2 = refined_rois[roi_id][:4]
            ax.add_patch(patches.Rectangle((rx1, ry1), rx2 - rx1, ry2 - ry1, linewidth=2, edgecolor=color,
                                           facecolor="none"))
            ax.add_line(lines.Line2D([x1, rx1], [y1, ry1], color=color))  # Link the two top-left corners.
            ax.text(rx1, ry1 + 8, class_names[class_id], color="w", size=11, backgroundcolor="none")
            m = utils.unmold_mask(mask[roi_id], np.asarray(rois[roi_id][:4]).astype(np.int32), image.shape)
            apply_mask(masked_image, m, color)
    ax.imshow(np.clip(masked_image, 0, 255).astype(np.uint8))

    positives = int(np.sum(class_ids > 0))
    print("Positive ROIs: ", positives)
    print("Negative ROIs: ", int(np.sum(class_ids == 0)))
    print(f"Positive Ratio: {positives / max(len(class_ids), 1):.2f}")
    if created:
        _show(ax.figure)
    return ax


def draw_box(image: np.ndarray, box, color) -> np.ndarray:
    """Draw a 2-pixel box outline on ``image`` in place with OpenCV.

    Args:
        image: [H, W, 3] uint8 image (modified in place).
        box: (y1, x1, y2, x2) pixel box.
        color: (r, g, b) in 0..255 as the image's values.

    Returns:
        ``image``.
    """
    y1, x1, y2, x2 = (int(v) for v in box[:4])
    cv2.rectangle(image, (x1, y1), (x2, y2), color=tuple(int(c) for c in color), thickness=2)
    return image


def draw_boxes(image, boxes=None, refined_boxes=None, masks=None, captions=None, visibilities=None,
               title: str = "", ax=None):
    """Draw boxes, refined boxes, masks and captions with per-box prominence.

    Args:
        image: [H, W, 3] image.
        boxes: [N, (y1, x1, y2, x2)] pixel boxes, drawn dotted.
        refined_boxes: [N, (y1, x1, y2, x2)] refined boxes, drawn solid and linked to ``boxes``.
        masks: [H, W, N] masks.
        captions: list of N captions.
        visibilities: list of N values: 0 grey and faint, 1 coloured dotted, 2 coloured solid.
        title: axes title.
        ax: axes to draw in; a new figure if None.

    Returns:
        The matplotlib ``Axes``.
    """
    if boxes is None and refined_boxes is None:
        raise ValueError("draw_boxes: give boxes, refined_boxes or both")
    n = boxes.shape[0] if boxes is not None else refined_boxes.shape[0]
    created = ax is None
    if created:
        fig, axes = _new_figure(figsize=(12, 12))
        ax = axes[0, 0]
    colors = random_colors(n)
    margin = image.shape[0] // 10
    ax.set_ylim(image.shape[0] + margin, -margin)
    ax.set_xlim(-margin, image.shape[1] + margin)
    ax.axis("off")
    ax.set_title(title)

    masked_image = np.asarray(image).astype(np.float64)
    for i in range(n):
        visibility = visibilities[i] if visibilities is not None else 1
        if visibility == 0:
            color, style, alpha = "gray", "dotted", 0.5
        elif visibility == 1:
            color, style, alpha = colors[i], "dotted", 1.0
        else:
            color, style, alpha = colors[i], "solid", 1.0

        if boxes is not None:
            if not np.any(boxes[i]):
                continue  # Lost in cropping.
            y1, x1, y2, x2 = boxes[i][:4]
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=2, alpha=alpha,
                                           linestyle=style, edgecolor=color, facecolor="none"))
        if refined_boxes is not None:
            ry1, rx1, ry2, rx2 = np.asarray(refined_boxes[i][:4]).astype(np.int32)
        if refined_boxes is not None and visibility > 0:
            ax.add_patch(patches.Rectangle((rx1, ry1), rx2 - rx1, ry2 - ry1, linewidth=2, edgecolor=color,
                                           facecolor="none"))
            if boxes is not None:
                ax.add_line(lines.Line2D([x1, rx1], [y1, ry1], color=color))
        if captions is not None:
            if refined_boxes is not None:
                cy, cx = ry1, rx1
            else:
                cy, cx = y1, x1
            ax.text(cx, cy, captions[i], size=11, verticalalignment="top", color="w", backgroundcolor="none",
                    bbox={"facecolor": color, "alpha": 0.5, "pad": 2, "edgecolor": "none"})
        if masks is not None:
            _draw_mask(ax, masked_image, masks[:, :, i], colors[i] if isinstance(color, str) else color, color)
    return _show_masked(ax, masked_image, created)


def display_top_masks(image, mask, class_ids, class_names, limit: int = 4, ax=None):
    """The image next to the merged masks of its ``limit`` classes with the largest mask area.

    Args:
        image: [H, W, 3] image.
        mask: [H, W, N] instance masks.
        class_ids: [N] class ids.
        class_names: list of class names.
        limit: number of class panels.
        ax: optional sequence of at least ``limit + 1`` axes.

    Returns:
        The matplotlib ``Figure``.
    """
    class_ids = np.asarray(class_ids)
    to_display = [image]
    titles = [f"H x W={image.shape[0]}x{image.shape[1]}"]
    unique_class_ids = np.unique(class_ids)
    mask_area = [np.sum(mask[:, :, np.where(class_ids == i)[0]]) for i in unique_class_ids]
    top_ids = [cid for cid, area in sorted(zip(unique_class_ids, mask_area), key=lambda r: r[1], reverse=True)
               if area > 0]
    for i in range(limit):
        class_id = top_ids[i] if i < len(top_ids) else -1
        # Instances of the class, each labelled 1..k so they show as different shades.
        m = mask[:, :, np.where(class_ids == class_id)[0]]
        m = np.sum(m * np.arange(1, m.shape[-1] + 1), axis=-1)
        to_display.append(m)
        titles.append(class_names[int(class_id)] if class_id != -1 else "-")
    return display_images(to_display, titles=titles, cols=limit + 1, cmap="Blues_r", ax=ax)


def plot_precision_recall(AP: float, precisions, recalls, ax=None):
    """Precision-recall curve, titled with the AP.

    Args:
        AP: average precision at IoU 0.5.
        precisions: [K] precisions (as :func:`mrcnn.utils.compute_ap`).
        recalls: [K] recalls.
        ax: axes to draw in; a new figure if None.

    Returns:
        The matplotlib ``Axes``.
    """
    created = ax is None
    if created:
        fig, axes = _new_figure(figsize=(6, 6))
        ax = axes[0, 0]
    ax.set_title(f"Precision-Recall Curve. AP@50 = {AP:.3f}")
    ax.set_ylim(0, 1.1)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    ax.plot(recalls, precisions)
    if created:
        _show(ax.figure)
    return ax


def plot_overlaps(gt_class_ids, pred_class_ids, pred_scores, overlaps, class_names, threshold: float = 0.5,
                  ax=None):
    """Grid of prediction / ground-truth IoUs, cells marked "match" or "wrong" above ``threshold``.

    Args:
        gt_class_ids: [G] ground-truth class ids (0 entries, padding, are dropped).
        pred_class_ids: [P] predicted class ids (0 entries dropped).
        pred_scores: [P] prediction scores.
        overlaps: [P, G] IoU of predictions and ground truths.
        class_names: list of class names.
        threshold: IoU above which a cell is a match (same class) or wrong (other class).
        ax: axes to draw in; a new figure if None.

    Returns:
        The matplotlib ``Axes``.
    """
    gt_class_ids = np.asarray(gt_class_ids)
    pred_class_ids = np.asarray(pred_class_ids)
    gt_class_ids = gt_class_ids[gt_class_ids != 0]
    pred_class_ids = pred_class_ids[pred_class_ids != 0]
    overlaps = np.asarray(overlaps)
    created = ax is None
    if created:
        fig, axes = _new_figure(figsize=(12, 10))
        ax = axes[0, 0]
    ax.imshow(overlaps, interpolation="nearest", cmap=matplotlib.colormaps["Blues"])
    ax.set_yticks(np.arange(len(pred_class_ids)),
                  [f"{class_names[int(cid)]} ({pred_scores[i]:.2f})" for i, cid in enumerate(pred_class_ids)])
    ax.set_xticks(np.arange(len(gt_class_ids)), [class_names[int(cid)] for cid in gt_class_ids], rotation=90)

    thresh = overlaps.max() / 2.0 if overlaps.size else 0.0
    for i, j in itertools.product(range(overlaps.shape[0]), range(overlaps.shape[1])):
        text = ""
        if overlaps[i, j] > threshold:
            text = "match" if gt_class_ids[j] == pred_class_ids[i] else "wrong"
        color = "white" if overlaps[i, j] > thresh else "black" if overlaps[i, j] > 0 else "grey"
        ax.text(j, i, f"{overlaps[i, j]:.3f}\n{text}", horizontalalignment="center",
                verticalalignment="center", fontsize=9, color=color)
    ax.set_xlabel("Ground Truth")
    ax.set_ylabel("Predictions")
    ax.figure.tight_layout()
    if created:
        _show(ax.figure)
    return ax


def _class_color(class_id: int) -> tuple[int, int, int]:
    """A fixed, distinct RGB colour (0..255) per class id (golden-ratio hue steps)."""
    hue = (int(class_id) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.9, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_instances_cv2(image, boxes, masks, class_ids, class_names, scores=None, colors=None,
                       thickness: int = 2, font_scale: float = 0.5, fill_alpha: float = 0.0) -> np.ndarray:
    """Overlay instances on a copy of ``image`` with OpenCV: mask outline, box and caption, all inside the box.

    Fast and matplotlib-free, for writing overlays of many images. The box is drawn inward from its edges and
    the caption ("class score") is drawn in its top-left corner and clipped to it, so no pixel outside the box
    changes (with ``fill_alpha`` 0 and masks inside their boxes).

    Args:
        image: [H, W, 3] RGB image (or [H, W] greyscale); non-uint8 values are clipped to 0..255.
        boxes: [N, (y1, x1, y2, x2)] pixel boxes, y2/x2 exclusive; all-zero rows are skipped.
        masks: [H, W, N] masks, or None for boxes only.
        class_ids: [N] class ids.
        class_names: list of class names indexed by class id.
        scores: optional [N] confidences shown in the captions.
        colors: optional list of N (r, g, b) colours in [0, 1]; a fixed colour per class if None.
        thickness: line thickness in pixels of the box and mask outlines.
        font_scale: OpenCV font scale of the captions.
        fill_alpha: opacity of a mask fill; 0 draws outlines only.

    Returns:
        uint8 [H, W, 3] RGB image with the overlay; ``image`` is not modified.
    """
    out = np.asarray(image)
    if out.dtype != np.uint8:
        out = np.clip(out, 0, 255).astype(np.uint8)
    if out.ndim == 2:
        out = np.stack([out] * 3, axis=-1)
    out = np.ascontiguousarray(out[..., :3]).copy()
    height, width = out.shape[:2]
    boxes = np.asarray(boxes).reshape(-1, 4)
    if masks is not None and masks.shape[-1] != boxes.shape[0]:
        raise ValueError(f"draw_instances_cv2: {boxes.shape[0]} boxes but {masks.shape[-1]} masks")
    font = cv2.FONT_HERSHEY_SIMPLEX

    for i in range(boxes.shape[0]):
        if not np.any(boxes[i]):
            continue
        if colors is not None:
            color = tuple(int(round(c * 255)) for c in colors[i][:3])
        else:
            color = _class_color(int(class_ids[i]))
        y1, x1, y2, x2 = (int(round(float(v))) for v in boxes[i])
        y1, x1 = max(y1, 0), max(x1, 0)
        y2, x2 = min(y2, height), min(x2, width)
        if y2 <= y1 or x2 <= x1:
            continue

        if masks is not None:
            mask = np.ascontiguousarray(masks[:, :, i] > 0.5).astype(np.uint8)
            if fill_alpha > 0:
                inside = mask.astype(bool)
                out[inside] = (out[inside] * (1 - fill_alpha) + np.array(color) * fill_alpha).astype(np.uint8)
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            # Contours run through the mask's border pixels, so thickness 1 stays on the mask; thicker lines
            # are drawn on the box patch so they cannot spill past the box.
            roi = out[y1:y2, x1:x2]
            shifted = [c - np.array([[x1, y1]], dtype=c.dtype) for c in contours]
            cv2.drawContours(roi, shifted, -1, color, thickness=thickness, lineType=cv2.LINE_AA)

        # Box: nested 1-pixel rectangles, from the edge inward.
        for k in range(thickness):
            if x1 + k > x2 - 1 - k or y1 + k > y2 - 1 - k:
                break
            cv2.rectangle(out, (x1 + k, y1 + k), (x2 - 1 - k, y2 - 1 - k), color, thickness=1)

        class_id = int(class_ids[i])
        label = class_names[class_id] if 0 <= class_id < len(class_names) else str(class_id)
        caption = f"{label} {float(scores[i]):.2f}" if scores is not None else label
        (text_w, text_h), baseline = cv2.getTextSize(caption, font, font_scale, 1)
        # Caption on a filled label in the top-left corner, drawn into the box patch so it is clipped there.
        roi = out[y1:y2, x1:x2]
        cv2.rectangle(roi, (0, 0), (text_w + 3, text_h + baseline + 3), color, thickness=-1)
        text_color = (0, 0, 0) if sum(color) > 382 else (255, 255, 255)
        cv2.putText(roi, caption, (2, text_h + 2), font, font_scale, text_color, 1, cv2.LINE_AA)
    return out


def _in_notebook() -> bool:
    """Whether this runs inside a Jupyter kernel (rich HTML output is shown there)."""
    shell = sys.modules.get("IPython")
    get_ipython = getattr(shell, "get_ipython", None)
    return get_ipython is not None and getattr(get_ipython(), "kernel", None) is not None


def display_table(table) -> str:
    """Show rows of values as a table (matterport's ``display_table``).

    In a Jupyter notebook it is shown as an HTML table; elsewhere it is printed as aligned text, the first row
    underlined as the header, and HTML markup in a cell (matterport's red alerts) dropped.

    Args:
        table: an iterable of rows, each an iterable of values.

    Returns:
        The HTML (in a notebook) or text that was shown.
    """
    import html as html_lib

    rows = [[str(col) for col in row] for row in table]
    if _in_notebook():
        import IPython.display

        text = "<table>" + "".join(
            "<tr>" + "".join(f"<td>{col:40}</td>" for col in row) + "</tr>" for row in rows) + "</table>"
        IPython.display.display(IPython.display.HTML(text))
        return text
    plain = [[html_lib.unescape(re.sub(r"<[^>]+>", "", col)) for col in row] for row in rows]
    widths = [max((len(row[i]) for row in plain if i < len(row)), default=0)
              for i in range(max((len(row) for row in plain), default=0))]
    lines = ["  ".join(col.ljust(widths[i]) for i, col in enumerate(row)).rstrip() for row in plain]
    if len(lines) > 1:
        lines.insert(1, "  ".join("-" * w for w in widths))
    text = "\n".join(lines)
    print(text)
    return text


def display_weight_stats(model) -> list[list[str]]:
    """Show the shape, min, max and standard deviation of every weight of a model (matterport's
    ``display_weight_stats``), flagging suspicious ones: ``*** dead?`` when all values are equal (not for a
    convolution's bias, which starts at zero) and ``*** Overflow?`` when a value exceeds 1000 in magnitude.

    Args:
        model: a :class:`mrcnn.model.MaskRCNN` (its :meth:`~mrcnn.model.MaskRCNN.get_trainable_layers`).

    Returns:
        The rows shown: a header, then ``[name + alerts, shape, min, max, std]`` per weight, the name being the
        weight's path (``res2a_branch2a/kernel``).
    """
    table = [["WEIGHT NAME", "SHAPE", "MIN", "MAX", "STD"]]
    notebook = _in_notebook()
    for layer in model.get_trainable_layers():
        for i, (variable, value) in enumerate(zip(layer.weights, layer.get_weights())):
            alerts = []
            if value.size and value.min() == value.max() and not (isinstance(layer, _conv_classes()) and i == 1):
                alerts.append("*** dead?")
            if value.size and (abs(value.min()) > 1000 or abs(value.max()) > 1000):
                alerts.append("*** Overflow?")
            alert = "".join(f"<span style='color:red'>{a}</span>" if notebook else f"  {a}" for a in alerts)
            table.append([getattr(variable, "path", variable.name) + alert, str(value.shape),
                          f"{value.min():+9.4f}" if value.size else "", f"{value.max():+10.4f}" if value.size else "",
                          f"{value.std():+9.4f}" if value.size else ""])
    display_table(table)
    return table


def _conv_classes():
    """The convolution classes whose second weight is a bias (no alert when it is constant)."""
    import keras

    return (keras.layers.Conv2D, keras.layers.Conv2DTranspose)
