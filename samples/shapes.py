"""Synthetic shapes (squares, circles, triangles): matterport's classic smoke test, written against the
matterport API (only the imports differ).

    python -m samples.shapes --epochs 4        # train on CPU for a few minutes, detect, print mask mAP@0.5
"""

from __future__ import annotations

import argparse
import math
import time

import cv2
import numpy as np

if __name__ == "__main__":
    from mrcnn import console

    console.quiet_tensorflow()  # before mrcnn.model imports TensorFlow

from mrcnn import model as modellib
from mrcnn import utils
from mrcnn.config import Config


class ShapesConfig(Config):
    """Small images, light backbone, few ROIs: trains on a CPU in minutes."""

    NAME = "shapes"
    GPU_COUNT = 1
    IMAGES_PER_GPU = 4
    NUM_CLASSES = 1 + 3  # background + square, circle, triangle
    BACKBONE = "light"
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TOP_DOWN_PYRAMID_SIZE = 64
    FPN_CLASSIF_FC_LAYERS_SIZE = 256
    PRE_NMS_LIMIT = 1000
    POST_NMS_ROIS_TRAINING = 200
    POST_NMS_ROIS_INFERENCE = 100
    TRAIN_ROIS_PER_IMAGE = 32
    RPN_TRAIN_ANCHORS_PER_IMAGE = 64
    MAX_GT_INSTANCES = 4
    DETECTION_MAX_INSTANCES = 8
    MINI_MASK_SHAPE = (28, 28)
    MASK_HEAD_DEPTH = 64
    RPN_HEAD_DEPTH = 128
    STEPS_PER_EPOCH = 100
    VALIDATION_STEPS = 5
    LEARNING_RATE = 0.01
    TRAIN_BN = None  # Trained from scratch: BatchNorm learns its statistics.
    DETECTION_MIN_CONFIDENCE = 0.5


class ShapesDataset(utils.Dataset):
    """Random images with 1-3 shapes on a plain background, generated on the fly from a seed."""

    def load_shapes(self, count: int, height: int, width: int, seed: int = 0):
        self.add_class("shapes", 1, "square")
        self.add_class("shapes", 2, "circle")
        self.add_class("shapes", 3, "triangle")
        rng = np.random.default_rng(seed)
        for i in range(count):
            bg_color, shapes = self.random_image(height, width, rng)
            self.add_image("shapes", image_id=i, path=None, width=width, height=height, bg_color=bg_color,
                           shapes=shapes)

    def load_image(self, image_id):
        info = self.image_info[image_id]
        image = np.ones([info["height"], info["width"], 3], dtype=np.uint8)
        image[:] = np.array(info["bg_color"], dtype=np.uint8)
        for shape, color, dims in info["shapes"]:
            image = self.draw_shape(image, shape, dims, color)
        return image

    def image_reference(self, image_id):
        return f"shapes:{image_id}"

    def load_mask(self, image_id):
        info = self.image_info[image_id]
        shapes = info["shapes"]
        mask = np.zeros([info["height"], info["width"], len(shapes)], dtype=np.uint8)
        for i, (shape, _, dims) in enumerate(shapes):
            mask[:, :, i:i + 1] = self.draw_shape(mask[:, :, i:i + 1].copy(), shape, dims, 1)
        # Later shapes hide earlier ones.
        occlusion = np.logical_not(mask[:, :, -1]).astype(np.uint8)
        for i in range(len(shapes) - 2, -1, -1):
            mask[:, :, i] = mask[:, :, i] * occlusion
            occlusion = np.logical_and(occlusion, np.logical_not(mask[:, :, i]))
        class_ids = np.array([self.class_names.index(s[0]) for s in shapes], dtype=np.int32)
        return mask.astype(bool), class_ids

    @staticmethod
    def draw_shape(image, shape, dims, color):
        x, y, s = dims
        color = tuple(int(c) for c in color) if isinstance(color, (tuple, list)) else int(color)
        if shape == "square":
            cv2.rectangle(image, (x - s, y - s), (x + s, y + s), color, -1)
        elif shape == "circle":
            cv2.circle(image, (x, y), s, color, -1)
        elif shape == "triangle":
            points = np.array([[(x, y - s), (x - s / math.sin(math.radians(60)), y + s),
                                (x + s / math.sin(math.radians(60)), y + s)]], dtype=np.int32)
            cv2.fillPoly(image, points, color)
        return image

    @staticmethod
    def random_shape(height, width, rng):
        shape = ["square", "circle", "triangle"][rng.integers(3)]
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        buffer = 20
        y = int(rng.integers(buffer, height - buffer))
        x = int(rng.integers(buffer, width - buffer))
        s = int(rng.integers(buffer, height // 4))
        return shape, color, (x, y, s)

    def random_image(self, height, width, rng):
        bg_color = np.array([int(c) for c in rng.integers(0, 256, 3)])
        shapes, boxes = [], []
        for _ in range(int(rng.integers(1, 4))):
            shape, color, dims = self.random_shape(height, width, rng)
            shapes.append((shape, color, dims))
            x, y, s = dims
            boxes.append([y - s, x - s, y + s, x + s])
        # Drop shapes that overlap too much.
        keep = utils.non_max_suppression(np.array(boxes, dtype=np.float32), np.arange(len(shapes), dtype=np.float32),
                                         0.3)
        shapes = [s for i, s in enumerate(shapes) if i in keep]
        return bg_color.tolist(), shapes


class InferenceConfig(ShapesConfig):
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1


def evaluate_map(model, dataset, config, limit=None, iou_threshold=0.5):
    """Mean mask AP@iou_threshold (utils.compute_ap) over ``dataset``."""
    aps = []
    for image_id in dataset.image_ids[:limit]:
        image, image_meta, gt_class_id, gt_bbox, gt_mask = modellib.load_image_gt(dataset, config, image_id)
        r = model.detect([image], verbose=0)[0]
        ap, _, _, _ = utils.compute_ap(gt_bbox, gt_class_id, gt_mask, r["rois"], r["class_ids"], r["scores"],
                                       r["masks"], iou_threshold=iou_threshold)
        aps.append(ap)
    return float(np.mean(aps))


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train Mask R-CNN on synthetic shapes and report mask mAP@0.5")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=ShapesConfig.STEPS_PER_EPOCH)
    parser.add_argument("--logs", default="logs")
    parser.add_argument("--train-images", type=int, default=500)
    parser.add_argument("--val-images", type=int, default=50)
    args = parser.parse_args(argv)

    config = ShapesConfig()
    config.STEPS_PER_EPOCH = args.steps
    config.display()
    train = ShapesDataset()
    train.load_shapes(args.train_images, 128, 128, seed=1)
    train.prepare()
    val = ShapesDataset()
    val.load_shapes(args.val_images, 128, 128, seed=2)
    val.prepare()

    model = modellib.MaskRCNN(mode="training", config=config, model_dir=args.logs)
    start = time.time()
    model.train(train, val, learning_rate=config.LEARNING_RATE, epochs=args.epochs, layers="all")
    print(f"Trained {args.epochs} epochs in {time.time() - start:.0f} s")

    inference_config = InferenceConfig()
    model = modellib.MaskRCNN(mode="inference", config=inference_config, model_dir=args.logs)
    model_path = model.find_last()
    print("Loading weights from", model_path)
    model.load_weights(model_path, by_name=True)
    mean_ap = evaluate_map(model, val, inference_config)
    print(f"Mask mAP@0.5 on {len(val.image_ids)} held-out images: {mean_ap:.3f}")
    return mean_ap


if __name__ == "__main__":
    main()
