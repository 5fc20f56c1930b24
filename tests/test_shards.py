"""Feature shards: atomic, checksummed, memory-mapped, and never used when damaged."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from recommender.errors import DiskFullError
from recommender.features.shards import Shard, ShardError, ShardStore


def _hashes(n: int, salt: str = "") -> list[str]:
    return [hashlib.sha256(f"{salt}{i}".encode()).hexdigest() for i in range(n)]


def _write(store: ShardStore, number: int, n: int = 5, d: int = 4, **extra) -> np.ndarray:
    feats = np.random.default_rng(number).standard_normal((n, d)).astype(np.float32)
    thumbs = [bytes([i]) * (i + 1) for i in range(n)]
    store.write_shard(number, _hashes(n, str(number)), feats, thumbs, meta={"n": n}, **extra)
    return feats


def test_a_shard_round_trips_memory_mapped_as_float16(tmp_path):
    store = ShardStore(tmp_path / "s", "key-a")
    top5 = np.arange(25, dtype=np.int16).reshape(5, 5)
    feats = _write(store, 3, top5=top5)
    shard = store.read_shard(3)
    assert isinstance(shard, Shard) and len(shard) == 5
    assert shard.features.dtype == np.float16 and isinstance(shard.features, np.memmap)
    np.testing.assert_array_equal(shard.features, feats.astype(np.float16))
    np.testing.assert_array_equal(shard.read_features(), shard.features)
    assert shard.hashes == _hashes(5, "3")
    assert [shard.thumbnail(i) for i in range(5)] == [bytes([i]) * (i + 1) for i in range(5)]
    np.testing.assert_array_equal(shard.extra["top5"], top5)
    assert shard.meta == {"n": 5}
    assert store.shards() == [3] and store.count(3) == 5


def test_an_empty_shard_is_a_shard(tmp_path):
    store = ShardStore(tmp_path, "k")
    store.write_shard(0, [], np.zeros((0, 7)))
    shard = store.read_shard(0)
    assert len(shard) == 0 and shard.features.shape == (0, 7)


def test_rewriting_a_shard_replaces_it_and_removes_the_old_data(tmp_path):
    store = ShardStore(tmp_path, "k")
    _write(store, 0, n=5)
    _write(store, 0, n=2)
    assert len(store.read_shard(0)) == 2
    assert len(list(tmp_path.glob("000000-*.bin"))) == 1


@pytest.mark.parametrize("damage", ["truncate", "flip", "record", "delete"])
def test_a_damaged_shard_reads_as_missing(tmp_path, damage):
    store = ShardStore(tmp_path, "k")
    _write(store, 0)
    _write(store, 1)
    data = next(tmp_path.glob("000001-*.bin"))
    if damage == "truncate":
        data.write_bytes(data.read_bytes()[:-10])
    elif damage == "flip":
        raw = bytearray(data.read_bytes())
        raw[-70] ^= 0xFF
        data.write_bytes(bytes(raw))
    elif damage == "record":
        (tmp_path / "000001.json").write_text("{not json")
    else:
        data.unlink()
    assert store.read_shard(1) is None
    assert store.read_shard(0) is not None  # the other shard is untouched


def test_a_shard_of_another_key_is_not_used(tmp_path):
    _write(ShardStore(tmp_path, "weights-a"), 0)
    other = ShardStore(tmp_path, "weights-b")
    assert other.read_shard(0) is None and other.shards() == []


def test_a_failed_write_leaves_the_committed_shards_intact(tmp_path, monkeypatch):
    store = ShardStore(tmp_path, "k")
    before = _write(store, 0)
    record = (tmp_path / "000000.json").read_bytes()

    def full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("recommender.features.shards.os.fsync", full)
    # A full disk is one line naming the folder and the space needed (issue 25).
    with pytest.raises(DiskFullError, match=f"no space left on the disk of {tmp_path}: .* kB"):
        _write(store, 0, n=3)
    with pytest.raises(DiskFullError):
        _write(store, 1)
    assert (tmp_path / "000000.json").read_bytes() == record
    np.testing.assert_array_equal(store.read_shard(0).features, before.astype(np.float16))
    assert store.shards() == [0] and not list(tmp_path.glob(".*tmp"))
    assert len(list(tmp_path.glob("*.bin"))) == 1


def test_a_record_that_cannot_be_written_takes_its_new_data_file_away(tmp_path, monkeypatch):
    store = ShardStore(tmp_path, "k")
    _write(store, 0)
    calls = []

    def second_fsync_fails(fd):
        calls.append(fd)
        if len(calls) == 2:  # the data file went through; its record does not
            raise OSError(28, "No space left on device")

    monkeypatch.setattr("recommender.features.shards.os.fsync", second_fsync_fails)
    with pytest.raises(DiskFullError):
        _write(store, 0, n=3)
    assert len(list(tmp_path.glob("*.bin"))) == 1 and len(store.read_shard(0)) == 5


def test_bad_arrays_are_refused_with_a_clear_error(tmp_path):
    store = ShardStore(tmp_path, "k")
    with pytest.raises(ShardError, match="hex"):
        store.write_shard(0, ["xyz"], np.zeros((1, 2)))
    with pytest.raises(ShardError, match=r"\(2, d\)"):
        store.write_shard(0, _hashes(2), np.zeros((3, 2)))
    with pytest.raises(ShardError, match="rows"):
        store.write_shard(0, _hashes(2), np.zeros((2, 2)), top5=np.zeros(3))
    with pytest.raises(ShardError, match="cannot name"):
        store.write_shard(0, _hashes(2), np.zeros((2, 2)), thumb_data=np.zeros(2))
    assert store.shards() == []


def test_the_record_carries_the_checksum_of_the_data(tmp_path):
    store = ShardStore(tmp_path, "k")
    _write(store, 0)
    record = json.loads((tmp_path / "000000.json").read_text())
    data = tmp_path / record["file"]
    assert hashlib.sha256(data.read_bytes()).hexdigest() == record["sha256"]
    assert record["sha256"].startswith(data.name.split("-")[1][:16])


def test_sweep_deletes_only_the_partial_files_nobody_holds(tmp_path):
    """A writer killed mid-shard leaves a temporary file, or a data file whose record it
    never committed; a live writer's files are locked and kept."""
    import fcntl
    import os

    store = ShardStore(tmp_path / "store", "k")
    rng = np.random.default_rng(0)
    kept = store.write_shard(0, [f"{i:064x}" for i in range(3)], rng.random((3, 4)), [b""] * 3)
    dead_tmp = store.folder / ".000001-0123456789abcdef.bin.abc.tmp"
    orphan = store.folder / "000001-0123456789abcdef.bin"
    live_tmp = store.folder / ".000002-0123456789abcdef.bin.xyz.tmp"
    for path in (dead_tmp, orphan, live_tmp):
        path.write_bytes(b"partial")
    held = os.open(live_tmp, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)  # a writer at work
    try:
        assert sorted(store.sweep()) == sorted([dead_tmp, orphan])
    finally:
        os.close(held)
    assert live_tmp.exists() and kept.exists() and store.read_shard(0) is not None
    assert store.sweep() == [live_tmp]  # released: its writer is gone
    assert sorted(p.name for p in store.folder.iterdir()) == sorted(["000000.json", kept.name])
