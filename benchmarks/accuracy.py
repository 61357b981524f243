"""Accuracy of the bundled lesion model on the validation split of each data folder, next to the Otsu baseline.

    python benchmarks/accuracy.py                         # weights/mask_rcnn_lesion_light.h5 + lesion_classifier.skops
    python benchmarks/accuracy.py --weights logs/<run>/mask_rcnn_lesion_light_0013.h5 --classifier none
    python benchmarks/accuracy.py --mask-study            # what a 28x28 vs 56x56 mask head can reach at best

Data: ../shared/isic2017-sample (ISIC 2017 images at their native aspect) and ../shared/isic-extra (centre crops
at 512 px and images squashed to 256 px; its manifest.csv says which). Each folder's validation split is the one
lesion/train.py holds out (seed 2017, 20 %, stratified by diagnosis; the images without a diagnosis are a group
of their own). ``lesion/evaluate.py --baseline otsu`` scores each folder; this script prints one table with, per
folder and per geometry: Jaccard, Dice, thresholded Jaccard (ISIC 2018), and the diagnosis figures (melanoma and
seborrheic keratosis ROC AUC, balanced accuracy, Brier score) on the images that have a diagnosis. Results go to
results/accuracy/<folder>/.

The mask study measures the resolution limit alone: each ground-truth mask is cut to its box, resized to N x N
(as a mask head's target), pasted back at the original size with the same code ``detect`` uses
(``utils.unmold_mask``), and compared with the original. The mean Jaccard of that round trip is the best any
N x N mask head can reach with a perfect box.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SHARED = ROOT.parent / "shared"
DATASETS = [SHARED / "isic2017-sample", SHARED / "isic-extra"]
WEIGHTS = ROOT / "weights" / "mask_rcnn_lesion_light.h5"
DIAGNOSES = ("melanoma", "seborrheic_keratosis", "nevus")


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
    return "n/a" if value is None or value != value else f"{value:.3f}"


def _geometry(dataset: Path) -> dict[str, str]:
    """image id -> "native aspect" / "centre crop" / "squashed" (from the folder's manifest.csv, if any)."""
    manifest = dataset / "manifest.csv"
    if not manifest.is_file():
        return {}
    kinds = {}
    with open(manifest, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            text = row.get("geometry", "")
            kinds[row["image_id"]] = ("centre crop" if "centre" in text else "squashed" if "squash" in text
                                      else "native aspect")
    return kinds


def summarise(rows: list[dict]) -> dict:
    """The table's figures of per_image.csv rows (the model's and Otsu's columns)."""
    import numpy as np

    from lesion.metrics import classification_metrics, thresholded_jaccard

    ok = [r for r in rows if r.get("status") == "ok"]
    out = {"n": len(ok), "images_with_overlapping_detections": sum(int(r.get("overlapping_pairs") or 0) > 0
                                                                   for r in ok),
           "images_with_several_detections": sum(int(r.get("detections") or 0) > 1 for r in ok)}
    for prefix, name in (("", "model"), ("otsu_", "otsu")):
        jac = np.array([float(r[prefix + "jaccard"]) for r in ok if r.get(prefix + "jaccard") not in (None, "")])
        dice = np.array([float(r[prefix + "dice"]) for r in ok if r.get(prefix + "dice") not in (None, "")])
        out[name] = {"jaccard": float(jac.mean()) if jac.size else None,
                     "dice": float(dice.mean()) if dice.size else None,
                     "thresholded_jaccard": thresholded_jaccard(jac) if jac.size else None}
    labelled = [r for r in ok if r.get("diagnosis") in DIAGNOSES and r.get("p_melanoma") not in (None, "")]
    if labelled:
        y = [DIAGNOSES.index(r["diagnosis"]) for r in labelled]
        p = np.array([[float(r[f"p_{d}"]) for d in DIAGNOSES] for r in labelled])
        given = [DIAGNOSES.index(r["top_class"]) if r.get("top_class") in DIAGNOSES else int(np.argmax(q))
                 for r, q in zip(labelled, p)]
        out["diagnosis"] = classification_metrics(y, p, DIAGNOSES, predictions=given)
    return out


def _line(name: str, n: int, seg: dict, cls: dict | None) -> str:
    cls = cls or {}
    return (f"| {name} | {n} | {_fmt(seg['jaccard'])} | {_fmt(seg['dice'])} | {_fmt(seg['thresholded_jaccard'])} | "
            f"{_fmt(cls.get('melanoma_auc'))} | {_fmt(cls.get('seborrheic_keratosis_auc'))} | "
            f"{_fmt(cls.get('balanced_accuracy'))} | {_fmt(cls.get('brier'))} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", nargs="+", default=[str(d) for d in DATASETS])
    parser.add_argument("--weights", default=str(WEIGHTS))
    parser.add_argument("--classifier", default="auto", help="as lesion/evaluate.py's --classifier")
    parser.add_argument("--out", default=str(ROOT / "results" / "accuracy"))
    parser.add_argument("--mask-study", action="store_true", help="only the mask-resolution study")
    args = parser.parse_args(argv)

    if args.mask_study:
        print("Mask resolution study (ground truth through an N x N mask and back):")
        mask_study(Path(args.dataset[0]))
        return 0
    rc = 0
    table, summaries = [], {}
    for dataset in map(Path, args.dataset):
        out = Path(args.out) / dataset.name
        cmd = [sys.executable, "lesion/evaluate.py", "--dataset", str(dataset), "--out", str(out), "--weights",
               args.weights, "--classifier", args.classifier, "--baseline", "otsu", "--quiet"]
        print("Evaluating:", " ".join(cmd), flush=True)
        rc = max(rc, subprocess.run(cmd, cwd=ROOT).returncode)
        with open(out / "per_image.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        geometry = _geometry(dataset)
        groups = {dataset.name: rows}
        kinds = sorted({geometry.get(r["image_id"], "native aspect") for r in rows})
        if len(kinds) > 1 or geometry:
            for kind in kinds:
                groups[f"{dataset.name}: {kind}"] = [r for r in rows
                                                     if geometry.get(r["image_id"], "native aspect") == kind]
        for name, group in groups.items():
            summary = summarise(group)
            summaries[name] = summary
            table.append(_line(f"{name}, Mask R-CNN", summary["n"], summary["model"], summary.get("diagnosis")))
            table.append(_line(f"{name}, Otsu", summary["n"], summary["otsu"], None))
    print("\n| validation images | n | Jaccard | Dice | thresholded Jaccard | melanoma AUC | SK AUC | "
          "balanced accuracy | Brier |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(table))
    for name, summary in summaries.items():
        if ":" not in name:
            print(f"{name}: {summary['images_with_overlapping_detections']} of {summary['n']} images with overlapping "
                  f"detections, {summary['images_with_several_detections']} with more than one detection")
    with open(Path(args.out) / "summary.json", "w", encoding="utf-8") as f:
        json.dump(summaries, f, indent=1, default=float)
    return rc


if __name__ == "__main__":
    sys.exit(main())
