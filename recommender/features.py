"""Deep image features for many images: read -> decode -> embed, batched and overlapped.

Decoding runs in a small thread pool (Pillow releases the GIL) while the main thread feeds
full batches to the backbone's compiled call. A :class:`FeatureCache` keyed by the content
hash of each file makes rebuilds re-extract only new images.
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import images
from .errors import ImageError

if TYPE_CHECKING:
    from .config import BuildConfig
    from .datasets import Dataset

Progress = Callable[[int, int], None]
# progress(stage, done, total); stages: "features", "als"
BuildProgress = Callable[[str, int, int], None]


def default_cache_dir() -> Path:
    """``$HASHTAG_CACHE`` or ``$XDG_CACHE_HOME/hashtag-recommender`` (``~/.cache/...``)."""
    if os.environ.get("HASHTAG_CACHE"):
        return Path(os.environ["HASHTAG_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hashtag-recommender"


class FeatureCache:
    """Features and thumbnails of images by content hash, for one backbone.

    Stored as one ``.npz`` (no pickle). A damaged cache file is ignored and rewritten.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._features: dict[str, np.ndarray] = {}
        self._thumbs: dict[str, bytes] = {}
        self._dirty = False
        self._load()

    @classmethod
    def for_backbone(cls, backbone_key: str, folder: str | Path | None = None) -> FeatureCache:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in backbone_key)
        return cls(Path(folder or default_cache_dir()) / "features" / f"{safe}.npz")

    def _load(self) -> None:
        try:
            with np.load(self.path, allow_pickle=False) as npz:
                hashes = [str(h) for h in npz["hashes"]]
                feats = npz["features"].astype(np.float32)
                data = npz["thumb_data"].tobytes()
                offsets = npz["thumb_offsets"]
        except Exception:  # missing or damaged: start empty, rewritten on save()
            return
        if len(hashes) != len(feats) or len(offsets) != len(hashes) + 1:
            return
        for i, h in enumerate(hashes):
            self._features[h] = feats[i]
            if offsets[i + 1] > offsets[i]:
                self._thumbs[h] = data[offsets[i] : offsets[i + 1]]

    def __len__(self) -> int:
        return len(self._features)

    def get(self, key: str) -> tuple[np.ndarray | None, bytes | None]:
        with self._lock:
            return self._features.get(key), self._thumbs.get(key)

    def put(self, key: str, features: np.ndarray, thumbnail: bytes | None) -> None:
        with self._lock:
            self._features[key] = np.asarray(features, dtype=np.float32)
            if thumbnail:
                self._thumbs[key] = thumbnail
            self._dirty = True

    def save(self) -> None:
        """Write the cache atomically (only if something was added)."""
        with self._lock:
            if not self._dirty:
                return
            keys = list(self._features)
            thumbs = [self._thumbs.get(k, b"") for k in keys]
            offsets = np.zeros(len(keys) + 1, dtype=np.int64)
            offsets[1:] = np.cumsum([len(t) for t in thumbs])
            dim = len(next(iter(self._features.values()))) if keys else 0
            buf = io.BytesIO()
            np.savez(
                buf,
                hashes=np.array(keys, dtype="U64"),
                features=np.stack([self._features[k] for k in keys]).astype(np.float32)
                if keys
                else np.zeros((0, dim), np.float32),
                thumb_data=np.frombuffer(b"".join(thumbs), dtype=np.uint8),
                thumb_offsets=offsets,
            )
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".tmp-{os.getpid()}")
            tmp.write_bytes(buf.getvalue())
            os.replace(tmp, self.path)
            self._dirty = False


@dataclass
class Extraction:
    """What :func:`extract_features` returns.

    ``features`` has one row per entry of ``ok`` (indices into the input list), in order.
    """

    features: np.ndarray
    ok: list[int]
    hashes: list[str]
    thumbnails: list[bytes]
    errors: list[tuple[int, str]] = field(default_factory=list)
    cached: int = 0


@dataclass
class _Prepared:
    index: int
    key: str | None = None
    pixels: np.ndarray | None = None
    thumbnail: bytes | None = None
    features: np.ndarray | None = None
    error: str | None = None


def _thumbnail(img, size: int) -> bytes:
    """:func:`images.thumbnail_jpeg` after a box reduction to within 2.5x of ``size``.

    The bicubic fit then reads a quarter of the pixels: 0.46 instead of 0.72 ms of CPU for
    a 320 px photo, 1.5% of all the CPU an image costs to extract (bench_build.py), for a
    thumbnail that looks the same (mean absolute difference 2.5 levels, JPEG noise).
    """
    factor = min(img.size) // (size * 5 // 4)  # 320 px -> 2 for 128 px thumbnails
    return images.thumbnail_jpeg(img.reduce(factor) if factor >= 2 else img, size)


def _prepare(
    index: int, source: images.ImageSource, size: int, thumb_size: int, cache: FeatureCache | None
) -> _Prepared:
    try:
        data = images.read_bytes(source)
        key = images.content_hash(data)
        if cache is not None:
            feats, thumb = cache.get(key)
            if feats is not None and (thumb or not thumb_size):
                return _Prepared(index, key, features=feats, thumbnail=thumb)
        img = images.open_image(data)
        thumb = _thumbnail(img, thumb_size) if thumb_size else None
        return _Prepared(index, key, pixels=images.to_model_input(img, size), thumbnail=thumb)
    except ImageError as exc:
        return _Prepared(index, error=str(exc))


def extract_features(
    sources: Sequence[images.ImageSource],
    backbone,
    *,
    batch_size: int = 32,
    workers: int = 2,
    thumb_size: int = 0,
    cache: FeatureCache | None = None,
    progress: Progress | None = None,
) -> Extraction:
    """Embed every image in ``sources`` with ``backbone``.

    Unreadable images are reported in ``errors`` (index, message) and skipped; nothing
    raises for a bad image. ``progress(done, total)`` is called as images complete.
    """
    total = len(sources)
    prepared: list[_Prepared] = []
    batch: list[_Prepared] = []
    embedded: dict[int, np.ndarray] = {}
    done = 0
    cached = 0

    def flush() -> None:
        nonlocal done
        if not batch:
            return
        vectors = backbone.embed(np.stack([p.pixels for p in batch]))
        for p, v in zip(batch, vectors, strict=False):
            embedded[p.index] = v
            p.pixels = None
            if cache is not None and p.key is not None:
                cache.put(p.key, v, p.thumbnail)
        done += len(batch)
        batch.clear()
        if progress:
            progress(done, total)

    ahead = max(batch_size * 2, workers * 4)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="decode") as pool:
        pending: deque = deque()
        it = iter(enumerate(sources))
        for i, src in it:
            pending.append(
                pool.submit(_prepare, i, src, backbone.input_size, thumb_size, cache)
            )
            if len(pending) >= ahead:
                break
        while pending:
            item = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(
                    pool.submit(
                        _prepare, nxt[0], nxt[1], backbone.input_size, thumb_size, cache
                    )
                )
            prepared.append(item)
            if item.error is not None:
                done += 1
            elif item.features is not None:
                embedded[item.index] = item.features
                cached += 1
                done += 1
            else:
                batch.append(item)
                if len(batch) >= batch_size:
                    flush()
                continue
            if progress and (done % batch_size == 0 or done == total):
                progress(done, total)
        flush()
    if cache is not None:
        cache.save()

    ok = [p.index for p in prepared if p.error is None]
    by_index = {p.index: p for p in prepared}
    dim = getattr(backbone, "dim", 0)
    features = (
        np.stack([embedded[i] for i in ok]).astype(np.float32)
        if ok
        else np.zeros((0, dim), np.float32)
    )
    return Extraction(
        features=features,
        ok=ok,
        hashes=[by_index[i].key for i in ok],
        thumbnails=[by_index[i].thumbnail or b"" for i in ok],
        errors=[(p.index, p.error) for p in prepared if p.error is not None],
        cached=cached,
    )


@dataclass
class DatasetFeatures:
    """Features of a data set's images, aligned with its posts.

    ``image_rows[i]`` is the row of ``features`` for post ``i`` (-1: no usable image).
    """

    dataset: Dataset
    features: np.ndarray
    image_rows: list[int]
    thumbnails: list[bytes]
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    backbone: dict[str, Any] = field(default_factory=dict)


def backbone_cache_key(backbone) -> str:
    return f"{backbone.name}-{backbone.weights}"


def dataset_features(
    dataset: Dataset,
    config: BuildConfig,
    *,
    use_cache: bool = True,
    progress: BuildProgress | None = None,
) -> DatasetFeatures:
    """Extract the features of every post image of ``dataset`` (deduplicated by content)."""
    from .backbones import get_backbone

    backbone = get_backbone(config.backbone, config.weights)
    with_image = [i for i, p in enumerate(dataset.posts) if p.image]
    paths = [dataset.image_path(dataset.posts[i]) for i in with_image]
    cache = FeatureCache.for_backbone(backbone_cache_key(backbone)) if use_cache else None
    start = time.perf_counter()
    ex: Extraction = extract_features(
        paths,
        backbone,
        batch_size=config.batch_size,
        workers=config.workers,
        thumb_size=config.thumb_size,
        cache=cache,
        progress=(lambda d, t: progress("features", d, t)) if progress else None,
    )
    seconds = time.perf_counter() - start
    image_rows = [-1] * len(dataset.posts)
    seen: dict[str, int] = {}
    duplicates = 0
    for row, (pos, key) in enumerate(zip(ex.ok, ex.hashes, strict=False)):
        if key in seen:
            duplicates += 1
            continue
        seen[key] = row
        image_rows[with_image[pos]] = row
    problems = [f"{dataset.posts[with_image[pos]].image}: {msg}" for pos, msg in ex.errors]
    counts = {
        "images_embedded": len(ex.ok) - ex.cached,
        "images_from_cache": ex.cached,
        "images_unreadable": len(ex.errors),
        "images_duplicate": duplicates,
    }
    # name, input_size, dim, weights, weights_sha256, preprocessing: loading checks the last two
    info = backbone.fingerprint()
    return DatasetFeatures(
        dataset, ex.features, image_rows, ex.thumbnails, counts, problems, seconds, info
    )
