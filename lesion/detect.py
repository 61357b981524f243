"""Detect and segment skin lesions in image files with a trained Mask R-CNN.

Usage::

    python lesion/detect.py --images photos/ extra.jpg --out results/ [--weights PATH|last] [--crops]

Per image ``<stem>`` (the input's name without extension; a second input with the same stem gets
``<stem>_<ext>``, then ``<stem>_2``, ...):

- ``<stem>_segmentation.png``: the ISIC submission format: 8-bit greyscale, 255 = lesion, 0 = background, exactly
  the input's width x height (as displayed, EXIF orientation applied). The lesion is the mask of the top-scoring
  detection (``--mask-rule top``, the default: an ISIC image shows one lesion) or the union of all detections
  (``--mask-rule union``). An image with no detection gets an all-zero mask.
- ``<stem>_overlay.jpg``: the image with each detection's mask outline, box, class and score.

Each lesion is one detection: detections whose masks lie mostly inside a higher-scoring one's are merged into it
(:func:`lesion.inference.merge_overlapping`). With a one-class lesion model (the bundled one), the diagnosis of each
lesion comes from the second stage, the classifier of the masked lesion (``weights/lesion_classifier.npz``,
``--classifier``); the score stays the detection's.
- with ``--crops``: ``<stem>_lesion<k>.png`` for detection k = 1, 2, ... in decreasing score: its bounding box
  cut out as an RGBA PNG, pixels outside the mask transparent and black.

Per run:

- ``detections.json``: COCO ``images`` (``id``, ``file_name``, ``width``, ``height``, ``path``), ``categories``
  and ``annotations`` (``bbox`` ``[x, y, w, h]``, ``score``, ``category_id``, ``area``, RLE ``segmentation``):
  ``COCO("detections.json")`` loads it and ``coco.loadRes(coco.dataset["annotations"])`` accepts its annotations.
- ``report.html`` (not with ``--no-report``): one self-contained page with the overlay thumbnails, diagnoses and
  scores (:mod:`lesion.report`).
- ``summary.csv``: one row per input: ``file``, ``width``, ``height``, ``lesions`` (detections), ``top_class``,
  ``top_score``, ``p_<class>`` (the top detection's class probabilities, background excluded and renormalised;
  empty without a detection), ``lesion_area_px`` (pixels of the segmentation), ``segmentation`` (its file name),
  ``status`` (``ok`` or ``error: <message>``).

Images are decoded and resized by worker threads while the model runs on the previous batch. Per-image files are
written as each image finishes and the run files at the end, each through a temporary file and a rename, so an
interrupted run or an unreadable input never damages a file written before. An input that is not a readable image
is reported on stderr and in ``summary.csv`` and the others are still processed. A failure to write into the
output folder (a full disk, lost permissions) stops the run at once and leaves the earlier ``summary.csv`` and
``detections.json`` as they were.

Exit status: 0 when every image was processed, 1 when some failed or the output could not be written, 2 for a
usage problem (no weights, no images, an output folder that cannot be created or written).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lesion import inference, report
from mrcnn import console

__all__ = ["IMAGE_EXTENSIONS", "collect_inputs", "output_stems", "draw_overlay", "lesion_crops", "main"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
"""Files of a folder given to ``--images`` that are processed (a file named directly is always tried)."""

_OUTPUT_RE = re.compile(r"_(segmentation\.png|overlay\.jpg|lesion\d+\.png)$")


def collect_inputs(specs: Sequence[str], out_dir: str | os.PathLike | None = None) -> list[Path]:
    """The input files: files as given, and the image files of folders (not recursive, sorted by name).

    Args:
        specs: file and folder paths.
        out_dir: when a folder is also the output folder, this tool's own outputs in it are skipped.

    Returns:
        Paths in order; a path that does not exist is kept (it is reported as failed).
    """
    out = Path(out_dir).resolve() if out_dir is not None else None
    paths: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if not path.is_dir():
            paths.append(path)
            continue
        is_out = path.resolve() == out
        for child in sorted(path.iterdir()):
            if (child.is_file() and child.suffix.lower() in IMAGE_EXTENSIONS and not child.name.startswith(".")
                    and not (is_out and _OUTPUT_RE.search(child.name))):
                paths.append(child)
    return paths


def output_stems(paths: Sequence[Path]) -> list[str]:
    """A distinct output stem per input: its name without extension, made unique when two inputs share it."""
    used: set[str] = set()
    stems = []
    for path in paths:
        stem = path.stem or path.name
        if stem in used:
            stem = f"{path.stem}_{path.suffix.lstrip('.').lower()}" if path.suffix else stem
            base, k = stem, 2
            while stem in used:
                stem, k = f"{base}_{k}", k + 1
        used.add(stem)
        stems.append(stem)
    return stems


def draw_overlay(image: np.ndarray, result: dict, class_names: Sequence[str]) -> np.ndarray:
    """The image with every detection's mask outline, box and ``class score`` caption.

    Line width and text size grow with the image, so the overlay of a camera-size photo stays readable.

    Args:
        image: uint8 [H, W, 3] RGB.
        result: a detection result.
        class_names: names indexed by class id (``"BG"`` first).

    Returns:
        uint8 [H, W, 3] RGB.
    """
    from mrcnn.visualize import draw_instances_cv2

    side = max(image.shape[:2])
    return draw_instances_cv2(image, result["rois"], result["masks"], result["class_ids"], list(class_names),
                              scores=result["scores"], thickness=max(2, round(side / 400)),
                              font_scale=max(0.5, side / 1200))


def lesion_crops(image: np.ndarray, result: dict) -> list[np.ndarray]:
    """Each detection cut out: its box of the image as RGBA, outside the mask transparent and black.

    Args:
        image: uint8 [H, W, 3] RGB.
        result: a detection result (``rois`` [N, (y1, x1, y2, x2)] pixels, ``masks`` bool [H, W, N]).

    Returns:
        N uint8 [h, w, 4] arrays, in detection order; a detection whose box has no pixel inside the image is
        skipped.
    """
    height, width = image.shape[:2]
    crops = []
    for i, (y1, x1, y2, x2) in enumerate(np.asarray(result["rois"]).reshape(-1, 4)):
        y1, x1, y2, x2 = max(0, int(y1)), max(0, int(x1)), min(height, int(y2)), min(width, int(x2))
        if y2 <= y1 or x2 <= x1:
            continue
        inside = np.asarray(result["masks"][y1:y2, x1:x2, i], dtype=bool)
        crop = np.zeros((y2 - y1, x2 - x1, 4), np.uint8)
        crop[..., :3] = np.where(inside[..., None], image[y1:y2, x1:x2, :3], 0)
        crop[..., 3] = inside * np.uint8(255)
        crops.append(crop)
    return crops


def _error_text(path: Path, error: BaseException) -> str:
    """The error message without a leading copy of the path, on one line."""
    message = " ".join(str(error).split()) or type(error).__name__
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _remove_stale_crops(out_dir: Path, stem: str, count: int) -> None:
    """Remove ``<stem>_lesion<k>.png`` with k > count left by an earlier run (the image now has fewer)."""
    pattern = re.compile(re.escape(stem) + r"_lesion(\d+)\.png")
    for child in out_dir.iterdir():
        match = pattern.fullmatch(child.name)
        if match and int(match.group(1)) > count:
            child.unlink(missing_ok=True)


def _process(path: Path, stem: str, prepared: inference.Prepared, result: dict, image_id: int, first_ann: int,
             args: argparse.Namespace, out_dir: Path, info: inference.ModelInfo) -> tuple[dict, dict, list]:
    """Write one image's files; returns its summary row, COCO image entry and annotations."""
    image = prepared.image
    height, width = image.shape[:2]
    mask = inference.lesion_mask(result, args.mask_rule)
    inference.write_image_atomic(out_dir / f"{stem}_segmentation.png", mask.astype(np.uint8) * np.uint8(255))
    inference.write_image_atomic(out_dir / f"{stem}_overlay.jpg", draw_overlay(image, result, info.class_names))
    if args.crops:
        crops = lesion_crops(image, result)
        for k, crop in enumerate(crops, start=1):
            inference.write_image_atomic(out_dir / f"{stem}_lesion{k}.png", crop)
        _remove_stale_crops(out_dir, stem, len(crops))

    names = info.class_names[1:]
    k = inference.top_index(result)
    row: dict[str, Any] = {"file": str(path), "width": width, "height": height, "lesions": len(result["scores"])}
    if k is None:
        row.update({"top_class": "", "top_score": None, **{f"p_{n}": None for n in names}})
    else:
        probs = inference.diagnosis_probabilities(result, len(names))
        row.update({"top_class": info.class_names[int(result["class_ids"][k])],
                    "top_score": float(result["scores"][k]),
                    **{f"p_{n}": float(p) for n, p in zip(names, probs)}})
    row.update({"lesion_area_px": int(np.count_nonzero(mask)), "segmentation": f"{stem}_segmentation.png",
                "status": "ok"})
    coco_image = {"id": image_id, "file_name": path.name, "width": width, "height": height, "path": str(path)}
    return row, coco_image, inference.coco_annotations(result, image_id, first_ann)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python lesion/detect.py", description=__doc__.split("\n\n")[0],
        epilog="Exit status: 0 all images processed, 1 some failed, 2 usage error (no weights, no images).")
    parser.add_argument("--images", nargs="+", required=True, metavar="DIR_OR_FILE",
                        help=f"image files and/or folders (their {', '.join(IMAGE_EXTENSIONS)} files)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    parser.add_argument("--crops", action="store_true",
                        help="also save each detection cut out as <stem>_lesion<k>.png (RGBA)")
    inference.add_model_arguments(parser)
    report.add_report_argument(parser)
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
    console.quiet_tensorflow(args.verbose)

    from mrcnn.atomic import OutputDirError, ensure_output_dir
    from mrcnn.dataset import read_image

    out_dir = Path(args.out)
    paths = collect_inputs(args.images, out_dir)
    if not paths:
        print(f"error: no image files ({', '.join(IMAGE_EXTENSIONS)}) in {' '.join(args.images)}", file=sys.stderr)
        return 2
    try:
        model, info = inference.model_from_args(args)
        ensure_output_dir(out_dir)  # before any image: a bad --out is one line, not an error per image
    except (inference.UsageError, OutputDirError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stems = output_stems(paths)
    second = f", diagnosis by {info.classifier_path}" if info.classifier is not None else ""
    print(f"{len(paths)} images, model {info.weights} ({info.config_name}, {info.classes}{second}); writing to "
          f"{out_dir}", file=sys.stderr)

    rows: list[dict] = []
    coco_images: list[dict] = []
    annotations: list[dict] = []
    failed: list[Path] = []
    start = time.perf_counter()
    prepared = inference.iter_prepared(model, enumerate(paths), lambda item: read_image(str(item[1])),
                                       workers=args.workers)
    detections = inference.iter_detections(model, prepared, args.batch_size)
    with console.progress(total=len(paths), desc="detect", unit="image", disable=args.quiet) as bar:
        for (index, path), p, result, error in detections:
            if error is None:
                try:
                    result = inference.finish_result(result, p.image, info)
                    row, coco_image, anns = _process(path, stems[index], p, result, index + 1, len(annotations) + 1,
                                                     args, out_dir, info)
                except OSError as exc:
                    # The output folder, not this image: a full disk or lost permissions fail every image after
                    # it too. Stop, and leave the earlier run's summary.csv and detections.json as they are.
                    detections.close()
                    prepared.close()
                    bar.close()
                    print(f"error: {out_dir}: cannot write the results of {path}: {exc.strerror or exc}",
                          file=sys.stderr)
                    print(f"stopped after {len(coco_images)} of {len(paths)} images (their files are written); "
                          f"summary.csv and detections.json in {out_dir} were not updated", file=sys.stderr)
                    return 1
                except Exception as exc:  # noqa: BLE001  (this image's result could not be drawn; the others go on)
                    error = exc
                else:
                    rows.append(row)
                    coco_images.append(coco_image)
                    annotations.extend(anns)
            if error is not None:
                text = _error_text(path, error)
                bar.write(f"error: {path}: {text}", file=sys.stderr)
                rows.append({"file": str(path), "status": f"error: {text}"})
                failed.append(path)
            bar.update(1)

    fields = (["file", "width", "height", "lesions", "top_class", "top_score"]
              + [f"p_{n}" for n in info.class_names[1:]] + ["lesion_area_px", "segmentation", "status"])
    categories = [{"id": i, "name": n, "supercategory": "lesion"} for i, n in enumerate(info.class_names) if i]
    inference.write_json_atomic(out_dir / "detections.json", {
        "info": {"description": f"Mask R-CNN lesion detections ({info.weights})",
                 "mask_rule": args.mask_rule, "min_confidence": float(model.config.DETECTION_MIN_CONFIDENCE)},
        "licenses": [], "images": coco_images, "categories": categories, "annotations": annotations})
    inference.write_csv_atomic(out_dir / "summary.csv", rows, fields)
    if not args.no_report:  # One page: the run's figures and overlay thumbnails (lesion/report.py).
        report.write_detect_report(out_dir, rows, info.class_names,
                                   [f"{len(paths)} inputs, model {info.weights} ({info.config_name}, {info.classes}"
                                    f"{second}); mask rule {args.mask_rule}"])

    elapsed = time.perf_counter() - start
    done = len(paths) - len(failed)
    print(f"{done} of {len(paths)} images processed in {elapsed:.1f} s; results in {out_dir}/ "
          f"(summary.csv, detections.json{'' if args.no_report else ', report.html'}, <stem>_segmentation.png, "
          f"<stem>_overlay.jpg)")
    if failed:
        print(f"{len(failed)} inputs failed (see summary.csv): {', '.join(str(p) for p in failed[:5])}"
              f"{', ...' if len(failed) > 5 else ''}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
