"""Evaluate a lesion Mask R-CNN (and the classical Otsu baseline) on an ISIC data set.

Usage::

    python lesion/evaluate.py --dataset /data/isic2017 --out eval/ [--weights PATH|last] [--baseline otsu]
    python lesion/evaluate.py --dataset /data/isic2017 --out eval/ --baseline-only

Images: by default the validation images of the project's split (``--subset validation``):
:func:`lesion.inference.validation_split` over the data set's sorted ids, stratified by diagnosis, with seed 2017
(the lesion config's ``SEED``) and a 0.2 validation fraction: the same split ``lesion/train.py`` trains on, so the
scores are on images the model has not seen. When the checkpoint's run folder holds the ``val_ids.txt`` that
``lesion/train.py`` wrote, and neither ``--seed`` nor ``--val-fraction`` is given, those recorded ids are used (a
run trained with another seed, or resumed, keeps its own split). ``--subset all`` scores every image (e.g. an
official validation or test folder), ``--subset train`` the training part. ``--isic-split`` picks the official
folder when ``--dataset`` holds several (default: the only one, or the official training data).

Outputs in ``--out``:

- ``metrics.json``::

      {"dataset": ..., "subset": ..., "split": ..., "seed": ..., "val_fraction": ..., "n_images": ..., "failed": [...],
       "model": {"weights": ..., "config": ..., "classes": ..., "mask_rule": ..., "min_confidence": ...,
                 "segmentation": {"jaccard", "dice", "accuracy", "sensitivity", "specificity",
                                  "thresholded_jaccard", "median_box_iou", "n_images"},
                 "images_without_detection": ...,
                 "coco": {"bbox": {"AP", "AP50", "AP75"}, "segm": {...}},
                 "coco_class_agnostic": ... (diagnosis models: every class as "lesion"),
                 "classification": {"accuracy", "balanced_accuracy", "melanoma_auc", "seborrheic_keratosis_auc",
                                    "mean_auc", "confusion_matrix", "class_counts", "class_names", "n"} or null},
       "baseline_otsu": {"segmentation": {...the same keys...}}}

  ``model`` is null with ``--baseline-only``; ``baseline_otsu`` is there with ``--baseline otsu``. The segmentation
  figures are the ISIC 2017 Part 1 means of the per-image scores and the ISIC 2018 thresholded Jaccard
  (:mod:`lesion.metrics`); ``median_box_iou`` compares the top detection's box (the Otsu mask's box) with the box
  of the ground-truth mask. NaN is written as null.
- ``per_image.csv``: one row per image: id, size, diagnosis, the model's scores, detections, top class and score,
  class probabilities, then the baseline's scores (``otsu_*``), and ``status``.
- ``jaccard_boxplot.png``, ``box_iou_boxplot.png`` (model and baseline side by side), and for diagnosis models
  ``confusion_matrix.png``, ``roc.png``, ``precision_recall.png``.
- ``report.html`` (not with ``--no-report``): one self-contained page with these figures and plots and the
  thumbnails of the images, lowest Jaccard first, with the predicted and true outlines (:mod:`lesion.report`).

Conventions: the predicted lesion mask of an image follows ``--mask-rule`` as in ``lesion/detect.py`` (the
top-scoring detection's mask by default); an image without a detection has an empty mask (Jaccard 0 against a
non-empty truth). The diagnosis probabilities of an image are the ``class_probs`` of its top detection, background
excluded and renormalised over melanoma, seborrheic keratosis and nevus; an image without a detection gets uniform
probabilities (1/3 each; arg-max melanoma), counted in ``images_without_detection``. Classification metrics need a
diagnosis model and diagnosis labels (ISIC Part 3 CSV) and use the labelled images only.

Exit status: 0 when every image was scored, 1 when some could not be read (when none could, nothing is written, so an
earlier run's files in ``--out`` stay as they were), 2 for a usage problem (an ``--out`` that is not a writable
folder is one, found before the model and data are loaded).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lesion import inference, report as html_report
from mrcnn import console

__all__ = ["SUBSETS", "load_dataset", "format_table", "main"]

SUBSETS = ("validation", "all", "train")
"""``--subset`` choices."""

_SEG_COLUMNS = (("Jaccard", "jaccard"), ("Dice", "dice"), ("thr. Jaccard", "thresholded_jaccard"),
                ("accuracy", "accuracy"), ("sensitivity", "sensitivity"), ("specificity", "specificity"),
                ("box IoU (median)", "median_box_iou"))
_ROW_SCORES = ("jaccard", "dice", "accuracy", "sensitivity", "specificity", "box_iou")


def load_dataset(root: str, classes: str, isic_split: str | None = None):
    """The ISIC data set under ``root`` with every image that has a mask.

    Args:
        root: folder in an official ISIC layout.
        classes: ``"lesion"`` or ``"diagnosis"`` (diagnosis mode drops images without an ISIC 2017 diagnosis).
        isic_split: the official folder (``train``, ``validation``, ``test``); when None, the only one, or the
            training data when ``root`` holds several.

    Returns:
        A prepared :class:`lesion.datasets.IsicDataset`.

    Raises:
        FileNotFoundError, lesion.datasets.DatasetError: as :meth:`IsicDataset.load_isic`.
    """
    from lesion.datasets import DatasetError, IsicDataset

    dataset = IsicDataset()
    try:
        dataset.load_isic(root, subset=isic_split, classes=classes)
    except DatasetError as first:
        if isic_split is not None:
            raise
        dataset = IsicDataset()
        try:
            dataset.load_isic(root, subset="train", classes=classes)  # Several official splits: the training data.
        except (DatasetError, ValueError):
            raise first from None
    dataset.prepare()
    return dataset


def format_table(sections: dict[str, dict[str, Any]]) -> str:
    """A plain-text table: one row per method, the segmentation figures as columns.

    Args:
        sections: {method name: segmentation summary from :meth:`SegmentationEvaluator.evaluate`}.
    """
    header = ["method"] + [title for title, _ in _SEG_COLUMNS] + ["images"]
    rows = [header]
    for name, seg in sections.items():
        cells = [name]
        for _, key in _SEG_COLUMNS:
            value = seg.get(key)
            cells.append("-" if value is None or not np.isfinite(value) else f"{value:.4f}")
        cells.append(str(seg.get("n_images", "")))
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "-|-".join("-" * w for w in widths))
    return "\n".join(lines)


def run_val_ids(weights: str) -> list[str] | None:
    """The held-out ids that ``lesion/train.py`` recorded next to a checkpoint (``val_ids.txt``), or None."""
    path = os.path.join(os.path.dirname(os.path.abspath(weights)), "val_ids.txt")
    if not os.path.isfile(path):
        return None
    from lesion.datasets import read_ids

    return read_ids(path)


def _select(dataset: Any, args: argparse.Namespace, info: inference.ModelInfo | None) -> tuple[list[str], str]:
    """The ids to score and where the split came from.

    The split of the training run that wrote the checkpoint (its ``val_ids.txt``, of which the ids of this data
    set) is used when it exists, names images of this data set, and no ``--seed`` / ``--val-fraction`` was given;
    else the seeded split.
    """
    all_ids = sorted(entry["image_id"] for entry in dataset.image_info)
    if args.subset == "all":
        return all_ids, "all images"
    val_fraction = 0.2 if args.val_fraction is None else args.val_fraction
    if info is not None and args.seed is None and args.val_fraction is None:
        recorded = run_val_ids(info.weights)
        if recorded is not None:
            where = os.path.join(os.path.dirname(info.weights), "val_ids.txt")
            # A run trained on several folders lists the held-out ids of all of them: this folder's are its own.
            held_out = set(recorded) & set(all_ids)
            if held_out:
                ids = sorted(held_out) if args.subset == "validation" else [i for i in all_ids if i not in held_out]
                return ids, f"the training run's {where}"
            print(f"note: none of the {len(recorded)} ids of {where} is in {args.dataset}; using the seeded split",
                  file=sys.stderr)
    ids = inference.select_ids(dataset, args.subset, args.seed, val_fraction)
    seed = inference.default_seed() if args.seed is None else args.seed
    return ids, f"split_ids seed {seed}, val_fraction {val_fraction:g}, stratified by diagnosis"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _read_pair(info: dict, baseline: bool) -> tuple[np.ndarray, dict[str, Any]]:
    """Image, ground-truth mask and (optionally) the Otsu mask of one data set entry; runs in a worker thread."""
    from lesion.baseline import otsu_segment
    from lesion.datasets import read_mask
    from mrcnn.dataset import read_image

    image = read_image(info["path"])
    gt = read_mask(info["mask_path"])
    if gt.shape != image.shape[:2]:
        raise ValueError(f"the mask {info['mask_path']} is {gt.shape[1]}x{gt.shape[0]} but the image is "
                         f"{image.shape[1]}x{image.shape[0]} (width x height)")
    extra = {"gt": gt, "otsu": otsu_segment(image) if baseline else None}
    return image, extra


def _coco_gt_annotation(gt: np.ndarray, image_id: int, category_id: int) -> dict[str, Any]:
    from lesion.metrics import mask_to_box

    y1, x1, y2, x2 = (int(v) for v in mask_to_box(gt))
    return {"id": image_id, "image_id": image_id, "category_id": category_id, "iscrowd": 0,
            "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
            "area": int(np.count_nonzero(gt)), "segmentation": inference.mask_to_rle(gt)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python lesion/evaluate.py", description=__doc__.split("\n\n")[0],
        epilog="Exit status: 0 every image scored, 1 some images unreadable, 2 usage error.")
    parser.add_argument("--dataset", required=True, metavar="DIR", help="ISIC data set folder (official layout)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    parser.add_argument("--subset", choices=SUBSETS, default="validation",
                        help="images to score: the project's validation split (default), all, or its train part")
    parser.add_argument("--seed", type=int, default=None, help="split seed (default: the config's SEED, 2017)")
    parser.add_argument("--val-fraction", type=float, default=None, metavar="F",
                        help="validation fraction of the split (default 0.2)")
    parser.add_argument("--isic-split", choices=("train", "validation", "test"), default=None,
                        help="official ISIC folder when --dataset holds several (default: the training data)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="score only the first N images")
    parser.add_argument("--baseline", choices=("otsu",), default=None,
                        help="also score the classical method (lesion/baseline.py) as a reference row")
    parser.add_argument("--baseline-only", action="store_true", help="score only the baseline (no model needed)")
    inference.add_model_arguments(parser)
    html_report.add_report_argument(parser)
    console.add_output_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (see the module docstring).

    Args:
        argv: arguments; ``sys.argv[1:]`` when None.

    Returns:
        The exit status.
    """
    args = build_parser().parse_args(argv)
    with_model = not args.baseline_only
    if with_model:
        console.quiet_tensorflow(args.verbose)

    from lesion import metrics, plots
    from lesion.config import class_names as names_of
    from lesion.datasets import DatasetError
    from mrcnn.atomic import OutputDirError, ensure_output_dir

    with_baseline = args.baseline_only or args.baseline == "otsu"
    if args.limit is not None and args.limit < 1:
        print(f"error: --limit must be at least 1; got {args.limit}", file=sys.stderr)
        return 2

    model, info = None, None
    try:
        out_dir = Path(ensure_output_dir(args.out))  # Before anything slow.
        if with_model:
            model, info = inference.model_from_args(args)
        # Loaded in lesion mode whatever the model: every image with a mask is scored for the segmentation, the
        # ones with a diagnosis (their "label") also for the diagnosis.
        dataset = load_dataset(args.dataset, "lesion", args.isic_split)
        ids, split_source = _select(dataset, args, info)
    except inference.UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, DatasetError, ValueError, OutputDirError) as exc:  # Their messages name the file.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.limit is not None:
        ids = ids[:args.limit]
    if not ids:
        print(f"error: no image in the {args.subset} subset of {args.dataset}", file=sys.stderr)
        return 2
    by_id = {entry["image_id"]: entry for entry in dataset.image_info}
    entries = [by_id[i] for i in ids]
    what = f"model {info.weights} ({info.config_name}, {info.classes})" if info else "the Otsu baseline only"
    print(f"Scoring {what} on {_plural(len(entries), 'image')} ({args.subset}: {split_source}) of {args.dataset}",
          file=sys.stderr)

    diagnosis_names = names_of("diagnosis")
    fg_names = info.class_names[1:] if info else []
    model_eval = metrics.SegmentationEvaluator()
    otsu_eval = metrics.SegmentationEvaluator()
    gt_coco = {"images": [], "annotations": [], "categories": [
        {"id": i, "name": n} for i, n in enumerate(info.class_names if info else ["BG", "lesion"]) if i]}
    detections: list[dict] = []
    agnostic_annotations: list[dict] = []  # Every image's lesion, diagnosed or not, for the class-agnostic AP.
    y_true: list[int] = []
    y_probs: list[np.ndarray] = []
    y_pred: list[int] = []  # The diagnosis given: the top detection's class (the classifier's decision).
    no_detection = 0
    rows: list[dict] = []
    failed: list[str] = []

    thumbs = None if args.no_report else html_report.EvaluationThumbnails()  # The report's worst-Jaccard images.

    def load(entry: dict):
        image, extra = _read_pair(entry, with_baseline)
        if thumbs is not None:
            extra["small"] = html_report.shrink(image)  # In the worker thread; the full image is not kept.
        return image, extra

    if with_model:
        stream = inference.iter_detections(
            model, inference.iter_prepared(model, entries, load, workers=args.workers,
                                           keep_image=info.classifier is not None),
            args.batch_size)
    else:
        def load_plain(entry: dict) -> inference.Prepared:
            image, extra = load(entry)
            return inference.Prepared(shape=image.shape, molded=None, meta=None, window=None, extra=extra)

        stream = ((entry, p, None, error)
                  for entry, p, error in inference.iter_parallel(entries, load_plain, workers=args.workers))

    start = time.perf_counter()
    with console.progress(total=len(entries), desc="evaluate", unit="image", disable=args.quiet) as bar:
        for coco_id, (entry, prepared, result, error) in enumerate(stream, start=1):
            image_id = entry["image_id"]
            bar.update(1)
            if error is not None:
                text = " ".join(str(error).split())
                bar.write(f"error: {image_id} ({entry['path']}): {text}", file=sys.stderr)
                rows.append({"image_id": image_id, "status": f"error: {text}"})
                failed.append(image_id)
                continue
            gt = prepared.extra["gt"]
            height, width = gt.shape
            row: dict[str, Any] = {"image_id": image_id, "width": width, "height": height,
                                   "diagnosis": entry.get("diagnosis") or ""}
            label = entry.get("label")
            if with_model:
                result = inference.finish_result(result, prepared.image, info)
                prepared.image = None  # Keep memory flat over a large data set.
                pred = inference.lesion_mask(result, args.mask_rule)
                scored = model_eval.process(image_id, pred, gt, pred_box=inference.lesion_box(result, args.mask_rule))
                row.update({k: scored[k] for k in _ROW_SCORES})
                k = inference.top_index(result)
                no_detection += k is None
                probs = inference.diagnosis_probabilities(result, len(fg_names))
                overlap = inference.mask_overlaps(result["masks"])
                row.update({"detections": len(result["scores"]),
                            "overlapping_pairs": int(np.count_nonzero(np.triu(overlap, 1))),
                            "top_class": "" if k is None else info.class_names[int(result["class_ids"][k])],
                            "top_score": None if k is None else float(result["scores"][k]),
                            **{f"p_{n}": float(p) for n, p in zip(fg_names, probs)}})
                gt_coco["images"].append({"id": coco_id, "file_name": os.path.basename(entry["path"]),
                                          "width": width, "height": height})
                if gt.any():
                    category = (None if label is None else label + 1) if info.diagnoses else 1
                    if category is not None:
                        gt_coco["annotations"].append(_coco_gt_annotation(gt, coco_id, category))
                    agnostic_annotations.append(_coco_gt_annotation(gt, coco_id, 1))
                detections.extend(inference.coco_annotations(result, coco_id, len(detections) + 1))
                if info.diagnoses and label is not None:
                    y_true.append(int(label))
                    y_probs.append(probs)
                    y_pred.append(int(np.argmax(probs)) if k is None else int(result["class_ids"][k]) - 1)
            if with_baseline:
                scored = otsu_eval.process(image_id, prepared.extra["otsu"], gt, method="otsu")
                row.update({f"otsu_{k}": scored[k] for k in _ROW_SCORES})
            row["status"] = "ok"
            rows.append(row)
            if thumbs is not None:
                thumbs.add(row, prepared.extra["small"], pred if with_model else prepared.extra["otsu"], gt,
                           os.path.basename(entry["path"]))
    elapsed = time.perf_counter() - start
    if len(failed) == len(entries):  # Nothing to score: keep an earlier run's files in --out as they were.
        print(f"error: none of the {_plural(len(entries), 'image')} of {args.dataset} could be evaluated (see the "
              f"errors above); nothing written to {out_dir}", file=sys.stderr)
        return 1

    report: dict[str, Any] = {
        "dataset": str(args.dataset), "subset": args.subset, "split": split_source,
        "seed": inference.default_seed() if args.seed is None else int(args.seed),
        "val_fraction": 0.2 if args.val_fraction is None else args.val_fraction, "limit": args.limit,
        "n_images": len(entries) - len(failed), "failed": failed,
        "seconds": round(elapsed, 3), "model": None,
    }
    sections: dict[str, dict] = {}
    boxes: dict[str, dict[str, list[float]]] = {"jaccard": {}, "box_iou": {}}
    if with_model:
        segmentation, model_rows = model_eval.evaluate()
        sections["Mask R-CNN"] = segmentation
        boxes["jaccard"]["Mask R-CNN"] = [r["jaccard"] for r in model_rows]
        boxes["box_iou"]["Mask R-CNN"] = [r["box_iou"] for r in model_rows]
        model_report: dict[str, Any] = {
            "weights": info.weights, "config": info.config_name, "classes": info.classes,
            "classifier": info.classifier_path,
            "mask_rule": args.mask_rule, "min_confidence": float(model.config.DETECTION_MIN_CONFIDENCE),
            "segmentation": segmentation, "images_without_detection": no_detection,
            "coco": metrics.coco_metrics(gt_coco, detections),
        }
        if info.diagnoses:
            agnostic_gt = dict(gt_coco, categories=[{"id": 1, "name": "lesion"}],
                               annotations=[dict(a, id=k) for k, a in enumerate(agnostic_annotations, start=1)])
            model_report["coco_class_agnostic"] = metrics.coco_metrics(
                agnostic_gt, [dict(d, category_id=1) for d in detections])
        model_report["classification"] = None
        if not info.diagnoses:
            model_report["classification_note"] = "a lesion model has no diagnosis classes"
        elif not y_true:
            model_report["classification_note"] = "the data set has no diagnosis labels"
        else:
            cls = metrics.classification_metrics(y_true, np.stack(y_probs), diagnosis_names, predictions=y_pred)
            model_report["classification"] = cls
            plots.plot_confusion_matrix(cls["confusion_matrix"], out_dir / "confusion_matrix.png", diagnosis_names)
            plots.plot_roc_curves(y_true, np.stack(y_probs), out_dir / "roc.png", diagnosis_names)
            plots.plot_precision_recall(y_true, np.stack(y_probs), out_dir / "precision_recall.png", diagnosis_names)
            plots.plot_reliability(y_true, np.stack(y_probs), out_dir / "reliability.png", diagnosis_names)
        report["model"] = model_report
    if with_baseline:
        segmentation, otsu_rows = otsu_eval.evaluate()
        sections["Otsu baseline"] = segmentation
        boxes["jaccard"]["Otsu baseline"] = [r["jaccard"] for r in otsu_rows]
        boxes["box_iou"]["Otsu baseline"] = [r["box_iou"] for r in otsu_rows]
        report["baseline_otsu"] = {"method": "blue-channel Otsu threshold (lesion/baseline.py)",
                                   "segmentation": segmentation}

    written = ["metrics.json", "per_image.csv"]
    if any(boxes["jaccard"].values()):
        plots.plot_score_boxplot(boxes["jaccard"], out_dir / "jaccard_boxplot.png", "Jaccard")
        plots.plot_score_boxplot(boxes["box_iou"], out_dir / "box_iou_boxplot.png", "box IoU", threshold=None)
        written += ["jaccard_boxplot.png", "box_iou_boxplot.png"]
    if with_model and report["model"]["classification"] is not None:
        written += ["confusion_matrix.png", "roc.png", "precision_recall.png", "reliability.png"]
    inference.write_json_atomic(out_dir / "metrics.json", report)
    inference.write_csv_atomic(out_dir / "per_image.csv", rows)
    if thumbs is not None:  # One page: these figures, the plots and the worst images (lesion/report.py).
        html_report.write_evaluate_report(out_dir, report, rows, thumbs,
                                          [out_dir / name for name in written if name.endswith(".png")])
        written.append("report.html")

    print()
    print(format_table(sections))
    if with_model:
        coco = report["model"]["coco"]
        ap = ", ".join(f"{t} AP {_fmt(coco[t]['AP'])} (AP50 {_fmt(coco[t]['AP50'])})" for t in ("bbox", "segm"))
        print(f"\nCOCO: {ap}; {no_detection} images without detection")
        cls = report["model"]["classification"]
        if cls is not None:
            print(f"Diagnosis: accuracy {_fmt(cls['accuracy'])}, balanced accuracy {_fmt(cls['balanced_accuracy'])}, "
                  f"melanoma AUC {_fmt(cls['melanoma_auc'])}, seborrheic keratosis AUC "
                  f"{_fmt(cls['seborrheic_keratosis_auc'])}, Brier score {_fmt(cls['brier'])}")
    print(f"\n{_plural(report['n_images'], 'image')} scored in {elapsed:.1f} s. "
          f"Results in {out_dir}/: {', '.join(written)}")
    if failed:
        print(f"{_plural(len(failed), 'image')} could not be read (see per_image.csv): {', '.join(failed[:5])}"
              f"{', ...' if len(failed) > 5 else ''}", file=sys.stderr)
        return 1
    return 0


def _fmt(value: Any) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.4f}"


if __name__ == "__main__":
    sys.exit(main())
