"""``report.html``: one self-contained page of a ``lesion/detect.py`` or ``lesion/evaluate.py`` run.

The page holds the run's figures as tables, the plots the run wrote, and a grid of overlay thumbnails (at most
:data:`THUMB_SIZE` px, JPEG, embedded as ``data:`` URIs), each with its file name, diagnosis and scores. CSS is
inline; there is no script and no link to another file, so the page can be mailed or archived alone. Large runs
stay small: at most :data:`MAX_IMAGES` thumbnails (about 1.5 MB), in input order for ``detect.py`` and worst
Jaccard first for ``evaluate.py``, with a line saying how many are left out. Every text is HTML-escaped.

Both tools call one function at the end of their run (``--no-report`` skips it)::

    write_detect_report(out_dir, rows, class_names, details)          # rows: those of summary.csv
    thumbs = EvaluationThumbnails()                                    # evaluate.py, before its loop
    thumbs.add(row, small_image, predicted_mask, true_mask, name)      # per scored image
    write_evaluate_report(out_dir, metrics, rows, thumbs, plot_paths)  # metrics: those of metrics.json

The page is written through a temporary file and a rename (:func:`mrcnn.atomic.write_bytes_atomic`).
"""

from __future__ import annotations

import base64
import heapq
import html
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["THUMB_SIZE", "MAX_IMAGES", "REPORT_NAME", "PREDICTION_COLOR", "TRUTH_COLOR", "Tile", "Table",
           "add_report_argument", "shrink", "thumbnail", "data_uri", "render_html", "write_report",
           "EvaluationThumbnails", "write_detect_report", "write_evaluate_report"]

THUMB_SIZE = 160
"""Longest side of a thumbnail, in pixels."""
MAX_IMAGES = 200
"""Thumbnails shown at most; the rest are counted in a line of the page."""
REPORT_NAME = "report.html"
PREDICTION_COLOR = (255, 0, 255)
"""RGB of the predicted lesion's outline (magenta)."""
TRUTH_COLOR = (0, 255, 0)
"""RGB of the ground-truth lesion's outline (green)."""
_JPEG_QUALITY = 80


def add_report_argument(parser: Any) -> None:
    """``--no-report`` on an ``argparse`` parser (``args.no_report``)."""
    parser.add_argument("--no-report", action="store_true",
                        help=f"do not write {REPORT_NAME} (one page: figures, plots and overlay thumbnails)")


# ----------------------------------------------------------------------------------------------------------------
# Thumbnails
# ----------------------------------------------------------------------------------------------------------------

def _fit(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w) of a [height, width] image scaled to fit in size x size (never enlarged), at least 1 x 1."""
    scale = min(1.0, size / max(height, width, 1))
    return max(1, round(height * scale)), max(1, round(width * scale))


def shrink(image: np.ndarray, size: int = THUMB_SIZE) -> np.ndarray:
    """``image`` scaled down (area averaging) to fit in ``size`` x ``size``; a smaller image is kept as it is.

    Args:
        image: uint8 [H, W, 3] RGB (or [H, W] grey).

    Returns:
        uint8 [h, w, 3] RGB with max(h, w) <= size.
    """
    import cv2

    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = np.ascontiguousarray(image[..., :3])
    h, w = _fit(image.shape[0], image.shape[1], size)
    if (h, w) == image.shape[:2]:
        return image.copy()
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


def thumbnail(image: np.ndarray, outlines: Sequence[tuple[np.ndarray, tuple[int, int, int]]] = (),
              size: int = THUMB_SIZE) -> np.ndarray:
    """A thumbnail of ``image`` with the outline of each mask drawn at the thumbnail's scale (1 px, crisp).

    Args:
        image: uint8 [H, W, 3] RGB, any size (an already shrunk image is fine).
        outlines: (mask, (r, g, b)) pairs; a mask is bool or 0/255 [h, w] of any size covering the same view as
            ``image`` (it is resized to the thumbnail).
        size: longest side of the thumbnail.

    Returns:
        uint8 [h, w, 3] RGB, max(h, w) <= size.
    """
    import cv2

    thumb = shrink(image, size)
    h, w = thumb.shape[:2]
    for mask, color in outlines:
        mask = np.asarray(mask)
        if mask.size == 0 or not mask.any():
            continue
        small = cv2.resize((mask > 0).astype(np.uint8) * np.uint8(255), (w, h), interpolation=cv2.INTER_AREA)
        contours, _ = cv2.findContours((small > 127).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(thumb, contours, -1, tuple(int(c) for c in color), thickness=1)
    return thumb


def data_uri(image: np.ndarray | None = None, *, png_bytes: bytes | None = None) -> str:
    """A ``data:`` URI: a uint8 RGB ``image`` as JPEG, or a PNG file's bytes as they are."""
    if png_bytes is not None:
        return "data:image/png;base64," + base64.b64encode(png_bytes).decode("ascii")
    import cv2

    # Full-resolution colour (4:4:4): with JPEG's default 4:2:0 a 1-pixel outline loses half its colour.
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY,
                                cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {np.shape(image)} image as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def _read_small(path: Path, size: int, mask: bool = False) -> np.ndarray | None:
    """An overlay (RGB) or a segmentation (``mask``: bool) file read at most ``size`` px long (JPEG DCT scaling, as
    the training data is read); None when it is missing or unreadable."""
    from lesion.datasets import read_image_resized, read_mask
    from mrcnn.dataset import ImageReadError

    try:
        return read_mask(str(path), size) if mask else read_image_resized(str(path), size)
    except ImageReadError:
        return None


# ----------------------------------------------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class Tile:
    """One thumbnail of the grid.

    Attributes:
        name: the caption's first line (a file name).
        image: a ``data:`` URI, or None (the tile says the image is missing).
        lines: further caption lines.
        size: (width, height) of the thumbnail in pixels, written on the ``img`` so it is shown 1:1.
    """

    name: str
    image: str | None
    lines: list[str] = field(default_factory=list)
    size: tuple[int, int] | None = None


@dataclass
class Table:
    """A table of the page: a caption, a header row and rows of cells (any values, shown with :func:`_cell`)."""

    caption: str
    header: list[str]
    rows: list[list[Any]]


def _cell(value: Any) -> str:
    """A table cell's text: floats with 4 decimals, None / NaN as "-"."""
    if value is None or (isinstance(value, (float, np.floating)) and not math.isfinite(value)):
        return "-"
    if isinstance(value, (float, np.floating)):
        return f"{value:.4f}"
    return str(value)


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:16px 24px;color:#1b1b1b;background:#fff}
h1{font-size:20px;margin:0 0 6px}h2{font-size:16px;margin:18px 0 6px}
p.meta{margin:2px 0;color:#444;font-size:13px}
table{border-collapse:collapse;font-size:13px;margin:4px 0 10px}
caption{text-align:left;font-weight:600;padding:2px 0}
th,td{border:1px solid #ccc;padding:3px 8px}td.num{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f0f0f0}
.plots{display:flex;flex-wrap:wrap;gap:12px}.plots figure{margin:0}.plots img{max-width:360px;height:auto}
.plots figcaption,.legend,.more{font-size:12px;color:#444}
.grid{display:flex;flex-wrap:wrap;gap:10px}
.tile{width:172px;border:1px solid #ddd;border-radius:4px;padding:4px;font-size:11px;line-height:1.35}
.tile .img{width:160px;height:160px;display:flex;align-items:center;justify-content:center;background:#222}
.tile .missing{color:#ddd}.tile .name{font-weight:600;word-break:break-all;margin-top:3px}
.swatch{display:inline-block;width:10px;height:10px;vertical-align:middle;margin:0 3px 0 8px}
ul.failed{font-size:12px}
"""


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _table_html(table: Table) -> str:
    parts = [f"<table><caption>{_esc(table.caption)}</caption><tr>"]
    parts += [f"<th>{_esc(h)}</th>" for h in table.header]
    parts.append("</tr>")
    for row in table.rows:
        parts.append("<tr>")
        for i, value in enumerate(row):
            numeric = i > 0 and (value is None or isinstance(value, (int, float, np.integer, np.floating)))
            cls = ' class="num"' if numeric else ""
            parts.append(f"<td{cls}>{_esc(_cell(value))}</td>")
        parts.append("</tr>")
    parts.append("</table>")
    return "".join(parts)


def _tile_html(tile: Tile) -> str:
    if tile.image is None:
        picture = '<span class="missing">no image</span>'
    else:
        dims = f' width="{tile.size[0]}" height="{tile.size[1]}"' if tile.size else ""
        picture = f'<img src="{_esc(tile.image)}"{dims} alt="{_esc(tile.name)}">'
    lines = "".join(f"<div>{_esc(line)}</div>" for line in tile.lines)
    return (f'<div class="tile"><div class="img">{picture}</div><div class="name">{_esc(tile.name)}</div>'
            f"{lines}</div>")


def render_html(title: str, *, meta: Sequence[str] = (), tables: Sequence[Table] = (),
                plots: Sequence[tuple[str, str]] = (), tiles: Sequence[Tile] = (), total_images: int | None = None,
                images_heading: str = "Images", more_note: str = "", legend: Sequence[tuple[str, tuple]] = (),
                failed: Sequence[str] = (), max_images: int = MAX_IMAGES) -> str:
    """The page as a string.

    Args:
        title: the heading (and ``<title>``).
        meta: lines under the heading (data set, model, ...).
        tables: figures.
        plots: (caption, ``data:`` URI) of each plot.
        tiles: the thumbnails in the order shown; those after the first ``max_images`` are left out.
        total_images: the number of images the tiles are taken from (default ``len(tiles)``), for the line
            saying how many are not shown.
        images_heading: the grid's heading.
        more_note: appended to the "not shown" line (e.g. where the others are listed).
        legend: (label, (r, g, b)) of the outline colours.
        failed: lines for the inputs that could not be processed (at most ``max_images`` listed).
        max_images: the cap on thumbnails.
    """
    total = len(tiles) if total_images is None else int(total_images)
    shown = list(tiles[:max(0, max_images)])
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>", f"<h1>{_esc(title)}</h1>"]
    out += [f'<p class="meta">{_esc(line)}</p>' for line in meta]
    out += [_table_html(t) for t in tables]
    if plots:
        out.append('<h2>Plots</h2><div class="plots">')
        out += [f'<figure><img src="{_esc(uri)}" alt="{_esc(name)}"><figcaption>{_esc(name)}</figcaption></figure>'
                for name, uri in plots]
        out.append("</div>")
    out.append(f"<h2>{_esc(images_heading)}</h2>")
    if legend:
        out.append('<p class="legend">Outlines:' + "".join(
            f'<span class="swatch" style="background:rgb({int(c[0])},{int(c[1])},{int(c[2])})"></span>{_esc(label)}'
            for label, c in legend) + "</p>")
    if total > len(shown):
        out.append(f'<p class="more">{_esc(f"{len(shown)} of {total} images shown; {total - len(shown)} left out")}'
                   f"{_esc(more_note)}.</p>")
    out.append('<div class="grid">' + "".join(_tile_html(t) for t in shown) + "</div>")
    if failed:
        out.append(f"<h2>{_esc(f'Not processed ({len(failed)})')}</h2><ul class=\"failed\">")
        out += [f"<li>{_esc(line)}</li>" for line in failed[:max(0, max_images)]]
        if len(failed) > max_images:
            out.append(f"<li>{_esc(f'... and {len(failed) - max_images} more')}</li>")
        out.append("</ul>")
    out.append("</body></html>\n")
    return "\n".join(out)


def write_report(path: str | os.PathLike, page: str) -> str:
    """Write ``page`` to ``path`` atomically (UTF-8); returns the path."""
    from mrcnn.atomic import write_bytes_atomic

    return write_bytes_atomic(path, page.encode("utf8"))


def _pretty(name: str) -> str:
    return name.replace("_", " ")


def _probability_line(row: Mapping[str, Any], names: Sequence[str]) -> str | None:
    """``p: melanoma 0.71, nevus 0.19, ...`` from the ``p_<name>`` cells of a row; None when they are empty."""
    cells = [(n, row.get(f"p_{n}")) for n in names]
    if not cells or any(v is None or v == "" for _, v in cells):
        return None
    return "p: " + ", ".join(f"{_pretty(n)} {float(v):.2f}" for n, v in cells)


def _score(value: Any) -> str:
    return "-" if value is None or value == "" or not math.isfinite(float(value)) else f"{float(value):.3f}"


# ----------------------------------------------------------------------------------------------------------------
# lesion/detect.py
# ----------------------------------------------------------------------------------------------------------------

def write_detect_report(out_dir: str | os.PathLike, rows: Sequence[Mapping[str, Any]], class_names: Sequence[str],
                        details: Sequence[str] = (), max_images: int = MAX_IMAGES,
                        size: int = THUMB_SIZE) -> str:
    """``<out_dir>/report.html`` of a ``lesion/detect.py`` run.

    The thumbnails are the run's ``<stem>_overlay.jpg`` files with the outline of ``<stem>_segmentation.png``
    drawn at thumbnail scale, the first ``max_images`` in input order.

    Args:
        out_dir: the run's output folder (its overlays and segmentations are read).
        rows: the rows of ``summary.csv`` (``file``, ``width``, ``height``, ``lesions``, ``top_class``,
            ``top_score``, ``p_<class>``, ``segmentation``, ``status``).
        class_names: the model's class names, ``"BG"`` first.
        details: lines under the heading (the model, ...).
        max_images: the cap on thumbnails.
        size: thumbnail size.

    Returns:
        The path written.
    """
    out_dir = Path(out_dir)
    names = list(class_names[1:])
    ok = [r for r in rows if r.get("status") == "ok"]
    failed = [f"{r.get('file')}: {r.get('status')}" for r in rows if r.get("status") != "ok"]
    tiles = []
    for row in ok[:max(0, max_images)]:
        seg_name = str(row.get("segmentation", ""))
        stem = seg_name[: -len("_segmentation.png")] if seg_name.endswith("_segmentation.png") else Path(seg_name).stem
        overlay = _read_small(out_dir / f"{stem}_overlay.jpg", size)
        image, dims = None, None
        if overlay is not None:
            mask = _read_small(out_dir / seg_name, size, mask=True) if seg_name else None
            thumb = thumbnail(overlay, [] if mask is None else [(mask, PREDICTION_COLOR)], size)
            image, dims = data_uri(thumb), (thumb.shape[1], thumb.shape[0])
        lesions = int(row.get("lesions") or 0)
        lines = [f"{row.get('width')} x {row.get('height')} px, {lesions} lesion{'' if lesions == 1 else 's'}"]
        if row.get("top_class"):
            lines += [f"diagnosis: {_pretty(str(row['top_class']))}",
                      f"detection score {_score(row.get('top_score'))}"]
            prob = _probability_line(row, names)
            if prob:
                lines.append(prob)
        else:
            lines.append("no detection")
        tiles.append(Tile(os.path.basename(str(row.get("file", ""))), image, lines, dims))

    counts: dict[str, int] = {}
    for row in ok:
        key = str(row.get("top_class") or "(no detection)")
        counts[key] = counts.get(key, 0) + 1
    summary = Table("Run", ["", "images"], [["inputs", len(rows)], ["processed", len(ok)], ["failed", len(failed)]]
                    + [[f"top class: {_pretty(k)}", v] for k, v in sorted(counts.items())])
    page = render_html(f"Lesion detection: {out_dir.name or out_dir}", meta=list(details), tables=[summary],
                       tiles=tiles, total_images=len(ok), images_heading="Overlays (input order)",
                       more_note="; every image is in summary.csv", legend=[("lesion mask", PREDICTION_COLOR)],
                       failed=failed, max_images=max_images)
    return write_report(out_dir / REPORT_NAME, page)


# ----------------------------------------------------------------------------------------------------------------
# lesion/evaluate.py
# ----------------------------------------------------------------------------------------------------------------

def _row_jaccard(row: Mapping[str, Any]) -> float:
    """The Jaccard an evaluation row is ranked by: the model's, else the Otsu baseline's; NaN when neither."""
    for key in ("jaccard", "otsu_jaccard"):
        value = row.get(key)
        if value is not None and value != "":
            return float(value)
    return float("nan")


def _worst_first(jaccard: float, order: int) -> tuple[float, int]:
    """Sort key: the lowest Jaccard first, then input order; an image without a score last."""
    return (jaccard if math.isfinite(jaccard) else math.inf, order)


class EvaluationThumbnails:
    """The thumbnails of the images with the lowest Jaccard, kept while ``lesion/evaluate.py`` scores a data set.

    Memory stays flat over any number of images: a thumbnail is drawn only for an image among the ``capacity``
    worst so far, and at most ``capacity`` are held (JPEG ``data:`` URIs, a few kB each).

    Args:
        capacity: the number kept (the report's cap).
        size: thumbnail size.
    """

    def __init__(self, capacity: int = MAX_IMAGES, size: int = THUMB_SIZE) -> None:
        self.capacity = int(capacity)
        self.size = int(size)
        self._heap: list[tuple[tuple[float, int], str]] = []  # Max-heap by the worst-first key (negated).
        self._kept: dict[str, tuple[str, str, tuple[int, int]]] = {}  # image id -> (name, URI, (w, h)).
        self._count = 0

    def add(self, row: Mapping[str, Any], image: np.ndarray, predicted: np.ndarray | None,
            truth: np.ndarray | None, name: str | None = None) -> None:
        """Offer one scored image.

        Args:
            row: its row of ``per_image.csv`` (``image_id`` and ``jaccard`` or ``otsu_jaccard``).
            image: uint8 [H, W, 3] RGB, full size or already shrunk (:func:`shrink`).
            predicted: the predicted lesion mask [h, w] (any size over the same view), or None.
            truth: the ground-truth mask, or None.
            name: the caption (default: the image id).
        """
        order = self._count
        self._count += 1
        if self.capacity <= 0:
            return
        key = _worst_first(_row_jaccard(row), order)
        neg = (-key[0], -key[1])
        if len(self._heap) >= self.capacity and neg <= self._heap[0][0]:
            return  # Not among the worst kept so far.
        outlines = [(m, c) for m, c in ((truth, TRUTH_COLOR), (predicted, PREDICTION_COLOR)) if m is not None]
        thumb = thumbnail(image, outlines, self.size)
        image_id = str(row["image_id"])
        self._kept[image_id] = (name or image_id, data_uri(thumb), (thumb.shape[1], thumb.shape[0]))
        if len(self._heap) >= self.capacity:
            _, dropped = heapq.heapreplace(self._heap, (neg, image_id))
            self._kept.pop(dropped, None)
        else:
            heapq.heappush(self._heap, (neg, image_id))

    def get(self, image_id: str) -> tuple[str, str, tuple[int, int]] | None:
        """(name, ``data:`` URI, (width, height)) of a kept image, or None."""
        return self._kept.get(str(image_id))

    def __len__(self) -> int:
        return len(self._kept)


_SEGMENTATION_COLUMNS = (("Jaccard", "jaccard"), ("Dice", "dice"), ("thr. Jaccard", "thresholded_jaccard"),
                         ("accuracy", "accuracy"), ("sensitivity", "sensitivity"), ("specificity", "specificity"),
                         ("box IoU (median)", "median_box_iou"), ("images", "n_images"))
_CLASSIFICATION_ROWS = (("images with a diagnosis", "n"), ("accuracy", "accuracy"),
                        ("balanced accuracy", "balanced_accuracy"), ("melanoma AUC", "melanoma_auc"),
                        ("seborrheic keratosis AUC", "seborrheic_keratosis_auc"), ("mean AUC", "mean_auc"),
                        ("Brier score", "brier"), ("melanoma Brier", "melanoma_brier"),
                        ("seborrheic keratosis Brier", "seborrheic_keratosis_brier"))


def _evaluation_tables(metrics: Mapping[str, Any]) -> list[Table]:
    """The tables of a ``metrics.json``: segmentation per method, COCO AP, diagnosis."""
    model = metrics.get("model")
    methods = []
    if model:
        methods.append(("Mask R-CNN", model.get("segmentation") or {}))
    if metrics.get("baseline_otsu"):
        methods.append(("Otsu baseline", metrics["baseline_otsu"].get("segmentation") or {}))
    tables = [Table("Segmentation (ISIC 2017 Part 1 means; thresholded Jaccard: ISIC 2018)",
                    ["method"] + [t for t, _ in _SEGMENTATION_COLUMNS],
                    [[name] + [seg.get(k) for _, k in _SEGMENTATION_COLUMNS] for name, seg in methods])]
    if model and model.get("coco"):
        coco_rows = [[f"{kind} ({iou})", *(stats.get(k) for k in ("AP", "AP50", "AP75"))]
                     for kind, key in (("per class", "coco"), ("class-agnostic", "coco_class_agnostic"))
                     for iou, stats in (model.get(key) or {}).items()]
        coco_rows.append(["images without detection", model.get("images_without_detection"), None, None])
        tables.append(Table("Detection (COCO)", ["", "AP", "AP50", "AP75"], coco_rows))
    cls = model.get("classification") if model else None
    if cls:
        tables.append(Table("Diagnosis (ISIC 2017 Part 3)", ["", "value"],
                            [[title, cls.get(k)] for title, k in _CLASSIFICATION_ROWS if k in cls]))
    return tables


def write_evaluate_report(out_dir: str | os.PathLike, metrics: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                          thumbnails: EvaluationThumbnails | None = None,
                          plots: Sequence[str | os.PathLike] = ()) -> str:
    """``<out_dir>/report.html`` of a ``lesion/evaluate.py`` run.

    Args:
        out_dir: the run's output folder.
        metrics: the run's ``metrics.json`` content.
        rows: the rows of ``per_image.csv`` (``image_id``, ``diagnosis``, ``jaccard``, ``top_class``,
            ``top_score``, ``p_<class>``, ``otsu_jaccard``, ``status``).
        thumbnails: the kept thumbnails; its ``capacity`` is the cap on tiles (:data:`MAX_IMAGES` when None).
        plots: PNG files to embed (a missing one is skipped).

    Returns:
        The path written.
    """
    out_dir = Path(out_dir)
    cap = MAX_IMAGES if thumbnails is None else thumbnails.capacity
    ok = [r for r in rows if r.get("status") == "ok"]
    ranked = sorted(enumerate(ok), key=lambda item: _worst_first(_row_jaccard(item[1]), item[0]))
    prob_names = [k[2:] for k in dict.fromkeys(k for r in ok for k in r) if k.startswith("p_")]
    tiles = []
    for _, row in ranked[:max(0, cap)]:
        kept = thumbnails.get(row["image_id"]) if thumbnails is not None else None
        name, uri, dims = kept if kept else (str(row["image_id"]), None, None)
        lines = []
        if row.get("jaccard") not in (None, ""):
            lines.append(f"Jaccard {_score(row['jaccard'])}")
        if row.get("otsu_jaccard") not in (None, ""):
            lines.append(f"Otsu Jaccard {_score(row['otsu_jaccard'])}")
        lines.append(f"truth: {_pretty(str(row.get('diagnosis') or '-'))}")
        if "top_class" in row:
            if row.get("top_class"):
                lines += [f"predicted: {_pretty(str(row['top_class']))}",
                          f"detection score {_score(row.get('top_score'))}"]
            else:
                lines.append("no detection")
            prob = _probability_line(row, prob_names)
            if prob:
                lines.append(prob)
        tiles.append(Tile(name, uri, lines, dims))

    embedded = []
    for plot in plots:
        try:
            embedded.append((Path(plot).name, data_uri(png_bytes=Path(plot).read_bytes())))
        except OSError:
            continue
    model = metrics.get("model")
    meta = [f"data set {metrics.get('dataset')}, subset {metrics.get('subset')} ({metrics.get('split')}): "
            f"{metrics.get('n_images')} images scored, {len(metrics.get('failed') or [])} unreadable"]
    if model:
        meta.append(f"model {model.get('weights')} ({model.get('config')}, {model.get('classes')}"
                    + (f", diagnosis by {model['classifier']}" if model.get("classifier") else "")
                    + f"); mask rule {model.get('mask_rule')}, min confidence {model.get('min_confidence')}")
        if model.get("classification_note"):
            meta.append(f"diagnosis: {model['classification_note']}")
    failed = [f"{r.get('image_id')}: {r.get('status')}" for r in rows if r.get("status") != "ok"]
    with_model = bool(model)
    legend = [("ground truth", TRUTH_COLOR), ("Mask R-CNN" if with_model else "Otsu baseline", PREDICTION_COLOR)]
    page = render_html(f"Lesion evaluation: {out_dir.name or out_dir}", meta=meta,
                       tables=_evaluation_tables(metrics), plots=embedded, tiles=tiles, total_images=len(ok),
                       images_heading="Images, lowest Jaccard first", more_note="; every image is in per_image.csv",
                       legend=legend, failed=failed, max_images=cap)
    return write_report(out_dir / REPORT_NAME, page)
