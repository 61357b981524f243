"""Configurations for skin-lesion segmentation and classification.

- :class:`LesionConfig`: GPU training from matterport's COCO weights (ResNet-101 by default, 1024 px).
- :class:`LightLesionConfig`: the light backbone at 320 px, trained from scratch; runs on a CPU.

Classes: ``classes="lesion"`` gives one class (``lesion``); ``classes="diagnosis"`` the ISIC 2017 Part 3
diagnoses ``melanoma``, ``seborrheic_keratosis``, ``nevus`` (both label columns 0 = nevus).
"""

from __future__ import annotations

from mrcnn.config import Config

from .datasets import DIAGNOSIS_CLASSES, LESION_CLASSES

__all__ = ["LesionConfig", "LightLesionConfig", "class_names", "make_config"]


def class_names(classes: str) -> list[str]:
    """Class names (without background) for ``"lesion"`` or ``"diagnosis"``."""
    if classes == "lesion":
        return list(LESION_CLASSES)
    if classes == "diagnosis":
        return list(DIAGNOSIS_CLASSES)
    raise ValueError(f"classes must be 'lesion' or 'diagnosis', got {classes!r}")


class LesionConfig(Config):
    """Fine-tuning from COCO weights on a GPU."""

    NAME = "lesion"
    IMAGES_PER_GPU = 2
    NUM_CLASSES = 1 + 1
    BACKBONE = "resnet101"
    IMAGE_MIN_DIM = 1024
    IMAGE_MAX_DIM = 1024
    # One large lesion per image: no need for the smallest anchors' fine detail, fewer ROIs.
    RPN_ANCHOR_SCALES = (64, 128, 256, 512, 1024)
    RPN_TRAIN_ANCHORS_PER_IMAGE = 128
    POST_NMS_ROIS_TRAINING = 1000
    POST_NMS_ROIS_INFERENCE = 500
    TRAIN_ROIS_PER_IMAGE = 100
    MAX_GT_INSTANCES = 4
    DETECTION_MAX_INSTANCES = 10
    # An ISIC image always shows a lesion: keep even an unsure top detection (the mask rule of detect.py and
    # evaluate.py takes the top-scoring one; the score is reported with it).
    DETECTION_MIN_CONFIDENCE = 0.1
    # One lesion, one diagnosis: a box of one diagnosis suppresses the overlapping boxes of the others.
    DETECTION_CLASS_AGNOSTIC_NMS = True
    STEPS_PER_EPOCH = 100
    VALIDATION_STEPS = 10
    LEARNING_RATE = 0.001
    # A lesion fills much of the image: a finer mask keeps its border (28 x 28 is coarse at 1024 px).
    MASK_POOL_SIZE = 14
    MASK_SHAPE = [28, 28]
    SEED = 2017


class LightLesionConfig(LesionConfig):
    """The light backbone at 320 px, trained from scratch on a CPU."""

    NAME = "lesion_light"
    IMAGES_PER_GPU = 4
    BACKBONE = "light"
    IMAGE_MIN_DIM = 320
    IMAGE_MAX_DIM = 320
    # One large lesion per image (40 to 320 px here): two sizes per level (24 ... 543 px) and a 0.6 IoU for
    # positive anchors, so that every lesion has several positive anchors to learn from, not one.
    RPN_ANCHOR_SCALES = (24, 48, 96, 192, 384)
    RPN_ANCHOR_SCALES_PER_OCTAVE = 2
    RPN_POSITIVE_IOU = 0.6
    TOP_DOWN_PYRAMID_SIZE = 128
    FPN_CLASSIF_FC_LAYERS_SIZE = 256
    RPN_HEAD_DEPTH = 128
    MASK_HEAD_DEPTH = 64
    PRE_NMS_LIMIT = 2000
    POST_NMS_ROIS_TRAINING = 300
    POST_NMS_ROIS_INFERENCE = 200
    TRAIN_ROIS_PER_IMAGE = 48
    RPN_TRAIN_ANCHORS_PER_IMAGE = 128
    LEARNING_RATE = 0.01
    TRAIN_BN = None  # From scratch: BatchNorm learns its statistics.
    # A lesion covers a large part of the image: a 56 x 56 mask (pooled at 28 x 28) keeps its border, where
    # matterport's 28 x 28 would blur it; the mini masks are kept finer than the mask targets.
    MASK_POOL_SIZE = 28
    MASK_SHAPE = [56, 56]
    MINI_MASK_SHAPE = (112, 112)


def make_config(light: bool = False, classes: str = "lesion", **overrides) -> Config:
    """A config instance for the chosen classes, with attribute overrides (e.g. ``IMAGES_PER_GPU=1``)."""
    base = LightLesionConfig if light else LesionConfig
    attrs = {"NUM_CLASSES": 1 + len(class_names(classes))}
    attrs.update(overrides)
    cls = type(base.__name__, (base,), attrs)
    return cls()
