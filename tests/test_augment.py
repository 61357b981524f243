"""lesion.augment: masks move with the image, the size and dtype are kept.

The synthetic image is black with two white shapes that have no symmetry (an L and a small square off the
diagonal); the masks are exactly those shapes. After any augmentation the white pixels of the image (grey value
above the midpoint 128: colour jitter on grey pixels only scales and shifts the grey level, far from the midpoint)
must be the pixels of the masks. Lossless transforms (flips, 90-degree rotations) must match everywhere; with
the affine warp and blur the image is interpolated, so a disagreement is allowed only on the one-pixel band
along the mask's edge.
"""

import cv2
import numpy as np
import pytest

from lesion.augment import STRENGTHS, dermoscopy_augmentation
from mrcnn.data import apply_augmentation

SIZE = 64


def _scene(height=SIZE, width=SIZE):
    """Image uint8 [H, W, 3] and masks bool [H, W, 2]: an L (instance 0) and a 6 x 6 square (instance 1)."""
    masks = np.zeros([height, width, 2], bool)
    masks[14:44, 16:24, 0] = True   # The L's upright stroke.
    masks[36:44, 24:40, 0] = True   # The L's foot, to the right.
    masks[10:16, 44:50, 1] = True   # The square, top right.
    image = np.zeros([height, width, 3], np.uint8)
    image[masks.any(axis=-1)] = 255
    return image, masks


def _marked(image):
    return image.astype(np.float32).mean(axis=-1) > 128


def _edge_band(mask):
    """Pixels within one pixel of the mask's edge (inside or outside)."""
    kernel = np.ones([3, 3], np.uint8)
    m = mask.astype(np.uint8)
    return (cv2.dilate(m, kernel) - cv2.erode(m, kernel)).astype(bool)


def test_flips_move_masks_exactly_with_the_image():
    image, masks = _scene()
    aug = dermoscopy_augmentation("flips", seed=0)
    seen = set()
    for _ in range(100):
        out_image, out_masks = apply_augmentation(aug, image, masks)
        assert out_image.shape == image.shape and out_image.dtype == np.uint8
        assert out_masks.shape == masks.shape and out_masks.dtype == bool
        np.testing.assert_array_equal(_marked(out_image), out_masks.any(axis=-1))
        # Lossless: the areas are unchanged, instance by instance.
        np.testing.assert_array_equal(out_masks.sum(axis=(0, 1)), masks.sum(axis=(0, 1)))
        seen.add(out_masks[..., 0].tobytes())
    # The L has no symmetry: all 8 flips/rotations of it are distinct, and 100 draws reach them all.
    assert len(seen) == 8


@pytest.mark.parametrize("strength", ["light", "default", "strong"])
def test_masks_follow_the_image_under_warp_colour_and_blur(strength):
    image, masks = _scene()
    aug = dermoscopy_augmentation(strength, seed=1)
    changed, edge_disagreement = 0, []
    for _ in range(150):
        out_image, out_masks = apply_augmentation(aug, image, masks)
        assert out_image.shape == image.shape and out_image.dtype == np.uint8
        assert out_masks.shape == masks.shape and out_masks.dtype == bool
        union = out_masks.any(axis=-1)
        disagree = _marked(out_image) != union
        assert not (disagree & ~_edge_band(union)).any(), "image and mask disagree away from the mask's edge"
        edge_disagreement.append(disagree.sum() / _edge_band(union).sum())
        # The instances stay apart and keep their identity (the L is the larger one).
        assert not (out_masks[..., 0] & out_masks[..., 1]).any()
        areas = out_masks.sum(axis=(0, 1))
        assert areas[0] > 5 * areas[1] > 0
        changed += int(not np.array_equal(out_image, image))
    assert changed > 100
    # Interpolation and blur shift the thresholded edge of the image a little: on average only a few per cent of
    # the edge band (a small shape blurred at its corners gives the worst single draws).
    assert np.mean(edge_disagreement) < 0.1


@pytest.mark.parametrize("strength", STRENGTHS)
def test_size_and_dtype_are_kept_on_a_real_sized_image(strength):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, [320, 320, 3], dtype=np.uint8)
    masks = np.zeros([320, 320, 1], bool)
    masks[100:220, 80:240, 0] = True
    aug = dermoscopy_augmentation(strength, seed=2)
    for _ in range(5):
        out_image, out_masks = apply_augmentation(aug, image, masks)
        assert out_image.shape == (320, 320, 3) and out_image.dtype == np.uint8
        assert out_masks.shape == (320, 320, 1) and out_masks.dtype == bool


def test_non_square_input_without_rot90_keeps_its_shape():
    image, masks = _scene(48, 80)
    aug = dermoscopy_augmentation("default", rotate90=False, seed=3)
    for _ in range(20):
        out_image, out_masks = apply_augmentation(aug, image, masks)
        assert out_image.shape == (48, 80, 3)
        assert out_masks.shape == (48, 80, 2)


def test_image_without_instances():
    image, _ = _scene()
    out_image, out_masks = apply_augmentation(dermoscopy_augmentation(seed=4), image, np.zeros([SIZE, SIZE, 0], bool))
    assert out_image.shape == image.shape
    assert out_masks.shape == (SIZE, SIZE, 0)


def test_same_seed_same_draws():
    image, masks = _scene()
    a, b = dermoscopy_augmentation(seed=5), dermoscopy_augmentation(seed=5)
    for _ in range(5):
        ia, ma = apply_augmentation(a, image, masks)
        ib, mb = apply_augmentation(b, image, masks)
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(ma, mb)


def test_unknown_strength_is_refused():
    with pytest.raises(ValueError, match="strength must be one of"):
        dermoscopy_augmentation("extreme")


def test_imgaug_style_augmenter_moves_masks_with_the_image(monkeypatch):
    """matterport scripts pass imgaug augmenters; imgaug 0.4 does not import under NumPy 2, so a stand-in
    module with imgaug's interface (to_deterministic, augment_image, HooksImages) checks the coupling."""
    import sys
    import types

    from mrcnn.data import apply_augmentation

    class HooksImages:
        def __init__(self, activator=None):
            self.activator = activator

    class Fliplr:
        def to_deterministic(self):
            return self

        def augment_image(self, image, hooks=None):
            if hooks is not None and not hooks.activator(image, self, [], True):
                return image
            return image[:, ::-1].copy()

    class Multiply(Fliplr):  # a colour augmenter: never applied to masks
        def augment_image(self, image, hooks=None):
            if hooks is not None and not hooks.activator(image, self, [], True):
                return image
            return (image // 2).astype(image.dtype)

    fake = types.ModuleType("imgaug")
    fake.HooksImages = HooksImages
    monkeypatch.setitem(sys.modules, "imgaug", fake)

    image = np.zeros((8, 10, 3), np.uint8)
    image[2:5, 0:3] = 200
    mask = np.zeros((8, 10, 1), bool)
    mask[2:5, 0:3, 0] = True
    out_image, out_mask = apply_augmentation(Fliplr(), image, mask)
    assert out_mask.dtype == bool and out_mask.shape == mask.shape
    np.testing.assert_array_equal(out_mask[..., 0], out_image[..., 0] > 0)
    assert out_mask[2:5, 7:10, 0].all() and not out_mask[:, :7].any()
    out_image, out_mask = apply_augmentation(Multiply(), image, mask)
    np.testing.assert_array_equal(out_mask, mask)
    assert out_image.max() == 100


def test_training_batches_are_the_same_whatever_the_fetch_order_and_the_resume_point():
    """The augmentation is seeded image by image from the batch position: fetching the batches in another order,
    from several threads, or in a sequence started at a later epoch (a resumed run) gives the same batches."""
    from concurrent.futures import ThreadPoolExecutor

    from mrcnn.data import MaskRCNNSequence
    from samples.shapes import ShapesConfig, ShapesDataset

    class Cfg(ShapesConfig):
        IMAGES_PER_GPU = 2
        SEED = 3

    ds = ShapesDataset()
    ds.load_shapes(8, 128, 128, seed=1)
    ds.prepare()
    cfg = Cfg()

    def sequence(initial_epoch=0):
        return MaskRCNNSequence(ds, cfg, augmentation=dermoscopy_augmentation("default", seed=11), steps=3,
                                workers=1, initial_epoch=initial_epoch)

    first = sequence()
    epoch0 = [first[i] for i in range(3)]
    first.on_epoch_end()
    epoch1 = [first[i] for i in (2, 0, 1)]
    again = sequence()
    with ThreadPoolExecutor(3) as pool:
        threaded = list(pool.map(again.__getitem__, [2, 1, 0]))[::-1]
    resumed = sequence(initial_epoch=1)
    for a, b in zip(epoch0, threaded):
        np.testing.assert_array_equal(a["input_image"], b["input_image"])
        np.testing.assert_array_equal(a["input_gt_masks"], b["input_gt_masks"])
    np.testing.assert_array_equal(epoch1[1]["input_image"], resumed[0]["input_image"])
    np.testing.assert_array_equal(epoch1[0]["input_gt_boxes"], resumed[2]["input_gt_boxes"])
    # The draws do change from batch to batch: not the same transform for everyone.
    assert not np.array_equal(epoch0[0]["input_image"], epoch1[1]["input_image"])
