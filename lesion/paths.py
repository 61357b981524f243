"""Where the lesion tools find the bundled model and where they keep their files.

Two layouts:

- **A checkout** (the repository, used in place: ``pip install -e .``, or ``PYTHONPATH`` set to it): the bundled
  model is read from the repository's ``weights/`` folder, training runs go to its ``logs/`` folder and downloaded
  weights (``weights/mask_rcnn_coco.h5``) are looked for in its ``weights/`` folder, whatever the current folder.
- **An installed package** (``pip install .``): the two bundled files (``mask_rcnn_lesion_light.h5``,
  ``lesion_classifier.skops``) are package data in ``<site-packages>/lesion/weights/``; ``logs/`` and the
  downloaded ``weights/`` are those of the current folder (site-packages is not a place to write).

A checkout is recognised by the ``pyproject.toml`` beside the ``lesion`` package.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CHECKOUT", "BUNDLED_WEIGHTS_DIR", "WORK_DIR", "bundled_file", "in_checkout"]

_PACKAGE = Path(__file__).resolve().parent


def in_checkout() -> bool:
    """Whether the ``lesion`` package is imported from a source checkout (not from an installed copy)."""
    root = _PACKAGE.parent
    return (root / "pyproject.toml").is_file() and (root / "mrcnn").is_dir()


CHECKOUT: Path | None = _PACKAGE.parent if in_checkout() else None
"""The repository root when imported from a checkout, else None."""

BUNDLED_WEIGHTS_DIR: Path = CHECKOUT / "weights" if CHECKOUT is not None else _PACKAGE / "weights"
"""The folder of the bundled model files: ``<repo>/weights`` or ``<site-packages>/lesion/weights``."""

WORK_DIR: Path = CHECKOUT if CHECKOUT is not None else Path.cwd()
"""The folder whose ``logs/`` and ``weights/`` the tools use by default: the checkout, else the current folder
(when ``lesion`` was first imported)."""


def bundled_file(name: str) -> Path:
    """A bundled model file by name, e.g. ``bundled_file("lesion_classifier.skops")`` (it may not exist)."""
    return BUNDLED_WEIGHTS_DIR / name
