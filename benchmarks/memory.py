"""Memory over many ``detect`` calls and over training epochs: it must stay flat (matterport leaked in both).

    python -m benchmarks.memory --detect-calls 1000 --epochs 6   # from the repository root (it uses samples/)

Prints the process RSS after warm-up and then at intervals; the growth per 100 calls / per epoch is the figure.
"""

from __future__ import annotations

import argparse
import time

from mrcnn import console

console.quiet_tensorflow()  # before TensorFlow is imported

import keras  # noqa: E402

from mrcnn import model as modellib  # noqa: E402
from samples.shapes import InferenceConfig, ShapesConfig, ShapesDataset  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


class RssCallback(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.values = []

    def on_epoch_end(self, epoch, logs=None):
        self.values.append(rss_mb())
        print(f"  epoch {epoch + 1}: RSS {self.values[-1]:.0f} MB", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detect-calls", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args(argv)

    dataset = ShapesDataset()
    dataset.load_shapes(50, 128, 128, seed=0)
    dataset.prepare()
    images = [dataset.load_image(i) for i in range(10)]

    config = InferenceConfig()
    model = modellib.MaskRCNN("inference", config, model_dir="/tmp")
    for image in images:
        model.detect([image])
    start_rss = rss_mb()
    print(f"detect: RSS after warm-up {start_rss:.0f} MB")
    start = time.time()
    step = max(args.detect_calls // 5, 1)
    for i in range(1, args.detect_calls + 1):
        model.detect([images[i % len(images)]])
        if i % step == 0:
            print(f"  after {i} calls: RSS {rss_mb():.0f} MB", flush=True)
    growth = (rss_mb() - start_rss) / args.detect_calls * 100
    print(f"detect: {args.detect_calls} calls in {time.time() - start:.1f} s; growth {growth:.2f} MB per 100 calls")

    train_config = ShapesConfig()
    train_config.STEPS_PER_EPOCH = 20
    train_config.VALIDATION_STEPS = 2
    trainer = modellib.MaskRCNN("training", train_config, model_dir="/tmp/memory_bench_logs")
    callback = RssCallback()
    trainer.train(dataset, dataset, learning_rate=0.01, epochs=args.epochs, layers="all",
                  custom_callbacks=[callback], verbose=0)
    v = callback.values
    per_epoch = (v[-1] - v[1]) / max(len(v) - 2, 1) if len(v) > 2 else float("nan")
    print(f"train: RSS by epoch {[round(x) for x in v]} MB; growth after epoch 2: {per_epoch:.1f} MB per epoch")


if __name__ == "__main__":
    main()
