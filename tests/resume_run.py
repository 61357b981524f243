"""Train a tiny shapes model for two epochs twice with TensorFlow's deterministic ops: at once, and interrupted
after the first epoch and resumed from its checkpoint in a new model; write both runs' weights to an .npz.

Run by tests/test_resume.py in its own process (deterministic ops are a process-wide setting)."""

from __future__ import annotations

import argparse
import os
import random
import sys

from mrcnn.console import quiet_tensorflow

quiet_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from lesion.augment import dermoscopy_augmentation  # noqa: E402
from mrcnn import model as modellib  # noqa: E402
from samples.shapes import ShapesConfig, ShapesDataset  # noqa: E402


class ResumeConfig(ShapesConfig):
    NAME = "resume"
    IMAGES_PER_GPU = 2
    STEPS_PER_EPOCH = 3
    VALIDATION_STEPS = 1
    DATA_WORKERS = 2
    TRAIN_BN = True
    SEED = 5


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--logs", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    tf.config.experimental.enable_op_determinism()
    train, val = ShapesDataset(), ShapesDataset()
    train.load_shapes(10, 128, 128, seed=1)
    val.load_shapes(2, 128, 128, seed=2)
    train.prepare()
    val.prepare()

    def run(model, stop=None):
        model.train(train, val, learning_rate=0.01, epochs=2, layers="all", verbose=0, stop_epoch=stop,
                    augmentation=dermoscopy_augmentation("default", seed=9))

    keras.utils.set_random_seed(5)
    whole = modellib.MaskRCNN("training", ResumeConfig(), model_dir=os.path.join(args.logs, "whole"))
    run(whole)

    keras.utils.set_random_seed(5)
    first = modellib.MaskRCNN("training", ResumeConfig(), model_dir=os.path.join(args.logs, "resumed"))
    run(first, stop=1)
    # A new process would not share the first one's global random states (Python's, NumPy's, TensorFlow's).
    keras.utils.set_random_seed(123)
    random.seed(123)
    resumed = modellib.MaskRCNN("training", ResumeConfig(), model_dir=os.path.join(args.logs, "resumed"))
    resumed.load_weights(resumed.find_last(), by_name=True)
    run(resumed)
    np.savez(args.out, **{f"whole/{i}:{v.path}": np.asarray(v.numpy()) for i, v in enumerate(whole.keras_model.weights)},
             **{f"resumed/{i}:{v.path}": np.asarray(v.numpy()) for i, v in enumerate(resumed.keras_model.weights)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
