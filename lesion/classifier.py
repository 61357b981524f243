"""The second stage of the lesion model: the diagnosis of a lesion from its image and its segmentation.

Segment first, then classify the masked lesion (the cascade of melanoma classification): Mask R-CNN gives the
lesion's mask, and this classifier gives melanoma / seborrheic keratosis / nevus probabilities from colour, texture
and shape features computed inside the mask and against the surrounding skin:

- colour: per channel of RGB, HSV and CIE Lab, the mean, standard deviation and 10th / 50th / 90th percentiles
  inside the lesion, the same means in a ring of skin around it and the lesion-minus-skin contrast, a coarse
  Lab histogram of the lesion, and the fraction of lesion pixels nearest each of the six dermoscopic colours
  (white, red, light brown, dark brown, blue-grey, black);
- texture: rotation-invariant uniform local binary patterns at two radii and grey-level co-occurrence statistics
  inside the lesion;
- shape: the area fraction, solidity, eccentricity, extent, compactness, the asymmetry about the two principal
  axes, and the grey-level gradient across the border (how sharp the border is).

The features do not change under flips and 90-degree rotations (up to pixel sampling), so there is no test-time
augmentation to gain. The model is scikit-learn's gradient-boosted trees (``HistGradientBoostingClassifier``) with
balanced class weights (ISIC 2017 has four nevi for each melanoma); in cross-validation on the training images it
beat a logistic regression, an RBF SVM and extra trees on both AUCs. It is stored with skops (no pickle: loading
runs no code), ``weights/lesion_classifier.skops`` beside the bundled Mask R-CNN.

Python::

    from lesion.classifier import LesionClassifier
    clf = LesionClassifier.load("weights/lesion_classifier.skops")
    probs = clf.predict_proba([(image, mask)])   # [N, 3]: melanoma, seborrheic_keratosis, nevus
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Sequence

import numpy as np

from lesion.metrics import balanced_accuracy
from lesion.paths import bundled_file
from mrcnn.atomic import write_bytes_atomic

__all__ = ["CLASSIFIER_PATH", "FEATURE_SIZE", "LesionClassifier", "LesionClassifierError", "fit_decision_weights",
           "lesion_features"]

CLASSIFIER_PATH = str(bundled_file("lesion_classifier.skops"))
"""The bundled classifier (``weights/lesion_classifier.skops``; see :mod:`lesion.paths`)."""

CLASSES = ("melanoma", "seborrheic_keratosis", "nevus")

_WORK_SIDE = 256  # Features are computed on the lesion's box, margin included, resized to at most this side.
_FORMAT_VERSION = 1

# The six dermoscopic colours, in CIE Lab (L 0-100): white, red, light brown, dark brown, blue-grey, black.
_DERMOSCOPIC_LAB = np.array([[95.0, 0.0, 2.0], [45.0, 55.0, 35.0], [60.0, 15.0, 30.0], [35.0, 15.0, 25.0],
                             [50.0, -5.0, -15.0], [12.0, 2.0, 2.0]], np.float32)


class LesionClassifierError(ValueError):
    """A classifier file that cannot be read (the message names it), or an input of the wrong shape."""


def _crop(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lesion's box with a margin of half its size, resized so that its long side is at most _WORK_SIDE."""
    import cv2

    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    y1, y2, x1, x2 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    my, mx = (y2 - y1) // 2, (x2 - x1) // 2
    y1, y2, x1, x2 = max(0, y1 - my), min(h, y2 + my), max(0, x1 - mx), min(w, x2 + mx)
    image, mask = image[y1:y2, x1:x2], mask[y1:y2, x1:x2]
    scale = _WORK_SIDE / max(image.shape[:2])
    if scale < 1:
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    return image, mask


def _channel_stats(values: np.ndarray) -> list[float]:
    q10, q50, q90 = np.percentile(values, [10, 50, 90], axis=0)
    return [*values.mean(axis=0), *values.std(axis=0), *q10, *q50, *q90]


def _asymmetry(mask: np.ndarray) -> tuple[float, float]:
    """1 - IoU of the mask with its mirror image about each principal axis through the centroid."""
    import cv2

    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    cov = np.cov(np.stack([xs - cx, ys - cy])) if len(xs) > 1 else np.eye(2)
    angle = 0.5 * np.degrees(np.arctan2(2 * cov[0, 1], cov[0, 0] - cov[1, 1]))
    side = int(2 * max(mask.shape)) + 1
    canvas = np.zeros((side, side), np.uint8)
    oy, ox = side // 2 - int(round(cy)), side // 2 - int(round(cx))
    canvas[oy:oy + mask.shape[0], ox:ox + mask.shape[1]] = mask
    rot = cv2.warpAffine(canvas, cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0), (side, side),
                         flags=cv2.INTER_NEAREST) > 0
    area = rot.sum() or 1
    return (1.0 - (rot & rot[::-1]).sum() / float((rot | rot[::-1]).sum() or area),
            1.0 - (rot & rot[:, ::-1]).sum() / float((rot | rot[:, ::-1]).sum() or area))


def lesion_features(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The feature vector (float32 [FEATURE_SIZE]) of the lesion ``mask`` in RGB ``image``.

    Args:
        image: uint8 [H, W, 3] RGB.
        mask: bool [H, W], the lesion (at least one pixel); an empty mask gives the whole image as the lesion.

    Raises:
        LesionClassifierError: the image is not RGB or the mask is not the image's size.
    """
    import cv2
    from skimage.feature import graycomatrix, graycoprops, local_binary_pattern
    from skimage.measure import regionprops

    image = np.asarray(image)
    mask = np.asarray(mask).astype(bool)
    if image.ndim != 3 or image.shape[2] != 3:
        raise LesionClassifierError(f"lesion_features: expected an RGB image [H, W, 3], got shape {image.shape}")
    if mask.shape != image.shape[:2]:
        raise LesionClassifierError(f"lesion_features: mask of shape {mask.shape} for an image of shape "
                                    f"{image.shape[:2]}; give the mask at the image's size")
    if not mask.any():
        mask = np.ones_like(mask)
    image, mask = _crop(image.astype(np.uint8), mask)
    skin = cv2.dilate(mask.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool) & ~mask
    if skin.sum() < 20:  # A lesion that fills its box: the border of the box stands for the skin.
        skin = np.zeros_like(mask)
        skin[[0, -1], :] = skin[:, [0, -1]] = True
    rgb = image.astype(np.float32) / 255.0
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32) / np.array([180.0, 255.0, 255.0], np.float32)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)  # L 0-100, a and b about -128..127
    spaces = np.concatenate([rgb, hsv, lab / np.array([100.0, 128.0, 128.0], np.float32)], axis=-1)

    inside, ring = spaces[mask], spaces[skin]
    features = _channel_stats(inside)
    features += [*ring.mean(axis=0), *(inside.mean(axis=0) - ring.mean(axis=0))]
    lab_in = lab[mask]
    hist, _ = np.histogramdd(lab_in, bins=(4, 3, 3), range=((0, 100), (-40, 60), (-40, 60)))
    features += list(hist.ravel() / len(lab_in))
    nearest = np.argmin(((lab_in[:, None, :] - _DERMOSCOPIC_LAB[None]) ** 2).sum(-1), axis=1)
    features += list(np.bincount(nearest, minlength=len(_DERMOSCOPIC_LAB)) / len(lab_in))

    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    for radius in (1, 3):
        lbp = local_binary_pattern(grey, 8, radius, method="uniform")[mask]
        features += list(np.bincount(lbp.astype(int), minlength=10)[:10] / len(lbp))
    levels = (grey // 16).astype(np.uint8)
    masked = np.where(mask, levels, 16).astype(np.uint8)  # 16: outside the lesion, dropped below.
    glcm = graycomatrix(masked, [1, 3], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=17)[:16, :16]
    glcm = glcm.astype(np.float64)
    glcm /= np.maximum(glcm.sum(axis=(0, 1), keepdims=True), 1)
    for prop in ("contrast", "homogeneity", "energy", "correlation"):
        values = np.nan_to_num(graycoprops(glcm, prop))
        features += list(values.mean(axis=1))

    props = regionprops(mask.astype(np.uint8))[0]
    area = float(props.area)
    features += [area / mask.size, float(props.solidity), float(props.eccentricity), float(props.extent),
                 float(props.perimeter) ** 2 / (4 * np.pi * area), *_asymmetry(mask)]
    border = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(bool)
    gradient = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)) / 255.0
    features += [float(gradient[border].mean()), float(gradient[border].std()), float(gradient[mask].mean())]
    return np.asarray(features, np.float32)


FEATURE_SIZE = 15 * 3 + 9 * 2 + 36 + 6 + 20 + 8 + 7 + 3
"""Length of :func:`lesion_features`' vector."""


def fit_decision_weights(labels: Sequence[int], probs: np.ndarray,
                         grid: Sequence[float] = tuple(np.geomspace(0.25, 16.0, 25))) -> np.ndarray:
    """Per-class weights of :meth:`LesionClassifier.decide` that maximise the balanced accuracy of held-out
    (cross-validated) probabilities [N, C]; the last class keeps weight 1 and each other class's weight comes from
    ``grid``. Ties go to the weights nearest 1 (the plain arg-max)."""
    labels = np.asarray(labels)
    probs = np.asarray(probs, np.float64)
    num_classes = probs.shape[1]
    grid = np.asarray(grid, np.float64)
    best, best_key = np.ones(num_classes), None
    for combo in np.array(np.meshgrid(*[grid] * (num_classes - 1), indexing="ij")).reshape(num_classes - 1, -1).T:
        weights = np.append(combo, 1.0)
        score = balanced_accuracy(labels, np.argmax(probs * weights, axis=1), num_classes)
        key = (round(score, 10), -float(np.abs(np.log(weights)).sum()))
        if best_key is None or key > best_key:
            best, best_key = weights, key
    return best


class LesionClassifier:
    """Gradient-boosted trees on :func:`lesion_features` (see the module docstring).

    The probabilities estimate how likely each diagnosis is; the diagnosis given (:meth:`decide`) is the arg-max of
    the probabilities times ``decision_weights``, one weight per class chosen in cross-validation so that each class
    is found about as often as it occurs (balanced accuracy). Without them the arg-max would almost never say
    seborrheic keratosis or melanoma, the rare classes.

    Attributes:
        model: the fitted scikit-learn estimator (``predict_proba`` over CLASSES).
        classes: the class names, in the order of the probability columns.
        info: how it was trained (data, cross-validated figures), stored with it.
        decision_weights: float64 [C], the weights of :meth:`decide` (all ones: the plain arg-max).
    """

    def __init__(self, model, classes: Sequence[str] = CLASSES, info: dict | None = None,
                 decision_weights: Sequence[float] | None = None):
        self.model = model
        self.classes = tuple(classes)
        self.info = dict(info or {})
        weights = np.ones(len(self.classes)) if decision_weights is None else np.asarray(decision_weights, float)
        if weights.shape != (len(self.classes),) or not np.all(np.isfinite(weights)) or np.any(weights <= 0):
            raise LesionClassifierError(f"decision_weights must be {len(self.classes)} positive numbers, got "
                                        f"{decision_weights!r}")
        self.decision_weights = weights

    @classmethod
    def fit(cls, features: np.ndarray, labels: Sequence[int], learning_rate: float = 0.05, max_iter: int = 300,
            class_weight: str | None = "balanced", min_samples_leaf: int = 20, l2_regularization: float = 0.0,
            max_leaf_nodes: int = 31, seed: int = 0, info: dict | None = None,
            decision_weights: Sequence[float] | None = None) -> "LesionClassifier":
        """Fit on features [N, F] and labels (indices into CLASSES), classes weighted by their inverse frequency
        (``class_weight="balanced"``) or not (None)."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        labels = np.asarray(labels)
        if sorted(set(labels.tolist())) != list(range(len(CLASSES))):
            raise ValueError(f"fit: every class must appear in the labels, got {sorted(set(labels.tolist()))}")
        model = HistGradientBoostingClassifier(learning_rate=learning_rate, max_iter=max_iter,
                                               class_weight=class_weight, min_samples_leaf=min_samples_leaf,
                                               l2_regularization=l2_regularization, max_leaf_nodes=max_leaf_nodes,
                                               random_state=seed)
        model.fit(np.asarray(features, np.float64), labels)
        return cls(model, CLASSES, info, decision_weights)

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """The diagnoses (int [N], indices into ``classes``) of class probabilities [N, C]."""
        probs = np.atleast_2d(np.asarray(probs, np.float64))
        return np.argmax(probs * self.decision_weights, axis=1)

    def predict_proba_features(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities [N, 3] of feature vectors [N, F]."""
        features = np.atleast_2d(np.asarray(features, np.float64))
        expected = int(self.model.n_features_in_)
        if features.shape[1] != expected:
            raise LesionClassifierError(f"{features.shape[1]} features given, the classifier takes {expected}")
        return self.model.predict_proba(features)

    def predict_proba(self, pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Class probabilities [N, 3] of (image, mask) pairs."""
        features = [lesion_features(image, mask) for image, mask in pairs]
        if not features:
            return np.zeros((0, len(self.classes)))
        return self.predict_proba_features(np.stack(features))

    def save(self, path: str | os.PathLike) -> str:
        """Write the classifier with skops (a format that loads without running code, unlike pickle), atomically."""
        import skops.io

        meta = {"version": _FORMAT_VERSION, "classes": list(self.classes), "info": self.info,
                "n_features": int(self.model.n_features_in_),
                "decision_weights": [float(w) for w in self.decision_weights]}
        return write_bytes_atomic(path, skops.io.dumps({"model": self.model, "meta": json.dumps(meta)}))

    @classmethod
    def load(cls, path: str | os.PathLike = CLASSIFIER_PATH) -> "LesionClassifier":
        """Read a classifier written by :meth:`save`; only scikit-learn's and NumPy's own types are accepted.

        Raises:
            FileNotFoundError: no such file.
            LesionClassifierError: not a classifier file of this project (damaged, another format, other types,
                another feature count).
        """
        import skops.io

        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"lesion classifier not found: {path}")
        try:
            with open(path, "rb") as f:
                data = f.read()
            untrusted = skops.io.get_untrusted_types(data=data)
            foreign = [t for t in untrusted if not t.startswith(("sklearn.", "numpy."))]
            if foreign:
                raise LesionClassifierError(f"{path}: holds types other than scikit-learn's: {foreign[:3]}")
            stored = skops.io.loads(data, trusted=untrusted)
            meta = json.loads(stored["meta"])
            model = stored["model"]
        except LesionClassifierError:
            raise
        except Exception as error:  # noqa: BLE001  (skops raises many kinds for a damaged file)
            raise LesionClassifierError(f"{path}: not a lesion classifier file ({type(error).__name__}: "
                                        f"{error})") from None
        if meta.get("version") != _FORMAT_VERSION:
            raise LesionClassifierError(f"{path}: classifier format {meta.get('version')!r}, expected "
                                        f"{_FORMAT_VERSION}")
        if meta.get("n_features") != FEATURE_SIZE or not hasattr(model, "predict_proba"):
            raise LesionClassifierError(f"{path}: made for {meta.get('n_features')} features, this version "
                                        f"computes {FEATURE_SIZE}")
        try:
            return cls(model, meta["classes"], meta.get("info"), meta.get("decision_weights"))
        except LesionClassifierError as error:
            raise LesionClassifierError(f"{path}: {error}") from None
