"""Loading a big manifest: the Parquet manifest streamed by batches, against reading it whole
and against the CSV and JSONL manifests of the same posts.

Synthetic posts (``--rows``, default 1M): an id, an image path relative to the manifest
(absent on disk, so every loader pays the same existence check and keeps the post without
image) and 3-8 hashtags drawn from a Zipf-like pool of 20k. Each variant loads the same
posts with ``load_dataset`` in its own subprocess; memory is that process' peak resident
size (``ru_maxrss``) and its growth over the size before loading (the posts kept are most of
it), plus the peak of Arrow's memory pool, which is what streaming bounds.

    python -m benchmarks.bench_datasets                 # 1M rows (~5 min on 2 busy cores)
    python -m benchmarks.bench_datasets --rows 200000
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import emit, header, proc_status, run_json, table

MODULE = "benchmarks.bench_datasets"
VOCAB = 20_000


def synthetic_rows(rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    weights = 1.0 / (np.arange(1, VOCAB + 1) + 5.0)
    cdf = np.cumsum(weights / weights.sum())
    for i in range(rows):
        count = int(rng.integers(3, 9))
        tags = sorted({f"tag{j}" for j in np.searchsorted(cdf, rng.random(count))})
        yield f"p{i}", f"photos/{i // 1000}/{i}.jpg", tags


def write_all(folder: Path, rows: int) -> dict[str, Path]:
    from recommender.data.formats.parquet import write_manifest

    paths = {
        "parquet": folder / "posts.parquet",
        "csv": folder / "posts.csv",
        "jsonl": folder / "posts.jsonl",
    }
    write_manifest(paths["parquet"], ((im, t, i) for i, im, t in synthetic_rows(rows)))
    with paths["csv"].open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "image", "hashtags"])
        for i, im, tags in synthetic_rows(rows):
            writer.writerow([i, im, " ".join(tags)])
    with paths["jsonl"].open("w", encoding="utf-8") as handle:
        for i, im, tags in synthetic_rows(rows):
            handle.write(json.dumps({"id": i, "image": im, "hashtags": tags}) + "\n")
    return paths


def worker(path: str, batch_rows: int) -> dict:
    import pyarrow as pa

    from recommender.data.datasets import load_dataset
    from recommender.data.formats import parquet

    if batch_rows:
        parquet.BATCH_ROWS = batch_rows
    before = proc_status("VmRSS")
    start, cpu = time.perf_counter(), time.process_time()
    dataset = load_dataset(path)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "posts": len(dataset.posts),
        "load_s": wall,
        "cpu_s": cpu,
        "rows_per_s": len(dataset.posts) / wall,
        "peak_rss_mb": peak / 1e6,
        "growth_mb": (peak - before) / 1e6,
        "arrow_peak_mb": pa.default_memory_pool().max_memory() / 1e6,
    }


def vet_worker(folder: str, rows: int) -> dict:
    """Vetting the same image paths: a full ``Path.resolve`` each (what the loaders did
    before) against the builder's check (each folder's real path cached, one ``lstat`` per
    image), on the same paths in the same process."""
    from recommender.data.datasets import DatasetBuilder

    root = Path(folder).resolve()
    paths = [image for _, image, _ in synthetic_rows(rows)]

    def reference(rel: str) -> str:
        resolved = (root / rel).resolve()
        if not resolved.is_relative_to(root):
            return "unsafe"
        return "ok" if resolved.is_file() else "missing"

    builder = DatasetBuilder(root)
    timings = {}
    for name, check in (
        ("resolve", reference),
        ("cached", lambda rel: builder.check_image(rel)[0]),
    ):
        start, cpu = time.perf_counter(), time.process_time()
        statuses = [check(rel) for rel in paths]
        timings[name] = (time.perf_counter() - start, time.process_time() - cpu, statuses)
    assert timings["resolve"][2] == timings["cached"][2]
    return {
        "paths": rows,
        "resolve_s": timings["resolve"][0],
        "resolve_cpu_s": timings["resolve"][1],
        "cached_s": timings["cached"][0],
        "cached_cpu_s": timings["cached"][1],
    }


COLUMNS = [
    ("variant", "manifest", ""),
    ("posts", "posts", ",d"),
    ("load_s", "load s", ".1f"),
    ("rows_per_s", "posts / s", ",.0f"),
    ("cpu_s", "CPU s", ".1f"),
    ("peak_rss_mb", "peak RSS MB", ",.0f"),
    ("growth_mb", "growth MB", ",.0f"),
    ("arrow_peak_mb", "Arrow pool peak MB", ",.1f"),
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--batch-rows", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--vet-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        emit(worker(args.worker, args.batch_rows))
        return
    if args.vet_worker:
        emit(vet_worker(args.vet_worker, args.rows))
        return
    header(f"Loading {args.rows:,} posts: Parquet streamed vs whole vs CSV vs JSONL")
    with tempfile.TemporaryDirectory(prefix="bench-datasets-") as tmp:
        paths = write_all(Path(tmp), args.rows)
        sizes = {k: p.stat().st_size / 1e6 for k, p in paths.items()}
        variants = [
            ("Parquet, streamed (batches of 65,536)", paths["parquet"], 0),
            ("Parquet, whole file as one batch", paths["parquet"], args.rows),
            ("CSV", paths["csv"], 0),
            ("JSONL", paths["jsonl"], 0),
        ]
        rows = []
        for name, path, batch in variants:
            row = run_json([MODULE, "--worker", str(path), "--batch-rows", str(batch)])
            row["variant"] = f"{name} ({sizes[path.suffix[1:]]:,.0f} MB)"
            rows.append(row)
            print(table([row], COLUMNS).split("\n", 2)[2], flush=True)
        vet = run_json([MODULE, "--vet-worker", tmp, "--rows", str(args.rows)])
    print()
    print(table(rows, COLUMNS))
    streamed, whole, csv_row = rows[0], rows[1], rows[2]
    print(
        f"\nstreamed / whole file: Arrow pool peak "
        f"{streamed['arrow_peak_mb'] / whole['arrow_peak_mb']:.2f}x, peak RSS "
        f"{streamed['peak_rss_mb'] / whole['peak_rss_mb']:.2f}x; Parquet / CSV load time "
        f"{streamed['load_s'] / csv_row['load_s']:.2f}x"
    )
    print(
        f"vetting {vet['paths']:,} image paths: Path.resolve each {vet['resolve_s']:.1f} s "
        f"({vet['resolve_cpu_s']:.1f} s CPU), cached folders + lstat {vet['cached_s']:.1f} s "
        f"({vet['cached_cpu_s']:.1f} s CPU): {vet['resolve_s'] / vet['cached_s']:.1f}x faster"
    )


if __name__ == "__main__":
    main()
