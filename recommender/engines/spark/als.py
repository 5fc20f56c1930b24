"""Implicit ALS on Spark (``pyspark.ml.recommendation.ALS(implicitPrefs=True)``) with the
local engine's parameters; the factors come back to the driver as float32 arrays aligned
with the matrix's rows and columns.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable

import numpy as np

from recommender.config import ALSParams
from recommender.engines.spark.session import SparkError, Watch, get_session, is_local
from recommender.fit.als import FitError, weight_matrix

REG_SCALING = "regularization / mean hashtags per post"
# Ratings Spark receives for pairs whose implicit confidence alpha * value is <= 1.
MIN_RATING = 1e-6


def spark_ratings(weighted, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, rating) triples for Spark's ALS with ``alpha=1``, so that its
    confidence ``1 + rating`` equals implicit's ``alpha * value`` (see the module doc)."""
    coo = weighted.tocoo()
    ratings = np.maximum(alpha * coo.data.astype(np.float64) - 1.0, MIN_RATING)
    return coo.row.astype(np.int32), coo.col.astype(np.int32), ratings.astype(np.float32)


def spark_reg_param(matrix, regularization: float) -> float:
    """``regParam`` for Spark's ALS-WR: ``regularization`` over the mean row count."""
    per_row = np.diff(matrix.tocsr().indptr)
    mean = float(per_row[per_row > 0].mean()) if (per_row > 0).any() else 1.0
    return regularization / mean


def _factor_array(frame, n: int, rank: int) -> np.ndarray:
    """Collect an ALS factor DataFrame (id, features) into an (n, rank) float32 array;
    rows Spark never saw (no ratings) stay zero."""
    out = np.zeros((n, rank), np.float32)
    if hasattr(frame, "toArrow"):  # pyspark >= 4: columnar, no Python object per row
        table = frame.toArrow()
        ids = table.column("id").to_numpy()
        flat = table.column("features").combine_chunks().flatten().to_numpy()
        out[ids] = flat.reshape(len(ids), rank)
    else:
        pdf = frame.toPandas()
        if len(pdf):
            out[pdf["id"].to_numpy()] = np.stack(pdf["features"].to_numpy())
    return out


def fit_als(
    matrix,
    params: ALSParams,
    progress: Callable[[int, int], None] | None = None,
    *,
    spark=None,
    master: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """ALS on Spark with the local engine's parameters: (post_factors, tag_factors) float32,
    aligned with ``matrix``'s rows and columns.

    The same parameters on both solvers
    -----------------------------------
    ``ALSParams`` drives both. ``factors`` -> ``rank``, ``iterations`` -> ``maxIter``,
    ``random_state`` -> ``seed``; the matrix is weighted identically before either solver.

    * **Confidence.** ``implicit`` gives an observed pair the confidence ``alpha * value`` (its
      preference is 1 for every stored value); Spark gives ``1 + alpha_spark * |rating|`` with
      preference 1 only for ``rating > 0``. This engine passes Spark ``alpha = 1`` and the
      ratings ``alpha * value - 1``, so Spark's confidence is exactly ``alpha * value`` for
      every pair with ``alpha * value > 1``. Pairs with ``alpha * value <= 1`` (BM25 values
      below ``1 / alpha``: 0.05 by default) get a rating of ``1e-6``: preference 1, confidence
      1 instead of implicit's ``alpha * value``.
    * **Regularisation.** ``implicit`` adds ``regularization * I`` to every row's system;
      Spark's ALS-WR adds ``regParam * n_u * I``, ``n_u`` the row's number of positive ratings.
      No single ``regParam`` makes the two equal for every row; this engine passes
      ``regParam = regularization / mean(n_u)`` over the posts (the rows the recommendations
      come from), so a post with the average number of hashtags gets the same penalty.
      :data:`REG_SCALING` names the mapping and the benchmark measures it.
    * **Solver.** ``implicit`` runs 3 conjugate-gradient steps per row and iteration from a
      random start; Spark solves each row exactly (Cholesky). The factors differ; the
      evaluation's recall@10 is what is compared (see benchmarks/README.md).

    Spark's ALS has no per-iteration callback: ``progress`` is called at the start and the
    end. Raises :class:`~recommender.fit.als.FitError` for non-finite factors.
    """
    spark = spark or get_session(master)
    _ensure_checkpoint_dir(spark)
    if progress:
        progress(0, params.iterations)
    n_rows, n_cols = matrix.shape
    weighted = weight_matrix(matrix, params)
    rows, cols, ratings = spark_ratings(weighted, params.alpha)
    frame = _ratings_frame(spark, rows, cols, ratings)
    from pyspark.ml.recommendation import ALS

    blocks = max(1, spark.sparkContext.defaultParallelism)
    als = ALS(
        rank=params.factors,
        maxIter=params.iterations,
        regParam=spark_reg_param(matrix, params.regularization),
        alpha=1.0,
        implicitPrefs=True,
        nonnegative=False,
        seed=params.random_state,
        numUserBlocks=blocks,
        numItemBlocks=blocks,
        userCol="post",
        itemCol="tag",
        ratingCol="rating",
    )
    with Watch(spark) as watch:
        try:
            model = als.fit(frame)
            posts = _factor_array(model.userFactors, n_rows, params.factors)
            tags = _factor_array(model.itemFactors, n_cols, params.factors)
        except Exception as exc:  # noqa: BLE001 - a Spark job failure, said in one line
            raise watch.failed("ALS", exc) from None
    if not (np.isfinite(posts).all() and np.isfinite(tags).all()):
        raise FitError(
            "ALS produced non-finite factors; lower alpha or raise regularization and rebuild"
        )
    if progress:
        progress(params.iterations, params.iterations)
    return posts, tags


def _ensure_checkpoint_dir(spark) -> None:
    """ALS cuts its lineage every 10 iterations by checkpointing; without a checkpoint
    folder the lineage grows until the executors overflow their stacks (20 iterations do).

    Uses ``spark.checkpoint.dir`` when set (``--spark-conf spark.checkpoint.dir=hdfs://...``);
    a local master gets a temporary folder, any other ``spark-checkpoints`` inside the
    feature store's folder (``$HASHTAG_CACHE``), which every executor must reach already.
    """
    sc = spark.sparkContext
    if sc.getCheckpointDir():
        return
    configured = sc.getConf().get("spark.checkpoint.dir", "")
    if configured:
        sc.setCheckpointDir(configured)
    elif is_local(str(sc.master)):
        sc.setCheckpointDir(tempfile.mkdtemp(prefix="hashtag-recommender-checkpoints-"))
    else:
        from recommender.features.store import default_cache_dir

        folder = default_cache_dir() / "spark-checkpoints"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SparkError(
                f"cannot make Spark's checkpoint folder {folder} ({exc.strerror or exc}): set "
                "HASHTAG_CACHE to a folder every executor can write, or spark.checkpoint.dir"
            ) from None
        sc.setCheckpointDir(str(folder))


def _ratings_frame(spark, rows: np.ndarray, cols: np.ndarray, ratings: np.ndarray):
    import pandas as pd

    pdf = pd.DataFrame({"post": rows, "tag": cols, "rating": ratings})
    return spark.createDataFrame(pdf, "post int, tag int, rating float")
