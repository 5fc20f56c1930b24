"""The build after embedding, at scale: time and peak memory of every stage, 100k to 1M images.

    python -m benchmarks.bench_scale --images 200000 --posts 600000 [--json]

Input (generated once into ``--workdir``, not measured): synthetic feature shards in the
embed stage's format (``recommender.features.shards``: float16 features from ``bench_neighbours``'
calibrated clustered generator, content hashes, and thumbnails of random bytes the size of
the demo model's real ones) and synthetic posts (``bench_als``' Zipf generator; the first
``--images`` posts have an image, one shard row each).

Measured, in a fresh child process: every stage after embedding, as ``build`` runs them
(``read``: the posts table; ``join``: the shards read back as one float16 memory map;
``als``; ``profiles`` + ``prior``; ``index``: the neighbour index; ``write``: the model
folder), then ``load`` the model and answer 100 queries. Peak RSS is the child's VmHWM
(it counts the pages of memory-mapped files it touched); peak anon is its heap only.

``--json``: the last line is one JSON object with ``images``, ``posts``, ``peak_rss_mb``,
``peak_anon_mb``, ``seconds`` (all stages), ``stages`` (seconds each) and ``query_p50_ms``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_als import synthetic_matrix  # noqa: E402
from benchmarks.common import (  # noqa: E402
    DIM,
    PeakAnon,
    clustered_chunks,
    emit,
    load_average,
    percentiles,
    run_json,
)

MODULE = "benchmarks.bench_scale"
KEY = "synthetic-clustered-t128"
THUMB_BYTES = 4_300  # mean size of the demo model's 128 px JPEG thumbnails
QUERIES = 100


def _paths(workdir: Path, images: int, posts: int, shard_size: int) -> dict[str, Path]:
    base = workdir / f"i{images}-p{posts}-s{shard_size}"
    return {
        "base": base,
        "shards": base / "shards",
        "posts": base / "posts.npz",
        "queries": base / "queries.npy",
        "model": base / "model",
    }


def generate(workdir: Path, images: int, posts: int, shard_size: int) -> dict[str, Path]:
    """Write the shards, the posts' hashtag matrix and held-out queries (once per size)."""
    from recommender.engines import EmbedJob
    from recommender.features.shards import ShardStore

    paths = _paths(workdir, images, posts, shard_size)
    done = paths["base"] / "complete"
    if done.exists():
        return paths
    paths["base"].mkdir(parents=True, exist_ok=True)
    store = ShardStore(paths["shards"], KEY)
    job = EmbedJob(
        [f"img/{i}.jpg" for i in range(images)], store, "synthetic", None, shard_size=shard_size
    )
    rng = np.random.default_rng(7)
    chunks = clustered_chunks(images + QUERIES, DIM, seed=1, chunk=shard_size)
    pending = np.zeros((0, DIM), np.float32)
    for number in range(job.n_shards):
        first, last = job.shard_range(number)
        while len(pending) < last - first:
            pending = np.concatenate([pending, next(chunks)])
        feats, pending = pending[: last - first], pending[last - first :]
        hashes = [hashlib.sha256(f"image {i}".encode()).hexdigest() for i in range(first, last)]
        sizes = rng.integers(THUMB_BYTES // 2, THUMB_BYTES * 3 // 2, last - first)
        blob = rng.bytes(int(sizes.sum()))
        ends = np.cumsum(sizes)
        thumbs = [blob[e - s : e] for s, e in zip(sizes, ends, strict=True)]
        store.write_shard(
            number,
            hashes,
            feats,
            thumbs,
            meta={"first": first, "size": last - first, "errors": []},
            position=np.arange(first, last, dtype=np.int64),
        )
    rest = np.concatenate([pending, *chunks]) if len(pending) < QUERIES else pending
    np.save(paths["queries"], rest[:QUERIES].astype(np.float32))
    matrix = synthetic_matrix(posts, seed=3)
    np.savez(
        paths["posts"], indptr=matrix.indptr, indices=matrix.indices, shape=np.array(matrix.shape)
    )
    done.touch()
    return paths


def worker(workdir: Path, images: int, posts: int, shard_size: int) -> dict:
    """Run the stages after embedding and report time and memory (in a fresh process)."""
    import scipy.sparse as sp

    from recommender.config import BuildConfig
    from recommender.data.datasets import Post
    from recommender.engines import EmbedJob, get_engine
    from recommender.features.pipeline import ShardThumbnails, read_shards
    from recommender.features.shards import ShardStore
    from recommender.fit.training import fit_model
    from recommender.query.recommender import HashtagRecommender

    paths = _paths(workdir, images, posts, shard_size)
    stages: dict[str, float] = {}
    peaks: dict[str, list[int]] = {}  # stage -> [peak RSS MB, peak heap MB] so far

    def mark(*names: str) -> None:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        for name in names:
            peaks[name] = [rss, round(anon.peak / 2**20)]

    config = BuildConfig()
    with PeakAnon() as anon:
        t = time.perf_counter()
        with np.load(paths["posts"]) as npz:
            shape = tuple(int(v) for v in npz["shape"])
            matrix = sp.csr_matrix(
                (np.ones(len(npz["indices"]), np.float32), npz["indices"], npz["indptr"]),
                shape=shape,
            )
        names = [f"tag{j}" for j in range(shape[1])]
        table = [
            Post(
                f"p{i}",
                f"img/{i}.jpg" if i < images else None,
                tuple(names[j] for j in matrix.indices[matrix.indptr[i] : matrix.indptr[i + 1]]),
            )
            for i in range(shape[0])
        ]
        del matrix, names
        stages["read"] = time.perf_counter() - t
        mark("read")

        t = time.perf_counter()
        store = ShardStore(paths["shards"], KEY)
        job = EmbedJob(
            [f"img/{i}.jpg" for i in range(images)], store, "synthetic", None, shard_size=shard_size
        )
        shards, features = read_shards(job, DIM)
        thumbnails = ShardThumbnails(shards)
        rows = np.full(len(table), -1, dtype=np.int64)
        positions = np.concatenate([s.extra["position"] for s in shards])
        rows[positions] = np.arange(len(positions))  # no duplicates in synthetic shards
        rows = rows.tolist()
        stages["join"] = time.perf_counter() - t
        mark("join")

        t = time.perf_counter()
        parts = fit_model(
            table,
            features,
            rows,
            config,
            thumbnails=thumbnails,
            fit_als=get_engine("local").fit_als,
            # after the prior's first chunk: ALS and the profiles are done
            prior_progress=lambda done, total: "als+profiles" in peaks or mark("als+profiles"),
        ).parts
        fit = parts.manifest["fit_timings"]
        stages["als"] = fit["als_seconds"]
        stages["profiles"] = fit["profiles_seconds"]
        stages["prior"] = fit["prior_seconds"]
        stages["arrays"] = time.perf_counter() - t - sum(fit.values())
        mark("fit")
        del table

        t = time.perf_counter()
        rec = HashtagRecommender(parts)
        stages["index"] = time.perf_counter() - t
        mark("index")
        t = time.perf_counter()
        rec.save(paths["model"])
        stages["write"] = time.perf_counter() - t
        mark("write")
        hashtags = len(rec.tags)
        del rec, parts, shards, thumbnails, features

        t = time.perf_counter()
        loaded = HashtagRecommender.load(paths["model"])
        stages["load"] = time.perf_counter() - t
        queries = np.load(paths["queries"])
        times = []
        for q in queries:
            start = time.perf_counter()
            loaded.recommend_features(q, 5, 10)
            times.append(time.perf_counter() - start)
        stages["queries"] = float(sum(times))
        mark("load+queries")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "images": images,
        "posts": posts,
        "hashtags": hashtags,
        "shard_size": shard_size,
        "peak_rss_mb": round(peak / 2**20),
        "peak_anon_mb": round(anon.peak / 2**20),
        "seconds": round(sum(stages.values()), 1),
        "stages": {k: round(v, 2) for k, v in stages.items()},
        "peak_mb_by_stage": peaks,
        "query_p50_ms": round(percentiles(times)["p50_ms"], 2),
        "model_mb": round(sum(f.stat().st_size for f in paths["model"].iterdir()) / 2**20),
        "load_average": load_average(),
    }


def plot(results: list[dict], path: Path) -> Path:
    """Peak memory and time against images, one point per result, to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = sorted(results, key=lambda r: r["images"])
    x = [r["images"] / 1e3 for r in results]
    fig, (mem, sec) = plt.subplots(1, 2, figsize=(10, 3.8))
    mem.plot(x, [r["peak_rss_mb"] / 1024 for r in results], "o-", label="peak RSS")
    mem.plot(x, [r["peak_anon_mb"] / 1024 for r in results], "s--", label="peak heap (anon)")
    mem.axhline(8, ls=":", c="grey", label="target at 1M (8 GB)")
    mem.set(xlabel="images (thousands; posts = 3x)", ylabel="GiB", title="Peak memory")
    mem.legend()
    bottom = np.zeros(len(results))
    for stage in results[-1]["stages"]:
        values = np.array([r["stages"].get(stage, 0.0) for r in results]) / 60
        sec.bar(x, values, bottom=bottom, width=max(x) / 25, label=stage)
        bottom += values
    sec.axhline(30, ls=":", c="grey", label="target at 1M (30 min)")
    sec.set(
        xlabel="images (thousands; posts = 3x)",
        ylabel="minutes",
        title="Time of the stages after embedding",
    )
    sec.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--posts", type=int, default=300_000)
    parser.add_argument("--shard-size", type=int, default=10_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-scale"))
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="keep the generated input")
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="PNG",
        help="plot the JSON results given as RESULTS instead of running",
    )
    parser.add_argument("results", nargs="*", type=Path, help="JSON result files for --plot")
    args = parser.parse_args(argv)
    if args.plot:
        found = [json.loads(p.read_text().strip().splitlines()[-1]) for p in args.results]
        print(plot(found, args.plot))
        return
    if args.worker:
        emit(worker(args.workdir, args.images, args.posts, args.shard_size))
        return
    t = time.perf_counter()
    paths = generate(args.workdir, args.images, args.posts, args.shard_size)
    generated = time.perf_counter() - t
    result = run_json(
        [
            MODULE,
            "--worker",
            "--images",
            str(args.images),
            "--posts",
            str(args.posts),
            "--shard-size",
            str(args.shard_size),
            "--workdir",
            str(args.workdir),
        ],
        env={"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")},
        timeout=4 * 3600,
    )
    result["generate_seconds"] = round(generated, 1)
    if not args.keep:
        import shutil

        shutil.rmtree(paths["base"], ignore_errors=True)
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{result['images']:,} images, {result['posts']:,} posts, "
        f"{result['hashtags']:,} hashtags: {result['seconds']} s, peak RSS "
        f"{result['peak_rss_mb']:,} MB (heap {result['peak_anon_mb']:,} MB), query p50 "
        f"{result['query_p50_ms']} ms"
    )
    for stage, seconds in result["stages"].items():
        print(f"  {stage:<9} {seconds:9.2f} s")


if __name__ == "__main__":
    main()
