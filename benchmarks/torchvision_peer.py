"""Time torchvision's ``maskrcnn_resnet50_fpn`` (random weights) on one image; prints one JSON line.

Run by ``benchmarks/speed.py`` in the same process when torch is importable, or with another interpreter
(``--torch-python``) when torch lives in a separate environment:

    python benchmarks/torchvision_peer.py --image IMG --size 1024 --threads 2 --repeats 5 [--precision bfloat16]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def time_torchvision(image: np.ndarray, size: int, threads: int, repeats: int, precision: str = "float32") -> float:
    """Median seconds per image (after one warm-up run), one image at a time; ``precision`` "bfloat16" or
    "float16" runs under ``torch.autocast``."""
    import torch
    import torchvision

    torch.set_num_threads(threads)
    model = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, min_size=size, max_size=size, box_score_thresh=0.0).eval()
    tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255.0
    times = []
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(precision)
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        model([tensor])
        for _ in range(repeats):
            start = time.perf_counter()
            model([tensor])
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16", "float16"])
    args = parser.parse_args(argv)
    from PIL import Image

    image = np.asarray(Image.open(args.image).convert("RGB"))
    seconds = time_torchvision(image, args.size, args.threads, args.repeats, args.precision)
    import torch
    import torchvision

    print(json.dumps({"seconds": seconds, "torch": torch.__version__, "torchvision": torchvision.__version__}))


if __name__ == "__main__":
    main()
