"""Train the diagnosis classifier (:mod:`lesion.classifier`) on the labelled images of ISIC folders.

Command line (from the repository root)::

    python lesion/train_classifier.py --dataset ../shared/isic2017-sample ../shared/isic-extra \\
        --run logs/lesion_light20261202T1300 --out weights/lesion_classifier.skops

The validation images of the Mask R-CNN run (``--run``'s ``val_ids.txt``) are left out, so the two stages are
validated on the same held-out images; without ``--run`` each folder is split as ``lesion/train.py`` splits it
(seed, 20 %, stratified by diagnosis). Features come from the ground-truth masks, images read at ``--max-side``
(default 512). The boosting schedule (``--schedule RATE:ITERATIONS``, repeatable; default 0.05:150) is chosen by
5-fold cross-validation on the training images (sum of the melanoma and seborrheic keratosis ROC AUCs); the chosen
schedule and the cross-validated figures are stored in the file's ``info``. The trees are kept small and
regularised (``--min-samples-leaf`` 60, ``--l2`` 1.0, ``--max-leaf-nodes`` 15): on 1,426 images deeper trees gave
overconfident probabilities (worse Brier score) and no better AUC in cross-validation. The decision weights of
:meth:`lesion.classifier.LesionClassifier.decide` are then chosen on the cross-validated probabilities of the
chosen schedule. ``--features FILE`` keeps the computed
features (a ``.npz``) and reuses them. Set ``OMP_NUM_THREADS=1`` when a training run shares the cores: the trees'
OpenMP threads otherwise spin against it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Sequence

import numpy as np

from lesion.classifier import CLASSES, LesionClassifier, fit_decision_weights, lesion_features
from lesion.metrics import balanced_accuracy

__all__ = ["compute_features", "labelled_images", "main"]


def labelled_images(roots: Sequence[str], val_ids: set[str] | None, seed: int = 2017,
                    val_fraction: float = 0.2) -> tuple[list[dict], list[dict]]:
    """(train, validation) image records with a diagnosis: dicts with ``image_id``, ``path``, ``mask_path``,
    ``label`` (index into CLASSES) and ``root``."""
    from lesion.datasets import IsicDataset, validation_split

    train, val = [], []
    for root in roots:
        dataset = IsicDataset()
        dataset.load_isic(root, classes="lesion")
        infos = dataset.image_info
        if val_ids is None:
            keys = [i["image_id"] for i in infos]
            _, held = validation_split(keys, {i["image_id"]: i.get("diagnosis") for i in infos}, seed=seed,
                                       val_fraction=val_fraction)
            held_out = set(held)
        else:
            held_out = val_ids
        for info in infos:
            if info.get("diagnosis") not in CLASSES:
                continue
            record = {"image_id": info["image_id"], "path": info["path"], "mask_path": info["mask_path"],
                      "label": CLASSES.index(info["diagnosis"]), "root": root}
            (val if info["image_id"] in held_out else train).append(record)
    return train, val


def compute_features(records: Sequence[dict], max_side: int = 512, workers: int = 2) -> np.ndarray:
    """Features [N, F] of the records' images with their ground-truth masks."""
    from lesion.datasets import read_image_resized, read_mask
    from lesion.inference import iter_parallel

    def one(record):
        image = read_image_resized(record["path"], max_side)
        mask = read_mask(record["mask_path"], max_side)
        return lesion_features(image, mask)

    rows = []
    for record, features, error in iter_parallel(records, one, workers=workers):
        if error is not None:
            raise error
        rows.append(features)
    return np.stack(rows)


def _cached_features(records, path, max_side, workers) -> np.ndarray:
    ids = np.array([r["image_id"] for r in records])
    if path and os.path.isfile(path):
        with np.load(path) as data:
            cache = dict(zip(data["ids"].tolist(), data["features"]))
        missing = [r for r in records if r["image_id"] not in cache]
    else:
        cache, missing = {}, list(records)
    if missing:
        start = time.time()
        new = compute_features(missing, max_side, workers)
        print(f"Features of {len(missing)} images in {time.time() - start:.0f} s")
        cache.update(zip([r["image_id"] for r in missing], new))
        if path:
            np.savez(path, ids=np.array(list(cache)), features=np.stack(list(cache.values())))
    return np.stack([cache[i] for i in ids])


def _aucs(labels: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import roc_auc_score

    return (roc_auc_score(labels == 0, probs[:, 0]), roc_auc_score(labels == 1, probs[:, 1]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python lesion/train_classifier.py", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", nargs="+", required=True, metavar="DIR", help="ISIC folders with diagnoses")
    parser.add_argument("--run", default=None, help="a lesion/train.py run folder: its val_ids.txt is held out")
    parser.add_argument("--out", default="weights/lesion_classifier.skops", help="the classifier file to write")
    parser.add_argument("--features", default=None, help="a .npz cache of the features (read and written)")
    parser.add_argument("--max-side", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2017)
    parser.add_argument("--class-weight", choices=("balanced", "none"), default="balanced",
                        help="weigh the classes by their inverse frequency in training (default) or not")
    parser.add_argument("--schedule", action="append", default=None, metavar="RATE:ITERATIONS",
                        help="a boosting schedule to cross-validate, e.g. 0.05:150 (repeatable; default 0.05:150)")
    parser.add_argument("--min-samples-leaf", type=int, default=60, help="smallest leaf of the trees (default 60)")
    parser.add_argument("--l2", type=float, default=1.0, help="L2 regularisation of the leaf values (default 1.0)")
    parser.add_argument("--max-leaf-nodes", type=int, default=15, help="leaves per tree (default 15)")
    args = parser.parse_args(argv)
    try:
        args.schedules = [(float(r), int(n)) for r, n in (t.split(":") for t in (args.schedule or ["0.05:150"]))]
    except ValueError:
        parser.error(f"--schedule expects RATE:ITERATIONS, e.g. 0.05:300; got {args.schedule}")

    from sklearn.model_selection import StratifiedKFold

    from lesion.datasets import read_ids

    val_ids = set(read_ids(os.path.join(args.run, "val_ids.txt"))) if args.run else None
    train, val = labelled_images(args.dataset, val_ids, seed=args.seed)
    x = _cached_features(train + val, args.features, args.max_side, args.workers)
    y = np.array([r["label"] for r in train + val])
    x_train, y_train = x[:len(train)], y[:len(train)]
    print(f"Labelled images: {len(train)} train ({np.bincount(y_train, minlength=3).tolist()} melanoma / SK / "
          f"nevus), {len(val)} held out")

    class_weight = None if args.class_weight == "none" else args.class_weight
    trees = {"min_samples_leaf": args.min_samples_leaf, "l2_regularization": args.l2,
             "max_leaf_nodes": args.max_leaf_nodes}
    folds = StratifiedKFold(5, shuffle=True, random_state=args.seed)
    best = None
    for rate, iters in args.schedules:
        probs = np.zeros((len(train), len(CLASSES)))
        for fit_ix, test_ix in folds.split(x_train, y_train):
            probs[test_ix] = LesionClassifier.fit(x_train[fit_ix], y_train[fit_ix], learning_rate=rate,
                                                  max_iter=iters, class_weight=class_weight, **trees
                                                  ).predict_proba_features(x_train[test_ix])
        mel, sk = _aucs(y_train, probs)
        print(f"learning rate {rate:g}, {iters} iterations: cross-validated melanoma AUC {mel:.3f}, seborrheic "
              f"keratosis AUC {sk:.3f}", flush=True)
        if best is None or mel + sk > best[2] + best[3]:
            best = (rate, iters, mel, sk, probs)
    rate, iters, mel, sk, probs = best
    # The decision rule: per-class weights on the cross-validated probabilities for the best balanced accuracy.
    weights = fit_decision_weights(y_train, probs)
    plain = balanced_accuracy(y_train, probs.argmax(axis=1), len(CLASSES))
    weighted = balanced_accuracy(y_train, np.argmax(probs * weights, axis=1), len(CLASSES))
    print(f"Decision weights {np.round(weights, 3).tolist()}: cross-validated balanced accuracy {plain:.3f} -> "
          f"{weighted:.3f}")
    info = {"learning_rate": rate, "max_iter": iters, "class_weight": args.class_weight, **trees,
            "cv_melanoma_auc": round(mel, 4), "cv_seborrheic_keratosis_auc": round(sk, 4),
            "cv_balanced_accuracy": round(weighted, 4), "n_train": len(train), "max_side": args.max_side,
            "datasets": [os.path.abspath(d) for d in args.dataset],
            "run": os.path.abspath(args.run) if args.run else None}
    clf = LesionClassifier.fit(x_train, y_train, learning_rate=rate, max_iter=iters, class_weight=class_weight,
                               **trees, info=info, decision_weights=weights)
    if val:
        held = clf.predict_proba_features(x[len(train):])
        mel, sk = _aucs(y[len(train):], held)
        bal = balanced_accuracy(y[len(train):], clf.decide(held), len(CLASSES))
        print(f"Held out, ground-truth masks: melanoma AUC {mel:.3f}, seborrheic keratosis AUC {sk:.3f}, balanced "
              f"accuracy {bal:.3f}")
    clf.save(args.out)
    print(f"Wrote {args.out} (learning rate {rate:g}, {iters} iterations)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
