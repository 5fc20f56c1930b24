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
folder), then ``load`` the model and answer 1,000 held-out queries as the page does
(:func:`measure_queries`: the query, a slider re-rank, and the agreement of the top 10 with
scoring every hashtag). Peak RSS is the child's VmHWM (it counts the pages of
memory-mapped files it touched); peak anon is its heap only.

``--json``: the last line is one JSON object with ``images``, ``posts``, ``peak_rss_mb``,
``peak_anon_mb``, ``seconds`` (all stages), ``stages`` (seconds each), ``query_p50_ms``,
``queries`` (:func:`measure_queries`) and ``rss_after_load_mb``.

    python -m benchmarks.bench_scale --model models/demo [--queries 1000] [--json]

measures only the page's side of an existing model folder: load time, memory after loading
and after the queries, and :func:`measure_queries` on queries made from its own images.
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
QUERIES = 1000


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
        rss_loaded = _rss_mb()
        t = time.perf_counter()
        served = measure_queries(loaded, np.load(paths["queries"]))
        stages["queries"] = time.perf_counter() - t
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
        "query_p50_ms": served["query_p50_ms"],
        "queries": served,
        "rss_after_load_mb": rss_loaded,
        "model_mb": round(sum(f.stat().st_size for f in paths["model"].iterdir()) / 2**20),
        "load_average": load_average(),
    }


def _rss_mb() -> int:
    """This process' resident memory now (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return -1


def measure_queries(rec, queries: np.ndarray, n: int = 5, k: int = 10) -> dict:
    """Serve ``queries`` (image features) as the page does, and check the answers.

    Per query, wall and CPU time (``thread_time``: what the query cost, without the time
    a busy machine keeps it waiting) of ``recommend_features(q, n, k)`` (neighbour search,
    scoring, hedging, explanation; no image network), then of a slider re-rank (the same
    features with ``n`` neighbours moved to 15 and to 30), then the ranking with every
    hashtag scored (``rank(..., candidates=False)``) for the ratio and the agreement:
    ``recall_at_k`` is the share of the exhaustive top ``k`` in the served top ``k``;
    ``tied_at_k`` the share whose score equals the exhaustive one at the same place (the
    answers differ only in which of several equal scores is shown).
    """
    from recommender.blas import serial_blas

    def timed(fn) -> tuple[object, float, float]:
        start, cpu = time.perf_counter(), time.thread_time()
        out = fn()
        return out, time.perf_counter() - start, time.thread_time() - cpu

    wall, cpu, rerank, rerank_cpu, full, full_cpu = [], [], [], [], [], []
    found = tied = 0
    m = rec.method
    for q in queries:
        _, w, c = timed(lambda q=q: rec.recommend_features(q, n, k))
        wall.append(w)
        cpu.append(c)
        for moved in (15, 30):
            _, w, c = timed(lambda q=q, moved=moved: rec.recommend_features(q, moved, k))
            rerank.append(w)
            rerank_cpu.append(c)
        with serial_blas():
            served = rec.rank(q, n, k, m)
            every, w, c = timed(lambda q=q: rec.rank(q, n, k, m, candidates=False))
        full.append(w)
        full_cpu.append(c)
        found += len(set(served.best.tolist()) & set(every.best.tolist()))
        tied += int(
            np.sum(served.at(served.scores, served.best) == every.at(every.scores, every.best))
        )
    total = k * len(queries)

    def p50(values: list[float]) -> float:
        return round(percentiles(values)["p50_ms"], 2)

    return {
        "n": len(queries),
        "hashtags": len(rec.tags),
        "query_p50_ms": p50(wall),
        "query_cpu_p50_ms": p50(cpu),
        "query_p95_ms": round(percentiles(wall)["p95_ms"], 2),
        "rerank_p50_ms": p50(rerank),
        "rerank_cpu_p50_ms": p50(rerank_cpu),
        "exhaustive_rank_p50_ms": p50(full),
        "exhaustive_rank_cpu_p50_ms": p50(full_cpu),
        "recall_at_k": round(found / total, 4),
        "tied_at_k": round(tied / total, 4),
        "k": k,
        "neighbours": n,
    }


def model_queries(model: Path, count: int, seed: int = 0) -> dict:
    """Load a model folder as the page does and :func:`measure_queries` on ``count`` of its
    own images' features, slightly moved (a new photo of a known scene)."""
    from recommender.query.recommender import HashtagRecommender

    before = _rss_mb()
    start = time.perf_counter()
    rec = HashtagRecommender.load(model)
    load_seconds = time.perf_counter() - start
    loaded = _rss_mb()
    rng = np.random.default_rng(seed)
    n_images = len(rec.image_paths)
    rows = np.sort(rng.choice(n_images, min(count, n_images), replace=False))
    queries = np.asarray(rec.arrays.features[rows], dtype=np.float32)
    queries += rng.normal(0, 0.02, queries.shape).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    result = measure_queries(rec, queries)
    return {
        "model": str(model),
        "images": n_images,
        "load_seconds": round(load_seconds, 2),
        "rss_after_load_mb": loaded,
        "rss_before_load_mb": before,
        "rss_after_queries_mb": _rss_mb(),
        **result,
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
    parser.add_argument(
        "--model",
        type=Path,
        help="measure only the queries of this model folder (load, memory, 1000 queries "
        "from its own images) instead of building",
    )
    parser.add_argument("--queries", type=int, default=QUERIES, help="with --model")
    parser.add_argument(
        "--candidate-min-tags",
        type=int,
        help="with --model: score only candidates from this many hashtags on (default: "
        "recommender.query.scoring.CANDIDATE_MIN_TAGS)",
    )
    args = parser.parse_args(argv)
    if args.candidate_min_tags is not None:
        from recommender.query import scoring

        scoring.CANDIDATE_MIN_TAGS = args.candidate_min_tags
    if args.model:
        result = model_queries(args.model, args.queries)
        print(json.dumps(result) if args.json else json.dumps(result, indent=1))
        return
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
    print("  queries:", json.dumps(result["queries"]))
    for stage, seconds in result["stages"].items():
        print(f"  {stage:<9} {seconds:9.2f} s")


if __name__ == "__main__":
    main()
