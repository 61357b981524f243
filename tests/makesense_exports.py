"""Builders of tiny makesense.ai exports and images for ``tests/test_makesense.py``.

The JSON written here follows ``docs/makesense-formats.md``: minified, COCO key order info/images/annotations/
categories with no ``licenses``, annotation ids from 0, VGG regions keyed "0", "1", ... with closed rings and the
file size in bytes.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

from PIL import Image

__all__ = ["write_image", "coco_export", "coco_annotation", "vgg_export", "vgg_region", "write_json", "SQUARE"]

SQUARE: list[float] = [10, 10, 30, 10, 30, 30, 10, 30]
"""Open ring of the square (10, 10)-(30, 30): rasterises to 20 x 20 = 400 pixels, rows and columns 10..29."""


def write_image(path: str, width: int, height: int, orientation: int | None = None) -> str:
    """Writes a grey image of stored size ``width`` x ``height`` (PNG or JPEG by extension).

    Args:
        path: destination; ``.jpg``/``.jpeg`` gives a JPEG, anything else a PNG.
        width: stored width in pixels.
        height: stored height in pixels.
        orientation: EXIF orientation tag to store (JPEG only); 6 and 8 swap the displayed width and height.

    Returns:
        ``path``.
    """
    image = Image.new("RGB", (width, height), (128, 128, 128))
    if path.lower().endswith((".jpg", ".jpeg")):
        exif = Image.Exif()
        if orientation is not None:
            exif[0x0112] = orientation
        image.save(path, "JPEG", exif=exif)
    else:
        image.save(path, "PNG")
    return path


def write_json(path: str, data: Any) -> str:
    """Writes ``data`` minified, as makesense.ai does, and returns ``path``."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, separators=(",", ":"))
    return path


def coco_annotation(ann_id: int, image_id: int, ring: Sequence[float], category_id: int | None = 1) -> dict:
    """A makesense.ai COCO annotation; ``category_id=None`` leaves the key out (an unlabelled polygon)."""
    xs, ys = ring[0::2], ring[1::2]
    ann: dict[str, Any] = {"id": ann_id, "iscrowd": 0, "image_id": image_id}
    if category_id is not None:
        ann["category_id"] = category_id
    ann["segmentation"] = [list(ring)]
    ann["bbox"] = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
    ann["area"] = 0.5 * abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs))))
    return ann


def coco_export(
    images: Sequence[tuple[str, int, int]], annotations: Sequence[dict], labels: Sequence[str], project: str = "skin"
) -> dict:
    """A makesense.ai COCO export.

    Args:
        images: ``(file_name, width, height)`` per image; ids 1..M in this order.
        annotations: from :func:`coco_annotation`.
        labels: the project's label list; category ids 1..K.
        project: the project name (``info.description``).

    Returns:
        The export as a dict in makesense.ai's key order.
    """
    return {
        "info": {"description": project},
        "images": [{"id": i + 1, "width": w, "height": h, "file_name": n} for i, (n, w, h) in enumerate(images)],
        "annotations": list(annotations),
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(labels)],
    }


def vgg_region(ring: Sequence[float], label: str | None) -> dict:
    """A makesense.ai VGG region: closed ring (first vertex repeated), ``label`` in region_attributes."""
    xs, ys = list(ring[0::2]), list(ring[1::2])
    return {
        "shape_attributes": {"name": "polygon", "all_points_x": xs + xs[:1], "all_points_y": ys + ys[:1]},
        "region_attributes": {} if label is None else {"label": label},
    }


def vgg_export(images_dir: str, regions: dict[str, dict[str, dict] | list[dict]]) -> dict:
    """A makesense.ai VGG export: ``{file_name: {"regions": {key: region}}}`` with sizes in bytes from the files."""
    export = {}
    for file_name, file_regions in regions.items():
        export[file_name] = {
            "fileref": "",
            "size": os.path.getsize(os.path.join(images_dir, file_name)),
            "filename": file_name,
            "base64_img_data": "",
            "file_attributes": {},
            "regions": file_regions,
        }
    return export
