"""Evaluation figures for the skin-lesion application (matplotlib, Agg backend, headless).

Every function takes its data first and then the output ``path``, draws one figure, writes it as a PNG to
``path`` (creating the parent folder), closes it and returns the path, so the functions can run in a loop on a
server without leaking figures.

Example::

    plot_score_boxplot({"Mask R-CNN": model_jaccards, "Otsu": otsu_jaccards}, "out/jaccard_box.png")
    plot_confusion_matrix(cls["confusion_matrix"], "out/confusion.png", cls["class_names"])
    plot_roc_curves(y_true, probs, "out/roc.png")
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # Headless: never open a window, whatever the environment's default backend.

import matplotlib.pyplot as plt  # noqa: E402  (must follow the backend choice)
import numpy as np  # noqa: E402

from lesion.metrics import CLASS_NAMES, JACCARD_THRESHOLD  # noqa: E402
from mrcnn.atomic import atomic_path  # noqa: E402

__all__ = [
    "plot_score_boxplot",
    "plot_confusion_matrix",
    "plot_roc_curves",
    "plot_precision_recall",
    "plot_reliability",
]

_CURVE_CLASSES = ("melanoma", "seborrheic_keratosis")
_DPI = 120


def _save(fig: "plt.Figure", path: str | os.PathLike) -> str:
    """Writes ``fig`` as a PNG to ``path`` atomically (parent folder created; a failed write leaves an earlier
    file as it was), closes it and returns the path."""
    path = os.fspath(path)
    try:
        with atomic_path(path, fsync=False) as tmp:
            fig.savefig(tmp, dpi=_DPI, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _pretty(name: str) -> str:
    """``"seborrheic_keratosis"`` -> ``"seborrheic keratosis"``."""
    return name.replace("_", " ")


def plot_score_boxplot(
    scores_by_method: Mapping[str, Sequence[float]],
    path: str | os.PathLike,
    metric_name: str = "Jaccard",
    threshold: float | None = JACCARD_THRESHOLD,
    title: str | None = None,
) -> str:
    """Box plot of per-image scores (Jaccard, IoU, Dice, ...), one box per method, with the points overlaid.

    Args:
        scores_by_method: {method name: [N_method] per-image scores in [0, 1]}, e.g. the model and the Otsu
            baseline; boxes appear in the mapping's order and each label gives the method's mean and N.
        path: output PNG file.
        metric_name: y-axis label.
        threshold: draws a dashed line at this score (the ISIC 2018 0.65 Jaccard threshold by default); None
            for no line.
        title: figure title; a default naming the metric when None.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: if ``scores_by_method`` is empty.
    """
    if not scores_by_method:
        raise ValueError("scores_by_method is empty: pass at least one {method: scores}")
    names = list(scores_by_method)
    data = [np.asarray(scores_by_method[n], dtype=np.float64).reshape(-1) for n in names]
    labels = [
        f"{n}\nmean {d.mean():.3f}, N={d.size}" if d.size else f"{n}\n(no images)" for n, d in zip(names, data)
    ]
    fig, ax = plt.subplots(figsize=(max(4.0, 2.2 * len(names)), 4.5))
    # Outliers are not drawn as fliers: every point is scattered below.
    ax.boxplot([d if d.size else [np.nan] for d in data], showmeans=True, showfliers=False, widths=0.5)
    ax.set_xticks(range(1, len(names) + 1), labels)
    rng = np.random.default_rng(0)  # Fixed jitter so the figure is reproducible.
    for i, d in enumerate(data, start=1):
        ax.scatter(i + rng.uniform(-0.12, 0.12, d.size), d, s=6, alpha=0.35, color="tab:blue", zorder=3)
    if threshold is not None:
        ax.axhline(threshold, color="tab:red", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
        ax.legend(loc="lower left", fontsize="small")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel(metric_name)
    ax.set_title(title or f"Per-image {metric_name}")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_confusion_matrix(
    confusion: Sequence[Sequence[int]] | np.ndarray,
    path: str | os.PathLike,
    class_names: Sequence[str] = CLASS_NAMES,
    title: str = "Confusion matrix",
) -> str:
    """Heat map of a confusion matrix with the count (and row percentage) in every cell.

    Args:
        confusion: [C, C] counts, rows = true class, columns = predicted class (as
            :func:`lesion.metrics.classification_metrics` returns it).
        path: output PNG file.
        class_names: [C] class names in index order.
        title: figure title.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: if ``confusion`` is not [C, C] with C = len(class_names).
    """
    cm = np.asarray(confusion, dtype=np.int64)
    num_classes = len(class_names)
    if cm.shape != (num_classes, num_classes):
        raise ValueError(f"confusion must be [{num_classes}, {num_classes}] for {num_classes} classes; got {cm.shape}")
    row_sums = cm.sum(axis=1, keepdims=True)
    fraction = np.divide(cm, row_sums, out=np.zeros(cm.shape, np.float64), where=row_sums > 0)
    fig, ax = plt.subplots(figsize=(1.6 * num_classes + 2.0, 1.4 * num_classes + 1.5))
    image = ax.imshow(fraction, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    for i in range(num_classes):
        for j in range(num_classes):
            colour = "white" if fraction[i, j] > 0.5 else "black"
            ax.text(j, i, f"{cm[i, j]}\n({100 * fraction[i, j]:.0f}%)", ha="center", va="center", color=colour)
    ticks = [_pretty(n) for n in class_names]
    ax.set_xticks(range(num_classes), ticks, rotation=20, ha="right")
    ax.set_yticks(range(num_classes), ticks)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return _save(fig, path)


def _curve_inputs(
    y_true: Sequence[int] | np.ndarray, probs: np.ndarray, class_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Validated labels [N], probabilities [N, C] and class names."""
    y = np.asarray(y_true).astype(np.int64).reshape(-1)
    p = np.asarray(probs, dtype=np.float64)
    names = list(class_names)
    if p.shape != (y.size, len(names)):
        raise ValueError(f"probs must be [N, C] = [{y.size}, {len(names)}]; got {p.shape}")
    return y, p, names


def _finish_unit_axes(fig: "plt.Figure", ax: "plt.Axes", path: str | os.PathLike, xlabel: str, ylabel: str,
                      title: str, legend_loc: str) -> str:
    """Label a [0, 1] x [0, 1] curve plot (ROC, precision-recall, reliability), add its legend and grid, save it."""
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc=legend_loc, fontsize="small")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_roc_curves(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    path: str | os.PathLike,
    class_names: Sequence[str] = CLASS_NAMES,
    classes: Sequence[str] = _CURVE_CLASSES,
    title: str = "ROC, one vs rest",
) -> str:
    """One-vs-rest ROC curves (melanoma and seborrheic keratosis by default) with their AUC in the legend.

    A class with only positives or only negatives in ``y_true`` has no curve; the legend says so.

    Args:
        y_true: [N] int class indices into ``class_names``.
        probs: [N, C] class probabilities, columns in the order of ``class_names``.
        path: output PNG file.
        class_names: [C] class names.
        classes: the classes to draw, by name.
        title: figure title.

    Returns:
        ``path`` as a string.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    y, p, names = _curve_inputs(y_true, probs, class_names)
    fig, ax = plt.subplots(figsize=(5.0, 5.0))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance")
    for name in classes:
        k = names.index(name)
        positive = y == k
        if positive.all() or not positive.any():
            ax.plot([], [], label=f"{_pretty(name)} (undefined: one class only)")
            continue
        fpr, tpr, _ = roc_curve(positive, p[:, k])
        ax.plot(fpr, tpr, linewidth=1.5, label=f"{_pretty(name)} (AUC {roc_auc_score(positive, p[:, k]):.3f})")
    return _finish_unit_axes(fig, ax, path, "false positive rate (1 - specificity)",
                             "true positive rate (sensitivity)", title, "lower right")


def plot_reliability(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    path: str | os.PathLike,
    class_names: Sequence[str] = CLASS_NAMES,
    classes: Sequence[str] = _CURVE_CLASSES,
    bins: int = 10,
    title: str = "Reliability (calibration)",
) -> str:
    """Reliability diagram: per probability bin, the fraction of images that truly are the class, one vs rest.

    A calibrated model lies on the diagonal; points below it are over-confident. Bins with no image are not drawn;
    the legend gives each class's Brier score.

    Args:
        y_true: [N] int class indices into ``class_names``.
        probs: [N, C] class probabilities, columns in the order of ``class_names``.
        path: output PNG file.
        class_names: [C] class names.
        classes: the classes to draw, by name.
        bins: equal-width probability bins on [0, 1].
        title: figure title.

    Returns:
        ``path`` as a string.
    """
    y, p, names = _curve_inputs(y_true, probs, class_names)
    edges = np.linspace(0.0, 1.0, bins + 1)
    fig, ax = plt.subplots(figsize=(5.0, 5.0))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="calibrated")
    for name in classes:
        k = names.index(name)
        positive = (y == k).astype(float)
        which = np.clip(np.digitize(p[:, k], edges[1:-1]), 0, bins - 1)
        xs, ys = [], []
        for b in range(bins):
            inside = which == b
            if inside.any():
                xs.append(float(p[inside, k].mean()))
                ys.append(float(positive[inside].mean()))
        brier = float(np.mean((p[:, k] - positive) ** 2)) if len(y) else float("nan")
        ax.plot(xs, ys, marker="o", linewidth=1.5, label=f"{_pretty(name)} (Brier {brier:.3f})")
    return _finish_unit_axes(fig, ax, path, "predicted probability", "observed fraction", title, "upper left")


def plot_precision_recall(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    path: str | os.PathLike,
    class_names: Sequence[str] = CLASS_NAMES,
    classes: Sequence[str] = _CURVE_CLASSES,
    title: str = "Precision-recall, one vs rest",
) -> str:
    """One-vs-rest precision-recall curves with average precision and the chance level (prevalence).

    Args:
        y_true: [N] int class indices into ``class_names``.
        probs: [N, C] class probabilities, columns in the order of ``class_names``.
        path: output PNG file.
        class_names: [C] class names.
        classes: the classes to draw, by name.
        title: figure title.

    Returns:
        ``path`` as a string.
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve

    y, p, names = _curve_inputs(y_true, probs, class_names)
    fig, ax = plt.subplots(figsize=(5.0, 5.0))
    for name in classes:
        k = names.index(name)
        positive = y == k
        if not positive.any():
            ax.plot([], [], label=f"{_pretty(name)} (undefined: no positive)")
            continue
        precision, recall, _ = precision_recall_curve(positive, p[:, k])
        ap = average_precision_score(positive, p[:, k])
        (line,) = ax.step(recall, precision, where="post", linewidth=1.5, label=f"{_pretty(name)} (AP {ap:.3f})")
        ax.axhline(positive.mean(), color=line.get_color(), linestyle=":", linewidth=1)
    return _finish_unit_axes(fig, ax, path, "recall", "precision", title, "lower left")
