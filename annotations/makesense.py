"""Convert a makesense.ai polygon export (COCO JSON or VGG JSON) into a clean COCO file.

Command line::

    python -m annotations.makesense labels_my-project_2024-05-01-10-12-33.json --images data/images --out train.json

Python::

    from annotations import convert, write_coco

    coco = convert("labels.json", "data/images", category_map=["lesion"])
    write_coco(coco, "train.json")

The format is detected from the content: a JSON object with ``images``/``annotations``/``categories`` is a COCO
export; an object of per-file entries with ``regions`` (or a VIA 2 project with ``_via_img_metadata``) is a VGG
export. Rectangle, point, line and tag exports (YOLO ``.zip``/``.txt``, VOC ``.xml``, ``.csv``, a COCO file with
boxes but no segmentation) are refused with :class:`RectangleExportError`: masks need polygon labels. The field by
field description of every export is in ``docs/makesense-formats.md``.

The output is plain COCO that ``pycocotools.coco.COCO`` loads: ``info`` (description, url, version, year,
contributor, date_created), ``licenses`` (empty), ``images`` (``id``, ``file_name``, ``width``, ``height``),
``annotations`` (``id``, ``image_id``, ``category_id``, ``segmentation`` as a list of polygon rings, ``area``,
``bbox`` as ``[x, y, width, height]``, ``iscrowd`` 0) and ``categories`` (``id``, ``name``, ``supercategory``).

Behaviour for the ambiguous cases:

- **Ids.** Images and annotations are renumbered 1, 2, ... in export order (makesense numbers annotations from 0,
  which pycocotools mishandles). Category ids are kept as exported (makesense numbers them 1..K in its label list
  order) unless ``category_map`` fixes them; VGG labels are numbered in order of first appearance. A category id
  that is not an integer (``1.5``) is an error, and so is a COCO annotation whose ``image_id`` is not among the
  images: makesense exports only annotations of the images it lists, so the file is damaged or was edited.
- **Categories.** Every category is kept, used or not, so ids stay stable between exports of the same project;
  unused ones are listed in the report. With ``category_map``, the output categories are exactly the map and a
  used export label missing from it is an error.
- **Unlabelled polygons** (COCO annotation without ``category_id``, VGG region without a label) go to
  ``default_category`` when given, else to the only category when there is exactly one, else they are dropped;
  either way a warning names the image file and the annotation.
- **Geometry.** Vertices are clamped to ``[0, width] x [0, height]`` (one warning names the export, the images and
  the annotations); a ring wholly outside its image is an error that lists every such annotation (export file,
  image file, annotation), since its coordinates belong to another image or size; repeated consecutive vertices and the
  closing vertex (VGG repeats the first vertex at the end) are removed; rings with fewer than 3 distinct vertices
  or zero area are dropped with a warning, and so is an annotation whose polygon covers no pixel when rasterised.
  ``bbox`` is the extent of the cleaned vertices; ``area`` is the pixel count of the rasterised polygon, i.e. the
  area of the mask ``COCO.annToMask`` returns, so the two always agree.
- **Images.** File names are matched case-exactly against the files in the images folder; missing files are an
  error that lists them (with case-only near matches). Width and height are read from the image file with its
  EXIF orientation applied (as the browser shows it and as ``mrcnn.dataset.read_image`` loads it); a COCO export
  whose recorded size differs is an error, because its polygons would not line up with the image.
- **Empty images.** An exported image whose every annotation was dropped is removed (with a warning), never turned
  into a negative. Images without labels (not in the export, or listed with no annotation by old makesense
  versions) are added, with no annotation, only with ``include_unlabelled``.
- A conversion that ends with no annotation at all is an error, so ``--out`` is never written with an empty set.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import sys
import unicodedata
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from annotations import __all__ as _PACKAGE_NAMES
from mrcnn.atomic import atomic_path
from mrcnn.dataset import ImageReadError, OutsideImageError, clamp_ring, read_image_header

# The package's names (annotations.__all__, imported from here on first use), and the command line's.
__all__ = [*_PACKAGE_NAMES, "IMAGE_EXTENSIONS", "main"]

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
"""File extensions (compared case-insensitively) that ``include_unlabelled`` treats as images."""

_MAX_LISTED = 10  # How many file names an error message lists before "and N more".
_POLYGON_ADVICE = (
    "masks need polygon labels: in makesense.ai draw polygons and use 'Export Annotations' > "
    "'Single file in COCO JSON format' (or 'VGG JSON format')"
)


class MakesenseError(ValueError):
    """A makesense.ai export that cannot be converted; the message names the file and the problem."""


class RectangleExportError(MakesenseError):
    """A rectangle, point, line or tag export (YOLO, VOC XML, CSV, COCO boxes): masks need polygon labels."""


class MissingImageError(MakesenseError):
    """Images referenced by the export are not in the images folder."""


class ImageSizeMismatchError(MakesenseError):
    """The width/height recorded in a COCO export differ from the image file's (EXIF-oriented) size."""


class DegeneratePolygonError(MakesenseError):
    """A polygon ring that encloses no area: too few distinct vertices, collinear vertices or bad coordinates."""


class PolygonOutsideImageError(MakesenseError):
    """A polygon ring that lies wholly outside its image: its coordinates are another image's (or another size's)."""


class MakesenseWarning(UserWarning):
    """Something was dropped, defaulted or clamped during a conversion; the message names the image file."""


@dataclass
class ConversionReport:
    """What a conversion did, for the command-line summary and for tests.

    Attributes:
        export_format: ``"coco"`` or ``"vgg"``.
        num_images: images in the output (labelled plus added unlabelled ones).
        num_annotations: annotations in the output.
        categories: output category names, in id order.
        unused_categories: output category names with no annotation.
        unlabelled_images_added: images added with no annotation (``include_unlabelled``).
        dropped_annotations: one message per dropped annotation.
        dropped_images: one message per exported image removed because all its annotations were dropped.
        defaulted_annotations: one message per unlabelled polygon given the default category.
        clamped_vertices: vertices moved onto the image border.
        warnings: every warning message, in order.
    """

    export_format: str = ""
    num_images: int = 0
    num_annotations: int = 0
    categories: list[str] = field(default_factory=list)
    unused_categories: list[str] = field(default_factory=list)
    unlabelled_images_added: int = 0
    dropped_annotations: list[str] = field(default_factory=list)
    dropped_images: list[str] = field(default_factory=list)
    defaulted_annotations: list[str] = field(default_factory=list)
    clamped_vertices: int = 0
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        """Records ``message`` and emits it as a :class:`MakesenseWarning`."""
        self.warnings.append(message)
        warnings.warn(message, MakesenseWarning, stacklevel=3)

    def summary(self) -> str:
        """A short human-readable summary (a few lines)."""
        lines = [
            f"{self.export_format.upper()} export: {self.num_images} images "
            f"({self.unlabelled_images_added} unlabelled added), {self.num_annotations} annotations, "
            f"{len(self.categories)} categories ({', '.join(self.categories)})",
            f"dropped: {len(self.dropped_annotations)} annotations, {len(self.dropped_images)} images; "
            f"defaulted category: {len(self.defaulted_annotations)}; clamped vertices: {self.clamped_vertices}",
        ]
        if self.unused_categories:
            lines.append(f"unused categories (kept): {', '.join(self.unused_categories)}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# Pure helpers
# ----------------------------------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    """An integer, also written as a float (``2.0``), but not ``1.5``, NaN or a bool."""
    return _is_number(value) and math.isfinite(value) and float(value).is_integer()


def clean_ring(coords: Sequence[float], width: float, height: float) -> tuple[list[float], int]:
    """Clamps a polygon ring to the image and removes repeated vertices.

    Args:
        coords: flat ring ``[x1, y1, x2, y2, ...]`` in pixels, open (COCO) or closed (VGG, first vertex repeated).
        width: image width in pixels; x is clamped to ``[0, width]``.
        height: image height in pixels; y is clamped to ``[0, height]``.

    Returns:
        ``(ring, clamped)``: the open ring ``[x1, y1, ...]`` as floats, with consecutive duplicates and the
        closing vertex removed, and the number of vertices that were moved onto the border.

    Raises:
        DegeneratePolygonError: odd length, a non-numeric or non-finite coordinate, fewer than 3 distinct
            vertices, or zero area (after clamping).
        PolygonOutsideImageError: the ring lies wholly outside the image (:func:`mrcnn.dataset.outside_image`).
    """
    if len(coords) % 2:
        raise DegeneratePolygonError(f"odd number of coordinates ({len(coords)})")
    for x, y in zip(coords[0::2], coords[1::2]):
        if not (_is_number(x) and _is_number(y)) or not (math.isfinite(x) and math.isfinite(y)):
            raise DegeneratePolygonError(f"bad vertex ({x!r}, {y!r}): coordinates must be finite numbers")
    if not coords:
        raise DegeneratePolygonError("fewer than 3 distinct vertices (0)")
    try:
        flat, clamped = clamp_ring(coords, width, height)
    except OutsideImageError as exc:
        raise PolygonOutsideImageError(str(exc)) from None
    points = list(zip(flat[0::2], flat[1::2]))
    ring: list[tuple[float, float]] = []
    for point in points:
        if not ring or point != ring[-1]:
            ring.append(point)
    while len(ring) > 1 and ring[-1] == ring[0]:  # Closed ring: drop the repeated first vertex.
        ring.pop()
    after = f" after clamping {clamped} vertices to the image border" if clamped else ""
    distinct = len(set(ring))
    if distinct < 3:
        raise DegeneratePolygonError(f"fewer than 3 distinct vertices ({distinct}){after}")
    if abs(polygon_area(ring)) <= 1e-9:
        raise DegeneratePolygonError(f"zero area (all vertices on one line){after}")
    return [c for point in ring for c in point], clamped


def polygon_area(points: Sequence[tuple[float, float]]) -> float:
    """Signed shoelace area of a polygon.

    Args:
        points: open ring of ``(x, y)`` vertices (the first vertex is not repeated at the end).

    Returns:
        The area in square pixels; positive when the vertices turn counter-clockwise in x-right, y-up axes.
    """
    n = len(points)
    return 0.5 * sum(points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1] for i in range(n))


def _rasterised_area(rings: list[list[float]], width: int, height: int) -> int:
    """Pixel count of the union of ``rings`` rasterised as ``COCO.annToMask`` does."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.merge(mask_utils.frPyObjects(rings, height, width))
    return int(mask_utils.area(rle))


def _bbox(rings: list[list[float]]) -> list[float]:
    """COCO ``[x, y, width, height]`` extent of the vertices of ``rings``."""
    xs = [x for ring in rings for x in ring[0::2]]
    ys = [y for ring in rings for y in ring[1::2]]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


# ----------------------------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------------------------


def _probe(path: str) -> tuple[int, int, int, int, int]:
    """``(width, height, stored_width, stored_height, orientation)`` of an image (:func:`read_image_header`)."""
    try:
        header = read_image_header(path)
    except ImageReadError as exc:
        raise MakesenseError(_one_line(exc)) from exc
    return (header.width, header.height, *header.stored_size, header.orientation)


def image_size(path: str) -> tuple[int, int]:
    """Width and height of an image as a browser shows it, i.e. with its EXIF orientation applied.

    Reads only the header; the result equals ``PIL.ImageOps.exif_transpose(Image.open(path)).size``.

    Args:
        path: image file.

    Returns:
        ``(width, height)`` in pixels.

    Raises:
        MakesenseError: the file is not a readable image.
    """
    width, height, _, _, _ = _probe(path)
    return width, height


class _ImageFolder:
    """Case-exact lookup of file names in the images folder (also on case-insensitive file systems)."""

    def __init__(self, root: str):
        if not os.path.isdir(root):
            raise MakesenseError(f"{root}: the images folder does not exist or is not a folder")
        self.root = root
        self._listings: dict[str, list[str]] = {}

    def _names(self, subdir: str) -> list[str]:
        if subdir not in self._listings:
            directory = os.path.join(self.root, subdir)
            try:
                names = sorted(n for n in os.listdir(directory) if os.path.isfile(os.path.join(directory, n)))
            except OSError:
                names = []
            self._listings[subdir] = names
        return self._listings[subdir]

    def path(self, file_name: str) -> str | None:
        """Full path of ``file_name`` when a file of exactly that name exists, else None."""
        subdir, base = os.path.split(file_name)
        return os.path.join(self.root, file_name) if base in self._names(subdir) else None

    def near_matches(self, file_name: str) -> list[str]:
        """Files whose names differ from ``file_name`` only by case or Unicode normalisation."""
        subdir, base = os.path.split(file_name)
        key = unicodedata.normalize("NFC", base).casefold()
        return [
            os.path.join(subdir, n) for n in self._names(subdir) if unicodedata.normalize("NFC", n).casefold() == key
        ]

    def image_files(self) -> list[str]:
        """Top-level files with an image extension, sorted by name."""
        return [n for n in self._names("") if not n.startswith(".") and n.lower().endswith(IMAGE_EXTENSIONS)]


# ----------------------------------------------------------------------------------------------------------------
# Reading and detecting the export
# ----------------------------------------------------------------------------------------------------------------

_RECT_EXTENSIONS = {
    ".zip": "a makesense.ai YOLO or VOC XML zip (rectangle labels)",
    ".xml": "a VOC XML file (rectangle labels)",
    ".csv": "a makesense.ai CSV export (rectangle, point, line or tag labels)",
    ".txt": "a YOLO text file (rectangle labels)",
}
_YOLO_LINE = re.compile(r"^\s*\d+(\s+[-+0-9.eE]+){4}\s*$")


def _refuse(export_path: str, what: str) -> RectangleExportError:
    return RectangleExportError(f"{export_path}: this is {what}; {_POLYGON_ADVICE}")


def _sniff_non_json(export_path: str, raw: bytes) -> MakesenseError:
    """The error for an export that is not JSON: a rectangle export when recognisable, else a parse error."""
    if raw.startswith(b"PK\x03\x04"):
        return _refuse(export_path, _RECT_EXTENSIONS[".zip"])
    text = raw.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if text.startswith("<"):
        return _refuse(export_path, _RECT_EXTENSIONS[".xml"])
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and all(_YOLO_LINE.match(line) for line in lines):
        return _refuse(export_path, _RECT_EXTENSIONS[".txt"])
    if lines and lines[0].count(",") >= 2:
        return _refuse(export_path, _RECT_EXTENSIONS[".csv"])
    return MakesenseError(f"{export_path}: not a JSON file; expected a makesense.ai COCO JSON or VGG JSON export")


def _load_json(export_path: str) -> Any:
    if not os.path.isfile(export_path):
        raise MakesenseError(f"{export_path}: no such export file")
    ext = os.path.splitext(export_path)[1].lower()
    if ext in _RECT_EXTENSIONS:
        raise _refuse(export_path, _RECT_EXTENSIONS[ext])
    with open(export_path, "rb") as f:
        raw = f.read()
    if not raw.strip():
        raise MakesenseError(f"{export_path}: the export file is empty")
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _sniff_non_json(export_path, raw) from None
    except RecursionError:
        message = f"{export_path}: the JSON is nested too deeply to read; not a makesense.ai export"
        raise MakesenseError(message) from None


def detect_format(data: Any, export_path: str = "<export>") -> str:
    """Tells a makesense.ai COCO export from a VGG one by its content.

    Args:
        data: the parsed JSON of the export.
        export_path: file name used in error messages.

    Returns:
        ``"coco"`` or ``"vgg"``.

    Raises:
        RectangleExportError: an image-tag export, or a COCO file whose annotations have boxes but no polygons.
        MakesenseError: anything else that is not a polygon export.
    """
    if isinstance(data, list):
        if all(isinstance(d, dict) and "image" in d for d in data):
            raise _refuse(export_path, "a makesense.ai image-tag JSON export (no shapes)")
        raise MakesenseError(f"{export_path}: a JSON list is not a makesense.ai COCO or VGG export")
    if not isinstance(data, dict):
        raise MakesenseError(f"{export_path}: expected a JSON object (a makesense.ai COCO or VGG export)")
    if "images" in data and "annotations" in data:
        annotations = data["annotations"]
        if isinstance(annotations, list) and annotations:
            has_polygon = any(isinstance(a, dict) and a.get("segmentation") for a in annotations)
            has_box = any(isinstance(a, dict) and a.get("bbox") for a in annotations)
            if has_box and not has_polygon:
                raise _refuse(export_path, "a COCO file with bounding boxes but no segmentation (rectangle labels)")
        return "coco"
    metadata = data.get("_via_img_metadata", data)
    if not metadata and "_via_img_metadata" not in data:
        raise MakesenseError(f"{export_path}: the export is empty (no labelled image)")
    if isinstance(metadata, dict) and all(
        isinstance(v, dict) and ("regions" in v or "filename" in v) for v in metadata.values()
    ):
        shape_names = []
        for item in metadata.values():
            regions = item.get("regions", {})
            regions = regions.values() if isinstance(regions, dict) else regions if isinstance(regions, list) else []
            for region in regions:
                attrs = region.get("shape_attributes") if isinstance(region, dict) else None
                shape_names.append(attrs.get("name") if isinstance(attrs, dict) else None)
        if shape_names and all(name == "rect" for name in shape_names):
            raise _refuse(export_path, "a VGG file with rectangle regions only")
        return "vgg"
    raise MakesenseError(
        f"{export_path}: not a makesense.ai COCO export (keys images, annotations, categories) "
        "nor a VGG export (an object of per-file entries with regions)"
    )


# ----------------------------------------------------------------------------------------------------------------
# The common intermediate form: per image, a list of shapes
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class _Shape:
    ref: str  # "annotation id 3" / "region '2'", for messages.
    rings: list[Any]  # Raw flat rings, checked later.
    label: str | None = None  # VGG: the label name; COCO: the export category name.
    problem: str | None = None  # Set when the shape must be dropped whatever happens.


@dataclass
class _Entry:
    file_name: str
    width: Any = None  # COCO only: recorded size.
    height: Any = None
    size_bytes: Any = None  # VGG only: recorded file size.
    shapes: list[_Shape] = field(default_factory=list)


def _parse_coco(data: dict, export_path: str, report: ConversionReport) -> tuple[list[_Entry], list[dict]]:
    """COCO export -> entries and the export's categories ``[{"id", "name"}]``."""
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise MakesenseError(f"{export_path}: the COCO key {key!r} is missing or not a list")
    categories: list[dict] = []
    for cat in data["categories"]:
        if not (isinstance(cat, dict) and _is_integer(cat.get("id")) and isinstance(cat.get("name"), str)):
            raise MakesenseError(f"{export_path}: bad category {cat!r}: needs an integer 'id' and a string 'name'")
        categories.append({"id": int(cat["id"]), "name": cat["name"]})
    ids = [c["id"] for c in categories]
    if len(set(ids)) != len(ids):
        raise MakesenseError(f"{export_path}: duplicate category ids {sorted(ids)}")
    cat_names = {c["id"]: c["name"] for c in categories}

    entries: dict[Any, _Entry] = {}
    seen_names: set[str] = set()
    for image in data["images"]:
        if not (isinstance(image, dict) and "id" in image and isinstance(image.get("file_name"), str)):
            raise MakesenseError(f"{export_path}: bad image entry {image!r}: needs 'id' and a string 'file_name'")
        if image["id"] in entries:
            raise MakesenseError(f"{export_path}: duplicate image id {image['id']!r}")
        if image["file_name"] in seen_names:
            raise MakesenseError(f"{export_path}: image file {image['file_name']!r} is listed twice")
        seen_names.add(image["file_name"])
        entries[image["id"]] = _Entry(image["file_name"], image.get("width"), image.get("height"))

    for index, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise MakesenseError(f"{export_path}: annotation #{index} is not an object")
        ref = f"annotation id {ann['id']}" if "id" in ann else f"annotation #{index} (no id)"
        image_id = ann.get("image_id")
        entry = entries.get(image_id) if isinstance(image_id, (int, float, str)) else None
        if entry is None:  # makesense exports only annotations of the images they list (docs/makesense-formats.md).
            raise MakesenseError(f"{export_path}: {ref}: image_id {image_id!r} is not in 'images'; the export is "
                                 "damaged or was edited")
        segmentation = ann.get("segmentation")
        shape = _Shape(ref, segmentation if isinstance(segmentation, list) else [])
        if isinstance(segmentation, dict):
            shape.problem = "RLE segmentation (not a makesense.ai polygon)"
        elif not segmentation:
            shape.problem = "no segmentation polygon (a rectangle label?)"
        elif not all(isinstance(ring, list) for ring in segmentation):
            shape.problem = "segmentation is not a list of polygon rings"
        if ann.get("iscrowd") not in (None, 0):
            report.warn(f"{entry.file_name}: {ref}: iscrowd={ann['iscrowd']!r} written as iscrowd 0")
        if "category_id" in ann and ann["category_id"] is not None:
            if not _is_integer(ann["category_id"]):
                raise MakesenseError(f"{export_path}: {ref} (image {entry.file_name!r}): category_id "
                                     f"{ann['category_id']!r} is not an integer category id")
            if ann["category_id"] in cat_names:
                shape.label = cat_names[ann["category_id"]]
            else:
                shape.problem = shape.problem or f"category_id {ann['category_id']!r} is not in 'categories'"
        entry.shapes.append(shape)
    return list(entries.values()), categories


def _vgg_regions(regions: Any, where: str) -> list[tuple[str, Any]]:
    if isinstance(regions, list):
        return [(str(i), r) for i, r in enumerate(regions)]
    if isinstance(regions, dict):
        items = list(regions.items())
        if all(k.isdigit() for k, _ in items):
            items.sort(key=lambda kv: int(kv[0]))
        return items
    raise MakesenseError(f"{where}: 'regions' must be an object or a list, not {type(regions).__name__}")


def _parse_vgg(data: dict, export_path: str) -> list[_Entry]:
    """VGG (VIA 1 / VIA 2) export -> entries; ``_Shape.label`` is the region's label name."""
    metadata = data.get("_via_img_metadata", data)
    if not isinstance(metadata, dict):
        raise MakesenseError(f"{export_path}: '_via_img_metadata' must be an object")
    entries: list[_Entry] = []
    seen: set[str] = set()
    for key, item in metadata.items():
        if not isinstance(item, dict):
            raise MakesenseError(f"{export_path}: entry {key!r} is not an object")
        file_name = item.get("filename", key)
        if not isinstance(file_name, str) or not file_name:
            raise MakesenseError(f"{export_path}: entry {key!r} has no file name")
        if file_name in seen:
            raise MakesenseError(f"{export_path}: image file {file_name!r} is listed twice")
        seen.add(file_name)
        entry = _Entry(file_name, size_bytes=item.get("size"))
        for region_key, region in _vgg_regions(item.get("regions", {}), f"{export_path}: {file_name}"):
            shape = _Shape(f"region {region_key!r}", [])
            attrs = region.get("shape_attributes") if isinstance(region, dict) else None
            labels = region.get("region_attributes") if isinstance(region, dict) else None
            if not isinstance(attrs, dict):
                shape.problem = "no shape_attributes"
            elif attrs.get("name") != "polygon":
                shape.problem = f"a {attrs.get('name')!r} shape, not a polygon"
            else:
                xs, ys = attrs.get("all_points_x"), attrs.get("all_points_y")
                if not (isinstance(xs, list) and isinstance(ys, list)) or len(xs) != len(ys):
                    shape.problem = "all_points_x and all_points_y are not two lists of the same length"
                else:
                    shape.rings = [[c for xy in zip(xs, ys) for c in xy]]
            label = labels.get("label") if isinstance(labels, dict) else None
            if isinstance(label, str) and label.strip():
                shape.label = label
            entry.shapes.append(shape)
        entries.append(entry)
    return entries


# ----------------------------------------------------------------------------------------------------------------
# Categories
# ----------------------------------------------------------------------------------------------------------------


def _normalise_category_map(category_map: Sequence[str] | Mapping[str, int]) -> dict[str, int]:
    if isinstance(category_map, Mapping):
        mapping = dict(category_map)
    elif isinstance(category_map, str):
        raise MakesenseError("category_map: give a list of names (or a name -> id mapping), not a single string")
    else:
        names = list(category_map)
        if len(set(names)) != len(names):
            raise MakesenseError(f"category_map: duplicate names in {names}")
        mapping = {name: i + 1 for i, name in enumerate(names)}
    if not mapping:
        raise MakesenseError("category_map: is empty")
    for name, cid in mapping.items():
        if not isinstance(name, str) or not name:
            raise MakesenseError(f"category_map: category names must be non-empty strings, got {name!r}")
        if not isinstance(cid, int) or isinstance(cid, bool) or cid < 1:
            raise MakesenseError(f"category_map: id of {name!r} must be an integer >= 1, got {cid!r}")
    if len(set(mapping.values())) != len(mapping):
        raise MakesenseError(f"category_map: duplicate ids in {mapping}")
    return mapping


def _output_categories(
    entries: list[_Entry],
    export_categories: list[dict] | None,
    category_map: Sequence[str] | Mapping[str, int] | None,
    export_path: str,
    report: ConversionReport,
) -> dict[str, int]:
    """Name -> output id, in id order. Raises when a used label is not in ``category_map``."""
    used: dict[str, str] = {}  # label -> first file using it
    for entry in entries:
        for shape in entry.shapes:
            if shape.label is not None and shape.problem is None:
                used.setdefault(shape.label, entry.file_name)
    if category_map is not None:
        mapping = _normalise_category_map(category_map)
        unknown = [label for label in used if label not in mapping]
        if unknown:
            examples = ", ".join(f"{label!r} (e.g. in {used[label]})" for label in unknown)
            raise MakesenseError(
                f"{export_path}: labels {examples} are not in the category list {list(mapping)}; "
                "add them to the categories or relabel"
            )
        ignored = [c["name"] for c in export_categories or [] if c["name"] not in mapping]
        if ignored:
            report.warn(f"{export_path}: unused export categories not in the category list, ignored: {ignored}")
        return dict(sorted(mapping.items(), key=lambda kv: kv[1]))
    if export_categories is None:  # VGG: number labels in order of first appearance.
        return {label: i + 1 for i, label in enumerate(used)}
    names = [c["name"] for c in export_categories]
    if len(set(names)) != len(names):
        raise MakesenseError(f"{export_path}: duplicate category names {names}; give a category list to merge them")
    if all(c["id"] >= 1 for c in export_categories):
        return {c["name"]: c["id"] for c in sorted(export_categories, key=lambda c: c["id"])}
    report.warn(f"{export_path}: category ids {[c['id'] for c in export_categories]} renumbered 1.. (0 is background)")
    return {c["name"]: i + 1 for i, c in enumerate(sorted(export_categories, key=lambda c: c["id"]))}


# ----------------------------------------------------------------------------------------------------------------
# Conversion
# ----------------------------------------------------------------------------------------------------------------


def _info(export_path: str, data: Any, export_format: str) -> dict:
    base = os.path.basename(export_path)
    match = re.match(r"^labels_(.+)_(\d{4})-?(\d{2})-?(\d{2})-?\d{2}-?\d{2}-?\d{2}\.json$", base)
    project = match.group(1) if match else os.path.splitext(base)[0]
    if export_format == "coco" and isinstance(data.get("info"), dict):
        project = str(data["info"].get("description") or project)
    if match:
        year, month, day = (int(g) for g in match.groups()[1:])
    else:
        date = datetime.date.fromtimestamp(os.path.getmtime(export_path))
        year, month, day = date.year, date.month, date.day
    return {
        "description": f"{project} (makesense.ai {export_format.upper()} export {base})",
        "url": "",
        "version": "1.0",
        "year": year,
        "contributor": "",
        "date_created": f"{year:04d}/{month:02d}/{day:02d}",
    }


def _check_images(
    entries: list[_Entry], folder: _ImageFolder, export_format: str, report: ConversionReport
) -> dict[str, tuple[int, int]]:
    """Case-exact existence and size checks; returns file name -> (width, height) with EXIF orientation applied."""
    missing = [e.file_name for e in entries if folder.path(e.file_name) is None]
    if missing:
        hints = []
        for name in missing:
            near = folder.near_matches(name)
            if near:
                hints.append(f"{name!r} differs only in case from {', '.join(repr(n) for n in near)}")
        hint = f" ({'; '.join(hints[:_MAX_LISTED])}: file names must match exactly)" if hints else ""
        raise MissingImageError(
            f"{len(missing)} image(s) named in the export are not in {folder.root}: {_listing(missing)}{hint}"
        )
    sizes: dict[str, tuple[int, int]] = {}
    mismatches = []
    for entry in entries:
        path = folder.path(entry.file_name)
        width, height, stored_w, stored_h, orientation = _probe(path)
        sizes[entry.file_name] = (width, height)
        if export_format == "coco":
            recorded = (entry.width, entry.height)
            if not all(_is_number(v) for v in recorded):
                report.warn(f"{entry.file_name}: no width/height in the export; using the file's {width}x{height}")
            elif recorded != (width, height):
                why = (
                    f"the export has the unrotated size, so it was labelled where the EXIF orientation "
                    f"{orientation} was ignored"
                    if recorded == (stored_w, stored_h)
                    else "the image file is not the one that was labelled"
                )
                mismatches.append(
                    f"{entry.file_name}: export {recorded[0]}x{recorded[1]}, file {width}x{height} ({why})"
                )
        elif _is_number(entry.size_bytes) and entry.size_bytes > 0 and entry.size_bytes != os.path.getsize(path):
            report.warn(
                f"{entry.file_name}: the export records {entry.size_bytes} bytes but the file has "
                f"{os.path.getsize(path)}; it may have been re-saved since labelling"
            )
    if mismatches:
        raise ImageSizeMismatchError(
            f"width x height in the export differ from the image files in {folder.root} (EXIF orientation applied), "
            f"so the polygons would not line up: {'; '.join(mismatches[:_MAX_LISTED])}"
            + (f" and {len(mismatches) - _MAX_LISTED} more" if len(mismatches) > _MAX_LISTED else "")
        )
    return sizes


def convert_with_report(
    export_path: str | os.PathLike,
    images_dir: str | os.PathLike,
    category_map: Sequence[str] | Mapping[str, int] | None = None,
    *,
    include_unlabelled: bool = False,
    default_category: str | None = None,
) -> tuple[dict, ConversionReport]:
    """Converts a makesense.ai polygon export and says what was dropped, defaulted and clamped.

    Args:
        export_path: the makesense.ai COCO JSON or VGG JSON export (the format is detected from the content).
        images_dir: the folder holding the labelled images; file names must match the export exactly.
        category_map: output categories, either a list of names (ids 1, 2, ... in order) or a name -> id mapping.
            None keeps the COCO export's categories, or numbers VGG labels in order of first appearance.
        include_unlabelled: also add every image file in ``images_dir`` that has no annotation in the export, as
            an image with no annotation (a negative example).
        default_category: category name given to unlabelled polygons. None gives them the only category when
            there is exactly one, else drops them.

    Returns:
        ``(coco, report)``: the COCO dict (see the module docstring) and a :class:`ConversionReport`.

    Raises:
        RectangleExportError: a rectangle, point, line or tag export.
        MissingImageError: images named in the export are not in ``images_dir``.
        ImageSizeMismatchError: a COCO export records another width/height than the image file.
        PolygonOutsideImageError: polygons lie wholly outside their image (every one is listed).
        MakesenseError: any other unusable export, or no annotation left after cleaning.
    """
    export_path = os.fspath(export_path)
    folder = _ImageFolder(os.fspath(images_dir))
    data = _load_json(export_path)
    export_format = detect_format(data, export_path)
    report = ConversionReport(export_format=export_format)
    if export_format == "coco":
        entries, export_categories = _parse_coco(data, export_path, report)
    else:
        entries, export_categories = _parse_vgg(data, export_path), None

    categories = _output_categories(entries, export_categories, category_map, export_path, report)
    if default_category is not None and default_category not in categories:
        raise MakesenseError(f"default category {default_category!r} is not one of the categories {list(categories)}")
    fallback = default_category or (next(iter(categories)) if len(categories) == 1 else None)

    labelled = [e for e in entries if e.shapes]
    listed_unlabelled = [e for e in entries if not e.shapes]  # Old makesense versions list every loaded image.
    to_check = labelled + (listed_unlabelled if include_unlabelled else [])
    sizes = _check_images(to_check, folder, export_format, report)

    images: list[dict] = []
    annotations: list[dict] = []
    clamped_annotations: list[str] = []  # "<file name> (<annotation>)" of each annotation with clamped vertices.
    outside: list[str] = []  # "<file name>: <annotation>: <ring>: <problem>" of each ring wholly outside its image.
    for entry in labelled:
        width, height = sizes[entry.file_name]
        image_id = len(images) + 1
        kept: list[dict] = []
        for shape in entry.shapes:
            where = f"{entry.file_name}: {shape.ref}"
            if shape.problem is None and shape.label is None:
                if fallback is None:
                    shape.problem = f"no label, and {len(categories)} categories to choose from"
                else:
                    message = f"{where}: no label; given the category {fallback!r}"
                    report.defaulted_annotations.append(message)
                    report.warn(message)
                    shape.label = fallback
            rings: list[list[float]] = []
            clamped = 0
            if shape.problem is None:
                reasons = []
                for i, ring in enumerate(shape.rings):
                    try:
                        cleaned, n = clean_ring(ring, width, height)
                    except PolygonOutsideImageError as exc:
                        outside.append(f"{where}" + (f": ring {i}" if len(shape.rings) > 1 else "") + f": {exc}")
                        continue
                    except DegeneratePolygonError as exc:
                        reasons.append(f"ring {i}: {exc}" if len(shape.rings) > 1 else str(exc))
                        continue
                    rings.append(cleaned)
                    clamped += n
                if reasons and rings:
                    report.warn(f"{where}: dropped degenerate ring(s) of a multi-ring polygon: {'; '.join(reasons)}")
                elif not rings:
                    shape.problem = "; ".join(reasons) or "no polygon ring"
            area = _rasterised_area(rings, width, height) if shape.problem is None else 0
            if shape.problem is None and area == 0:
                shape.problem = "the polygon covers no pixel when rasterised"
            if shape.problem is not None:
                message = f"{where}: {shape.problem}; dropped"
                report.dropped_annotations.append(message)
                report.warn(message)
                continue
            report.clamped_vertices += clamped
            if clamped:
                clamped_annotations.append(f"{entry.file_name} ({shape.ref})")
            kept.append(
                {
                    "id": len(annotations) + len(kept) + 1,
                    "image_id": image_id,
                    "category_id": categories[shape.label],
                    "segmentation": rings,
                    "area": float(area),
                    "bbox": _bbox(rings),
                    "iscrowd": 0,
                }
            )
        if not kept:
            message = f"{entry.file_name}: every annotation was dropped, so the image is left out (not a negative)"
            report.dropped_images.append(message)
            report.warn(message)
            continue
        images.append({"id": image_id, "file_name": entry.file_name, "width": width, "height": height})
        annotations.extend(kept)
    if outside:
        raise PolygonOutsideImageError(
            f"{export_path}: {len(outside)} polygon(s) lie wholly outside their image, so the export does not match "
            f"the images in {folder.root}: {'; '.join(outside[:_MAX_LISTED])}"
            + (f" and {len(outside) - _MAX_LISTED} more" if len(outside) > _MAX_LISTED else "")
        )
    if report.clamped_vertices:
        shown = ", ".join(clamped_annotations[:5]) + (
            f" and {len(clamped_annotations) - 5} more" if len(clamped_annotations) > 5 else ""
        )
        report.warn(
            f"{export_path}: clamped {report.clamped_vertices} vertices outside their image onto the border "
            f"in {len(clamped_annotations)} annotations: {shown}"
        )
    if not annotations:
        raise MakesenseError(f"{export_path}: no usable polygon annotation left after cleaning; nothing to write")

    if include_unlabelled:
        in_export = {e.file_name for e in entries}
        extra = [e.file_name for e in listed_unlabelled] + [n for n in folder.image_files() if n not in in_export]
        for file_name in extra:
            if file_name not in sizes:
                sizes[file_name] = image_size(folder.path(file_name))
            width, height = sizes[file_name]
            images.append({"id": len(images) + 1, "file_name": file_name, "width": width, "height": height})
            report.unlabelled_images_added += 1

    used_ids = {a["category_id"] for a in annotations}
    report.num_images = len(images)
    report.num_annotations = len(annotations)
    report.categories = list(categories)
    report.unused_categories = [name for name, cid in categories.items() if cid not in used_ids]
    coco = {
        "info": _info(export_path, data, export_format),
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cid, "name": name, "supercategory": ""} for name, cid in categories.items()],
    }
    return coco, report


def convert(
    export_path: str | os.PathLike,
    images_dir: str | os.PathLike,
    category_map: Sequence[str] | Mapping[str, int] | None = None,
    *,
    include_unlabelled: bool = False,
    default_category: str | None = None,
) -> dict:
    """Converts a makesense.ai polygon export (COCO JSON or VGG JSON) into a clean COCO dict.

    Warnings about dropped, defaulted or clamped annotations are emitted as :class:`MakesenseWarning`; use
    :func:`convert_with_report` to get them as a report.

    Args:
        export_path: the makesense.ai COCO JSON or VGG JSON export (the format is detected from the content).
        images_dir: the folder holding the labelled images; file names must match the export exactly.
        category_map: output categories, either a list of names (ids 1, 2, ... in order) or a name -> id mapping.
            None keeps the COCO export's categories, or numbers VGG labels in order of first appearance.
        include_unlabelled: also add every image file in ``images_dir`` that has no annotation in the export.
        default_category: category name given to unlabelled polygons (None: the only category, if just one).

    Returns:
        The COCO dict: ``info``, ``licenses``, ``images``, ``annotations``, ``categories``.

    Raises:
        MakesenseError: see :func:`convert_with_report`.
    """
    coco, _ = convert_with_report(
        export_path,
        images_dir,
        category_map,
        include_unlabelled=include_unlabelled,
        default_category=default_category,
    )
    return coco


def write_coco(coco: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Writes a COCO dict as JSON atomically: a temporary file in the same folder, then ``os.replace``.

    A failure leaves an existing ``path`` untouched. Missing parent folders are created.

    Args:
        coco: the COCO dict (e.g. from :func:`convert`).
        path: destination file.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(coco, f, separators=(",", ":"), allow_nan=False)
            f.write("\n")


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def _category_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"empty category name in {text!r}")
    return names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m annotations.makesense",
        description="Convert a makesense.ai polygon export (COCO JSON or VGG JSON) into a clean COCO file.",
    )
    parser.add_argument("export", help="the makesense.ai export (labels_<project>_<date>.json)")
    parser.add_argument("--images", required=True, metavar="DIR", help="folder with the labelled images")
    parser.add_argument("--out", required=True, metavar="COCO.json", help="output COCO file (written atomically)")
    parser.add_argument(
        "--categories",
        type=_category_list,
        metavar="NAME,NAME,...",
        help="comma-separated output categories in id order (ids 1, 2, ...); default: the export's",
    )
    parser.add_argument("--default-category", metavar="NAME", help="category for polygons without a label")
    parser.add_argument(
        "--include-unlabelled",
        action="store_true",
        help="add image files of --images that have no label as images without annotations (negatives)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print warnings")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 on success, 1 on a bad export).

    Args:
        argv: arguments without the program name (None: ``sys.argv[1:]``).

    Returns:
        0 when the output was written; 1 (with a one-line ``error:`` message on stderr) otherwise. Argument errors
        exit with status 2 through argparse.
    """
    args = _parser().parse_args(argv)
    try:
        if os.path.exists(args.out) and os.path.samefile(args.out, args.export):
            raise MakesenseError(f"{args.out}: --out is the export itself; choose another output file")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            coco, report = convert_with_report(
                args.export,
                args.images,
                args.categories,
                include_unlabelled=args.include_unlabelled,
                default_category=args.default_category,
            )
        write_coco(coco, args.out)
    except (MakesenseError, OSError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except (KeyError, TypeError, AttributeError, IndexError) as exc:  # A malformed export we did not foresee.
        print(f"error: {args.export}: malformed export ({type(exc).__name__}: {_one_line(exc)})", file=sys.stderr)
        return 1
    if not args.quiet:
        for w in caught:
            print(f"warning: {_one_line(w.message)}", file=sys.stderr)
    print(f"{report.summary()}\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
