"""Model configuration with matterport's attribute names and defaults.

Subclass :class:`Config` and override class attributes, exactly as with matterport::

    class BalloonConfig(Config):
        NAME = "balloon"
        NUM_CLASSES = 1 + 1
        STEPS_PER_EPOCH = 100

Layers never read a config object: :mod:`mrcnn.model` turns it into constructor arguments once.
"""

from __future__ import annotations

import numpy as np

SIZE_DIVISOR = 64
"""Molded images are a multiple of this on both sides: the feature pyramid halves them six times (P6, stride 64),
and the top-down path upsamples them back, so any other size would leave fractions."""


def check_image_size(height: int, width: int, what: str = "Image size", hint: str = "") -> None:
    """Refuse an input size the feature pyramid cannot take (the one check of :data:`SIZE_DIVISOR`).

    Args:
        height, width: the size in pixels.
        what: names the size in the message (``"Image size"``, ``"--image-size"``, ...).
        hint: what to change instead, appended to the message.

    Raises:
        ValueError: a side that is not a positive multiple of 64.
    """
    if height < SIZE_DIVISOR or width < SIZE_DIVISOR or height % SIZE_DIVISOR or width % SIZE_DIVISOR:
        raise ValueError(f"{what} must be a multiple of {SIZE_DIVISOR} on both sides (6 pyramid halvings), got "
                         f"{height}x{width}: {hint or 'use e.g. 256, 320, 384, 448, 512, 640, 768, 1024'}")


class Config:
    """Base configuration. Attribute names and defaults follow matterport/Mask_RCNN."""

    # Run.
    NAME: str | None = None
    GPU_COUNT = 1
    IMAGES_PER_GPU = 2
    STEPS_PER_EPOCH = 1000
    VALIDATION_STEPS = 50

    # Backbone: "resnet101", "resnet50", "light" (a small ResNet-style network for CPU work),
    # or a callable ``f(input_image, stage5, train_bn) -> [C2, C3, C4, C5]`` (then also set
    # COMPUTE_BACKBONE_SHAPE).
    BACKBONE = "resnet101"
    COMPUTE_BACKBONE_SHAPE = None
    BACKBONE_STRIDES = [4, 8, 16, 32, 64]
    FPN_CLASSIF_FC_LAYERS_SIZE = 1024
    TOP_DOWN_PYRAMID_SIZE = 256

    # Number of classes, background included.
    NUM_CLASSES = 1

    # Region proposal network. Anchor ratios are width / height.
    RPN_ANCHOR_SCALES = (32, 64, 128, 256, 512)
    RPN_ANCHOR_RATIOS = [0.5, 1, 2]
    RPN_ANCHOR_STRIDE = 1
    # Additions: anchor sizes per pyramid level, s * 2 ** (k / n) for k < n (n = 1: matterport's single size),
    # and the IoU thresholds that make an anchor positive / negative for the RPN (matterport: 0.7 / 0.3).
    RPN_ANCHOR_SCALES_PER_OCTAVE = 1
    RPN_POSITIVE_IOU = 0.7
    RPN_NEGATIVE_IOU = 0.3
    RPN_NMS_THRESHOLD = 0.7
    RPN_TRAIN_ANCHORS_PER_IMAGE = 256
    PRE_NMS_LIMIT = 6000
    POST_NMS_ROIS_TRAINING = 2000
    POST_NMS_ROIS_INFERENCE = 1000
    RPN_BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])

    # Masks.
    USE_MINI_MASK = True
    MINI_MASK_SHAPE = (56, 56)
    MASK_POOL_SIZE = 14
    MASK_SHAPE = [28, 28]

    # Images.
    # "square" (matterport's default), "pad64", "crop", "none", or "fit": scaled as "square", padded to
    # multiples of 64 only (inference; training batches are molded as "square").
    IMAGE_RESIZE_MODE = "square"
    IMAGE_MIN_DIM = 800
    IMAGE_MAX_DIM = 1024
    IMAGE_MIN_SCALE = 0
    IMAGE_CHANNEL_COUNT = 3
    MEAN_PIXEL = np.array([123.7, 116.8, 103.9])

    # Heads.
    TRAIN_ROIS_PER_IMAGE = 200
    ROI_POSITIVE_RATIO = 0.33
    POOL_SIZE = 7
    MAX_GT_INSTANCES = 100
    BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])

    # Detection.
    DETECTION_MAX_INSTANCES = 100
    DETECTION_MIN_CONFIDENCE = 0.7
    DETECTION_NMS_THRESHOLD = 0.3
    # False: NMS per class (matterport's); True: one NMS over all classes, so overlapping boxes of different
    # classes are one detection (the class distribution of the highest-scoring box).
    DETECTION_CLASS_AGNOSTIC_NMS = False

    # Optimisation.
    LEARNING_RATE = 0.001
    LEARNING_MOMENTUM = 0.9
    WEIGHT_DECAY = 0.0001
    LOSS_WEIGHTS = {
        "rpn_class_loss": 1.0,
        "rpn_bbox_loss": 1.0,
        "mrcnn_class_loss": 1.0,
        "mrcnn_bbox_loss": 1.0,
        "mrcnn_mask_loss": 1.0,
    }
    USE_RPN_ROIS = True
    TRAIN_BN = False
    # With TRAIN_BN on several replicas (mrcnn.distribute): BatchNorm statistics over the global batch (every
    # replica's images, keras.layers.BatchNormalization(synchronized=True)) instead of each replica's own.
    SYNC_BATCH_NORM = False
    GRADIENT_CLIP_NORM = 5.0

    # Additions of this project (not in matterport).
    # Compute in lower precision with float32 variables; losses, box decoding and NMS stay float32.
    # False or "float32"; True or "float16" (mixed_float16: GPUs with tensor cores, with loss scaling);
    # "bfloat16" (mixed_bfloat16: about twice as fast on CPUs with AVX512-BF16 or AMX, and on recent GPUs).
    MIXED_PRECISION = False
    # "sgd" (matterport: SGD with momentum) or "adamw" (AdamW; converges faster when training from scratch).
    OPTIMIZER = "sgd"
    # Compile the backbone + FPN with XLA (the rest of the step has data-dependent shapes).
    JIT_COMPILE = False
    # At float32 inference on a CPU, run the wide 3x3 convolutions on large maps (the RPN's and the FPN's on P2-P4,
    # ResNet stage 4 at 1024 px) and the mask head's (32 ROIs at a time) by Winograd's algorithm
    # (mrcnn.winograd): 4x fewer multiplications, the same result up to rounding (about 2e-5 of the largest
    # output). Not used in training, in bfloat16, on GPUs, or in exported SavedModels.
    WINOGRAD = True
    # Add the ground-truth boxes to the proposals the heads are trained on (as detectron2 does):
    # gives the heads positives from the first step, which matters when training from scratch.
    PROPOSALS_APPEND_GT = True
    # Channels of the RPN's shared 3x3 convolution (matterport: 512). It runs on every pyramid level, P2
    # included, so it costs about as much as the backbone; light configs use less.
    RPN_HEAD_DEPTH = 512
    # Channels of the mask head's convolutions (matterport: 256). Smaller is much faster for light configs.
    MASK_HEAD_DEPTH = 256
    # Parallel workers that load and augment training images (keras.utils.PyDataset).
    DATA_WORKERS = 2
    # Seed for the detection-target sampling and the data order.
    SEED = None

    def __init__(self) -> None:
        self.BATCH_SIZE = self.IMAGES_PER_GPU * self.GPU_COUNT
        if self.IMAGE_RESIZE_MODE == "crop":
            self.IMAGE_SHAPE = np.array([self.IMAGE_MIN_DIM, self.IMAGE_MIN_DIM, self.IMAGE_CHANNEL_COUNT])
        else:
            self.IMAGE_SHAPE = np.array([self.IMAGE_MAX_DIM, self.IMAGE_MAX_DIM, self.IMAGE_CHANNEL_COUNT])
        # image_id (1) + original_image_shape (3) + image_shape (3) + window (4) + scale (1) + active_class_ids
        self.IMAGE_META_SIZE = 1 + 3 + 3 + 4 + 1 + self.NUM_CLASSES

    def to_dict(self) -> dict:
        """All upper-case attributes (derived ones included) as a plain dict."""
        return {
            name: getattr(self, name)
            for name in sorted(dir(self))
            if not name.startswith("__") and name.isupper() and not callable(getattr(self, name))
        }

    def display(self) -> None:
        """Print the configuration, one attribute per line."""
        print("\nConfigurations:")
        for key, value in self.to_dict().items():
            print(f"{key:30} {value}")
        print("\n")
