"""Tests of lesion.datasets: ISIC layouts (2016, 2017, 2018), attributes, COCO, resizing cache and split_ids."""

from __future__ import annotations

import csv
import json
import logging
import os
import random
import re
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from lesion import datasets
from lesion.datasets import (
    ATTRIBUTE_CLASSES,
    DIAGNOSIS_CLASSES,
    CocoDataset,
    DatasetError,
    IsicAttributeDataset,
    IsicDataset,
    split_ids,
)

FIXTURE = os.path.join(os.path.dirname(__file__), "data", "isic2017")
FIXTURE_CSV = os.path.join(FIXTURE, "ISIC-2017_Training_Part3_GroundTruth.csv")
FIXTURE_MASKS = os.path.join(FIXTURE, "ISIC-2017_Training_Part1_GroundTruth")


def fixture_labels() -> dict[str, str]:
    """Diagnosis name per id, read straight from the fixture CSV."""
    with open(FIXTURE_CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    return {r["image_id"]: "melanoma" if float(r["melanoma"]) == 1.0
            else "seborrheic_keratosis" if float(r["seborrheic_keratosis"]) == 1.0 else "nevus" for r in rows}


def write_image(path: str, width: int, height: int, colour=(200, 120, 90)) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full([height, width, 3], colour, np.uint8)).save(path)


def write_mask(path: str, mask: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(path)


def box_mask(width: int, height: int, y1: int, x1: int, y2: int, x2: int) -> np.ndarray:
    mask = np.zeros([height, width], bool)
    mask[y1:y2, x1:x2] = True
    return mask


# ----------------------------------------------------------------------------------------------------------------
# ISIC 2017 fixture (real images).


def test_fixture_2017_lesion_mode_count_classes_labels():
    ds = IsicDataset()
    ds.load_isic(FIXTURE)
    ds.prepare()
    expected = fixture_labels()
    assert ds.num_images == 6
    assert ds.class_names == ["BG", "lesion"]
    assert [info["image_id"] for info in ds.image_info] == sorted(expected)
    for info in ds.image_info:
        assert info["diagnosis"] == expected[info["image_id"]]
        assert info["label"] == DIAGNOSIS_CLASSES.index(expected[info["image_id"]])
        assert info["melanoma"] == float(expected[info["image_id"]] == "melanoma")
        assert info["seborrheic_keratosis"] == float(expected[info["image_id"]] == "seborrheic_keratosis")
        assert info["mask_path"].endswith(f"{info['image_id']}_segmentation.png")
        assert (info["year"], info["subset"]) == (2017, "train")
    assert Counter(expected.values()) == {"melanoma": 2, "nevus": 2, "seborrheic_keratosis": 2}


def test_fixture_2017_masks_are_bool_and_image_sized():
    ds = IsicDataset()
    ds.load_isic(FIXTURE)
    ds.prepare()
    for i in ds.image_ids:
        image = ds.load_image(i)
        masks, class_ids = ds.load_mask(i)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert masks.dtype == bool
        assert masks.shape == image.shape[:2] + (1,)
        assert class_ids.dtype == np.int32 and class_ids.tolist() == [1]
        assert (ds.image_info[i]["width"], ds.image_info[i]["height"]) == (image.shape[1], image.shape[0])
        assert 0 < masks.sum() < masks.size


def test_fixture_2017_threshold_on_anti_aliased_edge():
    ds = IsicDataset()
    ds.load_isic(FIXTURE, image_ids=["ISIC_0014722"])
    ds.prepare()
    raw = np.asarray(Image.open(os.path.join(FIXTURE_MASKS, "ISIC_0014722_segmentation.png")))
    low_grey = (raw > 0) & (raw <= 127)
    high_grey = (raw > 127) & (raw < 255)
    assert low_grey.any() and high_grey.any(), "the fixture mask should be anti-aliased"
    masks, _ = ds.load_mask(0)
    np.testing.assert_array_equal(masks[:, :, 0], raw > 127)
    assert not masks[:, :, 0][low_grey].any()
    assert masks[:, :, 0][high_grey].all()


def test_fixture_2017_diagnosis_mode_class_ids_match_labels():
    ds = IsicDataset()
    ds.load_isic(FIXTURE, classes="diagnosis")
    ds.prepare()
    expected = fixture_labels()
    assert ds.class_names == ["BG"] + DIAGNOSIS_CLASSES
    for i in ds.image_ids:
        info = ds.image_info[i]
        _, class_ids = ds.load_mask(i)
        assert class_ids.tolist() == [DIAGNOSIS_CLASSES.index(expected[info["image_id"]]) + 1]
        assert ds.class_names[class_ids[0]] == expected[info["image_id"]]


def test_image_ids_select_and_keep_order():
    ds = IsicDataset()
    ds.load_isic(FIXTURE, image_ids=["ISIC_0014657", "ISIC_0000002"])
    assert [info["image_id"] for info in ds.image_info] == ["ISIC_0014657", "ISIC_0000002"]
    with pytest.raises(DatasetError, match="ISIC_9999999"):
        IsicDataset().load_isic(FIXTURE, image_ids=["ISIC_9999999"])


# ----------------------------------------------------------------------------------------------------------------
# Fake 2016 / 2017 / 2018 layouts.


def make_2017(root, split="Training", ids=("ISIC_0000001", "ISIC_0000002"), rows=None, sizes=None):
    """A tiny ISIC 2017 split: 8x6 images, a 2x2 lesion each."""
    for n, image_id in enumerate(ids):
        width, height = (sizes or {}).get(image_id, (8, 6))
        write_image(os.path.join(root, f"ISIC-2017_{split}_Data", f"{image_id}.jpg"), 8, 6)
        write_mask(os.path.join(root, f"ISIC-2017_{split}_Part1_GroundTruth", f"{image_id}_segmentation.png"),
                   box_mask(width, height, 1, 1 + n, 3, 3 + n))
    rows = rows if rows is not None else [(i, "0.0", "0.0") for i in ids]
    with open(os.path.join(root, f"ISIC-2017_{split}_Part3_GroundTruth.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_id", "melanoma", "seborrheic_keratosis"])
        writer.writerows(rows)


def test_2016_layout(tmp_path):
    root = str(tmp_path)
    for image_id in ("ISIC_0000000", "ISIC_0000001"):
        write_image(os.path.join(root, "ISBI2016_ISIC_Part1_Training_Data", f"{image_id}.jpg"), 10, 8)
        write_mask(os.path.join(root, "ISBI2016_ISIC_Part1_Training_GroundTruth", f"{image_id}_Segmentation.png"),
                   box_mask(10, 8, 2, 2, 5, 6))
    with open(os.path.join(root, "ISBI2016_ISIC_Part3_Training_GroundTruth.csv"), "w") as f:
        f.write("ISIC_0000000,benign\nISIC_0000001,malignant\n")
    ds = IsicDataset()
    ds.load_isic(root, classes="diagnosis")
    ds.prepare()
    assert [info["image_id"] for info in ds.image_info] == ["ISIC_0000000", "ISIC_0000001"]
    assert [info["diagnosis"] for info in ds.image_info] == ["nevus", "melanoma"]
    assert [info["year"] for info in ds.image_info] == [2016, 2016]
    masks, class_ids = ds.load_mask(1)
    assert masks.shape == (8, 10, 1) and masks.sum() == 12
    assert class_ids.tolist() == [1]  # melanoma
    assert ds.load_mask(0)[1].tolist() == [3]  # nevus


def make_2018(root):
    ids = ["ISIC_0000000", "ISIC_0000001", "ISIC_0000002", "ISIC_0000003"]
    for image_id in ids:
        write_image(os.path.join(root, "ISIC2018_Task1-2_Training_Input", f"{image_id}.jpg"), 12, 9)
        write_mask(os.path.join(root, "ISIC2018_Task1_Training_GroundTruth", f"{image_id}_segmentation.png"),
                   box_mask(12, 9, 0, 0, 4, 4))
    # Files the official folder also holds, which are not images.
    with open(os.path.join(root, "ISIC2018_Task1-2_Training_Input", "LICENSE.txt"), "w") as f:
        f.write("licence\n")
    os.makedirs(os.path.join(root, "ISIC2018_Task3_Training_GroundTruth"))
    with open(os.path.join(root, "ISIC2018_Task3_Training_GroundTruth",
                           "ISIC2018_Task3_Training_GroundTruth.csv"), "w") as f:
        f.write("image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\n"
                "ISIC_0000000,1.0,0.0,0.0,0.0,0.0,0.0,0.0\n"
                "ISIC_0000001,0.0,1.0,0.0,0.0,0.0,0.0,0.0\n"
                "ISIC_0000002,0.0,0.0,0.0,0.0,1.0,0.0,0.0\n"
                "ISIC_0000003,0.0,0.0,1.0,0.0,0.0,0.0,0.0\n")
    return ids


def test_2018_layout_lesion_mode_keeps_other_diagnoses(tmp_path):
    root = str(tmp_path)
    ids = make_2018(root)
    ds = IsicDataset()
    ds.load_isic(root)
    ds.prepare()
    assert [info["image_id"] for info in ds.image_info] == ids
    assert [info["diagnosis"] for info in ds.image_info] == ["melanoma", "nevus", "seborrheic_keratosis",
                                                             "basal_cell_carcinoma"]
    assert [info["label"] for info in ds.image_info] == [0, 2, 1, None]
    masks, class_ids = ds.load_mask(3)
    assert masks.shape == (9, 12, 1) and masks.sum() == 16 and class_ids.tolist() == [1]


def test_2018_layout_diagnosis_mode_excludes_other_diagnoses(tmp_path, caplog):
    root = str(tmp_path)
    make_2018(root)
    ds = IsicDataset()
    with caplog.at_level(logging.WARNING, logger=datasets.__name__):
        ds.load_isic(root, classes="diagnosis")
    ds.prepare()
    assert ds.num_images == 3
    assert ds.excluded_ids == ["ISIC_0000003"]
    assert "left out 1 images" in caplog.text and "basal_cell_carcinoma" in caplog.text
    assert [ds.load_mask(i)[1].tolist() for i in ds.image_ids] == [[1], [3], [2]]


def test_several_splits_need_subset(tmp_path):
    root = str(tmp_path)
    make_2017(root, "Training", ids=("ISIC_0000001", "ISIC_0000002"))
    make_2017(root, "Validation", ids=("ISIC_0000005",))
    with pytest.raises(DatasetError, match="several ISIC splits"):
        IsicDataset().load_isic(root)
    ds = IsicDataset()
    ds.load_isic(root, subset="validation")
    assert [(info["image_id"], info["subset"]) for info in ds.image_info] == [("ISIC_0000005", "validation")]
    with pytest.raises(DatasetError, match="no ISIC image folder for subset 'test'"):
        IsicDataset().load_isic(root, subset="test")


def test_unknown_layout_names_the_expected_folders(tmp_path):
    with pytest.raises(DatasetError, match="ISIC-2017_Training_Data"):
        IsicDataset().load_isic(str(tmp_path))


def test_mask_of_wrong_size_names_both_files(tmp_path):
    root = str(tmp_path)
    make_2017(root, sizes={"ISIC_0000002": (7, 6)})
    ds = IsicDataset()
    ds.load_isic(root)
    ds.prepare()
    ds.load_mask(0)
    with pytest.raises(DatasetError) as info:
        ds.load_mask(1)
    message = str(info.value)
    assert "ISIC_0000002_segmentation.png" in message and "ISIC_0000002.jpg" in message
    assert "7x6" in message and "8x6" in message


def test_missing_label_raises_in_diagnosis_mode(tmp_path):
    root = str(tmp_path)
    make_2017(root, rows=[("ISIC_0000001", "1.0", "0.0")])
    with pytest.raises(DatasetError, match=r"^ISIC_0000002: no diagnosis"):
        IsicDataset().load_isic(root, classes="diagnosis")
    ds = IsicDataset()  # Lesion mode does not need labels.
    ds.load_isic(root)
    assert [info["diagnosis"] for info in ds.image_info] == ["melanoma", None]
    assert ds.image_info[1]["label"] is None and ds.image_info[1]["melanoma"] is None


def test_missing_masks_raise_unless_inference(tmp_path):
    root = str(tmp_path)
    make_2017(root)
    os.remove(os.path.join(root, "ISIC-2017_Training_Part1_GroundTruth", "ISIC_0000002_segmentation.png"))
    with pytest.raises(DatasetError, match="1 of 2 images have no mask"):
        IsicDataset().load_isic(root)
    ds = IsicDataset()
    ds.load_isic(root, inference=True)
    ds.prepare()
    assert ds.image_info[1]["mask_path"] is None
    masks, class_ids = ds.load_mask(1)
    assert masks.shape == (6, 8, 0) and masks.dtype == bool and class_ids.shape == (0,)


def test_empty_mask_gives_zero_instances(tmp_path):
    root = str(tmp_path)
    make_2017(root)
    write_mask(os.path.join(root, "ISIC-2017_Training_Part1_GroundTruth", "ISIC_0000001_segmentation.png"),
               np.zeros([6, 8], bool))
    ds = IsicDataset()
    ds.load_isic(root)
    ds.prepare()
    masks, class_ids = ds.load_mask(0)
    assert masks.shape == (6, 8, 0) and class_ids.shape == (0,)


def test_label_csv_marked_both_classes_is_an_error(tmp_path):
    root = str(tmp_path)
    make_2017(root, rows=[("ISIC_0000001", "1.0", "1.0"), ("ISIC_0000002", "0.0", "0.0")])
    with pytest.raises(DatasetError, match="line 2: ISIC_0000001 is marked both"):
        IsicDataset().load_isic(root)


def _write_csv(root, text: bytes) -> str:
    path = os.path.join(root, "ISIC-2017_Training_Part3_GroundTruth.csv")
    with open(path, "wb") as f:
        f.write(text)
    return path


@pytest.mark.parametrize("row, message", [
    (b"ISIC_0000002,1.0", r"line 3: ISIC_0000002 has no 'seborrheic_keratosis' value \(the row has fewer columns"),
    (b"ISIC_0000002,nan,0.0", r"line 3: ISIC_0000002: melanoma 'nan' is not a finite number"),
    (b"ISIC_0000002,0.0,inf", r"line 3: ISIC_0000002: seborrheic_keratosis 'inf' is not a finite number"),
    (b"ISIC_0000002,no,0.0", r"line 3: ISIC_0000002: melanoma 'no' is not a number"),
    (b"ISIC_0000002,0.0,0.0 \xe9t\xe9", r"line 3: not UTF-8 text \(byte 0xe9"),
])
def test_label_csv_errors_name_the_file_row_and_problem(tmp_path, row, message):
    root = str(tmp_path)
    make_2017(root)
    path = _write_csv(root, b"image_id,melanoma,seborrheic_keratosis\nISIC_0000001,0.0,0.0\n" + row + b"\n")
    for classes in ("lesion", "diagnosis"):
        with pytest.raises(DatasetError, match=message) as info:
            IsicDataset().load_isic(root, classes=classes)
        assert str(info.value).startswith(f"{path}, line ")


def test_label_csv_2018_short_row(tmp_path):
    root = str(tmp_path)
    make_2018(root)
    path = os.path.join(root, "ISIC2018_Task3_Training_GroundTruth", "ISIC2018_Task3_Training_GroundTruth.csv")
    with open(path, "a") as f:
        f.write("ISIC_0000004,1.0\n")
    with pytest.raises(DatasetError, match=r"line 6: ISIC_0000004 has no 'NV' value"):
        IsicDataset().load_isic(root)


def test_label_csv_with_a_byte_order_mark(tmp_path):
    root = str(tmp_path)
    make_2017(root)
    _write_csv(root, b"\xef\xbb\xbfimage_id,melanoma,seborrheic_keratosis\nISIC_0000001,1.0,0.0\n"
                     b"ISIC_0000002,0.0,1.0\n")
    ds = IsicDataset()
    ds.load_isic(root, classes="diagnosis")
    assert [info["diagnosis"] for info in ds.image_info] == ["melanoma", "seborrheic_keratosis"]


def test_masks_without_an_image_are_named_in_a_warning(tmp_path, caplog):
    root = str(tmp_path)
    make_2017(root, ids=("ISIC_0000001", "ISIC_0000002", "ISIC_0000003"))
    os.remove(os.path.join(root, "ISIC-2017_Training_Data", "ISIC_0000002.jpg"))
    os.remove(os.path.join(root, "ISIC-2017_Training_Data", "ISIC_0000003.jpg"))
    ds = IsicDataset()
    with caplog.at_level(logging.WARNING, logger=datasets.__name__):
        ds.load_isic(root)
    assert [info["image_id"] for info in ds.image_info] == ["ISIC_0000001"]  # The image folder decides.
    [record] = [r for r in caplog.records if "no image" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert ("2 mask(s) with no image in" in record.getMessage()
            and "ISIC_0000002_segmentation.png, ISIC_0000003_segmentation.png" in record.getMessage())


def test_zero_one_mask_is_read_as_binary(tmp_path):
    lesion = box_mask(8, 6, 1, 2, 4, 6)
    zero_one, zero_255 = str(tmp_path / "zero_one.png"), str(tmp_path / "zero_255.png")
    Image.fromarray(lesion.astype(np.uint8)).save(zero_one)  # Values 0 and 1, not 0 and 255.
    write_mask(zero_255, lesion)
    np.testing.assert_array_equal(datasets.read_mask(zero_one), lesion)
    np.testing.assert_array_equal(datasets.read_mask(zero_255), lesion)
    # Shrunk, the 0/1 mask gives what the 0/255 one gives (area average, then > 127).
    np.testing.assert_array_equal(datasets.read_mask(zero_one, max_side=4), datasets.read_mask(zero_255, max_side=4))
    Image.fromarray(np.where(lesion, 127, 0).astype(np.uint8)).save(zero_255)  # The 0/255 rule: 127 is background.
    assert not datasets.read_mask(zero_255).any()


def test_data_errors_are_one_class():
    from mrcnn import dataset as core

    assert DatasetError is core.DatasetError and issubclass(core.ImageReadError, DatasetError)
    assert issubclass(DatasetError, ValueError)


# ----------------------------------------------------------------------------------------------------------------
# Full-resolution images: max_side and cache_dir.


def make_full_resolution(root):
    """A 4288x2848 JPEG (left half red, right half blue) with a centred 2144x1424 lesion mask."""
    width, height = 4288, 2848
    image = np.zeros([height, width, 3], np.uint8)
    image[:, : width // 2] = (220, 30, 30)
    image[:, width // 2:] = (30, 30, 220)
    os.makedirs(os.path.join(root, "ISIC-2017_Training_Data"))
    Image.fromarray(image).save(os.path.join(root, "ISIC-2017_Training_Data", "ISIC_0012090.jpg"), quality=90)
    write_mask(os.path.join(root, "ISIC-2017_Training_Part1_GroundTruth", "ISIC_0012090_segmentation.png"),
               box_mask(width, height, 712, 1072, 2136, 3216))


def test_max_side_and_cache_dir(tmp_path, monkeypatch):
    root, cache = str(tmp_path / "data"), str(tmp_path / "cache")
    make_full_resolution(root)
    ds = IsicDataset()
    ds.load_isic(root, max_side=1024, cache_dir=cache)
    ds.prepare()
    assert (ds.image_info[0]["width"], ds.image_info[0]["height"]) == (4288, 2848)

    image = ds.load_image(0)
    masks, class_ids = ds.load_mask(0)
    assert image.shape == (680, 1024, 3)  # 2848 * 1024 / 4288 = 680.1
    assert masks.shape == (680, 1024, 1) and class_ids.tolist() == [1]
    np.testing.assert_allclose(image[340, 100], (220, 30, 30), atol=6)
    np.testing.assert_allclose(image[340, 900], (30, 30, 220), atol=6)
    # The mask was a quarter of the image, centred: it is scaled with the image.
    assert abs(int(masks.sum()) - 512 * 340) < 2 * (512 + 340)
    assert masks[340, 512, 0] and not masks[10, 10, 0]

    files = sorted(os.listdir(cache))
    assert len(files) == 2 and any(f.endswith(".npy") for f in files) and any(f.endswith(".png") for f in files)
    assert all(f.startswith("ISIC_0012090") for f in files)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded the original again instead of reading the cache")

    monkeypatch.setattr(datasets, "read_image_resized", no_decoding)
    monkeypatch.setattr(datasets, "read_mask", no_decoding)
    np.testing.assert_array_equal(ds.load_image(0), image)
    np.testing.assert_array_equal(ds.load_mask(0)[0], masks)


def test_cache_key_changes_when_the_file_changes(tmp_path):
    root, cache = str(tmp_path / "data"), str(tmp_path / "cache")
    make_full_resolution(root)
    ds = IsicDataset()
    ds.load_isic(root, max_side=512, cache_dir=cache)
    ds.prepare()
    first = ds.load_image(0)
    assert first.shape == (340, 512, 3)
    path = ds.image_info[0]["path"]
    Image.fromarray(np.full([2848, 4288, 3], 90, np.uint8)).save(path, quality=80)
    second = ds.load_image(0)
    assert len([f for f in os.listdir(cache) if f.endswith(".npy")]) == 2
    assert abs(int(second[100, 100, 0]) - 90) <= 3


def test_read_image_resized_png_and_small_images(tmp_path):
    path = str(tmp_path / "a.png")
    write_image(path, 300, 100)
    assert datasets.read_image_resized(path, 150).shape == (50, 150, 3)
    assert datasets.read_image_resized(path, 1024).shape == (100, 300, 3)
    assert datasets.resized_size(4288, 2848, 1024) == (1024, 680)
    assert datasets.resized_size(100, 50, None) == (100, 50)


# ----------------------------------------------------------------------------------------------------------------
# ISIC 2018 Task 2 attributes.


def make_attributes(root):
    """Two 20x16 images: the first with two globules and a pigment network, the second with no attribute."""
    gt = os.path.join(root, "ISIC2018_Task2_Training_GroundTruth_v3")
    for image_id in ("ISIC_0000000", "ISIC_0000001"):
        write_image(os.path.join(root, "ISIC2018_Task1-2_Training_Input", f"{image_id}.jpg"), 20, 16)
        for name in ATTRIBUTE_CLASSES:
            mask = np.zeros([16, 20], bool)
            if image_id == "ISIC_0000000" and name == "globules":
                mask[1:3, 1:3] = True  # 4 pixels
                mask[10:13, 14:17] = True  # 9 pixels
            if image_id == "ISIC_0000000" and name == "pigment_network":
                mask[4:8, 4:12] = True  # 32 pixels
            write_mask(os.path.join(gt, f"{image_id}_attribute_{name}.png"), mask)


def test_attribute_dataset_components(tmp_path):
    root = str(tmp_path)
    make_attributes(root)
    ds = IsicAttributeDataset()
    ds.load_isic_attributes(root)
    ds.prepare()
    assert ds.class_names == ["BG"] + ATTRIBUTE_CLASSES
    masks, class_ids = ds.load_mask(0)
    assert masks.shape == (16, 20, 3) and masks.dtype == bool
    assert class_ids.tolist() == [1, 1, 4]
    assert masks.sum(axis=(0, 1)).tolist() == [4, 9, 32]
    empty, empty_ids = ds.load_mask(1)
    assert empty.shape == (16, 20, 0) and empty_ids.shape == (0,)


def test_attribute_dataset_whole_mode_and_min_area(tmp_path):
    root = str(tmp_path)
    make_attributes(root)
    whole = IsicAttributeDataset()
    whole.load_isic_attributes(root, instance_mode="whole")
    whole.prepare()
    masks, class_ids = whole.load_mask(0)
    assert class_ids.tolist() == [1, 4] and masks.sum(axis=(0, 1)).tolist() == [13, 32]
    big = IsicAttributeDataset()
    big.load_isic_attributes(root, min_area=5)
    big.prepare()
    assert big.load_mask(0)[1].tolist() == [1, 4]


def test_attribute_dataset_missing_attribute_file(tmp_path):
    root = str(tmp_path)
    make_attributes(root)
    os.remove(os.path.join(root, "ISIC2018_Task2_Training_GroundTruth_v3", "ISIC_0000001_attribute_streaks.png"))
    with pytest.raises(DatasetError, match="ISIC_0000001_attribute_streaks.png"):
        IsicAttributeDataset().load_isic_attributes(root)


# ----------------------------------------------------------------------------------------------------------------
# COCO.


def make_coco(tmp_path, with_second_image=True):
    image_dir = tmp_path / "images"
    write_image(str(image_dir / "a.png"), 20, 16)
    if with_second_image:
        write_image(str(image_dir / "b.png"), 10, 10)
    # Uncompressed RLE, column-major: a 10x10 image whose first 3 columns are set (30 pixels).
    rle = {"size": [10, 10], "counts": [0, 30, 70]}
    annotation = {
        "images": [{"id": 1, "file_name": "a.png", "width": 20, "height": 16},
                   {"id": 2, "file_name": "b.png", "width": 10, "height": 10}],
        "categories": [{"id": 9, "name": "ruler"}, {"id": 5, "name": "lesion"}],
        "annotations": [
            # Square polygon with corners (x, y) = (2, 3) and (12, 8): rows 3..7, columns 2..11, 10 x 5 pixels.
            {"id": 1, "image_id": 1, "category_id": 5, "iscrowd": 0, "area": 50.0, "bbox": [2, 3, 10, 5],
             "segmentation": [[2, 3, 12, 3, 12, 8, 2, 8]]},
            # A degenerate polygon (a line): an empty mask, dropped.
            {"id": 2, "image_id": 1, "category_id": 9, "iscrowd": 0, "area": 0.0, "bbox": [0, 0, 5, 0],
             "segmentation": [[0, 0, 5, 0, 5, 0]]},
            {"id": 3, "image_id": 2, "category_id": 9, "iscrowd": 0, "area": 30.0, "bbox": [0, 0, 3, 10],
             "segmentation": rle},
            {"id": 4, "image_id": 2, "category_id": 5, "iscrowd": 1, "area": 30.0, "bbox": [0, 0, 3, 10],
             "segmentation": rle},
        ],
    }
    json_path = tmp_path / "instances.json"
    json_path.write_text(json.dumps(annotation))
    return str(json_path), str(image_dir)


def test_coco_dataset_polygon_rle_and_crowd(tmp_path):
    json_path, image_dir = make_coco(tmp_path)
    ds = CocoDataset()
    ds.load_coco(json_path, image_dir)
    ds.prepare()
    assert ds.class_names == ["BG", "lesion", "ruler"]  # Category-id order: 5, 9.
    assert ds.map_source_class_id("coco.5") == 1 and ds.map_source_class_id("coco.9") == 2
    masks, class_ids = ds.load_mask(0)
    assert masks.shape == (16, 20, 1) and masks.dtype == bool
    assert class_ids.tolist() == [1]
    assert masks.sum() == 50
    rows, cols = np.nonzero(masks[:, :, 0])
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (3, 7, 2, 11)
    masks, class_ids = ds.load_mask(1)
    assert class_ids.tolist() == [2, -1]  # The crowd annotation is kept with a negative id.
    assert masks.sum(axis=(0, 1)).tolist() == [30, 30] and masks[:, :3, 0].all()

    no_crowd = CocoDataset()
    no_crowd.load_coco(json_path, image_dir, keep_crowd=False)
    no_crowd.prepare()
    assert no_crowd.load_mask(1)[1].tolist() == [2]


def test_coco_dataset_class_names_filter(tmp_path):
    json_path, image_dir = make_coco(tmp_path)
    ds = CocoDataset()
    ds.load_coco(json_path, image_dir, class_names=["ruler"])
    ds.prepare()
    assert ds.class_names == ["BG", "ruler"]
    assert [info["id"] for info in ds.image_info] == [1, 2]
    assert ds.load_mask(0)[0].shape == (16, 20, 0)  # Only the empty "ruler" polygon on image 1.
    with pytest.raises(DatasetError, match="no category named 'mole'"):
        CocoDataset().load_coco(json_path, image_dir, class_names=["mole"])


def test_coco_dataset_missing_image_file(tmp_path):
    json_path, image_dir = make_coco(tmp_path, with_second_image=False)
    with pytest.raises(FileNotFoundError, match=r"b\.png: image file listed in .*instances\.json is missing"):
        CocoDataset().load_coco(json_path, image_dir)


def _coco_with(tmp_path, edit):
    json_path, image_dir = make_coco(tmp_path)
    with open(json_path) as f:
        data = json.load(f)
    edit(data)
    with open(json_path, "w") as f:
        json.dump(data, f)
    return json_path, image_dir


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["annotations"][0].update(segmentation=[[100, 100, 200, 200]]),
     r"annotation id 1: polygon 0 has 4 coordinates; a polygon needs at least 3 points"),
    (lambda d: d["annotations"][0].update(segmentation=[[2, 3, 12, 3, 12, "8", 2, 8]]),
     r"annotation id 1: polygon 0 is not a list of finite numbers"),
    (lambda d: d["annotations"][0].update(segmentation=[]), r"annotation id 1: no segmentation"),
    (lambda d: d["annotations"][2].update(image_id=7), r"annotation id 3: image_id 7 is not in 'images'"),
    (lambda d: d["annotations"][2].update(category_id=4), r"annotation id 3: category_id 4 is not in 'categories'"),
    (lambda d: d["images"][1].pop("height"), r"image #1 .* needs an 'id', a 'file_name' and a positive integer"),
])
def test_coco_file_problems_name_the_file_and_annotation(tmp_path, edit, message):
    json_path, image_dir = _coco_with(tmp_path, edit)
    with pytest.raises(DatasetError, match=message) as info:
        CocoDataset().load_coco(json_path, image_dir)
    assert str(info.value).startswith(json_path)


def test_coco_file_nested_too_deeply(tmp_path):
    json_path, image_dir = make_coco(tmp_path)
    with open(json_path, "w") as f:
        f.write("[" * 100000)
    with pytest.raises(DatasetError, match="nested too deeply") as info:
        CocoDataset().load_coco(json_path, image_dir)
    assert str(info.value).startswith(json_path)


def test_coco_image_of_another_size_than_recorded(tmp_path):
    json_path, image_dir = _coco_with(tmp_path, lambda d: d["images"][1].update(width=12))
    ds = CocoDataset()
    ds.load_coco(json_path, image_dir)
    ds.prepare()
    assert ds.load_image(0).shape == (16, 20, 3)
    with pytest.raises(DatasetError, match=r"b\.png: the image is 10x10 .*instances\.json records 12x10"):
        ds.load_image(1)


# ----------------------------------------------------------------------------------------------------------------
# The check before training (mrcnn.dataset.check_dataset).


def test_check_dataset_lists_every_bad_isic_image(tmp_path):
    from mrcnn.dataset import DataCheckError, check_dataset

    root = str(tmp_path)
    ids = ("ISIC_0000001", "ISIC_0000002", "ISIC_0000003", "ISIC_0000004")
    make_2017(root, ids=ids, sizes={"ISIC_0000002": (7, 6)})  # A mask of the wrong size.
    images = os.path.join(root, "ISIC-2017_Training_Data")
    masks = os.path.join(root, "ISIC-2017_Training_Part1_GroundTruth")
    with open(os.path.join(images, "ISIC_0000003.jpg"), "wb") as f:
        f.write(b"not a JPEG at all")  # An image that cannot be identified.
    with open(os.path.join(masks, "ISIC_0000004_segmentation.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n garbage")  # A mask that cannot be read.
    with pytest.raises(DatasetError, match=r"^\S+ISIC_0000003\.jpg: not a readable image \("):
        IsicDataset().load_isic(root)  # By default an unreadable image stops the loading.
    ds = IsicDataset()
    ds.load_isic(root, keep_unreadable=True)  # Registers the unreadable image with its problem.
    ds.prepare()
    check = check_dataset(ds, workers=3)
    assert check.num_images == 4 and check.workers == 3 and check.bad_images == [1, 2, 3]
    lines = check.lines()
    assert lines[0] == (f"{masks}/ISIC_0000002_segmentation.png: the mask is 7x6 (width x height) but its image "
                        f"{images}/ISIC_0000002.jpg is 8x6; a mask must have the size of its image")
    assert lines[1].startswith(f"{images}/ISIC_0000003.jpg: not a readable image (")
    assert lines[2].startswith(f"{masks}/ISIC_0000004_segmentation.png: not a readable mask (")
    assert "4 images in" in check.summary() and "3 with problems" in check.summary()
    with pytest.raises(DataCheckError) as info:
        check.raise_if_bad()
    assert str(info.value).splitlines() == ["3 of 4 images cannot be used:"] + [f"  {line}" for line in lines]
    # The problems are raised where the images are read, too, not trained as something else.
    assert ds.load_mask(0)[1].tolist() == [1]
    for index, line in zip((1, 2, 3), lines):
        with pytest.raises(DatasetError, match=re.escape(line.split(": ")[0])):
            ds.load_mask(index)
    with pytest.raises(DatasetError, match="ISIC_0000003.jpg: not a readable image"):
        ds.load_image(2)


def test_check_dataset_of_good_data_and_attribute_masks(tmp_path):
    from mrcnn.dataset import check_dataset

    ds = IsicDataset()
    ds.load_isic(FIXTURE)
    check = check_dataset(ds)
    assert check.problems == {} and check.num_images == len(ds.image_info) > 0
    check.raise_if_bad()  # Nothing to raise.

    root = str(tmp_path)
    make_attributes(root)
    write_mask(os.path.join(root, "ISIC2018_Task2_Training_GroundTruth_v3", "ISIC_0000001_attribute_streaks.png"),
               np.zeros([6, 5], bool))
    attributes = IsicAttributeDataset()
    attributes.load_isic_attributes(root)
    [message] = check_dataset(attributes, workers=1).lines()
    assert "ISIC_0000001_attribute_streaks.png: the mask is 5x6" in message


def test_mask_header_is_read_without_decoding_the_pixels(tmp_path, monkeypatch):
    from PIL import ImageFile

    path = str(tmp_path / "mask.png")
    write_mask(path, box_mask(30, 20, 2, 2, 5, 5))

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("decoded the pixels")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert datasets._file_size(path, "mask") == (30, 20)


def _geometry_coco(tmp_path, annotations):
    image_dir = tmp_path / "images"
    write_image(str(image_dir / "a.png"), 20, 16)
    write_image(str(image_dir / "b.png"), 10, 10)
    data = {"images": [{"id": 1, "file_name": "a.png", "width": 20, "height": 16},
                       {"id": 2, "file_name": "b.png", "width": 10, "height": 10}],
            "categories": [{"id": 1, "name": "lesion"}],
            "annotations": [{"image_id": image_id, "category_id": 1, "iscrowd": 0, **ann}
                            for image_id, ann in annotations]}
    json_path = tmp_path / "instances.json"
    json_path.write_text(json.dumps(data))
    return str(json_path), str(image_dir)


def test_coco_polygon_partly_outside_is_clamped_with_a_warning(tmp_path, caplog):
    # Columns 15..21 of a 20-wide image, rows -2..4: clamped to columns 15..19, rows 0..3 (5 x 4 = 20 pixels).
    ring = [15, -2, 22, -2, 22, 4, 15, 4]
    json_path, image_dir = _geometry_coco(tmp_path, [(1, {"id": 7, "segmentation": [ring], "bbox": [15, -2, 7, 6]})])
    ds = CocoDataset()
    with caplog.at_level(logging.WARNING, logger="lesion.datasets"):
        ds.load_coco(json_path, image_dir)
    assert (f"{json_path}: image 1 (a.png): annotation id 7: 3 vertices of polygon 0 and its bbox outside the 20x16 "
            "image, clamped to its border") in caplog.text
    ds.prepare()
    masks, _ = ds.load_mask(0)
    rows, cols = np.nonzero(masks[:, :, 0])
    assert masks.sum() == 20 and (rows.min(), rows.max(), cols.min(), cols.max()) == (0, 3, 15, 19)
    assert ds.image_info[0]["annotations"][0]["bbox"] == [15, 0, 5, 4]
    from mrcnn.dataset import check_dataset
    assert check_dataset(ds).problems == {}


def test_coco_geometry_wholly_outside_is_an_error_naming_file_image_and_annotation(tmp_path):
    from mrcnn.dataset import check_dataset

    json_path, image_dir = _geometry_coco(tmp_path, [
        (1, {"id": 1, "segmentation": [[2, 3, 12, 3, 12, 8, 2, 8]]}),  # Fine.
        (1, {"id": 2, "segmentation": [[25, 1, 30, 1, 30, 5]]}),  # Right of the 20-wide image.
        (2, {"id": 3, "segmentation": [[1, 1, 4, 1, 4, 4]], "bbox": [-9, 1, 3, 3]}),  # A bbox left of it.
        (2, {"id": 4, "segmentation": {"size": [12, 10], "counts": [0, 120]}}),  # An RLE of another size.
    ])
    ds = CocoDataset()
    ds.load_coco(json_path, image_dir)  # Loads: the problems belong to images, to be listed or skipped.
    ds.prepare()
    check = check_dataset(ds)
    assert check.bad_images == [0, 1]
    assert check.lines() == [
        f"{json_path}: image 1 (a.png): annotation id 2: polygon 0: the polygon lies wholly outside the 20x16 image "
        "(x 25 to 30, y 1 to 5); fix the coordinates or the image's width/height",
        f"{json_path}: image 2 (b.png): annotation id 3: its bbox [-9, 1, 3, 3] lies wholly outside the 10x10 image; "
        "fix the coordinates or the image's width/height",
        f"{json_path}: image 2 (b.png): annotation id 4: its RLE has the size [12, 10] ([height, width]) but the "
        "image is [10, 10]; fix the coordinates or the image's width/height",
    ]
    with pytest.raises(DatasetError, match="annotation id 2: polygon 0: the polygon lies wholly outside"):
        ds.load_mask(0)  # Not trained as an image with one lesion less.


def test_check_dataset_finds_coco_images_unreadable_or_of_another_size(tmp_path):
    from mrcnn.dataset import check_dataset

    json_path, image_dir = _coco_with(tmp_path, lambda d: d["images"][1].update(width=12))
    with open(os.path.join(image_dir, "a.png"), "wb") as f:
        f.write(b"")
    ds = CocoDataset()
    ds.load_coco(json_path, image_dir)
    lines = check_dataset(ds).lines()
    assert len(lines) == 4
    assert lines[0].startswith(f"{image_dir}/a.png: not a readable image")
    assert lines[1].startswith(f"{json_path}: image 2 (b.png): annotation id 3: its RLE has the size [10, 10]")
    assert lines[3] == (f"{image_dir}/b.png: the image is 10x10 (width x height) but {json_path} records 12x10; "
                        "the masks would not line up with it")


# ----------------------------------------------------------------------------------------------------------------
# split_ids.


IDS = [f"ISIC_{i:07d}" for i in range(100)]
LABELS = ["melanoma"] * 20 + ["seborrheic_keratosis"] * 30 + ["nevus"] * 50


def test_split_ids_deterministic_disjoint_and_complete():
    train, val = split_ids(IDS, val_fraction=0.2, seed=3)
    shuffled = IDS[:]
    random.Random(1).shuffle(shuffled)
    assert split_ids(shuffled, val_fraction=0.2, seed=3) == (train, val)
    assert len(val) == 20 and len(train) == 80
    assert not set(train) & set(val)
    assert sorted(train + val) == IDS
    assert train == sorted(train) and val == sorted(val)
    assert split_ids(IDS, val_fraction=0.2, seed=4)[1] != val


def test_split_ids_is_fixed_across_machines():
    # SHA-256 ranking: this split must never change (it does not depend on NumPy's or Python's random streams).
    assert split_ids([f"ISIC_{i:07d}" for i in range(10)], val_fraction=0.3, seed=0)[1] == \
        split_ids([f"ISIC_{i:07d}" for i in reversed(range(10))], val_fraction=0.3, seed=0)[1]
    ranked = sorted(IDS[:10], key=lambda i: datasets._rank(0, i))
    assert split_ids(IDS[:10], val_fraction=0.3, seed=0)[1] == sorted(ranked[:3])


def test_split_ids_stratified():
    train, val = split_ids(IDS, val_fraction=0.2, seed=0, labels=LABELS)
    label_of = dict(zip(IDS, LABELS))
    assert Counter(label_of[i] for i in val) == {"melanoma": 4, "seborrheic_keratosis": 6, "nevus": 10}
    assert sorted(train + val) == IDS
    mapped = split_ids(IDS[::-1], val_fraction=0.2, seed=0, labels=label_of)
    assert mapped == (train, val)
    # Uneven shares: 7 ids at 0.5 give round(3.5) = 4; shares 12/7 and 16/7 round to 2 and 2 (largest remainder).
    small_labels = dict(zip(IDS[:7], "aaabbbb"))
    _, small_val = split_ids(IDS[:7], 0.5, seed=0, labels=small_labels)
    assert len(small_val) == 4 and Counter(small_labels[i] for i in small_val) == {"a": 2, "b": 2}


def test_split_ids_rejects_bad_input():
    with pytest.raises(ValueError, match="val_fraction"):
        split_ids(IDS, val_fraction=1.0)
    with pytest.raises(ValueError, match="more than once"):
        split_ids(["a", "a", "b"])
    with pytest.raises(ValueError, match="3 labels for 2 ids"):
        split_ids(["a", "b"], labels=[0, 1, 2])
