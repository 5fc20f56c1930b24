"""Hostile inputs of a few megabytes stay within bounds (issue 25): one test per row of the
issue's table, each at a reduced size with the bound lowered where the real size would be
slow, plus the disk-full tests.

Memory is checked with :mod:`tracemalloc` (Python objects: what each hostile input
amplified into); the real sizes, measured from outside, are in
``benchmarks/hostile_inputs.py``.
"""

from __future__ import annotations

import bz2
import collections
import errno
import io
import json
import os
import subprocess
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import flat_photos
from test_backbones import _Storage, _Tensor, _TorchPickler
from test_embed_stage import MeanColour

from recommender import archives, cli, limits
from recommender.build import embed_stage, read_stage
from recommender.config import ALSParams, BuildConfig
from recommender.data.datasets import load_dataset
from recommender.errors import BackboneError, DatasetError, DiskFullError, ImageError
from recommender.store import model_io
from recommender.vision import images, torch_weights

POSTS = "your_instagram_activity/content/posts_1.json"
GOOD_POST = {"media": [{"uri": "media/posts/1.jpg", "title": "ok #beach #sunset"}]}


def peak_mib(func, *args, **kwargs):
    """(result, peak MiB of Python allocations while ``func`` ran)."""
    tracemalloc.start()
    try:
        result = func(*args, **kwargs)
        return result, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def forge_sizes(path: Path, name: str, declared: int) -> None:
    """Make a zip's local and central headers of ``name`` declare ``declared`` bytes."""
    raw = bytearray(path.read_bytes())
    encoded = name.encode()
    for signature, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (at := raw.find(signature, start)) >= 0:
            name_at = at + (30 if signature == b"PK\x03\x04" else 46)
            if raw[name_at : name_at + len(encoded)] == encoded:
                raw[at + size_at : at + size_at + 4] = declared.to_bytes(4, "little")
            start = at + 4
    path.write_bytes(bytes(raw))


# ---------------------------------------------------------------- the bounds themselves


def test_a_bound_is_raised_by_its_variable_and_a_bad_value_is_one_line(monkeypatch):
    assert limits.RECORD.value() == 1 << 20
    monkeypatch.setenv("HASHTAG_MAX_RECORD_KB", "4")
    assert limits.RECORD.value() == 4096
    assert "HASHTAG_MAX_RECORD_KB" in limits.message("posts.csv line 3", limits.RECORD)
    monkeypatch.setenv("HASHTAG_MAX_RECORD_KB", "-1")
    with pytest.raises(limits.ConfigError, match="HASHTAG_MAX_RECORD_KB='-1'"):
        limits.RECORD.value()


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED,
                                    zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])  # fmt: skip
def test_the_bounded_member_reader_reads_what_zipfile_reads(tmp_path, method):
    path = tmp_path / "a.zip"
    payload = os.urandom(300_000) + b"text " * 50_000
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        archive.writestr("a.bin", payload)
        archive.writestr("empty", b"")
    with zipfile.ZipFile(path) as archive:
        assert archives.read_member(archive, "a.bin") == payload
        assert archives.read_member(archive, "empty") == b""


# ---------------------------------------------------------------- one test per table row


def test_parquet_built_to_decompress_into_huge_columns(tmp_path, monkeypatch):
    """One 100 kB string stored once in a dictionary page and repeated in 2,000 rows: a
    200 MB column from a file of a few kilobytes. The rows over the record bound are
    skipped and counted without ever becoming Python strings."""
    monkeypatch.setenv("HASHTAG_MAX_RECORD_KB", "64")
    big = "photos/" + "x" * 100_000 + ".jpg"
    table = pa.table(
        {"image": [big] * 2000 + [None], "hashtags": [["a1", "b2"]] * 2000 + [["ok", "fine"]]}
    )
    pq.write_table(table, tmp_path / "posts.parquet", compression="zstd")
    assert (tmp_path / "posts.parquet").stat().st_size < 50_000
    ds, peak = peak_mib(load_dataset, tmp_path / "posts.parquet")
    assert len(ds.posts) == 1 and ds.report.counts["skipped_malformed"] == 2000
    assert any("HASHTAG_MAX_RECORD_KB" in p for p in ds.report.problems)
    assert peak < 40, f"{peak:.0f} MiB of Python objects for a 200 MB hostile column"


def test_parquet_row_group_whose_column_decompresses_past_the_bound_is_skipped(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("HASHTAG_MAX_MEMBER_MB", "1")
    rows = [f"photos/{os.urandom(16).hex()}.jpg" for _ in range(60_000)]  # ~3 MB, incompressible
    table = pa.table({"image": rows + [None], "hashtags": [["a1", "b2"]] * len(rows) + [["x1"]]})
    pq.write_table(table, tmp_path / "posts.parquet", row_group_size=len(rows))
    ds = load_dataset(tmp_path / "posts.parquet")
    assert len(ds.posts) == 1 and ds.report.counts["skipped_malformed"] == len(rows)
    assert any("row group 0" in p and "HASHTAG_MAX_MEMBER_MB" in p for p in ds.report.problems)


def test_export_whose_posts_json_amplifies_is_streamed_and_stops_at_the_record_bound(
    tmp_path, monkeypatch
):
    """``[{}, {}, ...]``: 4 bytes a record, 64+ bytes a Python dict. Read item by item, the
    list never exists whole; past the record bound the load stops with one line."""
    folder = tmp_path / "export"
    (folder / "your_instagram_activity/content").mkdir(parents=True)
    (folder / "media/posts").mkdir(parents=True)
    flat_photos(folder / "media/posts", 1)
    os.rename(folder / "media/posts/00.jpg", folder / "media/posts/1.jpg")
    body = "[" + "{}, " * 60_000 + json.dumps(GOOD_POST) + "]"
    (folder / POSTS).write_text(body)
    whole, whole_peak = peak_mib(json.loads, body)
    ds, peak = peak_mib(load_dataset, folder)
    assert len(ds.posts) == 1 and ds.report.counts["records"] == 60_001
    assert peak < whole_peak / 2, f"{peak:.1f} MiB streamed, {whole_peak:.1f} MiB whole"
    monkeypatch.setenv("HASHTAG_MAX_RECORDS", "20000")
    with pytest.raises(DatasetError, match="posts_1.json entry 20000: .*HASHTAG_MAX_RECORDS"):
        load_dataset(folder)


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_export_zip_whose_members_lie_about_their_size(tmp_path, method):
    """posts_1.json declares 2 kB and holds 4 MB: refused past 2 kB, the rest goes on."""
    path = tmp_path / "instagram-someone.zip"
    body = "[" + "{}, " * 1_000_000 + "{}]"
    _whole, whole_peak = peak_mib(json.loads, body)
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        archive.writestr(POSTS, body)
        archive.writestr(POSTS.replace("_1", "_2"), json.dumps([GOOD_POST]))
        archive.writestr("media/posts/1.jpg", b"\xff\xd8 not decoded while loading")
    forge_sizes(path, POSTS, 2048)
    ds, peak = peak_mib(load_dataset, path)
    assert len(ds.posts) == 1 and ds.report.counts["unreadable_files"] == 1
    assert any("declares" in p for p in ds.report.problems)
    assert peak < whole_peak / 2, f"{peak:.1f} MiB, {whole_peak:.1f} MiB had it been read"


@pytest.mark.parametrize(
    "method, caught, counted",
    [
        (zipfile.ZIP_STORED, "HASHTAG_MAX_RECORD_KB", "skipped_malformed"),
        (zipfile.ZIP_DEFLATED, "HASHTAG_MAX_RATIO", "unreadable_files"),  # 1,000x: stops first
    ],
)
def test_export_zip_with_json_amplifying_in_python_objects(tmp_path, method, caught, counted):
    """One post whose media list is 4 MB of ``[]`` (56 bytes a list: 75 MB as objects)."""
    path = tmp_path / "instagram-someone.zip"
    hostile = '{"media": [' + "[], " * 1_000_000 + "[]]}"
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        archive.writestr(POSTS, "[" + hostile + "]")
        archive.writestr(POSTS.replace("_1", "_2"), json.dumps([GOOD_POST]))
        archive.writestr("media/posts/1.jpg", b"\xff\xd8")
    ds, peak = peak_mib(load_dataset, path)
    assert len(ds.posts) == 1 and ds.report.counts[counted] == 1
    assert any(caught in p for p in ds.report.problems)
    assert peak < 40, f"{peak:.0f} MiB"


def test_image_members_that_are_bzip2_bombs_say_why_they_fail(tmp_path, monkeypatch):
    """Every image a bzip2 member of a JPEG's first bytes and 20 MB of zeros declaring 20 kB:
    each is refused after
    20 kB, and the build's error counts the reason instead of "None of the 8 images"."""
    monkeypatch.setenv("HASHTAG_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "instagram-bombs.zip"
    bomb = bz2.compress(b"\xff\xd8\xff\xe0" + b"\0" * 20_000_000)
    entries = []
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(8):
            info = zipfile.ZipInfo(f"media/posts/{i}.jpg")
            info.compress_type = zipfile.ZIP_BZIP2
            archive.writestr(info, b"\xff\xd8\xff\xe0" + b"\0" * 20_000_000)  # a JPEG's head
            entries.append({"media": [{"uri": info.filename, "title": "#bomb #zip"}]})
        archive.writestr(POSTS, json.dumps(entries))
    for i in range(8):
        forge_sizes(path, f"media/posts/{i}.jpg", 20_000)
    assert len(bomb) < 100 and path.stat().st_size < 10_000
    with zipfile.ZipFile(path) as archive:
        with pytest.raises(ImageError, match="Over the decompression limit"):
            images.read_bytes(zipfile.Path(archive, "media/posts/0.jpg"))
    # Reading the export looks at each photo's first bytes: 4 kB, not a 20 MB bzip2 block.
    dataset, peak = peak_mib(read_stage, path)
    assert peak < 10, f"{peak:.0f} MiB to read the heads of 8 bombs"
    config = BuildConfig(als=ALSParams(factors=4, iterations=3), thumb_size=16)
    with pytest.raises(DatasetError) as caught:
        embed_stage(dataset, config, backbone=MeanColour())
    message = str(caught.value)
    assert "8 images: over the decompression limit" in message and "declares" in message


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_manifest_with_one_huge_line(tmp_path, monkeypatch, suffix):
    """One 8 MB line among good ones: that line is counted malformed, read past in chunks."""
    monkeypatch.setenv("HASHTAG_MAX_RECORD_KB", "64")
    flat_photos(tmp_path / "img", 2)
    if suffix == ".jsonl":
        good = [json.dumps({"image": f"img/0{i}.jpg", "hashtags": ["a1", "b2"]}) for i in (0, 1)]
        huge = json.dumps({"image": "img/00.jpg", "hashtags": ["x"] * 1_600_000})
        lines = [good[0], huge, good[1]]
    else:
        lines = ["image,hashtags", "img/00.jpg,#a1 #b2", "img/01.jpg," + "#x " * 2_700_000]
        lines.append("img/01.jpg,#c3 #d4")
    (tmp_path / f"posts{suffix}").write_text("\n".join(lines) + "\n")
    ds, peak = peak_mib(load_dataset, tmp_path / f"posts{suffix}")
    assert len(ds.posts) == 2 and ds.report.counts["skipped_malformed"] == 1
    assert any("line 2" in p or "line 3" in p for p in ds.report.problems)  # the huge one
    assert any("HASHTAG_MAX_RECORD_KB" in p for p in ds.report.problems)
    assert peak < 8, f"{peak:.0f} MiB for an 8 MB line"


def test_parquet_with_a_huge_hashtag_list_per_post(tmp_path, monkeypatch):
    """500 posts of 10,000 hashtags each (dictionary-encoded: a small file): each post keeps
    the first ``HASHTAG_MAX_TAGS_PER_POST``, and the cut ones are counted."""
    monkeypatch.setenv("HASHTAG_MAX_TAGS_PER_POST", "10")
    tags = [f"tag{i}" for i in range(10_000)]
    pq.write_table(pa.table({"image": [None] * 500, "hashtags": [tags] * 500}),
                   tmp_path / "posts.parquet")  # fmt: skip
    ds, peak = peak_mib(load_dataset, tmp_path / "posts.parquet")
    assert len(ds.posts) == 500 and all(len(p.hashtags) == 10 for p in ds.posts)
    assert ds.report.counts["tags_over_limit"] == 500 * (10_000 - 10)
    assert "over the per-post limit" in ds.report.summary()
    assert peak < 40, f"{peak:.0f} MiB for 5M hashtags"


def _pth_declaring(path: Path, storages: int, numel: int, shape: tuple[int, ...]) -> None:
    """A zip .pth (PyTorch's layout since 1.6, written as tests/test_backbones.py does) whose
    pickle declares ``storages`` float32 storages of ``numel`` elements, each holding a
    tensor of ``shape``, with 4 bytes of data per storage: reading it as declared would
    take ``storages * numel * 4`` bytes."""
    state = collections.OrderedDict()
    stored = []
    for i in range(storages):
        declared = np.broadcast_to(np.float32(0), (numel,))  # a size, and no memory
        stored.append(_Storage(str(i), declared))
        state[str(i)] = _Tensor(stored[-1], 0, shape, (1,) * len(shape))
    buf = io.BytesIO()
    _TorchPickler(buf, legacy=False).dump(state)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("w/data.pkl", buf.getvalue())
        for storage in stored:
            archive.writestr(f"w/data/{storage.key}", b"\0\0\0\0")


def test_pth_declaring_huge_tensors_is_refused_by_its_shapes_before_any_read(tmp_path):
    """200 tensors of 128 MB declared in a file of a few kilobytes."""
    path = tmp_path / "huge.pth"
    _pth_declaring(path, 200, 32 << 20, (32 << 20,))
    assert path.stat().st_size < 100_000
    expected = {str(i): (16,) for i in range(200)}
    result, peak = peak_mib(_refusal, path, expected)
    assert "shape" in result and peak < 5
    # Right names and shapes, but storages far larger than the shapes need.
    _pth_declaring(path, 200, 32 << 20, (16,))
    result, peak = peak_mib(_refusal, path, expected)
    assert "declares" in result and "refused before reading it" in result and peak < 5
    # A file far larger than the network's weights is refused unread (sparse: no disk used).
    with open(tmp_path / "big.pth", "wb") as fh:
        fh.truncate(1 << 30)
    assert "refused unread" in _refusal(tmp_path / "big.pth", expected)


def _refusal(path: Path, expected) -> str:
    with pytest.raises(BackboneError) as caught:
        torch_weights.load_state_dict(path, expected=expected)
    return str(caught.value)


def test_a_matching_pth_still_loads_with_its_shapes_checked(tmp_path):
    path = tmp_path / "ok.pth"
    _pth_declaring(path, 3, 1, (1,))
    state = torch_weights.load_state_dict(path, expected={str(i): (1,) for i in range(3)})
    assert sorted(state) == ["0", "1", "2"] and all(v.shape == (1,) for v in state.values())


# ---------------------------------------------------------------- a full disk


def _small_model(path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {"features": rng.standard_normal((4, 8)).astype(np.float32), "x": np.arange(5)}
    manifest = {
        "created": "first",
        "config": {"backbone": "tiny", "weights": None, "method": "knn_vote"},
        "counts": {},
        "categories": [],
        "single_tag_categories": [],
        "neighbours": {},
    }
    model_io.write_model(path, manifest, arrays, {"tags": ["a"]}, [b"j"] * 4)


def test_a_full_disk_while_writing_the_model_is_one_line_and_keeps_the_earlier_model(
    tmp_path, monkeypatch
):
    out = tmp_path / "model"
    _small_model(out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(model_io.os, "fsync", fsync)
    with pytest.raises(DiskFullError, match=f"no space left on the disk of {tmp_path}: .*--out"):
        _small_model(out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no partial folder
    assert model_io.read_manifest(out)["created"] == "first"


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MB tmpfs (skipped where mounting is not permitted)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_full_tmpfs_as_out_and_as_the_cache_is_one_line_in_the_cli(
    tiny_disk, tmp_path, monkeypatch, capsys
):
    """A real small disk: the first model fits, the second (more images) does not; the CLI
    prints one line, exits 1, and the first model is still there and loads."""
    monkeypatch.setenv("HASHTAG_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "data"
    flat_photos(data / "img", 40)
    rows = [json.dumps({"image": f"img/{i:02d}.jpg", "hashtags": ["a1", f"t{i % 4}"]})
            for i in range(40)]  # fmt: skip
    (data / "posts.jsonl").write_text("\n".join(rows[:8]) + "\n")
    out = tiny_disk / "model"
    argv = ["build", str(data), "--out", str(out), "--factors", "4", "--iterations", "2",
            "--quiet", "--thumb-size", "64"]  # fmt: skip
    assert _cli(argv, monkeypatch) == 0
    first = model_io.read_manifest(out)
    filler = tiny_disk / "filler"
    free = os.statvfs(tiny_disk).f_bavail * os.statvfs(tiny_disk).f_frsize
    filler.write_bytes(b"\0" * max(free - 8192, 0))
    (data / "posts.jsonl").write_text("\n".join(rows) + "\n")
    code = _cli(argv, monkeypatch)
    err = capsys.readouterr().err
    assert code == cli.EXIT_ERROR and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and f"no space left on the disk of {tiny_disk}" in lines[0], err
    assert model_io.read_manifest(out) == first
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler", "model"]
    # The feature cache on the full disk: one line too.
    filler.unlink()
    monkeypatch.setenv("HASHTAG_CACHE", str(tiny_disk / "cache"))
    (tiny_disk / "filler").write_bytes(b"\0" * (os.statvfs(tiny_disk).f_bavail * 4096 - 4096))
    code = _cli(argv[:3] + [str(tmp_path / "model2")] + argv[4:], monkeypatch)
    err = capsys.readouterr().err
    assert code == cli.EXIT_ERROR and "Traceback" not in err
    assert "no space left on the disk of" in err and "HASHTAG_CACHE" in err, err


def _cli(argv: list[str], monkeypatch) -> int:
    """The CLI with the stand-in backbone (the disk, not the network, is under test)."""
    import recommender.vision.backbones as backbones

    monkeypatch.setattr(backbones, "get_backbone", lambda *a, **k: MeanColour())
    return cli.main(argv)


def test_the_bounded_streams_read_a_real_sized_line_quickly():
    # bounded_lines keeps line numbers right around a line over the bound.
    from recommender.data.bounded import TOO_LONG, bounded_lines

    text = io.BytesIO(b"a\n" + b"b" * 5000 + b"\nc\n")
    got = list(bounded_lines(text, limit=100))
    assert got == [b"a\n", TOO_LONG, b"c\n"]
