"""The main job on the bundled sample: detect lesions in the demo images, write masks and overlays, and evaluate
the bundled model next to the classical Otsu baseline.

    python lesion/demo.py [--out results/demo] [--images DIR] [--dataset DIR] [--weights PATH]

Inputs (defaults): the 12 validation-split images in ``demo/isic2017`` and the bundled model
``weights/mask_rcnn_lesion_light.h5``. Outputs: ``<out>/detect`` (``*_segmentation.png``, ``*_overlay.jpg``,
``detections.json``, ``summary.csv``) and ``<out>/evaluate`` (``metrics.json``, ``per_image.csv``, plots).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mrcnn import console

ROOT = Path(__file__).resolve().parents[1]
DEMO_DATASET = ROOT / "demo" / "isic2017"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "results" / "demo"), help="output folder")
    parser.add_argument("--dataset", default=str(DEMO_DATASET), help="ISIC-layout folder with ground truth")
    parser.add_argument("--weights", default=None, help="weights file (default: the bundled lesion model)")
    console.add_output_arguments(parser)
    args = parser.parse_args(argv)
    console.quiet_tensorflow(args.verbose)

    from lesion import detect, evaluate

    out = Path(args.out)
    images = Path(args.dataset) / "ISIC-2017_Training_Data"
    weights = ["--weights", args.weights] if args.weights else []
    weights += ["--quiet"] if args.quiet else ["--verbose"] if args.verbose else []
    start = time.time()
    print(f"== Detecting lesions in {images}")
    rc_detect = detect.main(["--images", str(images), "--out", str(out / "detect")] + weights)
    if rc_detect == 2:
        return 2
    print(f"\n== Evaluating on {args.dataset} (model and Otsu baseline)")
    rc_eval = evaluate.main(["--dataset", args.dataset, "--subset", "all", "--out", str(out / "evaluate"),
                             "--baseline", "otsu"] + weights)
    print(f"\nDone in {time.time() - start:.0f} s.")
    print(f"  masks and overlays: {out / 'detect'} (*_segmentation.png, *_overlay.jpg, summary.csv, "
          "detections.json)")
    print(f"  metrics and plots:  {out / 'evaluate'} (metrics.json, per_image.csv, *.png)")
    return max(rc_detect, rc_eval)


if __name__ == "__main__":
    sys.exit(main())
