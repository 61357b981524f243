"""Shared code of ``lesion/detect.py`` and ``lesion/evaluate.py``: model loading, parallel image loading with batched
inference, the lesion-mask rule, COCO encoding, atomic output files, and the train/validation split.

The generic pieces live in the core and are re-exported here under their old names: the batching predictor
(``Prepared``, ``prepare``, ``iter_parallel``, ``iter_prepared``, ``iter_detections``) in :mod:`mrcnn.predictor`,
the COCO encoders (``mask_to_rle``, ``coco_annotations``) in :mod:`mrcnn.coco`, the atomic writers
(``write_*_atomic``, ``json_safe``) in :mod:`mrcnn.atomic`.

Model loading. ``--weights`` is a ``.h5`` file (matterport's layout, :mod:`mrcnn.weights`), ``last`` (the newest
checkpoint under ``logs/``, :func:`lesion.cli.find_last`), or by default the bundled light lesion model
:data:`DEFAULT_WEIGHTS`. The number of classes and the backbone are read from the file, so ``--classes`` and
``--config`` only need to be given to check them; any other config attribute is set with ``--set KEY=VALUE``.
The weights are loaded strictly (every weighted layer of the model must be in the file and the other way round),
so a file that does not fit is an error, never a half-random model.

Pipeline (:mod:`mrcnn.predictor`). A thread pool decodes images (:func:`mrcnn.dataset.read_image`: greyscale,
RGBA and 16-bit files work) and molds them (resize and mean subtraction) a few images ahead, while the model runs
on the current batch (OpenCV, PIL and TensorFlow release the GIL). Results come back in input order, one per
input, each with either the detections at the original image size or the error that made the input unreadable.

Mask rule (:data:`MASK_RULES`). An ISIC image shows one lesion and its ground truth is one mask, so by default
(``"top"``) the lesion mask of an image is the mask of its top-scoring detection: extra detections above the
confidence threshold are duplicates of the lesion under another diagnosis or false positives, and taking their
union would add their pixels. ``"union"`` takes the union of all detections instead (for images with several
lesions). An image with no detection gets an empty mask (all zero).

Diagnosis probabilities (:func:`diagnosis_probabilities`): the ``class_probs`` of the detection the mask rule
picks first (the top-scoring one), background excluded and renormalised to sum to 1; an image with no detection
gets uniform probabilities (1/3 each), which scores as "no information" in the ROC AUC rather than as a confident
answer.

Example::

    model, info = load_model("weights/mask_rcnn_lesion_light.h5")
    items = [Path(p) for p in paths]
    for item, prepared, result, error in iter_detections(model, iter_prepared(model, items, read_image)):
        mask = lesion_mask(result)  # bool [H, W], the input's size
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Hashable, Mapping, Sequence

import numpy as np

from mrcnn.atomic import json_safe, write_bytes_atomic, write_csv_atomic, write_image_atomic, write_json_atomic
from mrcnn.coco import coco_annotations, mask_to_rle
from mrcnn.predictor import Prepared, iter_detections, iter_parallel, iter_prepared, prepare
from lesion.cli import UsageError, find_last, parse_overrides
from lesion.datasets import default_seed, validation_split
from lesion.paths import WORK_DIR, bundled_file

__all__ = [
    "ROOT",
    "DEFAULT_WEIGHTS",
    "DEFAULT_LOGS",
    "CONFIGS",
    "MASK_RULES",
    "UsageError",
    "WeightsInfo",
    "ModelInfo",
    "Prepared",
    "validation_split",
    "default_seed",
    "select_ids",
    "parse_overrides",
    "inspect_weights",
    "resolve_weights",
    "load_model",
    "add_model_arguments",
    "model_from_args",
    "iter_parallel",
    "prepare",
    "iter_prepared",
    "iter_detections",
    "top_index",
    "lesion_mask",
    "lesion_box",
    "diagnosis_probabilities",
    "mask_to_rle",
    "coco_annotations",
    "write_bytes_atomic",
    "write_image_atomic",
    "write_json_atomic",
    "write_csv_atomic",
    "json_safe",
]


def __getattr__(name: str) -> Any:
    """``WeightsInfo`` and ``inspect_weights`` of :mod:`mrcnn.weights`, imported on first use (it imports Keras)."""
    if name in ("WeightsInfo", "inspect_weights"):
        from mrcnn import weights

        return getattr(weights, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


ROOT = WORK_DIR
"""The repository root (for an installed package: the current folder; see :mod:`lesion.paths`)."""

DEFAULT_WEIGHTS = bundled_file("mask_rcnn_lesion_light.h5")
"""The bundled lesion model (light config)."""

DEFAULT_LOGS = ROOT / "logs"
"""Where training writes its run folders; ``--weights last`` looks here."""

CONFIGS = ("light", "full")
"""``--config`` choices: :class:`lesion.config.LightLesionConfig` and :class:`lesion.config.LesionConfig`."""

MASK_RULES = ("top", "union")
"""How the detections of an image become its lesion mask (see the module docstring)."""

_CLASSES_BY_COUNT = {2: "lesion", 4: "diagnosis"}  # NUM_CLASSES (background included) -> --classes.


# ----------------------------------------------------------------------------------------------------------------
# Train / validation split.


def select_ids(dataset_or_ids: Any, subset: str, seed: int | None = None, val_fraction: float = 0.2,
               labels: Sequence[Hashable] | Mapping[str, Hashable] | None = None) -> list[str]:
    """The sorted ids of ``subset``: ``"validation"`` or ``"train"`` of :func:`validation_split`, or ``"all"``."""
    if subset == "all":
        if hasattr(dataset_or_ids, "image_info"):
            return sorted(str(info.get("image_id", info["id"])) for info in dataset_or_ids.image_info)
        return sorted(str(i) for i in dataset_or_ids)
    train_ids, val_ids = validation_split(dataset_or_ids, labels, seed=seed, val_fraction=val_fraction)
    if subset == "validation":
        return val_ids
    if subset == "train":
        return train_ids
    raise ValueError(f"subset must be 'validation', 'train' or 'all', got {subset!r}")


# ----------------------------------------------------------------------------------------------------------------
# Model loading.


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """The model a command runs.

    Attributes:
        weights: the weight file loaded.
        config_name: ``"light"`` or ``"full"``.
        classes: ``"lesion"`` or ``"diagnosis"``.
        class_names: names indexed by class id, ``"BG"`` first.
    """

    weights: str
    config_name: str
    classes: str
    class_names: list[str]
    classifier: Any = None
    classifier_path: str | None = None

    @property
    def diagnoses(self) -> bool:
        """Whether the results carry a diagnosis (a diagnosis Mask R-CNN, or a lesion one with the classifier)."""
        return self.classes == "diagnosis" or self.classifier is not None


def _train_hint() -> str:
    return ("Train a model with `python lesion/train.py --help` (its checkpoints go to logs/) and pass "
            "`--weights last`, or pass `--weights PATH` to a Mask R-CNN .h5 weight file.")


def resolve_weights(spec: str | None, config_name: str = "light", logs_dir: str | os.PathLike = DEFAULT_LOGS,
                    classes: str = "lesion") -> str:
    """The weight file to load for ``--weights``.

    Args:
        spec: a path, ``"last"``, or None for :data:`DEFAULT_WEIGHTS`.
        config_name: ``"light"`` or ``"full"``; names the run folders ``last`` looks in.
        logs_dir: the training log folder.
        classes: the classes of the config used to look for ``last`` (they do not change the run name).

    Raises:
        UsageError: the file (or a checkpoint for ``last``) does not exist; the message says what to do.
    """
    if spec is None:
        path = DEFAULT_WEIGHTS
        if not path.is_file():
            raise UsageError(f"No model weights at {path}: the bundled lesion model is not in this checkout. "
                             + _train_hint())
        return str(path)
    if spec == "last":
        from lesion.config import make_config

        config = make_config(light=config_name == "light", classes=classes)
        return find_last(logs_dir, config.NAME, _train_hint())
    if os.path.isdir(spec):
        raise UsageError(f"--weights {spec} is a folder: give a .h5 file in it (a run folder's checkpoints are "
                         "mask_rcnn_<name>_<epoch>.h5), or --weights last")
    if not os.path.isfile(spec):
        raise UsageError(f"--weights {spec}: no such file. " + _train_hint())
    return spec


def _check_choice(name: str, given: str | None, from_file: str | None, path: str) -> str | None:
    if given is not None and from_file is not None and given != from_file:
        raise UsageError(f"{path} holds a model with {name} {from_file!r}, but {name} {given!r} was asked for; "
                         f"pass --{name} {from_file} (or leave it out)")
    return given if given is not None else from_file


def load_model(weights: str | None = None, config_name: str | None = None, classes: str | None = None,
               overrides: Mapping[str, Any] | None = None, logs_dir: str | os.PathLike = DEFAULT_LOGS,
               min_confidence: float | None = None, batch_size: int | None = None, classifier: str | None = "auto"):
    """Build the inference model and load its weights, and the diagnosis classifier of a lesion model.

    Args:
        weights: a ``.h5`` path, ``"last"``, or None for the bundled model.
        config_name: ``"light"`` or ``"full"``; from the file's backbone when None (``"light"`` if unknown).
        classes: ``"lesion"`` or ``"diagnosis"``; from the file's class count when None (``"lesion"`` if unknown).
        overrides: further config attributes (``--set``).
        logs_dir: training log folder (``last``; the model's ``model_dir``).
        min_confidence: DETECTION_MIN_CONFIDENCE, or None for the config's (0.1 for the lesion configs).
        batch_size: IMAGES_PER_GPU, or None for the config's.
        classifier: the second stage that diagnoses the lesions of a one-class (lesion) model
            (:mod:`lesion.classifier`): ``"auto"`` (the bundled ``weights/lesion_classifier.skops`` with the bundled
            Mask R-CNN, when both are there), a ``.skops`` path, or ``"none"`` / None.

    Returns:
        ``(model, info)``: a :class:`mrcnn.model.MaskRCNN` in inference mode and a :class:`ModelInfo`; with a
        classifier, ``info.class_names`` are the diagnoses (:func:`finish_result` gives them to the results).

    Raises:
        UsageError: missing weights, a file that does not fit the asked config, or a bad override.
    """
    from lesion.config import class_names as names_of
    from lesion.config import make_config

    class_choices = tuple(_CLASSES_BY_COUNT.values())
    for name, value, choices in (("config", config_name, CONFIGS), ("classes", classes, class_choices)):
        if value is not None and value not in choices:
            raise UsageError(f"--{name} must be one of {', '.join(choices)}; got {value!r}")
    from mrcnn.weights import inspect_weights

    path = resolve_weights(weights, config_name or "light", logs_dir, classes or "lesion")
    file_info = inspect_weights(path)
    file_config = None if file_info.backbone is None else ("light" if file_info.backbone == "light" else "full")
    file_classes = _CLASSES_BY_COUNT.get(file_info.num_classes) if file_info.num_classes else None
    if file_info.num_classes is not None and file_classes is None:
        raise UsageError(f"{path} holds a model with {file_info.num_classes} classes (background included); the "
                         "lesion models have 2 (lesion) or 4 (diagnosis)")
    config_name = _check_choice("config", config_name, file_config, path) or "light"
    classes = _check_choice("classes", classes, file_classes, path) or "lesion"

    attrs: dict[str, Any] = {}
    if config_name == "full" and file_info.backbone in ("resnet50", "resnet101"):
        attrs["BACKBONE"] = file_info.backbone
    if min_confidence is not None:
        if not 0.0 <= min_confidence <= 1.0:
            raise UsageError(f"--min-confidence must be in [0, 1]; got {min_confidence}")
        attrs["DETECTION_MIN_CONFIDENCE"] = float(min_confidence)
    if batch_size is not None:
        if batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1; got {batch_size}")
        attrs["IMAGES_PER_GPU"] = int(batch_size)
    attrs.update(overrides or {})
    try:
        config = make_config(light=config_name == "light", classes=classes, **attrs)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"invalid config ({exc})") from exc

    from mrcnn import weights as weightslib
    from mrcnn.model import MaskRCNN

    try:
        model = MaskRCNN(mode="inference", config=config, model_dir=os.fspath(logs_dir))
    except ValueError as exc:
        raise UsageError(f"cannot build the model: {exc}") from exc
    try:
        model.load_weights(path, by_name=False)
    except weightslib.WeightsMismatchError as exc:
        raise UsageError(f"{exc}\nThe model was built with --config {config_name} --classes {classes}; a file "
                         "trained with other config attributes needs them again with --set KEY=VALUE.") from exc
    except weightslib.WeightsFileError as exc:  # unreadable, damaged: the model's settings are not the question
        raise UsageError(str(exc)) from exc
    bundled = DEFAULT_WEIGHTS.is_file() and os.path.samefile(path, DEFAULT_WEIGHTS)
    clf, clf_path = _load_classifier(classifier if classifier != "auto" or bundled else None, classes)
    names = ["BG"] + names_of("diagnosis" if clf is not None else classes)
    return model, ModelInfo(weights=path, config_name=config_name, classes=classes, class_names=names,
                            classifier=clf, classifier_path=clf_path)


def _load_classifier(spec: str | None, classes: str):
    """``(classifier, path)`` for ``load_model``'s ``classifier`` argument; ``(None, None)`` for none."""
    from lesion.classifier import CLASSIFIER_PATH, LesionClassifier, LesionClassifierError

    if spec in (None, "none"):
        return None, None
    if spec == "auto":  # Given to a diagnosis model on purpose, the classifier replaces its class head.
        if classes != "lesion" or not os.path.isfile(CLASSIFIER_PATH):
            return None, None
        spec = CLASSIFIER_PATH
    try:
        return LesionClassifier.load(spec), str(spec)
    except (FileNotFoundError, LesionClassifierError) as exc:
        raise UsageError(str(exc)) from exc


def _shown(path: Path) -> str:
    """``path`` relative to the repository root when it is inside it."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def add_model_arguments(parser: Any) -> None:
    """The model options shared by ``detect.py`` and ``evaluate.py``."""
    parser.add_argument("--weights", default=None, metavar="PATH|last",
                        help=f"Mask R-CNN .h5 weights, or 'last' for the newest checkpoint under --logs "
                             f"(default: the bundled {_shown(DEFAULT_WEIGHTS)})")
    parser.add_argument("--config", choices=CONFIGS, default=None,
                        help="light (light backbone, 320 px) or full (ResNet, 1024 px); default: from the weights")
    parser.add_argument("--classes", choices=("lesion", "diagnosis"), default=None,
                        help="lesion (one class) or diagnosis (melanoma, seborrheic keratosis, nevus); "
                             "default: from the weights")
    parser.add_argument("--min-confidence", type=float, default=None, metavar="F",
                        help="DETECTION_MIN_CONFIDENCE: detections below this score are dropped (default: the config's, 0.1)")
    parser.add_argument("--batch-size", type=int, default=None, metavar="N",
                        help="images per inference batch (default: the config's IMAGES_PER_GPU)")
    parser.add_argument("--classifier", default="auto", metavar="PATH|none",
                        help="the diagnosis classifier of a lesion model (second stage, lesion.classifier); "
                             "default: the bundled weights/lesion_classifier.skops with the bundled model")
    parser.add_argument("--mask-rule", choices=MASK_RULES, default="top",
                        help="lesion mask of an image: the top-scoring detection's mask (default) or the union "
                             "of all detections")
    parser.add_argument("--workers", type=int, default=2, metavar="N",
                        help="threads that decode and resize the next images during inference (default 2)")
    parser.add_argument("--logs", default=str(DEFAULT_LOGS), metavar="DIR",
                        help="training log folder searched by --weights last (default: logs/)")
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="config attributes, e.g. --set IMAGE_MAX_DIM=512 DETECTION_MAX_INSTANCES=5")


def model_from_args(args: Any):
    """:func:`load_model` from the options of :func:`add_model_arguments`."""
    return load_model(weights=args.weights, config_name=args.config, classes=args.classes,
                      overrides=parse_overrides(args.overrides), logs_dir=args.logs,
                      min_confidence=args.min_confidence, batch_size=args.batch_size,
                      classifier=getattr(args, "classifier", "auto"))


# ----------------------------------------------------------------------------------------------------------------
# Post-processing.


MERGE_OVERLAP = 0.0
"""A detection that shares more than this fraction of its (smaller) mask with a higher-scoring one's is the same
lesion. 0: any shared pixel, so no two detections of a result overlap (dermoscopic images show one lesion; two
touching outlines are two readings of it)."""


def mask_overlaps(masks: np.ndarray) -> np.ndarray:
    """int64 [N, N]: the pixels each pair of the N masks (bool [H, W, N]) share; the diagonal holds their areas.

    Pair by pair on the boolean masks: no integer copy of N full-size masks (a camera image is 20 M pixels).
    """
    masks = np.asarray(masks, dtype=bool)
    n = masks.shape[-1]
    shared = np.zeros((n, n), np.int64)
    columns = [masks[..., i] for i in range(n)]
    for i in range(n):
        for j in range(i, n):
            shared[i, j] = shared[j, i] = np.count_nonzero(columns[i] & columns[j])
    return shared


def merge_overlapping(result: Mapping[str, np.ndarray], overlap: float = MERGE_OVERLAP) -> dict:
    """One detection per lesion: drop each detection whose mask shares more than ``overlap`` of the smaller mask
    with a higher-scoring detection's (by default any pixel); the kept one keeps its own box, mask, score and class
    probabilities. Detections are visited in decreasing score.

    Args:
        result: a detection result (``masks`` bool [H, W, N], ``scores`` [N], ``rois``, ``class_ids``, and
            optionally ``class_probs``).
        overlap: the fraction of the smaller mask that makes two detections one.

    Returns:
        A new result with the kept detections, in decreasing score.
    """
    scores = np.asarray(result["scores"])
    shared = mask_overlaps(result["masks"])
    areas = np.diag(shared)
    kept: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        smaller = np.minimum(areas[i], areas[kept])
        if not np.any((smaller == 0) | (shared[i, kept] > overlap * smaller)):
            kept.append(int(i))
    ix = np.asarray(kept, dtype=int)
    merged = dict(result)
    for key, value in result.items():
        value = np.asarray(value)
        if key == "masks":
            merged[key] = value[..., ix]
        elif value.ndim >= 1 and value.shape[0] == len(scores):
            merged[key] = value[ix]
    return merged


def finish_result(result: Mapping[str, np.ndarray], image: np.ndarray | None, info: ModelInfo) -> dict:
    """The lesion application's result of one image: one detection per lesion (:func:`merge_overlapping`) and,
    with ``info.classifier``, each lesion diagnosed by the classifier from its mask: ``class_ids`` become the
    diagnoses (``info.class_names``), ``class_probs`` [N, 4] the classifier's probabilities (background 0), and
    ``scores`` stay the detection scores (how sure the model is that there is a lesion). The diagnosis is the
    classifier's decision (:meth:`lesion.classifier.LesionClassifier.decide`: its probabilities weighted for
    balanced accuracy), which may differ from the most probable class.

    Args:
        result: the model's result for the image.
        image: the image (uint8 RGB, the result's size); needed with a classifier.
        info: the :class:`ModelInfo` of :func:`load_model`.
    """
    merged = merge_overlapping(result)
    if info.classifier is None or not len(merged["scores"]):
        return merged
    if image is None:
        raise ValueError("finish_result: the classifier needs the image")
    masks = np.asarray(merged["masks"]).astype(bool)
    probs = info.classifier.predict_proba((image, masks[:, :, i]) for i in range(masks.shape[-1]))
    merged["class_probs"] = np.concatenate([np.zeros((len(probs), 1)), probs], axis=1).astype(np.float32)
    merged["class_ids"] = (info.classifier.decide(probs) + 1).astype(np.int32)
    return merged


def top_index(result: Mapping[str, np.ndarray]) -> int | None:
    """Index of the top-scoring detection, or None when there is none."""
    scores = np.asarray(result["scores"])
    return int(np.argmax(scores)) if scores.size else None


def lesion_mask(result: Mapping[str, np.ndarray], rule: str = "top") -> np.ndarray:
    """The lesion mask of one image under the mask rule.

    Args:
        result: a detection result (``masks`` bool [H, W, N], ``scores`` [N]).
        rule: ``"top"`` (the top-scoring detection's mask) or ``"union"`` (all detections).

    Returns:
        bool [H, W]; all False when there is no detection.
    """
    masks = np.asarray(result["masks"])
    if rule not in MASK_RULES:
        raise ValueError(f"rule must be one of {MASK_RULES}; got {rule!r}")
    k = top_index(result)
    if k is None:
        return np.zeros(masks.shape[:2], dtype=bool)
    if rule == "top":
        return masks[:, :, k].astype(bool)
    return np.any(masks, axis=-1)


def lesion_box(result: Mapping[str, np.ndarray], rule: str = "top") -> np.ndarray | None:
    """The lesion box under the mask rule: the top detection's box, or the box around all of them.

    Returns:
        int [4] ``(y1, x1, y2, x2)`` pixels (``y2``/``x2`` exclusive), or None when there is no detection.
    """
    k = top_index(result)
    if k is None:
        return None
    rois = np.asarray(result["rois"]).reshape(-1, 4)
    if rule == "top":
        return rois[k].copy()
    return np.concatenate([rois[:, :2].min(axis=0), rois[:, 2:].max(axis=0)])


def diagnosis_probabilities(result: Mapping[str, np.ndarray] | None, num_classes: int) -> np.ndarray:
    """Foreground class probabilities of the image: the top detection's, background excluded, renormalised.

    Args:
        result: a detection result (``class_probs`` [N, num_classes + 1]), or None.
        num_classes: foreground classes.

    Returns:
        float64 [num_classes] summing to 1; uniform when there is no detection (or no probability mass).
    """
    uniform = np.full(num_classes, 1.0 / num_classes)
    k = None if result is None else top_index(result)
    if k is None:
        return uniform
    probs = np.asarray(result["class_probs"], dtype=np.float64)[k, 1:1 + num_classes]
    total = float(probs.sum())
    return probs / total if total > 0 and math.isfinite(total) else uniform
