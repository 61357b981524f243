"""lesion/evaluate.py on the six-image ISIC 2017 fixture: the Otsu baseline alone, a tiny random diagnosis model
with the baseline beside it, the project's validation split, and unreadable images."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lesion import evaluate, inference
from lesion.datasets import IsicDataset, split_ids
from tests.tiny_lesion_model import TINY_ARGS, save_tiny_model

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT / "tests" / "data" / "isic2017"
ALL_IDS = ["ISIC_0000001", "ISIC_0000002", "ISIC_0012090", "ISIC_0012224", "ISIC_0014657", "ISIC_0014722"]
DIAGNOSES = ["nevus", "melanoma", "seborrheic_keratosis", "seborrheic_keratosis", "nevus", "melanoma"]
SEGMENTATION_KEYS = ("jaccard", "dice", "accuracy", "sensitivity", "specificity", "thresholded_jaccard",
                     "median_box_iou", "n_images")


@pytest.fixture(scope="module")
def tiny_diagnosis_weights(tmp_path_factory) -> str:
    """Random weights of a light diagnosis model (4 classes), saved in matterport's layout."""
    return save_tiny_model(tmp_path_factory.mktemp("weights"), "diagnosis")


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "per_image.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_baseline_only(tmp_path, capsys):
    from lesion.baseline import evaluate_dataset

    out = tmp_path / "out"
    assert evaluate.main(["--dataset", str(DATASET), "--out", str(out), "--baseline-only", "--subset", "all",
                          "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] is None and metrics["n_images"] == 6 and metrics["failed"] == []
    seg = metrics["baseline_otsu"]["segmentation"]
    assert set(SEGMENTATION_KEYS) <= set(seg)
    reference, _ = evaluate_dataset(str(DATASET))  # lesion/baseline.py's own scoring of the same images.
    for key in SEGMENTATION_KEYS:
        assert seg[key] == pytest.approx(reference[key])
    rows = _rows(out)
    assert [r["image_id"] for r in rows] == ALL_IDS
    assert [r["diagnosis"] for r in rows] == DIAGNOSES
    assert all(r["status"] == "ok" for r in rows)
    assert float(rows[0]["otsu_jaccard"]) == pytest.approx(next(
        r["jaccard"] for r in evaluate_dataset(str(DATASET))[1] if r["image_id"] == ALL_IDS[0]), abs=1e-5)
    assert (out / "jaccard_boxplot.png").stat().st_size > 0 and (out / "box_iou_boxplot.png").is_file()
    printed = capsys.readouterr().out
    assert "method" in printed and "Otsu baseline" in printed and "thr. Jaccard" in printed
    assert f"{seg['jaccard']:.4f}" in printed and str(out) in printed


def test_model_with_baseline_has_every_figure(tiny_diagnosis_weights, tmp_path, capsys):
    out = tmp_path / "out"
    status = evaluate.main(["--dataset", str(DATASET), "--out", str(out), "--weights", tiny_diagnosis_weights,
                            "--subset", "all", "--baseline", "otsu", "--min-confidence", "0", "--batch-size", "2",
                            "--quiet", *TINY_ARGS])
    assert status == 0
    metrics = json.loads((out / "metrics.json").read_text())
    model = metrics["model"]
    assert model["classes"] == "diagnosis" and model["config"] == "light" and model["mask_rule"] == "top"
    assert set(SEGMENTATION_KEYS) <= set(model["segmentation"])
    assert model["segmentation"]["n_images"] == 6
    for iou_type in ("bbox", "segm"):
        assert set(model["coco"][iou_type]) == {"AP", "AP50", "AP75"}
        assert 0.0 <= model["coco"][iou_type]["AP"] <= 1.0
    cls = model["classification"]
    for key in ("accuracy", "balanced_accuracy", "melanoma_auc", "seborrheic_keratosis_auc", "confusion_matrix"):
        assert key in cls
    assert np.array(cls["confusion_matrix"]).shape == (3, 3) and np.sum(cls["confusion_matrix"]) == 6
    assert cls["class_counts"] == {"melanoma": 2, "seborrheic_keratosis": 2, "nevus": 2}
    assert set(SEGMENTATION_KEYS) <= set(metrics["baseline_otsu"]["segmentation"])

    rows = _rows(out)
    assert [r["image_id"] for r in rows] == ALL_IDS
    for row in rows:
        probs = [float(row[f"p_{n}"]) for n in ("melanoma", "seborrheic_keratosis", "nevus")]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert row["jaccard"] != "" and row["otsu_jaccard"] != ""
    for name in ("jaccard_boxplot", "box_iou_boxplot", "confusion_matrix", "roc", "precision_recall"):
        assert (out / f"{name}.png").stat().st_size > 0
    printed = capsys.readouterr().out
    table = printed[printed.index("method"):]
    assert "Mask R-CNN" in table and "Otsu baseline" in table and "Dice" in table


def test_default_subset_is_the_project_validation_split(tmp_path):
    _, expected = split_ids(ALL_IDS, val_fraction=0.2, seed=2017, labels=DIAGNOSES)
    out = tmp_path / "out"
    assert evaluate.main(["--dataset", str(DATASET), "--out", str(out), "--baseline-only", "--quiet"]) == 0
    assert [r["image_id"] for r in _rows(out)] == expected
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["subset"] == "validation" and metrics["seed"] == 2017 and metrics["val_fraction"] == 0.2

    out = tmp_path / "train"
    assert evaluate.main(["--dataset", str(DATASET), "--out", str(out), "--baseline-only", "--subset", "train",
                          "--val-fraction", "0.5", "--seed", "3", "--quiet"]) == 0
    train, val = split_ids(ALL_IDS, val_fraction=0.5, seed=3, labels=DIAGNOSES)
    assert [r["image_id"] for r in _rows(out)] == train and len(val) == 3


def test_validation_split_from_a_data_set_or_ids():
    dataset = IsicDataset()
    dataset.load_isic(str(DATASET), classes="lesion")
    dataset.prepare()
    from_dataset = inference.validation_split(dataset)
    from_ids = inference.validation_split(list(reversed(ALL_IDS)), list(reversed(DIAGNOSES)))
    assert from_dataset == from_ids == split_ids(ALL_IDS, 0.2, seed=2017, labels=DIAGNOSES)
    train, val = from_dataset
    assert sorted(train + val) == ALL_IDS and len(val) == 1
    # Stratified: every diagnosis keeps its share with a larger validation fraction.
    _, val = inference.validation_split(ALL_IDS, DIAGNOSES, seed=5, val_fraction=0.5)
    assert sorted(DIAGNOSES[ALL_IDS.index(i)] for i in val) == ["melanoma", "nevus", "seborrheic_keratosis"]
    # Images without a diagnosis are a group of their own (as lesion/train.py splits each folder); with no
    # diagnosis at all the split is not stratified.
    partial = [None] + DIAGNOSES[1:]
    assert inference.validation_split(ALL_IDS, partial, seed=5, val_fraction=0.5) == split_ids(
        ALL_IDS, 0.5, seed=5, labels=partial)
    assert inference.validation_split(ALL_IDS, [None] * 6, seed=5, val_fraction=0.5) == split_ids(ALL_IDS, 0.5, seed=5)


def test_run_split_file_is_used_for_its_checkpoint(tiny_diagnosis_weights, tmp_path, capsys):
    run = tmp_path / "logs" / "lesion_light20250101T0900"
    run.mkdir(parents=True)
    weights = run / "mask_rcnn_lesion_light_0001.h5"
    shutil.copy(tiny_diagnosis_weights, weights)
    (run / "val_ids.txt").write_text("ISIC_0012224\nISIC_0000001\n")
    out = tmp_path / "out"
    assert evaluate.main(["--dataset", str(DATASET), "--out", str(out), "--weights", str(weights), "--quiet",
                          *TINY_ARGS]) == 0
    assert [r["image_id"] for r in _rows(out)] == ["ISIC_0000001", "ISIC_0012224"]
    assert "val_ids.txt" in json.loads((out / "metrics.json").read_text())["split"]


def test_unreadable_image_is_reported_and_the_rest_scored(tmp_path, capsys):
    dataset = tmp_path / "isic2017"
    shutil.copytree(DATASET, dataset)
    image = dataset / "ISIC-2017_Training_Data" / "ISIC_0012090.jpg"
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 3])  # The header is intact (the data set loads), the pixels are cut.
    out = tmp_path / "out"
    assert evaluate.main(["--dataset", str(dataset), "--out", str(out), "--baseline-only", "--subset", "all",
                          "--quiet"]) == 1
    assert "ISIC_0012090" in capsys.readouterr().err
    rows = {r["image_id"]: r for r in _rows(out)}
    assert len(rows) == 6 and rows["ISIC_0012090"]["status"].startswith("error: ")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["failed"] == ["ISIC_0012090"] and metrics["baseline_otsu"]["segmentation"]["n_images"] == 5

    # A file whose header is not an image stops the data set from loading: a usage error naming the file.
    image.write_text("not a JPEG")
    assert evaluate.main(["--dataset", str(dataset), "--out", str(tmp_path / "out2"), "--baseline-only",
                          "--quiet"]) == 2
    assert "ISIC_0012090.jpg" in capsys.readouterr().err


def test_run_where_no_image_can_be_evaluated_writes_nothing(tmp_path, capsys):
    dataset = tmp_path / "isic2017"
    shutil.copytree(DATASET, dataset)
    out = tmp_path / "out"
    argv = ["--dataset", str(dataset), "--out", str(out), "--baseline-only", "--subset", "all", "--quiet"]
    assert evaluate.main(argv) == 0
    earlier = {p.name: p.read_bytes() for p in out.iterdir()}
    for mask in (dataset / "ISIC-2017_Training_Part1_GroundTruth").iterdir():
        mask.write_bytes(b"not a PNG")  # The data set loads (masks are opened per image), no image can be scored.
    capsys.readouterr()
    assert evaluate.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("error: ") == 7 and "error: none of the 6 images of" in err  # One per image, then the run.
    assert {p.name: p.read_bytes() for p in out.iterdir()} == earlier  # The earlier run's files, untouched.
    fresh = tmp_path / "fresh"
    assert evaluate.main(argv[:3] + [str(fresh)] + argv[4:]) == 1
    assert list(fresh.iterdir()) == []


@pytest.mark.parametrize("case", ["a file", "under a file", "not writable"])
def test_bad_out_is_reported_before_anything_is_loaded(tmp_path, monkeypatch, capsys, bad_output_folder, case):
    out, problem = bad_output_folder(case)

    def no_loading(*args, **kwargs):
        raise AssertionError("loaded the model or data before checking --out")

    monkeypatch.setattr(inference, "model_from_args", no_loading)
    monkeypatch.setattr(evaluate, "load_dataset", no_loading)
    assert evaluate.main(["--dataset", str(DATASET), "--out", str(out), "--quiet"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == f"error: {out}: {problem}"
    assert (tmp_path / "a_file").read_text() == "not a folder"


def test_label_csv_that_is_not_utf8_is_named(tmp_path, capsys):
    dataset = tmp_path / "isic2017"
    shutil.copytree(DATASET, dataset)
    csv_path = dataset / "ISIC-2017_Training_Part3_GroundTruth.csv"
    csv_path.write_bytes(csv_path.read_bytes() + b"ISIC_0000009,0.0,0.0 \xe9\n")
    assert evaluate.main(["--dataset", str(dataset), "--out", str(tmp_path / "out"), "--baseline-only",
                          "--quiet"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {csv_path}, line 8: not UTF-8 text")


def test_run_split_file_that_is_not_utf8_is_named(tiny_diagnosis_weights, tmp_path, capsys):
    run = tmp_path / "logs" / "lesion_light20250101T0900"
    run.mkdir(parents=True)
    weights = run / "mask_rcnn_lesion_light_0001.h5"
    shutil.copy(tiny_diagnosis_weights, weights)
    (run / "val_ids.txt").write_bytes(b"ISIC_0012224\n\xff\xfe\n")
    assert evaluate.main(["--dataset", str(DATASET), "--out", str(tmp_path / "out"), "--weights", str(weights),
                          "--quiet", *TINY_ARGS]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {run / 'val_ids.txt'}: not UTF-8 text")


def test_usage_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(inference, "DEFAULT_WEIGHTS", tmp_path / "missing.h5")
    assert evaluate.main(["--dataset", str(DATASET), "--out", str(tmp_path / "a")]) == 2
    assert "missing.h5" in capsys.readouterr().err
    assert evaluate.main(["--dataset", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b"),
                          "--baseline-only"]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_format_table_aligns_methods():
    table = evaluate.format_table({"Mask R-CNN": {"jaccard": 0.8, "dice": 0.9, "n_images": 2},
                                   "Otsu baseline": {"jaccard": float("nan"), "n_images": 2}})
    lines = table.splitlines()
    assert lines[0].startswith("method") and len({len(line) for line in lines}) == 1
    assert "0.8000" in lines[2] and "-" in lines[3]
