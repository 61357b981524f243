"""One 3x3 convolution, direct (TensorFlow / oneDNN) vs Winograd F(4x4, 3x3) (mrcnn.winograd), in float32:
median time, and the largest difference relative to the largest output.

    python benchmarks/winograd.py               # ResNet-50-FPN's 3x3 layers (RPN, FPN, ResNet, mask head)
    python benchmarks/winograd.py --repeats 20

Each row says whether :func:`mrcnn.winograd.suits` picks Winograd for that layer.
"""

from __future__ import annotations

import argparse
import os
import time

from mrcnn import console

console.quiet_tensorflow()  # before TensorFlow is imported

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mrcnn import winograd  # noqa: E402

# (name, [N, H, W, C], K): ResNet-50-FPN's 3x3 layers at 1024 and 512 px, and the mask head's.
LAYERS = [
    ("RPN on P2 at 1024 px", (1, 256, 256, 256), 512),
    ("RPN on P2 at 512 px", (1, 128, 128, 256), 512),
    ("FPN on P2 at 1024 px", (1, 256, 256, 256), 256),
    ("FPN on P3 at 1024 px", (1, 128, 128, 256), 256),
    ("RPN on P4 at 1024 px", (1, 64, 64, 256), 512),
    ("ResNet stage 4 at 1024 px", (1, 64, 64, 256), 256),
    ("RPN on P5 at 1024 px", (1, 32, 32, 256), 512),
    ("ResNet stage 5 at 1024 px", (1, 32, 32, 512), 512),
    ("ResNet stage 4 at 512 px", (1, 32, 32, 256), 256),
    ("RPN on P5 at 512 px", (1, 16, 16, 256), 512),
    ("ResNet stage 3 at 1024 px", (1, 128, 128, 128), 128),
    ("ResNet stage 2 at 1024 px", (1, 256, 256, 64), 64),
    ("mask head, 100 ROIs", (100, 14, 14, 256), 256),  # chunks of CHUNK ROIs, the rest direct
]


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"TF {tf.__version__}; {os.cpu_count()} CPU threads; median of {args.repeats} after a warm-up")
    print(f"{'layer':28s} {'input':>18s} {'K':>4s} {'direct':>9s} {'Winograd':>9s} {'speed-up':>8s} "
          f"{'rel. error':>10s}  used")
    # One traced function each, retraced for every layer's shapes (on purpose: silence TF's retracing warning).
    tf.get_logger().setLevel("ERROR")
    direct = tf.function(lambda t, g: tf.nn.conv2d(t, g, 1, "SAME"))
    # A batch of ROIs runs in chunks, as the mask head's layers run it; a single map in one call.
    fast = tf.function(lambda t, g: winograd.conv3x3(t, g, chunk=winograd.chunk_for(t.shape) if t.shape[0] > 1
                                                     else None))
    rng = np.random.default_rng(0)
    for name, shape, k in LAYERS:
        x = tf.constant(rng.normal(size=shape).astype("float32"))
        kernel = tf.constant(rng.normal(0, (9 * shape[-1]) ** -0.5, size=(3, 3, shape[-1], k)).astype("float32"))
        want = direct(x, kernel).numpy()
        error = np.abs(fast(x, kernel).numpy() - want).max() / np.abs(want).max()
        t_direct = median_seconds(lambda: direct(x, kernel).numpy(), args.repeats)
        t_fast = median_seconds(lambda: fast(x, kernel).numpy(), args.repeats)
        used = "yes" if winograd.suits(shape, k, "float32") else "no"
        print(f"{name:28s} {str(shape):>18s} {k:4d} {t_direct * 1e3:7.1f}ms {t_fast * 1e3:7.1f}ms "
              f"{t_direct / t_fast:7.2f}x {error:10.1e}  {used}", flush=True)


if __name__ == "__main__":
    main()
