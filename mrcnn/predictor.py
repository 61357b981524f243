"""Batched inference over a stream of images: decoding in worker threads, batching, and results at the input's size.

A thread pool decodes images and molds them (resize and mean subtraction, :meth:`mrcnn.model.MaskRCNN.mold_inputs`)
a bounded number ahead while the model runs on the current batch (OpenCV, PIL and TensorFlow release the GIL).
A batch holds ``BATCH_SIZE`` readable images; images molded to different sizes (``IMAGE_RESIZE_MODE`` "pad64",
"fit" or "none") run as one inference call per size. Results come back in input order, one per input, each with
either the detections unmolded to the decoded image's size or the exception that made the input unreadable, so
one bad file never stops a run.

- :func:`iter_parallel`: any function over items in a thread pool, results in input order, errors yielded.
- :func:`iter_prepared`: items -> :class:`Prepared` (decoded and molded images) with a ``load`` function.
- :func:`iter_detections`: prepared images -> matterport's result dicts, batch by batch.

Example::

    from mrcnn.dataset import read_image
    from mrcnn.model import MaskRCNN
    from mrcnn.predictor import iter_detections, iter_prepared

    model = MaskRCNN(mode="inference", config=config, model_dir="logs")
    model.load_weights("weights/mask_rcnn_coco.h5", by_name=True)
    prepared = iter_prepared(model, paths, read_image, workers=2)
    for path, _, result, error in iter_detections(model, prepared):
        if error is not None:
            print(f"{path}: {error}")
            continue
        masks = result["masks"]  # bool [H, W, N] at the size of the file, sorted by decreasing score
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator

import numpy as np

__all__ = ["Prepared", "iter_detections", "iter_parallel", "iter_prepared", "prepare"]


@dataclasses.dataclass
class Prepared:
    """One decoded and molded image.

    Attributes:
        shape: ``(H, W, 3)`` of the decoded image (EXIF orientation applied).
        molded: float32 [h, w, 3] network input.
        meta: float32 [META] image meta.
        window: int [4] ``(y1, x1, y2, x2)`` pixels of the image inside ``molded``.
        image: uint8 [H, W, 3], or None when the loader did not keep it.
        extra: anything else the loader computed (e.g. a ground-truth mask).
    """

    shape: tuple[int, int, int]
    molded: np.ndarray
    meta: np.ndarray
    window: np.ndarray
    image: np.ndarray | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def iter_parallel(items: Iterable[Any], fn: Callable[[Any], Any], workers: int = 2,
                  prefetch: int | None = None) -> Iterator[tuple[Any, Any, BaseException | None]]:
    """Apply ``fn`` to ``items`` in a thread pool, a bounded number ahead, yielding results in input order.

    Args:
        items: the inputs.
        fn: function of one item; an ``Exception`` it raises is yielded, not raised.
        workers: threads (at least 1).
        prefetch: how many items may be in flight or waiting (bounds memory); default ``2 * workers + 2``.

    Yields:
        ``(item, result, None)`` or ``(item, None, exception)``.
    """
    workers = max(1, int(workers))
    prefetch = max(1, prefetch if prefetch is not None else 2 * workers + 2)
    iterator = iter(items)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="predictor-load")
    queue: collections.deque = collections.deque()
    try:
        for item in itertools.islice(iterator, prefetch):
            queue.append((item, pool.submit(fn, item)))
        while queue:
            item, future = queue.popleft()
            for nxt in itertools.islice(iterator, 1):
                queue.append((nxt, pool.submit(fn, nxt)))
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001  (the caller reports it per item)
                yield item, None, exc
            else:
                yield item, result, None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def prepare(model: Any, image: np.ndarray, keep_image: bool = True, **extra: Any) -> Prepared:
    """Mold one image for ``model`` (a :class:`mrcnn.model.MaskRCNN`); safe to call from worker threads."""
    molded, metas, windows = model.mold_inputs([image])
    return Prepared(shape=tuple(int(s) for s in image.shape[:2]) + (3,), molded=molded[0], meta=metas[0],
                    window=windows[0], image=image if keep_image else None, extra=dict(extra))


def iter_prepared(model: Any, items: Iterable[Any], load: Callable[[Any], np.ndarray | tuple[np.ndarray, dict]],
                  workers: int = 2, keep_image: bool = True) -> Iterator[tuple[Any, Prepared | None,
                                                                                BaseException | None]]:
    """Decode and mold ``items`` in a thread pool.

    Args:
        model: the :class:`mrcnn.model.MaskRCNN`.
        items: inputs for ``load`` (paths, ids).
        load: item -> uint8 RGB [H, W, 3] image, or ``(image, extra)`` with an ``extra`` dict kept in
            :attr:`Prepared.extra`; runs in a worker thread.
        workers: threads.
        keep_image: keep the decoded image in :attr:`Prepared.image` (for overlays and crops).

    Yields:
        ``(item, prepared, None)`` or ``(item, None, exception)``, in input order.
    """

    def task(item: Any) -> Prepared:
        loaded = load(item)
        image, extra = loaded if isinstance(loaded, tuple) else (loaded, {})
        return prepare(model, image, keep_image=keep_image, **extra)

    return iter_parallel(items, task, workers=workers)


def iter_detections(model: Any, prepared: Iterable[tuple[Any, Prepared | None, BaseException | None]],
                    batch_size: int | None = None) -> Iterator[tuple[Any, Prepared | None, dict | None,
                                                                      BaseException | None]]:
    """Run the model on batches of prepared images.

    Args:
        model: the :class:`mrcnn.model.MaskRCNN` in inference mode.
        prepared: the output of :func:`iter_prepared`.
        batch_size: images per inference call; the config's ``BATCH_SIZE`` when None.

    Yields:
        ``(item, prepared, result, None)`` with matterport's result dict (``rois`` [N, (y1, x1, y2, x2)] pixels,
        ``class_ids`` [N], ``scores`` [N], ``masks`` bool [H, W, N], ``class_probs`` [N, NUM_CLASSES], at the
        decoded image's size, sorted by decreasing score), or ``(item, None, None, exception)`` for an input that
        could not be loaded; in input order.
    """
    batch_size = max(1, int(batch_size or model.config.BATCH_SIZE))
    pending: list[tuple[Any, Prepared | None, BaseException | None]] = []
    ready = 0
    for entry in prepared:
        pending.append(entry)
        ready += entry[1] is not None
        if ready == batch_size:
            yield from _run_batch(model, pending)
            pending, ready = [], 0
    if pending:
        yield from _run_batch(model, pending)


def _run_batch(model: Any, pending: list) -> Iterator[tuple[Any, Prepared | None, dict | None,
                                                            BaseException | None]]:
    batch = [p for _, p, _ in pending if p is not None]
    # "pad64" / "fit" / "none" mold images of different shapes to different sizes: one inference call per size.
    outputs = model.run_inference_by_size([p.molded for p in batch], [p.meta for p in batch]) if batch else []
    k = 0
    for item, p, error in pending:
        if p is None:
            yield item, None, None, error
            continue
        out = outputs[k]
        rois, class_ids, scores, masks, probs = model.unmold_detections(
            out["detections"], out["class_probs"], out["masks"], p.shape, p.molded.shape, p.window)
        k += 1
        order = np.argsort(-scores, kind="stable")
        result = {"rois": rois[order], "class_ids": class_ids[order], "scores": scores[order],
                  "masks": masks[:, :, order], "class_probs": probs[order]}
        yield item, p, result, None
