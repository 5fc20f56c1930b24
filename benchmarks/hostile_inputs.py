"""Hostile inputs at their real size (issue 25's table): peak memory and seconds, measured
from outside.

Each row builds one hostile input in a temporary folder, then runs ``python -m recommender
build`` (and ``recommend`` / ``info`` where the issue measured them) on it under
``/usr/bin/time -v``, with a timeout. Peak RSS is time's "Maximum resident set size"; the
reference rows are the same commands on the demo data set (``$HASHTAG_DATASET``, its feature
cache warm if a build ran before) and on eight clean real photos, so each hostile row can be
read as "above the build's normal working set".

    python -m benchmarks.hostile_inputs                  # every row (~10-20 min under load)
    python -m benchmarks.hostile_inputs --rows pth,csv_line --timeout 120

The inputs are several gigabytes of disk at most (the 1 GB lines, the 500 MB JSON), written
in ``--workdir`` (a temporary folder by default) and removed at the end.
"""

from __future__ import annotations

import argparse
import bz2
import collections
import io
import json
import lzma
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from .common import DATASET, REPO

POSTS = "your_instagram_activity/content/posts_1.json"
GB = 1 << 30


# ----------------------------------------------------------------------- building inputs
def real_photos(folder: Path, n: int = 8) -> list[str]:
    """``n`` real photos of the demo data set copied into ``folder``; their names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for category in ("food", "animals"):
        for src in sorted((DATASET / "data" / category).glob("*.jpg"))[: n // 2]:
            shutil.copy(src, folder / src.name)
            names.append(src.name)
    if len(names) < n:
        raise SystemExit(f"no photos under {DATASET}/data: set HASHTAG_DATASET")
    return names


def clean_manifest(root: Path) -> Path:
    names = real_photos(root / "photos")
    rows = [f"photos/{n},#food #tasty #t{i % 3}" for i, n in enumerate(names)]
    (root / "posts.csv").write_text("image,hashtags\n" + "\n".join(rows) + "\n")
    return root


def _export_posts(names: list[str]) -> list[dict]:
    return [
        {"media": [{"uri": f"media/posts/{n}", "title": f"#food #tasty #t{i % 3}"}]}
        for i, n in enumerate(names)
    ]


def parquet_columns(root: Path) -> Path:
    """5,000 rows naming one 2 MB image path, stored once in a dictionary page: 10 GB as
    Arrow or Python strings, a few MB on disk. Built dictionary-encoded, so this script never
    holds the 10 GB either."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = real_photos(root / "photos")
    big = "photos/" + "x" * (2 << 20) + ".jpg"
    rows = 5000
    dictionary = pa.array([big] + [f"photos/{n}" for n in names])
    indices = np.concatenate([np.zeros(rows, np.int32), np.arange(1, len(names) + 1)])
    table = pa.table(
        {
            "id": [str(i) for i in range(len(indices))],
            "image": pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()), dictionary),
            "hashtags": [["food", "tasty"]] * len(indices),
        }
    )
    pq.write_table(
        table, root / "posts.parquet", compression="zstd", dictionary_pagesize_limit=8 << 20
    )
    return root / "posts.parquet"


def parquet_tags(root: Path) -> Path:
    """5,000 posts of 3,000 hashtags each (15M list entries), eight of them with a photo."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = real_photos(root / "photos")
    vocab = pa.array([f"tag{i}" for i in range(10_000)])
    rng = np.random.default_rng(0)
    rows, per_post = 5000, 3000
    indices = pa.array(rng.integers(0, len(vocab), rows * per_post, dtype=np.int32))
    offsets = pa.array(np.arange(0, rows * per_post + 1, per_post, dtype=np.int32))
    tags = pa.ListArray.from_arrays(offsets, pa.DictionaryArray.from_arrays(indices, vocab))
    table = pa.table(
        {
            "id": [str(i) for i in range(rows)],
            # eight posts with a photo: the rest are posts without one (5,000 image
            # references would time the embed stage, not the hashtags)
            "image": [f"photos/{names[i]}" if i < len(names) else None for i in range(rows)],
            "hashtags": tags,
        }
    )
    pq.write_table(table, root / "posts.parquet", compression="zstd")
    return root / "posts.parquet"


def export_amplifies(root: Path) -> Path:
    """An unpacked export whose posts_1.json is 500 MB of ``[{}, {}, ...]``."""
    names = real_photos(root / "media/posts")
    (root / POSTS).parent.mkdir(parents=True)
    with open(root / POSTS, "w") as fh:
        fh.write("[")
        block = "{}, " * (1 << 18)
        for _ in range(500 * (1 << 20) // len(block)):
            fh.write(block)
        fh.write("{}]")
    (root / POSTS.replace("_1", "_2")).write_text(json.dumps(_export_posts(names)))
    return root


def _forge(path: Path, name: str, declared: int) -> None:
    """Make the local and central headers of ``name`` declare ``declared`` bytes."""
    raw = bytearray(path.read_bytes())
    encoded = name.encode()
    for signature, size_at, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        at = raw.find(signature)
        while at >= 0:
            if raw[at + name_at : at + name_at + len(encoded)] == encoded:
                raw[at + size_at : at + size_at + 4] = declared.to_bytes(4, "little")
            at = raw.find(signature, at + 4)
    path.write_bytes(bytes(raw))


def _compressed_member(
    method: int, size: int, unit: bytes, head_text: bytes = b"", tail_text: bytes = b""
) -> tuple[bytes, int]:
    """``head_text``, ``size`` bytes of ``unit`` repeated and ``tail_text``, compressed as a
    zip member of ``method``; and the CRC-32 of the plain bytes."""
    import zlib

    if method == zipfile.ZIP_BZIP2:
        comp = bz2.BZ2Compressor(9)
        head = b""
    else:  # the zip flavour of lzma: version, properties size, properties, raw stream
        filters = [{"id": lzma.FILTER_LZMA1, "preset": 6}]
        comp = lzma.LZMACompressor(lzma.FORMAT_RAW, filters=filters)
        props = lzma._encode_filter_properties(filters[0])
        head = b"\x09\x04" + len(props).to_bytes(2, "little") + props
    block = unit * ((1 << 20) // len(unit))
    out, crc, done = [head, comp.compress(head_text)], zlib.crc32(head_text), 0
    while done < size:
        piece = block[: size - done]
        out.append(comp.compress(piece))
        crc = zlib.crc32(piece, crc)
        done += len(piece)
    out.append(comp.compress(tail_text))
    crc = zlib.crc32(tail_text, crc)
    out.append(comp.flush())
    return b"".join(out), crc


def _zip_with_raw_member(path: Path, name: str, method: int, data: bytes, crc: int, size: int):
    """Add a member whose compressed bytes are ``data`` (written by hand: zipfile would
    compress a gigabyte in memory)."""
    import struct

    with open(path, "r+b") as fh:
        archive = zipfile.ZipFile(fh, "a")
        info = zipfile.ZipInfo(name)
        info.compress_type = method
        # Write a stored placeholder of the right length, then patch its header and data.
        archive.writestr(info, b"\0" * len(data), compress_type=zipfile.ZIP_STORED)
        archive.close()
    raw = bytearray(path.read_bytes())
    encoded = name.encode()
    at = raw.find(b"PK\x03\x04")
    while at >= 0:
        if raw[at + 30 : at + 30 + len(encoded)] == encoded:
            break
        at = raw.find(b"PK\x03\x04", at + 4)
    extra = struct.unpack_from("<H", raw, at + 28)[0]
    start = at + 30 + len(encoded) + extra
    raw[start : start + len(data)] = data
    for signature, method_at, crc_at, size_at, name_at in (
        (b"PK\x03\x04", 8, 14, 22, 30),
        (b"PK\x01\x02", 10, 16, 24, 46),
    ):
        pos = raw.find(signature)
        while pos >= 0:
            if raw[pos + name_at : pos + name_at + len(encoded)] == encoded:
                struct.pack_into("<H", raw, pos + method_at, method)
                struct.pack_into("<I", raw, pos + crc_at, crc)
                struct.pack_into("<I", raw, pos + size_at, size & 0xFFFFFFFF)
            pos = raw.find(signature, pos + 4)
    path.write_bytes(bytes(raw))


def zip_lying(root: Path, method: int) -> Path:
    """An export zip whose posts_1.json is ``[``, 1 GB of spaces, ``]``, declaring 20 kB
    (spaces: bzip2 compresses runs fast, a repeated ``{}, `` would take it many minutes)."""
    names = real_photos(root / "photos")
    path = root / "instagram-export.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for n in names:
            archive.write(root / "photos" / n, f"media/posts/{n}")
        archive.writestr(POSTS.replace("_1", "_2"), json.dumps(_export_posts(names)))
    data, crc = _compressed_member(method, GB, b" ", b"[", b"]")
    _zip_with_raw_member(path, POSTS, method, data, crc, 20_000)
    return path


def zip_json_python(root: Path) -> Path:
    """An export zip (stored) whose one post is 26 MB of ``[], `` (250x as Python lists)."""
    names = real_photos(root / "photos")
    path = root / "instagram-export.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for n in names:
            archive.write(root / "photos" / n, f"media/posts/{n}")
        hostile = '[{"media": [' + "[], " * (26 << 18) + "[]]}]"
        archive.writestr(POSTS, hostile)
        archive.writestr(POSTS.replace("_1", "_2"), json.dumps(_export_posts(names)))
    return path


def zip_image_bombs(root: Path) -> Path:
    """An export zip whose 8 images are each a JPEG's first bytes and 1 GB of zeros in
    bzip2, declaring 20 kB."""
    path = root / "instagram-export.zip"
    names = [f"{i}.jpg" for i in range(8)]
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(POSTS, json.dumps(_export_posts(names)))
    data, crc = _compressed_member(zipfile.ZIP_BZIP2, GB, b"\0", b"\xff\xd8\xff\xe0")
    for n in names:
        _zip_with_raw_member(path, f"media/posts/{n}", zipfile.ZIP_BZIP2, data, crc, 20_000)
    return path


def manifest_line(root: Path, suffix: str) -> Path:
    """A manifest of eight real photos and one 1 GB line."""
    names = real_photos(root / "photos")
    path = root / f"posts{suffix}"
    with open(path, "w") as fh:
        if suffix == ".csv":
            fh.write("image,hashtags\n")
            rows = [f"photos/{n},#food #tasty" for n in names]
            huge_head, unit, huge_tail = "photos/x.jpg,", "#food ", "\n"
        else:
            rows = [json.dumps({"image": f"photos/{n}", "hashtags": ["food", "tasty"]})
                    for n in names]  # fmt: skip
            huge_head, unit, huge_tail = '{"image": "x.jpg", "hashtags": [', '"food", ', '"x"]}\n'
        fh.write("\n".join(rows[:4]) + "\n" + huge_head)
        block = unit * ((1 << 20) // len(unit))
        for _ in range(1024):
            fh.write(block)
        fh.write(huge_tail + "\n".join(rows[4:]) + "\n")
    return path


class _Global:
    """A global written by name (torch's classes, without torch)."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle wants reduce functions to be callable
        raise AssertionError("never called")


class _Storage:
    def __init__(self, key: str, numel: int) -> None:
        self.key, self.numel = key, numel


class _Tensor:
    def __init__(self, storage: _Storage, size: tuple[int, ...]) -> None:
        self.storage, self.size = storage, size

    def __reduce__(self):
        rebuild = _Global("torch._utils", "_rebuild_tensor_v2")
        return (rebuild, (self.storage, 0, self.size, (1,) * len(self.size), False, {}))


class _TorchPickler(pickle._Pickler):
    """Writes a state dict as ``torch.save`` does (zip layout), storages by reference."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_global(self, obj: _Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())

    dispatch[_Global] = _save_global

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", _Global("torch", "FloatStorage"), obj.key, "cpu", obj.numel)
        return None


def pth_huge(root: Path) -> tuple[Path, Path]:
    """A zip .pth declaring 200 float32 tensors of 128 MB each (4 bytes of data each), and
    a clean data set to build with it."""
    state = collections.OrderedDict()
    for i in range(200):
        state[f"_blocks.{i}._depthwise_conv.weight"] = _Tensor(_Storage(str(i), 32 << 20),
                                                                (32 << 20,))  # fmt: skip
    buf = io.BytesIO()
    _TorchPickler(buf, protocol=2).dump(state)
    path = root / "huge.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("huge/data.pkl", buf.getvalue())
        for i in range(200):
            archive.writestr(f"huge/data/{i}", b"\0\0\0\0")
    return path, clean_manifest(root / "data")


# ------------------------------------------------------------------------------ running
def measure(argv: list[str], timeout: float, env: dict | None = None) -> dict:
    """Run ``python -m recommender <argv>`` under /usr/bin/time -v; peak MB, seconds."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "recommender", *argv]
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the group this call started
        out, err = proc.communicate()
        timed_out = True
    seconds = time.perf_counter() - start
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    said = [
        line
        for line in (err + "\n" + out).splitlines()
        if line.startswith(("error:", "Model written", "Command", "posts:"))
        or "hashtag" in line.lower()[:12]
    ]
    lines = [line for line in said if not line.startswith("Command")]
    return {
        "peak_mb": int(rss.group(1)) / 1024 if rss else float("nan"),
        "seconds": seconds,
        "exit": "timeout" if timed_out else proc.returncode,
        "said": (lines or out.strip().splitlines() or [""])[0][:160],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="all", help="comma-separated row names, or all")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per command")
    parser.add_argument("--workdir", default=None, help="where to write the inputs")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="hostile-"))
    work.mkdir(parents=True, exist_ok=True)

    def build(name: str, data: Path, *extra: str) -> list[str]:
        return ["build", str(data), "--out", str(work / f"model-{name}"), "--quiet", *extra]

    rows: dict[str, collections.abc.Callable] = {
        "demo": lambda d: [("build", build("demo", DATASET))],
        "clean": lambda d: [("build", build("clean", clean_manifest(d)))],
        "parquet_columns": lambda d: [("build", build("pc", parquet_columns(d)))],
        "export_amplifies": lambda d: [("build", build("ea", export_amplifies(d)))],
        "pth": lambda d: (lambda pth, data: [("build", build("pth", data, "--weights", str(pth)))])(
            *pth_huge(d)
        ),
        "zip_lying_bzip2": lambda d: [("build", build("zb", zip_lying(d, zipfile.ZIP_BZIP2)))],
        "zip_lying_lzma": lambda d: [("build", build("zl", zip_lying(d, zipfile.ZIP_LZMA)))],
        "zip_json_python": lambda d: [("build", build("zj", zip_json_python(d)))],
        "zip_image_bombs": lambda d: [("build", build("zi", zip_image_bombs(d)))],
        "jsonl_line": lambda d: [("build", build("jl", manifest_line(d, ".jsonl")))],
        "csv_line": lambda d: [("build", build("cl", manifest_line(d, ".csv")))],
        "parquet_tags": lambda d: [
            ("build", build("pt", parquet_tags(d))),
            (
                "recommend",
                [
                    "recommend",
                    "--model",
                    str(work / "model-pt"),
                    str(next((d / "photos").glob("*.jpg"))),
                ],
            ),  # fmt: skip
            ("info", ["info", str(work / "model-pt")]),
        ],
    }
    wanted = list(rows) if args.rows == "all" else args.rows.split(",")
    print(f"load average: {open('/proc/loadavg').read().strip()}", flush=True)
    results = []
    try:
        for name in wanted:
            folder = work / name
            folder.mkdir(exist_ok=True)
            made = time.perf_counter()
            commands = rows[name](folder)
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            print(f"{name}: input {size / 1e6:,.1f} MB built in "
                  f"{time.perf_counter() - made:.0f} s", flush=True)  # fmt: skip
            for command, cmd_argv in commands:
                got = measure(cmd_argv, args.timeout)
                got.update(row=name, command=command, input_mb=size / 1e6)
                results.append(got)
                print(f"  {command}: {got['peak_mb']:,.0f} MB peak, {got['seconds']:.1f} s, "
                      f"exit {got['exit']}: {got['said']}", flush=True)  # fmt: skip
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"load average: {open('/proc/loadavg').read().strip()}")
    print("\n| input | command | input size | peak RSS | seconds | outcome |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['row']} | {r['command']} | {r['input_mb']:,.1f} MB | "
              f"{r['peak_mb']:,.0f} MB | {r['seconds']:.1f} | exit {r['exit']}: "
              f"{r['said']} |")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
