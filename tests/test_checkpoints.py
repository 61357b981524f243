"""Tests of mrcnn.checkpoints: run folder and checkpoint names, continuing a run, finding the last checkpoint."""

import datetime
import logging
import os

import pytest

from mrcnn import checkpoints


def test_names():
    assert checkpoints.run_name("Lesion_Light") == "lesion_light"
    assert checkpoints.run_name(None) == checkpoints.run_name("") == "model"
    assert checkpoints.run_dir_name("coco", datetime.datetime(2017, 10, 29, 23, 15)) == "coco20171029T2315"
    assert checkpoints.checkpoint_name("skin_lesion", 12) == "mask_rcnn_skin_lesion_0012.h5"
    assert checkpoints.epoch_from_checkpoint_name(checkpoints.checkpoint_name("skin_lesion", 12)) == 12


def test_a_new_run_and_a_continued_one():
    start = datetime.datetime(2025, 1, 2, 3, 4)
    new = checkpoints.run_dir_for("logs", "tiny", now=start)
    assert new == checkpoints.RunDir(os.path.join("logs", "tiny20250102T0304"),
                                     os.path.join("logs", "tiny20250102T0304", "mask_rcnn_tiny_{epoch:04d}.h5"), 0)
    assert new.checkpoint_path.format(epoch=7).endswith("mask_rcnn_tiny_0007.h5")
    # A checkpoint continues its run: the folder of its start time (under model_dir) and its epoch.
    resumed = checkpoints.run_dir_for("logs", "tiny", "/elsewhere/tiny20171029T2315/mask_rcnn_tiny_0005.h5", now=start)
    assert resumed.log_dir == os.path.join("logs", "tiny20171029T2315") and resumed.epoch == 5
    # Any other file starts a new run.
    assert checkpoints.run_dir_for("logs", "tiny", "weights/mask_rcnn_coco.h5", now=start) == new


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_find_last_takes_the_highest_epoch_of_the_newest_run_of_exactly_this_name(tmp_path, caplog):
    for name in ("tiny20240101T0000/mask_rcnn_tiny_0009.h5", "tiny20240101T0000/mask_rcnn_tiny_0010.h5",
                 "tiny20240101T0000/mask_rcnn_tiny_0010.state.npz", "tiny20240101T0000/mask_rcnn_coco.h5",
                 "tiny_large20250101T0000/mask_rcnn_tiny_large_0001.h5", "tiny20230101T0000/mask_rcnn_tiny_0020.h5"):
        _touch(tmp_path / name)
    (tmp_path / "tiny20250101T0000").mkdir()  # Newer, but stopped before its first checkpoint.
    with caplog.at_level(logging.WARNING, logger="mrcnn.checkpoints"):
        assert checkpoints.find_last(tmp_path, "tiny") == str(tmp_path / "tiny20240101T0000" / "mask_rcnn_tiny_0010.h5")
    assert "tiny20250101T0000" in caplog.text
    assert checkpoints.find_last(tmp_path, "tiny_large").endswith("mask_rcnn_tiny_large_0001.h5")


def test_find_last_without_a_run_or_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="Could not find model directory"):
        checkpoints.find_last(tmp_path / "absent", "tiny")
    (tmp_path / "tiny20240101T0000").mkdir()
    _touch(tmp_path / "tiny20240101T0000" / "events.out.tfevents")
    with pytest.raises(FileNotFoundError, match="Could not find weight files"):
        checkpoints.find_last(tmp_path, "tiny")
