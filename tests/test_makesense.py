"""Tests of ``annotations.makesense``: makesense.ai polygon exports (COCO JSON, VGG JSON) to clean COCO.

Every export is built in ``tmp_path`` with the quirks of ``docs/makesense-formats.md``; golden values are hand
computed: the square (10, 10)-(30, 30) rasterises to 20 x 20 = 400 pixels in rows and columns 10..29.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
import zipfile

import pytest
from PIL import Image, ImageOps
from pycocotools.coco import COCO

from annotations import (
    ConversionReport,
    DegeneratePolygonError,
    ImageSizeMismatchError,
    MakesenseError,
    MakesenseWarning,
    MissingImageError,
    PolygonOutsideImageError,
    RectangleExportError,
    clean_ring,
    convert,
    convert_with_report,
    detect_format,
    image_size,
    polygon_area,
    write_coco,
)
from annotations.makesense import main
from tests.makesense_exports import (
    SQUARE,
    coco_annotation,
    coco_export,
    vgg_export,
    vgg_region,
    write_image,
    write_json,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPORT_NAME = "labels_skin_2024-05-01-10-12-33.json"


@pytest.fixture
def images(tmp_path):
    """An images folder with a 50x40 PNG and a 64x48 JPEG."""
    folder = tmp_path / "images"
    folder.mkdir()
    write_image(str(folder / "a.png"), 50, 40)
    write_image(str(folder / "b.jpg"), 64, 48)
    return str(folder)


def _coco_file(tmp_path, export, name=EXPORT_NAME):
    return write_json(str(tmp_path / name), export)


def _load(coco, tmp_path):
    """Writes ``coco`` and loads it with pycocotools."""
    path = str(tmp_path / "out.json")
    write_coco(coco, path)
    return COCO(path)


def _convert(*args, **kwargs):
    """``convert_with_report`` with its MakesenseWarnings silenced (tests that check warnings use pytest.warns)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MakesenseWarning)
        return convert_with_report(*args, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# Pure helpers
# ----------------------------------------------------------------------------------------------------------------


def test_clean_ring_open_ring_unchanged():
    ring, clamped = clean_ring(SQUARE, 50, 40)
    assert ring == [10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0]
    assert clamped == 0


def test_clean_ring_drops_closing_and_repeated_vertices():
    closed = [10, 10, 10, 10, 30, 10, 30, 30, 10, 30, 10, 10]  # Repeated first vertex, and again at the end.
    ring, _ = clean_ring(closed, 50, 40)
    assert ring == [10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0]


def test_clean_ring_clamps_to_the_image():
    ring, clamped = clean_ring([-5, -5, 20, -5, 60, 20, -5, 45], 50, 40)
    assert ring == [0.0, 0.0, 20.0, 0.0, 50.0, 20.0, 0.0, 40.0]
    assert clamped == 4  # (-5,-5), (20,-5), (60,20), (-5,45); a vertex exactly on the border is not counted.
    assert clean_ring([0, 0, 50, 0, 50, 40], 50, 40)[1] == 0


@pytest.mark.parametrize(
    "coords, reason",
    [
        ([10, 10, 20, 20], "fewer than 3 distinct"),
        ([10, 10, 20, 20, 10, 10], "fewer than 3 distinct"),
        ([0, 0, 10, 10, 20, 20], "zero area"),
        ([-5, 0, 10, 10, 20, 20], "zero area (all vertices on one line) after clamping 1"),
        ([10, 10, 20, 10, 20], "odd number"),
        ([10, 10, 20, float("nan"), 20, 20], "finite numbers"),
        ([10, 10, 20, "x", 20, 20], "finite numbers"),
    ],
)
def test_clean_ring_rejects_degenerate_rings(coords, reason):
    with pytest.raises(DegeneratePolygonError, match=re.escape(reason)):
        clean_ring(coords, 50, 40)


def test_clean_ring_refuses_a_ring_wholly_outside_the_image():
    with pytest.raises(PolygonOutsideImageError, match=re.escape("wholly outside the 50x40 image (x 60 to 70, y 10")):
        clean_ring([60, 10, 70, 20, 60, 30], 50, 40)
    with pytest.raises(PolygonOutsideImageError):
        clean_ring([-9, -9, 0, -9, 0, 0, -9, 0], 50, 40)  # Touches the corner only.
    assert clean_ring([-9, -9, 1, -9, 1, 1, -9, 1], 50, 40)[0] == [0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0]


def test_polygon_area_shoelace():
    assert abs(polygon_area([(10, 10), (30, 10), (30, 30), (10, 30)])) == 400.0
    assert abs(polygon_area([(0, 0), (4, 0), (0, 3)])) == 6.0


def test_image_size_applies_exif_orientation(tmp_path):
    path = write_image(str(tmp_path / "rot.jpg"), 60, 30, orientation=6)  # Rotated 90 degrees: shown as 30x60.
    assert image_size(path) == (30, 60)
    with Image.open(path) as im:
        assert ImageOps.exif_transpose(im).size == (30, 60)
    assert image_size(write_image(str(tmp_path / "flip.jpg"), 60, 30, orientation=3)) == (60, 30)


# ----------------------------------------------------------------------------------------------------------------
# COCO export
# ----------------------------------------------------------------------------------------------------------------


def test_coco_square_loads_in_pycocotools_with_hand_computed_mask(tmp_path, images):
    export = coco_export([("a.png", 50, 40)], [coco_annotation(0, 1, SQUARE)], ["lesion"])
    coco, report = _convert(_coco_file(tmp_path, export), images)
    gt = _load(coco, tmp_path)
    assert gt.getAnnIds() == [1]  # makesense's id 0 renumbered from 1.
    ann = gt.loadAnns(1)[0]
    mask = gt.annToMask(ann)
    assert mask.shape == (40, 50)
    assert mask.sum() == 400
    assert mask[10:30, 10:30].all()
    assert ann["area"] == 400.0
    assert ann["bbox"] == [10.0, 10.0, 20.0, 20.0]
    assert ann["iscrowd"] == 0
    assert ann["segmentation"] == [[10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0]]
    assert gt.loadImgs(1)[0] == {"id": 1, "file_name": "a.png", "width": 50, "height": 40}
    assert gt.loadCats(1)[0]["name"] == "lesion"
    assert set(coco) == {"info", "licenses", "images", "annotations", "categories"}
    assert coco["licenses"] == []
    assert coco["info"]["year"] == 2024 and coco["info"]["date_created"] == "2024/05/01"
    assert "skin" in coco["info"]["description"]
    assert report.export_format == "coco" and report.num_annotations == 1 and report.num_images == 1


def test_coco_ids_start_at_one_across_images(tmp_path, images):
    anns = [coco_annotation(0, 1, SQUARE), coco_annotation(1, 2, SQUARE), coco_annotation(2, 2, [40, 5, 60, 5, 50, 40])]
    export = coco_export([("a.png", 50, 40), ("b.jpg", 64, 48)], anns, ["lesion"])
    coco, _ = _convert(_coco_file(tmp_path, export), images)
    assert [a["id"] for a in coco["annotations"]] == [1, 2, 3]
    assert [a["image_id"] for a in coco["annotations"]] == [1, 2, 2]
    assert [i["file_name"] for i in coco["images"]] == ["a.png", "b.jpg"]
    gt = _load(coco, tmp_path)
    assert gt.getAnnIds(imgIds=[2]) == [2, 3]
    # Triangle (40,5), (60,5), (50,40): bbox from the vertices, area from the rasterised mask.
    tri = gt.loadAnns(3)[0]
    assert tri["bbox"] == [40.0, 5.0, 20.0, 35.0]
    assert tri["area"] == gt.annToMask(tri).sum()
    assert abs(tri["area"] - 350.0) / 350.0 < 0.1


def test_missing_category_dropped_when_several_categories(tmp_path, images):
    anns = [coco_annotation(0, 1, SQUARE, 1), coco_annotation(1, 1, [35, 5, 45, 5, 45, 15], category_id=None)]
    export = coco_export([("a.png", 50, 40)], anns, ["lesion", "ruler"])
    with pytest.warns(MakesenseWarning, match=r"a\.png: annotation id 1: no label, and 2 categories"):
        coco, report = convert_with_report(_coco_file(tmp_path, export), images)
    assert len(coco["annotations"]) == 1
    assert len(report.dropped_annotations) == 1


def test_missing_category_defaults_to_the_only_category(tmp_path, images):
    anns = [coco_annotation(0, 1, SQUARE, category_id=None)]
    export = coco_export([("a.png", 50, 40)], anns, ["lesion"])
    with pytest.warns(MakesenseWarning, match=r"a\.png: annotation id 0: no label; given the category 'lesion'"):
        coco, report = convert_with_report(_coco_file(tmp_path, export), images)
    assert coco["annotations"][0]["category_id"] == 1
    assert len(report.defaulted_annotations) == 1


def test_default_category_option(tmp_path, images):
    anns = [coco_annotation(0, 1, SQUARE, category_id=None)]
    path = _coco_file(tmp_path, coco_export([("a.png", 50, 40)], anns, ["lesion", "ruler"]))
    coco, _ = _convert(path, images, default_category="ruler")
    assert coco["annotations"][0]["category_id"] == 2
    with pytest.raises(MakesenseError, match="default category 'hair' is not one of"):
        _convert(path, images, default_category="hair")


def test_unused_categories_kept_and_reported(tmp_path, images):
    export = coco_export([("a.png", 50, 40)], [coco_annotation(0, 1, SQUARE, 2)], ["ruler", "lesion", "hair"])
    coco, report = _convert(_coco_file(tmp_path, export), images)
    assert coco["categories"] == [
        {"id": 1, "name": "ruler", "supercategory": ""},
        {"id": 2, "name": "lesion", "supercategory": ""},
        {"id": 3, "name": "hair", "supercategory": ""},
    ]
    assert coco["annotations"][0]["category_id"] == 2
    assert report.unused_categories == ["ruler", "hair"]


def test_category_map_fixes_ids_and_refuses_unknown_labels(tmp_path, images):
    export = coco_export([("a.png", 50, 40)], [coco_annotation(0, 1, SQUARE, 2)], ["ruler", "lesion"])
    path = _coco_file(tmp_path, export)
    coco, _ = _convert(path, images, category_map=["lesion", "nevus"])
    assert coco["categories"] == [
        {"id": 1, "name": "lesion", "supercategory": ""},
        {"id": 2, "name": "nevus", "supercategory": ""},
    ]
    assert coco["annotations"][0]["category_id"] == 1
    coco, _ = _convert(path, images, category_map={"lesion": 5})
    assert coco["annotations"][0]["category_id"] == 5
    with pytest.raises(MakesenseError, match=r"'lesion' \(e\.g\. in a\.png\) are not in the category list"):
        _convert(path, images, category_map=["nevus"])


def test_vertices_beyond_the_border_are_clamped(tmp_path, images):
    ring = [-5, -5, 20, -5, 20, 20, -5, 20]  # Clamped to the square (0, 0)-(20, 20): 400 pixels.
    export = coco_export([("a.png", 50, 40)], [coco_annotation(0, 1, ring)], ["lesion"])
    with pytest.warns(MakesenseWarning, match="clamped 3 vertices") as record:
        coco, report = convert_with_report(_coco_file(tmp_path, export), images)
    [warning] = [str(w.message) for w in record if "clamped" in str(w.message)]
    assert warning.endswith("in 1 annotations: a.png (annotation id 0)")  # The image file and the annotation.
    ann = coco["annotations"][0]
    assert ann["segmentation"] == [[0.0, 0.0, 20.0, 0.0, 20.0, 20.0, 0.0, 20.0]]
    assert ann["bbox"] == [0.0, 0.0, 20.0, 20.0]
    assert ann["area"] == 400.0
    assert report.clamped_vertices == 3


def test_whole_image_polygon_on_the_border(tmp_path, images):
    export = coco_export([("a.png", 50, 40)], [coco_annotation(0, 1, [0, 0, 50, 0, 50, 40, 0, 40])], ["lesion"])
    coco, report = _convert(_coco_file(tmp_path, export), images)
    gt = _load(coco, tmp_path)
    assert gt.annToMask(gt.loadAnns(1)[0]).sum() == 50 * 40
    assert report.clamped_vertices == 0


def test_degenerate_polygons_are_dropped_with_warnings(tmp_path, images):
    anns = [
        coco_annotation(0, 1, SQUARE),
        coco_annotation(1, 1, [5, 5, 15, 15, 5, 5]),  # Two distinct vertices.
        coco_annotation(2, 1, [0, 0, 10, 10, 20, 20]),  # Collinear.
        coco_annotation(3, 1, [-5, 0, 10, 10, 20, 20]),  # Collinear once (-5, 0) is clamped to (0, 0).
        coco_annotation(4, 1, [1.1, 1.1, 1.3, 1.1, 1.3, 1.3]),  # A sliver inside one pixel: no pixel centre.
    ]
    export = coco_export([("a.png", 50, 40)], anns, ["lesion"])
    with pytest.warns(MakesenseWarning) as record:
        coco, report = convert_with_report(_coco_file(tmp_path, export), images)
    messages = [str(w.message) for w in record]
    assert any("a.png: annotation id 1: fewer than 3 distinct vertices" in m for m in messages)
    assert any("a.png: annotation id 2: zero area" in m for m in messages)
    assert any("a.png: annotation id 3: zero area" in m and "after clamping" in m for m in messages)
    assert any("a.png: annotation id 4: the polygon covers no pixel" in m for m in messages)
    assert [a["id"] for a in coco["annotations"]] == [1]
    assert len(report.dropped_annotations) == 4


def test_polygons_wholly_outside_their_image_are_an_error(tmp_path, images):
    anns = [
        coco_annotation(0, 1, SQUARE),
        coco_annotation(1, 1, [60, 10, 70, 10, 70, 20]),  # Right of the 50-wide a.png.
        coco_annotation(2, 2, [10, 50, 20, 50, 20, 60]),  # Below the 48-high b.jpg.
    ]
    path = _coco_file(tmp_path, coco_export([("a.png", 50, 40), ("b.jpg", 64, 48)], anns, ["lesion"]))
    with pytest.raises(PolygonOutsideImageError) as info:
        _convert(path, images)
    message = str(info.value)
    assert message.startswith(f"{path}: 2 polygon(s) lie wholly outside their image")
    assert "a.png: annotation id 1: the polygon lies wholly outside the 50x40 image (x 60 to 70, y 10 to 20)" in message
    assert "b.jpg: annotation id 2: the polygon lies wholly outside the 64x48 image" in message
    vgg = vgg_export(images, {"a.png": {"0": vgg_region(SQUARE, "lesion"),
                                        "1": vgg_region([51, 1, 60, 1, 60, 9], "lesion")}})
    with pytest.raises(PolygonOutsideImageError, match=r"a\.png: region '1': the polygon lies wholly outside"):
        _convert(_coco_file(tmp_path, vgg, "labels_skin_vgg.json"), images)


def test_multi_ring_annotation_keeps_good_rings(tmp_path, images):
    ann = coco_annotation(0, 1, SQUARE)
    ann["segmentation"] = [SQUARE, [35, 5, 45, 5, 45, 15, 35, 15], [1, 1, 2, 2]]  # 400 + 100 px, then 2 vertices.
    export = coco_export([("a.png", 50, 40)], [ann], ["lesion"])
    with pytest.warns(MakesenseWarning, match=r"a\.png: annotation id 0: dropped degenerate ring\(s\).*ring 2"):
        coco, _ = convert_with_report(_coco_file(tmp_path, export), images)
    gt = _load(coco, tmp_path)
    ann = gt.loadAnns(1)[0]
    assert len(ann["segmentation"]) == 2
    assert ann["area"] == 500.0 == gt.annToMask(ann).sum()
    assert ann["bbox"] == [10.0, 5.0, 35.0, 25.0]


def test_image_whose_annotations_all_drop_is_left_out(tmp_path, images):
    anns = [coco_annotation(0, 1, [5, 5, 15, 15, 5, 5]), coco_annotation(1, 2, SQUARE)]
    export = coco_export([("a.png", 50, 40), ("b.jpg", 64, 48)], anns, ["lesion"])
    with pytest.warns(MakesenseWarning) as record:
        coco, report = convert_with_report(_coco_file(tmp_path, export), images)
    assert "a.png: every annotation was dropped" in str(record[-1].message)
    assert coco["images"] == [{"id": 1, "file_name": "b.jpg", "width": 64, "height": 48}]
    assert coco["annotations"][0]["image_id"] == 1
    assert len(report.dropped_images) == 1


def test_nothing_usable_is_an_error(tmp_path, images):
    export = coco_export([("a.png", 50, 40)], [coco_annotation(0, 1, [5, 5, 15, 15, 5, 5])], ["lesion"])
    with pytest.raises(MakesenseError, match="no usable polygon annotation"):
        _convert(_coco_file(tmp_path, export), images)


def test_coco_size_mismatch_is_an_error(tmp_path, images):
    export = coco_export([("a.png", 40, 50)], [coco_annotation(0, 1, SQUARE)], ["lesion"])
    with pytest.raises(ImageSizeMismatchError, match=r"a\.png: export 40x50, file 50x40 \(the image file is not"):
        _convert(_coco_file(tmp_path, export), images)


def test_coco_exif_rotated_image(tmp_path, images):
    write_image(os.path.join(images, "rot.jpg"), 60, 30, orientation=6)  # Shown (and labelled) as 30x60.
    ring = [5, 40, 25, 40, 25, 55, 5, 55]  # y up to 55: inside only in the rotated frame.
    export = coco_export([("rot.jpg", 30, 60)], [coco_annotation(0, 1, ring)], ["lesion"])
    coco, report = _convert(_coco_file(tmp_path, export), images)
    assert coco["images"][0]["width"] == 30 and coco["images"][0]["height"] == 60
    assert report.clamped_vertices == 0
    assert coco["annotations"][0]["area"] == 20 * 15
    # An export that recorded the stored (unrotated) size was made where the orientation was ignored.
    export = coco_export([("rot.jpg", 60, 30)], [coco_annotation(0, 1, SQUARE)], ["lesion"])
    with pytest.raises(ImageSizeMismatchError, match="rot.jpg: export 60x30, file 30x60 .*EXIF orientation 6"):
        _convert(_coco_file(tmp_path, export, "other.json"), images)


def test_missing_image_names_file_folder_and_case_near_match(tmp_path, images):
    write_image(os.path.join(images, "img_1.jpg"), 20, 20)
    export = coco_export(
        [("IMG_1.JPG", 20, 20), ("gone.png", 50, 40)],
        [coco_annotation(0, 1, [1, 1, 10, 1, 10, 10]), coco_annotation(1, 2, SQUARE)],
        ["lesion"],
    )
    with pytest.raises(MissingImageError) as info:
        _convert(_coco_file(tmp_path, export), images)
    message = str(info.value)
    assert "'IMG_1.JPG'" in message and "'gone.png'" in message and images in message
    assert "differs only in case from 'img_1.jpg'" in message


def test_missing_image_is_case_exact_even_on_case_insensitive_file_systems(tmp_path, images):
    export = coco_export([("A.png", 50, 40)], [coco_annotation(0, 1, SQUARE)], ["lesion"])
    with pytest.raises(MissingImageError, match="'A.png' differs only in case from 'a.png'"):
        _convert(_coco_file(tmp_path, export), images)


def test_old_export_listing_unlabelled_images(tmp_path, images):
    # Before 2020-09 makesense listed every loaded image, labelled or not.
    export = coco_export([("a.png", 50, 40), ("b.jpg", 64, 48)], [coco_annotation(0, 1, SQUARE)], ["lesion"])
    path = _coco_file(tmp_path, export)
    coco, _ = _convert(path, images)
    assert [i["file_name"] for i in coco["images"]] == ["a.png"]
    coco, report = _convert(path, images, include_unlabelled=True)
    assert [i["file_name"] for i in coco["images"]] == ["a.png", "b.jpg"]
    assert report.unlabelled_images_added == 1


def test_include_unlabelled_adds_image_files_without_annotations(tmp_path, images):
    write_image(os.path.join(images, "rot.jpg"), 60, 30, orientation=8)
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    export = coco_export([("a.png", 50, 40)], [coco_annotation(0, 1, SQUARE)], ["lesion"])
    path = _coco_file(tmp_path, export)
    coco, _ = _convert(path, images)
    assert len(coco["images"]) == 1  # Off by default.
    coco, report = _convert(path, images, include_unlabelled=True)
    assert coco["images"] == [
        {"id": 1, "file_name": "a.png", "width": 50, "height": 40},
        {"id": 2, "file_name": "b.jpg", "width": 64, "height": 48},
        {"id": 3, "file_name": "rot.jpg", "width": 30, "height": 60},
    ]
    assert report.unlabelled_images_added == 2
    gt = _load(coco, tmp_path)
    assert gt.getAnnIds(imgIds=[2, 3]) == []


def test_coco_quirks_annotation_to_unknown_category(tmp_path, images):
    anns = [coco_annotation(0, 1, SQUARE), coco_annotation(2, 1, SQUARE, 9)]
    export = coco_export([("a.png", 50, 40)], anns, ["lesion"])
    with pytest.warns(MakesenseWarning) as record:
        coco, _ = convert_with_report(_coco_file(tmp_path, export), images)
    messages = " | ".join(str(w.message) for w in record)
    assert "a.png: annotation id 2: category_id 9 is not in 'categories'" in messages
    assert len(coco["annotations"]) == 1


def test_annotation_of_an_image_not_in_the_export_is_an_error(tmp_path, images, capsys):
    """makesense exports only annotations of the images it lists (docs/makesense-formats.md): another is damage."""
    anns = [coco_annotation(0, 1, SQUARE), coco_annotation(1, 7, SQUARE)]
    path = _coco_file(tmp_path, coco_export([("a.png", 50, 40)], anns, ["lesion"]))
    with pytest.raises(MakesenseError, match=re.escape(f"{path}: annotation id 1: image_id 7 is not in 'images'")):
        _convert(path, images)
    out = tmp_path / "train.json"
    assert main([path, "--images", images, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: annotation id 1: image_id 7") and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("where", ["category", "annotation"])
def test_non_integer_category_id_is_an_error(tmp_path, images, where):
    ann = coco_annotation(3, 1, SQUARE, 1.5 if where == "annotation" else 1)
    export = coco_export([("a.png", 50, 40)], [ann], ["lesion", "hair"])
    if where == "category":
        export["categories"][0]["id"] = 1.5
    path = _coco_file(tmp_path, export)
    message = "bad category .*'id': 1.5.*needs an integer 'id'" if where == "category" else (
        r"annotation id 3 \(image 'a\.png'\): category_id 1\.5 is not an integer")
    with pytest.raises(MakesenseError, match=message) as info:
        _convert(path, images)
    assert str(info.value).startswith(path)
    export["categories"][0]["id"] = 1.0  # An integer written as a float is fine.
    ann["category_id"] = 2.0
    coco, _ = _convert(_coco_file(tmp_path, export), images)
    assert coco["annotations"][0]["category_id"] == 2


def test_deeply_nested_json_is_a_clear_error(tmp_path, images, capsys):
    path = tmp_path / EXPORT_NAME
    path.write_text("[" * 100000)
    with pytest.raises(MakesenseError, match="nested too deeply"):
        _convert(str(path), images)
    assert main([str(path), "--images", images, "--out", str(tmp_path / "out.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: the JSON is nested too deeply") and err.count("\n") == 1


# ----------------------------------------------------------------------------------------------------------------
# VGG export
# ----------------------------------------------------------------------------------------------------------------


def test_vgg_closed_rings_gapped_keys_and_label_order(tmp_path, images):
    regions = {
        "a.png": {"0": vgg_region(SQUARE, "nevus"), "2": vgg_region([35, 5, 45, 5, 45, 15], "lesion")},
        "b.jpg": {"1": vgg_region([0, 0, 10, 0, 10, 10, 0, 10], "lesion")},
    }
    path = write_json(str(tmp_path / EXPORT_NAME), vgg_export(images, regions))
    with open(path) as f:
        assert detect_format(json.load(f)) == "vgg"
    coco, report = _convert(path, images)
    assert report.export_format == "vgg"
    assert coco["categories"] == [
        {"id": 1, "name": "nevus", "supercategory": ""},
        {"id": 2, "name": "lesion", "supercategory": ""},
    ]
    assert coco["images"] == [
        {"id": 1, "file_name": "a.png", "width": 50, "height": 40},
        {"id": 2, "file_name": "b.jpg", "width": 64, "height": 48},
    ]
    square = coco["annotations"][0]
    assert square["segmentation"] == [[10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0]]  # Closing vertex dropped.
    assert square["area"] == 400.0 and square["category_id"] == 1
    assert [a["id"] for a in coco["annotations"]] == [1, 2, 3]
    assert [a["category_id"] for a in coco["annotations"]] == [1, 2, 2]
    gt = _load(coco, tmp_path)
    assert gt.annToMask(gt.loadAnns(3)[0]).sum() == 100


def test_vgg_regions_as_list_and_via2_project(tmp_path, images):
    regions = {"a.png": [vgg_region(SQUARE, "lesion")]}
    export = vgg_export(images, regions)
    coco, _ = _convert(write_json(str(tmp_path / "via.json"), export), images)
    assert coco["annotations"][0]["area"] == 400.0
    via2 = {"_via_settings": {}, "_via_img_metadata": {"a.png2048": export["a.png"]}}
    coco, _ = _convert(write_json(str(tmp_path / "via2.json"), via2), images)
    assert coco["images"][0]["file_name"] == "a.png"


def test_vgg_size_is_bytes_and_dimensions_come_from_the_exif_oriented_file(tmp_path, images):
    write_image(os.path.join(images, "rot.jpg"), 60, 30, orientation=6)
    export = vgg_export(images, {"rot.jpg": {"0": vgg_region([5, 40, 25, 40, 25, 55, 5, 55], "lesion")}})
    assert export["rot.jpg"]["size"] == os.path.getsize(os.path.join(images, "rot.jpg"))
    coco, report = _convert(write_json(str(tmp_path / "v.json"), export), images)
    assert (coco["images"][0]["width"], coco["images"][0]["height"]) == (30, 60)
    assert report.clamped_vertices == 0 and coco["annotations"][0]["area"] == 300.0
    export["rot.jpg"]["size"] += 1
    with pytest.warns(MakesenseWarning, match=r"rot\.jpg: the export records \d+ bytes but the file has"):
        convert_with_report(write_json(str(tmp_path / "v2.json"), export), images)


def test_vgg_unlabelled_region_and_non_polygon_shapes(tmp_path, images):
    rect = {"shape_attributes": {"name": "rect", "x": 1, "y": 1, "width": 5, "height": 5}, "region_attributes": {}}
    regions = {"a.png": {"0": vgg_region(SQUARE, "lesion"), "1": vgg_region(SQUARE, None), "2": rect}}
    with pytest.warns(MakesenseWarning) as record:
        coco, report = convert_with_report(write_json(str(tmp_path / "v.json"), vgg_export(images, regions)), images)
    messages = " | ".join(str(w.message) for w in record)
    assert "a.png: region '1': no label; given the category 'lesion'" in messages
    assert "a.png: region '2': a 'rect' shape, not a polygon; dropped" in messages
    assert len(coco["annotations"]) == 2 and len(report.defaulted_annotations) == 1


def test_vgg_missing_image(tmp_path, images):
    export = vgg_export(images, {"a.png": {"0": vgg_region(SQUARE, "lesion")}})
    export["A.PNG"] = dict(export["a.png"], filename="A.PNG")
    with pytest.raises(MissingImageError, match=r"'A\.PNG'.*differs only in case from 'a\.png'"):
        _convert(write_json(str(tmp_path / "v.json"), export), images)


# ----------------------------------------------------------------------------------------------------------------
# Refused exports
# ----------------------------------------------------------------------------------------------------------------


def _rect_exports(tmp_path):
    yolo_zip = str(tmp_path / "labels_skin_2024-05-01-10-12-33.zip")
    with zipfile.ZipFile(yolo_zip, "w") as z:
        z.writestr("a.txt", "0 0.400000 0.500000 0.200000 0.250000")
    voc = tmp_path / "a.xml"
    voc.write_text("<annotation>\n\t<filename>a.png</filename>\n</annotation>")
    csv = tmp_path / "labels.csv"
    csv.write_text("label_name,bbox_x,bbox_y,bbox_width,bbox_height,image_name,image_width,image_height\n"
                   "lesion,10,10,20,20,a.png,50,40")
    txt = tmp_path / "a.txt"
    txt.write_text("0 0.400000 0.500000 0.200000 0.250000")
    coco_boxes = coco_export([("a.png", 50, 40)], [coco_annotation(0, 1, SQUARE)], ["lesion"])
    coco_boxes["annotations"][0]["segmentation"] = []
    vgg_rects = {"a.png": {"filename": "a.png", "size": 1, "regions": {"0": {
        "shape_attributes": {"name": "rect", "x": 1, "y": 1, "width": 5, "height": 5}, "region_attributes": {}}}}}
    return {
        "yolo zip": yolo_zip,
        "voc xml": str(voc),
        "csv": str(csv),
        "yolo txt": str(txt),
        "coco boxes": write_json(str(tmp_path / "boxes.json"), coco_boxes),
        "vgg rects": write_json(str(tmp_path / "rects.json"), vgg_rects),
        "tags json": write_json(str(tmp_path / "tags.json"), [{"image": "a.png", "annotations": ["lesion"]}]),
        "zip named json": str(_copy(yolo_zip, tmp_path / "zip.json")),
        "csv named json": str(_copy(str(csv), tmp_path / "csv.json")),
        "xml named json": str(_copy(str(voc), tmp_path / "xml.json")),
    }


def _copy(src, dst):
    with open(src, "rb") as f:
        dst.write_bytes(f.read())
    return dst


@pytest.mark.parametrize(
    "kind",
    ["yolo zip", "voc xml", "csv", "yolo txt", "coco boxes", "vgg rects", "tags json", "zip named json",
     "csv named json", "xml named json"],
)
def test_rectangle_exports_are_refused_with_the_polygon_message(tmp_path, images, kind):
    path = _rect_exports(tmp_path)[kind]
    with pytest.raises(RectangleExportError, match="masks need polygon labels"):
        _convert(path, images)


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "the export file is empty"),
        ("{not json", "not a JSON file"),
        ("{}", "the export is empty"),
        ('{"foo": 1}', "not a makesense.ai COCO export"),
        ('{"images": [], "annotations": {}, "categories": []}', "'annotations' is missing or not a list"),
        ('{"images": [{"id": 1}], "annotations": [], "categories": []}', "needs 'id' and a string 'file_name'"),
    ],
)
def test_bad_exports_give_clear_errors(tmp_path, images, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(MakesenseError, match=message):
        _convert(str(path), images)


def test_missing_export_and_images_folder(tmp_path, images):
    with pytest.raises(MakesenseError, match="no such export file"):
        _convert(str(tmp_path / "nope.json"), images)
    export = _coco_file(tmp_path, coco_export([("a.png", 50, 40)], [coco_annotation(0, 1, SQUARE)], ["lesion"]))
    with pytest.raises(MakesenseError, match="the images folder does not exist"):
        _convert(export, str(tmp_path / "nowhere"))


# ----------------------------------------------------------------------------------------------------------------
# Writing and the command line
# ----------------------------------------------------------------------------------------------------------------


def test_write_coco_is_atomic(tmp_path):
    out = tmp_path / "sub" / "out.json"
    write_coco({"images": [], "annotations": [], "categories": []}, str(out))
    assert json.loads(out.read_text())["images"] == []
    with pytest.raises(ValueError):
        write_coco({"images": [float("nan")]}, str(out))  # Not valid JSON: nothing replaced.
    assert json.loads(out.read_text())["images"] == []
    assert os.listdir(out.parent) == ["out.json"]  # No temporary file left behind.


def test_convert_returns_the_dict(tmp_path, images):
    export = _coco_file(tmp_path, coco_export([("a.png", 50, 40)], [coco_annotation(0, 1, SQUARE)], ["lesion"]))
    coco = convert(export, images)
    assert coco["annotations"][0]["area"] == 400.0
    assert isinstance(_convert(export, images)[1], ConversionReport)


def test_cli_success_prints_a_summary(tmp_path, images, capsys):
    anns = [coco_annotation(0, 1, SQUARE), coco_annotation(1, 1, [5, 5, 15, 15, 5, 5])]
    export = _coco_file(tmp_path, coco_export([("a.png", 50, 40)], anns, ["lesion", "hair"]))
    out = tmp_path / "out" / "train.json"
    assert main([export, "--images", images, "--out", str(out), "--include-unlabelled"]) == 0
    captured = capsys.readouterr()
    assert "2 images (1 unlabelled added), 1 annotations, 2 categories" in captured.out
    assert "dropped: 1 annotations" in captured.out and "unused categories (kept): hair" in captured.out
    assert "warning: a.png: annotation id 1: fewer than 3 distinct vertices" in captured.err
    gt = COCO(str(out))
    assert gt.getAnnIds() == [1] and gt.annToMask(gt.loadAnns(1)[0]).sum() == 400


def test_cli_bad_export_exits_nonzero_and_keeps_the_old_output(tmp_path, images, capsys):
    out = tmp_path / "train.json"
    out.write_text("OLD")
    for bad in _rect_exports(tmp_path).values():
        assert main([bad, "--images", images, "--out", str(out)]) != 0
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "masks need polygon labels" in err
    missing = _coco_file(tmp_path, coco_export([("gone.png", 5, 5)], [coco_annotation(0, 1, SQUARE)], ["x"]))
    assert main([missing, "--images", images, "--out", str(out)]) == 1
    assert "gone.png" in capsys.readouterr().err
    malformed = tmp_path / "malformed.json"
    malformed.write_text('{"images": [{"id": 1, "file_name": "a.png"}], "annotations": [7], "categories": []}')
    assert main([str(malformed), "--images", images, "--out", str(out)]) == 1
    assert out.read_text() == "OLD"


def test_cli_category_list(tmp_path, images, capsys):
    export = _coco_file(tmp_path, coco_export([("a.png", 50, 40)], [coco_annotation(0, 1, SQUARE, 2)], ["r", "lesion"]))
    out = tmp_path / "train.json"
    assert main([export, "--images", images, "--out", str(out), "--categories", "nevus, lesion", "-q"]) == 0
    assert capsys.readouterr().err == ""
    coco = json.loads(out.read_text())
    assert [(c["id"], c["name"]) for c in coco["categories"]] == [(1, "nevus"), (2, "lesion")]
    assert coco["annotations"][0]["category_id"] == 2
    assert main([export, "--images", images, "--out", str(out), "--categories", "nevus"]) == 1
    assert "'lesion' (e.g. in a.png) are not in the category list ['nevus']" in capsys.readouterr().err


def test_cli_refuses_to_overwrite_the_export(tmp_path, images, capsys):
    export = _coco_file(tmp_path, coco_export([("a.png", 50, 40)], [coco_annotation(0, 1, SQUARE)], ["lesion"]))
    assert main([export, "--images", images, "--out", export]) == 1
    assert "--out is the export itself" in capsys.readouterr().err


def test_cli_as_module_subprocess(tmp_path, images):
    export = _coco_file(tmp_path, coco_export([("a.png", 50, 40)], [coco_annotation(0, 1, SQUARE)], ["lesion"]))
    out = tmp_path / "train.json"
    cmd = [sys.executable, "-m", "annotations.makesense", export, "--images", images, "--out", str(out)]
    ok = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == "" and "1 annotations" in ok.stdout
    out.write_text("OLD")
    (tmp_path / "a.xml").write_text("<annotation></annotation>")
    bad = subprocess.run(cmd[:3] + [str(tmp_path / "a.xml")] + cmd[4:], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1
    assert out.read_text() == "OLD"
