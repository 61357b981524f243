"""Inference speed: backbone+FPN alone vs the whole ``detect``, per stage, peak memory, and (optionally)
torchvision's ``maskrcnn_resnet50_fpn`` at the same size and thread count, its runs alternating with ours.

    python benchmarks/speed.py                      # ResNet-50-FPN at 512 and 1024 px (square, and "-fit":
                                                    # IMAGE_RESIZE_MODE fit), and the light config, each in
                                                    # float32 and in mixed bfloat16
    python benchmarks/speed.py --configs light --precision float32 --repeats 10
    python benchmarks/speed.py --configs lesion     # the ResNet-101 config lesion/train.py fine-tunes
    python benchmarks/speed.py --configs resnet50@1024 --precision float32 --winograd on off
    python benchmarks/speed.py --throughput 50     # folder throughput of lesion/detect.py's pipeline
    python benchmarks/speed.py --training 30       # training steps/s: real input pipeline vs a cached batch
    TORCH_PYTHON=/path/to/python benchmarks/speed.py  # torchvision from another environment

All figures are measured in one run (the ratios are what to compare across machines). Each config runs in a
fresh process, so its peak RSS is its own (``--same-process`` to run them all in this one). One image at a time,
after warm-up; the image is a real ISIC image at its original size when ../shared/isic2017-sample exists,
else a bundled test image. Each config also prints its compute in multiply-accumulates (GMAC) per stage, the
rate each part runs at, and the ratio detect / backbone+FPN that the compute alone sets (every stage at the
backbone's rate).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from mrcnn import console

console.quiet_tensorflow()  # before TensorFlow is imported
ROOT = Path(__file__).resolve().parents[1]

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mrcnn import model as modellib  # noqa: E402
from mrcnn.anchors import compute_backbone_shapes  # noqa: E402
from mrcnn.config import Config  # noqa: E402
from mrcnn.dataset import read_image  # noqa: E402
from mrcnn.layers import set_winograd  # noqa: E402


class BenchConfig(Config):
    NAME = "bench"
    IMAGES_PER_GPU = 1
    NUM_CLASSES = 1 + 80
    BACKBONE = "resnet50"
    DETECTION_MIN_CONFIDENCE = 0.0  # Random weights: keep the full detection load (100 masks).


def make_config(name: str, precision: str = "float32", image_shape=(767, 1022), winograd: bool = True) -> Config:
    """"light" and "lesion" (lesion.config's), "resnet50@SIZE" (square, matterport's default mode),
    "resnet50@SIZE-fit" (IMAGE_RESIZE_MODE "fit": the same scale, padded to multiples of 64 only: the pixels
    torchvision works on) or "resnet50@SIZE-pad64" (the image scaled up so its long side is about SIZE, padded to
    multiples of 64; "pad64" never scales down, so SIZE must be at least the image's long side)."""
    if name in ("light", "lesion"):
        # The application's configs: the bundled light model's, and the one lesion/train.py fine-tunes from the
        # COCO weights (ResNet-101 at 1024 px, 500 proposals, at most 10 detections).
        from lesion.config import make_config as lesion_config

        return lesion_config(light=name == "light", classes="lesion", IMAGES_PER_GPU=1,
                             DETECTION_MIN_CONFIDENCE=0.0, MIXED_PRECISION=precision, WINOGRAD=winograd)
    size, _, mode = name.split("@")[1].partition("-")
    size = int(size)
    cfg = BenchConfig()
    cfg.IMAGE_MIN_DIM = cfg.IMAGE_MAX_DIM = size
    if mode == "fit":
        cfg.IMAGE_RESIZE_MODE = "fit"
    elif mode == "pad64":
        cfg.IMAGE_RESIZE_MODE = "pad64"
        cfg.IMAGE_MIN_DIM = max(64, 64 * round(size * min(image_shape[:2]) / max(image_shape[:2]) / 64))
    cfg.MIXED_PRECISION = precision
    cfg.WINOGRAD = winograd
    cfg.__init__()
    return cfg


def graph_gmacs(fn, *specs) -> float:
    """Multiply-accumulates (GMAC) of the convolutions and matrix products in ``fn`` traced for ``specs``."""
    graph = tf.function(fn).get_concrete_function(*specs).graph
    total = 0
    for op in graph.get_operations():
        if op.type == "Conv2D":  # filter [kh, kw, cin, cout]
            kh, kw, cin, _ = op.inputs[1].shape
            total += int(np.prod(op.outputs[0].shape)) * kh * kw * cin
        elif op.type == "Conv2DBackpropInput":  # transposed convolution; filter [kh, kw, cout, cin]
            kh, kw, cout, _ = op.inputs[1].shape
            total += int(np.prod(op.inputs[2].shape)) * kh * kw * cout
        elif op.type in ("MatMul", "BatchMatMulV2"):
            a = op.inputs[0].shape
            total += int(np.prod(op.outputs[0].shape)) * int(a[-2] if op.get_attr(
                "transpose_a" if op.type == "MatMul" else "adj_x") else a[-1])
    return total / 1e9


def stage_gmacs(model, size, detections: int) -> dict:
    """GMAC per stage for one molded image of ``size`` (H, W): the backbone + FPN, the RPN on every level,
    the box head on the inference proposals, the mask head on ``detections`` detections. Counted on the direct
    convolutions: a convolution run by Winograd's algorithm counts what it computes, not the fewer products it
    takes (so its rate reads above the machine's multiply-add peak)."""
    km, cfg = model.keras_model, model.config
    set_winograd(km, False)
    try:
        return _stage_gmacs(km, cfg, size, detections)
    finally:
        set_winograd(km, km.winograd)


def _stage_gmacs(km, cfg, size, detections: int) -> dict:
    image = tf.TensorSpec([1, size[0], size[1], 3], tf.float32)
    depth = cfg.TOP_DOWN_PYRAMID_SIZE
    levels = [tf.TensorSpec([1, h, w, depth], km.rpn.compute_dtype)
              for h, w in compute_backbone_shapes(size, cfg.BACKBONE_STRIDES)]
    pooled = tf.TensorSpec([cfg.POST_NMS_ROIS_INFERENCE, cfg.POOL_SIZE, cfg.POOL_SIZE, depth],
                           km.box_head.compute_dtype)
    masks = tf.TensorSpec([detections, cfg.MASK_POOL_SIZE, cfg.MASK_POOL_SIZE, depth], km.mask_head.compute_dtype)
    return {"backbone": graph_gmacs(lambda x: km.features(x), image),
            "rpn": sum(graph_gmacs(lambda p: km.rpn(p), spec) for spec in levels),
            "box_head": graph_gmacs(lambda p: km.box_head(p), pooled),
            "mask_head": graph_gmacs(lambda p: km.mask_head(p), masks) if detections else 0.0}


def seconds(fn) -> float:
    """Seconds of one call of ``fn()``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timeit(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs (after one warm-up run)."""
    fn()
    return float(np.median([seconds(fn) for _ in range(repeats)]))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def isolated(fn, *args):
    """``fn(*args)`` in a fresh process, so its peak RSS is its own (the process maximum never goes down)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1) as pool:
        return pool.submit(fn, *args).result()


def bench_config(name: str, image: np.ndarray, repeats: int, precision: str = "float32", image_path=None,
                 torch_python=None, winograd: bool = True) -> dict:
    """Times of one config. With ``torch_python`` (ResNet-50 configs), the whole ``detect`` runs alternate
    with torchvision's on the same image (``image_path``) at the same size."""
    cfg = make_config(name, precision, image.shape, winograd)
    keras.utils.set_random_seed(0)  # the same random weights, so the same detections, in every run
    model = modellib.MaskRCNN("inference", cfg, model_dir="/tmp")
    km = model.keras_model
    molded, metas, windows = model.mold_inputs([image])
    size = molded.shape[1:3]
    x = tf.constant(molded)
    meta = tf.constant(metas)
    anchors = tf.constant(km.anchors_for(size))

    backbone = tf.function(lambda t: km.features(t), reduce_retracing=True)
    feats = backbone(x)

    @tf.function(reduce_retracing=True)
    def rpn(feats):
        _, probs, deltas = km.rpn_outputs(feats)
        return km.proposals_inference(probs, deltas, anchors)

    proposals = rpn(feats)

    @tf.function(reduce_retracing=True)
    def heads(proposals, feats):
        return km.classify(proposals, feats, image_shape=size)

    _, probs, deltas = heads(proposals, feats)

    @tf.function(reduce_retracing=True)
    def decode(proposals, probs, deltas, meta):
        return km.detection(proposals, probs, deltas, km.window(meta, size))

    full = model._inference_fn(size)
    out = model.run_inference(molded, metas)

    def unmold():
        return model._unmold_all(out, [image.shape], molded.shape, windows)

    def whole_detect():
        return model.detect([image])

    r = {
        "config": name,
        "precision": precision,
        "winograd": bool(km.winograd),
        "input": f"{size[0]}x{size[1]}",
        "params_M": km.count_params() / 1e6,
        "backbone_fpn_s": timeit(lambda: [f.numpy() for f in backbone(x)], repeats),
        "rpn_proposals_s": timeit(lambda: proposals_np(rpn(feats)), repeats),
        "roialign_heads_s": timeit(lambda: [t.numpy() for t in heads(proposals, feats)], repeats),
        "decode_s": timeit(lambda: [t.numpy() for t in decode(proposals, probs, deltas, meta)], repeats),
        "graph_s": timeit(lambda: {k: v.numpy() for k, v in full({"input_image": x, "input_image_meta": meta}).items()},
                          repeats),
        "unmold_s": timeit(unmold, repeats),
        "detections": int(np.sum(out["detections"][0, :, 4] > 0)),
    }
    if torch_python and name.startswith("resnet50@"):
        # torchvision scales the long side to the size and pads to multiples of 32 only: the same pixels as
        # the "-fit" and "-pad64" configs (the square configs work on the padding too).
        peer = TorchvisionPeer(int(name.split("@")[1].split("-")[0]), image_path, precision, torch_python)
        try:
            whole_detect()
            ours, theirs = [], []
            for _ in range(repeats):
                ours.append(seconds(whole_detect))
                theirs.append(peer.time_once())
        finally:
            peer.close()
        r["detect_s"], r["torchvision_s"] = float(np.median(ours)), float(np.median(theirs))
        r["ratio_to_torchvision"] = r["detect_s"] / r["torchvision_s"]
        r["torchvision_versions"] = peer.versions
    else:
        r["detect_s"] = timeit(whole_detect, repeats)
    r["mask_head_s"] = max(r["graph_s"] - r["backbone_fpn_s"] - r["rpn_proposals_s"] - r["roialign_heads_s"]
                           - r["decode_s"], 0.0)
    r["ratio_detect_to_backbone"] = r["detect_s"] / r["backbone_fpn_s"]
    r["peak_rss_mb"] = peak_rss_mb()
    g = stage_gmacs(model, size, r["detections"])
    r["gmac"] = g
    r["floor_ratio"] = sum(g.values()) / g["backbone"]
    r["floor_ratio_no_masks"] = (sum(g.values()) - g["mask_head"]) / g["backbone"]
    r["backbone_gmacs"] = g["backbone"] / r["backbone_fpn_s"]
    r["rest_gmacs"] = (sum(g.values()) - g["backbone"]) / max(r["graph_s"] - r["backbone_fpn_s"], 1e-9)
    return r


def proposals_np(t):
    return t.numpy()


class TorchvisionPeer:
    """torchvision's ``maskrcnn_resnet50_fpn`` (random weights) in a process of its own
    (``benchmarks/torchvision_peer.py --serve``), built and warmed up once, then timed one image per call, so
    its runs alternate with ours and drift on a shared machine hits both alike. Same size, same number of
    threads as TensorFlow, same precision (bfloat16: ``torch.autocast``)."""

    def __init__(self, size: int, image_path: str, precision: str, torch_python: str):
        threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
        self.process = subprocess.Popen(
            [torch_python, str(ROOT / "benchmarks" / "torchvision_peer.py"), "--serve", "--image", image_path,
             "--size", str(size), "--threads", str(threads), "--precision", precision],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = self.process.stdout.readline()
        if not ready:
            raise RuntimeError(f"torchvision_peer.py with {torch_python} exited with {self.process.wait()}")
        self.versions = json.loads(ready)

    def time_once(self) -> float:
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        return float(json.loads(self.process.stdout.readline())["seconds"])

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def torch_interpreter(torch_python: str | None) -> str | None:
    """The interpreter to run torchvision with: ``torch_python``, or this one when torch and torchvision import
    here, or None."""
    if torch_python:
        return torch_python
    import importlib.util

    found = all(importlib.util.find_spec(m) is not None for m in ("torch", "torchvision"))
    return sys.executable if found else None


def bench_throughput(count: int, repeats: int) -> dict:
    """Folder throughput of lesion/detect.py's pipeline (decode + mold in worker threads, overlapped with
    inference) over ``count`` images, against 1 / single-image latency (decode + detect, one after the other)."""
    from lesion import inference

    paths = sorted(glob.glob(str(ROOT.parent / "shared/isic2017-sample/ISIC-2017_Training_Data/*.jpg")))
    if not paths:
        paths = sorted(glob.glob(str(ROOT / "demo/isic2017/ISIC-2017_Training_Data/*.jpg")))
    paths = (paths * (count // len(paths) + 1))[:count]
    weights = ROOT / "weights" / "mask_rcnn_lesion_light.h5"
    if weights.exists():
        model, _ = inference.load_model(str(weights))
        what = "bundled lesion model"
    else:
        model = modellib.MaskRCNN("inference", make_config("light"), model_dir="/tmp")
        what = "light config, random weights"
    model.config.IMAGES_PER_GPU = model.config.BATCH_SIZE = 1
    for p in paths[:3]:
        model.detect([read_image(p)])
    latency = timeit(lambda: [model.detect([read_image(p)]) for p in paths[:repeats]], 1) / repeats

    def run_folder():
        n = 0
        for _, _, result, error in inference.iter_detections(
                model, inference.iter_prepared(model, paths, read_image, workers=2), batch_size=1):
            n += result is not None
        return n

    start = time.perf_counter()
    done = run_folder()
    elapsed = time.perf_counter() - start
    r = {"what": what, "images": done, "latency_s": latency, "throughput_ips": done / elapsed}
    r["ratio"] = r["throughput_ips"] * latency
    print(f"== folder throughput ({what}, {done} images of {paths[0].rsplit('/', 2)[0]})\n"
          f"  single image (decode + detect)  {latency:.3f} s  -> {1 / latency:.2f} images/s\n"
          f"  folder pipeline                 {r['throughput_ips']:.2f} images/s   ratio {r['ratio']:.2f}", flush=True)
    return r


def bench_training(steps: int) -> dict:
    """Training steps per second of the light lesion config with the real input pipeline (ISIC images decoded,
    resized and augmented by PyDataset workers) vs the same model fed one cached batch."""
    from lesion.augment import dermoscopy_augmentation
    from lesion.config import make_config as lesion_config
    from lesion.datasets import IsicDataset
    from mrcnn.data import MaskRCNNSequence

    root = ROOT.parent / "shared" / "isic2017-sample"
    if not root.exists():
        root = ROOT / "demo" / "isic2017"
    dataset = IsicDataset()
    dataset.load_isic(str(root), classes="diagnosis")
    dataset.prepare()
    config = lesion_config(light=True, classes="diagnosis")
    model = modellib.MaskRCNN("training", config, model_dir="/tmp/speed_logs")
    model.set_trainable(".*", verbose=0)
    model.compile(config.LEARNING_RATE, config.LEARNING_MOMENTUM)
    real = MaskRCNNSequence(dataset, config, augmentation=dermoscopy_augmentation(), steps=steps)
    batch = real[0]

    class Cached(keras.utils.PyDataset):
        def __len__(self):
            return steps

        def __getitem__(self, i):
            return batch

    km = model.keras_model
    km.fit(Cached(), epochs=1, verbose=0)  # compile the train step
    timings = {}
    for name, data in (("cached", Cached()), ("real", real), ("cached again", Cached())):
        start = time.perf_counter()
        km.fit(data, epochs=1, verbose=0)
        timings[name] = steps / (time.perf_counter() - start)
    cached = (timings["cached"] + timings["cached again"]) / 2
    r = {"real_sps": timings["real"], "cached_sps": cached, "ratio": timings["real"] / cached,
         "batch": config.BATCH_SIZE, "input": int(config.IMAGE_SHAPE[0])}
    print(f"== training input pipeline (light config, batch {r['batch']}, {r['input']} px, {steps} steps)\n"
          f"  real data (PyDataset, {config.DATA_WORKERS} workers, augmentation)  {r['real_sps']:.2f} steps/s\n"
          f"  one cached batch                                    {cached:.2f} steps/s\n"
          f"  ratio {r['ratio']:.2f}", flush=True)
    return r


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="*", default=["resnet50@512", "resnet50@512-fit", "resnet50@1024",
                                                          "resnet50@1024-fit", "light"])
    parser.add_argument("--precision", nargs="*", default=["float32", "bfloat16"],
                        choices=["float32", "bfloat16", "float16"],
                        help="MIXED_PRECISION values to run every config in (bfloat16 pays on CPUs with "
                             "AVX512-BF16 or AMX)")
    parser.add_argument("--winograd", nargs="*", default=["on"], choices=["on", "off"],
                        help="WINOGRAD values to run every config with (on: the large 3x3 convolutions at "
                             "float32 by Winograd's algorithm, mrcnn.winograd; off: direct convolutions)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--image", default=None)
    parser.add_argument("--torch-python", default=os.environ.get("TORCH_PYTHON"),
                        help="a Python interpreter with torch and torchvision, when they are not importable here")
    parser.add_argument("--throughput", type=int, default=0, metavar="N",
                        help="also measure folder throughput over N images")
    parser.add_argument("--training", type=int, default=0, metavar="STEPS",
                        help="also measure training steps/s, real data vs a cached batch")
    parser.add_argument("--same-process", action="store_true",
                        help="run every config in this process (the peak RSS is then the maximum so far)")
    args = parser.parse_args(argv)

    candidates = [args.image] if args.image else sorted(
        glob.glob(str(ROOT.parent / "shared/isic2017-sample/ISIC-2017_Training_Data/*.jpg")))[:1] or sorted(
        glob.glob(str(ROOT / "tests/data/isic2017/ISIC-2017_Training_Data/*.jpg")))[:1]
    image = read_image(candidates[0])
    print(f"image {candidates[0]} {image.shape[1]}x{image.shape[0]}; TF {tf.__version__}; "
          f"{os.cpu_count()} CPU threads; repeats {args.repeats} (median)")
    torch_python = torch_interpreter(args.torch_python)
    rows = []
    for name in args.configs:
        for precision in args.precision:
            for winograd in args.winograd:
                bench_args = (name, image, args.repeats, precision, candidates[0], torch_python, winograd == "on")
                r = bench_config(*bench_args) if args.same_process else isolated(bench_config, *bench_args)
                rows.append(r)
                print(format_row(r), flush=True)
    if args.throughput:
        rows.append(bench_throughput(args.throughput, args.repeats))
    if args.training:
        rows.append(bench_training(args.training))
    return rows


def format_row(r: dict) -> str:
    tv = r.get("torchvision_s")
    lines = [
        f"== {r['config']} {r['precision']}{'' if r['winograd'] else ' (Winograd off)'} ({r['input']}, "
        f"{r['params_M']:.1f} M parameters, "
        f"{r['detections']} detections)",
        f"  backbone+FPN        {r['backbone_fpn_s']:.3f} s",
        f"  RPN + proposals     {r['rpn_proposals_s']:.3f} s",
        f"  RoIAlign + heads    {r['roialign_heads_s']:.3f} s",
        f"  detection decoding  {r['decode_s']:.3f} s",
        f"  mask head (rest)    {r['mask_head_s']:.3f} s",
        f"  whole graph         {r['graph_s']:.3f} s",
        f"  unmolding           {r['unmold_s']:.3f} s",
        f"  whole detect()      {r['detect_s']:.3f} s   ratio to backbone+FPN {r['ratio_detect_to_backbone']:.2f}",
        f"  peak RSS            {r['peak_rss_mb']:.0f} MB",
        "  compute             " + ", ".join(f"{k.replace('_', ' ')} {v:.1f}" for k, v in r["gmac"].items())
        + " GMAC",
        f"  rate                backbone+FPN {r['backbone_gmacs']:.0f} GMAC/s, the rest of the graph "
        f"{r['rest_gmacs']:.0f} GMAC/s",
        f"  ratio set by compute {r['floor_ratio']:.2f} ({r['floor_ratio_no_masks']:.2f} without the mask head)",
    ]
    if tv:
        lines.append(f"  torchvision         {tv:.3f} s   ratio ours/torchvision {r['ratio_to_torchvision']:.2f}")
    elif r["config"].startswith("resnet50@"):
        lines.append("  torchvision         not installed (--torch-python)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
