"""Annotation tools: converters from labelling-tool exports to COCO.

- :mod:`annotations.makesense`: makesense.ai polygon exports (COCO JSON or VGG JSON) to a clean COCO file;
  run it as ``python -m annotations.makesense EXPORT --images DIR --out COCO.json``.

The names below are imported lazily, so ``python -m annotations.makesense`` does not import the module twice.
"""

from __future__ import annotations

from mrcnn.lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, globals(), _SUBMODULE)
del lazy_exports
