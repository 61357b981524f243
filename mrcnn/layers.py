"""Small building blocks shared by the backbone and the heads."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="mrcnn")
class BatchNorm(keras.layers.BatchNormalization):
    """BatchNormalization whose train/inference mode is fixed at construction.

    Detection batches are small, so by default (``train_bn=False``, matterport's TRAIN_BN=False) BatchNorm always
    runs in inference mode, using the moving statistics, while gamma and beta stay trainable.
    ``train_bn=True`` updates the statistics in training; ``None`` follows the ``training`` argument.
    """

    def __init__(self, train_bn: bool | None = False, **kwargs):
        super().__init__(**kwargs)
        self.train_bn = train_bn

    def call(self, inputs, training=None):
        if self.train_bn is not None:
            training = bool(training) and self.train_bn
        return super().call(inputs, training=training)

    def get_config(self):
        config = super().get_config()
        config["train_bn"] = self.train_bn
        return config
