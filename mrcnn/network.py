"""``MaskRCNNModel``: the Keras model, one for training and inference.

- ``call(inputs)`` is the inference graph: image + meta -> detections, class probabilities and masks.
- ``train_step`` / ``test_step`` compute the RPN and head targets from the ground truth, run the heads on the
  sampled ROIs, and return the five losses (computed by :mod:`mrcnn.losses`).

The model never reads a Config: :func:`model_kwargs` turns a Config into constructor arguments once, and
``get_config`` returns them, so the model saves to ``.keras`` and exports as a SavedModel.

Inputs (dict keys):

- ``input_image``: float32 [B, H, W, 3], molded (mean pixel subtracted).
- ``input_image_meta``: float32 [B, 12 + NUM_CLASSES] (see :func:`mrcnn.transform.compose_image_meta`).
- training only: ``input_gt_class_ids`` int32 [B, G] (0 padding), ``input_gt_boxes`` [B, G, (y1, x1, y2, x2)]
  pixels, ``input_gt_masks`` uint8 0/1 (or bool) [B, mh, mw, G] (mini masks when USE_MINI_MASK).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from .anchors import anchor_settings, anchors_for_size
from .backbone import build_backbone
from .boxes import norm_boxes_tf
from .config import check_image_size
from .detection import DetectionLayer
from .distribute import is_multi_worker
from .heads import build_box_head, build_mask_head, build_rpn_model
from .layers import BatchNorm, set_winograd
from .losses import LOSS_NAMES, mask_rcnn_losses
from .proposals import ProposalLayer
from .roi_align import PyramidROIAlign
from .targets import detection_targets, rpn_targets

__all__ = ["MaskRCNNModel", "ReplicaSeedGenerator", "model_kwargs"]


def model_kwargs(config) -> dict:
    """Constructor arguments of :class:`MaskRCNNModel` from a :class:`mrcnn.config.Config`."""
    return dict(
        num_classes=int(config.NUM_CLASSES),
        image_shape=[int(s) for s in config.IMAGE_SHAPE],
        # A callable backbone must keep the strides of BACKBONE_STRIDES: the pyramid shapes come from them.
        backbone=config.BACKBONE,
        pyramid_size=int(config.TOP_DOWN_PYRAMID_SIZE),
        fc_size=int(config.FPN_CLASSIF_FC_LAYERS_SIZE),
        **anchor_settings(config),
        rpn_positive_iou=float(getattr(config, "RPN_POSITIVE_IOU", 0.7)),
        rpn_negative_iou=float(getattr(config, "RPN_NEGATIVE_IOU", 0.3)),
        rpn_nms_threshold=float(config.RPN_NMS_THRESHOLD),
        rpn_train_anchors_per_image=int(config.RPN_TRAIN_ANCHORS_PER_IMAGE),
        pre_nms_limit=int(config.PRE_NMS_LIMIT),
        post_nms_rois_training=int(config.POST_NMS_ROIS_TRAINING),
        post_nms_rois_inference=int(config.POST_NMS_ROIS_INFERENCE),
        rpn_bbox_std_dev=[float(s) for s in config.RPN_BBOX_STD_DEV],
        bbox_std_dev=[float(s) for s in config.BBOX_STD_DEV],
        pool_size=int(config.POOL_SIZE),
        mask_pool_size=int(config.MASK_POOL_SIZE),
        mask_shape=[int(s) for s in config.MASK_SHAPE],
        train_rois_per_image=int(config.TRAIN_ROIS_PER_IMAGE),
        roi_positive_ratio=float(config.ROI_POSITIVE_RATIO),
        detection_max_instances=int(config.DETECTION_MAX_INSTANCES),
        detection_min_confidence=float(config.DETECTION_MIN_CONFIDENCE),
        detection_nms_threshold=float(config.DETECTION_NMS_THRESHOLD),
        detection_class_agnostic_nms=bool(config.DETECTION_CLASS_AGNOSTIC_NMS),
        use_mini_mask=bool(config.USE_MINI_MASK),
        mask_head_depth=int(getattr(config, "MASK_HEAD_DEPTH", 256)),
        rpn_head_depth=int(getattr(config, "RPN_HEAD_DEPTH", 512)),
        proposals_append_gt=bool(getattr(config, "PROPOSALS_APPEND_GT", True)),
        train_bn=config.TRAIN_BN,
        sync_bn=bool(getattr(config, "SYNC_BATCH_NORM", False)),
        jit_compile_backbone=bool(getattr(config, "JIT_COMPILE", False)),
        winograd=bool(getattr(config, "WINOGRAD", True)),
        loss_weights={k: float(v) for k, v in config.LOSS_WEIGHTS.items()},
        seed=getattr(config, "SEED", None),
    )


class ReplicaSeedGenerator(keras.random.SeedGenerator):
    """A ``keras.random.SeedGenerator`` whose seeds differ between the replicas of a ``tf.distribute`` strategy.

    Every replica advances the same (mirrored) state; the replica's number is added to the first word of each seed
    drawn, so the replicas sample anchors and ROIs independently. Outside a strategy, or with one replica, it is the
    plain generator.
    """

    def next(self, ordered=True):
        seed = super().next(ordered=ordered)
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return seed
        replica = tf.cast(context.replica_id_in_sync_group, seed.dtype)
        return seed + tf.stack([replica, tf.zeros_like(replica)])


@keras.saving.register_keras_serializable(package="mrcnn")
class MaskRCNNModel(keras.Model):
    """Mask R-CNN with an FPN backbone. See the module docstring for inputs and outputs."""

    def __init__(self, num_classes: int, image_shape, backbone="resnet101", pyramid_size: int = 256,
                 fc_size: int = 1024, backbone_strides=(4, 8, 16, 32, 64),
                 anchor_scales=(32, 64, 128, 256, 512), anchor_ratios=(0.5, 1, 2), anchor_stride: int = 1,
                 anchor_scales_per_octave: int = 1, rpn_positive_iou: float = 0.7, rpn_negative_iou: float = 0.3,
                 rpn_nms_threshold: float = 0.7, rpn_train_anchors_per_image: int = 256,
                 pre_nms_limit: int = 6000, post_nms_rois_training: int = 2000,
                 post_nms_rois_inference: int = 1000, rpn_bbox_std_dev=(0.1, 0.1, 0.2, 0.2),
                 bbox_std_dev=(0.1, 0.1, 0.2, 0.2), pool_size: int = 7, mask_pool_size: int = 14,
                 mask_shape=(28, 28), train_rois_per_image: int = 200, roi_positive_ratio: float = 0.33,
                 detection_max_instances: int = 100, detection_min_confidence: float = 0.7,
                 detection_nms_threshold: float = 0.3, detection_class_agnostic_nms: bool = False,
                 use_mini_mask: bool = True,
                 proposals_append_gt: bool = True, mask_head_depth: int = 256,
                 rpn_head_depth: int = 512, train_bn=False, sync_bn: bool = False, jit_compile_backbone: bool = False,
                 winograd: bool = True, loss_weights=None, seed=None, compute_backbone_shape=None, **kwargs):
        kwargs.setdefault("name", "mask_rcnn")
        super().__init__(**kwargs)
        self.settings = dict(
            num_classes=num_classes, image_shape=list(image_shape), backbone=backbone, pyramid_size=pyramid_size,
            fc_size=fc_size, backbone_strides=list(backbone_strides), anchor_scales=list(anchor_scales),
            anchor_ratios=list(anchor_ratios), anchor_stride=anchor_stride,
            anchor_scales_per_octave=anchor_scales_per_octave, rpn_positive_iou=rpn_positive_iou,
            rpn_negative_iou=rpn_negative_iou, rpn_nms_threshold=rpn_nms_threshold,
            rpn_train_anchors_per_image=rpn_train_anchors_per_image, pre_nms_limit=pre_nms_limit,
            post_nms_rois_training=post_nms_rois_training, post_nms_rois_inference=post_nms_rois_inference,
            rpn_bbox_std_dev=list(rpn_bbox_std_dev), bbox_std_dev=list(bbox_std_dev), pool_size=pool_size,
            mask_pool_size=mask_pool_size, mask_shape=list(mask_shape), train_rois_per_image=train_rois_per_image,
            roi_positive_ratio=roi_positive_ratio, detection_max_instances=detection_max_instances,
            detection_min_confidence=detection_min_confidence, detection_nms_threshold=detection_nms_threshold,
            detection_class_agnostic_nms=detection_class_agnostic_nms,
            use_mini_mask=use_mini_mask, proposals_append_gt=proposals_append_gt,
            mask_head_depth=mask_head_depth, rpn_head_depth=rpn_head_depth, train_bn=train_bn, sync_bn=sync_bn,
            jit_compile_backbone=jit_compile_backbone, winograd=winograd,
            loss_weights=dict(loss_weights or {name: 1.0 for name in LOSS_NAMES}), seed=seed,
            compute_backbone_shape=compute_backbone_shape)
        s = self.settings
        self.num_classes = int(num_classes)
        self.image_shape = tuple(int(v) for v in image_shape)
        self._anchors_by_size = {}  # molded size (H, W) -> anchors; "fit" / "pad64" / "none" add sizes
        self.anchors = self.anchors_for(self.image_shape[:2])

        self.backbone = build_backbone(self.image_shape, backbone, pyramid_size, train_bn)
        self.rpn = build_rpn_model(anchor_stride, anchor_scales_per_octave * len(s["anchor_ratios"]), pyramid_size,
                                   rpn_head_depth)
        self.box_head = build_box_head(pool_size, pyramid_size, num_classes, fc_size, train_bn)
        self.mask_head = build_mask_head(mask_pool_size, pyramid_size, num_classes, train_bn, mask_head_depth)
        self.roi_align = PyramidROIAlign(pool_size, self.image_shape, name="roi_align_classifier")
        self.mask_roi_align = PyramidROIAlign(mask_pool_size, self.image_shape, name="roi_align_mask")
        self.proposals_training = ProposalLayer(post_nms_rois_training, rpn_nms_threshold, pre_nms_limit,
                                                rpn_bbox_std_dev, name="ROI")
        self.proposals_inference = ProposalLayer(post_nms_rois_inference, rpn_nms_threshold, pre_nms_limit,
                                                 rpn_bbox_std_dev, name="ROI_inference")
        self.detection = DetectionLayer(detection_max_instances, detection_min_confidence,
                                        detection_nms_threshold, bbox_std_dev,
                                        class_agnostic=detection_class_agnostic_nms, name="mrcnn_detection")
        if sync_bn:
            # Training BatchNorm takes its statistics over the global batch (every replica's images).
            for layer in self._flatten_layers(include_self=False, recursive=True):
                if isinstance(layer, BatchNorm):
                    layer.synchronized = True
        self.seed_generator = ReplicaSeedGenerator(seed)
        self.loss_trackers = {name: keras.metrics.Mean(name=name) for name in ("loss",) + LOSS_NAMES}
        # XLA compiles the backbone + FPN only: the rest has data-dependent shapes (NMS, sampling) that XLA
        # cannot compile, and the backbone is where the FLOPs are.
        self._backbone_xla = (tf.function(self.backbone.__call__, jit_compile=True, reduce_retracing=True)
                              if jit_compile_backbone else None)
        # Winograd's algorithm for the large 3x3 convolutions at inference on CPUs (see mrcnn.winograd); on a GPU,
        # cuDNN already chooses its own algorithm.
        self.winograd = bool(winograd) and not tf.config.list_physical_devices("GPU")
        set_winograd(self, self.winograd)
        # Every sub-network is a functional model, built at construction.
        self.built = True

    def get_config(self):
        config = super().get_config()
        config.update(self.settings)
        if callable(config["backbone"]) or config["compute_backbone_shape"] is not None:
            raise TypeError("A model with a callable BACKBONE cannot be serialised; save its weights instead")
        return config

    @property
    def metrics(self):
        return list(self.loss_trackers.values())

    # ----------------------------------------------------------------------------------------------------
    # Pieces of the forward pass.

    def features(self, images, training=False):
        """[P2, P3, P4, P5, P6] feature maps of molded images."""
        if self._backbone_xla is not None:
            return self._backbone_xla(images, training=bool(training))
        return self.backbone(images, training=training)

    def rpn_outputs(self, feature_maps, training=False):
        """RPN on every level, concatenated: logits [B, A, 2], probs [B, A, 2], deltas [B, A, 4]."""
        outputs = [self.rpn(p, training=training) for p in feature_maps]
        return [tf.concat([o[i] for o in outputs], axis=1) for i in range(3)]

    def classify(self, rois, feature_maps, training=False, image_shape=None):
        """Box head on [B, N, 4] ROIs: logits [B, N, C], probs [B, N, C], deltas [B, N, C, 4]."""
        batch, n = tf.shape(rois)[0], tf.shape(rois)[1]
        pooled = self.roi_align(rois, feature_maps[:4], image_shape=image_shape)  # [B*N, pool, pool, depth]
        logits, probs, deltas = self.box_head(pooled, training=training)
        c = self.num_classes
        return (tf.reshape(logits, [batch, n, c]), tf.reshape(probs, [batch, n, c]),
                tf.reshape(deltas, [batch, n, c, 4]))

    def window(self, image_meta, image_shape=None):
        """Normalised window [B, 4] of the real image inside the molded one, from the image meta."""
        return norm_boxes_tf(tf.cast(image_meta[:, 7:11], tf.float32), image_shape or self.image_shape[:2])

    def input_size(self, images) -> tuple[int, int]:
        """(H, W) of a batch of molded images: its static size (every traced inference function has one), or
        the size the model was built for."""
        h, w = images.shape[1], images.shape[2]
        if h is None or w is None:
            return self.image_shape[:2]
        check_image_size(int(h), int(w), "Molded images", "check IMAGE_RESIZE_MODE, IMAGE_MIN_DIM and IMAGE_MAX_DIM")
        return int(h), int(w)

    def anchors_for(self, size) -> np.ndarray:
        """Normalised anchors of a molded input of ``size`` (H, W), computed once per size."""
        size = (int(size[0]), int(size[1]))
        if size not in self._anchors_by_size:
            s = self.settings
            self._anchors_by_size[size] = anchors_for_size(size, self.image_shape[2], **{
                k: s[k] for k in ("backbone_strides", "anchor_scales", "anchor_ratios", "anchor_stride",
                                  "anchor_scales_per_octave", "compute_backbone_shape")})
        return self._anchors_by_size[size]

    # ----------------------------------------------------------------------------------------------------
    # Inference.

    def call(self, inputs, training=False):
        """Inference: ``{"input_image", "input_image_meta"}`` -> dict with

        - ``detections`` [B, D, (y1, x1, y2, x2, class_id, score)] normalised, zero-padded;
        - ``class_probs`` [B, D, C];
        - ``masks`` [B, D, mask_h, mask_w] probabilities of each detection's own class.
        """
        images = inputs["input_image"]
        image_meta = inputs["input_image_meta"]
        size = self.input_size(images)
        feature_maps = self.features(images, training=False)
        _, rpn_probs, rpn_bbox = self.rpn_outputs(feature_maps)
        proposals = self.proposals_inference(rpn_probs, rpn_bbox, tf.constant(self.anchors_for(size)))
        _, probs, deltas = self.classify(proposals, feature_maps, image_shape=size)
        detections, class_probs = self.detection(proposals, probs, deltas, self.window(image_meta, size))

        # Masks only for the real detections (usually far fewer than D): gather them into a flat batch.
        class_ids = tf.cast(detections[..., 4], tf.int32)
        where = tf.cast(tf.where(class_ids > 0), tf.int32)  # [K, (batch, slot)]
        boxes = tf.gather_nd(detections[..., :4], where)
        pooled = self.mask_roi_align(boxes, feature_maps[:4], box_indices=where[:, 0], image_shape=size)
        # One zero row is appended and dropped again: convolutions on an empty batch (no detections) fail
        # on some CPU kernels.
        k = tf.shape(pooled)[0]
        pooled = tf.concat([pooled, tf.zeros(
            tf.concat([[1], tf.shape(pooled)[1:]], 0), pooled.dtype)], axis=0)
        logits = self.mask_head(pooled, training=False)[:k]  # [K, h, w, C]
        # Keep each detection's own class: [K, h, w, C] -> [K, C, h, w] -> [K, h, w].
        logits = tf.gather(tf.transpose(logits, [0, 3, 1, 2]), tf.gather_nd(class_ids, where), batch_dims=1)
        batch = tf.shape(detections)[0]
        mh, mw = self.settings["mask_shape"]
        masks = tf.scatter_nd(where, tf.sigmoid(logits),
                              tf.stack([batch, self.settings["detection_max_instances"], mh, mw]))
        return {"detections": detections, "class_probs": class_probs, "masks": masks}

    # ----------------------------------------------------------------------------------------------------
    # Training.

    def compute_losses(self, inputs, training=True) -> dict:
        """The five losses for a batch with ground truth (see the module docstring for the inputs)."""
        s = self.settings
        images = inputs["input_image"]
        gt_class_ids = tf.cast(inputs["input_gt_class_ids"], tf.int32)
        valid = tf.cast(tf.not_equal(gt_class_ids, 0), tf.float32)[..., None]
        gt_boxes = norm_boxes_tf(inputs["input_gt_boxes"], self.image_shape[:2]) * valid
        # [B, mh, mw, G] (matterport's layout) -> [B, G, mh, mw].
        gt_masks = tf.transpose(tf.cast(inputs["input_gt_masks"], tf.float32), [0, 3, 1, 2])
        anchors = tf.constant(self.anchors)

        feature_maps = self.features(images, training=training)
        rpn_class_logits, rpn_probs, rpn_bbox = self.rpn_outputs(feature_maps, training=training)
        rpn_match, rpn_deltas = rpn_targets(
            anchors, gt_class_ids, gt_boxes, s["rpn_train_anchors_per_image"], positive_iou=s["rpn_positive_iou"],
            negative_iou=s["rpn_negative_iou"], std_dev=s["rpn_bbox_std_dev"],
            seed=self.seed_generator)
        proposals = self.proposals_training(rpn_probs, rpn_bbox, anchors)
        targets = detection_targets(
            proposals, gt_class_ids, gt_boxes, gt_masks, s["train_rois_per_image"], s["roi_positive_ratio"],
            s["mask_shape"], s["bbox_std_dev"], s["use_mini_mask"], s["proposals_append_gt"],
            seed=self.seed_generator)
        class_logits, _, pred_deltas = self.classify(targets["rois"], feature_maps, training=training)
        # The mask head only sees the positive slots.
        positives = targets["rois"][:, : targets["deltas"].shape[1]]
        batch, p = tf.shape(positives)[0], tf.shape(positives)[1]
        pooled = self.mask_roi_align(positives, feature_maps[:4])
        mask_logits = self.mask_head(pooled, training=training)
        mh, mw = s["mask_shape"]
        mask_logits = tf.reshape(mask_logits, [batch, p, mh, mw, self.num_classes])
        return mask_rcnn_losses(rpn_match, rpn_deltas, rpn_class_logits, rpn_bbox, targets, class_logits,
                                pred_deltas, mask_logits)

    def _total(self, losses):
        weights = self.settings["loss_weights"]
        return tf.add_n([losses[name] * weights.get(name, 1.0) for name in LOSS_NAMES])

    def _update_trackers(self, losses, total):
        values = {"loss": total, **{name: losses[name] for name in LOSS_NAMES}}
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            # Each replica holds its share of the global losses (mrcnn.losses): their sum is the batch's loss, and
            # every replica tracks that same value (Keras averages the replicas' results).
            values = context.all_reduce(tf.distribute.ReduceOp.SUM, values)
        for name, value in values.items():
            self.loss_trackers[name].update_state(value)
        results = {name: tracker.result() for name, tracker in self.loss_trackers.items()}
        if is_multi_worker(tf.distribute.get_strategy()):
            # Keras averages a step's results over the workers along their first axis: one-element vectors (the
            # same value on every replica) give the value back as a scalar.
            results = {name: tf.reshape(value, [1]) for name, value in results.items()}
        return results

    def _reduce_and_clip(self, grads):
        """Under several replicas, Keras would clip each replica's share of the gradients (``clipnorm``) before
        summing them. Summed here first and clipped as one device would, then handed on divided by the replica
        count, so Keras' own sum gives the clipped global gradient (exactly so for a power-of-two count; its own
        clipping then changes nothing). Costs a second all-reduce of the gradients, only when clipping is on."""
        context = tf.distribute.get_replica_context()
        clipnorm = getattr(self.optimizer, "clipnorm", None)
        if (context is None or context.num_replicas_in_sync == 1 or not clipnorm
                or isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)):
            return grads
        present = [i for i, g in enumerate(grads) if g is not None]
        summed = context.all_reduce(tf.distribute.ReduceOp.SUM, [grads[i] for i in present])
        grads = list(grads)
        replicas = float(context.num_replicas_in_sync)
        for i, g in zip(present, summed):
            grads[i] = tf.clip_by_norm(g, clipnorm) / replicas
        return grads

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras' hook before fit / evaluate. Under a strategy it reads a first batch, averages it over the replicas
        # and builds the model symbolically from it; that fails on the bool ground-truth masks and, across workers,
        # on a dict of inputs. Every sub-network here is built at construction: only the optimizer is left.
        if self._distribute_strategy is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)

    def train_step(self, data):
        inputs = data[0] if isinstance(data, (tuple, list)) else data
        with tf.GradientTape() as tape:
            losses = self.compute_losses(inputs, training=True)
            total = self._total(losses)
            scaled = self.optimizer.scale_loss(total)
        variables = self.trainable_variables
        grads = self._reduce_and_clip(tape.gradient(scaled, variables))
        self.optimizer.apply_gradients(
            [(g, v) for g, v in zip(grads, variables) if g is not None])
        return self._update_trackers(losses, total)

    def test_step(self, data):
        inputs = data[0] if isinstance(data, (tuple, list)) else data
        losses = self.compute_losses(inputs, training=False)
        return self._update_trackers(losses, self._total(losses))
