"""The feature store: where the embed stage's shards live between builds, and its bound.

Where the shards live and what their key names: :func:`store_key`.

Bounded: after a build, :func:`prune` deletes the least recently used data sets' shard
folders until the store is under ``$HASHTAG_CACHE_MAX_GB`` (default
:data:`DEFAULT_MAX_GB`). Safe with several builds at once: shards are committed atomically
and verified on read (:mod:`recommender.features.shards`); a build holds a shared lock on its folder
(:class:`lease`) and pruning skips folders someone holds. Never rewritten whole: a build
writes only the shards that changed.

Shards rather than sqlite/LMDB: they are what the build reads anyway, and one rename per
shard commits it, without a new dependency (benchmarks/README.md has the reasons and costs).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from recommender.errors import ConfigError
from recommender.features.shards import SHARD_VERSION, ShardStore

DEFAULT_MAX_GB = 20.0


def default_cache_dir() -> Path:
    """``$HASHTAG_CACHE`` or ``$XDG_CACHE_HOME/hashtag-recommender`` (``~/.cache/...``)."""
    if os.environ.get("HASHTAG_CACHE"):
        return Path(os.environ["HASHTAG_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hashtag-recommender"


def max_bytes() -> int:
    """The store's bound: ``$HASHTAG_CACHE_MAX_GB`` gigabytes (default 20).

    Raises :class:`~recommender.errors.ConfigError` for a value that is not a finite number
    of at least 0 (a negative one would empty the whole store, nan or inf would never bound
    it).
    """
    raw = os.environ.get("HASHTAG_CACHE_MAX_GB", "").strip()
    if not raw:
        return int(DEFAULT_MAX_GB * 1e9)
    try:
        gb = float(raw)
    except ValueError:
        gb = math.nan
    if not math.isfinite(gb) or gb < 0:
        raise ConfigError(
            f"HASHTAG_CACHE_MAX_GB={raw[:40]!r} is not a size: set it to a number of gigabytes "
            f"of at least 0 (default {DEFAULT_MAX_GB:g}), or unset it."
        )
    return int(gb * 1e9)


def check_cache_dir(root: str | Path) -> Path:
    """``root`` if the feature store can live there; a :class:`ConfigError` in one line if it
    is a file or anything else that is not a folder."""
    root = Path(root)
    for parent in (root, *root.parents):
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise ConfigError(
                    f"The feature store's folder {root} cannot be made: {parent} is not a "
                    "folder. Point HASHTAG_CACHE at a folder (or unset it)."
                )
            break
    return root


def store_key(backbone, thumb_size: int) -> str:
    """What shards depend on: backbone, weights' sha256, preprocessing, thumbnail size and
    what a shard holds (its format version).

    Layout under the cache folder (``$HASHTAG_CACHE``, see :func:`default_cache_dir`;
    the shards' files: :mod:`recommender.features.shards`)::

        shards/<key>/<data set id>/000000.json, 000000-<sha>.bin, ...
                                  /last-used, .lock

    Retrained weights in the same file path, or another thumbnail size, give another key,
    so they never reuse stale features or 32 px thumbnails for a 128 px request. The data
    set id is the hash of the data set's folder: a rebuild of the same folder reuses its
    shards (only changed chunks are re-embedded), a killed build resumes at its first
    missing shard.
    """
    return f"{backbone.cache_key}-t{int(thumb_size)}-s{SHARD_VERSION}"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def run_store(
    key: str, dataset_root: str | Path, cache_dir: str | Path | None = None
) -> ShardStore:
    """The shard store of the data set at ``dataset_root`` under ``key``."""
    root = check_cache_dir(cache_dir if cache_dir is not None else default_cache_dir())
    max_bytes()  # refuse a bad bound now, not after the embedding
    dataset_id = hashlib.sha256(str(Path(dataset_root).resolve()).encode()).hexdigest()[:16]
    return ShardStore(root / "shards" / _safe(key) / dataset_id, key)


@contextlib.contextmanager
def lease(store: ShardStore) -> Iterator[None]:
    """Hold ``store``'s folder for a build: marks it used now and keeps :func:`prune` off."""
    store.folder.mkdir(parents=True, exist_ok=True)
    (store.folder / "last-used").touch()
    with open(store.folder / ".lock", "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def _last_used(folder: Path) -> float:
    try:
        return (folder / "last-used").stat().st_mtime
    except OSError:
        return 0.0


def prune(limit: int | None = None, cache_dir: str | Path | None = None) -> list[Path]:
    """Delete least recently used shard folders until the store holds at most ``limit`` bytes.

    Folders a running build holds (:func:`lease`) are skipped. Returns the folders deleted.
    """
    limit = max_bytes() if limit is None else int(limit)
    root = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "shards"
    if not root.is_dir():
        return []
    folders = [f for key in root.iterdir() if key.is_dir() for f in key.iterdir() if f.is_dir()]
    sizes = {f: _folder_bytes(f) for f in folders}
    total = sum(sizes.values())
    removed = []
    for folder in sorted(folders, key=_last_used):
        if total <= limit:
            break
        try:
            fh = open(folder / ".lock", "a+b")
        except OSError:
            continue
        with fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a build holds it
            shutil.rmtree(folder, ignore_errors=True)
        total -= sizes[folder]
        removed.append(folder)
    return removed
