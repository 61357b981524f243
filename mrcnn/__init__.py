"""Mask R-CNN on Keras 3 / TensorFlow 2 with matterport's API."""

__version__ = "1.0.0"
