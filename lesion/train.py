"""Train Mask R-CNN on skin lesions: an ISIC download or any COCO file, with a held-out validation split.

Command line (from the repository root)::

    # GPU, fine-tuning matterport's COCO weights (weights/mask_rcnn_coco.h5), 1024 px, default schedule
    python lesion/train.py --dataset /data/isic2017 --weights coco --config full --epochs 40

    # CPU, the light backbone from scratch at 320 px
    python -m lesion.train --dataset /data/isic2017 --weights none --config light --epochs 20

    # a makesense.ai project converted with `python -m annotations.makesense ... --out train.json`
    python lesion/train.py --annotations train.json --images data/images --weights coco

    # carry on with the newest run of this config (same run folder, epoch counter continued)
    python lesion/train.py --dataset /data/isic2017 --weights last --epochs 60

    # several folders, each with its own validation split; a long CPU run in chunks (--until stops after an epoch)
    python lesion/train.py --dataset /data/isic2017 /data/isic-extra --config light --schedule all:10,all:13@0.1 \
        --until 8
    python lesion/train.py --dataset /data/isic2017 /data/isic-extra --config light --schedule all:10,all:13@0.1 \
        --weights last

Every run gets a folder ``<logs>/<config name><YYYYmmddTHHMM>/`` with a checkpoint per epoch
(``mask_rcnn_<name>_<epoch:04d>.h5``), TensorBoard logs, ``val_ids.txt`` (the held-out images, one id a line: ISIC
ids, or the image file names of a COCO file) and ``run.json`` (the command lines and schedule). The split depends
only on the image ids, ``--val-fraction`` and ``--seed`` (see :func:`lesion.datasets.validation_split`), folder by
folder when ``--dataset`` names several (stratified by diagnosis, the images without one a group of their own), so
adding a folder leaves the split of the others as it was; a resumed run keeps the split of its ``val_ids.txt``.

Resuming: each checkpoint has a ``.state.npz`` beside it (:mod:`mrcnn.train_state`: the optimizer's momentum and
iteration count, the sampling generator), restored when ``--weights last`` continues the same stage, and the image
order and the augmentation draws go on from the checkpoint's epoch; keep the same ``--schedule`` across the chunks
of a run. A run interrupted and resumed then ends with the weights of an uninterrupted one (bit for bit with
TensorFlow's deterministic ops, tests/test_resume.py; without them, to float rounding).

Schedule: ``--layers`` trains one stage (``heads``, ``3+``, ``4+``, ``5+``, ``all``) up to ``--epochs``.
Without it, :func:`default_schedule`: from pretrained weights, the heads for the first quarter of the epochs,
then all layers, the last quarter at a tenth of the learning rate; from scratch, all layers, the last quarter at
a tenth. ``--schedule heads:10,all:30,all:40@0.1`` gives the stages explicitly (layers:up_to_epoch[@lr_factor]).

Weights: ``coco`` (the default for ``--config full``) loads ``weights/mask_rcnn_coco.h5`` without the
class-specific heads; a missing file is reported with its download address. ``none`` (the default and the only
choice for ``--config light``, whose backbone has no pretrained weights) trains from scratch. ``last`` continues
the newest run of the config: the same run folder, the epoch counter, the split and the kind of schedule.

Data check: before the model is built, every image is checked in parallel threads
(:func:`mrcnn.dataset.check_dataset`: image and mask headers, a mask of another size than its image, COCO polygons
or boxes wholly outside their image). A problem stops the run before its first step with a message that lists every
one (file and problem); ``--skip-bad`` leaves those images out instead, lists them and goes on (a resumed run keeps
its held-out ids, less the images left out).

Run folder: training holds it (:mod:`mrcnn.run_folder`): a second run into a folder in use is refused with the PID
that holds it, a lock left by a killed run is taken over, and temporary files of interrupted writes (a checkpoint cut
short by ``kill -9``) are removed, each with a message; the lock is released when the run ends, also on an error.

Full-resolution ISIC images (up to 6000 px) are decoded at ``--max-side`` (default: the input size) and the
resized copies cached under ``--cache-dir`` (default ``<logs>/cache``), so every epoch after the first reads
small files. Errors in the arguments or the data are one line on stderr and exit status 2 (the data check: a line
per problem): also a data error found during training (an image whose pixels cannot be decoded although its header
could), which stops the run and keeps the checkpoints written so far. ``--logs`` and ``--cache-dir`` are checked
(created, writable) before the data is read.

Python::

    from lesion.train import main
    main(["--dataset", "tests/data/isic2017", "--config", "light", "--weights", "none", "--epochs", "1"])
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import logging
import math
import os
import re
import sys
from collections import Counter
from typing import Sequence

from lesion.cli import UsageError, find_last, parse_overrides
from lesion.datasets import validation_split
from lesion.paths import WORK_DIR
from mrcnn import console
from mrcnn.atomic import OutputDirError, ensure_output_dir, write_bytes_atomic

__all__ = ["COCO_WEIGHTS", "Stage", "UsageError", "build_parser", "default_schedule", "main", "make_split",
           "parse_schedule"]

REPO_ROOT = str(WORK_DIR)
COCO_WEIGHTS = os.path.join(REPO_ROOT, "weights", "mask_rcnn_coco.h5")
"""Where ``--weights coco`` looks (``weights/mask_rcnn_coco.h5`` under the repository root; for an installed package,
under the current folder: see :mod:`lesion.paths`)."""

LAYER_CHOICES = ("heads", "3+", "4+", "5+", "all")
"""The layer presets of :data:`mrcnn.model.LAYER_PRESETS` a stage may name."""

# The image size each config was tuned for; anchors scale with --image-size relative to it.
_BASE_IMAGE_SIZE = {"light": 320, "full": 1024}


# ------------------------------------------------------------------------------------------------------------
# Schedule.


@dataclasses.dataclass(frozen=True)
class Stage:
    """One training stage: ``layers`` trained up to epoch ``epochs`` at ``lr_factor`` times the base rate."""

    layers: str
    epochs: int
    lr_factor: float = 1.0

    def __str__(self) -> str:
        return f"{self.layers}:{self.epochs}" + (f"@{self.lr_factor:g}" if self.lr_factor != 1.0 else "")


def parse_schedule(text: str) -> list[Stage]:
    """Parse ``"heads:10,all:30,all:40@0.1"`` (stage:up_to_epoch[@lr_factor], comma separated).

    Raises:
        UsageError: an unknown stage, a non-positive or non-increasing epoch, a non-positive factor.
    """
    stages: list[Stage] = []
    for item in (part.strip() for part in text.split(",")):
        match = re.fullmatch(r"([^:@\s]+):(\d+)(?:@([0-9.eE+-]+))?", item)
        if not match:
            raise UsageError(f"--schedule: cannot read {item!r}; expected layers:up_to_epoch[@lr_factor], "
                             f"e.g. heads:10,all:30,all:40@0.1")
        layers, epochs, factor = match.group(1), int(match.group(2)), match.group(3)
        if layers not in LAYER_CHOICES:
            raise UsageError(f"--schedule: unknown layers {layers!r} in {item!r}; "
                             f"use one of {', '.join(LAYER_CHOICES)}")
        try:
            lr_factor = float(factor) if factor is not None else 1.0
        except ValueError:
            lr_factor = -1.0
        if not lr_factor > 0:
            raise UsageError(f"--schedule: the learning-rate factor in {item!r} must be a positive number")
        if epochs <= (stages[-1].epochs if stages else 0):
            raise UsageError(f"--schedule: epochs must increase from stage to stage and be at least 1; "
                             f"{item!r} ends at epoch {epochs}")
        stages.append(Stage(layers, epochs, lr_factor))
    return stages


def default_schedule(epochs: int, pretrained: bool) -> list[Stage]:
    """The stages used when neither ``--layers`` nor ``--schedule`` is given.

    With pretrained weights: the heads up to epoch ``h = max(1, round(epochs / 4))``, then all layers, the last
    ``round(epochs / 4)`` epochs at a tenth of the learning rate (40 epochs: heads:10, all:30, all:40@0.1; one
    epoch: heads:1). From scratch: all layers, the last quarter at a tenth (40: all:30, all:40@0.1; one: all:1).
    Halves round up.

    Args:
        epochs: the total number of epochs (at least 1).
        pretrained: whether the backbone starts from pretrained weights.

    Returns:
        Stages with increasing ``epochs``, the last ending at ``epochs``.
    """
    if epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {epochs}")
    quarter = (epochs + 2) // 4  # round(epochs / 4), halves up.
    stages: list[Stage] = []
    if pretrained:
        stages.append(Stage("heads", max(1, quarter)))
    stages.append(Stage("all", epochs - quarter))
    stages.append(Stage("all", epochs, 0.1))
    # Drop stages that end where the previous one ended (few epochs).
    kept: list[Stage] = []
    for stage in stages:
        if stage.epochs > (kept[-1].epochs if kept else 0):
            kept.append(stage)
    return kept


# ------------------------------------------------------------------------------------------------------------
# Data.


make_split = validation_split
"""The train / validation split of a run (:func:`lesion.datasets.validation_split`, the split evaluation takes):
``make_split(ids, labels, seed=..., val_fraction=...)``; ``labels`` maps id -> diagnosis (or None)."""


def _subset(dataset, positions: Sequence[int]):
    """A prepared copy of ``dataset`` with only the images at ``positions`` (classes unchanged)."""
    sub = copy.copy(dataset)
    sub.image_info = [dataset.image_info[i] for i in positions]
    sub.class_info = list(dataset.class_info)
    sub.prepare()
    return sub


def _load_data(args, cache_dir: str | None, max_side: int | None):
    """The whole data set (prepared), the split key of each image, and the split groups.

    The groups: one per ``--dataset`` folder (each folder is split on its own, stratified by diagnosis, so adding a
    folder leaves the split of the others as it was), or one for a COCO file (stratified by category).
    Returns ``(dataset, keys, groups)`` with ``groups`` a list of ``(keys, labels or None)``.
    """
    from lesion.datasets import CocoDataset, IsicDataset

    if args.dataset is not None:
        dataset = IsicDataset()
        groups = []
        for root in args.dataset:
            start = len(dataset.image_info)
            dataset.load_isic(root, subset=args.subset, classes=args.classes, max_side=max_side,
                              cache_dir=cache_dir, keep_unreadable=True)  # For the data check to list.
            infos = dataset.image_info[start:]
            # Stratified by diagnosis; the images without one (None) are a group of their own, which for a folder
            # without any diagnosis is the unstratified split.
            groups.append(([info["image_id"] for info in infos],
                           {info["image_id"]: info.get("diagnosis") for info in infos}))
        dataset.prepare()
        keys = [info["image_id"] for info in dataset.image_info]
        duplicates = [k for k, n in Counter(keys).items() if n > 1]
        if duplicates:
            raise UsageError(f"image ids in more than one --dataset folder: {duplicates[:5]} (each image once)")
        return dataset, keys, groups

    dataset = CocoDataset()
    dataset.load_coco(args.annotations, args.images)
    dataset.prepare()
    if not dataset.image_info:
        raise UsageError(f"{args.annotations}: no images")
    keys = [os.path.basename(info["path"]) for info in dataset.image_info]
    duplicates = [k for k, n in Counter(keys).items() if n > 1]
    if duplicates:
        raise UsageError(f"{args.annotations}: image file names listed more than once: {duplicates[:5]}")
    # Stratify by each image's most frequent category (0 for an image without annotations).
    labels = {}
    for key, info in zip(keys, dataset.image_info):
        counts = Counter(a["category_id"] for a in info["annotations"] if not a.get("iscrowd", 0))
        labels[key] = counts.most_common(1)[0][0] if counts else 0
    return dataset, keys, [(keys, labels)]


def _check_data(args, dataset, keys: list[str], groups):
    """The data check before training (:func:`mrcnn.dataset.check_dataset`): stop with every problem listed, or with
    ``--skip-bad`` leave those images out. Returns ``(dataset, keys, groups, skipped keys)``."""
    from mrcnn.dataset import check_dataset

    check = check_dataset(dataset)
    print(f"Data check: {check.summary()}")
    if not check.problems:
        return dataset, keys, groups, []
    if not args.skip_bad:
        check.raise_if_bad("; nothing was trained (fix them, or leave them out with --skip-bad)")
    skipped = [keys[i] for i in check.bad_images]
    print(f"Left out {len(skipped)} images (--skip-bad):")
    for line in check.lines():
        print(f"  {line}")
    bad = set(skipped)
    kept = [i for i, key in enumerate(keys) if key not in bad]
    if not kept:
        raise UsageError("--skip-bad: every image was left out; nothing to train on")
    groups = [([k for k in group_keys if k not in bad], labels) for group_keys, labels in groups]
    return _subset(dataset, kept), [keys[i] for i in kept], groups, skipped


def _read_run_record(path: str) -> dict:
    """The ``run.json`` of a run folder ({} when there is none)."""
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"{path}: not a valid run record ({error}); repair it or move it away to resume") from None
    if not isinstance(record, dict):
        raise UsageError(f"{path}: not a valid run record (a JSON {type(record).__name__}, not an object); repair "
                         "it or move it away to resume")
    return record


def _write_text(path: str, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


# ------------------------------------------------------------------------------------------------------------
# Command line.


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (see the module docstring)."""
    p = argparse.ArgumentParser(
        prog="python lesion/train.py",
        description="Train Mask R-CNN on skin lesions (ISIC folder or COCO file), with a held-out validation "
                    "split, checkpoints and TensorBoard logs under --logs.")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", metavar="DIR", nargs="+",
                      help="ISIC downloads (official folder layout, 2016/2017/2018), one or more; each folder "
                           "gets its own validation split")
    data.add_argument("--subset", choices=("train", "validation", "test"), default=None,
                      help="which split of --dataset, when the folder holds several")
    data.add_argument("--annotations", metavar="COCO.json",
                      help="a COCO instances file (e.g. from python -m annotations.makesense); needs --images")
    data.add_argument("--images", metavar="DIR", help="the image folder of --annotations")
    data.add_argument("--classes", choices=("lesion", "diagnosis"), default="lesion",
                      help="ISIC: one lesion class, or the diagnosis (melanoma, seborrheic keratosis, nevus) as "
                           "the class; a COCO file brings its own categories (default: %(default)s)")
    data.add_argument("--val-fraction", type=float, default=0.2,
                      help="fraction of the images held out (default: %(default)s)")
    data.add_argument("--max-side", type=int, default=None,
                      help="ISIC: decode images at most this long side (default: --image-size; 0: full size)")
    data.add_argument("--cache-dir", default=None,
                      help="ISIC: keep the resized images here (default: <logs>/cache; '' for none)")
    data.add_argument("--no-augment", action="store_true", help="train without augmentation")
    data.add_argument("--augment", choices=("flips", "light", "default", "strong"), default="default",
                      help="augmentation strength, see lesion.augment.dermoscopy_augmentation (default: %(default)s)")
    data.add_argument("--workers", type=int, default=None, help="image loading threads (config DATA_WORKERS)")
    data.add_argument("--skip-bad", action="store_true",
                      help="leave out the images the data check before training refuses (listed with the reason) "
                           "instead of stopping")

    model = p.add_argument_group("model")
    model.add_argument("--config", choices=("light", "full"), default="full",
                       help="light: LightLesionConfig (CPU, light backbone, from scratch); "
                            "full: LesionConfig (GPU, ResNet-101) (default: %(default)s)")
    model.add_argument("--weights", default=None,
                       help="coco (the default for --config full: weights/mask_rcnn_coco.h5, class-specific heads "
                            "excluded), imagenet "
                            "(ResNet-50 ImageNet file), last (resume the newest run of this config), none (from "
                            "scratch; the default and only choice for --config light), or the path of an .h5 file")
    model.add_argument("--coco-weights", default=COCO_WEIGHTS, metavar="PATH",
                       help="where --weights coco looks for mask_rcnn_coco.h5 (default: "
                            "weights/mask_rcnn_coco.h5 in the repository)")
    model.add_argument("--exclude", action="append", default=[], metavar="LAYER",
                       help="with --weights PATH: a layer name (or regular expression) not to load; repeatable")
    model.add_argument("--image-size", type=int, default=None,
                       help="square input size, a multiple of 64 (default: 320 light, 1024 full); anchor sizes "
                            "scale with it")
    model.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                       help="override a config attribute, e.g. --set TRAIN_ROIS_PER_IMAGE=32; repeatable")

    train = p.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=None,
                       help="total epochs (default 20; with --schedule, its last epoch)")
    stages = train.add_mutually_exclusive_group()
    stages.add_argument("--layers", choices=LAYER_CHOICES, default=None,
                        help="train only these layers up to --epochs (default: the staged schedule)")
    stages.add_argument("--schedule", default=None, metavar="STAGES",
                        help="explicit stages layers:up_to_epoch[@lr_factor], e.g. heads:10,all:30,all:40@0.1")
    train.add_argument("--until", type=int, default=None, metavar="EPOCH",
                       help="stop after this epoch (a chunk of a long run; continue it with --weights last and the "
                            "same schedule: the optimizer state and the data order carry on)")
    train.add_argument("--lr", type=float, default=None, help="base learning rate (config LEARNING_RATE)")
    train.add_argument("--batch-size", type=int, default=None, help="images per step (config IMAGES_PER_GPU)")
    train.add_argument("--steps-per-epoch", type=int, default=None, help="config STEPS_PER_EPOCH")
    train.add_argument("--val-steps", type=int, default=None,
                       help="validation batches per epoch (default: one pass over the held-out images, at most "
                            "the config's VALIDATION_STEPS)")
    train.add_argument("--seed", type=int, default=None,
                       help="split and data-order seed (default: the config's SEED, 2017)")
    train.add_argument("--logs", default="logs", metavar="DIR", help="where run folders go (default: %(default)s)")
    train.add_argument("--strategy", choices=("default", "mirrored", "multiworker"), default=None,
                       help="data parallelism (mrcnn.distribute): mirrored (every GPU of this machine), multiworker "
                            "(the workers of TF_CONFIG; the chief writes the run folder), default (one device); "
                            "default: mirrored when several GPUs are visible, else default. Each GPU gets "
                            "--batch-size images a step")
    console.add_output_arguments(p)
    return p


def _config_overrides(args) -> dict:
    """Config attributes set by the command line (the number of classes comes from the data)."""
    from lesion.config import LesionConfig, LightLesionConfig

    base = LightLesionConfig if args.config == "light" else LesionConfig
    overrides: dict = {}
    size = args.image_size
    if size is not None:
        from mrcnn.config import check_image_size

        try:
            check_image_size(size, size, "--image-size", "use e.g. 256, 320, 512, 1024")
        except ValueError as error:
            raise UsageError(str(error)) from None
        overrides.update(IMAGE_MIN_DIM=size, IMAGE_MAX_DIM=size)
        factor = size / _BASE_IMAGE_SIZE[args.config]
        # A lesion covers much of the image whatever its size, so the anchors follow the image size.
        overrides["RPN_ANCHOR_SCALES"] = tuple(max(4, int(round(s * factor))) for s in base.RPN_ANCHOR_SCALES)
    for option, key, minimum in (("batch_size", "IMAGES_PER_GPU", 1), ("steps_per_epoch", "STEPS_PER_EPOCH", 1),
                                 ("workers", "DATA_WORKERS", 1)):
        value = getattr(args, option)
        if value is not None:
            if value < minimum:
                raise UsageError(f"--{option.replace('_', '-')} must be at least {minimum}, got {value}")
            overrides[key] = value
    if args.lr is not None:
        if not args.lr > 0:
            raise UsageError(f"--lr must be positive, got {args.lr}")
        overrides["LEARNING_RATE"] = args.lr
    if args.seed is not None:
        overrides["SEED"] = args.seed
    overrides.update(parse_overrides(args.overrides))
    return overrides


def _coco_missing_message(path: str) -> str:
    from mrcnn.weights import COCO_MODEL_URL

    return (f"COCO weights not found: {path}. Download mask_rcnn_coco.h5 (matterport Mask_RCNN release v2.0) "
            f"from {COCO_MODEL_URL} into weights/ (weights/mask_rcnn_coco.h5), or train from scratch with "
            f"--weights none")


def _check_weights_choice(args, light: bool) -> None:
    """Refuse impossible weight choices before anything slow happens."""
    if args.weights in ("coco", "imagenet") and light:
        raise UsageError(f"--weights {args.weights}: the light backbone (--config light) has no pretrained weights; "
                         f"use --weights none, or --config full")
    if args.weights == "coco" and not os.path.isfile(args.coco_weights):
        raise UsageError(_coco_missing_message(args.coco_weights))
    if args.weights not in ("coco", "imagenet", "last", "none") and os.path.isdir(args.weights):
        raise UsageError(f"--weights {args.weights} is a folder: give a .h5 file in it (a run folder's "
                         "checkpoints are mask_rcnn_<name>_<epoch>.h5), or --weights last")
    if args.weights not in ("coco", "imagenet", "last", "none") and not os.path.isfile(args.weights):
        raise UsageError(f"--weights: no such weight file: {args.weights} (or use coco, imagenet, last, none)")


def _load_weights(args, model, config) -> bool | None:
    """Load the chosen weights into ``model``; returns whether they are pretrained (None: ask the run)."""
    from mrcnn import weights as weights_lib

    if args.weights == "none":
        print("Weights: none (training from scratch)")
        return False
    if args.weights == "coco":
        print(f"Weights: {args.coco_weights} (class-specific heads excluded)")
        model.load_weights(args.coco_weights, by_name=True, exclude=list(weights_lib.CLASS_SPECIFIC_HEADS))
        return True
    if args.weights == "imagenet":
        try:
            path = weights_lib.get_imagenet_weights(os.path.join(REPO_ROOT, "weights"))
        except weights_lib.WeightsDownloadError as error:
            raise UsageError(str(error)) from error
        print(f"Weights: {path} (ImageNet ResNet-50: backbone only)")
        model.load_weights(path, by_name=True)
        return True
    if args.weights == "last":
        path = find_last(args.logs, config.NAME, "Train one first, with --weights none or coco.")
        print(f"Weights: {path} (resuming)")
        model.load_weights(path, by_name=True)
        return None
    print(f"Weights: {args.weights}")
    model.load_weights(args.weights, by_name=True, exclude=args.exclude or None)
    return None if weights_lib.epoch_from_checkpoint_name(args.weights) else True


def _stages(args, pretrained: bool) -> list[Stage]:
    if args.schedule is not None:
        stages = parse_schedule(args.schedule)
        if args.epochs is not None and args.epochs != stages[-1].epochs:
            raise UsageError(f"--epochs {args.epochs} differs from the last epoch of --schedule "
                             f"({stages[-1].epochs}); give one or make them agree")
        return stages
    epochs = 20 if args.epochs is None else args.epochs
    if epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {epochs}")
    if args.layers is not None:
        return [Stage(args.layers, epochs)]
    return default_schedule(epochs, pretrained)


def _check_args(args) -> bool:
    """Refuse bad combinations before anything slow happens; returns whether the light config is chosen."""
    if (args.dataset is None) == (args.annotations is None):
        raise UsageError("give either --dataset DIR (ISIC layout) or --annotations COCO.json --images DIR")
    if args.annotations is not None and args.images is None:
        raise UsageError("--annotations needs --images DIR (the folder of the images it lists)")
    if args.dataset is not None:
        for root in args.dataset:
            if not os.path.isdir(root):
                raise UsageError(f"dataset folder not found: {root}")
            if not os.listdir(root):
                raise UsageError(f"dataset folder is empty: {root} (expected an ISIC download, e.g. "
                                 f"ISIC-2017_Training_Data/ and ISIC-2017_Training_Part1_GroundTruth/)")
        roots = [os.path.realpath(r) for r in args.dataset]
        if len(set(roots)) < len(roots):
            raise UsageError(f"--dataset lists a folder twice: {' '.join(args.dataset)}")
    else:
        if not os.path.isfile(args.annotations):
            raise UsageError(f"annotations file not found: {args.annotations}")
        if not os.path.isdir(args.images):
            raise UsageError(f"image folder not found: {args.images} (for {args.annotations})")
    if not 0.0 <= args.val_fraction < 1.0:
        raise UsageError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    if args.val_steps is not None and args.val_steps < 0:
        raise UsageError(f"--val-steps must be 0 or more, got {args.val_steps}")
    light = args.config == "light"
    if args.weights is None:
        args.weights = "none" if light else "coco"
    _stages(args, pretrained=True)  # A malformed --schedule or --epochs.
    _check_weights_choice(args, light)
    return light


def _split(args, run_dir: str, resumed: bool, keys: list[str], groups, seed: int,
           skipped: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """The run's (train_ids, val_ids): the resumed run's ``val_ids.txt`` (less the images ``skipped`` by the data
    check, which the file keeps), else :func:`lesion.datasets.validation_split` of each group (each ``--dataset``
    folder) on its own."""
    from lesion.datasets import read_ids

    val_file = os.path.join(run_dir, "val_ids.txt")
    if resumed and os.path.isfile(val_file):
        recorded = val_ids = read_ids(val_file)
        val_ids = [i for i in recorded if i not in set(skipped)]
        unknown = sorted(set(val_ids) - set(keys))
        if unknown:
            raise UsageError(f"{val_file}: {len(unknown)} held-out ids of the resumed run are not in this data set "
                             f"(e.g. {unknown[0]}); resume with the same data")
        held_out = set(val_ids)
        train_ids = sorted(k for k in keys if k not in held_out)
        print(f"Validation split of the resumed run ({val_file})")
    else:
        recorded = None
        train_ids, val_ids = [], []
        for group_keys, labels in groups:
            group_train, group_val = validation_split(group_keys, labels, seed=seed,
                                                      val_fraction=args.val_fraction)
            train_ids += group_train
            val_ids += group_val
        train_ids, val_ids = sorted(train_ids), sorted(val_ids)
    if not train_ids:
        raise UsageError("no training images left after the validation split; lower --val-fraction")
    _write_text(val_file, "".join(f"{i}\n" for i in (val_ids if recorded is None else recorded)))
    print(f"Images: {len(keys)}  train: {len(train_ids)}  validation: {len(val_ids)} "
          f"(seed {seed}, ids in {val_file})")
    return train_ids, val_ids


def _run(args, held: contextlib.ExitStack) -> int:
    """The run; ``held`` keeps the run folder's hold until the caller's ``with`` block ends."""
    from lesion.config import make_config

    light = _check_args(args)
    # The strategy before TensorFlow runs anything (multiworker configures its collective operations).
    from mrcnn import distribute

    try:
        strategy = distribute.make_strategy(args.strategy)
    except ValueError as error:
        raise UsageError(str(error)) from None
    chief = distribute.is_chief(strategy)
    overrides = _config_overrides(args)
    image_size = int(overrides.get("IMAGE_MAX_DIM", _BASE_IMAGE_SIZE[args.config]))
    max_side = image_size if args.max_side is None else (args.max_side or None)
    cache_dir = os.path.join(args.logs, "cache") if args.cache_dir is None else (args.cache_dir or None)
    if args.dataset is None or max_side is None:
        cache_dir = None
    try:  # Before anything slow: a bad --logs or --cache-dir would otherwise fail after the data is read.
        for folder in (args.logs, cache_dir):
            if folder is not None:
                ensure_output_dir(folder)
    except OutputDirError as error:
        raise UsageError(str(error)) from None
    dataset, keys, groups = _load_data(args, cache_dir, max_side)
    dataset, keys, groups, skipped = _check_data(args, dataset, keys, groups)
    config = make_config(light=light, classes=args.classes, **{"NUM_CLASSES": dataset.num_classes, **overrides})
    seed = 0 if config.SEED is None else int(config.SEED)

    # The model and its weights first: resuming decides the run folder, and with it the split.
    import keras

    from lesion.augment import dermoscopy_augmentation
    from mrcnn.dataset import DatasetError
    from mrcnn.model import MaskRCNN
    from mrcnn.run_folder import RunFolderInUseError, hold_run_folder
    from mrcnn.weights import WeightsFileError, WeightsMismatchError

    keras.utils.set_random_seed(seed)
    with strategy.scope():
        model = MaskRCNN(mode="training", config=config, model_dir=args.logs)
    try:
        pretrained = _load_weights(args, model, config)
    except (WeightsFileError, WeightsMismatchError, FileNotFoundError) as error:
        raise UsageError(" ".join(str(error).split())) from error
    # A checkpoint name (mask_rcnn_<name>_<epoch>.h5 in a run folder) sets the epoch counter and the run folder.
    resumed = model.epoch > 0
    run_dir = model.log_dir
    if not chief:  # The other workers of a multi-worker run write nothing: their run folder is a temporary one.
        import tempfile

        run_dir = tempfile.mkdtemp(prefix="mrcnn-worker-")
        model.log_dir = run_dir
        model.checkpoint_path = os.path.join(run_dir, os.path.basename(model.checkpoint_path))
    try:  # Before anything is written there; MaskRCNN.train holds it again while it trains.
        held.enter_context(hold_run_folder(run_dir))
    except RunFolderInUseError as error:
        raise UsageError(str(error)) from None
    if chief and not resumed and os.path.isdir(run_dir) and any(f.endswith(".h5") for f in os.listdir(run_dir)):
        raise UsageError(f"run folder {run_dir} already holds checkpoints (a run of {config.NAME!r} started in the "
                         f"same minute); wait a minute, use another --logs, or resume it with --weights last")
    os.makedirs(run_dir, exist_ok=True)
    run_file = os.path.join(run_dir, "run.json")
    record = _read_run_record(run_file)
    if pretrained is None:  # A checkpoint: as the run it came from, else as the backbone allows.
        pretrained = bool(record.get("pretrained", not light))

    train_ids, val_ids = _split(args, run_dir, resumed, keys, groups, seed, skipped)
    position = {k: i for i, k in enumerate(keys)}
    train_set = _subset(dataset, [position[k] for k in train_ids])
    val_set = _subset(dataset, [position[k] for k in val_ids]) if val_ids else None
    if val_set is None:
        config.VALIDATION_STEPS = 0
    elif args.val_steps is not None:
        config.VALIDATION_STEPS = args.val_steps
    else:  # One pass over the held-out images, at most the config's VALIDATION_STEPS.
        config.VALIDATION_STEPS = min(int(config.VALIDATION_STEPS), math.ceil(len(val_ids) / config.BATCH_SIZE))

    stages = _stages(args, pretrained)
    record.setdefault("pretrained", pretrained)
    record.setdefault("val_fraction", args.val_fraction)
    record.setdefault("seed", seed)
    record.setdefault("data", [os.path.abspath(d) for d in args.dataset] if args.dataset else
                      os.path.abspath(args.annotations))
    record.setdefault("commands", []).append({
        "argv": list(args.argv), "start_epoch": model.epoch, "schedule": ",".join(map(str, stages)),
        **({"skipped_images": skipped} if skipped else {})})
    _write_text(run_file, json.dumps(record, indent=2) + "\n")

    augmentation = None
    if not args.no_augment:
        from mrcnn.utils import training_resize_mode

        rotate90 = training_resize_mode(config.IMAGE_RESIZE_MODE) == "square"  # square batches only
        augmentation = dermoscopy_augmentation(args.augment, rotate90=rotate90, seed=seed)
    replicas = strategy.num_replicas_in_sync
    batch = f"batch {config.BATCH_SIZE}" if replicas == 1 else \
        f"batch {config.IMAGES_PER_GPU} x {replicas} replicas"
    print(f"Config {config.NAME}: backbone {config.BACKBONE}, {image_size} px, {config.NUM_CLASSES - 1} classes "
          f"{dataset.class_names[1:]}, {batch}, {config.STEPS_PER_EPOCH} steps/epoch, "
          f"{config.VALIDATION_STEPS} validation steps, base lr {config.LEARNING_RATE:g}, "
          f"augmentation {'none' if augmentation is None else args.augment}")
    print(f"Schedule: {','.join(map(str, stages))}; run folder {run_dir}; starting after epoch {model.epoch}")

    if model.epoch >= stages[-1].epochs:
        print(f"Already at epoch {model.epoch} >= {stages[-1].epochs}: nothing to train (raise --epochs)")
        return 0
    for number, stage in enumerate(stages, start=1):
        if model.epoch >= stage.epochs:
            continue
        lr = config.LEARNING_RATE * stage.lr_factor
        print(f"Stage {number}/{len(stages)}: layers {stage.layers}, epochs {model.epoch + 1}-{stage.epochs}, "
              f"lr {lr:g}")
        try:
            model.train(train_set, val_set, learning_rate=lr, epochs=stage.epochs, layers=stage.layers,
                        augmentation=augmentation, stop_epoch=args.until, verbose=console.keras_verbose(args.quiet))
        except DatasetError as error:
            raise DatasetError(f"{error} (training stopped; the checkpoints written so far are in {run_dir})") from error
        if args.until is not None and model.epoch >= args.until:
            print(f"Stopped after epoch {model.epoch} (--until); continue with --weights last")
            return 0
    print(f"Done: checkpoints in {run_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 done, 2 bad arguments or inputs)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or argparse's own usage error (already printed).
        return int(exit_.code or 0)
    args.argv = argv
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    console.quiet_tensorflow(args.verbose)
    from lesion.datasets import DatasetError
    from mrcnn.dataset import DataCheckError

    try:
        with contextlib.ExitStack() as held:
            return _run(args, held)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except DataCheckError as error:  # One problem a line.
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (DatasetError, FileNotFoundError) as error:
        message = " ".join(str(error).split())
        if "several ISIC splits" in message:
            message += " (use --subset)"
        print(f"error: {message}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        from mrcnn.distribute import WorkerFailedError

        if not isinstance(error, WorkerFailedError):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
