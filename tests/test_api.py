"""Tests of lesion.segment: the one-call API gives what lesion/detect.py writes for the same image."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lesion
from lesion import detect, inference
from mrcnn.dataset import ImageReadError, read_image

DEMO_IMAGES = Path(__file__).resolve().parents[1] / "demo" / "isic2017" / "ISIC-2017_Training_Data"
NAMES = ("melanoma", "seborrheic_keratosis", "nevus")


def test_segment_equals_what_detect_writes(tmp_path):
    paths = [DEMO_IMAGES / "ISIC_0000003.jpg", DEMO_IMAGES / "ISIC_0000004.jpg"]
    assert detect.main(["--images", *map(str, paths), "--out", str(tmp_path), "--quiet"]) == 0
    with open(tmp_path / "summary.csv", newline="") as f:
        rows = {Path(r["file"]).name: r for r in csv.DictReader(f)}

    results = lesion.segment(paths)
    assert len(results) == 2
    for path, seg in zip(paths, results):
        row = rows[path.name]
        written = np.asarray(Image.open(tmp_path / f"{path.stem}_segmentation.png")) > 0
        assert seg.mask.dtype == bool and np.array_equal(seg.mask, written)
        assert seg.diagnosis == row["top_class"] and seg.diagnosis in NAMES
        assert f"{seg.score:.6g}" == row["top_score"]
        assert list(seg.probabilities) == list(NAMES)
        assert [f"{p:.6g}" for p in seg.probabilities.values()] == [row[f"p_{n}"] for n in NAMES]
        assert len(seg.result["scores"]) == int(row["lesions"])

    # An array gives the same; the model was loaded once and is reused, also when passed in.
    again = lesion.segment(read_image(str(paths[0])))
    assert np.array_equal(again[0].mask, results[0].mask) and again[0].score == results[0].score
    pair = lesion.load()
    assert pair is lesion.load()
    assert lesion.segment([paths[1]], model=pair)[0].probabilities == results[1].probabilities


def test_segment_names_what_it_cannot_read(tmp_path):
    model = lesion.load()
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ImageReadError, match="broken.jpg: not a readable image"):
        lesion.segment([tmp_path / "broken.jpg"], model=model)
    with pytest.raises(ValueError, match=r"image 0: expected a path or a uint8 RGB array \[H, W, 3\]"):
        lesion.segment([np.zeros((8, 8), np.float32)], model=model)
    with pytest.raises(ValueError, match="mask_rule must be one of"):
        lesion.segment([], model=model, mask_rule="largest")
    with pytest.raises(ValueError, match="either model or loading arguments"):
        lesion.segment([], model=model, weights=str(inference.DEFAULT_WEIGHTS))
