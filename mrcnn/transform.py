"""Pre- and post-processing in one place: image -> network input, and network output -> image results.

Both directions live side by side here (as torchvision's ``GeneralizedRCNNTransform``): :func:`resize_image` /
:func:`resize_mask` and :func:`mold_image` take an image and its masks into the network's frame,
:func:`mold_inputs` does it for a batch of images and writes their meta vectors, and :func:`unmold_detections`
/ :func:`unmold_mask` bring one image's detections back to its original pixels.

Terms:

- **molded frame**: the network's input image, ``[H, W, C]`` float32: the original image scaled (aspect ratio
  kept) and zero-padded (or cropped) by :func:`resize_image` according to ``IMAGE_RESIZE_MODE``, then the mean
  pixel subtracted by :func:`mold_image`. Every box inside the model is normalised to this frame
  (``(0, 0, 1, 1)`` is the whole molded image, see :mod:`mrcnn.boxes`).
- **window**: ``(y1, x1, y2, x2)`` in pixels of the molded frame (``y2``/``x2`` exclusive) of the part that
  holds the real, scaled image; outside it is padding. Detections are clipped to it and then mapped from it
  to the original image's pixels.
- **meta vector**: one float32 vector of ``12 + NUM_CLASSES`` values per image (matterport's layout,
  :func:`compose_image_meta` / :func:`parse_image_meta`): ``image_id`` (1), ``original_image_shape`` (3),
  ``image_shape`` (3, the molded frame), ``window`` (4), ``scale`` (1) and ``active_class_ids``
  (``NUM_CLASSES``). It is the network's ``input_image_meta``.

matterport had these in ``mrcnn.utils``, ``mrcnn.model`` and ``MaskRCNN``; those names are still there
(re-exported), so ``utils.resize_image``, ``modellib.mold_image`` and ``model.mold_inputs(images)`` work.

Differences from matterport (all deliberate):

- :func:`resize_image` resizes uint8 images with OpenCV (``INTER_AREA`` when shrinking, ``INTER_LINEAR`` when
  enlarging): a 4288x2848 photo goes to 1024 px in milliseconds and without a float64 copy. Other dtypes go
  through :func:`resize` (scikit-image, bilinear) as before. The ``crop`` mode takes an optional ``rng``, and
  a ``"fit"`` mode pads to multiples of 64 only.
- :func:`resize_mask` uses centre-aligned nearest-neighbour sampling (the same pixel grid as the OpenCV image
  resize) in NumPy; the output shape is ``round(side * scale)`` as matterport's ``scipy.ndimage.zoom``.
- :func:`unmold_mask` resizes the small mask only to the box size with OpenCV bilinear interpolation (edges
  replicated, so a mask that fills its box fills it to the edge) and pastes the part inside the image.

Importing this module does not import TensorFlow (:mod:`mrcnn.utils` re-exports from it).
"""

from __future__ import annotations

import random
from typing import Sequence

import cv2
import numpy as np
import skimage.transform

__all__ = [
    "RESIZE_MODES",
    "resize",
    "resize_image",
    "training_resize_mode",
    "resize_mask",
    "minimize_mask",
    "expand_mask",
    "unmold_mask",
    "mold_image",
    "unmold_image",
    "compose_image_meta",
    "parse_image_meta",
    "mold_inputs",
    "unmold_detections",
]

RESIZE_MODES = ("none", "square", "pad64", "crop", "fit")

# OpenCV's resize handles at most this many channels at once (CV_CN_MAX).
_CV_MAX_CHANNELS = 512


# Resizing images (image -> molded frame).

def resize(image: np.ndarray, output_shape, order: int = 1, mode: str = "constant", cval: float = 0,
           clip: bool = True, preserve_range: bool = False, anti_aliasing: bool = False,
           anti_aliasing_sigma=None) -> np.ndarray:
    """:func:`skimage.transform.resize` with matterport's defaults (no anti-aliasing unless asked).

    Args:
        image: [H, W] or [H, W, C] array.
        output_shape: (height, width) or (height, width, channels).
        order: spline order, 0 nearest, 1 bilinear.
        mode, cval, clip, preserve_range, anti_aliasing, anti_aliasing_sigma: as scikit-image.

    Returns:
        The resized image; float unless ``preserve_range`` and ``order == 0`` keep the dtype.
    """
    return skimage.transform.resize(
        image, output_shape, order=order, mode=mode, cval=cval, clip=clip, preserve_range=preserve_range,
        anti_aliasing=anti_aliasing, anti_aliasing_sigma=anti_aliasing_sigma)


def _cv2_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """OpenCV resize of [H, W] or [H, W, C]: area averaging when shrinking, bilinear when enlarging."""
    shrinking = height * width < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    if image.ndim == 2:
        return cv2.resize(image, (width, height), interpolation=interpolation)
    # OpenCV takes at most 512 channels and returns [H, W] for one channel: resize in chunks and restore C.
    chunks = []
    for start in range(0, image.shape[2], _CV_MAX_CHANNELS):
        chunk = np.ascontiguousarray(image[:, :, start:start + _CV_MAX_CHANNELS])
        out = cv2.resize(chunk, (width, height), interpolation=interpolation)
        chunks.append(out.reshape(height, width, chunk.shape[2]))
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks, axis=2)


def _pad(image: np.ndarray, padding) -> np.ndarray:
    """Zero-pad the two spatial axes of [H, W] or [H, W, C] with ``padding`` [(top, bottom), (left, right), ...]."""
    pad = list(padding[:2]) + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, pad, mode="constant", constant_values=0)


def training_resize_mode(mode: str) -> str:
    """The ``IMAGE_RESIZE_MODE`` training batches are molded with: ``"fit"`` gives each image shape its own
    size, which one batch cannot hold, so it trains as ``"square"``, which scales the image the same way."""
    return "square" if mode == "fit" else mode


def resize_image(image: np.ndarray, min_dim: int | None = None, max_dim: int | None = None,
                 min_scale: float | None = None, mode: str = "square", rng=None):
    """Resize an image keeping its aspect ratio, then pad or crop it as ``mode`` says.

    The scale is ``max(1, min_dim / min(h, w))`` (never down to reach ``min_dim``), at least ``min_scale``, and
    in ``"square"`` and ``"fit"`` modes at most what keeps the long side within ``max_dim``. uint8 images are
    resized with OpenCV (``INTER_AREA`` when shrinking, ``INTER_LINEAR`` when enlarging), which is fast and
    memory-light on large photos; other dtypes with scikit-image bilinear interpolation. The dtype is kept.

    Modes:
        ``"none"``: return the image unchanged.
        ``"square"``: scale, then zero-pad to ``[max_dim, max_dim]``, the image centred.
        ``"pad64"``: scale up for ``min_dim``/``min_scale`` (``max_dim`` ignored), then zero-pad each side to a
        multiple of 64, the image centred.
        ``"crop"``: scale up for ``min_dim``/``min_scale``, then take a random ``min_dim`` x ``min_dim`` crop
        (training only).
        ``"fit"`` (not in matterport): scale as ``"square"`` does, then zero-pad each side to a multiple of 64
        only, the image centred. The same pixels at the same scale as ``"square"`` without the padding to a
        square (a quarter of the compute for a 4:3 image), at one molded size per image shape; training
        batches, which need one size, are molded as ``"square"``.

    Args:
        image: [H, W, C] (or [H, W]) image.
        min_dim: the short side is scaled up to at least this; required for ``"crop"``.
        max_dim: the long side's limit and the output side in ``"square"`` mode; required there and in
            ``"fit"`` mode (a multiple of 64).
        min_scale: a lower bound on the scale.
        mode: one of ``"none"``, ``"square"``, ``"pad64"``, ``"crop"``, ``"fit"``.
        rng: for ``"crop"``, a ``numpy.random.Generator`` or a seed; ``None`` uses Python's ``random`` module
            (as matterport, so ``random.seed`` makes crops repeatable).

    Returns:
        image: the resized image, same dtype.
        window: (y1, x1, y2, x2) of the image inside the padded output (y2, x2 exclusive).
        scale: the factor the image was scaled by.
        padding: [(top, bottom), (left, right), (0, 0)] zero padding added.
        crop: (y, x, height, width) of the crop in ``"crop"`` mode, else ``None``.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize_image: unknown mode {mode!r}; use one of {RESIZE_MODES}")
    image = np.asarray(image)
    image_dtype = image.dtype
    h, w = image.shape[:2]
    window = (0, 0, h, w)
    scale = 1.0
    padding = [(0, 0), (0, 0), (0, 0)]
    crop = None

    if mode == "none":
        return image, window, scale, padding, crop
    if mode == "square" and not max_dim:
        raise ValueError("resize_image: mode 'square' needs max_dim (the output side)")
    if mode == "fit" and (not max_dim or max_dim % 64 != 0):
        raise ValueError(f"resize_image: mode 'fit' needs max_dim, a multiple of 64, got {max_dim}")
    if mode == "crop" and not min_dim:
        raise ValueError("resize_image: mode 'crop' needs min_dim (the crop side)")
    if mode == "pad64" and min_dim and min_dim % 64 != 0:
        raise ValueError(f"resize_image: mode 'pad64' needs min_dim to be a multiple of 64, got {min_dim}")

    if min_dim:
        scale = max(1.0, min_dim / min(h, w))  # Scale up, never down.
    if min_scale and scale < min_scale:
        scale = float(min_scale)
    if max_dim and mode in ("square", "fit"):
        image_max = max(h, w)
        if round(image_max * scale) > max_dim:
            scale = max_dim / image_max

    if scale != 1:
        new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
        if image_dtype == np.uint8:
            image = _cv2_resize(image, new_h, new_w)
        else:
            out_shape = (new_h, new_w) + image.shape[2:]
            image = resize(image, out_shape, order=1, mode="constant", preserve_range=True)
    h, w = image.shape[:2]

    if mode == "square":
        top = (max_dim - h) // 2
        left = (max_dim - w) // 2
        padding = [(top, max_dim - h - top), (left, max_dim - w - left), (0, 0)]
        image = _pad(image, padding)
        window = (top, left, h + top, w + left)
    elif mode in ("pad64", "fit"):
        pad_h = (-h) % 64  # Rows to add to reach the next multiple of 64.
        pad_w = (-w) % 64
        padding = [(pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)]
        image = _pad(image, padding)
        window = (pad_h // 2, pad_w // 2, h + pad_h // 2, w + pad_w // 2)
    else:  # crop
        if h < min_dim or w < min_dim:
            raise ValueError(f"resize_image: the scaled image {h}x{w} is smaller than the crop {min_dim}")
        if rng is None:
            y = random.randint(0, h - min_dim)
            x = random.randint(0, w - min_dim)
        else:
            rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
            y = int(rng.integers(0, h - min_dim + 1))
            x = int(rng.integers(0, w - min_dim + 1))
        crop = (y, x, min_dim, min_dim)
        image = image[y:y + min_dim, x:x + min_dim]
        window = (0, 0, min_dim, min_dim)
    return image.astype(image_dtype, copy=False), window, scale, padding, crop


# Masks (resized like their image; mini-masks; head masks pasted back).

def _nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each of ``n_out`` output pixels, sampling pixel centres (nearest neighbour)."""
    idx = np.floor((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64)
    return np.minimum(idx, n_in - 1)


def resize_mask(mask: np.ndarray, scale: float, padding, crop=None) -> np.ndarray:
    """Resize masks like :func:`resize_image` resized their image (same ``scale``, ``padding``, ``crop``).

    Args:
        mask: [H, W, N] (or [H, W]) masks, any dtype.
        scale: the scale returned by :func:`resize_image`.
        padding: [(top, bottom), (left, right), (0, 0)] returned by :func:`resize_image`.
        crop: (y, x, height, width) returned by :func:`resize_image` in ``"crop"`` mode, else ``None``.

    Returns:
        [round(H * scale) padded or cropped, ..., N] masks, same dtype (nearest-neighbour sampling).
    """
    mask = np.asarray(mask)
    h, w = mask.shape[:2]
    if scale != 1:
        new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
        # Rows first, then columns: two gathers, no [new_h, new_w] index grid.
        mask = np.take(mask, _nearest_indices(h, new_h), axis=0)
        mask = np.take(mask, _nearest_indices(w, new_w), axis=1)
    if crop is not None:
        y, x, ch, cw = crop
        return mask[y:y + ch, x:x + cw]
    return _pad(mask, padding)


def minimize_mask(bbox: np.ndarray, mask: np.ndarray, mini_shape: Sequence[int]) -> np.ndarray:
    """Crop each mask to its box and resize it to ``mini_shape`` (matterport's mini-masks, to save memory).

    Args:
        bbox: [N, (y1, x1, y2, x2)] pixel boxes (as :func:`extract_bboxes`).
        mask: [H, W, N] masks.
        mini_shape: (height, width) of the mini-masks, e.g. (56, 56).

    Returns:
        bool [mini_h, mini_w, N]; bilinear resize thresholded at 0.5.

    Raises:
        ValueError: a box has zero area.
    """
    mini_h, mini_w = int(mini_shape[0]), int(mini_shape[1])
    mini_mask = np.zeros((mini_h, mini_w, mask.shape[-1]), dtype=bool)
    for i in range(mask.shape[-1]):
        y1, x1, y2, x2 = (int(v) for v in bbox[i][:4])
        m = mask[y1:y2, x1:x2, i]
        if m.size == 0:
            raise ValueError(f"minimize_mask: instance {i} has a box of zero area {(y1, x1, y2, x2)}")
        m = cv2.resize(m.astype(np.float32), (mini_w, mini_h), interpolation=cv2.INTER_LINEAR)
        mini_mask[:, :, i] = m >= 0.5
    return mini_mask


def expand_mask(bbox: np.ndarray, mini_mask: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    """Paste mini-masks back at their boxes in full-size masks (the inverse of :func:`minimize_mask`).

    Args:
        bbox: [N, (y1, x1, y2, x2)] pixel boxes.
        mini_mask: [mini_h, mini_w, N] masks.
        image_shape: (height, width, ...) of the image.

    Returns:
        bool [height, width, N]; bilinear resize thresholded at 0.5; zero-area boxes give empty masks.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    mask = np.zeros((height, width, mini_mask.shape[-1]), dtype=bool)
    for i in range(mask.shape[-1]):
        mask[:, :, i] = unmold_mask(mini_mask[:, :, i], bbox[i][:4], (height, width))
    return mask


def unmold_mask(mask: np.ndarray, bbox, image_shape: Sequence[int], out: np.ndarray | None = None) -> np.ndarray:
    """Paste a small float mask (e.g. the 28x28 head output) at its box in a full-size binary mask.

    Only the box-sized patch is resized (OpenCV bilinear) and thresholded at 0.5; the part of the box outside
    the image is dropped.

    Args:
        mask: [mask_h, mask_w] float mask in [0, 1].
        bbox: (y1, x1, y2, x2) integer pixel box.
        image_shape: (height, width, ...) of the image.
        out: optional zero-filled bool [height, width] array to paste into (saves an allocation per mask).

    Returns:
        bool [height, width] (``out`` when given).
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    y1, x1, y2, x2 = (int(round(float(v))) for v in bbox[:4])
    full_mask = np.zeros((height, width), dtype=bool) if out is None else out
    box_h, box_w = y2 - y1, x2 - x1
    if box_h <= 0 or box_w <= 0:
        return full_mask
    patch = cv2.resize(np.asarray(mask, dtype=np.float32), (box_w, box_h), interpolation=cv2.INTER_LINEAR)
    patch = patch.reshape(box_h, box_w) >= 0.5
    # Clip the box to the image and take the matching part of the patch.
    cy1, cx1 = max(y1, 0), max(x1, 0)
    cy2, cx2 = min(y2, height), min(x2, width)
    if cy2 > cy1 and cx2 > cx1:
        full_mask[cy1:cy2, cx1:cx2] = patch[cy1 - y1:cy2 - y1, cx1 - x1:cx2 - x1]
    return full_mask


# Normalisation (the mean pixel).

def mold_image(images: np.ndarray, config) -> np.ndarray:
    """Subtract the mean pixel: uint8 RGB -> float32 network input."""
    return images.astype(np.float32) - np.asarray(config.MEAN_PIXEL, dtype=np.float32)


def unmold_image(normalized_images: np.ndarray, config) -> np.ndarray:
    """Inverse of :func:`mold_image`."""
    return (normalized_images + np.asarray(config.MEAN_PIXEL, dtype=np.float32)).astype(np.uint8)


# The meta vector (see the module docstring).

def compose_image_meta(image_id, original_image_shape, image_shape, window, scale, active_class_ids) -> np.ndarray:
    """Pack image attributes into one float32 vector [12 + NUM_CLASSES] (matterport's layout).

    Layout: image_id (1), original_image_shape (3), image_shape (3), window (4: y1, x1, y2, x2 pixels of the
    molded image that hold the real image), scale (1), active_class_ids (NUM_CLASSES).
    """
    meta = np.array(
        [image_id] + list(original_image_shape) + list(image_shape) + list(window) + [scale]
        + list(active_class_ids))
    return meta.astype(np.float32)


def parse_image_meta(meta: np.ndarray) -> dict:
    """Unpack [batch, meta] (or [meta]) arrays from :func:`compose_image_meta` into a dict of arrays."""
    meta = np.asarray(meta)
    return {
        "image_id": meta[..., 0].astype(np.int32),
        "original_image_shape": meta[..., 1:4].astype(np.int32),
        "image_shape": meta[..., 4:7].astype(np.int32),
        "window": meta[..., 7:11].astype(np.int32),
        "scale": meta[..., 11].astype(np.float32),
        "active_class_ids": meta[..., 12:].astype(np.int32),
    }


# One batch in, one image's results out.

def mold_inputs(images: Sequence[np.ndarray], config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resize and normalise images for the network, and compose their meta vectors.

    With the default ``IMAGE_CHANNEL_COUNT = 3``, greyscale images are repeated to RGB and an alpha channel is
    dropped; with another channel count, images must have that many channels (a 2-D image counts as one).

    Args:
        images: list of [H, W, C] (or [H, W]) images, which must mold to one size.
        config: a :class:`mrcnn.config.Config` (``IMAGE_*``, ``MEAN_PIXEL``, ``NUM_CLASSES``).

    Returns:
        molded_images float32 [N, H, W, C], image_metas [N, META], windows int32 [N, (y1, x1, y2, x2)].

    Raises:
        ValueError: an image has the wrong number of channels, or the images mold to different sizes.
    """
    cfg = config
    channels = int(cfg.IMAGE_CHANNEL_COUNT)
    molded, metas, windows = [], [], []
    for image in images:
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[..., None]
        if channels == 3 and image.ndim == 3 and image.shape[-1] in (1, 4):
            image = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
        if image.ndim != 3 or image.shape[-1] != channels:
            what = "an RGB image [H, W, 3] (or greyscale, or RGBA)" if channels == 3 else \
                f"an image [H, W, {channels}] (IMAGE_CHANNEL_COUNT = {channels})"
            raise ValueError(f"Expected {what}, got shape {image.shape}")
        molded_image, window, scale, padding, crop = resize_image(
            image, min_dim=cfg.IMAGE_MIN_DIM, min_scale=cfg.IMAGE_MIN_SCALE, max_dim=cfg.IMAGE_MAX_DIM,
            mode=cfg.IMAGE_RESIZE_MODE)
        molded.append(mold_image(molded_image, cfg))
        metas.append(compose_image_meta(0, image.shape, molded_image.shape, window, scale,
                                        np.zeros([cfg.NUM_CLASSES], dtype=np.int32)))
        windows.append(window)
    sizes = sorted({m.shape[:2] for m in molded})
    if len(sizes) > 1:
        raise ValueError(f"After resizing the images have different sizes {sizes} (IMAGE_RESIZE_MODE "
                         f"{cfg.IMAGE_RESIZE_MODE!r}); mold them one size at a time, or call detect(), which "
                         "groups them")
    return np.stack(molded), np.stack(metas), np.array(windows)


def unmold_detections(detections: np.ndarray, class_probs: np.ndarray, mrcnn_mask: np.ndarray,
                      original_image_shape: Sequence[int], image_shape: Sequence[int], window
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One image's network outputs -> matterport's result arrays at the original image size.

    Args:
        detections: [D, (y1, x1, y2, x2, class_id, score)], boxes normalised to the molded frame; rows with
            ``class_id == 0`` are padding (after the real ones).
        class_probs: [D, C].
        mrcnn_mask: [D, mask_h, mask_w] probabilities.
        original_image_shape: [H, W, C] before resizing.
        image_shape: [H, W, C] molded.
        window: [4] pixel window of the real image inside the molded one.

    Returns:
        rois int32 [N, (y1, x1, y2, x2)] pixels of the original image, class_ids int32 [N], scores float32 [N],
        masks bool [H, W, N], class_probs float32 [N, C].
    """
    from .boxes import denorm_boxes, norm_boxes  # mrcnn.boxes imports TensorFlow: only when decoding.

    n = int(np.sum(detections[:, 4] > 0))
    boxes = detections[:n, :4]
    class_ids = detections[:n, 4].astype(np.int32)
    scores = detections[:n, 5].astype(np.float32)
    masks = mrcnn_mask[:n]
    probs = class_probs[:n].astype(np.float32)
    # Normalised coordinates of the molded image -> normalised coordinates of the window -> pixels.
    wy1, wx1, wy2, wx2 = norm_boxes(window, image_shape[:2])
    wh, ww = wy2 - wy1, wx2 - wx1
    boxes = np.divide(boxes - np.array([wy1, wx1, wy1, wx1]), np.array([wh, ww, wh, ww]))
    boxes = denorm_boxes(boxes, original_image_shape[:2])
    # Drop boxes with no area (they appear when a box is clipped to the window edge).
    keep = np.where((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0)[0]
    boxes, class_ids, scores, masks, probs = boxes[keep], class_ids[keep], scores[keep], masks[keep], probs[keep]
    # Paste each mask into its own contiguous plane, then view the stack as [H, W, N] (no copy).
    full_masks = np.zeros((len(boxes),) + tuple(original_image_shape[:2]), dtype=bool)
    for i in range(len(boxes)):
        unmold_mask(masks[i], boxes[i], original_image_shape, out=full_masks[i])
    full_masks = np.moveaxis(full_masks, 0, -1)
    return boxes.astype(np.int32), class_ids, scores, full_masks, probs
