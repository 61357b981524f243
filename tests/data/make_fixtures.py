"""Make the small ISIC 2017 test fixture under ``tests/data/isic2017/`` from the shared ISIC 2017 sample.

Six real dermoscopic images are copied in the official ISIC 2017 layout, downsized so the long side is 256 pixels:

- images: ``cv2.INTER_AREA``, written as JPEG quality 90;
- masks: ``cv2.INTER_AREA`` as well, written as PNG. A mask that was strictly 0/255 is thresholded back to 0/255
  (``> 127``) so it stays binary; a mask with anti-aliased edges keeps its grey levels, so the tests can check that
  the loader applies the ISIC threshold (lesion where the value is > 127);
- ``ISIC-2017_Training_Part3_GroundTruth.csv`` holds the rows of those six ids only, copied verbatim.

The chosen images cover two melanomas, two seborrheic keratoses and two nevi, two 800x500 images (resized by a third
party without keeping the aspect ratio), one 400x250 image, and three anti-aliased masks.

Usage::

    python tests/data/make_fixtures.py [--source /work/shared/isic2017-sample] [--out tests/data/isic2017]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

import cv2
import numpy as np
from PIL import Image

__all__ = ["FIXTURE_IDS", "LONG_SIDE", "make_fixtures"]

FIXTURE_IDS: tuple[str, ...] = (
    "ISIC_0000001",  # nevus, 1022x767, binary mask
    "ISIC_0000002",  # melanoma, 1022x767, binary mask
    "ISIC_0012090",  # seborrheic keratosis, 1024x680, binary mask
    "ISIC_0012224",  # seborrheic keratosis, 400x250, anti-aliased mask
    "ISIC_0014657",  # nevus, 800x500, anti-aliased mask
    "ISIC_0014722",  # melanoma, 800x500, anti-aliased mask
)
"""The image ids copied into the fixture."""

LONG_SIDE = 256
"""Long side of the fixture images, in pixels."""

_IMAGES = "ISIC-2017_Training_Data"
_MASKS = "ISIC-2017_Training_Part1_GroundTruth"
_LABELS = "ISIC-2017_Training_Part3_GroundTruth.csv"


def _resized_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """(width, height) scaled so the long side is ``long_side``."""
    scale = long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def make_fixtures(source: str, out: str, ids: tuple[str, ...] = FIXTURE_IDS, long_side: int = LONG_SIDE) -> None:
    """Write the downsized images, masks and label CSV of ``ids`` from ``source`` into ``out``.

    Args:
        source: root of an ISIC 2017 training download (``ISIC-2017_Training_Data/`` etc.).
        out: output root; the ISIC 2017 training folders are created inside it.
        ids: image ids to copy.
        long_side: long side of the written images and masks, in pixels.

    Raises:
        FileNotFoundError: an image, mask or the label CSV is missing from ``source``.
        ValueError: a mask does not have the size of its image.
    """
    os.makedirs(os.path.join(out, _IMAGES), exist_ok=True)
    os.makedirs(os.path.join(out, _MASKS), exist_ok=True)
    for image_id in ids:
        image_path = os.path.join(source, _IMAGES, f"{image_id}.jpg")
        mask_path = os.path.join(source, _MASKS, f"{image_id}_segmentation.png")
        for path in (image_path, mask_path):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path}: missing from the ISIC 2017 source folder")
        image = np.asarray(Image.open(image_path).convert("RGB"))
        mask = np.asarray(Image.open(mask_path).convert("L"))
        if mask.shape != image.shape[:2]:
            raise ValueError(f"{mask_path}: mask is {mask.shape[::-1]} but {image_path} is {image.shape[1::-1]}")
        size = _resized_size(image.shape[1], image.shape[0], long_side)
        small_image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        small_mask = cv2.resize(mask, size, interpolation=cv2.INTER_AREA)
        binary = bool(np.isin(mask, (0, 255)).all())
        if binary:
            small_mask = np.where(small_mask > 127, 255, 0).astype(np.uint8)
        Image.fromarray(small_image).save(os.path.join(out, _IMAGES, f"{image_id}.jpg"), quality=90)
        Image.fromarray(small_mask).save(os.path.join(out, _MASKS, f"{image_id}_segmentation.png"), optimize=True)
        grey = int(((small_mask > 0) & (small_mask < 255)).sum())
        print(f"{image_id}: {image.shape[1]}x{image.shape[0]} -> {size[0]}x{size[1]}, "
              f"{'binary' if binary else 'anti-aliased'} mask ({grey} grey pixels)")

    labels_path = os.path.join(source, _LABELS)
    if not os.path.isfile(labels_path):
        raise FileNotFoundError(f"{labels_path}: missing from the ISIC 2017 source folder")
    with open(labels_path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = {row[0]: row for row in reader if row}
    missing = [i for i in ids if i not in rows]
    if missing:
        raise ValueError(f"{labels_path}: no row for {', '.join(missing)}")
    with open(os.path.join(out, _LABELS), "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        for image_id in sorted(ids):
            writer.writerow(rows[image_id])


def main(argv: list[str] | None = None) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="/work/shared/isic2017-sample", help="ISIC 2017 training download")
    parser.add_argument("--out", default=os.path.join(here, "isic2017"), help="fixture output folder")
    args = parser.parse_args(argv)
    make_fixtures(args.source, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
