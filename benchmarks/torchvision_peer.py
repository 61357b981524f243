"""Time torchvision's ``maskrcnn_resnet50_fpn`` (random weights) on one image.

Run by ``benchmarks/speed.py`` in a process of its own, with this interpreter when torch and torchvision import
here or another one (``--torch-python``) when they live in a separate environment. Two modes:

    python benchmarks/torchvision_peer.py --image IMG --size 1024 --threads 2 --repeats 5 [--precision bfloat16]
        prints one JSON line: the median seconds per image after a warm-up run;
    python benchmarks/torchvision_peer.py --image IMG --size 1024 --threads 2 --serve
        builds and warms up the model, prints one JSON line (versions), then times one image per line read
        from stdin and prints its seconds, so the caller can alternate these runs with its own.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def build_runner(image: np.ndarray, size: int, threads: int, precision: str = "float32"):
    """A function that runs one image through the model (after one warm-up run) and returns its seconds;
    ``precision`` "bfloat16" or "float16" runs under ``torch.autocast``."""
    import torch
    import torchvision

    torch.set_num_threads(threads)
    model = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, min_size=size, max_size=size, box_score_thresh=0.0).eval()
    tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255.0
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(precision)

    def run_once() -> float:
        with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            start = time.perf_counter()
            model([tensor])
            return time.perf_counter() - start

    run_once()
    return run_once


def time_torchvision(image: np.ndarray, size: int, threads: int, repeats: int, precision: str = "float32") -> float:
    """Median seconds per image (after one warm-up run), one image at a time."""
    run_once = build_runner(image, size, threads, precision)
    return float(np.median([run_once() for _ in range(repeats)]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--serve", action="store_true", help="time one image per line read from stdin")
    args = parser.parse_args(argv)
    import torch
    import torchvision
    from PIL import Image

    image = np.asarray(Image.open(args.image).convert("RGB"))
    versions = {"torch": torch.__version__, "torchvision": torchvision.__version__}
    if args.serve:
        run_once = build_runner(image, args.size, args.threads, args.precision)
        print(json.dumps(versions), flush=True)
        for _ in sys.stdin:
            print(json.dumps({"seconds": run_once()}), flush=True)
        return
    seconds = time_torchvision(image, args.size, args.threads, args.repeats, args.precision)
    print(json.dumps({"seconds": seconds, **versions}))


if __name__ == "__main__":
    main()
