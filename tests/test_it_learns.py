"""End to end: Mask R-CNN trained from scratch on synthetic shapes (CPU, about a minute) learns.

Loss must fall and mask mAP@0.5 (utils.compute_ap) on held-back shapes must be clearly above the same
model's before training.
"""

from __future__ import annotations

import keras
import numpy as np

from mrcnn import model as modellib
from samples.shapes import ShapesConfig, ShapesDataset, evaluate_map


class LearnConfig(ShapesConfig):
    NAME = "learn"
    IMAGES_PER_GPU = 4
    STEPS_PER_EPOCH = 100
    VALIDATION_STEPS = 0
    DATA_WORKERS = 2
    LEARNING_RATE = 0.01
    SEED = 7


class LearnInferenceConfig(LearnConfig):
    IMAGES_PER_GPU = 1
    DETECTION_MIN_CONFIDENCE = 0.3


def test_mask_rcnn_learns_shapes(tmp_path):
    keras.utils.set_random_seed(7)
    train = ShapesDataset()
    train.load_shapes(500, 128, 128, seed=1)
    train.prepare()
    held_back = ShapesDataset()
    held_back.load_shapes(30, 128, 128, seed=2)
    held_back.prepare()

    config = LearnConfig()
    model = modellib.MaskRCNN("training", config, model_dir=str(tmp_path))
    inference = modellib.MaskRCNN("inference", LearnInferenceConfig(), model_dir=str(tmp_path))
    inference.keras_model.set_weights(model.keras_model.get_weights())
    untrained_map = evaluate_map(inference, held_back, LearnInferenceConfig())

    history = model.train(train, None, learning_rate=config.LEARNING_RATE, epochs=4, layers="all",
                          verbose=2)
    losses = history.history["loss"]
    inference.load_weights(model.find_last(), by_name=True)
    trained_map = evaluate_map(inference, held_back, LearnInferenceConfig())
    print(f"loss by epoch {np.round(losses, 3)}; mask mAP@0.5 untrained {untrained_map:.3f}, "
          f"trained {trained_map:.3f}")

    assert losses[-1] < 0.7 * losses[0]
    assert history.history["mrcnn_mask_loss"][-1] < history.history["mrcnn_mask_loss"][0]
    assert trained_map >= 0.12
    assert trained_map > untrained_map + 0.1
