"""Tests of lesion.baseline: the blue-channel Otsu lesion segmentation."""

from __future__ import annotations

import os

import numpy as np
import pytest

from lesion.baseline import evaluate_dataset, main, otsu_segment
from lesion.metrics import segmentation_scores

_SAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "isic2017-sample")
_SAMPLE = os.environ.get("ISIC2017_SAMPLE", os.path.normpath(_SAMPLE))
needs_sample = pytest.mark.skipif(
    not os.path.isdir(_SAMPLE),
    reason=f"ISIC 2017 sample not found at {_SAMPLE} (set ISIC2017_SAMPLE to its folder to run this test)",
)


def _synthetic(
    height: int = 300, width: int = 400, corner_blob_touches_border: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Skin-coloured image with a dark ellipse in the centre and a dark blob in the top-left corner.

    Returns:
        (image [H, W, 3] uint8, ellipse mask [H, W] bool, corner blob mask [H, W] bool).
    """
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    ellipse = ((yy - height / 2) / (0.22 * height)) ** 2 + ((xx - width / 2) / (0.25 * width)) ** 2 <= 1.0
    if corner_blob_touches_border:
        blob = yy**2 + xx**2 <= (0.2 * height) ** 2
    else:
        r = 0.08 * height
        blob = (yy - 2 * r) ** 2 + (xx - 2 * r) ** 2 <= r**2
    image = np.empty((height, width, 3), dtype=np.float64)
    image[:] = (225, 185, 165)  # Light skin.
    image[ellipse] = (110, 70, 55)  # Brown lesion.
    image[blob] = (30, 25, 25)  # Dark vignetting / sticker.
    image += rng.normal(0.0, 6.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), ellipse, blob


@pytest.mark.parametrize("touches_border", [True, False])
def test_synthetic_ellipse_found_and_corner_blob_ignored(touches_border):
    image, ellipse, blob = _synthetic(corner_blob_touches_border=touches_border)
    mask = otsu_segment(image)
    assert mask.shape == ellipse.shape and mask.dtype == bool
    assert segmentation_scores(mask, ellipse)["jaccard"] > 0.9
    assert not (mask & blob).any()


def test_large_image_is_processed_at_reduced_resolution_and_upsampled():
    image, ellipse, blob = _synthetic(height=1424, width=2144)
    mask = otsu_segment(image)
    assert mask.shape == (1424, 2144)
    assert segmentation_scores(mask, ellipse)["jaccard"] > 0.9
    assert not (mask & blob).any()


def test_small_image_is_processed_as_is():
    image, ellipse, _ = _synthetic(height=60, width=80)
    mask = otsu_segment(image)
    assert mask.shape == (60, 80)
    assert segmentation_scores(mask, ellipse)["jaccard"] > 0.8


def test_uniform_image_gives_empty_mask():
    assert not otsu_segment(np.full((50, 70, 3), 200, dtype=np.uint8)).any()


@pytest.mark.parametrize("shape", [(50, 70), (50, 70, 2), (0, 70, 3)])
def test_rejects_non_rgb_input(shape):
    with pytest.raises(ValueError, match="RGB image"):
        otsu_segment(np.zeros(shape, dtype=np.uint8))


@needs_sample
def test_real_images_from_the_sample():
    summary, rows = evaluate_dataset(_SAMPLE, limit=10)
    assert summary["n_images"] == 10
    # The first ten sample images are easy ones for this method (about 0.88 mean Jaccard).
    assert summary["jaccard"] > 0.75
    assert sum(r["jaccard"] > 0.8 for r in rows) >= 7


@needs_sample
def test_command_line(capsys, tmp_path):
    csv_path = tmp_path / "per_image.csv"
    assert main(["--dataset", _SAMPLE, "--limit", "3", "--per-image-csv", str(csv_path)]) == 0
    out = capsys.readouterr().out
    assert "jaccard" in out and "dice" in out and "thresholded_jaccard" in out
    assert csv_path.stat().st_size > 0


def test_missing_dataset_folder_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="ISIC-2017_Training_Data"):
        evaluate_dataset(str(tmp_path))
