"""lesion/report.py: the self-contained report.html of lesion/detect.py and lesion/evaluate.py (escaping, figures,
embedded thumbnails, the cap, worst Jaccard first), the CLIs writing it, and the page rendered in headless
Chromium (skipped where no Chromium is installed)."""

from __future__ import annotations

import base64
import csv
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from lesion import detect, evaluate, report
from mrcnn import atomic
from tests.tiny_lesion_model import TINY_ARGS, save_tiny_model

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT / "tests" / "data" / "isic2017"
ISIC_IMAGES = DATASET / "ISIC-2017_Training_Data"
AWKWARD = 'a <b>&"x".jpg'  # A file name that is HTML markup if not escaped.


class Page(HTMLParser):
    """What a browser would load and show of a page: image sources, scripts, links, stylesheet URLs, the names of
    the tiles in order, and the text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.images: list[str] = []
        self.forbidden: list[str] = []
        self.tile_names: list[str] = []
        self.text: list[str] = []
        self._in_name = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src") or "")
        if tag in ("script", "link", "iframe", "object", "embed") or "url(" in (attrs.get("style") or ""):
            self.forbidden.append(tag)
        self._in_name = tag == "div" and attrs.get("class") == "name"

    def handle_endtag(self, tag):
        self._in_name = False

    def handle_data(self, data):
        if self._in_name:
            self.tile_names.append(data)
        self.text.append(data)

    @property
    def all_text(self) -> str:
        return " ".join(self.text)


def _decode(uri: str) -> np.ndarray:
    """RGB pixels of a ``data:image/...;base64,`` URI."""
    head, _, payload = uri.partition(",")
    assert head in ("data:image/jpeg;base64", "data:image/png;base64"), head
    image = cv2.imdecode(np.frombuffer(base64.b64decode(payload), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


# ----------------------------------------------------------------------------------------------------------------
# The module
# ----------------------------------------------------------------------------------------------------------------

def test_thumbnail_fits_and_draws_the_outline_at_its_scale():
    image = np.full((300, 400, 3), 128, np.uint8)
    mask = np.zeros((300, 400), bool)
    mask[100:200, 100:300] = True  # At 0.4 scale: rows 40..79, columns 40..119.
    thumb = report.thumbnail(image, [(mask, report.PREDICTION_COLOR)])
    assert thumb.shape == (120, 160, 3) and thumb.dtype == np.uint8
    assert tuple(thumb[40, 80]) == report.PREDICTION_COLOR and tuple(thumb[79, 80]) == report.PREDICTION_COLOR
    assert tuple(thumb[60, 40]) == report.PREDICTION_COLOR and tuple(thumb[60, 119]) == report.PREDICTION_COLOR
    assert tuple(thumb[60, 80]) == (128, 128, 128) and tuple(thumb[10, 10]) == (128, 128, 128)  # Inside, outside.
    assert report.shrink(np.zeros((50, 70, 3), np.uint8)).shape == (50, 70, 3)  # Never enlarged.
    assert report.shrink(np.zeros((1000, 10), np.uint8)).shape == (160, 2, 3)  # Grey to RGB, at least 1 px.

    uri = report.data_uri(thumb)
    assert uri.startswith("data:image/jpeg;base64,")
    back = _decode(uri)
    assert back.shape == thumb.shape and np.abs(back.astype(int) - thumb).mean() < 6  # JPEG, quality 80.


def test_page_escapes_text_caps_the_tiles_and_loads_nothing_else():
    image = report.data_uri(np.full((90, 160, 3), (200, 30, 30), np.uint8))
    tiles = [report.Tile(f"{k} {AWKWARD}", image, ["<i>line</i> & more"], (160, 90)) for k in range(5)]
    table = report.Table("<caption>", ["method", "Jaccard"], [["<tr>", 0.71234], ["none", None]])
    page = report.render_html("<title> & run", meta=["</p><script>alert(1)</script>"], tables=[table], tiles=tiles,
                              failed=["x.jpg: error: <empty>"], max_images=3)
    parsed = Page(page)
    assert parsed.forbidden == []  # The injected <script> is text, not a tag.
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>" not in page and "a &lt;b&gt;&amp;&quot;x&quot;.jpg" in page
    assert parsed.tile_names == [f"{k} {AWKWARD}" for k in range(3)]  # The first three, the text as given.
    assert parsed.images == [image] * 3 and all(src.startswith("data:image/jpeg;base64,") for src in parsed.images)
    assert "3 of 5 images shown; 2 left out" in parsed.all_text
    assert "<i>line</i> & more" in parsed.all_text and "x.jpg: error: <empty>" in parsed.all_text
    assert "0.7123" in parsed.all_text and "<caption>" in parsed.all_text and "<title> & run" in parsed.all_text
    assert 'width="160" height="90"' in page  # Shown 1:1.


def _detect_rows(out: Path) -> list[dict]:
    """Two processed images (red and blue, with a mask each; one named like markup) and one failure, as detect.py
    writes them."""
    rows = []
    for k, (stem, color) in enumerate([(AWKWARD[:-4], (220, 20, 20)), ("blue", (20, 20, 220))]):
        _write_rgb(out / f"{stem}_overlay.jpg", np.full((300, 400, 3), color, np.uint8))
        seg = np.zeros((300, 400), np.uint8)
        seg[50:250, 100:300] = 255
        assert cv2.imwrite(str(out / f"{stem}_segmentation.png"), seg)
        rows.append({"file": f"/data/{stem}.jpg", "width": 400, "height": 300, "lesions": 1 + k,
                     "top_class": "seborrheic_keratosis", "top_score": 0.87654 - k / 10,
                     "p_melanoma": 0.25, "p_seborrheic_keratosis": 0.625, "p_nevus": 0.125,
                     "lesion_area_px": 40000, "segmentation": f"{stem}_segmentation.png", "status": "ok"})
    rows.append({"file": "/data/broken.jpg", "status": "error: the file is empty (0 bytes)"})
    return rows


def test_detect_report_shows_each_image_with_its_figures(tmp_path):
    rows = _detect_rows(tmp_path)
    path = report.write_detect_report(tmp_path, rows, ["BG", "melanoma", "seborrheic_keratosis", "nevus"],
                                      ["model <tiny>"])
    assert path == str(tmp_path / "report.html") and atomic.leftover_temp_files(tmp_path) == []
    page = Page((tmp_path / "report.html").read_text(encoding="utf8"))
    assert page.forbidden == []
    assert page.tile_names == [AWKWARD, "blue.jpg"]
    text = page.all_text
    for expected in ("detection score 0.877", "detection score 0.777", "diagnosis: seborrheic keratosis",
                     "p: melanoma 0.25, seborrheic keratosis 0.62, nevus 0.12", "1 lesion", "2 lesions",
                     "/data/broken.jpg: error: the file is empty (0 bytes)", "model <tiny>", "failed"):
        assert expected in text, expected
    red, blue = (_decode(src) for src in page.images)
    assert red.shape == blue.shape == (120, 160, 3)
    assert red[10, 10, 0] > 180 > 60 > red[10, 10, 2] and blue[10, 10, 2] > 180 > 60 > blue[10, 10, 0]
    # The segmentation's outline (rows 20..99, columns 40..119 at 0.4 scale) in the prediction's colour.
    assert np.abs(red[60, 40].astype(int) - report.PREDICTION_COLOR).max() < 40
    assert np.abs(red[60, 60].astype(int) - red[10, 10]).max() < 10  # Inside the outline: the overlay as it was.
    assert "left out" not in text

    report.write_detect_report(tmp_path, rows, ["BG", "melanoma", "seborrheic_keratosis", "nevus"], max_images=1)
    page = Page((tmp_path / "report.html").read_text(encoding="utf8"))
    assert page.tile_names == [AWKWARD] and len(page.images) == 1
    assert "1 of 2 images shown; 1 left out; every image is in summary.csv." in page.all_text


def test_evaluation_thumbnails_keep_the_worst_and_the_report_ranks_them(tmp_path):
    jaccards = [0.9, 0.2, 0.75, 0.05, 0.6, 0.95, 0.3, 0.5, 0.4, 0.85]
    thumbs = report.EvaluationThumbnails(capacity=3)
    rows, image = [], np.full((60, 80, 3), 90, np.uint8)
    for k, j in enumerate(jaccards):
        row = {"image_id": f"ISIC_{k:07d}", "diagnosis": "melanoma", "jaccard": j, "detections": 1,
               "top_class": "nevus", "top_score": 0.5 + k / 100, "p_melanoma": 0.1, "p_nevus": 0.9, "status": "ok"}
        rows.append(row)
        thumbs.add(row, image, np.ones((60, 80), bool), np.ones((60, 80), bool), f"file_{k}.jpg")
    rows.append({"image_id": "ISIC_bad", "status": "error: not a readable image"})
    assert len(thumbs) == 3
    assert [thumbs.get(f"ISIC_{k:07d}") is not None for k in range(10)] == [j in (0.05, 0.2, 0.3) for j in jaccards]

    plot = tmp_path / "roc.png"
    assert cv2.imwrite(str(plot), np.full((40, 60, 3), 255, np.uint8))
    metrics = {
        "dataset": "/data/<isic>", "subset": "validation", "split": "seed 2017", "n_images": 10,
        "failed": ["ISIC_bad"],
        "model": {"weights": "w.h5", "config": "light", "classes": "lesion", "classifier": "c.skops",
                  "mask_rule": "top", "min_confidence": 0.7,
                  "segmentation": {"jaccard": 0.54321, "dice": 0.65432, "thresholded_jaccard": 0.32109,
                                   "accuracy": 0.9, "sensitivity": 0.8, "specificity": 0.7, "median_box_iou": None,
                                   "n_images": 10},
                  "images_without_detection": 2,
                  "coco": {"bbox": {"AP": 0.11111, "AP50": 0.22222, "AP75": 0.33333},
                           "segm": {"AP": 0.44444, "AP50": 0.55555, "AP75": 0.66666}},
                  "classification": {"n": 8, "accuracy": 0.625, "balanced_accuracy": 0.51234,
                                     "melanoma_auc": 0.83219, "seborrheic_keratosis_auc": 0.74321, "mean_auc": 0.7877,
                                     "brier": 0.45678}},
        "baseline_otsu": {"segmentation": {"jaccard": 0.48761, "dice": 0.59876, "thresholded_jaccard": 0.2,
                                           "n_images": 10}},
    }
    path = report.write_evaluate_report(tmp_path, metrics, rows, thumbs, [plot, tmp_path / "missing.png"])
    page = Page(Path(path).read_text(encoding="utf8"))
    assert page.forbidden == []
    assert page.tile_names == ["file_3.jpg", "file_1.jpg", "file_6.jpg"]  # Jaccard 0.05, 0.2, 0.3.
    assert page.images[0] == "data:image/png;base64," + base64.b64encode(plot.read_bytes()).decode()
    assert len(page.images) == 4 and all(src.startswith("data:image/jpeg;base64,") for src in page.images[1:])
    text = page.all_text
    for expected in ("0.5432", "0.6543", "0.3211", "0.4876", "0.5988", "0.1111", "0.6667", "0.8322", "0.7432",
                     "0.5123", "0.4568", "Otsu baseline", "Mask R-CNN", "Jaccard 0.050", "truth: melanoma",
                     "predicted: nevus", "detection score 0.530", "p: melanoma 0.10, nevus 0.90", "/data/<isic>",
                     "3 of 10 images shown; 7 left out", "ISIC_bad: error: not a readable image", "roc.png"):
        assert expected in text, expected


# ----------------------------------------------------------------------------------------------------------------
# The command-line tools
# ----------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def detect_run(tmp_path_factory) -> Path:
    """detect.py with a tiny random model on two ISIC images, one renamed like markup; returns the output folder."""
    folder = tmp_path_factory.mktemp("images")
    shutil.copy(ISIC_IMAGES / "ISIC_0000002.jpg", folder / AWKWARD)
    shutil.copy(ISIC_IMAGES / "ISIC_0014722.jpg", folder / "ISIC_0014722.jpg")
    weights = save_tiny_model(tmp_path_factory.mktemp("weights"), "lesion")
    out = tmp_path_factory.mktemp("detect")
    assert detect.main(["--images", str(folder), "--out", str(out), "--weights", weights, "--min-confidence", "0",
                        "--quiet", *TINY_ARGS]) == 0
    return out


def test_detect_writes_the_report_of_its_summary(detect_run):
    with open(detect_run / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    page = Page((detect_run / "report.html").read_text(encoding="utf8"))
    assert page.forbidden == []
    assert page.tile_names == [Path(r["file"]).name for r in rows] == ["ISIC_0014722.jpg", AWKWARD]  # Input order.
    for row in rows:
        assert f"detection score {float(row['top_score']):.3f}" in page.all_text
        assert f"p: lesion {float(row['p_lesion']):.2f}" in page.all_text
    assert len(page.images) == 2
    for src, row in zip(page.images, rows):
        thumb = _decode(src)
        assert max(thumb.shape[:2]) == report.THUMB_SIZE
        assert thumb.shape[1] / thumb.shape[0] == pytest.approx(int(row["width"]) / int(row["height"]), rel=0.02)


def test_no_report_flag(tmp_path):
    out = tmp_path / "out"
    assert evaluate.main(["--dataset", str(DATASET), "--out", str(out), "--baseline-only", "--subset", "all",
                          "--quiet", "--no-report"]) == 0
    assert (out / "metrics.json").is_file() and not (out / "report.html").exists()
    assert "--no-report" in detect.build_parser().format_help()
    assert detect.build_parser().parse_args(["--images", "x", "--out", "y", "--no-report"]).no_report


@pytest.fixture(scope="module")
def evaluate_run(tmp_path_factory) -> Path:
    """evaluate.py, Otsu baseline only, on the six fixture images; returns the output folder."""
    out = tmp_path_factory.mktemp("evaluate")
    assert evaluate.main(["--dataset", str(DATASET), "--out", str(out), "--baseline-only", "--subset", "all",
                          "--quiet"]) == 0
    return out


def test_evaluate_report_has_its_figures_plots_and_worst_images_first(evaluate_run):
    metrics = json.loads((evaluate_run / "metrics.json").read_text())
    with open(evaluate_run / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    page = Page((evaluate_run / "report.html").read_text(encoding="utf8"))
    assert page.forbidden == []
    worst_first = sorted(rows, key=lambda r: float(r["otsu_jaccard"]))
    assert page.tile_names == [f"{r['image_id']}.jpg" for r in worst_first]
    for row in rows:
        assert f"Otsu Jaccard {float(row['otsu_jaccard']):.3f}" in page.all_text
    for key in ("jaccard", "dice", "thresholded_jaccard"):
        assert f"{metrics['baseline_otsu']['segmentation'][key]:.4f}" in page.all_text
    plots = [src for src in page.images if src.startswith("data:image/png")]
    assert plots == ["data:image/png;base64," + base64.b64encode((evaluate_run / name).read_bytes()).decode()
                     for name in ("jaccard_boxplot.png", "box_iou_boxplot.png")]
    assert len(page.images) == 2 + len(rows)


def test_evaluate_report_of_a_diagnosis_model(tmp_path):
    weights = save_tiny_model(tmp_path, "diagnosis")
    out = tmp_path / "out"
    assert evaluate.main(["--dataset", str(DATASET), "--out", str(out), "--weights", weights, "--subset", "all",
                          "--baseline", "otsu", "--min-confidence", "0", "--quiet", *TINY_ARGS]) == 0
    model = json.loads((out / "metrics.json").read_text())["model"]
    with open(out / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    page = Page((out / "report.html").read_text(encoding="utf8"))
    assert page.forbidden == []
    ranked = sorted(enumerate(rows), key=lambda item: (float(item[1]["jaccard"]), item[0]))
    assert page.tile_names == [f"{r['image_id']}.jpg" for _, r in ranked]
    text = page.all_text
    for key in ("accuracy", "balanced_accuracy", "melanoma_auc", "seborrheic_keratosis_auc", "brier"):
        assert f"{model['classification'][key]:.4f}" in text, key
    assert f"{model['segmentation']['jaccard']:.4f}" in text and f"{model['coco']['segm']['AP50']:.4f}" in text
    for row in rows:
        assert f"predicted: {row['top_class'].replace('_', ' ')}" in text
        assert f"truth: {row['diagnosis'].replace('_', ' ')}" in text
    plots = [src for src in page.images if src.startswith("data:image/png")]
    assert plots == ["data:image/png;base64," + base64.b64encode((out / name).read_bytes()).decode()
                     for name in ("jaccard_boxplot.png", "box_iou_boxplot.png", "confusion_matrix.png", "roc.png",
                                  "precision_recall.png", "reliability.png")]
    assert len(page.images) == len(plots) + len(rows)


# ----------------------------------------------------------------------------------------------------------------
# In a browser
# ----------------------------------------------------------------------------------------------------------------

def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _screenshot(page: Path, out: Path, size: tuple[int, int]) -> np.ndarray:
    """The page rendered by headless Chromium at device scale 1; RGB pixels."""
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium binary on PATH (chromium, chromium-browser, google-chrome): apt-get install chromium")
    done = subprocess.run([browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
                           "--force-device-scale-factor=1", f"--user-data-dir={out.parent / 'chromium-profile'}",
                           f"--screenshot={out}", f"--window-size={size[0]},{size[1]}", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and out.is_file(), done.stderr[-2000:]
    shot = cv2.imread(str(out), cv2.IMREAD_COLOR)
    assert shot is not None and shot.shape[:2] == (size[1], size[0])
    return cv2.cvtColor(shot, cv2.COLOR_BGR2RGB)


def _assert_shows_thumbnails(shot: np.ndarray, page_file: Path, count: int) -> None:
    """The screenshot is not blank and holds each of the page's first ``count`` JPEG thumbnails, pixel for pixel
    up to JPEG decoding (normalised cross-correlation of at least 0.95)."""
    assert shot.std() > 20 and len(np.unique(shot.reshape(-1, 3), axis=0)) > 500  # Not one colour, not a few.
    thumbs = [_decode(src) for src in Page(page_file.read_text(encoding="utf8")).images
              if src.startswith("data:image/jpeg")][:count]
    assert len(thumbs) == count
    for thumb in thumbs:
        scores = cv2.matchTemplate(shot, thumb, cv2.TM_CCOEFF_NORMED)
        _, best, _, (x, y) = cv2.minMaxLoc(scores)
        assert best > 0.95, best
        found = shot[y:y + thumb.shape[0], x:x + thumb.shape[1]].reshape(-1, 3).mean(axis=0)
        assert np.abs(found - thumb.reshape(-1, 3).mean(axis=0)).max() < 8  # The image's colours, where it is.


def test_detect_report_renders_in_chromium(detect_run, tmp_path):
    shot = _screenshot(detect_run / "report.html", tmp_path / "detect.png", (1200, 900))
    _assert_shows_thumbnails(shot, detect_run / "report.html", 2)
    # The page around the grid is the white background: the thumbnails are not the whole picture.
    assert (shot.reshape(-1, 3) == 255).all(axis=1).mean() > 0.5


def test_evaluate_report_renders_in_chromium(evaluate_run, tmp_path):
    shot = _screenshot(evaluate_run / "report.html", tmp_path / "evaluate.png", (1200, 1600))
    _assert_shows_thumbnails(shot, evaluate_run / "report.html", 6)
