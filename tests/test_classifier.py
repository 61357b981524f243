"""Tests of the diagnosis classifier (lesion.classifier) and the lesion post-processing (merge, cascade)."""

import numpy as np
import pytest

from lesion import inference
from lesion.classifier import FEATURE_SIZE, LesionClassifier, LesionClassifierError, lesion_features


def _disc_image(colour, radius=20, size=64, seed=0):
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), 200, np.uint8) + rng.integers(0, 10, (size, size, 3)).astype(np.uint8)
    yy, xx = np.mgrid[:size, :size]
    mask = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < radius ** 2
    image[mask] = np.clip(np.array(colour) + rng.integers(-15, 15, (mask.sum(), 3)), 0, 255).astype(np.uint8)
    return image, mask


def test_features_are_finite_of_documented_size_and_flip_invariant():
    image, mask = _disc_image((90, 50, 30))
    x = lesion_features(image, mask)
    assert x.shape == (FEATURE_SIZE,) and np.isfinite(x).all()
    # The lesion's mean R, G, B, by hand (float32 sums).
    np.testing.assert_allclose(x[:3], image[mask].mean(axis=0) / 255.0, rtol=1e-4)
    flipped = lesion_features(image[:, ::-1], mask[:, ::-1])
    np.testing.assert_allclose(flipped[:45], x[:45], rtol=1e-4, atol=1e-5)  # colour statistics
    with pytest.raises(LesionClassifierError, match="mask of shape"):
        lesion_features(image, mask[:10])


def test_classifier_learns_colour_and_round_trips(tmp_path):
    colours = [(60, 30, 30), (150, 120, 80), (120, 70, 40)]  # dark, light, brown: classes 0, 1, 2
    x, y = [], []
    for label, colour in enumerate(colours):
        for seed in range(6):
            image, mask = _disc_image(colour, radius=14 + seed, seed=seed + 10 * label)
            x.append(lesion_features(image, mask))
            y.append(label)
    clf = LesionClassifier.fit(np.stack(x), y, max_iter=50, min_samples_leaf=2)
    test = [_disc_image(c, radius=17, seed=99) for c in colours]
    probs = clf.predict_proba(test)
    assert probs.shape == (3, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert list(probs.argmax(axis=1)) == [0, 1, 2]
    path = clf.save(tmp_path / "clf.skops")
    np.testing.assert_allclose(LesionClassifier.load(path).predict_proba(test), probs)
    (tmp_path / "bad.skops").write_bytes(b"not a file")
    with pytest.raises(LesionClassifierError, match="bad.skops"):
        LesionClassifier.load(tmp_path / "bad.skops")


def _result(masks, scores, class_ids, probs):
    masks = np.stack(masks, axis=-1)
    rois = np.array([[0, 0, 1, 1]] * len(scores))
    return {"rois": rois, "masks": masks, "scores": np.array(scores), "class_ids": np.array(class_ids),
            "class_probs": np.array(probs)}


def test_merge_overlapping_keeps_one_detection_per_lesion():
    a = np.zeros((10, 10), bool)
    a[2:8, 2:8] = True            # 36 px
    b = np.zeros((10, 10), bool)
    b[3:8, 3:9] = True            # 30 px, 25 inside a: the same lesion
    c = np.zeros((10, 10), bool)
    c[0:2, 0:2] = True            # apart
    result = _result([b, a, c], [0.58, 0.73, 0.4], [1, 3, 2],
                     [[0, 0.58, 0.1, 0.32], [0, 0.1, 0.17, 0.73], [0, 0.2, 0.4, 0.4]])
    merged = inference.merge_overlapping(result)
    np.testing.assert_array_equal(merged["scores"], [0.73, 0.4])
    np.testing.assert_array_equal(merged["class_ids"], [3, 2])
    np.testing.assert_array_equal(merged["masks"][..., 0], a)
    assert merged["class_probs"].shape == (2, 4) and merged["rois"].shape == (2, 4)
    # Below the overlap threshold both stay.
    assert len(inference.merge_overlapping(result, overlap=0.9)["scores"]) == 3
    # By default one shared pixel makes two detections one lesion: none of the kept masks overlap.
    d = np.zeros((10, 10), bool)
    d[7:10, 7:10] = True          # 9 px, 1 shared with a (pixel 7, 7)
    touching = inference.merge_overlapping(_result([a, d], [0.9, 0.8], [1, 1], [[0, 1.0]] * 2))
    assert touching["scores"].tolist() == [0.9]
    assert len(inference.merge_overlapping(_result([a, d], [0.9, 0.8], [1, 1], [[0, 1.0]] * 2),
                                           overlap=0.2)["scores"]) == 2


def test_finish_result_gives_the_classifier_diagnosis():
    colours = [(60, 30, 30), (150, 120, 80), (120, 70, 40)]
    x = [lesion_features(*_disc_image(c, radius=14 + s, seed=s + 10 * k)) for k, c in enumerate(colours)
         for s in range(5)]
    clf = LesionClassifier.fit(np.stack(x), [k for k in range(3) for _ in range(5)], max_iter=50, min_samples_leaf=2)
    image, mask = _disc_image(colours[1], radius=16, seed=7)
    info = inference.ModelInfo(weights="w.h5", config_name="light", classes="lesion",
                               class_names=["BG", "melanoma", "seborrheic_keratosis", "nevus"], classifier=clf)
    assert info.diagnoses
    result = _result([mask], [0.95], [1], [[0.05, 0.95]])
    done = inference.finish_result(result, image, info)
    assert done["class_ids"].tolist() == [2] and done["scores"].tolist() == [0.95]
    np.testing.assert_allclose(done["class_probs"][0, 1:], clf.predict_proba([(image, mask)])[0], rtol=1e-6)
    assert done["class_probs"][0, 0] == 0


def test_decision_weights_by_hand_and_round_trip(tmp_path):
    from lesion.classifier import fit_decision_weights
    from lesion.metrics import balanced_accuracy

    # Nevus (class 2) is most probable for every image; the two rare images have a larger share of their class.
    labels = np.array([0, 1, 2, 2, 2, 2])
    probs = np.array([[0.30, 0.10, 0.60], [0.10, 0.35, 0.55], [0.10, 0.10, 0.80], [0.15, 0.05, 0.80],
                      [0.05, 0.15, 0.80], [0.10, 0.10, 0.80]])
    assert balanced_accuracy(labels, probs.argmax(axis=1), 3) == pytest.approx(1 / 3)  # nevus recall 1, others 0
    weights = fit_decision_weights(labels, probs)
    assert weights[2] == 1.0
    decided = np.argmax(probs * weights, axis=1)
    assert decided.tolist() == [0, 1, 2, 2, 2, 2]
    # Melanoma needs 0.30 w > 0.60 (w > 2) but 0.15 w < 0.80 (w < 5.33): the weight lies between.
    assert 2.0 < weights[0] < 5.34 and 0.35 * weights[1] > 0.55 and 0.15 * weights[1] < 0.80
    # Without a gain the weights stay 1 (ties go to the plain arg-max).
    np.testing.assert_array_equal(fit_decision_weights([2, 2], np.array([[0.1, 0.1, 0.8]] * 2)), [1, 1, 1])

    colours = [(60, 30, 30), (150, 120, 80), (120, 70, 40)]
    x = [lesion_features(*_disc_image(c, radius=14 + s, seed=s + 10 * k)) for k, c in enumerate(colours)
         for s in range(4)]
    clf = LesionClassifier.fit(np.stack(x), [k for k in range(3) for _ in range(4)], max_iter=20, min_samples_leaf=2,
                               decision_weights=[1.0, 50.0, 1.0])
    assert clf.decide([[0.5, 0.02, 0.48]]).tolist() == [1]  # 0.02 x 50 beats 0.5
    loaded = LesionClassifier.load(clf.save(tmp_path / "clf.skops"))
    np.testing.assert_array_equal(loaded.decision_weights, [1.0, 50.0, 1.0])
    with pytest.raises(LesionClassifierError, match="decision_weights"):
        LesionClassifier(clf.model, decision_weights=[1.0, -1.0, 1.0])
