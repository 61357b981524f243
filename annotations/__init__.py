"""Annotation tools: converters from labelling-tool exports to COCO.

- :mod:`annotations.makesense`: makesense.ai polygon exports (COCO JSON or VGG JSON) to a clean COCO file;
  run it as ``python -m annotations.makesense EXPORT --images DIR --out COCO.json``.

The names below are imported lazily, so ``python -m annotations.makesense`` does not import the module twice.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "MakesenseError",
    "RectangleExportError",
    "MissingImageError",
    "ImageSizeMismatchError",
    "DegeneratePolygonError",
    "PolygonOutsideImageError",
    "MakesenseWarning",
    "ConversionReport",
    "clean_ring",
    "polygon_area",
    "image_size",
    "detect_format",
    "convert",
    "convert_with_report",
    "write_coco",
]

_SUBMODULE = {name: "annotations.makesense" for name in __all__}


def __getattr__(name: str) -> Any:
    """Imports a public name from its submodule on first use (PEP 562)."""
    if name in _SUBMODULE:
        value = getattr(importlib.import_module(_SUBMODULE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'annotations' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
