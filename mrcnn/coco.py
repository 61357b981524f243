"""COCO instance segmentation data: :class:`CocoDataset` reads any COCO JSON file with its image folder, and
:func:`coco_annotations` / :func:`mask_to_rle` write detections as COCO annotations (compressed RLE masks).

The file is checked before pycocotools reads it (:func:`_check_coco`: what pycocotools would crash on or drop
without a word), and each annotation's geometry against its image's recorded size (:func:`_check_coco_geometry`:
clamped with a warning when partly outside, that image's recorded problem when wholly outside), so a bad file is
an error naming the file, the image and the annotation, never a silent background.

Example::

    ds = CocoDataset()
    ds.load_coco("annotations/instances.json", "images/")
    ds.prepare()
    image = ds.load_image(0)              # uint8 [H, W, 3]
    masks, class_ids = ds.load_mask(0)    # bool [H, W, N], int32 [N] (negative for crowd annotations)

    anns = coco_annotations(result, image_id=7)   # a detection result -> COCO annotations, RLE segmentations
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import warnings
from typing import Any, Hashable, Mapping, Sequence

import numpy as np

from mrcnn.dataset import (Dataset, DatasetError, ImageReadError, OutsideImageError, clamp_ring, outside_image,
                           read_image, read_image_header)

__all__ = ["CocoDataset", "coco_annotations", "mask_to_rle"]

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------------
# Reading: a COCO JSON file and its image folder as a Dataset.


class CocoDataset(Dataset):
    """Any COCO-format instance segmentation data set (a JSON file and its image folder), via pycocotools.

    Categories are registered with ``add_class("coco", category_id, name)``, so internal class ids are contiguous
    (1..K in category-id order) and ``map_source_class_id("coco.<category_id>")`` converts. Polygon and RLE
    segmentations are decoded with ``COCO.annToMask``; annotations whose mask is empty are dropped.

    Geometry is checked against each image's recorded ``width`` x ``height`` when the file is loaded: a polygon (or
    ``bbox``) partly outside the image is clamped to it with a warning that names the file, the image and the
    annotation id; one wholly outside the image, or an RLE of another size, is that image's problem: listed by
    :func:`mrcnn.dataset.check_dataset` and raised by ``load_image`` / ``load_mask``, never trained as background.

    Crowd annotations (``iscrowd=1``) are kept by default as matterport did, with a *negative* class id: the
    training targets (:mod:`mrcnn.targets`) never make them positives and never take anchors or ROIs that touch
    them as negatives. Pass ``keep_crowd=False`` to drop them.
    """

    source = "coco"

    def __init__(self, class_map=None):
        super().__init__(class_map)
        self._cocos: list = []

    def load_coco(
        self,
        annotation_json: str,
        image_dir: str,
        class_names: Sequence[str] | None = None,
        keep_crowd: bool = True,
    ) -> None:
        """Register the images and categories of a COCO JSON file.

        Args:
            annotation_json: COCO instances JSON (``images``, ``annotations``, ``categories``).
            image_dir: folder that holds each image's ``file_name``.
            class_names: register only these category names (and only images with at least one of them); None
                for all categories and all images.
            keep_crowd: keep ``iscrowd`` annotations as negative class ids (see the class docstring).

        Raises:
            FileNotFoundError: the JSON, the image folder or an image file is missing (the message names it).
            DatasetError: the JSON is not valid COCO (see :func:`_check_coco`: the message names the annotation),
                or ``class_names`` names an unknown category.
        """
        from pycocotools.coco import COCO

        if not os.path.isfile(annotation_json):
            raise FileNotFoundError(f"{annotation_json}: no such COCO annotation file")
        if not os.path.isdir(image_dir):
            raise FileNotFoundError(f"{image_dir}: no such image folder (for {annotation_json})")
        data = _read_json(annotation_json)
        _check_coco(data, annotation_json)
        problems = _check_coco_geometry(data, annotation_json)
        coco = COCO()
        coco.dataset = data
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # createIndex() prints progress lines.
                coco.createIndex()
        except (ValueError, AssertionError, KeyError, TypeError) as exc:
            raise DatasetError(f"{annotation_json}: not a COCO annotation file ({exc!r})") from exc

        categories = sorted(coco.loadCats(coco.getCatIds()), key=lambda c: c["id"])
        if class_names is not None:
            by_name = {c["name"]: c for c in categories}
            unknown = [n for n in class_names if n not in by_name]
            if unknown:
                raise DatasetError(f"{annotation_json}: no category named {', '.join(map(repr, unknown))}; "
                                   f"categories: {sorted(by_name)}")
            categories = [by_name[n] for n in class_names]
            image_ids = sorted({i for c in categories for i in coco.getImgIds(catIds=[c["id"]])})
        else:
            image_ids = sorted(coco.getImgIds())
        cat_ids = [c["id"] for c in categories]

        missing = []
        for image_id in image_ids:
            path = os.path.join(image_dir, coco.imgs[image_id]["file_name"])
            if not os.path.isfile(path):
                missing.append(path)
        if missing:
            raise FileNotFoundError(f"{missing[0]}: image file listed in {annotation_json} is missing "
                                    f"({len(missing)} of {len(image_ids)} missing)")

        for category in sorted(categories, key=lambda c: c["id"]):
            self.add_class(self.source, category["id"], category["name"])
        coco_index = len(self._cocos)
        self._cocos.append(coco)
        for image_id in image_ids:
            image = coco.imgs[image_id]
            annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image_id], catIds=cat_ids, iscrowd=None))
            if not keep_crowd:
                annotations = [a for a in annotations if not a.get("iscrowd", 0)]
            self.add_image(self.source, image_id=image_id, path=os.path.join(image_dir, image["file_name"]),
                           width=image["width"], height=image["height"], annotations=annotations,
                           coco_index=coco_index, annotation_json=annotation_json,
                           problems=[problems[id(a)] for a in annotations if id(a) in problems])

    def load_image(self, image_id: int) -> np.ndarray:
        """The image as uint8 RGB [H, W, 3], checked against the width and height its COCO file records.

        Raises:
            ImageReadError: the file cannot be decoded.
            DatasetError: the file's size differs from the recorded one (the masks would not line up).
        """
        info = self.image_info[image_id]
        image = read_image(info["path"])
        if image.shape[:2] != (info["height"], info["width"]):
            raise DatasetError(f"{info['path']}: the image is {image.shape[1]}x{image.shape[0]} (width x height) but "
                               f"{info.get('annotation_json')} records {info['width']}x{info['height']}; the masks "
                               "would not line up with it")
        return image

    def load_mask(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Instance masks of an image from its annotations.

        Args:
            image_id: internal image index.

        Returns:
            masks: bool [H, W, N] (H, W from the JSON's ``height`` / ``width``).
            class_ids: int32 [N]: internal class ids, negative for crowd annotations.

        Raises:
            DatasetError: an annotation of the image lies wholly outside it (see the class docstring).
        """
        self.raise_recorded_problems(image_id)
        info = self.image_info[image_id]
        coco = self._cocos[info["coco_index"]]
        height, width = info["height"], info["width"]
        instances: list[np.ndarray] = []
        class_ids: list[int] = []
        for annotation in info["annotations"]:
            class_id = self.map_source_class_id(f"{self.source}.{annotation['category_id']}")
            with warnings.catch_warnings():
                # pycocotools' decoder trips NumPy 2's __array__(copy=...) deprecation; the result is correct.
                warnings.filterwarnings("ignore", message=r"__array__ implementation", category=DeprecationWarning)
                mask = coco.annToMask(annotation).astype(bool)
            if not mask.any():
                continue  # A degenerate polygon or an empty RLE.
            if annotation.get("iscrowd", 0):
                class_id = -class_id
            instances.append(mask)
            class_ids.append(class_id)
        if not instances:
            return np.zeros([height, width, 0], bool), np.zeros([0], np.int32)
        return np.stack(instances, axis=-1), np.array(class_ids, np.int32)

    def check_image(self, image_id: int) -> list[str]:
        """The annotations' geometry (checked at load time) and the image file's header: readable, and of the size
        the COCO file records (for :func:`mrcnn.dataset.check_dataset`)."""
        problems = super().check_image(image_id)
        info = self.image_info[image_id]
        try:
            header = read_image_header(info["path"])
        except ImageReadError as error:
            return problems + [str(error)]
        width, height = header.width, header.height
        if (width, height) != (info["width"], info["height"]):
            problems.append(f"{info['path']}: the image is {width}x{height} (width x height) but "
                            f"{info.get('annotation_json')} records {info['width']}x{info['height']}; the masks "
                            "would not line up with it")
        return problems


def _is_finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _read_json(path: str) -> object:
    """The parsed JSON of ``path``; a file that is not JSON (or nested too deeply to parse) is a DatasetError."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: not a JSON file ({exc})") from None
    except RecursionError:
        raise DatasetError(f"{path}: the JSON is nested too deeply to read; not a COCO annotation file") from None


def _check_coco(data: object, path: str) -> None:
    """Refuse what pycocotools would crash on, or drop without a word, when it reads a COCO file.

    Every image needs an ``id``, a ``file_name`` and a positive integer ``width`` and ``height``; every annotation an
    ``image_id`` among the images, a ``category_id`` among the categories, and a segmentation: an RLE object, or a
    non-empty list of polygons of at least 3 points (``[x1, y1, x2, y2, x3, y3, ...]``, finite numbers).

    Raises:
        DatasetError: the first problem, naming ``path`` and the image or annotation id.
    """
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: not a COCO annotation file (a JSON {type(data).__name__}, not an object)")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{path}: not a COCO annotation file (the key {key!r} is missing or not a list)")
    for index, image in enumerate(data["images"]):
        if not (isinstance(image, dict) and "id" in image and isinstance(image.get("file_name"), str)
                and all(isinstance(image.get(k), int) and not isinstance(image.get(k), bool) and image[k] > 0
                        for k in ("width", "height"))):
            raise DatasetError(f"{path}: image #{index} ({image!r:.100}) needs an 'id', a 'file_name' and a positive "
                               "integer 'width' and 'height'")

    def ids(items: list) -> set:
        return {item["id"] for item in items if isinstance(item, dict) and isinstance(item.get("id"), Hashable)}

    image_ids, category_ids = ids(data["images"]), ids(data["categories"])
    for index, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise DatasetError(f"{path}: annotation #{index} is not an object")
        where = f"{path}: annotation id {ann['id']!r}" if "id" in ann else f"{path}: annotation #{index} (no id)"
        for key, known, what in (("image_id", image_ids, "images"), ("category_id", category_ids, "categories")):
            value = ann.get(key)
            if not (isinstance(value, Hashable) and value in known):
                raise DatasetError(f"{where}: {key} {value!r} is not in {what!r}")
        segmentation = ann.get("segmentation")
        if isinstance(segmentation, dict):
            continue  # An RLE: pycocotools reads (and checks) it.
        if not (isinstance(segmentation, list) and segmentation):
            raise DatasetError(f"{where}: no segmentation (masks need polygons or an RLE)")
        for k, ring in enumerate(segmentation):
            if not (isinstance(ring, list) and all(_is_finite_number(v) for v in ring)):
                raise DatasetError(f"{where}: polygon {k} is not a list of finite numbers")
            if len(ring) < 6 or len(ring) % 2:
                raise DatasetError(f"{where}: polygon {k} has {len(ring)} coordinates; a polygon needs at least 3 "
                                   "points, as x1, y1, x2, y2, x3, y3, ...")


def _check_coco_geometry(data: dict, path: str) -> dict[int, str]:
    """Check every annotation of a COCO file (already through :func:`_check_coco`) against its image's size.

    A polygon ring or ``bbox`` partly outside ``[0, width] x [0, height]`` is clamped in place, with a warning naming
    ``path``, the image and the annotation id. A ring or ``bbox`` wholly outside, or an RLE whose ``size`` is not
    the image's, is a problem of that annotation.

    Returns:
        ``id(annotation)`` -> the problem (naming ``path``, the image and the annotation), for the annotations
        that cannot be used.
    """
    images = {image["id"]: image for image in data["images"]}
    problems: dict[int, str] = {}
    for index, ann in enumerate(data["annotations"]):
        image = images[ann["image_id"]]
        width, height = image["width"], image["height"]
        where = (f"{path}: image {image['id']!r} ({image['file_name']}): "
                 + (f"annotation id {ann['id']!r}" if "id" in ann else f"annotation #{index} (no id)"))
        found: list[str] = []
        moved: list[str] = []
        segmentation = ann["segmentation"]
        if isinstance(segmentation, dict):
            size = segmentation.get("size")
            if isinstance(size, list) and list(size) != [height, width]:
                found.append(f"its RLE has the size {size} ([height, width]) but the image is [{height}, {width}]")
        else:
            for k, ring in enumerate(segmentation):
                try:
                    clamped, n = clamp_ring(ring, width, height)
                except OutsideImageError as error:
                    found.append(f"polygon {k}: {error}")
                    continue
                if n:
                    segmentation[k] = clamped
                    moved.append(f"{n} vertices of polygon {k}")
        bbox = ann.get("bbox")
        if isinstance(bbox, list) and len(bbox) == 4 and all(_is_finite_number(v) for v in bbox):
            x, y, w, h = bbox
            if outside_image(x, y, x + w, y + h, width, height):
                found.append(f"its bbox {bbox} lies wholly outside the {width}x{height} image")
            else:
                x1, y1 = min(max(x, 0), width), min(max(y, 0), height)
                x2, y2 = min(max(x + w, 0), width), min(max(y + h, 0), height)
                if [x1, y1, x2 - x1, y2 - y1] != bbox:
                    ann["bbox"] = [x1, y1, x2 - x1, y2 - y1]
                    moved.append("its bbox")
        if found:
            problems[id(ann)] = f"{where}: {'; '.join(found)}; fix the coordinates or the image's width/height"
        elif moved:
            log.warning("%s: %s outside the %dx%d image, clamped to its border", where, " and ".join(moved),
                        width, height)
    return problems


# ----------------------------------------------------------------------------------------------------------------
# Writing: detections as COCO annotations.


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE of a bool [H, W] mask, with ``counts`` as a str (JSON-ready)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def coco_annotations(result: Mapping[str, np.ndarray], image_id: int, first_id: int = 1) -> list[dict[str, Any]]:
    """COCO annotations (results and ground-truth style at once) of one image's detections.

    Args:
        result: a detection result.
        image_id: the COCO image id.
        first_id: annotation id of the first detection; the others follow.

    Returns:
        One dict per detection: ``id``, ``image_id``, ``category_id`` (the class id), ``bbox`` ``[x, y, w, h]``
        pixels, ``score``, ``area`` (mask pixels), ``iscrowd`` 0, ``segmentation`` (compressed RLE).
    """
    annotations = []
    rois = np.asarray(result["rois"]).reshape(-1, 4)
    for i in range(rois.shape[0]):
        y1, x1, y2, x2 = (int(v) for v in rois[i])
        mask = np.asarray(result["masks"][:, :, i], dtype=bool)
        annotations.append({
            "id": first_id + i,
            "image_id": int(image_id),
            "category_id": int(result["class_ids"][i]),
            "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
            "score": round(float(result["scores"][i]), 6),
            "area": int(np.count_nonzero(mask)),
            "iscrowd": 0,
            "segmentation": mask_to_rle(mask),
        })
    return annotations
