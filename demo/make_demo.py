"""Build the bundled demo set: 12 images of the fixed validation split of ../shared/isic2017-sample
(never seen in training), reduced to a 512-pixel long side, in the official ISIC 2017 layout.

    python demo/make_demo.py [--source ../shared/isic2017-sample]
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from lesion.datasets import IsicDataset, split_ids  # noqa: E402

OUT = ROOT / "demo" / "isic2017"
PER_CLASS = {"melanoma": 4, "seborrheic_keratosis": 4, "nevus": 4}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default=str(ROOT.parent / "shared" / "isic2017-sample"))
    parser.add_argument("--seed", type=int, default=2017)
    args = parser.parse_args(argv)

    ds = IsicDataset()
    ds.load_isic(args.source, classes="diagnosis")
    ds.prepare()
    labels = {info["image_id"]: info["diagnosis"] for info in ds.image_info}
    _, val_ids = split_ids(sorted(labels), 0.2, seed=args.seed, labels=labels)
    chosen = []
    for diagnosis, count in PER_CLASS.items():
        chosen += [i for i in val_ids if labels[i] == diagnosis][:count]
    chosen.sort()

    (OUT / "ISIC-2017_Training_Data").mkdir(parents=True, exist_ok=True)
    (OUT / "ISIC-2017_Training_Part1_GroundTruth").mkdir(parents=True, exist_ok=True)
    info_by_id = {info["image_id"]: info for info in ds.image_info}
    rows = []
    for image_id in chosen:
        info = info_by_id[image_id]
        image = Image.open(info["path"]).convert("RGB")
        mask = Image.open(info["mask_path"]).convert("L")
        scale = 512 / max(image.size)
        if scale < 1:
            size = (round(image.size[0] * scale), round(image.size[1] * scale))
            image = image.resize(size, Image.LANCZOS)
            mask = mask.resize(size, Image.BILINEAR)
        mask = Image.fromarray(np.where(np.asarray(mask) > 127, 255, 0).astype(np.uint8))
        image.save(OUT / "ISIC-2017_Training_Data" / f"{image_id}.jpg", quality=90)
        mask.save(OUT / "ISIC-2017_Training_Part1_GroundTruth" / f"{image_id}_segmentation.png")
        rows.append([image_id, f"{float(info['melanoma']):.1f}", f"{float(info['seborrheic_keratosis']):.1f}"])
    with open(OUT / "ISIC-2017_Training_Part3_GroundTruth.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_id", "melanoma", "seborrheic_keratosis"])
        writer.writerows(rows)
    print(f"{len(chosen)} validation images written to {os.path.relpath(OUT, ROOT)}: {', '.join(chosen)}")


if __name__ == "__main__":
    main()
