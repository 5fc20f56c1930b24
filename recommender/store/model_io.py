"""The model folder: plain data on disk, written atomically, checked on load.

The files of a model folder and its format versions: :func:`write_model`.

Nothing here unpickles: arrays load with ``allow_pickle=False`` after their checksum
matched, JSON with the standard parser; the neighbour index reaches faiss only after its
checksum matched. A model folder cannot run code.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from recommender.checksums import sha256_of
from recommender.errors import ModelError, disk_full
from recommender.mapped import chunks

FORMAT_NAME = "hashtag-recommender-model"
FORMAT_VERSION = 3
MANIFEST = "manifest.json"
MANIFEST_DIGEST = "manifest.sha256"  # from format version 3
ARRAYS = "arrays.npz"
FEATURES = "features.npy"
INDEX = "index.json"
THUMBNAILS = "thumbnails.bin"
THUMBNAILS_V1 = "thumbnails.npz"  # format version 1
NEIGHBOURS = "neighbours.faiss"  # optional
DATA_FILES = (ARRAYS, FEATURES, INDEX, THUMBNAILS)
THUMB_OFFSETS = "thumbnail_offsets"  # the key in arrays.npz
_CHUNK_ROWS = 65536  # feature rows per write
WEIGHTS_DIRS_ENV = "HASHTAG_WEIGHTS_DIRS"

# Every key a manifest may hold, with its JSON type. A key this program does not know (a
# renamed one, a flipped byte) is refused: read as a default, a renamed hedging key once
# turned off the hedging without a word.
MANIFEST_KEYS: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "format_version": int,
    "files": dict,
    "config": dict,
    "counts": dict,
    "categories": list,
    "single_tag_categories": list,
    "neighbours": dict,
    "created": str,
    "library_version": str,
    "dataset": dict,
    "backbone": dict,
    "engine": dict,
    "fit_timings": dict,
    "timings": dict,
    "evaluation": dict,
    "hedge_calibration": (dict, type(None)),
}
# What a version 3 manifest must hold (older ones may lack all but the first four).
REQUIRED_KEYS = ("format", "format_version", "files", "config", "counts", "categories")
REQUIRED_KEYS_V3 = (*REQUIRED_KEYS, "single_tag_categories", "neighbours")
REQUIRED_CONFIG_KEYS = ("backbone", "weights", "method")  # what loading reads from config
CONFIG_KEYS: dict[str, type | tuple[type, ...]] = {
    "backbone": str,
    "weights": (str, type(None)),
    "als": dict,
    "method": (str, dict),
    "thumb_size": int,
    "batch_size": int,
    "workers": int,
}


def _rebuild_hint(path: Path) -> str:
    return f"Rebuild it: python -m recommender build <your data set> --out {path}"


def _check_plain(arrays: dict[str, np.ndarray]) -> None:
    for name, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise TypeError(f"array {name!r} has dtype object; model files hold plain data only")


def _write_npz(folder: Path, name: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """``np.savez`` straight into ``folder/name`` (numpy writes each array in 16 MB blocks:
    no copy of the whole archive in memory), fsynced; its sha256 and size, read back."""
    _check_plain(arrays)
    with open(folder / name, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]  # (numpy's stub: as if allow_pickle)
        fh.flush()
        os.fsync(fh.fileno())
    with open(folder / name, "rb") as back:
        sha256, size = sha256_of(back)
    return {"sha256": sha256, "bytes": size}


def _write_json(folder: Path, name: str, value: Any) -> dict[str, Any]:
    """``value`` as JSON into ``folder/name``, encoded piece by piece (no whole string)."""
    pieces = json.JSONEncoder(ensure_ascii=False).iterencode(value)
    return _write_stream(folder, name, _batched(piece.encode("utf-8") for piece in pieces))


def _batched(pieces: Iterable[bytes], size: int = 1 << 20) -> Iterable[bytes]:
    """``pieces`` joined into blocks of about ``size`` bytes (the JSON encoder yields tiny
    pieces: hashing and writing each alone would be slow)."""
    pending: list[bytes] = []
    held = 0
    for piece in pieces:
        pending.append(piece)
        held += len(piece)
        if held >= size:
            yield b"".join(pending)
            pending, held = [], 0
    if pending:
        yield b"".join(pending)


def _write_stream(folder: Path, name: str, chunks) -> dict[str, Any]:
    """Write an iterable of byte chunks to ``folder/name``, fsynced; its sha256 and size."""
    digest = hashlib.sha256()
    size = 0
    with open(folder / name, "wb") as fh:
        for chunk in chunks:
            digest.update(chunk)
            fh.write(chunk)
            size += len(chunk)
        fh.flush()
        os.fsync(fh.fileno())
    return {"sha256": digest.hexdigest(), "bytes": size}


def _npy_chunks(array: np.ndarray):
    """The bytes of ``array`` as a ``.npy`` file, a block of rows at a time (no full copy)."""
    if array.dtype.hasobject:
        raise TypeError("features have dtype object; model files hold plain data only")
    header = io.BytesIO()
    np.lib.format.write_array_header_2_0(
        header,
        {
            "descr": np.lib.format.dtype_to_descr(array.dtype),
            "fortran_order": False,
            "shape": tuple(array.shape),
        },
    )
    yield header.getvalue()
    for _start, _stop, block in chunks(array, size=_CHUNK_ROWS, dtype=None):
        yield block.tobytes()


def output_problem(path: str | Path) -> str | None:
    """Why a model must not be written to ``path``, or None when it may.

    A model may go only where nothing of anyone else's would be lost: a missing or empty
    folder, or a folder that is this project's model (its manifest names this format and
    every other entry is a file that manifest lists). A web app's ``manifest.json`` beside
    someone's files is not a model. A folder that another build swaps while it is looked at
    is looked at again (a save racing a save is not refused).
    """
    path = Path(path).absolute()
    for _attempt in range(50):
        # The folder looked at is held open, so that its inode cannot be freed and given to
        # the next build's folder while it is looked at: a folder moved aside and deleted
        # mid-listing (it looks like someone else's) must not pass for the one still there.
        try:
            held = os.open(path, os.O_RDONLY)
        except OSError:
            held = None
        try:
            before = None if held is None else _stat_id(os.fstat(held))
            problem = _output_problem_once(path)
            after = _folder_id(path)
        finally:
            if held is not None:
                os.close(held)
        if problem is None or (before is not None and after == before):
            return problem  # (nothing held: whatever was looked at came and went)
        time.sleep(0.001)
    return problem


def _output_problem_once(path: Path) -> str | None:
    if not path.exists():
        return None
    if not path.is_dir():
        return f"{path} exists and is not a folder; choose another output path."
    refuse = (
        f"{path} is not empty and is not a hashtag recommender model folder "
        "({}); refusing to write there, since that would delete its files. "
        "Choose a new or empty folder for the model."
    )
    try:
        entries = {e.name for e in path.iterdir()}
    except FileNotFoundError:
        return None  # gone while listed: a swap, or nothing there any more
    except OSError as exc:
        return f"{path} cannot be listed ({exc.strerror}); choose another output path."
    if not entries:
        return None
    if MANIFEST not in entries:
        return refuse.format(f"no {MANIFEST}")
    try:
        manifest = read_manifest(path)
    except ModelError:
        return refuse.format(f"its {MANIFEST} is not this project's")
    others = sorted(entries - {MANIFEST, MANIFEST_DIGEST} - set(manifest["files"]))
    if others:
        return refuse.format(f"it also holds {others[0]!r}, which no model writes")
    return None


def check_output(path: str | Path) -> None:
    """Raise :class:`ModelError` when a model must not be written to ``path``."""
    problem = output_problem(path)
    if problem:
        raise ModelError(problem)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sibling_pid(path: Path, sibling: Path, kind: str) -> int | None:
    pid = sibling.name[len(f".{path.name}.{kind}-") :].split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def restore_swapped_out(path: str | Path) -> bool:
    """Put back a model that a build killed between the two renames of its swap left aside.

    :func:`write_model` moves the old model to ``.NAME.old-PID-*/model`` and then its new
    folder to ``path``; a crash between the two leaves nothing at ``path``. When ``path`` is
    missing and the build that moved the old copy is gone, the newest such copy is renamed
    back. Returns True if one was.
    """
    path = Path(path).absolute()
    if path.exists() or path.is_symlink():
        return False
    copies = []
    for sibling in path.parent.glob(f".{path.name}.old-*"):
        pid = _sibling_pid(path, sibling, "old")
        if pid is not None and not _pid_alive(pid) and (sibling / "model").is_dir():
            with contextlib.suppress(OSError):
                copies.append(((sibling / "model").stat().st_mtime, sibling))
    for _mtime, sibling in sorted(copies, reverse=True):
        try:
            os.rename(sibling / "model", path)
        except OSError:
            continue  # another process restored it first, or the folder is read-only
        shutil.rmtree(sibling, ignore_errors=True)
        return True
    return False


def _remove_stale_siblings(path: Path) -> None:
    """Remove what builds killed half-way left beside ``path`` (their process is gone),
    after putting back a model a killed swap left aside (:func:`restore_swapped_out`)."""
    restore_swapped_out(path)
    if not path.exists():
        return  # no model to fall back on: keep any copy rather than delete it
    for kind in ("tmp", "old"):
        for leftover in path.parent.glob(f".{path.name}.{kind}-*"):
            pid = _sibling_pid(path, leftover, kind)
            if pid is not None and not _pid_alive(pid):
                shutil.rmtree(leftover, ignore_errors=True)


def write_model(
    path: str | Path,
    manifest: dict[str, Any],
    arrays: dict[str, np.ndarray],
    index: dict[str, Any],
    thumbnails: Iterable[bytes | memoryview],
    neighbours: bytes | None = None,
) -> Path:
    """Write a model folder atomically.

    Layout of a model folder (format version 3)::

        manifest.json    format name and version, how and from what it was built, and the
                         sha256 and size of every other file
        manifest.sha256  the sha256 of manifest.json itself (``sha256sum -c`` reads it)
        arrays.npz       numeric arrays (factors, sparse tag lists, the prior, thumbnail
                         offsets; see recommender.store.arrays), no object arrays
        features.npy     the training images' features, (N, d) float32 or float16: written
                         chunk by chunk, memory-mapped on load
        index.json       hashtags and the training images (relative path, post id, hashtags)
        thumbnails.bin   small JPEG thumbnails of the training images, concatenated (offsets in
                         arrays.npz under "thumbnail_offsets"): streamed in, memory-mapped on load
        neighbours.faiss only for large models: the approximate neighbour index, faiss' own
                         serialisation (its parameters are in the manifest under "neighbours")

    Version 1 folders (features inside arrays.npz, thumbnails.npz) and version 2 folders
    (no manifest.sha256: their manifest is checked by its format version and schema only)
    still load. On load the manifest's keys are checked against :data:`MANIFEST_KEYS`: an
    unknown or (from version 3 on) missing key is a :class:`ModelError`, never a silent
    default. Weights named in ``config.weights`` must sit in the model folder or an installed
    package, or in a folder the user lists in ``$HASHTAG_WEIGHTS_DIRS``.

    ``arrays`` must hold ``"features"`` (written to its own file, chunk by chunk: it may be
    a memory map); ``thumbnails`` is an iterable of JPEG byte strings, one per image,
    streamed into the folder. ``neighbours`` are the bytes of an approximate neighbour
    index, if the model has one.

    The files go to a temporary sibling folder first; only a complete folder replaces
    ``path``. A build that dies half-way leaves any previous model at ``path`` untouched.
    ``path`` must not exist, be empty, or already be a model folder.
    """
    path = Path(path).absolute()
    restore_swapped_out(path)
    check_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = dict(arrays)
    features = arrays.pop("features")

    _remove_stale_siblings(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    try:
        lengths: list[int] = []

        def thumbs():
            for t in thumbnails:
                lengths.append(len(t))
                yield t

        files = {
            FEATURES: _write_stream(tmp, FEATURES, _npy_chunks(np.asarray(features))),
            THUMBNAILS: _write_stream(tmp, THUMBNAILS, thumbs()),
        }
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(lengths, dtype=np.int64)
        arrays[THUMB_OFFSETS] = offsets
        files[ARRAYS] = _write_npz(tmp, ARRAYS, arrays)
        files[INDEX] = _write_json(tmp, INDEX, index)
        if neighbours is not None:
            files[NEIGHBOURS] = _write_stream(tmp, NEIGHBOURS, (neighbours,))
        own = ("format", "format_version", "files")  # this writer's, not the caller's
        full = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION}
        full.update({k: v for k, v in manifest.items() if k not in own})
        full["files"] = files
        problem = manifest_problem(full)
        if problem:
            raise ValueError(f"the manifest to write is not this format's: {problem}")
        manifest_bytes = json.dumps(full, indent=2, ensure_ascii=False).encode()
        _write_stream(tmp, MANIFEST, (manifest_bytes,))
        _write_stream(tmp, MANIFEST_DIGEST, (_digest_line(manifest_bytes),))
        os.chmod(tmp, 0o755)
        _swap_in(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        needed = (
            np.asarray(features).nbytes
            + sum(np.asarray(a).nbytes for a in arrays.values())
            + sum(lengths)
            + len(neighbours or b"")
        )
        disk_error = disk_full(
            exc,
            path.parent,
            needed,
            "Free some space or choose another output folder (--out); any earlier model "
            f"at {path} is intact.",
        )
        if disk_error is not None:
            raise disk_error from None
        raise
    return path


def _digest_line(manifest_bytes: bytes) -> bytes:
    return f"{hashlib.sha256(manifest_bytes).hexdigest()}  {MANIFEST}\n".encode()


def _swap_in(tmp: Path, path: Path) -> None:
    """Move the finished folder ``tmp`` to ``path``, the model there (if any) aside first.

    Builds saving to one folder at once may each find ``path`` gone (another moved it
    aside) or filled again (another's model arrived between our two renames): each then
    tries again, and the last to arrive wins. Every copy set aside is removed at the end.
    """
    set_aside: list[Path] = []
    try:
        for _attempt in range(1000):
            if path.exists():
                old = Path(
                    tempfile.mkdtemp(prefix=f".{path.name}.old-{os.getpid()}-", dir=path.parent)
                )
                set_aside.append(old)
                with contextlib.suppress(FileNotFoundError):  # another build moved it first
                    os.rename(path, old / "model")
            try:
                os.rename(tmp, path)
                break
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                # another build's model arrived between our two renames: set it aside too
        else:
            raise ModelError(f"{path} kept changing while this model was saved; save it again.")
    except BaseException:
        # Never leave nothing at ``path`` when a copy is set aside: put the newest back.
        for old in reversed(set_aside):
            if path.exists():
                break
            with contextlib.suppress(OSError):
                os.rename(old / "model", path)
        for old in set_aside:
            if not (old / "model").exists() or path.exists():
                shutil.rmtree(old, ignore_errors=True)
        raise
    for old in set_aside:
        shutil.rmtree(old, ignore_errors=True)


def _expected_sha256(path: Path, name: str, entry: Any) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        raise ModelError(
            f"The manifest of {path} has no checksum for {name}. {_rebuild_hint(path)}"
        )
    return entry["sha256"]


def _open_checked(path: Path, name: str, entry: Any) -> BinaryIO:
    """Open ``path/name`` and check its sha256 by reading that open file (a block at a time,
    never all in memory); return it rewound.

    Whatever the caller then reads or memory-maps from the returned file is the file that
    was checked: a build that swaps the folder in between cannot slip its own in.
    """
    expected = _expected_sha256(path, name, entry)
    file = path / name
    try:
        fh = open(file, "rb")
    except FileNotFoundError:
        raise ModelError(f"The model {path} is missing {name}. {_rebuild_hint(path)}") from None
    except OSError as exc:
        raise ModelError(f"Cannot read {file}: {exc.strerror}. {_rebuild_hint(path)}") from None
    try:
        if sha256_of(fh)[0] != expected:
            raise ModelError(
                f"{name} in {path} is damaged (checksum mismatch: truncated or modified). "
                f"{_rebuild_hint(path)}"
            )
        fh.seek(0)
    except OSError as exc:
        fh.close()
        raise ModelError(f"Cannot read {file}: {exc.strerror}. {_rebuild_hint(path)}") from None
    except BaseException:
        fh.close()
        raise
    return fh


def _read_checked(path: Path, name: str, entry: Any) -> bytes:
    with _open_checked(path, name, entry) as fh:
        try:
            return fh.read()
        except OSError as exc:
            raise ModelError(
                f"Cannot read {path / name}: {exc.strerror}. {_rebuild_hint(path)}"
            ) from None


def _map_npy(fh: BinaryIO) -> np.ndarray:
    """Memory-map the ``.npy`` array in an open file (``np.load(mmap_mode=)`` takes only a
    path, which a swap could point at another file). Object arrays are refused."""
    version = np.lib.format.read_magic(fh)
    read_header = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }.get(version)
    if read_header is None:
        raise ValueError(f".npy format version {version} is not one this program writes")
    shape, fortran, dtype = read_header(fh)
    if dtype.hasobject:
        raise ValueError("an object array cannot be memory-mapped")
    if not shape or 0 in shape:
        return np.zeros(shape, dtype)
    return np.memmap(
        fh, dtype, mode="r", offset=fh.tell(), shape=shape, order="F" if fortran else "C"
    )


def _load_npz(path: Path, name: str, data: bytes) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except Exception as exc:  # any parse failure of a checksummed file is a damaged model
        raise ModelError(
            f"{name} in {path} cannot be read ({exc}). {_rebuild_hint(path)}"
        ) from None


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and check ``manifest.json`` of a model folder (not the data files): its format
    and version, its own checksum (``manifest.sha256``, from version 3 on), its keys and
    the weights it names."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(
            f"No model folder at {path}. Build one: "
            f"python -m recommender build <your data set> --out {path}"
        )
    try:
        raw = (path / MANIFEST).read_bytes()
        manifest = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ModelError(
            f"{path} has no {MANIFEST}: it is not a model folder. {_rebuild_hint(path)}"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(
            f"{MANIFEST} in {path} is not valid JSON ({exc}). {_rebuild_hint(path)}"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ModelError(f"{path} is not a hashtag recommender model. {_rebuild_hint(path)}")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelError(f"{MANIFEST} in {path} has no format version. {_rebuild_hint(path)}")
    if version > FORMAT_VERSION:
        raise ModelError(
            f"The model {path} has format version {version}, newer than this program reads "
            f"({FORMAT_VERSION}). Upgrade the recommender, or {_rebuild_hint(path).lower()}"
        )
    if version < 1:
        raise ModelError(
            f"The model {path} has an unknown format version {version}. {_rebuild_hint(path)}"
        )
    _check_manifest_digest(path, raw, version)
    problem = manifest_problem(manifest)
    if problem:
        raise ModelError(f"{MANIFEST} in {path} is damaged: {problem}. {_rebuild_hint(path)}")
    weights = weights_problem(manifest, path)
    if weights:
        raise ModelError(weights)
    return manifest


def _check_manifest_digest(path: Path, raw: bytes, version: int) -> None:
    """The manifest's own checksum: required from version 3 on, checked whenever present
    (so a flipped version number cannot skip it)."""
    try:
        line = (path / MANIFEST_DIGEST).read_bytes()
    except FileNotFoundError:
        if version >= 3:
            raise ModelError(
                f"The model {path} is missing {MANIFEST_DIGEST}. {_rebuild_hint(path)}"
            ) from None
        return
    except OSError as exc:
        raise ModelError(
            f"Cannot read {path / MANIFEST_DIGEST}: {exc.strerror}. {_rebuild_hint(path)}"
        ) from None
    if line != _digest_line(raw):
        raise ModelError(
            f"{MANIFEST} in {path} is damaged (its checksum in {MANIFEST_DIGEST} does not "
            f"match: truncated or modified). {_rebuild_hint(path)}"
        )


def _type_problem(where: str, value: Any, kind: type | tuple[type, ...]) -> str | None:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return f"{where} is {value!r}"
    if not isinstance(value, kinds):
        return f"{where} is a {type(value).__name__}"
    return None


def manifest_problem(manifest: dict[str, Any]) -> str | None:
    """What is wrong with the keys of a manifest (:data:`MANIFEST_KEYS`), or None."""
    unknown = sorted(set(manifest) - set(MANIFEST_KEYS))
    if unknown:
        return f"it holds the unknown key {unknown[0]!r}"
    version = manifest.get("format_version")
    required = REQUIRED_KEYS_V3 if isinstance(version, int) and version >= 3 else REQUIRED_KEYS[:4]
    missing = [key for key in required if key not in manifest]
    if missing:
        return f"it has no {missing[0]!r}"
    for key, value in manifest.items():
        problem = _type_problem(repr(key), value, MANIFEST_KEYS[key])
        if problem:
            return problem
    config = manifest["config"]
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        return f"its config holds the unknown key {unknown[0]!r}"
    if isinstance(version, int) and version >= 3:
        missing = [key for key in REQUIRED_CONFIG_KEYS if key not in config]
        if missing:
            return f"its config has no {missing[0]!r}"
    for key, value in config.items():
        problem = _type_problem(f"config {key!r}", value, CONFIG_KEYS[key])
        if problem:
            return problem
    return None


def _installed_package_dirs() -> list[Path]:
    import site
    import sysconfig

    dirs = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    dirs.update(site.getsitepackages() if hasattr(site, "getsitepackages") else ())
    dirs.add(str(Path(__file__).resolve().parent.parent))  # this package's own assets
    return [Path(d).resolve() for d in dirs if d]


def weights_problem(manifest: dict[str, Any], path: str | Path) -> str | None:
    """Why the weights file a manifest names must not be read, or None.

    A model names only the library's own weights (``"default"``, ``None``) or a file in its
    folder or in an installed package; any other path is read only when the user lists its
    folder in ``$HASHTAG_WEIGHTS_DIRS`` (separated by ``os.pathsep``).
    """
    config = manifest.get("config")
    weights = config.get("weights") if isinstance(config, dict) else None
    if weights in (None, "default", "imagenet") or not isinstance(weights, str):
        return None
    folder = Path(path).absolute()
    file = Path(os.path.expanduser(weights))
    file = (file if file.is_absolute() else folder / file).resolve()
    user = [
        Path(os.path.expanduser(d)).resolve()
        for d in os.environ.get(WEIGHTS_DIRS_ENV, "").split(os.pathsep)
        if d.strip()
    ]
    allowed = [folder.resolve(), *_installed_package_dirs(), *user]
    if any(file.is_relative_to(d) for d in allowed):
        return None
    return (
        f"The model {folder} names weights outside its folder and the installed packages "
        f"({file}); a model cannot make the page read any file. If you trust it, add that "
        f"folder to {WEIGHTS_DIRS_ENV} (e.g. {WEIGHTS_DIRS_ENV}={file.parent}), or rebuild "
        "the model."
    )


def read_model(
    path: str | Path,
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any], dict[str, np.ndarray]]:
    """Read a model folder: (manifest, arrays, index, thumbnails).

    Raises :class:`~recommender.errors.ModelError` saying what is wrong and how to rebuild.
    """
    path = Path(path)
    manifest = read_manifest(path)
    files = manifest["files"]
    arrays = _load_npz(path, ARRAYS, _read_checked(path, ARRAYS, files.get(ARRAYS)))
    raw_index = _read_checked(path, INDEX, files.get(INDEX))
    try:
        index = json.loads(raw_index.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(
            f"{INDEX} in {path} is not valid JSON ({exc}). {_rebuild_hint(path)}"
        ) from None
    if not isinstance(index, dict):
        raise ModelError(f"{INDEX} in {path} is malformed. {_rebuild_hint(path)}")
    if manifest["format_version"] == 1:
        thumbs = _load_npz(
            path, THUMBNAILS_V1, _read_checked(path, THUMBNAILS_V1, files.get(THUMBNAILS_V1))
        )
        return manifest, arrays, index, thumbs
    # Each large file is mapped from the descriptor its checksum was read from (the map
    # keeps its own reference: closing the file leaves it valid).
    with _open_checked(path, FEATURES, files.get(FEATURES)) as fh:
        try:
            arrays["features"] = _map_npy(fh)
        except Exception as exc:  # any parse failure of a checksummed file is a damaged model
            raise ModelError(
                f"{FEATURES} in {path} cannot be read ({exc}). {_rebuild_hint(path)}"
            ) from None
    offsets = arrays.pop(THUMB_OFFSETS, None)
    with _open_checked(path, THUMBNAILS, files.get(THUMBNAILS)) as fh:
        try:  # a model's arrays from one version and thumbnails from the next: a swap retries
            size = os.fstat(fh.fileno()).st_size
            if offsets is None or offsets.ndim != 1 or len(offsets) == 0 or offsets[-1] != size:
                raise ModelError(
                    f"The thumbnails of {path} are inconsistent. {_rebuild_hint(path)}"
                )
            data = np.memmap(fh, np.uint8, mode="r") if size else np.zeros(0, np.uint8)
        except OSError as exc:
            raise ModelError(
                f"Cannot read {path / THUMBNAILS}: {exc.strerror}. {_rebuild_hint(path)}"
            ) from None
    return manifest, arrays, index, {"data": data, "offsets": offsets}


def read_neighbours(path: str | Path, manifest: dict[str, Any]) -> bytes | None:
    """The checked bytes of the model's neighbour index, or None if it has none."""
    entry = manifest.get("files", {}).get(NEIGHBOURS)
    return None if entry is None else _read_checked(Path(path), NEIGHBOURS, entry)


SWAP_WAIT_SECONDS = 2.0  # at most this long for a writer's swap to put a model back
SWAP_RETRIES = 3  # a read that meets swaps is tried again at most this often


def _writer_busy(path: Path) -> bool:
    """A live build is writing or swapping a model at ``path`` (its sibling folders)."""
    for kind in ("tmp", "old"):
        for sibling in path.parent.glob(f".{path.name}.{kind}-*"):
            pid = sibling.name[len(f".{path.name}.{kind}-") :].split("-", 1)[0]
            if pid.isdigit() and _pid_alive(int(pid)):
                return True
    return False


def _manifest_bytes(path: Path) -> bytes | None:
    try:
        return (path / MANIFEST).read_bytes()
    except OSError:
        return None


def _across_a_swap(path: Path, read):
    """``read(path)``, again if it failed because a build was swapping the folder.

    :func:`write_model` replaces a model with two renames, so a reader can meet the folder
    gone for a moment, or the new model's files under the old manifest. It retries, up to
    :data:`SWAP_RETRIES` times, when the manifest or the folder itself (its inode) changed
    under it, or when a live build's sibling folders show a swap
    in progress (then it waits up to :data:`SWAP_WAIT_SECONDS` for the new folder). Any
    other problem raises :class:`~recommender.errors.ModelError` at once.
    """
    if not path.exists() and not _writer_busy(path):
        restore_swapped_out(path)
    for attempt in range(SWAP_RETRIES + 1):
        first, folder = _manifest_bytes(path), _folder_id(path)
        try:
            return read(path)
        except ModelError:
            # A swap puts a new folder in place: its manifest may read the same (the same
            # model written again), its inode does not.
            swapped = first is not None and (
                _manifest_bytes(path) not in (None, first) or _folder_id(path) != folder
            )
            if attempt == SWAP_RETRIES or (not swapped and not _writer_busy(path)):
                raise
        deadline = time.monotonic() + SWAP_WAIT_SECONDS
        while _manifest_bytes(path) is None and time.monotonic() < deadline:
            time.sleep(0.005)
    raise AssertionError("unreachable")


def _folder_id(path: Path) -> tuple[int, int] | None:
    try:
        return _stat_id(os.stat(path))
    except OSError:
        return None


def _stat_id(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def read_whole_model(
    path: str | Path,
) -> tuple[
    dict[str, Any], dict[str, np.ndarray], dict[str, Any], dict[str, np.ndarray], bytes | None
]:
    """Every file of a model folder, all of one version even while a build replaces it:
    (manifest, arrays, index, thumbnails, neighbour index bytes or None)."""

    def read(folder: Path):
        manifest, arrays, index, thumbs = read_model(folder)
        return manifest, arrays, index, thumbs, read_neighbours(folder, manifest)

    return _across_a_swap(Path(path), read)


def model_version(path: str | Path) -> str:
    """What tells one build of the model at ``path`` from another, from its manifest only
    (cheap enough to ask on every page run): its creation time and the data's checksum.

    Raises :class:`~recommender.errors.ModelError` if there is no readable model there.
    """

    def read(folder: Path) -> str:
        manifest = read_manifest(folder)
        arrays = manifest["files"].get(ARRAYS)
        digest = arrays.get("sha256") if isinstance(arrays, dict) else None
        return f"{manifest.get('created')}|{digest}"

    return _across_a_swap(Path(path), read)


def check_backbone(
    manifest: dict[str, Any], installed: dict[str, Any], path: str | Path | None
) -> None:
    """Refuse a model whose features came from other weights or preprocessing.

    ``installed`` is the installed backbone's ``fingerprint()``. Models that did not record
    ``weights_sha256`` / ``preprocessing`` (built before they were) are accepted.
    """
    recorded = manifest.get("backbone")
    if not isinstance(recorded, dict):
        return
    for key, what in (("weights_sha256", "weights sha256"), ("preprocessing", "preprocessing")):
        saved, now = recorded.get(key), installed.get(key)
        if saved is not None and saved != now:
            raise ModelError(
                f"The model {path or ''} was built with {recorded.get('name')} {what} {saved}, "
                f"but the installed backbone has {now}: its features would not match new "
                f"photos. {_rebuild_hint(Path(path) if path else Path('MODEL'))}"
            )


def folder_size(path: str | Path) -> int:
    """Bytes on disk of the files in a model folder."""
    return sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file())
