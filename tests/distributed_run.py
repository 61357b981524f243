"""A tiny distributed training run in a process of its own, for tests/test_distribute.py and benchmarks/distributed.py.

TensorFlow's devices (logical CPU devices) and collective operations are fixed when it starts, so every run of
another layout is a new process::

    python tests/distributed_run.py --strategy mirrored --replicas 2 --out run.npz --logs DIR [--steps 1]
    TF_CONFIG=... python tests/distributed_run.py --strategy multiworker --out run.npz --logs DIR --steps 2

The model is the shapes network at 128 px with sampling sizes that take every anchor and every ROI, so a step does not
depend on the random draws and steps of different layouts can be compared. ``--init`` loads (or, when missing,
writes) the initial weights. ``--bn frozen sync local`` trains one model of each BatchNorm mode in turn. The
output ``.npz`` holds the weights before and after training (``i0``, ``i1``, ... and ``w0``, ``w1``, ...), the
losses of the last epoch (``loss_<name>``), the step times (``step_seconds``) and the ids of the images the training
steps read on this process (``image_ids``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--strategy", choices=("default", "mirrored", "multiworker"), default="default")
    p.add_argument("--replicas", type=int, default=1, help="logical CPU devices (mirrored)")
    p.add_argument("--global-batch", type=int, default=2, help="images per step, all replicas together")
    p.add_argument("--steps", type=int, default=1, help="steps of the one epoch")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--images", type=int, default=8, help="images of the data set")
    p.add_argument("--size", type=int, default=128, help="image size (a multiple of 64)")
    p.add_argument("--bn", nargs="+", choices=("frozen", "sync", "local"), default=["frozen"],
                   help="BatchNorm of each model trained in turn: frozen (TRAIN_BN False), sync (TRAIN_BN with "
                        "SYNC_BATCH_NORM), local (TRAIN_BN, each replica's own statistics); one output each")
    p.add_argument("--init", default=None, help="initial weights (.h5): loaded, or written when missing")
    p.add_argument("--collective-timeout", type=float, default=None)
    p.add_argument("--health-check", type=float, nargs=3, default=None, metavar=("INTERVAL", "TIMEOUT", "TRIES"))
    p.add_argument("--logs", required=True)
    p.add_argument("--out", default=None, help="output .npz (with several --bn: <out>_<bn>.npz)")
    return p.parse_args(argv)


def train(args, strategy, bn: str):
    """Train one model (BatchNorm ``bn``) as the arguments say; returns (replicas, step seconds)."""
    import keras
    import numpy as np

    from mrcnn import distribute
    from mrcnn import model as modellib
    from samples.shapes import ShapesConfig, ShapesDataset

    replicas = strategy.num_replicas_in_sync

    class RunConfig(ShapesConfig):
        NAME = "dist"
        IMAGES_PER_GPU = args.global_batch // replicas if replicas > 1 else args.global_batch
        IMAGE_MIN_DIM = IMAGE_MAX_DIM = args.size
        RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
        # Every anchor and every ROI is sampled (twice the anchors: positives take up to half of the slots; 16
        # proposals + at most 4 ground-truth boxes, 20 positive slots), so the random draws only order them and the
        # losses do not depend on them.
        RPN_TRAIN_ANCHORS_PER_IMAGE = 2 * 3 * sum((args.size // s) ** 2 for s in (4, 8, 16, 32, 64))
        POST_NMS_ROIS_TRAINING = 16
        PRE_NMS_LIMIT = 256
        TRAIN_ROIS_PER_IMAGE = 400
        ROI_POSITIVE_RATIO = 0.05
        STEPS_PER_EPOCH = args.steps
        VALIDATION_STEPS = 0
        DATA_WORKERS = 1
        SEED = 3
        TRAIN_BN = bn != "frozen"
        SYNC_BATCH_NORM = bn == "sync"
        GRADIENT_CLIP_NORM = 5.0
        WEIGHT_DECAY = 0.0001

    config = RunConfig()
    dataset = ShapesDataset()
    dataset.load_shapes(args.images, args.size, args.size, seed=1)
    dataset.prepare()
    seen, training = [], []
    load = dataset.load_image

    def recording_load(image_id):
        if training:  # not the batches Keras reads before training to learn their shapes
            seen.append(int(image_id))
        return load(image_id)

    dataset.load_image = recording_load

    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = modellib.MaskRCNN("training", config, model_dir=args.logs)
    if args.init:
        if os.path.exists(args.init):
            model.load_weights(args.init, by_name=True)
            model.set_log_dir()  # a new run, not a continuation of the file's
        elif distribute.is_chief(strategy):
            model.save_weights(args.init)

    initial = {f"i{i}": w.numpy() for i, w in enumerate(model.keras_model.weights)}
    times = []

    class StepTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            training.append(True)

        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self.start)
            print(f"step {batch + 1} done", flush=True)

    history = model.train(dataset, None, learning_rate=0.02, epochs=args.epochs, layers="all", verbose=0,
                          custom_callbacks=[StepTimer()])
    out = args.out if len(args.bn) == 1 or not args.out else f"{args.out[:-4]}_{bn}.npz"
    if out:
        weights = {f"w{i}": w.numpy() for i, w in enumerate(model.keras_model.weights)}
        losses = {f"loss_{k}": np.float64(v[-1]) for k, v in history.history.items()}
        np.savez(out, step_seconds=np.array(times), image_ids=np.array(seen), **weights, **initial, **losses)
    return replicas, times


def main(argv=None) -> int:
    args = parse_args(argv)
    import tensorflow as tf

    if args.replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * args.replicas)
    from mrcnn import distribute

    strategy = distribute.make_strategy(
        args.strategy, collective_timeout=args.collective_timeout,
        health_check=tuple(args.health_check) if args.health_check else None)

    if args.global_batch % strategy.num_replicas_in_sync:
        raise SystemExit(f"--global-batch {args.global_batch} is not a multiple of the replicas")
    for bn in args.bn:
        try:
            replicas, times = train(args, strategy, bn)
        except distribute.WorkerFailedError as error:
            print(f"error: {error}", file=sys.stderr, flush=True)
            return 3
        print(f"replicas {replicas}, chief {distribute.is_chief(strategy)}, step seconds "
              f"{' '.join(f'{t:.3f}' for t in times)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
