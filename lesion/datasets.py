"""Data sets for the skin-lesion application: ISIC challenge downloads, ISIC 2018 attributes, and any COCO JSON.

All classes build on :class:`mrcnn.dataset.Dataset` (matterport's API: ``load_*`` then ``prepare()``, then
``load_image`` / ``load_mask``).

- :class:`IsicDataset` reads the official folder layouts of the ISIC 2016, 2017 and 2018 (Task 1) challenges, with
  one instance per image: the lesion (mask pixel > 127; a 0/1 mask is read as binary). Classes are either
  ``LESION_CLASSES`` (one class) or ``DIAGNOSIS_CLASSES`` (the ISIC 2017 Part 3 diagnosis as the instance class).
- :class:`IsicAttributeDataset` reads the ISIC 2018 Task 2 dermoscopic attribute masks as a five-class instance task.
- :class:`CocoDataset` reads any COCO JSON with its image folder (pycocotools); it lives in :mod:`mrcnn.coco` and
  is re-exported here.
- :func:`split_ids` gives a deterministic, optionally stratified, train/validation split of image ids;
  :func:`validation_split` is the project's split of a data set (or ids) with it, the one training holds out.

Diagnosis labels, per challenge (index = position in :data:`DIAGNOSIS_CLASSES`, class id = index + 1):

- 2016 (``ISBI2016_ISIC_Part3_*_GroundTruth.csv``, no header: ``image_id,benign|malignant``, or ``0``/``1`` in the
  test file): malignant -> melanoma, benign -> nevus.
- 2017 (``ISIC-2017_*_Part3_GroundTruth.csv``: ``image_id,melanoma,seborrheic_keratosis``): both 0 -> nevus.
- 2018 (``ISIC2018_Task3_*_GroundTruth.csv``, one-hot ``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC``): MEL -> melanoma,
  NV -> nevus, BKL ("benign keratosis-like": seborrheic keratosis, solar lentigo, lichen planus-like keratosis)
  -> seborrheic_keratosis. BCC, AKIEC, DF and VASC have no ISIC 2017 class: in diagnosis mode those images are left
  out (the count is logged and kept in :attr:`IsicDataset.excluded_ids`); in lesion mode they are kept as lesions
  with their own ``diagnosis`` name and ``label`` None. Note that the 2018 Task 1 images are mostly not in the
  Task 3 (HAM10000) CSV, so diagnosis mode on a 2018 Task 1 root usually needs ``image_ids``.

Large images: with ``max_side`` set, :meth:`IsicDataset.load_image` / ``load_mask`` return copies resized so the
long side is at most ``max_side`` (JPEGs are decoded at reduced size with PIL's ``draft()``, then ``cv2.INTER_AREA``;
masks are area-averaged then thresholded at 127). With ``cache_dir`` set, those resized copies are kept on disk
(images as ``.npy``, masks as PNG), keyed by the source path, its mtime and size and ``max_side``, and written
atomically, so every epoch after the first decodes small files. ``image_info[i]["width"/"height"]`` stay the size
of the original file.

Example::

    ds = IsicDataset()
    ds.load_isic("/data/isic2017", subset="train", classes="diagnosis", max_side=1024, cache_dir="/tmp/isic")
    ds.prepare()
    image = ds.load_image(0)              # uint8 [H, W, 3], long side <= 1024
    masks, class_ids = ds.load_mask(0)    # bool [H, W, 1], int32 [1] (1 melanoma, 2 seb. keratosis, 3 nevus)
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterable, Mapping, Sequence

import cv2
import numpy as np

from mrcnn.atomic import write_bytes_atomic
from mrcnn.coco import CocoDataset
from mrcnn.dataset import Dataset, DatasetError, ImageReadError, read_image, read_image_header

__all__ = [
    "ATTRIBUTE_CLASSES",
    "DIAGNOSIS_CLASSES",
    "ISIC2018_DIAGNOSES",
    "LESION_CLASSES",
    "MASK_THRESHOLD",
    "SUBSETS",
    "CocoDataset",
    "DatasetError",
    "IsicAttributeDataset",
    "IsicDataset",
    "read_image_resized",
    "read_mask",
    "resized_size",
    "split_ids",
    "validation_split",
    "default_seed",
    "read_ids",
]

log = logging.getLogger(__name__)

LESION_CLASSES: list[str] = ["lesion"]
"""Class names in lesion mode (class id 1)."""

DIAGNOSIS_CLASSES: list[str] = ["melanoma", "seborrheic_keratosis", "nevus"]
"""Class names in diagnosis mode, in label order (label 0, 1, 2 = class id 1, 2, 3), as ISIC 2017 Part 3."""

ATTRIBUTE_CLASSES: list[str] = ["globules", "milia_like_cyst", "negative_network", "pigment_network", "streaks"]
"""ISIC 2018 Task 2 dermoscopic attributes (class ids 1..5 in this order)."""

ISIC2018_DIAGNOSES: dict[str, str] = {
    "MEL": "melanoma",
    "NV": "nevus",
    "BKL": "seborrheic_keratosis",
    "BCC": "basal_cell_carcinoma",
    "AKIEC": "actinic_keratosis",
    "DF": "dermatofibroma",
    "VASC": "vascular_lesion",
}
"""ISIC 2018 Task 3 columns -> diagnosis names; only the first three are in :data:`DIAGNOSIS_CLASSES`."""

MASK_THRESHOLD = 127
"""A mask pixel belongs to the object when its value is greater than this (the ISIC convention)."""

SUBSETS: tuple[str, ...] = ("train", "validation", "test")
"""Split names accepted by ``subset``."""

_IMAGE_RE = re.compile(r"^(ISIC_\d+)\.(jpe?g|png|tiff?|bmp)$", re.IGNORECASE)
_SEGMENTATION_RE = re.compile(r"^(ISIC_\d+)_segmentation\.png$", re.IGNORECASE)
_ATTRIBUTE_RE = re.compile(r"^(ISIC_\d+)_attribute_([a-z_]+)\.png$", re.IGNORECASE)
_CACHE_VERSION = "1"


# ----------------------------------------------------------------------------------------------------------------
# Reading and resizing.


def resized_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """Size ``(width, height)`` scaled so the long side is at most ``max_side`` (aspect ratio kept).

    Args:
        width: original width in pixels.
        height: original height in pixels.
        max_side: largest allowed side, or None for no limit.

    Returns:
        ``(width, height)``: unchanged when ``max_side`` is None or the image already fits, else each side scaled by
        ``max_side / max(width, height)`` and rounded (at least 1).
    """
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _file_size(path: str, what: str = "image") -> tuple[int, int]:
    """Displayed ``(width, height)`` of an image file (:func:`mrcnn.dataset.read_image_header`)."""
    header = read_image_header(path, what)
    return header.width, header.height


def read_image_resized(path: str, max_side: int | None) -> np.ndarray:
    """Read an image as uint8 RGB [H, W, 3] with its long side at most ``max_side``.

    JPEGs are decoded at a reduced size first with PIL's ``draft()`` (DCT scaling by 1/2, 1/4 or 1/8, never below the
    target size), then resized to the exact target with ``cv2.INTER_AREA``; other formats are decoded with
    :func:`mrcnn.dataset.read_image` and resized the same way.

    Args:
        path: image file.
        max_side: largest allowed side in pixels, or None to read the image at full size.

    Returns:
        uint8 [H, W, 3] of size :func:`resized_size` of the (EXIF-oriented) original.

    Raises:
        ImageReadError: the file is missing or cannot be decoded.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if max_side is None:
        return read_image(path)
    width, height = _file_size(path)
    target = resized_size(width, height, max_side)
    if target == (width, height):
        return read_image(path)
    image = None
    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                orientation = im.getexif().get(0x0112, 1)
                # draft() takes the size in stored (not displayed) orientation.
                im.draft("RGB", target[::-1] if orientation in (5, 6, 7, 8) else target)
                im = ImageOps.exif_transpose(im)
                image = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({exc})") from exc
    if image is None:
        image = read_image(path)
    if image.shape[1::-1] != target:
        image = cv2.resize(image, target, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image)


def _read_mask_grey(path: str) -> np.ndarray:
    """A mask file as uint8 [H, W] (palette, RGB and 1-bit converted to grey; 16-bit scaled to 8 bits)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not os.path.isfile(path):
        raise ImageReadError(f"{path}: no such mask file")
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                arr = np.asarray(im, dtype=np.float64)
                maxval = 65535.0 if arr.max() > 255 else (1.0 if arr.max() <= 1.0 and im.mode == "F" else 255.0)
                return np.clip(arr / maxval * 255.0 + 0.5, 0, 255).astype(np.uint8)
            return np.asarray(im.convert("L"))
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ImageReadError(f"{path}: not a readable mask ({exc})") from exc


def read_mask(path: str, max_side: int | None = None) -> np.ndarray:
    """Read a mask file as bool [H, W]: True where the pixel value is > 127.

    A mask whose largest value is 1 is a 0/1 mask (not the ISIC 0/255 convention) and is read as binary: True
    where the value is 1. With ``max_side``, the grey mask is first resized with ``cv2.INTER_AREA`` (area average)
    to :func:`resized_size`, then thresholded, so anti-aliased and binary masks shrink the same way.

    Args:
        path: single-channel (or RGB / palette) mask image.
        max_side: largest allowed side in pixels, or None for full size.

    Returns:
        bool [H, W].

    Raises:
        ImageReadError: the file is missing or cannot be decoded.
    """
    grey = _read_mask_grey(path)
    if grey.max(initial=0) == 1:  # 0/1 values: scale to 0/255 so the threshold (and resizing) treat 1 as the object.
        grey = grey * np.uint8(255)
    target = resized_size(grey.shape[1], grey.shape[0], max_side)
    if target != (grey.shape[1], grey.shape[0]):
        grey = cv2.resize(grey, target, interpolation=cv2.INTER_AREA)
    return grey > MASK_THRESHOLD


def _cache_path(cache_dir: str, path: str, max_side: int, kind: str, ext: str) -> str:
    """Cache file of ``path`` resized to ``max_side``: named after the file, keyed by path, mtime, size, max_side."""
    st = os.stat(path)
    key = f"{os.path.abspath(path)}|{st.st_mtime_ns}|{st.st_size}|{max_side}|{kind}|{_CACHE_VERSION}"
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]
    stem = os.path.splitext(os.path.basename(path))[0]
    return os.path.join(cache_dir, f"{stem}.{kind}{max_side}.{digest}{ext}")


def _cached_image(path: str, max_side: int | None, cache_dir: str | None) -> np.ndarray:
    """:func:`read_image_resized`, through the disk cache when the image is actually shrunk."""
    if max_side is None or cache_dir is None:
        return read_image_resized(path, max_side)
    width, height = _file_size(path)
    if resized_size(width, height, max_side) == (width, height):
        return read_image(path)
    cache_path = _cache_path(cache_dir, path, max_side, "image", ".npy")
    if os.path.isfile(cache_path):
        try:
            return np.load(cache_path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable cache file, decoding %s again (%s)", cache_path, path, exc)
    image = read_image_resized(path, max_side)
    buffer = io.BytesIO()
    np.save(buffer, image, allow_pickle=False)
    write_bytes_atomic(cache_path, buffer.getvalue())
    return image


def _cached_mask(path: str, max_side: int | None, cache_dir: str | None) -> np.ndarray:
    """:func:`read_mask`, through the disk cache (as a 0/255 PNG) when a ``cache_dir`` and ``max_side`` are set."""
    if max_side is None or cache_dir is None:
        return read_mask(path, max_side)
    cache_path = _cache_path(cache_dir, path, max_side, "mask", ".png")
    if os.path.isfile(cache_path):
        grey = cv2.imdecode(np.fromfile(cache_path, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
        if grey is not None:
            return grey > MASK_THRESHOLD
        log.warning("%s: unreadable cache file, decoding %s again", cache_path, path)
    mask = read_mask(path, max_side)
    ok, encoded = cv2.imencode(".png", mask.astype(np.uint8) * 255)
    if not ok:
        raise OSError(f"{cache_path}: could not encode the resized mask of {path} as PNG")
    write_bytes_atomic(cache_path, encoded.tobytes())
    return mask


def _check_mask_size(mask_path: str, image_path: str, width: int, height: int) -> None:
    """Raise a DatasetError naming both files when the mask file's size is not ``width`` x ``height`` (an
    ImageReadError when the mask's header cannot be read)."""
    mask_width, mask_height = _file_size(mask_path, "mask")
    if (mask_width, mask_height) != (width, height):
        raise DatasetError(
            f"{mask_path}: the mask is {mask_width}x{mask_height} (width x height) but its image {image_path} is "
            f"{width}x{height}; a mask must have the size of its image"
        )


def _header_sizes(paths: Sequence[str], keep_unreadable: bool) -> list[tuple[int | None, int | None, list[str]]]:
    """``(width, height, [])`` of each image file from its header, or ``(None, None, [problem])`` for a header that
    cannot be read: with ``keep_unreadable`` the loaders register such an image with its problem (which
    :func:`mrcnn.dataset.check_dataset` lists and ``load_image`` / ``load_mask`` raise), else an ImageReadError
    names every such file."""
    sizes: list[tuple[int | None, int | None, list[str]]] = []
    for path in paths:
        try:
            sizes.append((*_file_size(path), []))
        except ImageReadError as error:
            sizes.append((None, None, [str(error)]))
    unreadable = [problem for _, _, problems in sizes for problem in problems]
    if unreadable and not keep_unreadable:
        raise ImageReadError("; ".join(unreadable))
    return sizes


def _examples(ids: Sequence[str], n: int = 5) -> str:
    """The first ``n`` ids, comma-separated, with '...' when there are more."""
    shown = ", ".join(ids[:n])
    return shown + (", ..." if len(ids) > n else "")


def _index_folder(folder: str, pattern: re.Pattern) -> dict[str, str]:
    """Map image id -> path of the files in ``folder`` whose name matches ``pattern`` (group 1 is the id)."""
    index: dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        match = pattern.match(name)
        if match is None:
            continue
        image_id = match.group(1)
        if image_id in index:
            raise DatasetError(f"{folder}: two files for {image_id}: {os.path.basename(index[image_id])} and {name}")
        index[image_id] = os.path.join(folder, name)
    return index


def _select_ids(images: Mapping[str, str], image_ids: Sequence[str] | None, image_dir: str) -> list[str]:
    """All ids of ``images`` sorted, or ``image_ids`` in their order after checking each exists and is unique."""
    if image_ids is None:
        ids = sorted(images)
    else:
        ids = [str(i) for i in image_ids]
        duplicates = sorted(i for i, n in Counter(ids).items() if n > 1)
        if duplicates:
            raise ValueError(f"image_ids lists some ids more than once: {_examples(duplicates)}")
        absent = [i for i in ids if i not in images]
        if absent:
            raise DatasetError(f"{image_dir}: {len(absent)} of the requested image ids are not in the folder: "
                               f"{_examples(absent)}")
    if not ids:
        raise DatasetError(f"{image_dir}: no image named ISIC_<digits>.jpg/.png in the folder")
    return ids


# ----------------------------------------------------------------------------------------------------------------
# ISIC layouts and labels.


@dataclass(frozen=True)
class _Layout:
    """One split of one ISIC challenge: folder names relative to the root."""

    year: int
    subset: str
    image_dir: str
    mask_dir: str
    label_files: tuple[str, ...]


_LAYOUTS: tuple[_Layout, ...] = (
    _Layout(2016, "train", "ISBI2016_ISIC_Part1_Training_Data", "ISBI2016_ISIC_Part1_Training_GroundTruth",
            ("ISBI2016_ISIC_Part3_Training_GroundTruth.csv",)),
    _Layout(2016, "test", "ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth",
            ("ISBI2016_ISIC_Part3_Test_GroundTruth.csv",)),
    _Layout(2017, "train", "ISIC-2017_Training_Data", "ISIC-2017_Training_Part1_GroundTruth",
            ("ISIC-2017_Training_Part3_GroundTruth.csv",)),
    _Layout(2017, "validation", "ISIC-2017_Validation_Data", "ISIC-2017_Validation_Part1_GroundTruth",
            ("ISIC-2017_Validation_Part3_GroundTruth.csv",)),
    _Layout(2017, "test", "ISIC-2017_Test_v2_Data", "ISIC-2017_Test_v2_Part1_GroundTruth",
            ("ISIC-2017_Test_v2_Part3_GroundTruth.csv",)),
    _Layout(2018, "train", "ISIC2018_Task1-2_Training_Input", "ISIC2018_Task1_Training_GroundTruth",
            ("ISIC2018_Task3_Training_GroundTruth.csv",
             "ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv")),
    _Layout(2018, "validation", "ISIC2018_Task1-2_Validation_Input", "ISIC2018_Task1_Validation_GroundTruth",
            ("ISIC2018_Task3_Validation_GroundTruth.csv",
             "ISIC2018_Task3_Validation_GroundTruth/ISIC2018_Task3_Validation_GroundTruth.csv")),
    _Layout(2018, "test", "ISIC2018_Task1-2_Test_Input", "ISIC2018_Task1_Test_GroundTruth",
            ("ISIC2018_Task3_Test_GroundTruth.csv",
             "ISIC2018_Task3_Test_GroundTruth/ISIC2018_Task3_Test_GroundTruth.csv")),
)


def _find_layout(root: str, subset: str | None, layouts: Iterable[_Layout] = _LAYOUTS) -> _Layout:
    """The one layout of ``root`` whose image folder exists (and whose split is ``subset`` when given)."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root}: no such data set folder")
    if subset is not None and subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS} or None, got {subset!r}")
    layouts = list(layouts)
    present = [lay for lay in layouts if os.path.isdir(os.path.join(root, lay.image_dir))]
    chosen = [lay for lay in present if subset is None or lay.subset == subset]
    if not chosen:
        found = ", ".join(f"{lay.year} {lay.subset} ({lay.image_dir}/)" for lay in present) or "none"
        expected = ", ".join(sorted({lay.image_dir for lay in layouts}))
        raise DatasetError(
            f"{root}: no ISIC image folder{'' if subset is None else f' for subset {subset!r}'}; "
            f"splits found: {found}; expected one of the official folders: {expected}"
        )
    if len(chosen) > 1:
        found = ", ".join(f"{lay.year} {lay.subset} ({lay.image_dir}/)" for lay in chosen)
        raise DatasetError(f"{root}: holds several ISIC splits ({found}); pass subset= (one of {SUBSETS}) "
                           f"or point root at a folder with one challenge")
    return chosen[0]


@dataclass(frozen=True)
class _Label:
    """The diagnosis of one image, from a challenge CSV."""

    diagnosis: str
    melanoma: float
    seborrheic_keratosis: float


def _parse_float(value: str | None, path: str, line: int, image_id: str, column: str) -> float:
    """A finite number from a label CSV cell; ``value`` is None when the row is shorter than the header."""
    if value is None:
        raise DatasetError(f"{path}, line {line}: {image_id} has no {column!r} value (the row has fewer columns "
                           "than the header)")
    try:
        number = float(value)
    except ValueError:
        raise DatasetError(f"{path}, line {line}: {image_id}: {column} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise DatasetError(f"{path}, line {line}: {image_id}: {column} {value.strip()!r} is not a finite number "
                           "(expected 0 or 1)")
    return number


def _read_csv_text(path: str) -> io.StringIO:
    """A label CSV as text (UTF-8, with or without a byte-order mark) for :mod:`csv`.

    Raises:
        DatasetError: the file is not UTF-8 (the message gives the line of the first bad byte).
    """
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return io.StringIO(raw.decode("utf-8-sig"), newline="")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DatasetError(f"{path}, line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                           "save the CSV as UTF-8") from None


def _label_from_flags(melanoma: float, keratosis: float, path: str, line: int, image_id: str) -> _Label:
    if melanoma >= 0.5 and keratosis >= 0.5:
        raise DatasetError(f"{path}, line {line}: {image_id} is marked both melanoma and seborrheic keratosis")
    diagnosis = "melanoma" if melanoma >= 0.5 else "seborrheic_keratosis" if keratosis >= 0.5 else "nevus"
    return _Label(diagnosis, melanoma, keratosis)


def _from_diagnosis(diagnosis: str) -> _Label:
    return _Label(diagnosis, float(diagnosis == "melanoma"), float(diagnosis == "seborrheic_keratosis"))


def _read_labels_2016(path: str) -> dict[str, _Label]:
    """``image_id,benign|malignant`` (or ``0``/``1``), no header: malignant -> melanoma, benign -> nevus."""
    labels: dict[str, _Label] = {}
    with _read_csv_text(path) as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if not row or not row[0].strip():
                continue
            if line == 1 and not row[0].strip().upper().startswith("ISIC_"):
                continue  # A header some copies add.
            if len(row) < 2:
                raise DatasetError(f"{path}, line {line}: expected 'image_id,benign|malignant', got {row}")
            value = row[1].strip().lower()
            if value in ("malignant", "1", "1.0"):
                labels[row[0].strip()] = _from_diagnosis("melanoma")
            elif value in ("benign", "0", "0.0"):
                labels[row[0].strip()] = _from_diagnosis("nevus")
            else:
                raise DatasetError(f"{path}, line {line}: label {row[1]!r} is not benign/malignant (or 0/1)")
    return labels


def _read_labels_2017(path: str) -> dict[str, _Label]:
    """``image_id,melanoma,seborrheic_keratosis`` with a header; both 0 -> nevus."""
    labels: dict[str, _Label] = {}
    with _read_csv_text(path) as f:
        reader = csv.DictReader(f)
        needed = {"image_id", "melanoma", "seborrheic_keratosis"}
        if reader.fieldnames is None or not needed <= set(reader.fieldnames):
            raise DatasetError(f"{path}: expected the columns {sorted(needed)}, got {reader.fieldnames}")
        for row in reader:
            line = reader.line_num
            image_id = (row["image_id"] or "").strip()
            melanoma = _parse_float(row["melanoma"], path, line, image_id, "melanoma")
            keratosis = _parse_float(row["seborrheic_keratosis"], path, line, image_id, "seborrheic_keratosis")
            labels[image_id] = _label_from_flags(melanoma, keratosis, path, line, image_id)
    return labels


def _read_labels_2018(path: str) -> dict[str, _Label]:
    """One-hot ``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC``, mapped through :data:`ISIC2018_DIAGNOSES`."""
    labels: dict[str, _Label] = {}
    with _read_csv_text(path) as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        id_column = "image" if "image" in fields else "image_id" if "image_id" in fields else None
        missing = [c for c in ISIC2018_DIAGNOSES if c not in fields]
        if id_column is None or missing:
            raise DatasetError(f"{path}: expected the columns image,{','.join(ISIC2018_DIAGNOSES)}, got {fields}")
        for row in reader:
            line = reader.line_num
            image_id = (row[id_column] or "").strip()
            hot = [c for c in ISIC2018_DIAGNOSES if _parse_float(row[c], path, line, image_id, c) >= 0.5]
            if len(hot) != 1:
                raise DatasetError(f"{path}, line {line}: {image_id} must have exactly one diagnosis column set "
                                   f"to 1, got {hot or 'none'}")
            labels[image_id] = _from_diagnosis(ISIC2018_DIAGNOSES[hot[0]])
    return labels


_LABEL_READERS: dict[int, Callable[[str], dict[str, _Label]]] = {
    2016: _read_labels_2016,
    2017: _read_labels_2017,
    2018: _read_labels_2018,
}


# ----------------------------------------------------------------------------------------------------------------
# Data sets.


class _ResizingMixin:
    """``load_image`` honouring each image's ``max_side`` and ``cache_dir`` (kept in ``image_info``)."""

    image_info: list[dict]

    def load_image(self, image_id: int) -> np.ndarray:
        """The image as uint8 RGB [H, W, 3], long side at most the ``max_side`` given at load time.

        Args:
            image_id: internal image index.

        Returns:
            uint8 [H, W, 3].
        """
        self.raise_recorded_problems(image_id)
        info = self.image_info[image_id]
        return _cached_image(info["path"], info.get("max_side"), info.get("cache_dir"))

    def _output_size(self, image_id: int) -> tuple[int, int]:
        """``(height, width)`` of what :meth:`load_image` returns, from the original size and ``max_side``."""
        info = self.image_info[image_id]
        width, height = resized_size(info["width"], info["height"], info.get("max_side"))
        return height, width


class _IsicMixin:
    """What the ISIC data sets share: image references, and the data check of the mask files that each class
    names with ``_mask_paths(info)``."""

    def image_reference(self, image_id: int) -> str:
        """The ISIC id and path of an image."""
        info = self.image_info[image_id]
        return f"{info['image_id']} ({info['path']})"

    def check_image(self, image_id: int) -> list[str]:
        """The image's header was read when it was registered, and each mask's header can be read and gives the
        image's size (for :func:`mrcnn.dataset.check_dataset`)."""
        problems = super().check_image(image_id)
        if problems:
            return problems  # The image's size is unknown.
        info = self.image_info[image_id]
        for mask_path in self._mask_paths(info):
            try:
                _check_mask_size(mask_path, info["path"], info["width"], info["height"])
            except DatasetError as error:
                problems.append(str(error))
        return problems


class IsicDataset(_IsicMixin, _ResizingMixin, Dataset):
    """ISIC 2016 / 2017 / 2018 (Task 1) lesion segmentation with one instance per image.

    Each ``image_info`` entry carries ``id`` and ``image_id`` (e.g. ``"ISIC_0000001"``), ``path``, ``mask_path``
    (None for an inference image without mask), ``width`` / ``height`` (original file size), ``diagnosis`` (a
    name, or None when the challenge has no label for the image), ``label`` (index in :data:`DIAGNOSIS_CLASSES` or
    None), ``melanoma`` / ``seborrheic_keratosis`` (floats, or None when unknown), ``year``, ``subset``,
    ``max_side`` and ``cache_dir``.
    """

    source = "isic"

    def __init__(self, class_map=None):
        super().__init__(class_map)
        self.classes: str | None = None
        self.excluded_ids: list[str] = []

    def load_isic(
        self,
        root: str,
        subset: str | None = None,
        image_ids: Sequence[str] | None = None,
        classes: str = "lesion",
        max_side: int | None = None,
        cache_dir: str | None = None,
        inference: bool = False,
        keep_unreadable: bool = False,
    ) -> None:
        """Register the images of one split of an official ISIC download.

        The layout is detected from the folder names under ``root`` (see the module docstring and ``_LAYOUTS``).
        Image files are those named ``ISIC_<digits>.<jpg|png|...>`` (superpixel files and metadata are ignored);
        masks are ``ISIC_<digits>_segmentation.png`` (any case). Images are registered in sorted id order, or in
        the order of ``image_ids``.

        Args:
            root: folder holding the official folders (e.g. ``ISIC-2017_Training_Data/``).
            subset: ``"train"``, ``"validation"`` or ``"test"``; needed only when ``root`` holds several splits.
            image_ids: register only these ids (e.g. from :func:`split_ids`); each must exist.
            classes: ``"lesion"`` (one class) or ``"diagnosis"`` (the :data:`DIAGNOSIS_CLASSES`).
            max_side: if set, ``load_image`` / ``load_mask`` return copies whose long side is at most this.
            cache_dir: if set (with ``max_side``), resized copies are cached in this folder.
            inference: keep images that have no mask (``load_mask`` gives zero instances) instead of raising.
            keep_unreadable: register an image whose header cannot be read with its problem (listed by
                :func:`mrcnn.dataset.check_dataset`, raised by ``load_image`` / ``load_mask``) instead of raising.

        Raises:
            FileNotFoundError: ``root`` does not exist.
            DatasetError: no (or an ambiguous) layout, requested ids missing, images without masks (unless
                ``inference``), a diagnosis missing in diagnosis mode, or a malformed label CSV.
            ImageReadError: image headers that cannot be read (unless ``keep_unreadable``; every file named).
            ValueError: a bad ``classes``, ``subset`` or ``max_side``.
        """
        if classes not in ("lesion", "diagnosis"):
            raise ValueError(f"classes must be 'lesion' or 'diagnosis', got {classes!r}")
        if self.classes is not None and self.classes != classes:
            raise ValueError(f"this data set was loaded with classes={self.classes!r}; cannot add {classes!r} images")
        if max_side is not None and max_side < 1:
            raise ValueError(f"max_side must be a positive number of pixels or None, got {max_side}")
        layout = _find_layout(root, subset)
        image_dir = os.path.join(root, layout.image_dir)
        images = _index_folder(image_dir, _IMAGE_RE)
        mask_dir = os.path.join(root, layout.mask_dir)
        masks = _index_folder(mask_dir, _SEGMENTATION_RE) if os.path.isdir(mask_dir) else {}
        no_image = sorted(i for i in masks if i not in images)
        if no_image:
            log.warning("%s: %d mask(s) with no image in %s, left out: %s", mask_dir, len(no_image),
                        image_dir, _examples([os.path.basename(masks[i]) for i in no_image]))

        label_path = next((os.path.join(root, p) for p in layout.label_files
                           if os.path.isfile(os.path.join(root, p))), None)
        labels = _LABEL_READERS[layout.year](label_path) if label_path else {}

        ids = _select_ids(images, image_ids, image_dir)

        no_mask = [i for i in ids if i not in masks]
        if no_mask and not inference:
            where = mask_dir if os.path.isdir(mask_dir) else f"{mask_dir} (folder missing)"
            raise DatasetError(
                f"{where}: {len(no_mask)} of {len(ids)} images have no mask ({_examples(no_mask)}); "
                f"pass inference=True to keep them for prediction only"
            )

        if classes == "diagnosis":
            if label_path is None:
                raise DatasetError(f"{root}: diagnosis mode needs the label file "
                                   f"{' or '.join(layout.label_files)}, which is missing")
            unlabelled = [i for i in ids if i not in labels]
            if unlabelled:
                raise DatasetError(
                    f"{unlabelled[0]}: no diagnosis in {label_path} ({len(unlabelled)} of {len(ids)} images have "
                    f"none: {_examples(unlabelled)}); pass image_ids without them or use classes='lesion'"
                )
            excluded = [i for i in ids if labels[i].diagnosis not in DIAGNOSIS_CLASSES]
            if excluded:
                counts = Counter(labels[i].diagnosis for i in excluded)
                log.warning("%s: left out %d images whose diagnosis is not one of %s: %s", root, len(excluded),
                            DIAGNOSIS_CLASSES, dict(sorted(counts.items())))
                self.excluded_ids.extend(excluded)
                excluded_set = set(excluded)
                ids = [i for i in ids if i not in excluded_set]
            for label, name in enumerate(DIAGNOSIS_CLASSES):
                self.add_class(self.source, label + 1, name)
        else:
            self.add_class(self.source, 1, LESION_CLASSES[0])
        self.classes = classes

        sizes = _header_sizes([images[i] for i in ids], keep_unreadable)
        for image_id, (width, height, problems) in zip(ids, sizes):
            path = images[image_id]
            label = labels.get(image_id)
            diagnosis = label.diagnosis if label else None
            self.add_image(
                self.source, image_id=image_id, path=path, width=width, height=height,
                mask_path=masks.get(image_id), diagnosis=diagnosis,
                label=DIAGNOSIS_CLASSES.index(diagnosis) if diagnosis in DIAGNOSIS_CLASSES else None,
                melanoma=label.melanoma if label else None,
                seborrheic_keratosis=label.seborrheic_keratosis if label else None,
                year=layout.year, subset=layout.subset, max_side=max_side, cache_dir=cache_dir, problems=problems,
            )
            self.image_info[-1]["image_id"] = image_id  # add_image's image_id is stored as "id".

    def load_mask(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """The lesion of an image as one instance.

        Args:
            image_id: internal image index.

        Returns:
            masks: bool [H, W, N], the size of :meth:`load_image`'s output; N = 1, or 0 when the mask is empty or
                (inference data sets) missing.
            class_ids: int32 [N]: 1 in lesion mode, ``label + 1`` in diagnosis mode.

        Raises:
            DatasetError: the mask file's size differs from the image's (the message names both files and sizes),
                or the image's header could not be read when it was registered.
        """
        self.raise_recorded_problems(image_id)
        info = self.image_info[image_id]
        height, width = self._output_size(image_id)
        mask_path = info.get("mask_path")
        if mask_path is None:
            return np.zeros([height, width, 0], bool), np.zeros([0], np.int32)
        _check_mask_size(mask_path, info["path"], info["width"], info["height"])
        mask = _cached_mask(mask_path, info.get("max_side"), info.get("cache_dir"))
        if not mask.any():
            return np.zeros([height, width, 0], bool), np.zeros([0], np.int32)
        class_id = 1 if self.classes == "lesion" else info["label"] + 1
        return mask[:, :, None], np.array([class_id], np.int32)

    def _mask_paths(self, info: dict) -> list[str]:
        """The mask files of an image (none for an image without ground truth)."""
        return [info["mask_path"]] if info.get("mask_path") else []


_ATTRIBUTE_LAYOUTS: tuple[tuple[str, str, str], ...] = (
    # (subset, image folder, ground-truth folder prefix: the newest version present is used, e.g. "_v3").
    ("train", "ISIC2018_Task1-2_Training_Input", "ISIC2018_Task2_Training_GroundTruth"),
    ("validation", "ISIC2018_Task1-2_Validation_Input", "ISIC2018_Task2_Validation_GroundTruth"),
    ("test", "ISIC2018_Task1-2_Test_Input", "ISIC2018_Task2_Test_GroundTruth"),
)


class IsicAttributeDataset(_IsicMixin, _ResizingMixin, Dataset):
    """ISIC 2018 Task 2 dermoscopic attributes as a multi-class instance task.

    One class per attribute (:data:`ATTRIBUTE_CLASSES`, class ids 1..5). With ``instance_mode="components"`` (the
    default) each 8-connected component of an attribute mask is one instance: globules and milia-like cysts are
    separate small objects, and a detector should find each one. With ``instance_mode="whole"`` the whole attribute
    mask is one instance (for networks and streaks spread over the lesion). An empty attribute mask gives no
    instance. Masks are ``ISIC_<digits>_attribute_<name>.png`` (pixel > 127), one file per attribute per image.
    """

    source = "isic_attributes"

    def load_isic_attributes(
        self,
        root: str,
        subset: str | None = None,
        image_ids: Sequence[str] | None = None,
        instance_mode: str = "components",
        min_area: int = 1,
        max_side: int | None = None,
        cache_dir: str | None = None,
        inference: bool = False,
        keep_unreadable: bool = False,
    ) -> None:
        """Register the images of one split of the ISIC 2018 Task 1-2 download with their attribute masks.

        Args:
            root: folder holding ``ISIC2018_Task1-2_Training_Input/`` and ``ISIC2018_Task2_Training_GroundTruth*/``
                (or the Validation / Test equivalents).
            subset: ``"train"``, ``"validation"`` or ``"test"``; needed only when ``root`` holds several splits.
            image_ids: register only these ids; each must exist.
            instance_mode: ``"components"`` (each connected component is an instance) or ``"whole"``.
            min_area: in ``"components"`` mode, components smaller than this many pixels (after resizing) are
                dropped.
            max_side: if set, images and masks are resized so the long side is at most this.
            cache_dir: if set (with ``max_side``), resized copies are cached in this folder.
            inference: keep images that have no attribute masks (zero instances) instead of raising.
            keep_unreadable: as in :meth:`IsicDataset.load_isic`.

        Raises:
            FileNotFoundError: ``root`` does not exist.
            DatasetError: no (or an ambiguous) layout, requested ids missing, an image with only some of its
                attribute files, or images without masks (unless ``inference``).
            ValueError: a bad ``instance_mode``, ``min_area`` or ``max_side``.
        """
        if instance_mode not in ("components", "whole"):
            raise ValueError(f"instance_mode must be 'components' or 'whole', got {instance_mode!r}")
        if min_area < 1:
            raise ValueError(f"min_area must be at least 1 pixel, got {min_area}")
        if max_side is not None and max_side < 1:
            raise ValueError(f"max_side must be a positive number of pixels or None, got {max_side}")
        layouts = [_Layout(2018, s, image_dir, prefix, ()) for s, image_dir, prefix in _ATTRIBUTE_LAYOUTS]
        layout = _find_layout(root, subset, layouts)
        image_dir = os.path.join(root, layout.image_dir)
        images = _index_folder(image_dir, _IMAGE_RE)
        versions = sorted(n for n in os.listdir(root)
                          if n.startswith(layout.mask_dir) and os.path.isdir(os.path.join(root, n)))
        mask_dir = os.path.join(root, versions[-1]) if versions else None
        if len(versions) > 1:
            log.info("%s: several attribute ground-truth folders %s; using %s", root, versions, versions[-1])

        attribute_paths: dict[str, dict[str, str]] = {}
        if mask_dir is not None:
            for name in sorted(os.listdir(mask_dir)):
                match = _ATTRIBUTE_RE.match(name)
                if match and match.group(2).lower() in ATTRIBUTE_CLASSES:
                    paths = attribute_paths.setdefault(match.group(1), {})
                    paths[match.group(2).lower()] = os.path.join(mask_dir, name)

        ids = _select_ids(images, image_ids, image_dir)
        no_mask = [i for i in ids if i not in attribute_paths]
        if no_mask and not inference:
            where = mask_dir or os.path.join(root, layout.mask_dir + "*") + " (folder missing)"
            raise DatasetError(f"{where}: {len(no_mask)} of {len(ids)} images have no attribute masks "
                               f"({_examples(no_mask)}); pass inference=True to keep them for prediction only")
        for image_id in ids:
            lacking = [f"{image_id}_attribute_{a}.png" for a in ATTRIBUTE_CLASSES
                       if image_id in attribute_paths and a not in attribute_paths[image_id]]
            if lacking:
                raise DatasetError(f"{mask_dir}: {image_id} has no {', '.join(lacking)} (every image needs one mask "
                                   f"per attribute, empty where the attribute is absent)")

        for class_id, name in enumerate(ATTRIBUTE_CLASSES, start=1):
            self.add_class(self.source, class_id, name)
        sizes = _header_sizes([images[i] for i in ids], keep_unreadable)
        for image_id, (width, height, problems) in zip(ids, sizes):
            path = images[image_id]
            self.add_image(self.source, image_id=image_id, path=path, width=width, height=height,
                           attribute_paths=attribute_paths.get(image_id), instance_mode=instance_mode,
                           min_area=min_area, max_side=max_side, cache_dir=cache_dir, problems=problems)
            self.image_info[-1]["image_id"] = image_id

    def load_mask(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """The attribute instances of an image, attribute by attribute (components in raster order).

        Args:
            image_id: internal image index.

        Returns:
            masks: bool [H, W, N], the size of :meth:`load_image`'s output (N = 0 when every mask is empty).
            class_ids: int32 [N], 1-based indices into :data:`ATTRIBUTE_CLASSES`.

        Raises:
            DatasetError: an attribute mask's size differs from the image's.
        """
        self.raise_recorded_problems(image_id)
        info = self.image_info[image_id]
        height, width = self._output_size(image_id)
        instances: list[np.ndarray] = []
        class_ids: list[int] = []
        for class_id, name in enumerate(ATTRIBUTE_CLASSES, start=1):
            mask_path = (info.get("attribute_paths") or {}).get(name)
            if mask_path is None:
                continue
            _check_mask_size(mask_path, info["path"], info["width"], info["height"])
            mask = _cached_mask(mask_path, info.get("max_side"), info.get("cache_dir"))
            if not mask.any():
                continue
            if info["instance_mode"] == "whole":
                instances.append(mask)
                class_ids.append(class_id)
                continue
            count, components, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
            for component in range(1, count):  # 0 is the background.
                if stats[component, cv2.CC_STAT_AREA] >= info["min_area"]:
                    instances.append(components == component)
                    class_ids.append(class_id)
        if not instances:
            return np.zeros([height, width, 0], bool), np.zeros([0], np.int32)
        return np.stack(instances, axis=-1), np.array(class_ids, np.int32)

    def _mask_paths(self, info: dict) -> list[str]:
        """The attribute mask files of an image."""
        return list((info.get("attribute_paths") or {}).values())


# ----------------------------------------------------------------------------------------------------------------
# Splits.


def _rank(seed: int, image_id: str) -> str:
    """A seed-dependent, machine- and version-independent sort key of an id (SHA-256 of seed and id)."""
    return hashlib.sha256(f"{seed}:{image_id}".encode("utf-8")).hexdigest()


def read_ids(path: str) -> list[str]:
    """The image ids of a text file, one a line (``val_ids.txt`` of a training run); blank lines are skipped.

    Raises:
        DatasetError: the file is not UTF-8 text (the message names it).
    """
    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason}); expected one image id a line, as "
                           "lesion/train.py writes it") from None


def validation_split(
    dataset_or_ids: Any,
    labels: Sequence[Hashable] | Mapping[str, Hashable] | None = None,
    *,
    seed: int | None = None,
    val_fraction: float = 0.2,
) -> tuple[list[str], list[str]]:
    """The project's train/validation split of ISIC images (the one ``lesion/train.py`` trains on).

    :func:`lesion.datasets.split_ids` over the sorted image ids, stratified by diagnosis when images have one (the
    images without a diagnosis are a group of their own; no diagnosis at all: not stratified). ``lesion/train.py``
    splits each ``--dataset`` folder this way on its own. With a data set, call it on an
    :class:`lesion.datasets.IsicDataset` loaded with the same root, official split and ``classes`` as the training
    (in diagnosis mode the images without an ISIC 2017 diagnosis are left out before splitting).

    Args:
        dataset_or_ids: an :class:`IsicDataset` (its ``image_info[i]["image_id"]``, labels from
            ``image_info[i]["diagnosis"]``), or a sequence of image ids.
        labels: diagnosis per id (sequence aligned with the ids, or mapping id -> diagnosis); taken from the data
            set when None. Ids without a label (None) are one group; when no id has one, the split is not
            stratified.
        seed: split seed; None for the lesion config's ``SEED`` (2017).
        val_fraction: fraction of ids in the validation set, in [0, 1).

    Returns:
        ``(train_ids, val_ids)``: disjoint sorted lists of image ids.
    """
    if hasattr(dataset_or_ids, "image_info"):
        infos = dataset_or_ids.image_info
        ids = [str(info.get("image_id", info["id"])) for info in infos]
        if labels is None:
            labels = {i: info.get("diagnosis") for i, info in zip(ids, infos)}
    else:
        ids = [str(i) for i in dataset_or_ids]
    if labels is not None and not isinstance(labels, Mapping):
        labels = list(labels)
        if len(labels) != len(ids):
            raise ValueError(f"validation_split: {len(labels)} labels for {len(ids)} ids; give one label per id")
        labels = dict(zip(ids, labels))
    ids = sorted(ids)
    if labels is not None:
        labels = [labels.get(i) for i in ids]
        if all(label is None for label in labels):
            labels = None
    seed = default_seed() if seed is None else int(seed)
    return split_ids(ids, val_fraction=val_fraction, seed=seed, labels=labels)


def default_seed() -> int:
    """The split seed of the lesion configs (``SEED``, 2017)."""
    from lesion.config import LesionConfig

    return int(LesionConfig.SEED)


def split_ids(
    ids: Iterable[str],
    val_fraction: float = 0.2,
    seed: int = 0,
    labels: Sequence[Hashable] | Mapping[str, Hashable] | None = None,
) -> tuple[list[str], list[str]]:
    """Split image ids into train and validation ids, deterministically.

    The split depends only on the set of ids, ``val_fraction``, ``seed`` and ``labels``: not on the input order,
    the file system or the NumPy version. Ids are ranked by SHA-256 of ``"<seed>:<id>"``; the validation set takes
    the first ``round(len(ids) * val_fraction)`` (at least 1 and at most ``len(ids) - 1`` when there are two ids or
    more and ``0 < val_fraction``). With ``labels``, the split is stratified: each label gets its share of the
    validation set (largest-remainder rounding, ties broken by label), taken in rank order within the label.

    Args:
        ids: image ids (strings; no duplicates).
        val_fraction: fraction of ids for validation, in [0, 1).
        seed: changes the split.
        labels: optional label per id, as a sequence aligned with ``ids`` or a mapping id -> label.

    Returns:
        ``(train_ids, val_ids)``: disjoint sorted lists that together hold every id.

    Raises:
        ValueError: ``val_fraction`` out of range, duplicate ids, or labels that do not match the ids.
    """
    ids = [str(i) for i in ids]
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    duplicates = sorted(i for i, n in Counter(ids).items() if n > 1)
    if duplicates:
        raise ValueError(f"split_ids: ids listed more than once: {_examples(duplicates)}")
    if labels is None:
        label_of = {i: None for i in ids}
    elif isinstance(labels, Mapping):
        absent = [i for i in ids if i not in labels]
        if absent:
            raise ValueError(f"split_ids: no label for {len(absent)} ids: {_examples(absent)}")
        label_of = {i: labels[i] for i in ids}
    else:
        labels = list(labels)
        if len(labels) != len(ids):
            raise ValueError(f"split_ids: {len(labels)} labels for {len(ids)} ids; give one label per id")
        label_of = dict(zip(ids, labels))

    n_val = round(len(ids) * val_fraction)
    if val_fraction > 0 and len(ids) >= 2:
        n_val = min(max(n_val, 1), len(ids) - 1)

    groups: dict[Hashable, list[str]] = {}
    for image_id in sorted(ids, key=lambda i: (_rank(seed, i), i)):
        groups.setdefault(label_of[image_id], []).append(image_id)
    order = sorted(groups, key=repr)  # A fixed group order for ties, whatever the label type.
    # Largest-remainder apportionment of n_val over the groups, proportional to their sizes.
    exact = {g: n_val * len(groups[g]) / len(ids) for g in order} if ids else {}
    quota = {g: int(exact[g]) for g in order}
    left = n_val - sum(quota.values())
    for g in sorted(order, key=lambda g: (-(exact[g] - quota[g]), repr(g)))[:left]:
        quota[g] += 1

    val = [i for g in order for i in groups[g][:quota[g]]]
    val_set = set(val)
    train = [i for i in ids if i not in val_set]
    return sorted(train), sorted(val)
