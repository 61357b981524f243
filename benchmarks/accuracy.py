"""Accuracy of the bundled lesion model on the fixed validation split, next to the Otsu baseline.

    python benchmarks/accuracy.py                         # evaluate weights/mask_rcnn_lesion_light.h5
    python benchmarks/accuracy.py --retrain               # retrain with the model card's command first
    python benchmarks/accuracy.py --mask-study            # what a 28x28 vs 56x56 mask head can reach at best

The data set is ../shared/isic2017-sample (243 ISIC 2017 images); the validation split is the project's
(seed 2017, 20 %, stratified by diagnosis; 49 images). Results go to results/accuracy/.

The mask study measures the resolution limit alone: each ground-truth mask is cut to its box, resized to N x N
(as a mask head's target), pasted back at the original size with the same code ``detect`` uses
(``utils.unmold_mask``), and compared with the original. The mean Jaccard of that round trip is the best any
N x N mask head can reach with a perfect box.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATASET = ROOT.parent / "shared" / "isic2017-sample"
WEIGHTS = ROOT / "weights" / "mask_rcnn_lesion_light.h5"
#: The command that trained the bundled model (see weights/README.md).
TRAIN_COMMAND = [
    "lesion/train.py", "--dataset", "../shared/isic2017-sample", "--config", "light", "--classes", "diagnosis",
    "--weights", "none", "--epochs", "50", "--steps-per-epoch", "49",
]


def mask_study(dataset_dir: Path, sizes=(28, 56, 112)) -> dict:
    import numpy as np

    from lesion.datasets import IsicDataset
    from lesion.metrics import segmentation_scores
    from mrcnn import utils

    ds = IsicDataset()
    ds.load_isic(str(dataset_dir), classes="lesion")
    ds.prepare()
    result = {}
    for size in sizes:
        scores = []
        for image_id in ds.image_ids:
            mask, _ = ds.load_mask(image_id)
            if mask.shape[-1] == 0:
                continue
            gt = mask[..., 0]
            box = utils.extract_bboxes(mask)[0]
            y1, x1, y2, x2 = box
            crop = gt[y1:y2, x1:x2].astype(np.float32)
            import cv2

            small = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
            pasted = utils.unmold_mask(small, box, gt.shape)
            scores.append(segmentation_scores(pasted, gt)["jaccard"])
        result[f"{size}x{size}"] = float(np.mean(scores))
        print(f"  {size:>3} x {size:<3} mask: best possible mean Jaccard {result[f'{size}x{size}']:.4f} "
              f"({len(scores)} images)", flush=True)
    return result


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default=str(DATASET))
    parser.add_argument("--weights", default=str(WEIGHTS))
    parser.add_argument("--out", default=str(ROOT / "results" / "accuracy"))
    parser.add_argument("--retrain", action="store_true", help="train first with the model card's command")
    parser.add_argument("--mask-study", action="store_true", help="only the mask-resolution study")
    args = parser.parse_args(argv)

    if args.mask_study:
        print("Mask resolution study (ground truth through an N x N mask and back):")
        mask_study(Path(args.dataset))
        return 0
    python = sys.executable
    if args.retrain:
        start = time.time()
        cmd = [python] + TRAIN_COMMAND[:1] + ["--dataset", args.dataset] + TRAIN_COMMAND[3:]
        print("Training:", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)
        print(f"Trained in {time.time() - start:.0f} s")
        args.weights = "last"
    cmd = [python, "lesion/evaluate.py", "--dataset", args.dataset, "--out", args.out, "--weights", args.weights,
           "--baseline", "otsu"]
    print("Evaluating:", " ".join(cmd), flush=True)
    rc = subprocess.run(cmd, cwd=ROOT).returncode
    with open(os.path.join(args.out, "metrics.json")) as f:
        metrics = json.load(f)
    seg = metrics["model"]["segmentation"]
    base = metrics["baseline_otsu"]["segmentation"]
    cls = metrics["model"].get("classification") or {}
    print("\n| method | Jaccard | Dice | thresholded Jaccard | sensitivity | specificity | median box IoU |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, s in (("Mask R-CNN (light)", seg), ("Otsu baseline", base)):
        print(f"| {name} | {s['jaccard']:.3f} | {s['dice']:.3f} | {s['thresholded_jaccard']:.3f} | "
              f"{s['sensitivity']:.3f} | {s['specificity']:.3f} | {s['median_box_iou']:.3f} |")
    if cls:
        print(f"\nDiagnosis on {cls.get('n')} images: accuracy {cls['accuracy']:.3f}, balanced accuracy "
              f"{cls['balanced_accuracy']:.3f}, melanoma AUC {_fmt(cls['melanoma_auc'])}, seborrheic keratosis AUC "
              f"{_fmt(cls['seborrheic_keratosis_auc'])}")
    coco = metrics["model"].get("coco_class_agnostic") or metrics["model"].get("coco") or {}
    if coco:
        print(f"COCO (lesion): bbox AP {coco['bbox']['AP']:.3f}, segm AP {coco['segm']['AP']:.3f}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
