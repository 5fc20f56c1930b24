"""Reading big read-only memory maps in chunks without keeping their pages resident.

A pass over a memory-mapped file (the features: 2.5 GB at a million images) faults every
page into the process, and they stay counted in its resident set until the map is closed,
although the kernel could drop them any time: they are clean copies of the file. A build
that reads the features four times (prior, index, write) so peaks at its heap plus the
whole file. :func:`chunks` hands out row blocks and, after each, tells the kernel the
pages are no longer needed (``madvise(MADV_DONTNEED)``): they leave this process' resident
set and stay in the page cache, so reading them again costs a minor fault, not a disk read.

Only maps opened read-only (``mode="r"``) are released: on a copy-on-write map
(``mode="c"``) that would throw away changes. Arrays that are not memory maps pass through
untouched.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from typing import Any

import numpy as np

CHUNK_ROWS = 8192


def _read_only_map(array: np.ndarray) -> mmap.mmap | None:
    """The ``mmap`` behind ``array`` if it is (a view of) a read-only ``np.memmap``."""
    seen: Any = array
    while seen is not None:
        if isinstance(seen, np.memmap):
            view = getattr(seen, "_mmap", None)
            return view if seen.mode == "r" and isinstance(view, mmap.mmap) else None
        seen = getattr(seen, "base", None)
        if isinstance(seen, mmap.mmap):  # np.frombuffer over a map: its access is unknown
            return None
    return None


def release(array: np.ndarray) -> bool:
    """Drop the resident pages of the read-only memory map behind ``array``.

    Returns whether there was one. The data is unchanged: the next read faults the pages
    back in from the page cache.
    """
    return _dont_need(_read_only_map(array))


def _dont_need(mapped: mmap.mmap | None) -> bool:
    if mapped is None or not hasattr(mapped, "madvise"):
        return False
    try:
        mapped.madvise(mmap.MADV_DONTNEED)
    except (OSError, ValueError):  # a closed map, or a platform without it
        return False
    return True


def chunks(
    array: np.ndarray,
    rows: np.ndarray | None = None,
    size: int = CHUNK_ROWS,
    dtype: np.dtype | type | None = np.float32,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(start, stop, block)`` over ``array[rows]`` (all rows without ``rows``), in order.

    ``block`` is a C-contiguous array (``dtype``; the array's own with ``dtype=None``) of
    at most ``size`` rows, to be read, not written: from a read-only map it is a copy, and
    the map's pages are released after each block (see :func:`release`); from an array in
    memory it may be a view.
    """
    mapped = _read_only_map(array)
    dtype = dtype or array.dtype
    n = len(array) if rows is None else len(rows)
    for start in range(0, n, size):
        stop = min(n, start + size)
        if rows is not None:  # fancy indexing copies already
            block = np.ascontiguousarray(array[rows[start:stop]], dtype=dtype)
        elif mapped is not None:  # a slice is a view of the map: copy it out first
            block = np.array(array[start:stop], dtype=dtype, order="C")
        else:
            block = np.ascontiguousarray(array[start:stop], dtype=dtype)
        _dont_need(mapped)
        yield start, stop, block
