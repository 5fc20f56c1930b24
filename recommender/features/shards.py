"""Feature shards: fixed-size parts of the embed stage's output, one file each, checksummed.

Both build engines (``local`` and ``spark``, see :mod:`recommender.engines`) write and read
shards through this module only::

    store = ShardStore(folder, key)            # key: what the features depend on
    store.write_shard(0, hashes, features, thumbnails, meta={"errors": []}, class_ids=ids)
    shard = store.read_shard(0)                # None when missing or damaged
    shard.features                             # (n, d) float16, memory-mapped
    shard.read_features()                      # the same, read into memory
    shard.thumbnail(i), shard.hashes[i], shard.extra["class_ids"], shard.meta
    store.shards()                             # numbers of the committed shards

The shard format (what a shard holds, its two files, the commit) is :class:`ShardStore`'s.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recommender.checksums import sha256_file
from recommender.errors import RecommenderError, disk_full

DEFAULT_SHARD_SIZE = 10_000
# The smallest shard an engine picks by itself (the Spark engine, for its task slots): a
# task's fixed cost (a few hundred ms) stays small against its images' (~30 ms each a core).
MIN_AUTO_SHARD_SIZE = 256
SHARD_FORMAT = "hashtag-recommender-shard"
# 2: the embed stage keeps each image's top ImageNet classes. Part of the store's key
# (recommender.features.store.store_key), so shards of version 1 are left to the code that
# wrote them (and pruned in time) and re-embedded once, never mixed in.
SHARD_VERSION = 2
_MAGIC = b"HTSHARD1"
_ALIGN = 64
_CORE = ("hashes", "features", "thumb_data", "thumb_offsets")
_RECORD = re.compile(r"^(\d{6,})\.json$")
_DATA_NAME = re.compile(r"\d{6,}-[0-9a-f]{16}\.bin")


class ShardError(RecommenderError):
    """A shard cannot be written (bad arrays, or the disk refused it)."""


@dataclass
class Shard:
    """One committed, verified shard.

    ``features`` and the extra arrays are memory-mapped from the data file; thumbnails are
    read from it on demand (:meth:`thumbnail`), so streaming them maps nothing.
    """

    number: int
    path: Path
    raw_hashes: np.ndarray  # (n, 32) uint8: the sha256 digests
    features: np.ndarray  # (n, d) float16
    thumb_offsets: np.ndarray  # (n + 1,) int64, into the thumbnail bytes
    thumb_base: int = 0  # where the thumbnail bytes start in the data file
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    features_offset: int = 0  # where the features start in the data file

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def hashes(self) -> list[str]:
        """The content hashes as 64-digit lowercase hex strings."""
        return [bytes(row).hex() for row in self.raw_hashes]

    def __post_init__(self) -> None:
        # Held open: the shard stays readable even if its file is replaced or deleted.
        self._fd = os.open(self.path, os.O_RDONLY)

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    def _read(self, offset: int, size: int) -> bytes:
        data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise OSError(f"shard {self.path} was truncated while in use")
        return data

    def thumbnail(self, i: int) -> bytes:
        """The JPEG bytes of image ``i`` (``b""`` for none), read from the file."""
        start, end = int(self.thumb_offsets[i]), int(self.thumb_offsets[i + 1])
        return self._read(self.thumb_base + start, end - start) if end > start else b""

    def read_features(self) -> np.ndarray:
        """The features as a fresh in-memory float16 array (a read, not a mapping)."""
        n, d = self.features.shape
        raw = self._read(self.features_offset, n * d * 2) if n else b""
        return np.frombuffer(bytearray(raw), dtype=np.float16).reshape(n, d)


def _locked_temp(path: Path) -> tuple[int, str]:
    """A new temporary sibling of ``path``, locked (``flock``) by this process until closed:
    :meth:`ShardStore.sweep` deletes only temporary files nobody holds."""
    while True:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink:  # not swept away between its creation and the lock
            return fd, tmp
        os.close(fd)


def _atomic_write(path: Path, chunks: Sequence[bytes | memoryview], hold: bool = False):
    """Write ``chunks`` to ``path`` via a fsynced temporary sibling; return their sha256.

    ``hold``: return ``(sha256, fd)`` instead, ``fd`` still holding the lock on the file now
    at ``path`` (the caller closes it once the file is committed)."""
    digest = hashlib.sha256()
    fd, tmp = _locked_temp(path)
    try:
        with os.fdopen(os.dup(fd), "wb") as fh:
            for chunk in chunks:
                digest.update(chunk)
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        os.close(fd)
        raise
    if hold:
        return digest.hexdigest(), fd
    os.close(fd)
    return digest.hexdigest()


def _unheld(path: Path) -> int | None:
    """An open descriptor holding ``path``'s lock, or None if another process holds it (or
    the file is gone)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _raw_hashes(hashes: Sequence[str] | np.ndarray) -> np.ndarray:
    if isinstance(hashes, np.ndarray) and hashes.dtype == np.uint8:
        return np.ascontiguousarray(hashes.reshape(-1, 32))
    try:
        raw = b"".join(bytes.fromhex(h) for h in hashes)
    except (TypeError, ValueError):
        raise ShardError("shard hashes must be sha256 hex digests") from None
    if len(raw) != 32 * len(hashes):
        raise ShardError("shard hashes must be sha256 hex digests (64 hex digits)")
    return np.frombuffer(raw, np.uint8).reshape(-1, 32)


class ShardStore:
    """A folder of numbered shards whose features all depend on ``key``.

    ``key`` names what the features were computed with (backbone, weights' sha256,
    preprocessing version, thumbnail size); a shard recorded under another key is treated
    as missing. Safe for several processes at once: every write is atomic and every read
    verified.

    A shard holds ``n`` images (``DEFAULT_SHARD_SIZE`` in a build; any ``n >= 0`` here):

    - ``hashes``: the sha256 of each image file's bytes
      (:func:`recommender.vision.images.content_hash`);
    - ``features``: (n, d) float16, L2-normalised image features;
    - ``thumbnails``: n JPEG byte strings (``b""`` for none), stored concatenated + offsets;
    - any extra per-image arrays (first dimension n, plain dtypes), by name: the embed stage
      stores ``position`` (the image's place in the job) and, for a backbone with an ImageNet
      head, ``class_ids`` (n, 5) int16 and ``class_probs`` (n, 5) float16, the top classes of
      the same forward pass (:class:`recommender.vision.content.TopClasses`);
    - ``meta``: a small JSON-able dict (the embed stage records its unreadable images there).

    On disk, shard ``7`` of a store is two files::

        000007.json               the commit record: format, key, count, file name, sha256, size
        000007-<sha256[:16]>.bin  the data: magic, a JSON header of array names, dtypes, shapes
                                  and offsets, then each array raw and 64-byte aligned

    The data file is written under a temporary name, fsynced and renamed; then the JSON record
    is written the same way. Renaming the record is the commit: a process killed at any point
    leaves either the previous shard or the new one, never a mix. Data files are named by their
    content, so two processes writing the same shard at once cannot pair one's record with the
    other's data. :meth:`ShardStore.read_shard` checks the size and sha256 of the data against
    the record (and the store's key) and returns ``None`` for anything that does not match: a
    damaged shard is treated as missing (re-embedded), never used. Nothing is unpickled.
    """

    def __init__(self, folder: str | Path, key: str) -> None:
        self.folder = Path(folder)
        self.key = str(key)

    def __repr__(self) -> str:
        return f"ShardStore({str(self.folder)!r}, {self.key!r})"

    def _record_path(self, number: int) -> Path:
        return self.folder / f"{int(number):06d}.json"

    # ----------------------------------------------------------------- writing
    def write_shard(
        self,
        number: int,
        hashes: Sequence[str] | np.ndarray,
        features: np.ndarray,
        thumbnails: Sequence[bytes] | None = None,
        *,
        meta: dict[str, Any] | None = None,
        **extra: np.ndarray,
    ) -> Path:
        """Write shard ``number`` atomically, replacing any earlier one; return its data file.

        ``features`` are stored as float16; ``thumbnails`` default to none (``b""`` each);
        ``extra`` arrays must have one row per image. Raises :class:`ShardError` for arrays
        that do not fit together, :class:`~recommender.errors.DiskFullError` when the disk
        fills (naming the folder and the space needed); any other ``OSError`` from the disk
        propagates. Either way every committed shard is left as it was, and the partial
        files are removed.
        """
        if int(number) < 0:
            raise ShardError("shard numbers start at 0")
        raw = _raw_hashes(hashes)
        n = len(raw)
        feats = np.ascontiguousarray(features, dtype=np.float16)
        if feats.ndim != 2 or feats.shape[0] != n:
            raise ShardError(f"shard features must be ({n}, d), not {feats.shape}")
        thumbs = list(thumbnails) if thumbnails is not None else [b""] * n
        if len(thumbs) != n:
            raise ShardError(f"a shard needs one thumbnail per image ({len(thumbs)} for {n})")
        offsets = np.zeros(n + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(t) for t in thumbs], dtype=np.int64)
        arrays: dict[str, np.ndarray] = {
            "hashes": raw,
            "features": feats,
            "thumb_data": np.frombuffer(b"".join(thumbs), np.uint8),
            "thumb_offsets": offsets,
        }
        for name, value in extra.items():
            value = np.ascontiguousarray(value)
            if name in _CORE or not name.isidentifier():
                raise ShardError(f"{name!r} cannot name an extra shard array")
            if value.dtype.hasobject or value.ndim == 0 or value.shape[0] != n:
                raise ShardError(f"extra shard array {name!r} needs {n} rows of plain data")
            arrays[name] = value
        header: dict[str, Any] = {"key": self.key, "count": n, "arrays": {}}
        offset = 0
        for name, value in arrays.items():
            header["arrays"][name] = {
                "dtype": value.dtype.str,
                "shape": list(value.shape),
                "offset": offset,
            }
            offset += -(-value.nbytes // _ALIGN) * _ALIGN
        head = json.dumps(header).encode()
        start = -(-(len(_MAGIC) + 8 + len(head)) // _ALIGN) * _ALIGN
        chunks: list[bytes | memoryview] = [
            _MAGIC,
            len(head).to_bytes(8, "little"),
            head,
            b"\0" * (start - len(_MAGIC) - 8 - len(head)),
        ]
        for value in arrays.values():
            chunks.append(value.reshape(-1).view(np.uint8).data)
            chunks.append(b"\0" * (-value.nbytes % _ALIGN))
        self.folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        for chunk in chunks:
            digest.update(chunk)
        sha = digest.hexdigest()
        data_path = self.folder / f"{int(number):06d}-{sha[:16]}.bin"
        previous = self._record(int(number))
        try:
            self._commit(int(number), data_path, chunks, sha, n, feats, meta, previous)
        except OSError as exc:
            needed = sum(len(memoryview(chunk).cast("B")) for chunk in chunks) + 4096
            hint = "Free some space, or set HASHTAG_CACHE to a folder on a disk with room."
            full = disk_full(exc, self.folder, needed, hint)
            if full is not None:
                raise full from None
            raise
        return data_path

    def _commit(self, number, data_path, chunks, sha, n, feats, meta, previous) -> None:
        """Write the data file, then the record that commits it; a failed record write
        removes the new data file (unless the committed record already names it). The data
        file stays locked until its record is committed: not an orphan to sweep."""
        _, held = _atomic_write(data_path, chunks, hold=True)
        try:
            record = {
                "format": SHARD_FORMAT,
                "version": SHARD_VERSION,
                "key": self.key,
                "number": int(number),
                "count": n,
                "dim": int(feats.shape[1]),
                "file": data_path.name,
                "bytes": data_path.stat().st_size,
                "sha256": sha,
                "meta": meta or {},
            }
            _atomic_write(self._record_path(number), [json.dumps(record).encode()])
        except BaseException:
            if not previous or previous.get("file") != data_path.name:
                data_path.unlink(missing_ok=True)
            raise
        finally:
            os.close(held)
        if previous and previous.get("file") != data_path.name:
            (self.folder / str(previous["file"])).unlink(missing_ok=True)

    # ----------------------------------------------------------------- reading
    def _record(self, number: int) -> dict[str, Any] | None:
        try:
            record = json.loads(self._record_path(number).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if (
            not isinstance(record, dict)
            or record.get("format") != SHARD_FORMAT
            or record.get("version") != SHARD_VERSION
            or record.get("key") != self.key
            or not isinstance(record.get("file"), str)
            or "/" in record["file"]
        ):
            return None
        return record

    def shards(self) -> list[int]:
        """Numbers of the shards committed under this key, ascending (not yet verified)."""
        if not self.folder.is_dir():
            return []
        numbers = []
        for entry in os.listdir(self.folder):
            match = _RECORD.match(entry)
            if match and self._record(int(match.group(1))) is not None:
                numbers.append(int(match.group(1)))
        return sorted(numbers)

    def count(self, number: int) -> int | None:
        """Images in shard ``number`` by its record (None if not committed); no data read."""
        record = self._record(number)
        return None if record is None else int(record["count"])

    def read_shard(self, number: int, verify: bool = True) -> Shard | None:
        """Shard ``number``, memory-mapped; None if it is missing, damaged or of another key.

        ``verify`` checks the data file's sha256 against its record (reads the file once).
        """
        record = self._record(number)
        if record is None:
            return None
        path = self.folder / record["file"]
        try:
            if path.stat().st_size != record.get("bytes"):
                return None
            if verify and sha256_file(path) != record.get("sha256"):
                return None
            with open(path, "rb") as fh:
                if fh.read(len(_MAGIC)) != _MAGIC:
                    return None
                size = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(size))
            start = -(-(len(_MAGIC) + 8 + size) // _ALIGN) * _ALIGN
            arrays = {}
            for name, spec in header["arrays"].items():
                shape = tuple(int(s) for s in spec["shape"])
                dtype = np.dtype(spec["dtype"])
                if dtype.hasobject:
                    return None
                if name == "thumb_data":  # read on demand, never mapped
                    continue
                if int(np.prod(shape)) == 0:
                    arrays[name] = np.zeros(shape, dtype)
                    continue
                arrays[name] = np.memmap(
                    path, dtype=dtype, mode="r", offset=start + int(spec["offset"]), shape=shape
                )
            n = int(header["count"])
            hashes, features, offsets = (
                arrays["hashes"],
                arrays["features"],
                arrays["thumb_offsets"],
            )
            thumb_base = start + int(header["arrays"]["thumb_data"]["offset"])
            features_offset = start + int(header["arrays"]["features"]["offset"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if features.shape[0] != n or len(offsets) != n + 1 or header.get("key") != self.key:
            return None
        if features.dtype != np.float16:
            return None
        extra = {k: v for k, v in arrays.items() if k not in _CORE}
        meta = record.get("meta")
        if not isinstance(meta, dict):
            meta = {}
        try:
            return Shard(
                int(number),
                path,
                hashes,
                features,
                np.asarray(offsets),
                thumb_base,
                extra=extra,
                meta=meta,
                features_offset=features_offset,
            )
        except OSError:  # deleted since it was checked
            return None

    def remove(self, number: int) -> None:
        """Uncommit shard ``number`` and delete its files (absent: nothing happens)."""
        record = self._record(number)
        self._record_path(number).unlink(missing_ok=True)
        if record:
            (self.folder / record["file"]).unlink(missing_ok=True)

    def sweep(self) -> list[Path]:
        """Delete the partial files a killed writer left: temporary files and data files no
        record names, that no live process holds. Returns the files deleted."""
        if not self.folder.is_dir():
            return []
        named = {r.get("file") for n in self.shards() if (r := self._record(n))}
        removed = []
        for path in sorted(self.folder.iterdir()):
            partial = path.name.startswith(".") and path.name.endswith(".tmp")
            orphan = _DATA_NAME.fullmatch(path.name) and path.name not in named
            if not (partial or orphan):
                continue
            fd = _unheld(path)
            if fd is None:
                continue
            try:
                number = int(path.name[:6]) if orphan else None
                record = self._record(number) if number is not None else None
                if partial or not record or record.get("file") != path.name:
                    path.unlink(missing_ok=True)
                    removed.append(path)
            finally:
                os.close(fd)
        return removed

    def size_bytes(self) -> int:
        """Bytes on disk of every file in the store's folder."""
        if not self.folder.is_dir():
            return 0
        return sum(f.stat().st_size for f in self.folder.iterdir() if f.is_file())
