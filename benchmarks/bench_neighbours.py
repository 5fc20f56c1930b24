"""Neighbour search at scale: exact search against approximate indexes.

Synthetic L2-normalised 1280-d vectors, two kinds: ``random`` (independent uniform unit
vectors, the worst case for any approximate index: every point is about as far as every
other) and ``clustered`` (a Gaussian mixture fitted to real image features, see
:func:`benchmarks.common.clustered_unit`). For every size and kind, each method runs in its
own subprocess and reports build time, memory, single-query latency (p50/p95 over the
queries) and recall@10 against exact float32 search.

Methods
-------
exact-f32    recommender.query.neighbours.ExactIndex over float32 rows (numpy matrix-vector)
exact-f16    the same over float16 rows (half the memory, converted in chunks)
flat-f16     faiss IndexScalarQuantizer(fp16): brute force over float16 in faiss' SIMD code
ivf          recommender.query.neighbours.IVFIndex as the recommender builds it: faiss IVF with
             RaBitQ codes (1 bit a dimension) + exact re-scoring from float16 rows, for
             several nprobe values
ivf-sq8      the same with 8-bit SQ8 codes (8x larger, more exact)
ivf-sq8-codes  SQ8 codes alone, without the float16 rows
hnsw-pca     hnswlib HNSW (M=16, ef_construction=100) over PCA-256 projections; the
             max(100, ef) candidates it returns are re-scored exactly from float16 rows

Each index is built in one subprocess (build time; "build peak" is the highest growth of
its anonymous resident memory, the heap without the page cache of the memory-mapped input)
and saved; a fresh subprocess loads it with everything a query needs (for re-scoring, the
float16 rows) and reports that growth as "memory", then times the queries. Exact search
"builds" nothing: its memory is the matrix.

    python -m benchmarks.bench_neighbours                         # 100k, both kinds
    python -m benchmarks.bench_neighbours --sizes 1000000         # the 1M run (~1 h)
    python -m benchmarks.bench_neighbours --sizes 5000 10000 20000 50000 \
        --kinds clustered --methods exact-f32 ivf                 # where "auto" switches
    python -m benchmarks.bench_neighbours --calibrate             # synthetic vs real stats
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from pathlib import Path

import numpy as np

from .common import (
    DIM,
    PeakAnon,
    clustered_unit,
    emit,
    feature_stats,
    header,
    percentiles,
    proc_status,
    random_unit,
    run_json,
    table,
)

METHODS = ("exact-f32", "exact-f16", "flat-f16", "ivf", "ivf-sq8", "ivf-sq8-codes", "hnsw-pca")
DEFAULT_METHODS = METHODS
NPROBES = (8, 16, 32, 64, 128, 256, 512)
HNSW_EFS = (64, 128, 256, 512, 1024)
K = 10
SLOW_QUERIES = 20  # exact-f16 costs seconds a query at 1M: its p50 is over this many
MODULE = "benchmarks.bench_neighbours"


# --------------------------------------------------------------------------- data files
def data_paths(workdir: Path, kind: str, size: int) -> dict[str, Path]:
    stem = workdir / f"{kind}-{size}"
    return {
        "vectors": stem.with_suffix(".f16.npy"),
        "queries": workdir / f"{kind}-{size}-queries.npy",
        "truth": workdir / f"{kind}-{size}-truth.npy",
    }


def generate(workdir: Path, kind: str, size: int, queries: int) -> None:
    """Write the vectors (float16), held-out queries and exact top-K ground truth.

    The float16 rows are the data set: ground truth is exact float32 arithmetic on them.
    """
    paths = data_paths(workdir, kind, size)
    if all(p.exists() for p in paths.values()):
        return
    workdir.mkdir(parents=True, exist_ok=True)
    maker = clustered_unit if kind == "clustered" else random_unit
    # One draw, so queries come from the same mixture (same clusters) as the data.
    both = maker(size + queries, seed=1).astype(np.float16)
    vectors, qs = both[:size], both[size:].astype(np.float32)
    del both
    truth = np.empty((queries, K), np.int64)
    best = np.full((queries, K), -np.inf, np.float32)
    step = 65536
    for s in range(0, size, step):
        block = vectors[s : s + step].astype(np.float32)
        sims = qs @ block.T
        cand_sims = np.concatenate([best, sims], axis=1)
        cand_ids = np.concatenate(
            [truth, np.broadcast_to(np.arange(s, s + len(block)), sims.shape)], axis=1
        )
        order = np.argsort(-cand_sims, axis=1, kind="stable")[:, :K]
        best = np.take_along_axis(cand_sims, order, 1)
        truth = np.take_along_axis(cand_ids, order, 1)
    tmp = paths["vectors"].with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    os.replace(tmp, paths["vectors"])
    np.save(paths["queries"], qs)
    np.save(paths["truth"], truth)


# ------------------------------------------------------------------------------ worker
def _recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    return float(
        np.mean(
            [
                len(set(f[:K].tolist()) & set(t.tolist())) / K
                for f, t in zip(found, truth, strict=True)
            ]
        )
    )


def _measure(name: str, search, queries: np.ndarray, truth: np.ndarray, extra: dict) -> dict:
    for q in queries[:5]:  # warm caches and lazy initialisation
        search(q)
    if name == "exact-f16" and len(queries) * extra["size"] > 1e8:
        queries, truth = queries[:SLOW_QUERIES], truth[:SLOW_QUERIES]
    found, times = [], []
    for q in queries:
        start = time.perf_counter()
        ids = search(q)
        times.append(time.perf_counter() - start)
        found.append(np.asarray(ids))
    return {"method": name, **extra, **percentiles(times), "recall": _recall(found, truth)}


def _artefact(workdir: Path, kind: str, size: int, method: str) -> Path:
    """Where a built index is saved; "ivf-sq8" and "ivf-sq8-codes" share one."""
    return workdir / f"{kind}-{size}-{method.removesuffix('-codes')}"


def build_worker(workdir: Path, kind: str, size: int, method: str, threads: int) -> dict:
    """Build one method's index in this (fresh) process and save it for :func:`serve`."""
    import faiss

    from recommender.query.neighbours import IVFIndex

    faiss.omp_set_num_threads(threads)
    mapped = np.load(data_paths(workdir, kind, size)["vectors"], mmap_mode="r")
    out = _artefact(workdir, kind, size, method)
    base = proc_status("RssAnon")
    start = time.perf_counter()
    with PeakAnon() as peak:
        if method == "ivf":
            out.with_suffix(".faiss").write_bytes(IVFIndex.build(mapped).to_bytes())
        elif method in ("ivf-sq8", "ivf-sq8-codes"):
            index = IVFIndex.build(mapped, codes="SQ8")
            out.with_suffix(".faiss").write_bytes(index.to_bytes())
        elif method == "flat-f16":
            index = faiss.IndexScalarQuantizer(
                DIM, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
            )
            for s in range(0, size, 65536):
                index.add(np.asarray(mapped[s : s + 65536], dtype=np.float32))
            faiss.write_index(index, str(out.with_suffix(".faiss")))
        elif method == "hnsw-pca":
            import hnswlib

            rng = np.random.default_rng(0)
            sample = mapped[np.sort(rng.choice(size, min(size, 65536), replace=False))]
            pca = faiss.PCAMatrix(DIM, 256)
            pca.train(np.asarray(sample, dtype=np.float32))
            del sample
            hnsw = hnswlib.Index(space="ip", dim=256)
            hnsw.init_index(max_elements=size, M=16, ef_construction=100, random_seed=0)
            hnsw.set_num_threads(threads)
            for s in range(0, size, 65536):
                block = pca.apply(np.asarray(mapped[s : s + 65536], dtype=np.float32))
                hnsw.add_items(block, np.arange(s, s + len(block)))
            hnsw.save_index(str(out.with_suffix(".hnsw")))
            faiss.write_VectorTransform(pca, str(out.with_suffix(".pca")))
        else:  # exact methods have nothing to build
            pass
    return {"build_s": time.perf_counter() - start, "build_peak_mb": (peak.peak - base) / 1e6}


def serve_worker(workdir: Path, kind: str, size: int, method: str, threads: int) -> dict:
    """Load what a query needs in this (fresh) process, measure its memory and queries."""
    import faiss

    from recommender.query.neighbours import ExactIndex, IVFIndex

    faiss.omp_set_num_threads(threads)
    paths = data_paths(workdir, kind, size)
    queries = np.load(paths["queries"])
    truth = np.load(paths["truth"])
    out = _artefact(workdir, kind, size, method)
    base = proc_status("RssAnon")
    start = time.perf_counter()
    if method == "exact-f32":
        index = ExactIndex(np.load(paths["vectors"]).astype(np.float32))
    elif method == "exact-f16":
        index = ExactIndex(np.load(paths["vectors"]))
    elif method in ("ivf", "ivf-sq8"):
        index = IVFIndex.from_bytes(
            out.with_suffix(".faiss").read_bytes(), np.load(paths["vectors"])
        )
    elif method == "ivf-sq8-codes":
        index = IVFIndex.from_bytes(out.with_suffix(".faiss").read_bytes())
    elif method == "flat-f16":
        index = faiss.read_index(str(out.with_suffix(".faiss")))
    elif method == "hnsw-pca":
        import hnswlib

        vectors = np.load(paths["vectors"])
        pca = faiss.read_VectorTransform(str(out.with_suffix(".pca")))
        hnsw = hnswlib.Index(space="ip", dim=256)
        hnsw.load_index(str(out.with_suffix(".hnsw")), max_elements=size)
        hnsw.set_num_threads(1)
    else:
        raise SystemExit(f"unknown method {method}")
    gc.collect()
    info = {
        "kind": kind,
        "size": size,
        "load_s": time.perf_counter() - start,
        "memory_mb": (proc_status("RssAnon") - base) / 1e6,
    }

    rows = []
    if method in ("exact-f32", "exact-f16"):
        rows.append(_measure(method, lambda q: index.search(q, K)[0], queries, truth, info))
    elif method == "flat-f16":
        rows.append(
            _measure(method, lambda q: index.search(q[None], K)[1][0], queries, truth, info)
        )
    elif method.startswith("ivf"):
        info["nlist"] = index.nlist
        default = index.nprobe
        for nprobe in sorted({*NPROBES, default}):
            if nprobe > index.nlist:
                continue
            index.nprobe = nprobe
            label = f"{method} nprobe={nprobe}" + (" (default)" if nprobe == default else "")
            rows.append(_measure(label, lambda q: index.search(q, K)[0], queries, truth, info))
    elif method == "hnsw-pca":

        def search(q, candidates):
            cand = hnsw.knn_query(pca.apply(q[None]), k=candidates)[0][0].astype(np.int64)
            sims = vectors[cand].astype(np.float32) @ q
            return cand[np.argsort(-sims)[:K]]

        for ef in HNSW_EFS:
            hnsw.set_ef(ef)
            n = max(100, ef)  # re-score as many candidates as the search keeps
            rows.append(
                _measure(
                    f"hnsw-pca M=16 ef={ef}, re-score {n}",
                    lambda q, n=n: search(q, n),
                    queries,
                    truth,
                    info,
                )
            )
    return {"rows": rows}


# ------------------------------------------------------------------------------- main
COLUMNS = [
    ("kind", "data", ""),
    ("size", "N", ",d"),
    ("method", "method", ""),
    ("build_s", "build s", ".1f"),
    ("memory_mb", "memory MB", ",.0f"),
    ("build_peak_mb", "build peak MB", ",.0f"),
    ("load_s", "load s", ".1f"),
    ("p50_ms", "query p50 ms", ".2f"),
    ("p95_ms", "p95 ms", ".2f"),
    ("recall", "recall@10", ".3f"),
]


def calibrate() -> None:
    from recommender import HashtagRecommender

    header("Synthetic clustered vectors against the demo model's real features")
    model = os.environ.get("BENCH_MODEL", "/tmp/bench-model")
    rows = []
    try:
        real = HashtagRecommender.load(model).index.vectors
        rows.append({"data": f"real ({model})", **feature_stats(real)})
        n = len(real)
    except Exception as exc:  # noqa: BLE001 - the comparison is optional
        print(f"(no real features: {exc})")
        n = 3281
    rows.append({"data": "clustered_unit", **feature_stats(clustered_unit(n, seed=1))})
    rows.append({"data": "random_unit", **feature_stats(random_unit(n, seed=1))})
    print(
        table(
            rows,
            [
                ("data", "vectors", ""),
                ("nn1", "1st neighbour sim", ".3f"),
                ("nn10", "10th neighbour sim", ".3f"),
                ("pair_median", "median pair sim", ".3f"),
                ("pair_p99", "p99 pair sim", ".3f"),
                ("var_top100", "variance in top 100 PCs", ".2f"),
            ],
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument(
        "--kinds", nargs="+", default=["clustered", "random"], choices=["clustered", "random"]
    )
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="faiss/hnswlib threads for building (queries: faiss default)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("/tmp/bench-neighbours"),
        help="where the synthetic vectors are cached (float16 .npy)",
    )
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="serve indexes built by an earlier run (with its build figures)",
    )
    parser.add_argument(
        "--worker", nargs=4, metavar=("PHASE", "KIND", "SIZE", "METHOD"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.worker:
        phase, kind, size, method = args.worker
        work = build_worker if phase == "build" else serve_worker
        emit(work(args.workdir, kind, int(size), method, args.threads))
        return
    if args.calibrate:
        calibrate()
        return
    header("Neighbour search: exact against approximate (1280-d unit vectors, top 10)")
    rows = []
    for size in args.sizes:
        for kind in args.kinds:
            start = time.perf_counter()
            generate(args.workdir, kind, size, args.queries)
            print(f"data {kind} {size:,}: ready in {time.perf_counter() - start:.0f} s", flush=True)
            builds: dict[Path, dict] = {}
            for method in args.methods:
                common = [
                    MODULE,
                    "--workdir",
                    str(args.workdir),
                    "--threads",
                    str(args.threads),
                    "--worker",
                ]
                artefact = _artefact(args.workdir, kind, size, method)
                sidecar = artefact.with_suffix(".build.json")
                try:
                    if artefact not in builds and args.reuse and sidecar.exists():
                        builds[artefact] = json.loads(sidecar.read_text())
                    if artefact not in builds:
                        builds[artefact] = run_json([*common, "build", kind, str(size), method])
                        sidecar.write_text(json.dumps(builds[artefact]))
                    built = builds[artefact]
                    result = run_json([*common, "serve", kind, str(size), method])
                except RuntimeError as exc:
                    print(f"{method}: {exc}", flush=True)
                    continue
                for row in result["rows"]:
                    row.update(built)
                rows.extend(result["rows"])
                print(table(result["rows"], COLUMNS).split("\n", 2)[2], flush=True)
    print()
    print(table(rows, COLUMNS))


if __name__ == "__main__":
    main()
