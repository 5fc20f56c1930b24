"""ALS fit time and peak memory as the data grows.

The real data set's post x hashtag matrix, then synthetic ones at 30k, 300k and 3M posts:
~11 hashtags a post (Poisson, at least 1) drawn from a Zipf-Mandelbrot popularity
1 / (rank + 5) ^ ``--zipf`` over a pool of hashtags that grows with the posts as in Heaps'
law. Fitted to the real data set: at its 4.5k posts the generator gives 14.2k distinct
hashtags (real: 14.6k), the most popular in 18% of posts (20%), 63% used once (73%) and a
log-log popularity slope of -0.94 over ranks 10-1000 (-0.94). Each size runs in its own
subprocess with the library defaults (``ALSParams()``: 64 factors, 20 iterations, BM25);
memory is that process' peak resident size (``ru_maxrss``, which sees native allocations
that tracemalloc does not), also shown as the growth over the matrix alone.

    python -m benchmarks.bench_als                       # real, 30k, 300k, 3M (~10 min)
    python -m benchmarks.bench_als --sizes 30000 300000
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from .common import DATASET, emit, header, proc_status, run_json, table

MODULE = "benchmarks.bench_als"
TAGS_PER_POST = 11
RANK_OFFSET = 5.0


def hashtag_pool(posts: int) -> int:
    """Heaps' law: hashtags to draw from, 186 N^0.65 (~44k at 4.5k posts, 3M at 3M)."""
    return int(186 * posts**0.65)


def synthetic_matrix(posts: int, zipf: float = 1.0, seed: int = 0):
    """A binary posts x hashtags CSR matrix with Zipf-like hashtag popularity."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    vocab = hashtag_pool(posts)
    weights = 1.0 / (np.arange(1, vocab + 1, dtype=np.float64) + RANK_OFFSET) ** zipf
    cdf = np.cumsum(weights / weights.sum())
    per_post = np.maximum(1, rng.poisson(TAGS_PER_POST, posts))
    rows = np.repeat(np.arange(posts, dtype=np.int32), per_post)
    cols = np.searchsorted(cdf, rng.random(len(rows))).astype(np.int32)
    cols = np.minimum(cols, vocab - 1)
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(posts, vocab))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    # Tags nobody drew are not in a vocabulary built from data: drop the empty columns.
    used = np.flatnonzero(np.diff(matrix.tocsc().indptr))
    return matrix[:, used].tocsr()


def real_matrix():
    from recommender.data.datasets import load_dataset
    from recommender.fit.als import interaction_matrix, tag_vocabulary

    post_tags = [p.hashtags for p in load_dataset(DATASET).posts]
    vocab, _ = tag_vocabulary(post_tags)
    return interaction_matrix(post_tags, vocab)


def worker(size: str, zipf: float) -> dict:
    from recommender.config import ALSParams
    from recommender.fit.als import fit_als

    matrix = real_matrix() if size == "real" else synthetic_matrix(int(size), zipf)
    before = proc_status("VmRSS")
    params = ALSParams()
    start, cpu = time.perf_counter(), time.process_time()
    posts, tags = fit_als(matrix, params)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "data": "real data set" if size == "real" else "synthetic",
        "posts": matrix.shape[0],
        "hashtags": matrix.shape[1],
        "pairs": int(matrix.nnz),
        "fit_s": wall,
        "cpu_s": cpu,
        "per_iteration_s": wall / params.iterations,
        "peak_rss_mb": peak / 1e6,
        "growth_mb": (peak - before) / 1e6,
        "factors_mb": (posts.nbytes + tags.nbytes) / 1e6,
    }


COLUMNS = [
    ("data", "data", ""),
    ("posts", "posts", ",d"),
    ("hashtags", "hashtags", ",d"),
    ("pairs", "pairs", ",d"),
    ("fit_s", "fit s", ".1f"),
    ("per_iteration_s", "s / iteration", ".2f"),
    ("cpu_s", "CPU s", ".1f"),
    ("peak_rss_mb", "peak RSS MB", ",.0f"),
    ("growth_mb", "growth over matrix MB", ",.0f"),
    ("factors_mb", "factors MB", ",.0f"),
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=["real", "30000", "300000", "3000000"],
        help="'real' or numbers of synthetic posts",
    )
    parser.add_argument("--zipf", type=float, default=1.0, help="popularity exponent")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        emit(worker(args.worker, args.zipf))
        return
    header("ALS fit (ALSParams defaults) as the data grows, one subprocess per size")
    rows = []
    for size in args.sizes:
        row = run_json([MODULE, "--zipf", str(args.zipf), "--worker", size])
        rows.append(row)
        print(table([row], COLUMNS).split("\n", 2)[2], flush=True)
    print()
    print(table(rows, COLUMNS))


if __name__ == "__main__":
    main()
