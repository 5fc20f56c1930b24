"""Read PyTorch ``.pth`` state dicts with numpy only, without torch and without running code.

Two layouts are understood:

* the legacy one written by ``torch.save`` before PyTorch 1.6 (and by
  ``_use_new_zipfile_serialization=False``): five back-to-back pickles (magic number,
  protocol version, system info, the state dict, the list of storage keys) followed by
  each storage's raw bytes, preceded by its element count as an int64;
* the zip one written since PyTorch 1.6: ``<name>/data.pkl`` plus one raw record
  ``<name>/data/<key>`` per storage.

Every pickle goes through :class:`_RestrictedUnpickler`, which only resolves the few
globals a state dict needs and maps them to inert stand-ins, so a hostile file cannot
make the loader import or call anything else.

A file is checked against the shapes the architecture expects before any tensor data is
read (:func:`load_state_dict`).
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from typing import Literal

import numpy as np

from recommender.archives import MemberError, read_member
from recommender.errors import BackboneError
from recommender.limits import LimitExceeded

__all__ = ["load_state_dict"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# Largest element count accepted for a tensor bigger than its storage (stride-0 broadcast).
_MAX_BROADCAST = 1 << 24

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _Inert:
    """Base of the stand-ins: a pickle may not set their state (BUILD opcode)."""

    def __setstate__(self, state: object) -> None:
        raise BackboneError("the weights file tries to modify a tensor or storage object")


@dataclass(frozen=True)
class _StorageType(_Inert):
    """Stand-in for a ``torch.*Storage`` class: only remembers the element type."""

    name: str
    dtype: np.dtype


@dataclass
class _StorageRef(_Inert):
    """A storage named by the pickle; its bytes are filled in after unpickling."""

    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _StorageView(_Inert):
    """A legacy view ``root[offset:offset + numel]`` of another storage."""

    root: _StorageRef
    offset: int
    numel: int


@dataclass(frozen=True)
class _TensorRef(_Inert):
    """A tensor waiting for its storage's bytes."""

    storage: _StorageRef | _StorageView
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _int_tuple(value: object, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise BackboneError(f"bad tensor {what} {value!r} in the weights file")
    return tuple(value)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    if not isinstance(storage, (_StorageRef, _StorageView)):
        raise BackboneError("a tensor in the weights file does not point at a storage")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise BackboneError(f"bad tensor offset {storage_offset!r} in the weights file")
    size = _int_tuple(size, "size")
    stride = _int_tuple(stride, "stride")
    if len(size) != len(stride):
        raise BackboneError("a tensor's size and stride disagree in the weights file")
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
    return _rebuild_tensor(storage, storage_offset, size, stride)


_ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    **{("torch", name): _StorageType(name, np.dtype(dt)) for name, dt in _STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals of a plain tensor state dict."""

    def __init__(
        self, file: io.BufferedIOBase, storages: dict[str, _StorageRef] | None, legacy: bool
    ) -> None:
        super().__init__(file)
        self._storages = storages
        self._legacy = legacy

    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise BackboneError(
                f"the weights file refers to {module}.{name}, which a plain state dict never "
                "does; refusing to load it (it may be malicious or not a state dict)"
            ) from None

    def persistent_load(self, pid: object) -> object:
        if self._storages is None:
            raise BackboneError("unexpected storage reference in the weights file")
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise BackboneError(f"unsupported object {pid!r:.80} in the weights file")
        if self._legacy:
            if len(pid) != 6:
                raise BackboneError("malformed storage reference in the weights file")
            _, stype, key, _location, numel, view = pid
        else:
            if len(pid) != 5:
                raise BackboneError("malformed storage reference in the weights file")
            _, stype, key, _location, numel = pid
            view = None
        if not isinstance(stype, _StorageType) or not isinstance(key, str):
            raise BackboneError("malformed storage reference in the weights file")
        if not isinstance(numel, int) or numel < 0:
            raise BackboneError(f"bad storage size {numel!r} in the weights file")
        root = self._storages.get(key)
        if root is None:
            root = self._storages[key] = _StorageRef(key, stype.dtype, numel)
        elif root.dtype != stype.dtype or root.numel != numel:
            raise BackboneError(f"storage {key} is described twice, differently")
        if view is None:
            return root
        if (
            not isinstance(view, tuple)
            or len(view) != 3
            or not all(isinstance(v, int) for v in view[1:])
        ):
            raise BackboneError("malformed storage view in the weights file")
        _view_key, offset, view_numel = view
        if offset < 0 or view_numel < 0 or offset + view_numel > numel:
            raise BackboneError("a storage view lies outside its storage in the weights file")
        return _StorageView(root, offset, view_numel)


# What a truncated or garbled pickle stream can raise while being loaded.
_DAMAGED = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    struct.error,
    OverflowError,
    MemoryError,
)


def _unpickle(
    stream: io.BytesIO, storages: dict[str, _StorageRef] | None = None, legacy: bool = True
) -> object:
    try:
        return _RestrictedUnpickler(stream, storages, legacy).load()
    except BackboneError:
        raise
    except RecursionError:
        raise BackboneError("the weights file is nested too deeply to be a state dict") from None
    except _DAMAGED as exc:
        raise BackboneError(
            f"the weights file is truncated or damaged ({type(exc).__name__}: {exc})"
        ) from None


def _materialise(tensor: _TensorRef) -> np.ndarray:
    storage = tensor.storage
    base_offset = 0
    if isinstance(storage, _StorageView):
        base_offset, limit, storage = storage.offset, storage.numel, storage.root
    else:
        limit = storage.numel
    data = storage.data
    if data is None:
        raise BackboneError(f"storage {storage.key} has no data in the weights file")
    numel = math.prod(tensor.size)
    if numel == 0:
        return np.zeros(tensor.size, dtype=data.dtype.newbyteorder("="))
    if numel > max(limit, _MAX_BROADCAST):
        raise BackboneError(f"a tensor claims more elements than storage {storage.key} holds")
    pairs = zip(tensor.size, tensor.stride, strict=True)
    last = tensor.offset + sum((n - 1) * st for n, st in pairs)
    if last >= limit:
        raise BackboneError(f"a tensor reaches past the end of storage {storage.key}")
    flat = data[base_offset + tensor.offset :]
    strides = tuple(st * data.itemsize for st in tensor.stride)
    view = np.lib.stride_tricks.as_strided(
        flat, shape=tensor.size, strides=strides, writeable=False
    )
    return np.array(view, dtype=view.dtype.newbyteorder("="), order="C", copy=True)


def _collect(obj: object) -> dict[str, np.ndarray]:
    """Turn the unpickled state dict into ``{name: array}``; unwrap one common wrapper."""
    out = {name: _materialise(ref) for name, ref in _tensors(obj).items()}
    if not out:
        raise BackboneError("the weights file holds no tensors")
    return out


# A pickle of a state dict is a few kilobytes per tensor; a zip adds a header per record.
_OVERHEAD_BYTES = 16 << 20
_PICKLE_BYTES = 64 << 20


def _tensors(obj: object) -> dict[str, _TensorRef]:
    if isinstance(obj, dict) and not any(isinstance(v, _TensorRef) for v in obj.values()):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise BackboneError(f"the weights file holds a {type(obj).__name__}, not a state dict")
    return {str(k): v for k, v in obj.items() if isinstance(v, _TensorRef)}


def _needed_bytes(expected: dict[str, tuple[int, ...]]) -> int:
    return sum(8 * max(math.prod(shape), 1) for shape in expected.values())


def _check_expected(
    obj: object, storages: dict[str, _StorageRef], expected: dict[str, tuple[int, ...]] | None
) -> None:
    """Refuse tensors whose names or shapes are not the architecture's, and storages larger
    than those tensors need, before any data is read."""
    if expected is None:
        return
    tensors = _tensors(obj)
    extra = sorted(k for k in tensors if k not in expected and "num_batches_tracked" not in k)
    if extra:
        raise BackboneError(
            f"the weights hold {len(extra)} tensors this network has no place for, "
            f"e.g. {extra[0]!r}; they are not weights for it"
        )
    for name, tensor in tensors.items():
        shape = expected.get(name)
        if shape is not None and tuple(tensor.size) != tuple(shape):
            raise BackboneError(
                f"weights for {name} have shape {tuple(tensor.size)}, the network expects "
                f"{tuple(shape)}; refused before reading their data"
            )
    declared = sum(ref.numel * ref.dtype.itemsize for ref in storages.values())
    if declared > _needed_bytes(expected) + _OVERHEAD_BYTES:
        raise BackboneError(
            f"the weights file declares {declared:,} bytes of tensor data, more than this "
            f"network's {_needed_bytes(expected):,}; refused before reading it"
        )


def _load_legacy(
    raw: bytes, expected: dict[str, tuple[int, ...]] | None = None
) -> dict[str, np.ndarray]:
    stream = io.BytesIO(raw)
    if _unpickle(stream) != _LEGACY_MAGIC:
        raise BackboneError("not a PyTorch weights file (bad magic number)")
    protocol = _unpickle(stream)
    if protocol != _LEGACY_PROTOCOL:
        raise BackboneError(f"unsupported PyTorch legacy protocol version {protocol!r}")
    sys_info = _unpickle(stream)
    little = sys_info.get("little_endian", True) if isinstance(sys_info, dict) else True
    order: Literal["<", ">"] = "<" if little else ">"
    storages: dict[str, _StorageRef] = {}
    result = _unpickle(stream, storages)
    _check_expected(result, storages, expected)
    keys = _unpickle(stream)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise BackboneError("the weights file's storage list is damaged")
    pos = stream.tell()
    for key in keys:
        ref = storages.get(key)
        if ref is None:
            raise BackboneError(f"the weights file lists an unknown storage {key}")
        if pos + 8 > len(raw):
            raise BackboneError("the weights file is truncated (storage data missing)")
        (count,) = struct.unpack_from(order + "q", raw, pos)
        pos += 8
        if count != ref.numel:
            raise BackboneError(
                f"storage {key} should hold {ref.numel} elements but the file says {count}"
            )
        dtype = ref.dtype.newbyteorder(order)
        end = pos + count * dtype.itemsize
        if end > len(raw):
            raise BackboneError("the weights file is truncated (storage data cut short)")
        ref.data = np.frombuffer(raw, dtype=dtype, count=count, offset=pos)
        pos = end
    return _collect(result)


def _load_zip(
    path: str, expected: dict[str, tuple[int, ...]] | None = None
) -> dict[str, np.ndarray]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
            if pkl is None:
                raise BackboneError("the zip weights file has no data.pkl")
            prefix = pkl[: -len("data.pkl")]
            order: Literal["<", ">"] = "<"
            if prefix + "byteorder" in names:
                text = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
                order = ">" if text == "big" else "<"
            storages: dict[str, _StorageRef] = {}
            pickled = read_member(archive, pkl, cap=_PICKLE_BYTES)
            result = _unpickle(io.BytesIO(pickled), storages, legacy=False)
            _check_expected(result, storages, expected)
            for key, ref in storages.items():
                record = prefix + "data/" + key
                if record not in names:
                    raise BackboneError(f"the zip weights file lacks storage {key}")
                dtype = ref.dtype.newbyteorder(order)
                blob = read_member(archive, record, cap=max(ref.numel * dtype.itemsize, 1))
                if len(blob) < ref.numel * dtype.itemsize:
                    raise BackboneError(f"storage {key} is cut short in the zip weights file")
                ref.data = np.frombuffer(blob, dtype=dtype, count=ref.numel)
    except (MemberError, LimitExceeded) as exc:
        raise BackboneError(f"the zip weights file cannot be read: {exc}") from None
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        OSError,
        ValueError,
        RuntimeError,
        NotImplementedError,
    ) as exc:
        raise BackboneError(f"the zip weights file is damaged ({exc})") from None
    return _collect(result)


def load_state_dict(
    path: str | os.PathLike[str], expected: dict[str, tuple[int, ...]] | None = None
) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict saved with ``torch.save``, without torch.

    Each storage record is read up to its own size only, after the checks against
    ``expected``: a file declaring 200 tensors of 128 MB costs the few kilobytes of its pickle.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.pth``/``.pt`` file in the legacy (pre-1.6) or the zip layout.
    expected : dict of str to shape, optional
        Every tensor the architecture has, by name, with its shape (PyTorch's layout).
        The file is then refused before its tensor data is read when it is larger than
        these need or declares other names, shapes or larger storages.

    Returns
    -------
    dict of str to numpy.ndarray
        Every tensor of the state dict, in file order, as a C-contiguous array in native
        byte order (``float32`` for float weights, ``int64`` for counters).

    Raises
    ------
    BackboneError
        The file cannot be read, is truncated or damaged, is not a tensor state dict, or
        refers to anything beyond tensors and ordered dicts (which could run code).
    """
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if expected is not None and size > _needed_bytes(expected) + _OVERHEAD_BYTES:
                raise BackboneError(
                    f"weights file {os.fspath(path)!r} holds {size:,} bytes, more than this "
                    f"network's {_needed_bytes(expected):,} bytes of weights; refused unread"
                )
            if fh.read(4) == b"PK\x03\x04":
                return _load_zip(os.fspath(path), expected)
            fh.seek(0)
            raw = fh.read()
    except OSError as exc:
        raise BackboneError(f"cannot read weights file {os.fspath(path)!r}: {exc}") from None
    if not raw:
        raise BackboneError(f"weights file {os.fspath(path)!r} is empty")
    return _load_legacy(raw, expected)
