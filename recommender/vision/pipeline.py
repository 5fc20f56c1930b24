"""The image pipeline as small callables: read + hash -> decode + thumbnail -> embed a batch.

:func:`embedded_items` runs them over many images (decoding in a few threads while the
backbone embeds full batches) and yields each image's :class:`Item` when it is done. The
build collects them into feature shards (:mod:`recommender.features.pipeline`), a query of
many photos into arrays (:func:`embed_arrays`), and the Spark engine runs the build's step
in every task.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from recommender.errors import ImageError
from recommender.vision import images

# progress(done, total), in images
Progress = Callable[[int, int], None]


@dataclass
class Item:
    """One image on its way through the pipeline (``index``: its place in the input).

    :func:`read_image` sets ``key`` and ``data`` (or ``error``, or, for an image embedded
    before, ``features`` at once); :func:`decode_image` turns ``data`` into ``pixels`` and
    ``thumbnail``; :func:`embed_batch` sets ``features`` and ``classes``.
    """

    index: int
    key: str | None = None  # content hash (None for a PIL image, which has no file)
    data: Any = None  # the encoded bytes (or the PIL image) until decoded
    pixels: np.ndarray | None = None
    thumbnail: bytes | None = None
    features: np.ndarray | None = None
    # one image's classes: (ids, probs) of its top classes, or its full (1000,) probabilities
    classes: Any = None
    error: str | None = None
    cached: bool = False


def _thumbnail(img, size: int) -> bytes:
    """:func:`images.thumbnail_jpeg` after a box reduction to within 2.5x of ``size``.

    The bicubic fit then reads a quarter of the pixels: 0.46 instead of 0.72 ms of CPU for
    a 320 px photo, 1.5% of all the CPU an image costs to extract (bench_build.py), for a
    thumbnail that looks the same (mean absolute difference 2.5 levels, JPEG noise).
    """
    factor = min(img.size) // (size * 5 // 4)  # 320 px -> 2 for 128 px thumbnails
    return images.thumbnail_jpeg(img.reduce(factor) if factor >= 2 else img, size)


# known(content_hash) -> (features, thumbnail, (class ids, probs) or None) of an image
# embedded before, or None
Found = tuple[np.ndarray, bytes, "tuple[np.ndarray, np.ndarray] | None"]
Known = Callable[[str], "Found | None"]


def _failed(exc: Exception) -> str:
    """What an image that broke the pipeline in a way the image checks do not catch is
    recorded with (only when the pipeline isolates failures)."""
    return f"the worker failed on this image: {type(exc).__name__}: {exc}"


def read_image(
    index: int,
    source: images.ImageSource,
    known: Known | None = None,
    *,
    thumb_size: int = 0,
    classes: bool = False,
) -> Item:
    """Read + hash: ``source``'s bytes and content hash.

    An image that ``known(hash)`` holds with all that is asked of it (a thumbnail when
    ``thumb_size``, the classes when ``classes``) comes back embedded (``cached``). A PIL
    image passes through unhashed. An unreadable source sets ``error``; nothing raises for
    a bad image.
    """
    from PIL import Image

    if isinstance(source, Image.Image):
        return Item(index, data=source)
    try:
        data = images.read_bytes(source)
    except ImageError as exc:
        return Item(index, error=str(exc))
    key = images.content_hash(data)
    found = known(key) if known is not None else None
    if found is not None and (found[1] or not thumb_size) and (found[2] is not None or not classes):
        return Item(
            index, key, features=found[0], thumbnail=found[1], classes=found[2], cached=True
        )
    return Item(index, key, data=data)


def decode_image(item: Item, size: int, thumb_size: int = 0, *, draft: bool = False) -> Item:
    """Decode + thumbnail: ``item.data`` -> the ``size`` px model input (and a
    ``thumb_size`` px JPEG thumbnail when asked); sets ``error`` for a bad image.

    ``draft`` decodes a big JPEG at reduced scale (:func:`images.load_for_model`, what a
    query does; no thumbnail then); the build decodes fully (:func:`images.open_image`).
    """
    if item.data is None:
        return item
    data, item.data = item.data, None
    try:
        if draft and not thumb_size:
            item.pixels = images.load_for_model(data, size)
        else:
            img = images.open_image(data)
            item.thumbnail = _thumbnail(img, thumb_size) if thumb_size else None
            item.pixels = images.to_model_input(img, size)
    except ImageError as exc:
        item.error = str(exc)
    return item


def embed_batch(
    backbone, batch: Sequence[Item], *, classes: str | None = None, isolate: bool = False
) -> None:
    """Embed a batch: one forward pass over the items' pixels sets their ``features``.

    ``classes`` "top" keeps each image's top ImageNet classes (ids, probs), "full" its
    (1000,) probabilities, from the same pass (the backbone must have a head); None runs
    ``backbone.embed`` alone. ``isolate``: if the pass fails, the items are embedded one by
    one and an item that still fails is recorded as failed (``error``) instead of raising.
    """
    from recommender.vision.content import TopClasses

    if not batch:
        return
    try:
        pixels = np.stack([cast(np.ndarray, item.pixels) for item in batch])  # decoded items
        if classes:
            vectors, probs = backbone.embed_with_classes(pixels)
        else:
            vectors, probs = backbone.embed(pixels), None
    except Exception as exc:  # noqa: BLE001 - isolated below, or raised as it is
        if not isolate:
            raise
        if len(batch) == 1:
            batch[0].error, batch[0].pixels = _failed(exc), None
            return
        for item in batch:
            embed_batch(backbone, [item], classes=classes, isolate=True)
        return
    top = TopClasses.of(probs) if classes == "top" and probs is not None else None
    for j, item in enumerate(batch):
        item.features, item.pixels = vectors[j], None
        if top is not None:
            item.classes = (top.ids[j], top.probs[j])
        elif probs is not None:
            item.classes = probs[j]


def embedded_items(
    sources: Sequence[images.ImageSource],
    backbone,
    *,
    batch_size: int = 32,
    workers: int = 2,
    thumb_size: int = 0,
    known: Known | None = None,
    classes: str | None = None,
    draft: bool = False,
    isolate: bool = False,
    progress: Progress | None = None,
) -> Iterator[Item]:
    """The runner: every source through read+hash -> decode+thumbnail (``workers`` threads,
    a few batches ahead) -> embed a batch (``batch_size`` decoded images a pass).

    Yields each :class:`Item` once it is done (embedded, found in ``known``, or failed),
    near input order; only a few batches of pixels are held at a time. ``progress(done,
    total)`` is called as images complete. Options as for :func:`read_image`,
    :func:`decode_image` and :func:`embed_batch`.
    """
    total = len(sources)
    size = backbone.input_size
    batch: list[Item] = []
    done = 0

    def prepare(i: int, source: images.ImageSource) -> Item:
        try:
            item = read_image(i, source, known, thumb_size=thumb_size, classes=bool(classes))
            return decode_image(item, size, thumb_size, draft=draft)
        except Exception as exc:  # noqa: BLE001 - only when isolating failures
            if not isolate:
                raise
            return Item(i, error=_failed(exc))

    def flush() -> Iterator[Item]:
        nonlocal done
        embed_batch(backbone, batch, classes=classes, isolate=isolate)
        done += len(batch)
        yield from batch
        batch.clear()
        if progress:
            progress(done, total)

    ahead = max(batch_size * 2, workers * 4)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="decode") as pool:
        pending: deque = deque()
        it = iter(enumerate(sources))
        for i, src in it:
            pending.append(pool.submit(prepare, i, src))
            if len(pending) >= ahead:
                break
        while pending:
            item = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(prepare, *nxt))
            if item.pixels is not None:
                batch.append(item)
                if len(batch) >= batch_size:
                    yield from flush()
                continue
            done += 1
            yield item
            if progress and (done % batch_size == 0 or done == total):
                progress(done, total)
        if batch:
            yield from flush()


def embed_arrays(
    sources: Sequence[images.ImageSource],
    backbone,
    *,
    batch_size: int = 32,
    workers: int = 2,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray | None, list[str | None]]:
    """The query's pipeline over many images: ``(features, classes, errors)`` in input order.

    ``features[i]`` and ``classes[i]`` (full class probabilities; None without a head) are
    what one query of ``sources[i]`` gives (big JPEGs decoded at reduced scale), zeros
    when it cannot be used; ``errors[i]`` is None or why not.
    """
    total = len(sources)
    features = np.zeros((total, backbone.dim), dtype=np.float32)
    classes: np.ndarray | None = None
    errors: list[str | None] = [None] * total
    with_classes = "full" if getattr(backbone, "has_classes", False) else None
    for item in embedded_items(
        sources,
        backbone,
        batch_size=batch_size,
        workers=workers,
        classes=with_classes,
        draft=True,
        progress=progress,
    ):
        if item.error is not None:
            errors[item.index] = item.error
            continue
        features[item.index] = item.features
        if item.classes is not None:
            if classes is None:
                classes = np.zeros((total, len(item.classes)), dtype=np.float32)
            classes[item.index] = item.classes
    return features, classes, errors
