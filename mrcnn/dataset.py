"""``Dataset``: the matterport dataset base class (``mrcnn.utils.Dataset``).

Subclass it, register classes with :meth:`Dataset.add_class` and images with :meth:`Dataset.add_image`, override
:meth:`Dataset.load_mask` (and :meth:`Dataset.load_image` if images are not files), then call
:meth:`Dataset.prepare`. Class 0 is always the background ``"BG"``.
"""

from __future__ import annotations

import logging
import os

import numpy as np

log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """Data on disk that cannot be used as asked: an unreadable image or mask, a mask of the wrong size, a malformed
    label or annotation file. The message names the file (or folder) and the problem."""


class ImageReadError(DatasetError):
    """An image file that cannot be decoded; the message names the file and the problem."""


def read_image(path: str) -> np.ndarray:
    """Read an image file as uint8 RGB [H, W, 3].

    Greyscale is expanded to three channels, an alpha channel is dropped, 16-bit images are scaled to 8 bits,
    and EXIF orientation is applied (as a browser would show the image).

    Raises:
        ImageReadError: the file is missing, empty, or not a decodable image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not os.path.isfile(path):
        raise ImageReadError(f"{path}: no such image file")
    if os.path.getsize(path) == 0:
        raise ImageReadError(f"{path}: the file is empty (0 bytes)")
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                maxval = 65535.0 if arr.max() > 255 else 255.0
                image = np.clip(arr / maxval * 255.0 + 0.5, 0, 255).astype(np.uint8)
            elif im.mode == "F":
                arr = np.asarray(im, dtype=np.float64)
                image = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
            else:
                image = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({exc})") from exc
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[..., :3])


class Dataset:
    """Base class for datasets (matterport's ``utils.Dataset``).

    Example::

        class ShapesDataset(Dataset):
            def load_shapes(self, count, height, width):
                self.add_class("shapes", 1, "square")
                for i in range(count):
                    self.add_image("shapes", image_id=i, path=None, width=width, height=height)

            def load_mask(self, image_id):
                ...
                return masks, class_ids   # bool [H, W, N], int32 [N]
    """

    def __init__(self, class_map=None):
        self._image_ids: list[int] | np.ndarray = []
        self.image_info: list[dict] = []
        # Background is always the first class.
        self.class_info: list[dict] = [{"source": "", "id": 0, "name": "BG"}]
        self.source_class_ids: dict[str, list[int]] = {}

    def add_class(self, source: str, class_id: int, class_name: str) -> None:
        """Register class ``class_id`` of ``source`` (``"."`` is not allowed in a source name)."""
        assert "." not in source, "Source name cannot contain a dot"
        for info in self.class_info:
            if info["source"] == source and info["id"] == class_id:
                return  # Already registered.
        self.class_info.append({"source": source, "id": class_id, "name": class_name})

    def add_image(self, source: str, image_id, path, **kwargs) -> None:
        """Register an image; extra keyword arguments are kept in ``image_info``."""
        image_info = {"id": image_id, "source": source, "path": path}
        image_info.update(kwargs)
        self.image_info.append(image_info)

    def image_reference(self, image_id: int) -> str:
        """A string that identifies the image for debugging (its path by default)."""
        return str(self.image_info[image_id].get("path", ""))

    def prepare(self, class_map=None) -> None:
        """Build the internal tables; call after adding classes and images."""

        def clean_name(name: str) -> str:
            return ",".join(name.split(",")[:1])

        self.num_classes = len(self.class_info)
        self.class_ids = np.arange(self.num_classes)
        self.class_names = [clean_name(c["name"]) for c in self.class_info]
        self.num_images = len(self.image_info)
        self._image_ids = np.arange(self.num_images)

        self.class_from_source_map = {
            f"{info['source']}.{info['id']}": cid for info, cid in zip(self.class_info, self.class_ids)
        }
        self.image_from_source_map = {
            f"{info['source']}.{info['id']}": iid for info, iid in zip(self.image_info, self.image_ids)
        }

        self.sources = sorted({i["source"] for i in self.class_info})
        self.source_class_ids = {}
        for source in self.sources:
            self.source_class_ids[source] = []
            for i, info in enumerate(self.class_info):
                # The background class belongs to every source.
                if i == 0 or source == info["source"]:
                    self.source_class_ids[source].append(i)

    def map_source_class_id(self, source_class_id: str) -> int:
        """Internal class id of ``"source.id"``, e.g. ``"coco.12"``."""
        return self.class_from_source_map[source_class_id]

    def get_source_class_id(self, class_id: int, source: str) -> int:
        """The source's own id of internal class ``class_id``."""
        info = self.class_info[class_id]
        assert info["source"] == source
        return info["id"]

    @property
    def image_ids(self) -> np.ndarray:
        return self._image_ids

    def source_image_link(self, image_id: int) -> str:
        """Path or URL of the image."""
        return self.image_info[image_id]["path"]

    def load_image(self, image_id: int) -> np.ndarray:
        """The image as uint8 RGB [H, W, 3] (greyscale expanded, alpha dropped)."""
        return read_image(self.image_info[image_id]["path"])

    def load_mask(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Instance masks of an image: bool [H, W, N] and int32 class ids [N].

        Override this. The default returns no instances (and logs a warning), as matterport did.
        """
        log.warning("Dataset.load_mask is not overridden: %s has no instances", self.image_reference(image_id))
        mask = np.empty([0, 0, 0], dtype=bool)
        class_ids = np.empty([0], np.int32)
        return mask, class_ids
