"""Input pipeline: ground-truth loading with augmentation, and the training PyDataset (molding and the image meta
are in :mod:`mrcnn.transform`).

The pipeline is a ``keras.utils.PyDataset`` whose workers (threads) load, resize and augment images in
parallel with the train step; targets are computed on the accelerator inside ``train_step``, so a worker
only decodes and resizes.

Augmentation takes an albumentations transform (``A.Compose([...])``), applied to the image and every instance
mask together; an imgaug augmenter (matterport's scripts) is accepted when imgaug is installed.
"""

from __future__ import annotations

import copy
import logging
import threading
import warnings

import keras
import numpy as np

from . import transform, utils
from .dataset import DatasetError
# The meta vector and the mean-pixel molding live in mrcnn.transform; re-exported: matterport's names.
from .transform import compose_image_meta, mold_image, parse_image_meta, unmold_image

__all__ = ["compose_image_meta", "parse_image_meta", "mold_image", "unmold_image", "load_image_gt",
           "MaskRCNNSequence", "data_generator", "build_rpn_targets", "apply_augmentation", "seed_augmentation"]

log = logging.getLogger(__name__)


def _is_imgaug(augmentation) -> bool:
    return hasattr(augmentation, "to_deterministic")


def seed_augmentation(augmentation, seed: int):
    """Seed the random draws of an albumentations pipeline (each transform, nested ones included, gets its own
    seed derived from ``seed``: one seed for all would make their draws equal, e.g. both flips always together)
    or of an imgaug augmenter. Returns the augmentation; a plain callable is returned as it is."""
    if _is_imgaug(augmentation):
        augmentation.seed_(int(seed))
        return augmentation
    if not hasattr(augmentation, "set_random_seed"):
        return augmentation
    augmentation.set_random_seed(int(seed))
    children = list(getattr(augmentation, "transforms", None) or [])
    for child, child_seed in zip(children, np.random.SeedSequence(int(seed)).generate_state(len(children))):
        seed_augmentation(child, int(child_seed))
    return augmentation


def apply_augmentation(augmentation, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Augment an image [H, W, 3] and its masks [H, W, N] with the same random transform.

    Args:
        augmentation: an albumentations transform (called as ``aug(image=..., masks=[...])``), an imgaug
            augmenter, or a callable ``f(image, mask) -> (image, mask)``.

    Returns:
        (image, mask) with the mask still bool [H', W', N].
    """
    if _is_imgaug(augmentation):
        # imgaug: the same deterministic augmenter for both; masks are not changed by colour augmenters.
        import imgaug  # only installed for matterport scripts

        mask_augmenters = {"Sequential", "SomeOf", "OneOf", "Sometimes", "Fliplr", "Flipud", "CropAndPad",
                           "Affine", "PiecewiseAffine", "Rot90", "Crop", "Pad", "Resize"}

        def hook(images, augmenter, parents, default):
            return augmenter.__class__.__name__ in mask_augmenters

        det = augmentation.to_deterministic()
        image_out = det.augment_image(image)
        mask_out = det.augment_image(mask.astype(np.uint8), hooks=imgaug.HooksImages(activator=hook))
        return image_out, mask_out.astype(bool)
    if hasattr(augmentation, "processors") or type(augmentation).__module__.startswith("albumentations"):
        masks = [mask[..., i].astype(np.uint8) for i in range(mask.shape[-1])]
        out = augmentation(image=image, masks=masks) if masks else augmentation(image=image)
        image_out = out["image"]
        if masks:
            mask_out = np.stack([np.asarray(m) for m in out["masks"]], axis=-1).astype(bool)
        else:
            mask_out = np.zeros(image_out.shape[:2] + (0,), dtype=bool)
        return image_out, mask_out
    return augmentation(image, mask)


def load_image_gt(dataset, config, image_id, augment=False, augmentation=None, use_mini_mask=False):
    """Load an image with its ground truth, resized (and augmented) for the network.

    The arguments are matterport's, in its order. ``augment`` is matterport's deprecated left-right flip of half
    the images; ``augmentation`` (albumentations, or an imgaug augmenter where imgaug is installed) replaces it.

    Returns:
        image uint8 [H, W, 3], image_meta float32 [META], class_ids int32 [N], bbox int32 [N, (y1, x1, y2, x2)]
        pixels of the resized image, mask bool [H, W, N] (or [mini_h, mini_w, N] with ``use_mini_mask``).
        Instances whose mask is empty after resizing/augmentation are dropped.

    Raises:
        DatasetError (a ValueError): the mask does not match the image size, or the masks their class ids (names
            the image).
    """
    image = dataset.load_image(image_id)
    mask, class_ids = dataset.load_mask(image_id)
    mask = np.asarray(mask)
    class_ids = np.asarray(class_ids, dtype=np.int32)
    if mask.ndim != 3 or (mask.shape[-1] and mask.shape[:2] != image.shape[:2]):
        if not (mask.ndim == 3 and mask.shape[-1] == 0):
            raise DatasetError(
                f"{dataset.image_reference(image_id)}: mask shape {mask.shape} does not match image shape "
                f"{image.shape[:2]} (expected [H, W, N] with the image's H and W)")
    if mask.shape[-1] == 0:
        mask = np.zeros(image.shape[:2] + (0,), dtype=bool)
    if len(class_ids) != mask.shape[-1]:
        raise DatasetError(f"{dataset.image_reference(image_id)}: {mask.shape[-1]} masks but {len(class_ids)} class "
                           "ids")
    original_shape = image.shape
    image, window, scale, padding, crop = transform.resize_image(
        image, min_dim=config.IMAGE_MIN_DIM, min_scale=config.IMAGE_MIN_SCALE, max_dim=config.IMAGE_MAX_DIM,
        mode=transform.training_resize_mode(config.IMAGE_RESIZE_MODE))
    mask = transform.resize_mask(mask, scale, padding, crop)

    if augment:
        warnings.warn("load_image_gt(augment=True) is deprecated (as in matterport); use augmentation instead",
                      DeprecationWarning, stacklevel=2)
        if np.random.randint(0, 2):
            image, mask = np.fliplr(image), np.fliplr(mask)
    if augmentation is not None:
        image_shape, mask_shape = image.shape, mask.shape
        image, mask = apply_augmentation(augmentation, image, mask)
        if image.shape != image_shape or mask.shape[:2] != mask_shape[:2]:
            raise ValueError("Augmentation must not change the image size (use it for flips, rotations by 90 "
                             "degrees on square inputs, affine warps and colour); got "
                             f"{image_shape} -> {image.shape}")
        mask = mask.astype(bool)

    # Drop instances that vanished (cropped out or lost in resizing).
    keep = np.sum(mask, axis=(0, 1)) > 0
    mask = mask[:, :, keep]
    class_ids = class_ids[keep]
    bbox = utils.extract_bboxes(mask)

    active_class_ids = np.zeros([dataset.num_classes], dtype=np.int32)
    source_class_ids = dataset.source_class_ids[dataset.image_info[image_id]["source"]]
    active_class_ids[source_class_ids] = 1
    if use_mini_mask:
        mask = transform.minimize_mask(bbox, mask, config.MINI_MASK_SHAPE)
    image_meta = compose_image_meta(image_id, original_shape, image.shape, window, scale, active_class_ids)
    return image, image_meta, class_ids, bbox.astype(np.int32), mask


class MaskRCNNSequence(keras.utils.PyDataset):
    """Training batches for :class:`mrcnn.network.MaskRCNNModel`, loaded by parallel worker threads.

    One "epoch" is ``steps`` batches; images are visited in a shuffled order that continues across epochs, so
    every image is seen equally often whatever STEPS_PER_EPOCH is.

    Several workers of one run (``shard=(index, count)``, :func:`mrcnn.distribute.input_shard`) follow the same order
    (give them the same ``seed``): each step takes ``count`` x ``batch_size`` images of it, and worker ``index`` loads
    its own ``batch_size`` of them, so no image is loaded by two workers in a step or an epoch.

    Each item is a dict: ``input_image`` float32 [B, H, W, 3] (molded), ``input_image_meta`` [B, META],
    ``input_gt_class_ids`` int32 [B, MAX_GT_INSTANCES], ``input_gt_boxes`` int32 [B, MAX_GT_INSTANCES, 4],
    ``input_gt_masks`` uint8 0/1 [B, mh, mw, MAX_GT_INSTANCES].
    """

    def __init__(self, dataset, config, shuffle: bool = True, augmentation=None, steps: int | None = None,
                 workers: int | None = None, seed: int | None = None, no_augmentation_sources=None,
                 max_queue_size: int = 10, initial_epoch: int = 0, batch_size: int | None = None,
                 shard: tuple[int, int] = (0, 1)):
        workers = int(workers if workers is not None else getattr(config, "DATA_WORKERS", 2))
        super().__init__(workers=max(workers, 1), use_multiprocessing=False, max_queue_size=max_queue_size)
        if not len(dataset.image_ids):
            raise ValueError("The dataset has no images (did you call dataset.prepare()?)")
        self.dataset = dataset
        self.config = config
        self.shuffle = shuffle
        self.augmentation = augmentation
        self.no_augmentation_sources = set(no_augmentation_sources or [])
        self.batch_size = int(batch_size if batch_size is not None else config.BATCH_SIZE)
        self.shard_index, self.shard_count = (int(v) for v in shard)
        if not 0 <= self.shard_index < self.shard_count:
            raise ValueError(f"shard must be (index, count) with 0 <= index < count, got {shard}")
        # The images of one step across all workers.
        self.global_batch = self.batch_size * self.shard_count
        self.steps = int(steps) if steps else int(np.ceil(len(dataset.image_ids) / self.global_batch))
        self.rng = np.random.default_rng(seed if seed is not None else getattr(config, "SEED", None))
        # Augmentation draws are seeded image by image from the batch position (a copy of the pipeline per worker
        # thread), so they depend neither on thread scheduling nor on where a run was interrupted and resumed.
        self._seeded_augmentation = augmentation is not None and (
            _is_imgaug(augmentation) or hasattr(augmentation, "set_random_seed"))
        self._local = threading.local()
        self.epoch = 0
        self._order = self._make_order(0)
        for _ in range(int(initial_epoch)):  # The order of epoch initial_epoch, as if the earlier ones had run.
            self.on_epoch_end()
        # The first DatasetError of a worker: Keras hands a loader's exception on from its tf.data pipeline wrapped
        # in a TensorFlow error whose message is the whole traceback; MaskRCNN.train raises this one instead.
        self.data_error: DatasetError | None = None

    def _thread_augmentation(self):
        """This worker thread's copy of the augmentation (pipelines keep their random state on the object)."""
        aug = getattr(self._local, "augmentation", None)
        if aug is None:
            aug = self._local.augmentation = copy.deepcopy(self.augmentation)
        return aug

    def _make_order(self, epoch: int) -> np.ndarray:
        ids = np.array(self.dataset.image_ids)
        needed = (epoch + 1) * self.steps * self.global_batch
        reps = int(np.ceil(needed / len(ids))) + 1
        orders = []
        rng = np.random.default_rng(self.rng.integers(1 << 31)) if self.shuffle else None
        for _ in range(reps):
            orders.append(rng.permutation(ids) if self.shuffle else ids)
        return np.concatenate(orders)

    def __len__(self) -> int:
        return self.steps

    def on_epoch_end(self):
        self.epoch += 1
        self._order = self._make_order(self.epoch)

    def __getitem__(self, index: int):
        cfg = self.config
        start = (self.epoch * self.steps + index) * self.global_batch + self.shard_index * self.batch_size
        ids = self._order[start:start + self.batch_size]
        max_gt = int(cfg.MAX_GT_INSTANCES)
        h, w = int(cfg.IMAGE_SHAPE[0]), int(cfg.IMAGE_SHAPE[1])
        mh, mw = (cfg.MINI_MASK_SHAPE if cfg.USE_MINI_MASK else (h, w))
        batch = {
            "input_image": np.zeros([len(ids), h, w, int(cfg.IMAGE_SHAPE[2])], np.float32),
            "input_image_meta": np.zeros([len(ids), cfg.IMAGE_META_SIZE], np.float32),
            "input_gt_class_ids": np.zeros([len(ids), max_gt], np.int32),
            "input_gt_boxes": np.zeros([len(ids), max_gt, 4], np.int32),
            # 0/1 uint8, not bool: a bool array's dtype is named "bool8" under the `np.bool = bool` shim that old
            # matterport scripts set for NumPy 2, and Keras refuses that name; the model casts the masks anyway.
            "input_gt_masks": np.zeros([len(ids), mh, mw, max_gt], np.uint8),
        }
        # Each worker thread gets its own generator, derived from the batch position, so results are
        # reproducible whatever the thread scheduling.
        rng = np.random.default_rng([int(self.rng.bit_generator.seed_seq.entropy or 0) % (1 << 32), start])
        for i, image_id in enumerate(ids):
            source = self.dataset.image_info[image_id]["source"]
            aug = None if source in self.no_augmentation_sources else self.augmentation
            if aug is not None and self._seeded_augmentation:
                aug = seed_augmentation(self._thread_augmentation(), int(rng.integers(1 << 31)))
            try:
                image, meta, class_ids, boxes, masks = load_image_gt(
                    self.dataset, cfg, image_id, augmentation=aug, use_mini_mask=cfg.USE_MINI_MASK)
            except DatasetError as error:
                if self.data_error is None:
                    self.data_error = error
                raise
            if len(class_ids) > max_gt:
                keep = rng.choice(len(class_ids), max_gt, replace=False)
                class_ids, boxes, masks = class_ids[keep], boxes[keep], masks[..., keep]
            n = len(class_ids)
            batch["input_image"][i] = mold_image(image, cfg)
            batch["input_image_meta"][i] = meta
            batch["input_gt_class_ids"][i, :n] = class_ids
            batch["input_gt_boxes"][i, :n] = boxes
            batch["input_gt_masks"][i, :, :, :n] = masks
        return batch


def build_rpn_targets(image_shape, anchors, gt_class_ids, gt_boxes, config):
    """matterport's RPN targets of one image, in NumPy: which anchors are positive, negative or neutral, and the
    box deltas of the positives.

    The same targets the train step computes on the device (:func:`mrcnn.targets.rpn_targets`, which this calls on
    one image): an anchor is positive at IoU >= ``RPN_POSITIVE_IOU`` (0.7) with a ground-truth box, and every box's
    best anchor is positive too; negative below ``RPN_NEGATIVE_IOU`` (0.3) when it does not touch a crowd box
    (``gt_class_ids < 0``); ``RPN_TRAIN_ANCHORS_PER_IMAGE`` anchors are sampled, at most half of them positive, the
    rest neutral.

    Args:
        image_shape: the molded image's shape ``(H, W[, C])``.
        anchors: [A, (y1, x1, y2, x2)] in pixels of the molded image (``MaskRCNN.get_anchors()``).
        gt_class_ids: [G] int class ids (negative: crowd).
        gt_boxes: [G, (y1, x1, y2, x2)] in pixels.
        config: the model's :class:`mrcnn.config.Config`.

    Returns:
        rpn_match: int32 [A]: 1 positive, -1 negative, 0 neutral.
        rpn_bbox: float32 [RPN_TRAIN_ANCHORS_PER_IMAGE, (dy, dx, log(dh), log(dw))]: the positive anchors' deltas
        divided by ``RPN_BBOX_STD_DEV``, in anchor order, zero-padded.
    """
    shape = tuple(int(v) for v in image_shape[:2])
    return _rpn_targets_of_image(utils.norm_boxes(anchors, shape), gt_class_ids, gt_boxes, shape, config)


def _rpn_targets_of_image(anchors: np.ndarray, gt_class_ids, gt_boxes, shape: tuple[int, int], config):
    """:func:`build_rpn_targets` with ``anchors`` [A, 4] already normalised to ``shape`` (height, width)."""
    from .targets import rpn_targets

    per_image = int(config.RPN_TRAIN_ANCHORS_PER_IMAGE)
    gt_class_ids = np.asarray(gt_class_ids, np.int32).reshape(-1)
    gt_boxes = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
    if len(gt_class_ids) != len(gt_boxes):
        raise ValueError(f"build_rpn_targets: {len(gt_class_ids)} class ids but {len(gt_boxes)} boxes")
    if not len(gt_class_ids):  # No instance: one padding column (class 0), so every anchor can be negative.
        gt_class_ids, gt_boxes = np.zeros([1], np.int32), np.zeros([1, 4], np.float32)
    match, deltas = rpn_targets(
        np.asarray(anchors, np.float32), gt_class_ids[None], utils.norm_boxes(gt_boxes, shape)[None], per_image,
        float(getattr(config, "RPN_POSITIVE_IOU", 0.7)), float(getattr(config, "RPN_NEGATIVE_IOU", 0.3)),
        [float(v) for v in config.RPN_BBOX_STD_DEV])
    match, deltas = match.numpy()[0].astype(np.int32), deltas.numpy()[0]
    rpn_bbox = np.zeros([per_image, 4], np.float32)
    positive = deltas[match == 1][:per_image]  # in anchor order
    rpn_bbox[:len(positive)] = positive
    return match, rpn_bbox


def data_generator(dataset, config, shuffle=True, augment=False, augmentation=None, random_rois=0, batch_size=1,
                   detection_targets=False, no_augmentation_sources=None):
    """matterport's endless generator of training batches, for scripts and notebooks that inspect them.

    Training does not use it (:class:`MaskRCNNSequence` feeds ``train``, and the RPN targets are computed inside
    the train step); this is the same data in matterport's layout, the RPN targets computed here. Images with no
    instance are skipped, as in matterport.

    Yields:
        ``inputs, outputs``: inputs = [images float32 [B, H, W, C] (molded), image_meta [B, META],
        rpn_match int32 [B, anchors, 1] (1 positive, -1 negative, 0 neutral), rpn_bbox float32
        [B, RPN_TRAIN_ANCHORS_PER_IMAGE, 4] (the positive anchors' deltas / RPN_BBOX_STD_DEV, in anchor order,
        zero-padded), gt_class_ids int32 [B, MAX_GT_INSTANCES], gt_boxes int32 [B, MAX_GT_INSTANCES, 4] pixels,
        gt_masks bool [B, h, w, MAX_GT_INSTANCES]]; outputs = [].
    """
    from .anchors import anchor_settings, anchors_for_size

    if random_rois or detection_targets:
        raise NotImplementedError(
            "data_generator(random_rois=..., detection_targets=True) is not supported: the heads' ROIs and their "
            "targets are sampled inside the train step (mrcnn.targets.detection_targets) from the RPN's proposals")
    image_ids = np.copy(dataset.image_ids)
    if not len(image_ids):
        raise ValueError("The dataset has no images (did you call dataset.prepare()?)")
    no_augmentation_sources = set(no_augmentation_sources or [])
    shape = [int(v) for v in config.IMAGE_SHAPE]
    anchors = anchors_for_size(shape[:2], shape[2], **anchor_settings(config))  # The model's anchors.
    max_gt = int(config.MAX_GT_INSTANCES)
    mh, mw = config.MINI_MASK_SHAPE if config.USE_MINI_MASK else shape[:2]
    index, skipped = -1, 0
    while True:
        batch = [[] for _ in range(7)]
        while len(batch[0]) < batch_size:
            index = (index + 1) % len(image_ids)
            if shuffle and index == 0:
                np.random.shuffle(image_ids)
            image_id = image_ids[index]
            source = dataset.image_info[image_id]["source"]
            image, meta, class_ids, boxes, masks = load_image_gt(
                dataset, config, image_id, augment=augment,
                augmentation=None if source in no_augmentation_sources else augmentation,
                use_mini_mask=config.USE_MINI_MASK)
            if not np.any(class_ids > 0):
                skipped += 1
                if skipped >= len(image_ids):
                    raise ValueError("No image of the dataset has an instance to train on")
                continue
            skipped = 0
            if len(class_ids) > max_gt:
                keep = np.random.choice(len(class_ids), max_gt, replace=False)
                class_ids, boxes, masks = class_ids[keep], boxes[keep], masks[..., keep]
            match, rpn_bbox = _rpn_targets_of_image(anchors, class_ids, boxes, shape[:2], config)
            n = len(class_ids)
            gt_class_ids, gt_boxes = np.zeros([max_gt], np.int32), np.zeros([max_gt, 4], np.int32)
            gt_masks = np.zeros([mh, mw, max_gt], bool)
            gt_class_ids[:n], gt_boxes[:n], gt_masks[..., :n] = class_ids, boxes, masks
            for slot, value in zip(batch, (mold_image(image, config), meta, match[:, None].astype(np.int32),
                                           rpn_bbox, gt_class_ids, gt_boxes, gt_masks)):
                slot.append(value)
        yield [np.stack(b) for b in batch], []
