"""``Dataset``: the matterport dataset base class (``mrcnn.utils.Dataset``).

Subclass it, register classes with :meth:`Dataset.add_class` and images with :meth:`Dataset.add_image`, override
:meth:`Dataset.load_mask` (and :meth:`Dataset.load_image` if images are not files), then call
:meth:`Dataset.prepare`. Class 0 is always the background ``"BG"``.

Before training, :func:`check_dataset` runs :meth:`Dataset.check_image` over every image in parallel threads (file
headers and annotation geometry, not the pixels) and returns a :class:`DataCheck` that lists every problem, so a run
stops before its first step with all of them, or leaves those images out. :func:`clamp_ring` and
:func:`outside_image` are the polygon geometry the loaders and importers share.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import time
from typing import Sequence

import numpy as np

__all__ = ["DataCheck", "DataCheckError", "Dataset", "DatasetError", "EXIF_ORIENTATION", "ImageHeader", "ImageReadError",
           "OutsideImageError", "check_dataset", "clamp_ring", "outside_image", "read_image", "read_image_header"]

log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """Data on disk that cannot be used as asked: an unreadable image or mask, a mask of the wrong size, a malformed
    label or annotation file. The message names the file (or folder) and the problem."""


class ImageReadError(DatasetError):
    """An image file that cannot be decoded; the message names the file and the problem."""


class OutsideImageError(DatasetError):
    """A polygon or box that lies wholly outside its image (no area inside it)."""


class DataCheckError(DatasetError):
    """Images of a data set that cannot be trained on, found by :func:`check_dataset` before training; the message
    lists every one (file and problem), one a line."""


def outside_image(x_min: float, y_min: float, x_max: float, y_max: float, width: float, height: float) -> bool:
    """Whether the extent ``[x_min, x_max] x [y_min, y_max]`` (pixels) lies wholly outside the image
    ``[0, width] x [0, height]``: along x or along y, it does not reach into the image (at most to its border).

    An extent of zero width (or height) counts as outside only if it is beyond the image, so a degenerate polygon
    inside the image or on its border (a line) is not outside: that is a polygon without area, not wrong coordinates.
    """

    def misses(low: float, high: float, size: float) -> bool:
        return low < 0 or low > size if low == high else high <= 0 or low >= size

    return misses(x_min, x_max, width) or misses(y_min, y_max, height)


def clamp_ring(ring: Sequence[float], width: float, height: float) -> tuple[list[float], int]:
    """Clamp a polygon ring to its image.

    Args:
        ring: flat ring ``[x1, y1, x2, y2, ...]`` in pixels (finite numbers, an even count).
        width: image width; x is clamped to ``[0, width]``.
        height: image height; y is clamped to ``[0, height]``.

    Returns:
        ``(clamped, moved)``: the ring as floats with every vertex inside the image, and how many vertices were
        moved onto the border (a vertex exactly on it does not count).

    Raises:
        OutsideImageError: the ring lies wholly outside the image (see :func:`outside_image`); clamping it would
            give a ring of zero area on the border, so its coordinates are wrong (another image's, or another size).
    """
    xs, ys = ring[0::2], ring[1::2]
    if outside_image(min(xs), min(ys), max(xs), max(ys), width, height):
        raise OutsideImageError(f"the polygon lies wholly outside the {width:g}x{height:g} image (x {min(xs):g} to "
                                f"{max(xs):g}, y {min(ys):g} to {max(ys):g})")
    clamped: list[float] = []
    moved = 0
    for x, y in zip(xs, ys):
        cx, cy = float(min(max(x, 0), width)), float(min(max(y, 0), height))
        moved += (cx, cy) != (x, y)
        clamped += [cx, cy]
    return clamped, moved


EXIF_ORIENTATION = 0x0112
"""The EXIF tag of the orientation (1 upright; 5 to 8 transpose or rotate by 90 degrees, so width and height swap)."""

_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


@dataclasses.dataclass(frozen=True)
class ImageHeader:
    """The size of an image file as displayed (EXIF orientation applied, as :func:`read_image` loads it).

    Attributes:
        width, height: displayed size in pixels.
        orientation: the EXIF orientation (1 when there is none).
    """

    width: int
    height: int
    orientation: int

    @property
    def stored_size(self) -> tuple[int, int]:
        """``(width, height)`` of the pixels as stored, before the orientation is applied."""
        if self.orientation in _TRANSPOSING_ORIENTATIONS:
            return self.height, self.width
        return self.width, self.height


def read_image_header(path: str, what: str = "image") -> ImageHeader:
    """The displayed size and EXIF orientation of an image file, read from its header without decoding pixels.

    PIL's ``getexif()`` decodes a PNG's pixels in case an eXIf chunk follows them; for a PNG the orientation of an
    eXIf chunk before the pixel data is used.

    Args:
        path: the image file.
        what: names the file in errors ("image", "mask").

    Raises:
        ImageReadError: the file is missing or not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise ImageReadError(f"{path}: no such {what} file")
    try:
        with Image.open(path) as im:
            width, height = im.size
            if im.format == "PNG":
                exif = Image.Exif()
                if "exif" in im.info:
                    exif.load(im.info["exif"])
            else:
                exif = im.getexif()
            orientation = int(exif.get(EXIF_ORIENTATION, 1))
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: not a readable {what} ({exc})") from exc
    if orientation in _TRANSPOSING_ORIENTATIONS:  # The displayed image is H x W.
        width, height = height, width
    return ImageHeader(width, height, orientation)


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

    def check_image(self, image_id: int) -> list[str]:
        """Problems of one image that make it unusable for training, found cheaply (file headers, annotation
        geometry; not decoding the pixels), for :func:`check_dataset`.

        The base class returns the problems a loader recorded in ``image_info[image_id]["problems"]`` (e.g. an image
        whose header cannot be read); subclasses add their own checks. Safe to call from several threads.

        Returns:
            One message per problem, each naming the file: empty when the image looks usable.
        """
        return list(self.image_info[image_id].get("problems") or [])

    def raise_recorded_problems(self, image_id: int) -> None:
        """Raise the problems recorded for an image at load time (see :meth:`check_image`), so an image that
        :func:`check_dataset` would refuse is never read as if it were fine."""
        problems = self.image_info[image_id].get("problems")
        if problems:
            raise DatasetError("; ".join(problems))

    def load_mask(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Instance masks of an image: bool [H, W, N] and int32 class ids [N].

        Override this. The default returns no instances (and logs a warning), as matterport did.
        """
        log.warning("Dataset.load_mask is not overridden: %s has no instances", self.image_reference(image_id))
        mask = np.empty([0, 0, 0], dtype=bool)
        class_ids = np.empty([0], np.int32)
        return mask, class_ids


@dataclasses.dataclass
class DataCheck:
    """What :func:`check_dataset` found.

    Attributes:
        problems: internal image index -> the messages of that image (only images with problems).
        references: internal image index -> :meth:`Dataset.image_reference` of the images with problems.
        num_images: images checked.
        seconds: wall time of the check.
        workers: threads used.
    """

    problems: dict[int, list[str]]
    references: dict[int, str]
    num_images: int
    seconds: float
    workers: int

    @property
    def bad_images(self) -> list[int]:
        """Internal indices of the images with problems, in order."""
        return sorted(self.problems)

    def lines(self) -> list[str]:
        """One line per problem: the message (it names the file)."""
        return [message for i in self.bad_images for message in self.problems[i]]

    def summary(self) -> str:
        """``"checked N images in S s (W threads): ..."``."""
        found = (f"{len(self.problems)} with problems" if self.problems else "no problems")
        return f"checked {self.num_images} images in {self.seconds:.2f} s ({self.workers} threads): {found}"

    def raise_if_bad(self, hint: str = "") -> None:
        """Raise :class:`DataCheckError` listing every problem, one a line, when there is any.

        Args:
            hint: appended to the first line (e.g. how to leave the images out).
        """
        if self.problems:
            head = f"{len(self.problems)} of {self.num_images} images cannot be used{hint}:"
            raise DataCheckError("\n".join([head] + [f"  {line}" for line in self.lines()]))


def check_dataset(dataset: Dataset, workers: int | None = None) -> DataCheck:
    """Check every image of a data set before training, in parallel threads (:meth:`Dataset.check_image`).

    Reads file headers only (sizes, formats), so thousands of images take about a second; the threads overlap the
    waits of slow disks and network folders.

    Args:
        dataset: a data set with its images registered (``prepare()`` not needed).
        workers: threads; None for ``min(32, cpu count + 4)`` (the :mod:`concurrent.futures` default).

    Returns:
        A :class:`DataCheck`. A :class:`DatasetError` raised by ``check_image`` counts as that image's problem; any
        other exception propagates (a bug, not bad data).
    """
    workers = workers if workers is not None else min(32, (os.cpu_count() or 1) + 4)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")

    def check(index: int) -> list[str]:
        try:
            return dataset.check_image(index)
        except DatasetError as error:
            return [str(error)]

    start = time.perf_counter()
    count = len(dataset.image_info)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(check, range(count), chunksize=1))
    problems = {i: found for i, found in enumerate(results) if found}
    references = {i: dataset.image_reference(i) for i in problems}
    return DataCheck(problems, references, count, time.perf_counter() - start, workers)
