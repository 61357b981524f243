"""lesion/detect.py and the post-processing of lesion/inference.py: a tiny random model, awkward input files,
COCO output, crops, atomic outputs, and hand-checked mask / probability rules on fabricated detections."""

from __future__ import annotations

import csv
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lesion import detect, inference
from mrcnn import atomic
from tests.cli import assert_plain_output, run_cli
from tests.tiny_lesion_model import TINY_ARGS, save_tiny_model

# pycocotools' decode on NumPy 2 warns about its own __array__; not this project's code.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

ROOT = Path(__file__).resolve().parents[1]
ISIC_IMAGES = ROOT / "tests" / "data" / "isic2017" / "ISIC-2017_Training_Data"


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> str:
    """Random weights of a light lesion model, saved in matterport's layout."""
    return save_tiny_model(tmp_path_factory.mktemp("weights"), "lesion")


@pytest.fixture()
def image_folder(tmp_path) -> Path:
    """A real ISIC image, greyscale / RGBA / 16-bit PNGs, and three files that are not readable images."""
    folder = tmp_path / "images"
    folder.mkdir()
    real = ISIC_IMAGES / "ISIC_0000002.jpg"
    shutil.copy(real, folder / "real.jpg")
    rgb = np.asarray(Image.open(real).convert("RGB"))
    Image.fromarray(rgb[:100, :150].mean(axis=2).astype(np.uint8), mode="L").save(folder / "grey.png")
    rgba = np.dstack([rgb[:90, :120], np.full((90, 120), 200, np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(folder / "rgba.png")
    sixteen = (rgb[:70, :110, 0].astype(np.uint16) * 257)
    Image.fromarray(sixteen).save(folder / "sixteen.png")  # PIL writes a 16-bit greyscale PNG ("I;16").
    data = real.read_bytes()
    (folder / "corrupt.jpg").write_bytes(data[: len(data) // 3])  # A JPEG cut short.
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is a text file, not a JPEG\n")
    return folder


READABLE = {"real": (256, 192), "grey": (150, 100), "rgba": (120, 90), "sixteen": (110, 70)}  # (width, height)
UNREADABLE = ("corrupt", "empty", "notes")


def _run(args: list[str]) -> int:
    return detect.main(args)


def _summary(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "summary.csv", newline="") as f:
        return {Path(row["file"]).stem: row for row in csv.DictReader(f)}


def test_folder_with_unreadable_files(tiny_weights, image_folder, tmp_path, capsys):
    assert Image.open(image_folder / "sixteen.png").mode.startswith("I")
    out = tmp_path / "out"
    status = _run(["--images", str(image_folder), "--out", str(out), "--weights", tiny_weights,
                   "--min-confidence", "0", "--batch-size", "2", "--crops", "--quiet", *TINY_ARGS])
    assert status == 1
    err = capsys.readouterr().err
    for name in UNREADABLE:
        assert f"{name}.jpg" in err

    rows = _summary(out)
    assert set(rows) == set(READABLE) | set(UNREADABLE)
    for name in UNREADABLE:
        assert rows[name]["status"].startswith("error: ")
        assert not (out / f"{name}_segmentation.png").exists()
    assert "empty" in rows["empty"]["status"]

    for name, size in READABLE.items():
        row = rows[name]
        assert row["status"] == "ok"
        assert (int(row["width"]), int(row["height"])) == size
        with Image.open(out / f"{name}_segmentation.png") as seg:
            assert seg.mode == "L" and seg.size == size
            values = np.asarray(seg)
        assert set(np.unique(values)) <= {0, 255}
        assert int(row["lesion_area_px"]) == int(np.count_nonzero(values))
        with Image.open(out / f"{name}_overlay.jpg") as overlay:
            assert overlay.size == size
        lesions = int(row["lesions"])
        assert lesions > 0, "min confidence 0 should give the random model detections"
        assert row["top_class"] == "lesion" and 0.0 <= float(row["top_score"]) <= 1.0
        assert float(row["p_lesion"]) == pytest.approx(1.0)  # One foreground class, renormalised.
        crops = sorted(out.glob(f"{name}_lesion*.png"))
        assert 0 < len(crops) <= lesions
        with Image.open(crops[0]) as crop:
            assert crop.mode == "RGBA" and crop.size[0] <= size[0] and crop.size[1] <= size[1]


def test_pad64_batches_images_of_different_molded_sizes(tiny_weights, image_folder, tmp_path):
    # pad64 keeps each image's shape (padded to multiples of 64): 256x192, 192x128, 128x128, 128x128 in one batch.
    out = tmp_path / "out"
    status = _run(["--images", str(image_folder), "--out", str(out), "--weights", tiny_weights,
                   "--min-confidence", "0", "--batch-size", "4", "--quiet", *TINY_ARGS,
                   "--set", "IMAGE_RESIZE_MODE=pad64", "IMAGE_MIN_DIM=64"])
    assert status == 1  # the unreadable files
    rows = _summary(out)
    for name, size in READABLE.items():
        assert rows[name]["status"] == "ok" and int(rows[name]["lesions"]) > 0
        with Image.open(out / f"{name}_segmentation.png") as seg:
            assert seg.size == size


def test_detections_json_loads_with_pycocotools(tiny_weights, image_folder, tmp_path):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out = tmp_path / "out"
    _run(["--images", str(image_folder), "--out", str(out), "--weights", tiny_weights, "--min-confidence", "0",
          "--quiet", *TINY_ARGS])
    coco = COCO(str(out / "detections.json"))
    images = {img["file_name"]: img for img in coco.dataset["images"]}
    assert set(images) == {f"{n}.jpg" if n == "real" else f"{n}.png" for n in READABLE}
    for img in images.values():
        assert (img["width"], img["height"]) == READABLE[Path(img["file_name"]).stem]
    assert [c["name"] for c in coco.dataset["categories"]] == ["lesion"]
    anns = coco.dataset["annotations"]
    assert anns and len({a["id"] for a in anns}) == len(anns)
    for ann in anns:
        assert len(ann["bbox"]) == 4 and ann["category_id"] == 1 and 0.0 <= ann["score"] <= 1.0
        assert isinstance(ann["segmentation"]["counts"], str)
        img = coco.imgs[ann["image_id"]]
        assert mask_utils.decode(ann["segmentation"]).shape == (img["height"], img["width"])
    # The annotations are also valid results for the same file as ground truth.
    results = coco.loadRes(json.loads((out / "detections.json").read_text())["annotations"])
    evaluator = COCOeval(coco, results, iouType="segm")
    evaluator.evaluate()
    evaluator.accumulate()


def test_earlier_outputs_survive_failures(tiny_weights, image_folder, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    earlier = {"corrupt_segmentation.png": b"earlier segmentation", "summary.csv": b"earlier summary",
               "detections.json": b"earlier detections"}
    for name, data in earlier.items():
        (out / name).write_bytes(data)

    # A run that stops half-way (an error after five images) leaves the run files of the earlier run.
    real_iter = inference.iter_detections

    def failing_iter(*args, **kwargs):
        for k, item in enumerate(real_iter(*args, **kwargs)):
            if k == 5:
                raise RuntimeError("the accelerator went away")
            yield item

    monkeypatch.setattr(inference, "iter_detections", failing_iter)
    with pytest.raises(RuntimeError):
        _run(["--images", str(image_folder), "--out", str(out), "--weights", tiny_weights, "--quiet", *TINY_ARGS])
    for name, data in earlier.items():
        assert (out / name).read_bytes() == data
    assert (out / "grey_segmentation.png").is_file()  # Written before the failure, and kept.
    assert not list(out.glob(".tmp-*"))
    monkeypatch.setattr(inference, "iter_detections", real_iter)

    # A complete run replaces the run files; the unreadable input does not touch its earlier output.
    assert _run(["--images", str(image_folder), "--out", str(out), "--weights", tiny_weights, "--quiet",
                 *TINY_ARGS]) == 1
    assert (out / "corrupt_segmentation.png").read_bytes() == earlier["corrupt_segmentation.png"]
    assert (out / "summary.csv").read_bytes() != earlier["summary.csv"]


def test_a_full_disk_stops_the_run_and_keeps_the_earlier_run_files(tiny_weights, image_folder, tmp_path,
                                                                    monkeypatch, capsys):
    import errno

    out = tmp_path / "out"
    out.mkdir()
    earlier = {"summary.csv": b"earlier summary", "detections.json": b"earlier detections"}
    for name, data in earlier.items():
        (out / name).write_bytes(data)
    real_write, calls = inference.write_image_atomic, []

    def write_until_full(path, image, *args, **kwargs):
        calls.append(Path(path).name)
        if len(calls) > 2:  # the first image's segmentation and overlay fit, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(path, image, *args, **kwargs)

    monkeypatch.setattr(inference, "write_image_atomic", write_until_full)
    assert _run(["--images", str(image_folder), "--out", str(out), "--weights", tiny_weights, "--quiet",
                 *TINY_ARGS]) == 1
    err = capsys.readouterr().err
    assert f"error: {out}: cannot write the results of " in err and "No space left on device" in err
    assert "stopped after 1 of 7 images" in err
    assert len(calls) == 3  # stopped at the first failure, not one error per image
    for name, data in earlier.items():
        assert (out / name).read_bytes() == data
    assert len(list(out.glob("*_segmentation.png"))) == 1


def test_an_output_folder_that_is_a_file_is_a_usage_error(tiny_weights, image_folder, tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    for out in (blocker, blocker / "out"):
        assert _run(["--images", str(image_folder), "--out", str(out), "--weights", tiny_weights, "--quiet",
                     *TINY_ARGS]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {out}: ") and "is a file, not a folder" in err and "Traceback" not in err
    assert blocker.read_text() == "not a folder"


def test_atomic_write_keeps_the_old_file_when_the_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / "a_segmentation.png"
    target.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        inference.write_image_atomic(target, np.zeros((4, 5), np.uint8))
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a_segmentation.png"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_atomic_outputs_get_the_permissions_of_a_plain_write(tmp_path):
    # The temporary file is created 0o600; the result must be what open(path, "w") gives: 0o666 less the umask
    # for a new file, the old file's bits when it replaces one.
    old = os.umask(0o027)
    try:
        new_png = tmp_path / "a_segmentation.png"
        inference.write_image_atomic(new_png, np.zeros((4, 5), np.uint8))
        new_csv = Path(atomic.write_bytes_atomic(tmp_path / "summary.csv", b"a,b\n"))
        plain = tmp_path / "plain.txt"
        plain.write_bytes(b"x")
        assert stat.S_IMODE(new_png.stat().st_mode) == 0o640
        assert stat.S_IMODE(new_csv.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o640
        new_csv.chmod(0o604)
        atomic.write_bytes_atomic(new_csv, b"c,d\n")
        assert stat.S_IMODE(new_csv.stat().st_mode) == 0o604 and new_csv.read_bytes() == b"c,d\n"
    finally:
        os.umask(old)


def test_missing_default_weights_says_how_to_get_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(inference, "DEFAULT_WEIGHTS", tmp_path / "weights" / "mask_rcnn_lesion_light.h5")
    status = _run(["--images", str(ISIC_IMAGES), "--out", str(tmp_path / "out")])
    assert status == 2
    err = capsys.readouterr().err
    assert "mask_rcnn_lesion_light.h5" in err and "lesion/train.py" in err and "--weights" in err
    assert not (tmp_path / "out").exists()


def test_weights_last_and_class_check(tiny_weights, tmp_path, capsys):
    logs = tmp_path / "logs"
    for run in ("lesion_light20250101T0900", "lesion_light20250102T0900"):
        (logs / run).mkdir(parents=True)
    shutil.copy(tiny_weights, logs / "lesion_light20250102T0900" / "mask_rcnn_lesion_light_0003.h5")
    out = tmp_path / "out"
    status = _run(["--images", str(ISIC_IMAGES / "ISIC_0000001.jpg"), "--out", str(out), "--weights", "last",
                   "--logs", str(logs), "--quiet", *TINY_ARGS])
    assert status == 0
    assert (out / "ISIC_0000001_segmentation.png").is_file()
    assert "mask_rcnn_lesion_light_0003.h5" in capsys.readouterr().err
    # The full config's runs are "lesion<date>": a "lesion_light<date>" run is not one of them.
    with pytest.raises(inference.UsageError, match="no checkpoint of 'lesion'"):
        inference.resolve_weights("last", "full", logs)
    (logs / "lesion20250101T0800").mkdir()
    (logs / "lesion20250101T0800" / "mask_rcnn_lesion_0002.h5").write_bytes(b"")
    assert inference.resolve_weights("last", "full", logs).endswith("lesion20250101T0800/mask_rcnn_lesion_0002.h5")

    status = _run(["--images", str(ISIC_IMAGES), "--out", str(out), "--weights", tiny_weights,
                   "--classes", "diagnosis", *TINY_ARGS])
    assert status == 2
    assert "--classes lesion" in capsys.readouterr().err


def test_script_runs_from_the_command_line():
    for command in (["lesion/detect.py", "--help"], ["-m", "lesion.detect", "--help"]):
        done = run_cli(command, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "--images" in done.stdout and "--crops" in done.stdout


@pytest.mark.parametrize("flag", [None, "--quiet"])
def test_cli_output_to_a_file_is_plain_lines(tmp_path, flag):
    """Run as a user would, stdout and stderr redirected: no TensorFlow start-up log, no progress-bar frames."""
    images = sorted(str(p) for p in ISIC_IMAGES.iterdir())[:2]
    done = run_cli(["lesion/detect.py", "--images", *images, "--out", str(tmp_path), *([flag] if flag else [])])
    assert done.returncode == 0, done.stderr
    assert_plain_output(done)
    assert "2 of 2 images processed" in done.stdout
    progress = [line for line in done.stderr.splitlines() if line.startswith("detect: ")]
    if flag == "--quiet":
        assert progress == []
    else:
        assert progress and progress[-1].startswith("detect: 2/2 images (")
    assert (tmp_path / "summary.csv").is_file()


def test_bundled_model_in_bfloat16_agrees_with_float32():
    float32, _ = inference.load_model()
    bfloat16, _ = inference.load_model(overrides={"MIXED_PRECISION": "bfloat16"})
    assert bfloat16.keras_model.backbone.compute_dtype == "bfloat16"
    for name in ("ISIC_0000001.jpg", "ISIC_0000002.jpg"):
        image = np.asarray(Image.open(ISIC_IMAGES / name).convert("RGB"))
        want, got = float32.detect([image])[0], bfloat16.detect([image])[0]
        assert len(want["scores"]) and len(got["scores"])
        assert got["scores"].dtype == np.float32 and got["masks"].shape == want["masks"].shape
        # bfloat16 keeps 8 bits of mantissa: the same lesion, the same mask to within its border pixels.
        a, b = want["masks"][..., 0], got["masks"][..., 0]
        assert (a & b).sum() / (a | b).sum() > 0.95, name
        assert abs(float(got["scores"][0]) - float(want["scores"][0])) < 0.05, name


def test_collect_inputs_and_output_stems(tmp_path):
    (tmp_path / "b.JPG").write_bytes(b"x")
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "a_segmentation.png").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    # The output folder's own files are skipped when it is also an input folder.
    assert [p.name for p in detect.collect_inputs([str(tmp_path)], out_dir=tmp_path)] == ["a.png", "b.JPG"]
    assert len(detect.collect_inputs([str(tmp_path)], out_dir=tmp_path / "elsewhere")) == 3
    assert detect.collect_inputs(["missing.jpg"]) == [Path("missing.jpg")]
    paths = [Path("x/a.jpg"), Path("y/a.png"), Path("z/a.png"), Path("z/b.jpg")]
    assert detect.output_stems(paths) == ["a", "a_png", "a_png_2", "b"]


# ------------------------------------------------------------------------------------------------------------
# Post-processing on fabricated detections (no model).


def _fabricated() -> dict[str, np.ndarray]:
    """Two detections on a 6 x 8 image, listed lowest score first."""
    masks = np.zeros((6, 8, 2), bool)
    masks[1:3, 1:4, 0] = True  # 6 pixels, score 0.6
    masks[3:6, 4:8, 1] = True  # 12 pixels, score 0.9
    return {
        "rois": np.array([[1, 1, 3, 4], [3, 4, 6, 8]], np.int32),
        "class_ids": np.array([2, 3], np.int32),
        "scores": np.array([0.6, 0.9], np.float32),
        "masks": masks,
        "class_probs": np.array([[0.1, 0.2, 0.6, 0.1], [0.1, 0.45, 0.0, 0.45]], np.float32),
    }


def test_mask_rule_box_and_probabilities():
    result = _fabricated()
    assert inference.top_index(result) == 1
    top = inference.lesion_mask(result, "top")
    assert top.shape == (6, 8) and top.sum() == 12 and top[3:6, 4:8].all()
    assert inference.lesion_mask(result, "union").sum() == 18
    assert inference.lesion_box(result, "top").tolist() == [3, 4, 6, 8]
    assert inference.lesion_box(result, "union").tolist() == [1, 1, 6, 8]
    # Background 0.1 dropped, then 0.45 / 0.9 and 0 / 0.9.
    np.testing.assert_allclose(inference.diagnosis_probabilities(result, 3), [0.5, 0.0, 0.5])

    empty = {"rois": np.zeros((0, 4), np.int32), "class_ids": np.zeros(0, np.int32),
             "scores": np.zeros(0, np.float32), "masks": np.zeros((6, 8, 0), bool),
             "class_probs": np.zeros((0, 4), np.float32)}
    assert inference.lesion_mask(empty).shape == (6, 8) and not inference.lesion_mask(empty).any()
    assert inference.lesion_box(empty) is None
    np.testing.assert_allclose(inference.diagnosis_probabilities(empty, 3), [1 / 3] * 3)
    with pytest.raises(ValueError):
        inference.lesion_mask(result, "largest")


def test_coco_annotations_and_crops():
    from pycocotools import mask as mask_utils

    result = _fabricated()
    anns = inference.coco_annotations(result, image_id=7, first_id=11)
    assert [a["id"] for a in anns] == [11, 12]
    assert anns[0]["bbox"] == [1.0, 1.0, 3.0, 2.0]  # x, y, w, h of (y1, x1, y2, x2) = (1, 1, 3, 4).
    assert anns[0]["area"] == 6 and anns[1]["area"] == 12 and anns[1]["category_id"] == 3
    np.testing.assert_array_equal(mask_utils.decode(anns[1]["segmentation"]), result["masks"][:, :, 1])
    json.dumps(anns)  # JSON-ready.

    image = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    crops = detect.lesion_crops(image, result)
    assert [c.shape for c in crops] == [(2, 3, 4), (3, 4, 4)]
    np.testing.assert_array_equal(crops[0][..., :3], image[1:3, 1:4])
    assert (crops[0][..., 3] == 255).all()


def test_crop_outside_the_mask_is_transparent_and_black():
    result = _fabricated()
    result["masks"][1, 1, 0] = False
    crop = detect.lesion_crops(np.full((6, 8, 3), 200, np.uint8), result)[0]
    assert crop[0, 0].tolist() == [0, 0, 0, 0] and crop[1, 2].tolist() == [200, 200, 200, 255]


def test_bundled_model_gives_one_lesion_with_one_diagnosis(tmp_path):
    # The bundled pair: the lesion segmenter and the classifier of the masked lesion (weights/lesion_classifier.skops).
    from lesion.classifier import CLASSIFIER_PATH

    assert os.path.isfile(CLASSIFIER_PATH)
    images = tmp_path / "in"
    images.mkdir()
    for name in ("ISIC_0000001.jpg", "ISIC_0012090.jpg"):
        shutil.copy(ISIC_IMAGES / name, images / name)
    out = tmp_path / "out"
    assert _run(["--images", str(images), "--out", str(out), "--quiet"]) == 0
    rows = _summary(out)
    names = ("melanoma", "seborrheic_keratosis", "nevus")
    for row in rows.values():
        assert row["lesions"] == "1" and row["top_class"] in names
        probs = [float(row[f"p_{n}"]) for n in names]
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert row["top_class"] == names[int(np.argmax(probs))]
    with open(out / "detections.json") as f:
        annotations = json.load(f)["annotations"]
    assert len(annotations) == 2 and {a["image_id"] for a in annotations} == {1, 2}
