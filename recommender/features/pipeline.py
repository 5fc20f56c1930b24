"""The build's embed step: images -> feature shards, on the image pipeline.

:func:`extract_features` runs the pipeline of :mod:`recommender.vision.pipeline` (read +
hash -> decode + thumbnail -> embed a batch) and collects it (:func:`collect`).
:func:`embed_shard` is one shard of the embed stage, what every engine runs (the local
engine in :func:`embed_to_shards`, the Spark engine in each task): it writes the shard
(:mod:`recommender.features.shards`) into the feature store
(:mod:`recommender.features.store`), so a killed build resumes at its first missing shard
and a rebuild reuses every shard whose images did not change.
:func:`recommender.engines.embed_stage.dataset_features` runs the whole stage with any
engine and joins the shards back to the posts.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from recommender.errors import disk_full
from recommender.features.job import Progress
from recommender.vision import images
from recommender.vision.pipeline import Found, Item, Known, embedded_items

if TYPE_CHECKING:
    from recommender.data.datasets import Dataset
    from recommender.features.job import EmbedJob, EmbedStats
    from recommender.features.shards import Shard, ShardStore
    from recommender.vision.content import TopClasses

# progress(stage, done, total); stages: "features", "als"
BuildProgress = Callable[[str, int, int], None]


@dataclass
class Extraction:
    """What :func:`extract_features` returns.

    ``features`` has one row per entry of ``ok`` (indices into the input list), in order;
    so has ``classes``, the top ImageNet classes from the same forward pass (None when the
    backbone has no trained head).
    """

    features: np.ndarray
    ok: list[int]
    hashes: list[str]
    thumbnails: list[bytes]
    errors: list[tuple[int, str]] = field(default_factory=list)
    cached: int = 0
    classes: TopClasses | None = None


def collect(items: Iterable[Item], backbone) -> Extraction:
    """Collect: the :class:`Extraction` of a run's items (top classes, as the shards keep
    them, when the items carry them)."""
    from recommender.vision.content import TOP_CLASSES, TopClasses

    done = sorted(items, key=lambda item: item.index)
    good = [item for item in done if item.error is None]
    dim = getattr(backbone, "dim", 0)
    features = (
        np.stack([cast(np.ndarray, item.features) for item in good]).astype(np.float32)
        if good
        else np.zeros((0, dim), np.float32)
    )
    top = None
    if getattr(backbone, "has_classes", False):
        k = TOP_CLASSES
        top = TopClasses(
            np.array([item.classes[0] for item in good], np.int16).reshape(len(good), k),
            np.array([item.classes[1] for item in good], np.float16).reshape(len(good), k),
        )
    return Extraction(
        features=features,
        ok=[item.index for item in good],
        hashes=[cast(str, item.key) for item in good],  # embedded items were read and hashed
        thumbnails=[item.thumbnail or b"" for item in good],
        errors=[(item.index, item.error) for item in done if item.error is not None],
        cached=sum(item.cached for item in good),
        classes=top,
    )


def extract_features(
    sources: Sequence[images.ImageSource],
    backbone,
    *,
    batch_size: int = 32,
    workers: int = 2,
    thumb_size: int = 0,
    known: Known | None = None,
    progress: Progress | None = None,
    isolate: bool = False,
) -> Extraction:
    """Embed every image in ``sources`` with ``backbone``: the build's pipeline.

    Unreadable images are reported in ``errors`` (index, message) and skipped; nothing
    raises for a bad image. ``known(hash)`` may return the features and thumbnail of an
    image seen before (counted in ``cached``): it skips decoding and the backbone.
    ``progress(done, total)`` is called as images complete. A backbone with an ImageNet
    head (``has_classes``) also gives each image's top classes, from the same forward pass.
    ``isolate`` records an image that breaks the backbone in some other way as failed
    (the Spark task's rule: a task never fails on one image).
    """
    with_classes = "top" if getattr(backbone, "has_classes", False) else None
    items = embedded_items(
        sources,
        backbone,
        batch_size=batch_size,
        workers=workers,
        thumb_size=thumb_size,
        known=known,
        classes=with_classes,
        isolate=isolate,
        progress=progress,
    )
    return collect(items, backbone)


class _RunIndex:
    """Content hash -> (shard, row) over a store's committed shards, built on first use."""

    def __init__(self, store: ShardStore) -> None:
        self.store = store
        self._rows: dict[bytes, tuple[Shard, int]] | None = None
        self._lock = threading.Lock()  # decoding threads look up at once

    def _build(self) -> dict[bytes, tuple[Shard, int]]:
        with self._lock:
            if self._rows is None:
                rows: dict[bytes, tuple[Shard, int]] = {}
                for number in self.store.shards():
                    shard = self.store.read_shard(number)
                    if shard is not None:
                        for row, digest in enumerate(shard.raw_hashes):
                            rows.setdefault(digest.tobytes(), (shard, row))
                self._rows = rows
            return self._rows

    def lookup(self, key: str) -> Found | None:
        found = (self._rows if self._rows is not None else self._build()).get(bytes.fromhex(key))
        return None if found is None else _found(*found)


def _found(shard: Shard, row: int) -> Found:
    ids, probs = shard.extra.get("class_ids"), shard.extra.get("class_probs")
    classes = None if ids is None or probs is None else (np.array(ids[row]), np.array(probs[row]))
    return np.asarray(shard.features[row], dtype=np.float32), shard.thumbnail(row), classes


def _from(first: int, total: int, progress: Progress | None) -> Progress | None:
    """``progress`` over the whole job for one shard's ``(done, _)``: its first image is
    the job's ``first``."""
    if progress is None:
        return None
    return lambda done, _total: progress(first + done, total)


def _shard_lookup(shard: Shard | None, fallback: _RunIndex | None) -> Known:
    own = {} if shard is None else {d.tobytes(): r for r, d in enumerate(shard.raw_hashes)}

    def known(key: str) -> Found | None:
        row = own.get(bytes.fromhex(key))
        if row is None or shard is None:  # (no shard: nothing is its own)
            return fallback.lookup(key) if fallback is not None else None
        return _found(shard, row)

    return known


def _same_shard(shard: Shard | None, ex: Extraction, first: int, size: int) -> bool:
    """Does the committed ``shard`` hold exactly what ``ex`` found for its paths?"""
    if shard is None or ex.cached != len(ex.ok) or shard.meta.get("size") != size:
        return False
    positions = shard.extra.get("position")
    return (
        positions is not None
        and (ex.classes is None) == ("class_ids" not in shard.extra)
        and shard.hashes == ex.hashes
        and np.array_equal(positions, first + np.asarray(ex.ok, dtype=np.int64))
        and [tuple(e) for e in shard.meta.get("errors", [])]
        == [(first + i, m) for i, m in ex.errors]
    )


def embed_to_shards(job: EmbedJob, backbone=None, progress: Progress | None = None) -> EmbedStats:
    """The local engine's embed stage: shard by shard, keeping every unchanged shard.

    See :mod:`recommender.engines` for the contract. Each chunk's files are read and hashed;
    images found in its committed shard (or any other shard of the store) are not decoded
    again, and a shard whose content is unchanged is not rewritten. So a build killed
    mid-way re-embeds at most the one shard it was writing.
    """
    from recommender.features.job import EmbedStats

    if backbone is None:
        from recommender.vision.backbones import get_backbone

        backbone = get_backbone(job.backbone, job.weights)
    stats = EmbedStats()
    total = len(job.paths)
    index = _RunIndex(job.store)
    for number in range(job.n_shards):
        first, last = job.shard_range(number)
        embedded, reused, written = embed_shard(
            job,
            number,
            job.paths[first:last],
            backbone,
            index,
            progress=_from(first, total, progress),
        )
        stats.embedded += embedded
        stats.reused += reused
        stats.shards_written += written
        stats.shards_kept += not written
    return stats


def embed_shard(
    job: EmbedJob,
    number: int,
    sources: Sequence[images.ImageSource],
    backbone,
    index: _RunIndex | None = None,
    *,
    progress: Progress | None = None,
    extract: Callable[..., Extraction] | None = None,
) -> tuple[int, int, bool]:
    """One shard of the embed stage: what every engine runs for shard ``number``.

    ``sources`` are the images the shard covers (``job.paths[first:last]``). Images found in
    the committed shard (or, with ``index``, any shard of the store) are not embedded again;
    the shard is rewritten only if what it holds changed. ``extract`` replaces
    :func:`extract_features` (same signature). Returns ``(embedded, reused, written)``.
    """
    first = int(number) * job.shard_size
    committed = job.store.read_shard(number)
    ex = (extract or extract_features)(
        list(sources),
        backbone,
        batch_size=job.batch_size,
        workers=job.workers,
        thumb_size=job.thumb_size,
        known=_shard_lookup(committed, index),
        progress=progress,
    )
    embedded, reused = len(ex.ok) - ex.cached, ex.cached
    if _same_shard(committed, ex, first, len(sources)):
        return embedded, reused, False
    classes = (
        {} if ex.classes is None else {"class_ids": ex.classes.ids, "class_probs": ex.classes.probs}
    )
    job.store.write_shard(
        number,
        ex.hashes,
        ex.features,
        ex.thumbnails,
        meta={
            "first": first,
            "size": len(sources),
            "errors": [[first + i, m] for i, m in ex.errors],
        },
        position=first + np.asarray(ex.ok, dtype=np.int64),
        **classes,
    )
    return embedded, reused, True


class ShardThumbnails(Sequence):
    """The thumbnails of a run of shards, row by row, read from their memory maps."""

    def __init__(self, shards: Sequence[Shard]) -> None:
        self._shards = list(shards)
        self._starts = np.cumsum([0] + [len(s) for s in self._shards])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, row):
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        row = int(row)
        if not 0 <= row < len(self):
            raise IndexError(row)
        s = int(np.searchsorted(self._starts, row, side="right")) - 1
        return self._shards[s].thumbnail(row - int(self._starts[s]))


def stack_features(shards: Sequence[Shard], folder: Path, dim: int) -> np.ndarray:
    """The shards' features as one (n, d) float16 array, memory-mapped from a private file.

    The file lives in ``folder`` only while it is being filled: once mapped it is unlinked,
    so nothing is left behind, whatever happens to the process.
    """
    n = sum(len(s) for s in shards)
    if n == 0:
        return np.zeros((0, dim), np.float16)
    dim = int(shards[0].features.shape[1]) if shards else dim
    path = folder / f".features-{os.getpid()}-{threading.get_ident()}.npy"
    try:
        # Written, not filled through a writable map: a map's dirty pages would all count
        # in this process' resident memory (2.5 GB at a million images).
        with open(path, "wb") as out:
            header = {"descr": "<f2", "fortran_order": False, "shape": (n, dim)}
            np.lib.format.write_array_header_2_0(out, header)
            for shard in shards:  # read, not mapped: the shards' pages stay out of memory
                block = np.ascontiguousarray(shard.read_features(), dtype="<f2")
                if block.shape != (len(shard), dim):
                    raise RuntimeError(f"shard features of shape {block.shape}, not (n, {dim})")
                out.write(block.tobytes())
        mapped = np.load(path, mmap_mode="r")
    except OSError as exc:
        hint = "Free some space, or set HASHTAG_CACHE to a folder on a disk with room."
        full = disk_full(exc, folder, n * dim * 2, hint)
        if full is not None:
            raise full from None
        raise
    finally:
        path.unlink(missing_ok=True)
    return mapped


def read_shards(job: EmbedJob, dim: int = 0) -> tuple[list[Shard], np.ndarray]:
    """The verified shards an embed stage wrote for ``job``, and their features stacked.

    Raises ``RuntimeError`` if one is missing or covers other images (an engine bug).
    """
    shards = []
    for number in range(job.n_shards):
        shard = job.store.read_shard(number)
        if shard is None or shard.meta.get("first") != job.shard_range(number)[0]:
            raise RuntimeError(f"the embed stage left shard {number} of {job.store} unusable")
        shards.append(shard)
    return shards, stack_features(shards, job.store.folder, dim)


@dataclass
class DatasetFeatures:
    """Features of a data set's images, aligned with its posts.

    ``image_rows[i]`` is the row of ``features`` for post ``i`` (-1: no usable image).
    ``features`` is (n, d) float16, memory-mapped; ``thumbnails[row]`` the row's JPEG;
    ``classes`` the rows' top ImageNet classes, kept in the shards by the embed stage
    (None when the backbone has no trained head).
    """

    dataset: Dataset
    features: np.ndarray
    image_rows: list[int]
    thumbnails: Sequence[bytes]
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    backbone: dict[str, Any] = field(default_factory=dict)
    hashes: list[str] = field(default_factory=list)  # content hash of each row
    classes: TopClasses | None = None
