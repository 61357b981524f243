"""lesion/train.py: the schedule, the split, a tiny training run that resumes, a COCO input, and the errors.

The training runs use the six ISIC 2017 fixture images at 128 px with the light backbone and few ROIs, two steps
per epoch: each takes a few seconds on a CPU.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from lesion.train import (COCO_WEIGHTS, LAYER_CHOICES, Stage, UsageError, default_schedule, main, make_split,
                          parse_schedule)
from mrcnn.model import LAYER_PRESETS
from tests.cli import assert_plain_output, run_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ISIC = os.path.join(REPO, "tests", "data", "isic2017")
IMAGES = os.path.join(ISIC, "ISIC-2017_Training_Data")
MASKS = os.path.join(ISIC, "ISIC-2017_Training_Part1_GroundTruth")
COCO_URL = "https://github.com/matterport/Mask_RCNN/releases/download/v2.0/mask_rcnn_coco.h5"

# Small and fast: 128 px, one image a step, two steps, few ROIs and proposals, one loader thread.
TINY = ["--config", "light", "--image-size", "128", "--batch-size", "1", "--steps-per-epoch", "2",
        "--val-steps", "1", "--workers", "1", "--set", "TRAIN_ROIS_PER_IMAGE=16",
        "--set", "POST_NMS_ROIS_TRAINING=64", "--set", "PRE_NMS_LIMIT=500"]


# ------------------------------------------------------------------------------------------------------------
# Schedule and split.


def test_parse_schedule():
    assert parse_schedule("heads:10,all:30,all:40@0.1") == [
        Stage("heads", 10), Stage("all", 30), Stage("all", 40, 0.1)]
    assert parse_schedule("4+:5") == [Stage("4+", 5)]
    assert str(Stage("all", 40, 0.1)) == "all:40@0.1"
    assert set(LAYER_CHOICES) <= set(LAYER_PRESETS)


@pytest.mark.parametrize("text", ["heads", "heads:0", "body:3", "heads:5,all:5", "all:3@0", "all:3@x", "all:2,"])
def test_parse_schedule_refuses(text):
    with pytest.raises(UsageError, match="--schedule"):
        parse_schedule(text)


def test_default_schedule():
    # Pretrained: heads for a quarter, all layers, the last quarter at lr / 10.
    assert default_schedule(40, True) == [Stage("heads", 10), Stage("all", 30), Stage("all", 40, 0.1)]
    assert default_schedule(10, True) == [Stage("heads", 3), Stage("all", 7), Stage("all", 10, 0.1)]
    assert default_schedule(3, True) == [Stage("heads", 1), Stage("all", 2), Stage("all", 3, 0.1)]
    assert default_schedule(2, True) == [Stage("heads", 1), Stage("all", 2, 0.1)]
    assert default_schedule(1, True) == [Stage("heads", 1)]
    # From scratch: all layers, the last quarter at lr / 10.
    assert default_schedule(40, False) == [Stage("all", 30), Stage("all", 40, 0.1)]
    assert default_schedule(2, False) == [Stage("all", 1), Stage("all", 2, 0.1)]
    assert default_schedule(1, False) == [Stage("all", 1)]


def test_make_split_is_fixed_by_the_seed_and_stratified():
    ids = [f"ISIC_{i:07d}" for i in range(20)]
    labels = {i: ("melanoma" if n < 4 else "nevus") for n, i in enumerate(ids)}
    train, val = make_split(list(reversed(ids)), labels=labels, val_fraction=0.25, seed=3)
    assert (train, val) == make_split(ids, labels=labels, val_fraction=0.25, seed=3)
    assert sorted(train + val) == ids and not set(train) & set(val)
    assert len(val) == 5
    assert sum(labels[i] == "melanoma" for i in val) == 1  # 4 of 20 melanomas: one in a validation set of 5.
    assert make_split(ids, labels=labels, val_fraction=0.25, seed=4)[1] != val


# ------------------------------------------------------------------------------------------------------------
# Training runs.


def _run_dirs(logs):
    return sorted(d for d in os.listdir(logs) if d.startswith("lesion_light"))


def test_train_then_resume_with_weights_last(tmp_path, capsys):
    logs = str(tmp_path / "logs")
    assert main(["--dataset", ISIC, *TINY, "--epochs", "1", "--weights", "none", "--logs", logs]) == 0
    out = capsys.readouterr().out
    assert "train: 5  validation: 1" in out
    [run] = _run_dirs(logs)
    run_dir = os.path.join(logs, run)
    first = os.path.join(run_dir, "mask_rcnn_lesion_light_0001.h5")
    assert os.path.isfile(first)
    with open(os.path.join(run_dir, "val_ids.txt")) as f:
        val_ids = f.read().split()
    assert len(val_ids) == 1 and val_ids[0] + ".jpg" in os.listdir(IMAGES)
    assert os.path.isdir(os.path.join(run_dir, "train"))  # TensorBoard.
    first_stat = os.stat(first)

    assert main(["--dataset", ISIC, *TINY, "--epochs", "2", "--weights", "last", "--logs", logs]) == 0
    out = capsys.readouterr().out
    assert "starting after epoch 1" in out
    assert _run_dirs(logs) == [run]  # The same run folder, continued.
    assert os.path.isfile(os.path.join(run_dir, "mask_rcnn_lesion_light_0002.h5"))
    after = os.stat(first)
    assert (after.st_mtime_ns, after.st_ino) == (first_stat.st_mtime_ns, first_stat.st_ino)  # 0001 not rewritten.
    with open(os.path.join(run_dir, "val_ids.txt")) as f:
        assert f.read().split() == val_ids
    with open(os.path.join(run_dir, "run.json")) as f:
        record = json.load(f)
    assert record["pretrained"] is False
    assert [c["start_epoch"] for c in record["commands"]] == [0, 1]
    assert record["commands"][1]["schedule"] == "all:1,all:2@0.1"

    # Nothing left to train: a clean exit, no new checkpoint.
    assert main(["--dataset", ISIC, *TINY, "--epochs", "2", "--weights", "last", "--logs", logs]) == 0
    assert "nothing to train" in capsys.readouterr().out
    assert sorted(f for f in os.listdir(run_dir) if f.endswith(".h5")) == [
        "mask_rcnn_lesion_light_0001.h5", "mask_rcnn_lesion_light_0002.h5"]


def _tiny_coco(path):
    """A COCO file over the fixture images: one 'lesion' annotation per image, an RLE of its mask."""
    import cv2
    from pycocotools import mask as mask_utils

    images, annotations = [], []
    for n, name in enumerate(sorted(os.listdir(IMAGES)), start=1):
        mask = cv2.imread(os.path.join(MASKS, name[:-4] + "_segmentation.png"), cv2.IMREAD_GRAYSCALE) > 127
        height, width = mask.shape
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        x, y, w, h = mask_utils.toBbox(rle).tolist()
        images.append({"id": n, "file_name": name, "width": width, "height": height})
        annotations.append({"id": n, "image_id": n, "category_id": 1, "segmentation": rle, "iscrowd": 0,
                            "area": int(mask.sum()), "bbox": [x, y, w, h]})
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": annotations,
                   "categories": [{"id": 1, "name": "lesion", "supercategory": "skin"}]}, f)


def test_coco_json_input_trains(tmp_path, capsys):
    coco = str(tmp_path / "train.json")
    _tiny_coco(coco)
    logs = str(tmp_path / "logs")
    argv = ["--annotations", coco, "--images", IMAGES, *TINY, "--steps-per-epoch", "1", "--epochs", "1",
            "--weights", "none", "--logs", logs]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "train: 5  validation: 1" in out and "['lesion']" in out
    [run] = _run_dirs(logs)
    assert os.path.isfile(os.path.join(logs, run, "mask_rcnn_lesion_light_0001.h5"))
    with open(os.path.join(logs, run, "val_ids.txt")) as f:
        assert f.read().split()[0].endswith(".jpg")  # COCO images are split by file name.


def test_coco_weights_load_without_the_class_specific_heads(tmp_path, capsys):
    """--weights coco on a stand-in file: a model of the same shape with COCO's 81 classes (light backbone and
    small heads for speed). Loading fails on the class-specific heads unless they are excluded."""
    from lesion.config import make_config
    from mrcnn.model import MaskRCNN

    small = {"BACKBONE": "light", "TOP_DOWN_PYRAMID_SIZE": 64, "RPN_HEAD_DEPTH": 64,
             "FPN_CLASSIF_FC_LAYERS_SIZE": 128, "MASK_HEAD_DEPTH": 32}
    coco_like = MaskRCNN("training", make_config(light=False, NUM_CLASSES=81, IMAGE_MIN_DIM=128, IMAGE_MAX_DIM=128,
                                                 **small), model_dir=str(tmp_path))
    weights = str(tmp_path / "weights" / "mask_rcnn_coco.h5")
    os.makedirs(os.path.dirname(weights))
    coco_like.save_weights(weights)
    del coco_like

    logs = str(tmp_path / "logs")
    argv = ["--dataset", ISIC, "--config", "full", "--weights", "coco", "--coco-weights", weights,
            *TINY[2:], "--steps-per-epoch", "1", "--epochs", "1", "--logs", logs]
    argv += [a for k, v in small.items() for a in ("--set", f"{k}={v}")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Schedule: heads:1" in out  # Pretrained: the heads first.
    [run] = sorted(d for d in os.listdir(logs) if d.startswith("lesion2"))
    assert os.path.isfile(os.path.join(logs, run, "mask_rcnn_lesion_0001.h5"))
    with open(os.path.join(logs, run, "run.json")) as f:
        assert json.load(f)["pretrained"] is True


def test_split_is_the_one_evaluation_uses():
    """lesion.inference.validation_split (evaluation) gives the split lesion/train.py holds out."""
    from lesion import inference
    from lesion.datasets import IsicDataset

    for classes in ("lesion", "diagnosis"):
        dataset = IsicDataset()
        dataset.load_isic(ISIC, classes=classes)
        ids = [info["image_id"] for info in dataset.image_info]
        labels = {info["image_id"]: info["diagnosis"] for info in dataset.image_info}
        for seed in (2017, 5):
            assert make_split(ids, labels=labels, seed=seed) == inference.validation_split(dataset, seed=seed)


# ------------------------------------------------------------------------------------------------------------
# Errors: one line on stderr, exit status 2, before anything slow.


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    return err[0]


def test_missing_coco_weights(tmp_path, capsys):
    missing = str(tmp_path / "weights" / "mask_rcnn_coco.h5")
    argv = ["--dataset", ISIC, "--config", "full", "--weights", "coco", "--coco-weights", missing,
            "--logs", str(tmp_path)]
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "weights/mask_rcnn_coco.h5" in line and COCO_URL in line and "v2.0" in line
    assert not os.listdir(tmp_path)  # Nothing was started.


@pytest.mark.skipif(os.path.isfile(COCO_WEIGHTS), reason="weights/mask_rcnn_coco.h5 is present")
def test_missing_coco_weights_default_place(tmp_path, capsys):
    assert main(["--dataset", ISIC, "--logs", str(tmp_path)]) == 2  # --config full --weights coco by default.
    line = _error_line(capsys)
    assert COCO_WEIGHTS in line and COCO_URL in line


def test_light_backbone_has_no_pretrained_weights(tmp_path, capsys):
    assert main(["--dataset", ISIC, "--config", "light", "--weights", "coco", "--logs", str(tmp_path)]) == 2
    assert "--weights none" in _error_line(capsys)


@pytest.mark.parametrize("case", ["missing", "empty", "not_isic"])
def test_bad_dataset_folder(tmp_path, capsys, case):
    root = tmp_path / "data"
    if case != "missing":
        root.mkdir()
    if case == "not_isic":
        (root / "photo.jpg").write_bytes(b"")
    argv = ["--dataset", str(root), "--config", "light", "--weights", "none", "--logs", str(tmp_path / "logs")]
    assert main(argv) == 2
    line = _error_line(capsys)
    assert str(root) in line
    assert {"missing": "not found", "empty": "empty", "not_isic": "no ISIC image folder"}[case] in line


def test_missing_annotations_file(tmp_path, capsys):
    argv = ["--annotations", str(tmp_path / "nope.json"), "--images", IMAGES, "--config", "light",
            "--weights", "none", "--logs", str(tmp_path)]
    assert main(argv) == 2
    assert "annotations file not found" in _error_line(capsys)


@pytest.mark.parametrize("argv, message", [
    (["--weights", "last"], "no checkpoint"),
    (["--weights", "none", "--image-size", "100"], "multiple of 64"),
    (["--weights", "none", "--schedule", "all:2", "--epochs", "3"], "differs"),
    (["--weights", "none", "--set", "NOT_A_KEY=1"], "not a config attribute"),
    (["--weights", "none", "--val-fraction", "1"], "--val-fraction"),
    (["--weights", "none", "--epochs", "0"], "--epochs"),
])
def test_usage_errors(tmp_path, capsys, argv, message):
    assert main(["--dataset", ISIC, "--config", "light", "--logs", str(tmp_path), *argv]) == 2
    assert message in _error_line(capsys)
    assert not [d for d in os.listdir(tmp_path) if d.startswith("lesion")]  # No run folder.


@pytest.fixture(scope="module")
def trained_logs(tmp_path_factory):
    """A logs folder holding one run of the light config trained for one epoch on a copy of the fixture data."""
    import shutil

    root = tmp_path_factory.mktemp("trained")
    shutil.copytree(ISIC, root / "isic2017")
    logs = root / "logs"
    assert main(["--dataset", str(root / "isic2017"), *TINY, "--epochs", "1", "--weights", "none",
                 "--logs", str(logs)]) == 0
    return root


def _copy_run(trained_logs, tmp_path):
    """A copy of the trained data and logs: (data folder, logs folder, run folder)."""
    import shutil

    shutil.copytree(trained_logs, tmp_path, dirs_exist_ok=True)
    logs = tmp_path / "logs"
    [run] = _run_dirs(logs)
    return tmp_path / "isic2017", logs, logs / run


def test_data_error_during_training_is_one_line_and_keeps_the_checkpoints(trained_logs, tmp_path, capsys):
    data, logs, run = _copy_run(trained_logs, tmp_path)
    bad = data / "ISIC-2017_Training_Data" / "ISIC_0012090.jpg"
    raw = bad.read_bytes()
    # The header is intact (the data set loads, the check before training reads headers only), the pixels are cut.
    bad.write_bytes(raw[: len(raw) // 3])
    first = run / "mask_rcnn_lesion_light_0001.h5"
    before = first.read_bytes()
    capsys.readouterr()
    # Six steps of one image and one validation image: every image of the data set is read in epoch 2.
    argv = ["--dataset", str(data), *TINY, "--steps-per-epoch", "6", "--epochs", "2", "--weights", "last",
            "--logs", str(logs)]
    assert main(argv) == 2
    line = _error_line(capsys)
    assert line.startswith(f"error: {bad}: ")
    assert "not a readable image" in line
    assert f"checkpoints written so far are in {run}" in line
    assert first.read_bytes() == before and not (run / "mask_rcnn_lesion_light_0002.h5").exists()
    assert not (run / "train.lock").exists()  # Released on the error.


def _damaged_copy(tmp_path):
    """A copy of the fixture data with a mask of another size and an image that is not an image."""
    import shutil

    from PIL import Image

    data = tmp_path / "isic2017"
    shutil.copytree(ISIC, data)
    mask = data / "ISIC-2017_Training_Part1_GroundTruth" / "ISIC_0012090_segmentation.png"
    Image.new("L", (40, 30)).save(mask)
    image = data / "ISIC-2017_Training_Data" / "ISIC_0014657.jpg"
    image.write_bytes(b"this is not a JPEG")
    return data, mask, image


def test_bad_data_stops_the_run_before_the_first_step_listing_every_problem(tmp_path, capsys):
    data, mask, image = _damaged_copy(tmp_path)
    logs = tmp_path / "logs"
    argv = ["--dataset", str(data), *TINY, "--epochs", "1", "--weights", "none", "--logs", str(logs)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Data check: checked 6 images in" in captured.out
    err = captured.err.strip().splitlines()
    assert err[0] == ("error: 2 of 6 images cannot be used; nothing was trained (fix them, or leave them out with "
                      "--skip-bad):")
    assert err[1].startswith(f"  {mask}: the mask is 40x30 (width x height) but its image ")
    assert err[2].startswith(f"  {image}: not a readable image (") and len(err) == 3
    assert _run_dirs(logs) == []  # Stopped before the model was built.


def test_skip_bad_leaves_the_bad_images_out_and_trains(tmp_path, capsys):
    data, mask, image = _damaged_copy(tmp_path)
    logs = str(tmp_path / "logs")
    argv = ["--dataset", str(data), *TINY, "--epochs", "1", "--weights", "none", "--logs", logs, "--skip-bad"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"Left out 2 images (--skip-bad):\n  {mask}: the mask is 40x30" in out
    assert f"\n  {image}: not a readable image" in out
    assert "Images: 4  train: " in out
    [run] = _run_dirs(logs)
    assert os.path.isfile(os.path.join(logs, run, "mask_rcnn_lesion_light_0001.h5"))
    with open(os.path.join(logs, run, "val_ids.txt")) as f:
        val_ids = f.read().split()
    assert not {"ISIC_0012090", "ISIC_0014657"} & set(val_ids)
    with open(os.path.join(logs, run, "run.json")) as f:
        assert json.load(f)["commands"][-1]["skipped_images"] == ["ISIC_0012090", "ISIC_0014657"]


def test_coco_polygon_wholly_outside_its_image_stops_the_run(tmp_path, capsys):
    coco = tmp_path / "train.json"
    _tiny_coco(str(coco))
    data = json.loads(coco.read_text())
    data["annotations"][1].update(segmentation=[[-50, -40, -10, -40, -10, -5]], bbox=[-50, -40, 40, 35])
    coco.write_text(json.dumps(data))
    argv = ["--annotations", str(coco), "--images", IMAGES, *TINY, "--epochs", "1", "--weights", "none",
            "--logs", str(tmp_path / "logs")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: 1 of 6 images cannot be used")
    name = data["images"][1]["file_name"]
    assert err[1].startswith(f"  {coco}: image 2 ({name}): annotation id 2: polygon 0: the polygon lies wholly "
                             "outside the ")


def test_run_folder_in_use_is_refused_and_a_killed_run_is_cleared(trained_logs, tmp_path, capsys, caplog):
    import logging
    import socket
    import subprocess
    import sys

    data, logs, run = _copy_run(trained_logs, tmp_path)
    lock = run / "train.lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}))
    argv = ["--dataset", str(data), *TINY, "--epochs", "2", "--weights", "last", "--logs", str(logs)]
    capsys.readouterr()
    assert main(argv) == 2
    line = _error_line(capsys)
    assert line.startswith(f"error: {run}: the run folder is in use by another training run (PID {os.getpid()} ")
    assert lock.exists() and not (run / "mask_rcnn_lesion_light_0002.h5").exists()

    # The holder was killed (its PID has gone) in the middle of writing the next checkpoint.
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(json.dumps({"pid": int(done.stdout), "host": socket.gethostname(), "started": "then"}))
    leftover = run / ".mask_rcnn_lesion_light_0002.h5.k9x2_a7q.tmp"
    leftover.write_bytes(b"half a checkpoint")
    with caplog.at_level(logging.WARNING):
        assert main(argv) == 0
    assert f"taking over the lock left by a training run that no longer runs (PID {int(done.stdout)} " in caplog.text
    assert f"removed 1 temporary file(s) left by an interrupted write: {leftover.name}" in caplog.text
    assert not leftover.exists() and not lock.exists()
    assert (run / "mask_rcnn_lesion_light_0002.h5").is_file()


@pytest.mark.parametrize("name, content, message", [
    ("run.json", b'{"pretrained": false, "commands": [', "not a valid run record"),
    ("run.json", b"[1, 2]", "not a valid run record (a JSON list, not an object)"),
    ("val_ids.txt", b"ISIC_0000001\n\xff\xfe\n", "not UTF-8 text"),
])
def test_damaged_run_folder_is_named_when_resuming(trained_logs, tmp_path, capsys, name, content, message):
    data, logs, run = _copy_run(trained_logs, tmp_path)
    (run / name).write_bytes(content)
    capsys.readouterr()
    assert main(["--dataset", str(data), *TINY, "--epochs", "2", "--weights", "last", "--logs", str(logs)]) == 2
    line = _error_line(capsys)
    assert line.startswith(f"error: {run / name}: {message}")
    assert (run / name).read_bytes() == content  # Left for the user to repair.
    assert not (run / "mask_rcnn_lesion_light_0002.h5").exists()


@pytest.mark.parametrize("option, case", [("--logs", "a file"), ("--logs", "under a file"),
                                          ("--cache-dir", "under a file"), ("--logs", "not writable")])
def test_bad_output_folders_are_reported_before_the_data_is_read(tmp_path, monkeypatch, capsys, bad_output_folder,
                                                                  option, case):
    from lesion import train

    folder, problem = bad_output_folder(case)

    def no_loading(*args, **kwargs):
        raise AssertionError("read the data before checking the output folders")

    monkeypatch.setattr(train, "_load_data", no_loading)
    argv = ["--dataset", ISIC, "--config", "light", "--weights", "none", "--logs", str(tmp_path / "logs"),
            option, str(folder)]
    assert main(argv) == 2
    assert _error_line(capsys) == f"error: {folder}: {problem}"


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["annotations"][2].update(segmentation=[[100, 100, 200, 200]]),
     "annotation id 3: polygon 0 has 4 coordinates; a polygon needs at least 3 points"),
    (lambda d: d["annotations"][2].update(image_id=99), "annotation id 3: image_id 99 is not in 'images'"),
    (lambda d: d.clear(), "the JSON is nested too deeply to read"),
])
def test_bad_coco_annotations_name_the_file_and_annotation(tmp_path, capsys, edit, message):
    coco = tmp_path / "train.json"
    _tiny_coco(str(coco))
    data = json.loads(coco.read_text())
    edit(data)
    coco.write_text(json.dumps(data) if data else "[" * 100000)  # Cleared: nested too deeply to parse.
    argv = ["--annotations", str(coco), "--images", IMAGES, *TINY, "--steps-per-epoch", "1", "--epochs", "1",
            "--weights", "none", "--logs", str(tmp_path / "logs")]
    assert main(argv) == 2
    line = _error_line(capsys)
    assert line.startswith(f"error: {coco}: ") and message in line


def test_argparse_errors_return_2(capsys):
    assert main(["--layers", "heads", "--schedule", "all:1"]) == 2  # Mutually exclusive.
    assert "not allowed with" in capsys.readouterr().err


@pytest.mark.parametrize("command, where", [
    (["lesion/train.py"], "repo"),
    ([os.path.join(REPO, "lesion", "train.py")], "elsewhere"),
    (["-m", "lesion.train"], "repo"),
])
def test_runs_as_script_and_module(tmp_path, command, where):
    cwd = REPO if where == "repo" else str(tmp_path)
    help_ = run_cli([*command, "--help"], cwd=cwd)
    assert help_.returncode == 0 and "--weights" in help_.stdout
    # An error found after the lesion and mrcnn packages are imported: the import path works.
    missing = str(tmp_path / "missing")
    run = run_cli([*command, "--dataset", missing, "--config", "light", "--weights", "none"], cwd=cwd)
    assert run.returncode == 2
    assert f"error: dataset folder not found: {missing}" in run.stderr
    assert_plain_output(run)


def test_training_output_to_a_file_is_plain_lines(tmp_path):
    """A training run with stdout and stderr redirected: one line per epoch (no progress-bar frames, no ANSI
    codes), no TensorFlow start-up log, and each checkpoint's "Saved" message on a line of its own."""
    logs = str(tmp_path / "logs")
    done = run_cli(["lesion/train.py", "--dataset", ISIC, *TINY, "--weights", "none", "--epochs", "1", "--logs", logs,
                    "--no-augment"])
    assert done.returncode == 0, done.stderr
    assert_plain_output(done)
    epoch_lines = [line for line in done.stdout.splitlines() if line.startswith("2/2 - ")]
    assert len(epoch_lines) == 1 and "loss" in epoch_lines[0]
    saved = [line for line in (done.stdout + done.stderr).splitlines() if "Saved " in line]
    assert len(saved) == 1 and saved[0].startswith("Saved ") and saved[0].endswith("_0001.h5")


def test_several_dataset_folders_are_split_each_on_its_own(tmp_path, capsys):
    import shutil

    # A second ISIC folder: the fixture images under other ids, two of them without a diagnosis.
    extra = tmp_path / "extra"
    (extra / "ISIC-2017_Training_Data").mkdir(parents=True)
    (extra / "ISIC-2017_Training_Part1_GroundTruth").mkdir()
    rows = ["image_id,melanoma,seborrheic_keratosis"]
    for k, name in enumerate(sorted(os.listdir(IMAGES))):
        new = f"ISIC_90000{k:02d}"
        shutil.copy(os.path.join(IMAGES, name), extra / "ISIC-2017_Training_Data" / f"{new}.jpg")
        shutil.copy(os.path.join(MASKS, name[:-4] + "_segmentation.png"),
                    extra / "ISIC-2017_Training_Part1_GroundTruth" / f"{new}_segmentation.png")
        if k >= 2:
            rows.append(f"{new},{float(k % 3 == 0)},0.0")
    (extra / "ISIC-2017_Training_Part3_GroundTruth.csv").write_text("\n".join(rows) + "\n")

    logs = str(tmp_path / "logs")
    argv = ["--dataset", ISIC, str(extra), *TINY, "--epochs", "1", "--weights", "none", "--val-fraction", "0.34",
            "--logs", logs]
    assert main(argv) == 0
    assert "Images: 12  train: 8  validation: 4" in capsys.readouterr().out
    [run] = _run_dirs(logs)
    with open(os.path.join(logs, run, "val_ids.txt")) as f:
        val_ids = f.read().split()
    from lesion import inference
    from lesion.datasets import IsicDataset

    want = []
    for root in (ISIC, str(extra)):
        dataset = IsicDataset()
        dataset.load_isic(root)
        want += inference.validation_split(dataset, val_fraction=0.34)[1]  # what evaluate.py scores per folder
    assert val_ids == sorted(want)
    assert len([i for i in val_ids if i.startswith("ISIC_9")]) == 2  # 2 of the 6 in each folder
    with open(os.path.join(logs, run, "run.json")) as f:
        assert json.load(f)["data"] == [os.path.abspath(ISIC), os.path.abspath(extra)]
    # A folder given twice is refused.
    assert main(["--dataset", ISIC, ISIC, *TINY, "--weights", "none", "--logs", logs]) == 2
    assert "twice" in _error_line(capsys)
