"""Training augmentation for dermoscopy images, applied to the image and its lesion masks together.

A dermoscopy image has no up, down, left or right: the lesion may lie at any orientation under the lens. So the
geometric part is the full dihedral group (horizontal and vertical flips, rotations by 90 degrees) plus a mild
affine warp (scale, shift, small rotation). The photometric part imitates the spread between dermatoscopes and
lighting: brightness, contrast, saturation and a small hue shift, and now and then a slight blur (focus). Every
transform keeps the image size, as :func:`mrcnn.data.load_image_gt` requires.

Masks follow the image: geometric transforms move them with nearest-neighbour interpolation and fill the border
with 0 (background); photometric transforms leave them alone. The transform is meant for
:func:`mrcnn.data.apply_augmentation` (``MaskRCNN.train(..., augmentation=dermoscopy_augmentation())``), which
calls it as ``aug(image=uint8 [H, W, 3], masks=[uint8 [H, W], ...])``.

Rotations by 90 degrees need square inputs: the lesion configs resize to squares (``IMAGE_RESIZE_MODE =
"square"``). Pass ``rotate90=False`` for other shapes.
"""

from __future__ import annotations

import albumentations as A
import cv2

from mrcnn.data import seed_augmentation

__all__ = ["STRENGTHS", "dermoscopy_augmentation"]

#: Accepted ``strength`` values, from none to most.
#: ``"flips"``: flips and 90-degree rotations only (lossless: every pixel is moved, none is changed);
#: ``"light"``, ``"default"``, ``"strong"``: the same plus affine warp, colour jitter and blur of growing extent.
STRENGTHS = ("flips", "light", "default", "strong")

# Per strength: affine scale range, shift (fraction of the side), rotation (degrees), probability of the warp;
# colour jitter: brightness, contrast, saturation (multiplicative ranges around 1), hue (fraction of the circle),
# probability; blur: probability (sigma 0.3 to 1.0 pixels, kernel 3 or 5).
_SETTINGS = {
    "light": dict(scale=(0.95, 1.05), shift=0.03, rotate=10.0, affine_p=0.3,
                  brightness=0.1, contrast=0.1, saturation=0.1, hue=0.02, colour_p=0.5, blur_p=0.0),
    "default": dict(scale=(0.9, 1.1), shift=0.05, rotate=20.0, affine_p=0.5,
                    brightness=0.2, contrast=0.2, saturation=0.2, hue=0.03, colour_p=0.8, blur_p=0.1),
    "strong": dict(scale=(0.8, 1.2), shift=0.1, rotate=45.0, affine_p=0.7,
                   brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05, colour_p=0.9, blur_p=0.2),
}


def dermoscopy_augmentation(strength: str = "default", rotate90: bool = True, seed: int | None = None) -> A.Compose:
    """An albumentations pipeline for dermoscopy images and their masks that keeps the image size and dtype.

    Args:
        strength: one of :data:`STRENGTHS`. ``"default"``: flips (p 0.5 each), a rotation by a random multiple of
            90 degrees, an affine warp with p 0.5 (scale 0.9-1.1, shift up to 5% of the side, rotation up to 20
            degrees, border filled with 0 in the image and the masks), colour jitter with p 0.8 (brightness,
            contrast and saturation factors 0.8-1.2, hue shift up to 0.03 of the circle) and a Gaussian blur with
            p 0.1 (kernel 3 or 5, sigma 0.3-1.0).
        rotate90: include rotations by 90 degrees; they swap height and width, so they need square inputs.
        seed: seed of the pipeline's random draws (None: a fresh seed).

    Returns:
        ``A.Compose`` called as ``aug(image=uint8 [H, W, 3], masks=[uint8 [H, W], ...])``; it returns the same
        shapes and dtypes.

    Raises:
        ValueError: an unknown ``strength``.
    """
    if strength not in STRENGTHS:
        raise ValueError(f"strength must be one of {STRENGTHS}, got {strength!r}")
    transforms: list = [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
    if rotate90:
        transforms.append(A.RandomRotate90(p=1.0))
    if strength != "flips":
        s = _SETTINGS[strength]
        transforms += [
            A.Affine(scale=s["scale"], translate_percent=(-s["shift"], s["shift"]), rotate=(-s["rotate"], s["rotate"]),
                     interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST, fit_output=False,
                     border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0, p=s["affine_p"]),
            A.ColorJitter(brightness=(1 - s["brightness"], 1 + s["brightness"]),
                          contrast=(1 - s["contrast"], 1 + s["contrast"]),
                          saturation=(1 - s["saturation"], 1 + s["saturation"]),
                          hue=(-s["hue"], s["hue"]), p=s["colour_p"]),
        ]
        if s["blur_p"] > 0:
            transforms.append(A.GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.3, 1.0), p=s["blur_p"]))
    pipeline = A.Compose(transforms)
    if seed is not None:
        seed_augmentation(pipeline, seed)
    return pipeline
