"""The matterport surface: ``MaskRCNN(mode, config, model_dir)`` and the module functions notebooks call.

``MaskRCNN`` wraps :class:`mrcnn.network.MaskRCNNModel` (``self.keras_model``) with matterport's methods:
``train``, ``detect``, ``detect_molded``, ``load_weights``, ``find_last``, ``get_imagenet_weights``,
``set_log_dir``, ``run_graph``. A script written for matterport runs with its imports changed only.
"""

from __future__ import annotations

import functools
import logging
import os
import re

import keras
import numpy as np
import tensorflow as tf

from . import checkpoints, console, distribute, train_state, transform, utils
from .atomic import atomic_path
from .config import check_image_size
from .data import MaskRCNNSequence, build_rpn_targets, data_generator, load_image_gt
# Pre/post-processing lives in mrcnn.transform; re-exported: matterport's names (modellib.mold_image, ...).
from .transform import compose_image_meta, mold_image, parse_image_meta, unmold_image
from .layers import set_winograd
from .network import MaskRCNNModel, model_kwargs
from .run_folder import hold_run_folder

__all__ = ["MaskRCNN", "log", "load_image_gt", "mold_image", "unmold_image", "compose_image_meta",
           "parse_image_meta", "data_generator", "build_rpn_targets", "LAYER_PRESETS", "iter_layers"]

logger = logging.getLogger(__name__)

#: matterport's ``layers`` presets for ``train``, plus the light backbone's stage names.
LAYER_PRESETS = {
    "heads": r"(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "3+": r"(res3.*)|(bn3.*)|(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(light[345].*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "4+": r"(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(light[45].*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "5+": r"(res5.*)|(bn5.*)|(light5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "all": ".*",
}


def log(text, array=None):
    """Print a text and, optionally, an array's shape, min, max and dtype (matterport's ``log``)."""
    if array is not None:
        array = np.asarray(array)
        text = text.ljust(25)
        text += f"shape: {str(array.shape):20}  "
        if array.size:
            text += f"min: {array.min():10.5f}  max: {array.max():10.5f}"
        else:
            text += f"min: {'':10}  max: {'':10}"
        text += f"  {array.dtype}"
    print(text)


def iter_layers(model):
    """Every layer of ``model``, nested ones included (depth first), containers before their children."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers") and layer.layers:
            yield from iter_layers(layer)


_PRECISIONS = {
    False: "float32", None: "float32", "float32": "float32",
    True: "mixed_float16", "float16": "mixed_float16", "mixed_float16": "mixed_float16",
    "bfloat16": "mixed_bfloat16", "mixed_bfloat16": "mixed_bfloat16",
}


def precision_policy(value) -> str:
    """The Keras dtype policy of a ``MIXED_PRECISION`` config value.

    ``False`` / ``"float32"``: float32; ``True`` / ``"float16"``: ``mixed_float16`` (GPUs with tensor cores);
    ``"bfloat16"``: ``mixed_bfloat16`` (CPUs with AVX512-BF16 or AMX, and GPUs from Ampere on). Variables
    stay float32 in every case, so weight files are the same.
    """
    key = value.lower() if isinstance(value, str) else value
    if isinstance(key, (bool, type(None), str)) and key in _PRECISIONS:
        return _PRECISIONS[key]
    raise ValueError(f"MIXED_PRECISION must be False, True, 'float32', 'float16' or 'bfloat16'; got {value!r}")


def _holding_run_folder(train):
    """``MaskRCNN.train`` run while it holds ``self.log_dir`` (:func:`mrcnn.run_folder.hold_run_folder`: a second
    run into the folder is refused, a stale lock and leftover temporary files are cleared, the lock is released at
    the end, also on an exception). Only the chief of a multi-worker run holds it: the other workers write no file
    there."""

    @functools.wraps(train)
    def holding(self, *args, **kwargs):
        if self.mode == "training" and not distribute.is_chief(self.keras_model.distribute_strategy):
            return train(self, *args, **kwargs)
        with hold_run_folder(self.log_dir):
            return train(self, *args, **kwargs)

    return holding


class MaskRCNN:
    """Mask R-CNN with matterport's interface.

    Args:
        mode: "training" or "inference".
        config: a :class:`mrcnn.config.Config` (subclass).
        model_dir: where run directories with checkpoints and TensorBoard logs go.
    """

    def __init__(self, mode: str, config, model_dir: str):
        if mode not in ("training", "inference"):
            raise ValueError(f"mode must be 'training' or 'inference', got {mode!r}")
        self.mode = mode
        self.config = config
        self.model_dir = model_dir
        self.epoch = 0
        self.set_log_dir()
        self.keras_model = self.build(mode=mode, config=config)
        self._infer_fns = {}

    # ----------------------------------------------------------------------------------------------------
    def build(self, mode, config) -> MaskRCNNModel:
        """Build the Keras model (the same network for both modes)."""
        # Also checked by the backbone: here first, as matterport, before anything is built.
        check_image_size(int(config.IMAGE_SHAPE[0]), int(config.IMAGE_SHAPE[1]), "IMAGE_SHAPE",
                         "set IMAGE_MAX_DIM (or IMAGE_MIN_DIM for 'crop') to e.g. 256, 320, 384, 448, 512, 1024")
        if mode == "training" and not getattr(config, "USE_RPN_ROIS", True):
            raise ValueError("USE_RPN_ROIS = False (training the heads on random ROIs instead of the RPN's "
                             "proposals) is not supported: the heads always train on the RPN's proposals")
        # The layers take the dtype policy that is global while they are built; the previous global policy is
        # restored afterwards, so building this model changes nothing for models built later.
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(precision_policy(getattr(config, "MIXED_PRECISION", False)))
        try:
            return MaskRCNNModel(**model_kwargs(config))
        finally:
            keras.mixed_precision.set_global_policy(previous)

    # ----------------------------------------------------------------------------------------------------
    # Checkpoints and logs.

    def set_log_dir(self, model_path=None):
        """Set the run directory and epoch counter; from a checkpoint path, continue that run
        (:func:`mrcnn.checkpoints.run_dir_for`)."""
        run = checkpoints.run_dir_for(self.model_dir, checkpoints.run_name(self.config.NAME), model_path)
        self.log_dir, self.checkpoint_path, self.epoch = run.log_dir, run.checkpoint_path, run.epoch

    def find_last(self) -> str:
        """The last checkpoint of the newest run directory of this config's NAME that holds one
        (:func:`mrcnn.checkpoints.find_last`).

        A newer run directory without a checkpoint (a run stopped before its first epoch ended) is skipped with a
        warning that names it; matterport raised FileNotFoundError there."""
        return checkpoints.find_last(self.model_dir, checkpoints.run_name(self.config.NAME))

    def load_weights(self, filepath, by_name: bool = False, exclude=None):
        """Load weights from a matterport/Keras-2 .h5 file (or a checkpoint of this project) by layer name.

        Args:
            filepath: the .h5 file.
            by_name: matterport's flag; layers are always matched by name here (matterport's files use the
                same names), and with ``by_name=False`` every weighted layer of the model must be in the file.
            exclude: layer names (or regular expressions) to skip, e.g. the class-specific heads when the
                number of classes differs.

        Returns:
            The load report (what was loaded, skipped, excluded).
        """
        from . import weights

        report = weights.load_weights(self.keras_model, filepath, by_name=by_name, exclude=exclude)
        self.set_log_dir(filepath)
        self._infer_fns = {}
        # The optimizer state written beside a checkpoint: train() restores it when it continues the same stage.
        state = train_state.state_path(filepath)
        self._resume_state = state if self.epoch and os.path.isfile(state) else None
        return report

    def save_weights(self, filepath):
        """Save the weights in matterport's .h5 layout (atomically)."""
        from . import weights

        weights.save_weights(self.keras_model, filepath)

    def get_imagenet_weights(self) -> str:
        """Path of the ImageNet ResNet-50 weights (downloaded to weights/ the first time)."""
        from . import weights

        return weights.get_imagenet_weights()

    # ----------------------------------------------------------------------------------------------------
    # Training.

    def _random_states(self) -> list:
        """The state variables of the model's random generators (saved with each checkpoint's training state)."""
        generator = getattr(self.keras_model, "seed_generator", None)
        return [generator.state] if generator is not None else []

    def set_trainable(self, layer_regex: str, keras_model=None, indent=0, verbose=1):
        """Make the layers whose name fully matches ``layer_regex`` trainable and freeze the rest."""
        model = keras_model or self.keras_model
        trainable_count = 0
        for layer in iter_layers(model):
            if hasattr(layer, "layers") and layer.layers:
                continue  # Containers follow their children.
            if not layer.weights:
                continue
            layer.trainable = bool(re.fullmatch(layer_regex, layer.name))
            trainable_count += int(layer.trainable)
            if layer.trainable and verbose > 1:
                print(f"{' ' * indent}{layer.name:20}   ({layer.__class__.__name__})")
        if verbose:
            logger.info("%d weighted layers trainable for %r", trainable_count, layer_regex)
        return trainable_count

    def find_trainable_layer(self, layer):
        """The layer that holds ``layer``'s weights: the inner layer of a ``TimeDistributed`` wrapper (any depth),
        else ``layer`` itself (matterport's ``find_trainable_layer``)."""
        while isinstance(layer, keras.layers.TimeDistributed):
            layer = layer.layer
        return layer

    def get_trainable_layers(self) -> list:
        """The layers that have weights, in build order, nested models (``rpn_model``, the heads, the backbone)
        looked into (matterport's ``get_trainable_layers``; its model was flat).

        A layer is listed whether or not it is trainable now (``train``'s ``layers`` freezes and unfreezes them);
        containers are not listed, their layers are.
        """
        found = []
        for layer in iter_layers(self.keras_model):
            if hasattr(layer, "layers") and layer.layers:
                continue
            layer = self.find_trainable_layer(layer)
            if layer.weights:
                found.append(layer)
        return found

    def ancestor(self, tensor, name, checked=None):
        """The tensor named ``name`` upstream of ``tensor`` in a functional Keras graph (matterport's ``ancestor``).

        In Keras 3 a symbolic tensor is a layer's output, so ``name`` (a string or compiled regular expression) is
        matched, in full, against the name of the layer that produced each upstream tensor, and also against
        ``"<layer>/<tensor name>"``; a trailing ``":0"`` (TensorFlow 1 tensor names) is ignored. The search follows
        the layers' inbound nodes breadth first, up to 500 tensors.

        It works inside the functional parts of the model, e.g. ``ancestor(backbone.get_layer("fpn_p2").output,
        "res2c_out")``. Between those parts (proposals, detection) the model is a subclassed ``keras.Model`` that
        runs eagerly, with no symbolic graph; and TensorFlow 1 operations inside a layer (matterport's
        ``"ROI/pre_nms_anchors:0"``) do not exist in Keras 3. For those it returns None, as matterport does when
        nothing matches: use :meth:`run_graph` (``"proposals"``, ``"rpn_class"``, ...) for their values.

        Args:
            tensor: a symbolic Keras tensor (a layer's ``output``).
            name: the ancestor's name.
            checked: tensors already searched (kept for matterport's signature).

        Returns:
            The ancestor Keras tensor, or None.
        """
        if isinstance(name, str):
            name = name[:-2] if name.endswith(":0") else name
            name = re.compile(name)
        checked = list(checked) if checked is not None else []
        seen = {id(t) for t in checked}
        queue = [tensor]
        while queue and len(seen) <= 500:
            current = queue.pop(0)
            history = getattr(current, "_keras_history", None)
            if history is None:
                continue
            node = history.operation._inbound_nodes[history.node_index]
            for parent in node.input_tensors:
                if id(parent) in seen:
                    continue
                seen.add(id(parent))
                checked.append(parent)
                parent_history = getattr(parent, "_keras_history", None)
                layer_name = parent_history.operation.name if parent_history is not None else ""
                if name.fullmatch(layer_name) or name.fullmatch(f"{layer_name}/{parent.name}"):
                    return parent
                queue.append(parent)
        return None

    def compile(self, learning_rate: float, momentum: float):
        """The optimizer (config OPTIMIZER: SGD with momentum, or AdamW), with gradient clipping and decoupled
        weight decay (not on BatchNorm gamma/beta)."""
        cfg = self.config
        kind = str(getattr(cfg, "OPTIMIZER", "sgd")).lower()
        if kind == "sgd":
            optimizer = keras.optimizers.SGD(
                learning_rate=learning_rate, momentum=momentum, clipnorm=cfg.GRADIENT_CLIP_NORM,
                weight_decay=cfg.WEIGHT_DECAY or None)
        elif kind == "adamw":
            optimizer = keras.optimizers.AdamW(
                learning_rate=learning_rate, clipnorm=cfg.GRADIENT_CLIP_NORM, weight_decay=cfg.WEIGHT_DECAY or 0.0)
        else:
            raise ValueError(f"OPTIMIZER must be 'sgd' or 'adamw', got {cfg.OPTIMIZER!r}")
        if cfg.WEIGHT_DECAY:
            optimizer.exclude_from_weight_decay(var_names=["gamma", "beta"])
        # JIT_COMPILE applies XLA to the backbone inside the model (see MaskRCNNModel), not to the whole step.
        self.keras_model.compile(optimizer=optimizer, jit_compile=False)

    @_holding_run_folder
    def train(self, train_dataset, val_dataset, learning_rate, epochs, layers, augmentation=None,
              custom_callbacks=None, no_augmentation_sources=None, verbose=None, stop_epoch=None):
        """Train up to epoch ``epochs`` (a total, as matterport), writing a checkpoint after every epoch.

        Args:
            train_dataset, val_dataset: prepared :class:`mrcnn.utils.Dataset` objects.
            learning_rate: SGD learning rate.
            epochs: the epoch to train up to (training resumes from ``self.epoch``).
            layers: "heads", "3+", "4+", "5+", "all", or a regular expression of layer names.
            augmentation: albumentations transform (or imgaug augmenter) applied to image and masks.
            custom_callbacks: extra Keras callbacks.
            no_augmentation_sources: dataset sources never augmented.
            verbose: Keras progress display (0: none, 1: progress bar with the five losses, 2: one line per epoch;
                None: 1 when stdout is a terminal, else 2, so a log file gets no progress-bar frames).
            stop_epoch: stop after this epoch although the stage goes on to ``epochs`` (a chunk of a long run):
                the training state saved with the checkpoint lets a later call continue the stage with its momentum,
                iteration count and sampling state.

        Returns:
            The Keras ``History`` (None when already at ``epochs``).

        The run folder (``self.log_dir``) is held while training (:mod:`mrcnn.run_folder`): another run that holds
        it is refused, a stale lock of a killed run is taken over and temporary files of interrupted checkpoint
        writes are removed, each with a warning.

        Raises:
            mrcnn.dataset.DatasetError: an image or mask could not be loaded (the message names the file).
            mrcnn.run_folder.RunFolderInUseError: another training run holds the run folder.
            mrcnn.distribute.WorkerFailedError: another worker of a multi-worker run died or stopped answering.
        """
        if self.mode != "training":
            raise ValueError("Create the model in training mode to train it")
        layer_regex = LAYER_PRESETS.get(layers, layers)
        cfg = self.config
        # The strategy the model was built in (mrcnn.distribute): its replicas share each step's images.
        strategy = self.keras_model.distribute_strategy
        per_replica, shard = distribute.replica_batch(strategy, cfg)
        local_batch = per_replica * (distribute.num_replicas(strategy) // shard[1])
        seed = distribute.shared_seed(strategy, cfg.SEED) if shard[1] > 1 else cfg.SEED
        # The image order continues from the model's epoch, so a resumed run sees what an uninterrupted one would.
        train_seq = MaskRCNNSequence(train_dataset, cfg, shuffle=True, augmentation=augmentation,
                                     steps=cfg.STEPS_PER_EPOCH, no_augmentation_sources=no_augmentation_sources,
                                     initial_epoch=self.epoch, seed=seed, batch_size=local_batch, shard=shard)
        val_seq = None
        if val_dataset is not None and cfg.VALIDATION_STEPS:
            val_seq = MaskRCNNSequence(val_dataset, cfg, shuffle=True, steps=cfg.VALIDATION_STEPS,
                                       seed=0 if cfg.SEED is None else cfg.SEED, batch_size=local_batch,
                                       shard=shard)
        chief = distribute.is_chief(strategy)
        if chief:
            os.makedirs(self.log_dir, exist_ok=True)
        if verbose is None:
            verbose = console.keras_verbose()
        # Only the chief writes the run's files; the other workers of a multi-worker run write none. The progress
        # display ends its epoch line before the checkpoint's "Saved ..." message is written.
        callbacks = ([keras.callbacks.TensorBoard(log_dir=self.log_dir, histogram_freq=0, write_graph=False)]
                     if chief else []) + [keras.callbacks.ProgbarLogger(), CheckpointCallback(self, write=chief)] \
            + list(custom_callbacks or [])

        logger.info("Starting at epoch %d. LR=%s. Checkpoint path: %s", self.epoch, learning_rate,
                    self.checkpoint_path)
        self.set_trainable(layer_regex)
        with strategy.scope():  # the optimizer's variables are mirrored like the model's
            self.compile(learning_rate, cfg.LEARNING_MOMENTUM)
        if self.epoch >= epochs:
            logger.info("Already at epoch %d >= %d: nothing to train", self.epoch, epochs)
            return None
        self._stage = (layer_regex, int(epochs))
        resume_state, self._resume_state = getattr(self, "_resume_state", None), None
        if resume_state is not None:
            train_state.restore_optimizer(self.keras_model.optimizer, self.keras_model.trainable_variables,
                                          resume_state, layer_regex, epochs)
            train_state.restore_random_states(self._random_states(), resume_state)
        end = epochs if stop_epoch is None else min(int(epochs), int(stop_epoch))
        if self.epoch >= end:
            return None
        train_data = distribute.ReplicaBatches(train_seq, strategy, per_replica)
        val_data = distribute.ReplicaBatches(val_seq, strategy, per_replica) if val_seq is not None else None
        try:
            # shuffle=False: the sequence shuffles its images itself, from its own seed and the epoch. Keras's
            # shuffle of a PyDataset permutes the batch order with Python's global random state, which a resumed
            # run (a new process) does not share with the uninterrupted one.
            history = self.keras_model.fit(
                train_data, initial_epoch=self.epoch, epochs=end, validation_data=val_data, callbacks=callbacks,
                verbose=verbose, shuffle=False)
        except Exception as error:
            # The data set error (it names the file) rather than the TensorFlow error that wraps it; the checkpoints
            # of the epochs before stay written.
            data_error = train_seq.data_error or (val_seq.data_error if val_seq is not None else None)
            if data_error is None:
                if distribute.is_multi_worker(strategy) and isinstance(
                        error, (tf.errors.UnavailableError, tf.errors.DeadlineExceededError)):
                    raise distribute.WorkerFailedError(distribute.worker_failure_message(error)) from error
                raise
            raise data_error from error
        self.epoch = max(self.epoch, end)
        self._infer_fns = {}
        return history

    # ----------------------------------------------------------------------------------------------------
    # Inference.

    def mold_inputs(self, images):
        """Resize and normalise images for the network (:func:`mrcnn.transform.mold_inputs` with this config).

        Returns:
            molded_images float32 [N, H, W, C], image_metas [N, META], windows int32 [N, (y1, x1, y2, x2)].
        """
        return transform.mold_inputs(images, self.config)

    def unmold_detections(self, detections, class_probs, mrcnn_mask, original_image_shape, image_shape, window):
        """One image's network outputs -> matterport's result arrays at the original image size
        (:func:`mrcnn.transform.unmold_detections`).

        Returns:
            rois int32 [N, (y1, x1, y2, x2)], class_ids int32 [N], scores float32 [N], masks bool [H, W, N],
            class_probs float32 [N, C].
        """
        return transform.unmold_detections(detections, class_probs, mrcnn_mask, original_image_shape, image_shape,
                                           window)

    def _inference_fn(self, size=None):
        """The compiled inference graph for molded images of ``size`` (H, W), by default the config's."""
        size = tuple(int(s) for s in (size or self.config.IMAGE_SHAPE[:2]))
        if size not in self._infer_fns:
            model = self.keras_model
            # One compiled function per molded size, each with a fixed signature: no retracing, memory flat
            # over many calls. "square" mode has one size; "pad64", "fit" and "none" one per image shape.
            self._infer_fns[size] = tf.function(lambda inputs: model(inputs, training=False),
                                                input_signature=self.input_signature(size))
        return self._infer_fns[size]

    def run_inference(self, molded_images, image_metas) -> dict:
        """Run the compiled inference graph; returns NumPy arrays (detections, class_probs, masks)."""
        molded_images = tf.convert_to_tensor(molded_images, tf.float32)
        out = self._inference_fn(molded_images.shape[1:3])(
            {"input_image": molded_images, "input_image_meta": tf.convert_to_tensor(image_metas, tf.float32)})
        return {k: v.numpy() for k, v in out.items()}

    def run_inference_by_size(self, molded_images, image_metas) -> list[dict]:
        """:meth:`run_inference` on a list of molded images that may differ in size ("pad64" / "fit" / "none"
        modes): one call per size. Returns each image's outputs (detections, class_probs, masks), in input order."""
        groups = {}
        for i, image in enumerate(molded_images):
            groups.setdefault(image.shape, []).append(i)
        results = [None] * len(molded_images)
        for indices in groups.values():
            out = self.run_inference(np.stack([molded_images[i] for i in indices]),
                                     np.stack([image_metas[i] for i in indices]))
            for j, i in enumerate(indices):
                results[i] = {k: v[j] for k, v in out.items()}
        return results

    def detect(self, images, verbose=0):
        """Detect instances in a list of images (any sizes).

        Returns:
            One dict per image: ``rois`` [N, (y1, x1, y2, x2)] pixels, ``class_ids`` [N], ``scores`` [N],
            ``masks`` bool [H, W, N] at the original image size, and ``class_probs`` [N, NUM_CLASSES].
        """
        if self.mode != "inference":
            raise ValueError("Create the model in inference mode to detect")
        if verbose:
            log(f"Processing {len(images)} images")
            for image in images:
                log("image", image)
        # Each image molded on its own: "pad64", "fit" and "none" give a size per image shape ("square" one).
        molded, metas, windows = zip(*(self.mold_inputs([image]) for image in images))
        molded, metas, windows = [m[0] for m in molded], [m[0] for m in metas], [w[0] for w in windows]
        if verbose:
            for m, meta in zip(molded, metas):
                log("molded_images", m)
                log("image_metas", meta)
        return [self._result(out, np.asarray(image).shape, m.shape, window)
                for image, m, window, out in zip(images, molded, windows, self.run_inference_by_size(molded, metas))]

    def _result(self, out, original_shape, molded_shape, window) -> dict:
        """One image's outputs -> matterport's result dict."""
        rois, class_ids, scores, masks, probs = self.unmold_detections(
            out["detections"], out["class_probs"], out["masks"], original_shape, molded_shape, window)
        return {"rois": rois, "class_ids": class_ids, "scores": scores, "masks": masks, "class_probs": probs}

    def _unmold_all(self, out, original_shapes, molded_shape, windows):
        return [self._result({k: v[i] for k, v in out.items()}, shape, molded_shape[1:], windows[i])
                for i, shape in enumerate(original_shapes)]

    def detect_molded(self, molded_images, image_metas, verbose=0):
        """Detect on images already molded (e.g. from :func:`load_image_gt` + :func:`mold_image`).

        As in matterport, results are in the molded images' pixel frame: ``rois`` are pixels of the molded image
        and ``masks`` are [H, W, N] at its size, so they line up with the ``bbox`` and ``mask`` that
        :func:`load_image_gt` returns. Detections are still clipped to each meta's window (the real image).
        """
        if self.mode != "inference":
            raise ValueError("Create the model in inference mode to detect")
        molded_images = np.asarray(molded_images, dtype=np.float32)
        image_metas = np.asarray(image_metas, dtype=np.float32)
        if (molded_images.ndim != 4 or image_metas.shape != (len(molded_images), self.config.IMAGE_META_SIZE)
                or molded_images.shape[-1] != self.config.IMAGE_CHANNEL_COUNT):
            raise ValueError(f"Expected molded images [N, H, W, {self.config.IMAGE_CHANNEL_COUNT}] and metas "
                             f"[N, {self.config.IMAGE_META_SIZE}], "
                             f"got {molded_images.shape} and {image_metas.shape}")
        if verbose:
            log(f"Processing {len(molded_images)} images")
            log("molded_images", molded_images)
            log("image_metas", image_metas)
        out = self.run_inference(molded_images, image_metas)
        shape = molded_images.shape[1:]
        whole = np.array([0, 0, shape[0], shape[1]])
        return self._unmold_all(out, [shape] * len(molded_images), molded_images.shape, [whole] * len(molded_images))

    def input_signature(self, size=None) -> list[dict]:
        """The inference graph's input signature (any batch size; molded images of ``size`` (H, W), by default
        the config's IMAGE_SHAPE)."""
        h, w = (int(s) for s in (size or self.config.IMAGE_SHAPE[:2]))
        c = int(self.config.IMAGE_SHAPE[2])
        return [{
            "input_image": tf.TensorSpec([None, h, w, c], tf.float32, name="input_image"),
            "input_image_meta": tf.TensorSpec([None, self.config.IMAGE_META_SIZE], tf.float32,
                                              name="input_image_meta"),
        }]

    def export(self, filepath: str):
        """Export the inference graph as a TF SavedModel (endpoint ``serve``: molded images + metas in,
        ``detections``, ``class_probs``, ``masks`` out) for TF Serving, TFLite conversion or ONNX tools.

        The exported graph uses direct convolutions only (no XLA-compiled Winograd functions), so any runtime
        can load it and choose its own convolution algorithms."""
        model = self.keras_model
        set_winograd(model, False)
        try:
            model.export(filepath, format="tf_saved_model", verbose=False, input_signature=self.input_signature())
        finally:
            set_winograd(model, model.winograd)

    def save(self, filepath: str):
        """Save the whole model (architecture and weights) as a ``.keras`` file, atomically (a failed save leaves
        an earlier file as it was); reload it with ``keras.models.load_model(filepath)`` after
        ``import mrcnn.network``."""
        filepath = os.fspath(filepath)
        if not filepath.endswith(".keras"):
            raise ValueError(f"{filepath}: a whole model is saved as a .keras file (weights alone: save_weights, "
                             f"matterport's .h5 layout)")
        with atomic_path(filepath, suffix=".keras") as tmp:
            self.keras_model.save(tmp)

    def get_anchors(self, image_shape=None):
        """Pixel anchors [A, (y1, x1, y2, x2)] of the model's input shape."""
        shape = image_shape if image_shape is not None else self.config.IMAGE_SHAPE
        return utils.denorm_boxes(self.keras_model.anchors, shape[:2])

    # run_graph's outputs, and the layer names of matterport's notebooks that give them.
    GRAPH_OUTPUTS = ("features", "rpn_class", "rpn_bbox", "proposals", "mrcnn_class", "mrcnn_bbox", "detections",
                     "masks")
    _GRAPH_LAYER_ALIASES = {"ROI": "proposals", "ROI_inference": "proposals", "mrcnn_detection": "detections",
                            "mrcnn_mask": "masks"}

    def _graph_output(self, name, spec):
        """The run_graph key of one requested output: its name, or the layer (name) paired with it."""
        if name in self.GRAPH_OUTPUTS:
            return name, None
        history = getattr(spec, "_keras_history", None)  # a layer's symbolic output
        if history is not None:
            layer = history.operation.name
        else:
            layer = name if spec is None else getattr(spec, "name", spec)
        if layer in self.GRAPH_OUTPUTS:
            return layer, None
        if layer in self._GRAPH_LAYER_ALIASES:
            return self._GRAPH_LAYER_ALIASES[layer], None
        try:
            return None, self.keras_model.backbone.get_layer(layer).output
        except (ValueError, TypeError):
            raise ValueError(
                f"run_graph: unknown output {name!r}" + (f" ({layer!r})" if layer != name else "") +
                f"; use one of {', '.join(self.GRAPH_OUTPUTS)}, a layer of the backbone (e.g. 'res4a_out', "
                f"'fpn_p2') or one of matterport's layer names {', '.join(self._GRAPH_LAYER_ALIASES)}") from None

    def run_graph(self, images, outputs=None, image_metas=None):
        """Intermediate outputs for debugging (matterport's ``run_graph``, in eager TF2).

        Args:
            images: list of images, or molded images [N, H, W, C] when ``image_metas`` is given.
            outputs: what to return: names from :attr:`GRAPH_OUTPUTS` (``features`` is [P2..P6]), names of
                backbone layers (``res4a_out``, ``fpn_p2``, ...), or matterport's ``(name, tensor)`` pairs, where
                the tensor (a layer's output, a layer or a layer name) picks what is returned under ``name``:
                ``ROI`` gives the proposals, ``mrcnn_class``, ``mrcnn_bbox``, ``mrcnn_detection`` and
                ``mrcnn_mask`` the heads' outputs. All of :attr:`GRAPH_OUTPUTS` when None.
            image_metas: the molded images' metas (then ``images`` are not molded again).

        Returns:
            dict name -> NumPy array (``features``: a list of arrays), in the order asked.
        """
        if image_metas is None:
            molded, metas, _ = self.mold_inputs(images)
        else:
            molded, metas = np.asarray(images, np.float32), np.asarray(image_metas, np.float32)
        requested = [(o[0], o[1]) if isinstance(o, (tuple, list)) else (o, None)
                     for o in (outputs if outputs is not None else self.GRAPH_OUTPUTS)]
        keys = [self._graph_output(name, spec) for name, spec in requested]
        model = self.keras_model
        x = tf.convert_to_tensor(molded)
        feats = model.features(x)
        _, rpn_probs, rpn_bbox = model.rpn_outputs(feats)
        size = model.input_size(x)
        proposals = model.proposals_inference(rpn_probs, rpn_bbox, tf.constant(model.anchors_for(size)))
        _, probs, deltas = model.classify(proposals, feats, image_shape=size)
        out = model({"input_image": x, "input_image_meta": tf.convert_to_tensor(metas)})
        result = {"features": [f.numpy() for f in feats], "rpn_class": rpn_probs.numpy(),
                  "rpn_bbox": rpn_bbox.numpy(), "proposals": proposals.numpy(), "mrcnn_class": probs.numpy(),
                  "mrcnn_bbox": deltas.numpy(), "detections": out["detections"].numpy(),
                  "masks": out["masks"].numpy()}
        layers = [tensor for key, tensor in keys if key is None]
        if layers:
            values = keras.Model(model.backbone.inputs, layers)(x, training=False)
            values = iter([values] if len(layers) == 1 else values)
        return {name: result[key] if key is not None else np.asarray(next(values))
                for (name, _), (key, _) in zip(requested, keys)}


class CheckpointCallback(keras.callbacks.Callback):
    """Write ``mask_rcnn_<name>_<epoch:04d>.h5`` after every epoch, atomically, in matterport's layout.

    Args:
        mrcnn: the model.
        write: False on the workers of a multi-worker run other than the chief: the epoch counter follows,
            nothing is written.
    """

    def __init__(self, mrcnn: MaskRCNN, write: bool = True):
        super().__init__()
        self.mrcnn = mrcnn
        self.write = bool(write)

    def on_epoch_end(self, epoch, logs=None):
        from . import weights

        if not self.write:
            self.mrcnn.epoch = epoch + 1
            return
        path = self.mrcnn.checkpoint_path.format(epoch=epoch + 1)
        # The state first: a checkpoint never lies beside the state of an earlier epoch.
        layer_regex, stage_epochs = self.mrcnn._stage
        train_state.save_train_state(path, self.model.optimizer, layer_regex, stage_epochs, epoch + 1,
                                     self.mrcnn._random_states())
        weights.save_weights(self.mrcnn.keras_model, path)
        self.mrcnn.epoch = epoch + 1
        logger.info("Saved %s", path)


