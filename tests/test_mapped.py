"""Chunked reads of read-only memory maps let their pages go (recommender.mapped)."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.mapped import chunks, release


def _resident_kb(path) -> int:
    """Resident kB of this process' mappings of ``path`` (from /proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as fh:
        for line in fh:
            first = line.split(maxsplit=1)[0]
            if "-" in first and not first.endswith(":"):  # a mapping's header line
                inside = line.rstrip().endswith(str(path))
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total


@pytest.fixture
def mapped(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((40_000, 64)).astype(np.float16)  # 5 MB
    path = tmp_path / "features.npy"
    np.save(path, data)
    return data, path, np.load(path, mmap_mode="r")


def test_chunks_give_every_row_in_order_as_float32(mapped):
    data, _path, features = mapped
    got = [(start, stop, block) for start, stop, block in chunks(features, size=3000)]
    assert [s for s, _, _ in got] == list(range(0, 40_000, 3000))
    assert all(b.dtype == np.float32 and b.flags.c_contiguous for _, _, b in got)
    np.testing.assert_array_equal(np.concatenate([b for _, _, b in got]), data)


def test_chunks_follow_rows_and_keep_the_dtype_when_asked(mapped):
    data, _path, features = mapped
    rows = np.array([5, 39_999, 0, 17, 17, 20_000])
    blocks = [b for _, _, b in chunks(features, rows, size=4, dtype=None)]
    assert [len(b) for b in blocks] == [4, 2]
    assert blocks[0].dtype == np.float16
    np.testing.assert_array_equal(np.concatenate(blocks), data[rows])


def test_a_pass_leaves_the_map_s_pages_out_of_the_resident_set(mapped):
    data, path, features = mapped
    np.asarray(features).sum()  # a plain pass: every page resident
    assert _resident_kb(path) > 4000
    assert release(features)
    assert _resident_kb(path) < 100
    total = sum(float(b.sum()) for _, _, b in chunks(features, size=4096))
    assert _resident_kb(path) < 100  # the chunked pass touched them all, and let them go
    assert total == pytest.approx(float(data.astype(np.float32).sum()), rel=1e-4)
    np.testing.assert_array_equal(features[123], data[123])  # the data is still there


def test_only_read_only_maps_are_released(tmp_path, mapped):
    _data, path, _features = mapped
    copy_on_write = np.load(path, mmap_mode="c")
    copy_on_write[0, 0] = 7.0
    assert not release(copy_on_write)
    assert copy_on_write[0, 0] == 7.0  # the change survives: nothing was dropped
    assert not release(np.zeros((3, 3), np.float32))
