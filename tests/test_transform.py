"""mrcnn.transform: the meta vector, molding a batch and unmolding one image's detections (hand values)."""

import numpy as np
import pytest

from mrcnn import transform
from mrcnn.config import Config


class _Config(Config):
    NAME = "transform"
    NUM_CLASSES = 3
    IMAGE_MIN_DIM = 128  # A 100-row image is scaled up by 1.28.
    IMAGE_MAX_DIM = 256
    IMAGE_RESIZE_MODE = "square"


def test_meta_vector_round_trip():
    # A 100x200 image scaled by 1.28 to 128x256, centred in 256x256: 64 rows of padding above.
    meta = transform.compose_image_meta(7, (100, 200, 3), (256, 256, 3), (64, 0, 192, 256), 1.28, [1, 0, 1])
    assert meta.dtype == np.float32 and meta.shape == (12 + 3,)
    parsed = transform.parse_image_meta(meta[None])
    assert parsed["image_id"].tolist() == [7]
    assert parsed["original_image_shape"].tolist() == [[100, 200, 3]]
    assert parsed["image_shape"].tolist() == [[256, 256, 3]]
    assert parsed["window"].tolist() == [[64, 0, 192, 256]]
    np.testing.assert_allclose(parsed["scale"], [1.28])
    assert parsed["active_class_ids"].tolist() == [[1, 0, 1]]


def test_mold_inputs_window_meta_and_mean_pixel():
    config = _Config()
    image = np.full((100, 200, 3), 200, np.uint8)
    molded, metas, windows = transform.mold_inputs([image], config)
    assert molded.shape == (1, 256, 256, 3) and molded.dtype == np.float32
    assert windows.tolist() == [[64, 0, 192, 256]]
    np.testing.assert_allclose(molded[0, 100, 100], 200 - np.asarray(config.MEAN_PIXEL), rtol=1e-6)
    np.testing.assert_allclose(molded[0, 10, 100], -np.asarray(config.MEAN_PIXEL), rtol=1e-6)  # Padding.
    assert (transform.unmold_image(molded[0, 64:192], config) == 200).all()  # The window, back to uint8.
    parsed = transform.parse_image_meta(metas)
    assert parsed["original_image_shape"].tolist() == [[100, 200, 3]]
    assert parsed["window"].tolist() == [[64, 0, 192, 256]]
    np.testing.assert_allclose(parsed["scale"], [1.28])
    with pytest.raises(ValueError, match="RGB image"):
        transform.mold_inputs([image[..., :2]], config)


def test_unmold_detections_maps_the_window_to_the_original_image():
    # The window (64, 0, 192, 256) of a 256x256 molded image, normalised with matterport's (h - 1) convention.
    window_norm = [64 / 255, 0, 191 / 255, 1]
    detections = np.array([window_norm + [2, 0.9],  # The whole window -> the whole 100x200 image.
                           # y2 one original pixel above y1: zero height once denormalised (+1 on y2), dropped.
                           [64 / 255, 0, (64 - 127 / 99) / 255, 0.5, 1, 0.8],
                           [0, 0, 0, 0, 0, 0]], np.float32)  # Padding row.
    class_probs = np.full((3, 3), 1 / 3, np.float32)
    masks = np.ones((3, 28, 28), np.float32)
    rois, class_ids, scores, full_masks, probs = transform.unmold_detections(
        detections, class_probs, masks, (100, 200, 3), (256, 256, 3), (64, 0, 192, 256))
    assert rois.tolist() == [[0, 0, 100, 200]]
    assert class_ids.tolist() == [2]
    np.testing.assert_allclose(scores, [0.9])
    assert full_masks.shape == (100, 200, 1) and full_masks.all()
    assert probs.shape == (1, 3)
