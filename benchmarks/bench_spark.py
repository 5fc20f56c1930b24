"""The Spark engine against the local one, side by side in the same process.

Sections (all by default; pick with ``--sections``). Each Spark master runs in its own
subprocess (one SparkSession each), which also runs the local engine on the same input, so
every ratio compares two runs on the same machine at the same time.

embed       Images/s of the Spark engine's embed stage (``mapInPandas``, the local shard
            step per task, one TensorFlow thread per task) against the local engine's
            (2 decoding threads, TensorFlow on every core) on the same images, both writing
            the same shards into a fresh store: chunks of ``--chunk`` images alternate
            between the two; the median of the per-chunk ratios is the figure (the machine
            is shared, so absolute rates drift). The session is started and every Python
            worker has loaded its backbone before timing starts (a warm-up job); the cold
            first job, worker start-up and backbone load included, is shown apart.
als         ALS fit time, Spark (``pyspark.ml.recommendation.ALS(implicitPrefs=True)``,
            mapped as in :mod:`recommender.engines.spark`) against implicit, on the real data
            set's matrix and on bench_als' synthetic Zipf matrices (``--posts``), both with
            ``ALSParams()`` (64 factors, 20 iterations, BM25).
quality     The evaluation (``recommender.evaluation.evaluate``, 5 stratified splits) of the
            default method with ALS by implicit and by Spark, on the same splits and the
            same features: recall@10 mean and std of each, and the paired difference.

``--masters`` (default ``local[2] standalone``) gives the Spark masters for embed and als;
``standalone`` starts a real standalone cluster on this machine for the run (a master and
two workers of 1 core and 2 GB, separate processes from the pyspark wheel's
``bin/spark-class``: ``tests/spark_cluster.py``), stopped when the section is done.

    python -m benchmarks.bench_spark                                # everything (~40 min)
    python -m benchmarks.bench_spark --sections embed --masters local[2]
    python -m benchmarks.bench_spark --sections embed als --masters local[2] standalone \
        --images 660 --posts real
    python -m benchmarks.bench_spark --sections als --posts 300000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np

from .common import DATASET, REPO, emit, header, run_json, table

sys.path.insert(0, str(REPO / "tests"))
from spark_cluster import StandaloneCluster  # noqa: E402 - the tests' cluster, shared

MODULE = "benchmarks.bench_spark"
SECTIONS = ("embed", "als", "quality")


def _paths(limit: int | None) -> list[str]:
    from recommender.data.datasets import load_dataset

    ds = load_dataset(DATASET)
    paths = [str(ds.image_path(p)) for p in ds.posts if p.image]
    return paths[:limit] if limit else paths


# -------------------------------------------------------------------------------- embed
def _embed_chunk(engine, paths: list[str], folder: Path, backbone: str, tasks: int) -> None:
    """One engine's embed stage on ``paths`` into a fresh store (``tasks`` shards), deleted
    after; every image must embed."""
    from recommender.engines import EmbedJob
    from recommender.features.shards import ShardStore

    store = ShardStore(folder, "bench")
    size = -(-len(paths) // tasks)
    try:
        stats = engine.embed(EmbedJob(paths, store, backbone, shard_size=size))
        assert stats.embedded == len(paths), (stats, len(paths))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def embed_worker(master: str, images: int | None, chunk: int) -> dict:
    from recommender.engines import LocalEngine
    from recommender.engines import spark as se
    from recommender.vision.backbones import get_backbone

    paths = _paths(images)
    spark = se.get_session(master)
    cores = spark.sparkContext.defaultParallelism
    backbone = get_backbone()
    engines = {"local": LocalEngine(backbone), "spark": se.SparkEngine(spark=spark)}
    work = Path(tempfile.mkdtemp(prefix="bench-spark-"))  # every executor reaches /tmp here
    try:
        start = time.perf_counter()
        # Cold: the first job starts the Python workers, each imports TensorFlow and loads
        # the backbone; on two tasks per core every worker gets one.
        cold_images = paths[: 4 * cores]
        _embed_chunk(engines["spark"], cold_images, work / "cold", backbone.name, 2 * cores)
        cold = time.perf_counter() - start
        _embed_chunk(engines["local"], paths[:32], work / "warm", backbone.name, 1)  # trace
        chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
        local_s, spark_s, ratios, n = 0.0, 0.0, [], 0
        for i, part in enumerate(chunks):
            runs = {}
            for what in ("local", "spark") if i % 2 == 0 else ("spark", "local"):
                t = time.perf_counter()
                # The same shards for both: two tasks a core for Spark.
                _embed_chunk(engines[what], part, work / what, backbone.name, 2 * cores)
                runs[what] = time.perf_counter() - t
            local_s += runs["local"]
            spark_s += runs["spark"]
            n += len(part)
            ratios.append(runs["local"] / runs["spark"])  # Spark rate / local rate
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "master": master,
        "cores": cores,
        "images": n,
        "local_rate": n / local_s,
        "spark_rate": n / spark_s,
        "ratio": float(np.median(ratios)),
        "ratio_range": f"{np.percentile(ratios, 25):.2f}-{np.percentile(ratios, 75):.2f}",
        "spark_per_core": n / spark_s / cores,
        "cold_first_job_s": cold,
        "cold_images": len(cold_images),
    }


# ---------------------------------------------------------------------------------- als
def _matrix(size: str):
    from .bench_als import real_matrix, synthetic_matrix

    return real_matrix() if size == "real" else synthetic_matrix(int(size))


def als_worker(master: str, size: str) -> dict:
    from recommender.config import ALSParams
    from recommender.engines import spark as se
    from recommender.fit.als import fit_als

    matrix = _matrix(size)
    params = ALSParams()
    spark = se.get_session(master)
    start = time.perf_counter()
    fit_als(matrix, params)
    implicit_s = time.perf_counter() - start
    start = time.perf_counter()
    se.fit_als(matrix, params, spark=spark)
    spark_s = time.perf_counter() - start
    return {
        "data": "real data set" if size == "real" else "synthetic",
        "master": master,
        "posts": matrix.shape[0],
        "hashtags": matrix.shape[1],
        "pairs": int(matrix.nnz),
        "implicit_s": implicit_s,
        "spark_s": spark_s,
        "ratio": spark_s / implicit_s,
    }


# ------------------------------------------------------------------------------ quality
def quality_worker(master: str, splits: int) -> dict:
    from recommender.build import dataset_features
    from recommender.data.datasets import load_dataset
    from recommender.engines import spark as se
    from recommender.evaluation import Candidate, evaluate, image_keys, stratified_splits
    from recommender.fit import training
    from recommender.query.recommender import BuildConfig

    config = BuildConfig()
    dataset = load_dataset(DATASET)
    feats = dataset_features(dataset, config)
    keys = image_keys(dataset, dataset.posts, feats.image_rows)
    chosen = stratified_splits(dataset.posts, feats.image_rows, splits, image_keys=keys)
    spark = se.get_session(master)

    def run(fit) -> tuple[dict, float]:
        start = time.perf_counter()
        with mock.patch.object(training, "fit_als", fit):
            result = evaluate(
                dataset.posts, feats.features, feats.image_rows, config, splits=chosen,
                candidates=[Candidate(config.method, config.method)], n_sweep=(),
            )  # fmt: skip
        return result.per_split[config.method], time.perf_counter() - start

    local, local_s = run(training.fit_als)
    spark_run, spark_s = run(lambda m, p, progress=None: se.fit_als(m, p, spark=spark))
    out = {"master": master, "splits": splits, "local_s": local_s, "spark_s": spark_s}
    for metric in ("recall@10", "beyond_recall@10"):
        a, b = np.array(local[metric]), np.array(spark_run[metric])
        out[metric] = {
            "local_mean": float(a.mean()), "local_std": float(a.std(ddof=1)),
            "spark_mean": float(b.mean()), "spark_std": float(b.std(ddof=1)),
            "paired_diff_mean": float((b - a).mean()),
            "paired_diff_std": float((b - a).std(ddof=1)),
            "local": a.round(4).tolist(), "spark": b.round(4).tolist(),
        }  # fmt: skip
    return out


EMBED_COLUMNS = [
    ("master", "master", ""),
    ("images", "images", ",d"),
    ("local_rate", "local images/s", ".1f"),
    ("spark_rate", "Spark images/s", ".1f"),
    ("ratio", "ratio Spark/local (median)", ".2f"),
    ("ratio_range", "ratio IQR", ""),
    ("spark_per_core", "Spark images/s/core", ".1f"),
    ("cold_first_job_s", "cold first job s", ".1f"),
]
ALS_COLUMNS = [
    ("data", "data", ""),
    ("master", "master", ""),
    ("posts", "posts", ",d"),
    ("hashtags", "hashtags", ",d"),
    ("pairs", "pairs", ",d"),
    ("implicit_s", "implicit s", ".1f"),
    ("spark_s", "Spark s", ".1f"),
    ("ratio", "Spark / implicit", ".1f"),
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--masters", nargs="+", default=["local[2]", "standalone"])
    parser.add_argument("--images", type=int, default=None, help="first N images (default all)")
    parser.add_argument("--chunk", type=int, default=330, help="images per alternating chunk")
    parser.add_argument(
        "--posts",
        nargs="+",
        default=["real", "300000"],
        help="'real' or numbers of synthetic posts, for the ALS section",
    )
    parser.add_argument("--splits", type=int, default=5, help="evaluation splits")
    parser.add_argument("--quality-master", default="local[2]")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--master", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker == "embed":
        emit(embed_worker(args.master, args.images, args.chunk))
        return
    if args.worker == "als":
        emit(als_worker(args.master, args.size))
        return
    if args.worker == "quality":
        emit(quality_worker(args.master, args.splits))
        return
    env = {"TF_CPP_MIN_LOG_LEVEL": "3", "HASHTAG_DATASET": str(DATASET)}

    def on(master: str, args_: list[str]) -> dict:
        """A worker's result on ``master``; ``standalone``: on a cluster started for it."""
        if master != "standalone":
            return run_json([*args_, "--master", master], env)
        with StandaloneCluster(Path(tempfile.mkdtemp(prefix="bench-cluster-"))) as cluster:
            local_ip = {**env, "SPARK_LOCAL_IP": "127.0.0.1"}  # the driver binds there too
            out = run_json([*args_, "--master", cluster.url], local_ip)
        out["master"] = f"standalone ({cluster.n_workers} workers x {cluster.cores} core)"
        return out

    if "embed" in args.sections:
        header("Spark embed stage vs the local pipeline, same images, alternating chunks")
        rows = []
        for master in args.masters:
            extra = ["--images", str(args.images)] if args.images else []
            worker = [MODULE, "--worker", "embed", "--chunk", str(args.chunk), *extra]
            rows.append(on(master, worker))
            print(table(rows[-1:], EMBED_COLUMNS).split("\n", 2)[2], flush=True)
        print()
        print(table(rows, EMBED_COLUMNS))
    if "als" in args.sections:
        header("ALS fit: Spark vs implicit (ALSParams defaults), same matrix, same process")
        rows = []
        for size in args.posts:
            for master in args.masters:
                rows.append(on(master, [MODULE, "--worker", "als", "--size", size]))
                print(table(rows[-1:], ALS_COLUMNS).split("\n", 2)[2], flush=True)
        print()
        print(table(rows, ALS_COLUMNS))
    if "quality" in args.sections:
        header(f"Evaluation, ALS by implicit vs by Spark ({args.quality_master}), same splits")
        result = run_json(
            [
                MODULE,
                "--worker",
                "quality",
                "--master",
                args.quality_master,
                "--splits",
                str(args.splits),
            ],
            env,
        )
        for metric in ("recall@10", "beyond_recall@10"):
            r = result[metric]
            print(
                f"{metric}: implicit {r['local_mean']:.4f} ± {r['local_std']:.4f}, Spark "
                f"{r['spark_mean']:.4f} ± {r['spark_std']:.4f}; paired Spark - implicit "
                f"{r['paired_diff_mean']:+.4f} ± {r['paired_diff_std']:.4f} over "
                f"{result['splits']} splits"
            )
        print(f"time: implicit {result['local_s']:.0f} s, Spark {result['spark_s']:.0f} s")
        print(json.dumps(result))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
