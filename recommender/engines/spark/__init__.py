"""The Spark engine: the build's embed and ALS stages on Apache Spark (pyspark >= 3.5).

``python -m recommender build DATA --engine spark [--spark-master URL]`` runs the two stages
that grow with the data on a Spark cluster (or ``local[*]``); everything else runs on the
driver exactly as in the local engine, so both engines write the same model folder.

Which stage runs where
----------------------
read (driver)
    The data set is read into the posts table on the driver (:func:`recommender.data.datasets
    .load_dataset`), as in the local engine.
embed (executors)
    :meth:`SparkEngine.embed`: one task per shard runs the local engine's shard step
    (:func:`recommender.features.pipeline.embed_shard`) on its executor and writes the
    shard into the feature store, which every executor must reach
    (:mod:`~recommender.engines.spark.embed`).
fit (executors, then driver)
    The posts x hashtags matrix is built and weighted (BM25) on the driver, exactly as the
    local engine does (:func:`recommender.fit.als.weight_matrix`), then factorised by
    ``pyspark.ml.recommendation.ALS(implicitPrefs=True)`` (:func:`fit_als`). The factors
    are collected to the driver as float32 arrays aligned with the matrix rows and columns.
profiles, image prior, index, write (driver)
    On the driver, streaming over the shards, exactly as in the local engine
    (:func:`recommender.fit.training.fit_model`). Why not Spark aggregations: what they build is
    small and the driver must hold it anyway. The prior accumulates X^T X (1280 x 1280) and
    X^T Y (1280 x at most ``PRIOR_MAX_TAGS`` = 20k hashtags, 100 MB) in float32 chunk by
    chunk from the memory-mapped float16 features; the profiles are one sparse product of
    the posts x hashtags matrix (about 12 bytes a pair: 400 MB at 3M posts). As Spark
    aggregations the same two matrices would cost a shuffle of every feature vector
    (2.5 kB an image) to save the driver one sequential read of the shards. The driver's
    memory is what the local engine needs after embedding: the features memory-mapped
    (paged in, not held), the matrix, the factors (64 float32 a post and a hashtag) and the
    prior's accumulators.

The modules: :mod:`~recommender.engines.spark.session` (the session),
:mod:`~recommender.engines.spark.read` (the images on the executors),
:mod:`~recommender.engines.spark.embed` (the embed stage) and
:mod:`~recommender.engines.spark.als` (ALS, and how its parameters map to implicit's).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recommender.config import ALSParams
from recommender.engines.spark.als import (
    MIN_RATING,
    REG_SCALING,
    fit_als,
    spark_ratings,
    spark_reg_param,
)
from recommender.engines.spark.embed import _extract_guarded, embed_shards
from recommender.engines.spark.session import (
    DEFAULT_MASTER,
    SparkError,
    _java_available,
    check_master,
    get_session,
    log_path,
    require_pyspark,
    spark_version,
)

__all__ = [
    "DEFAULT_MASTER",
    "MIN_RATING",
    "REG_SCALING",
    "SparkEngine",
    "SparkError",
    "_extract_guarded",
    "_java_available",
    "check_master",
    "fit_als",
    "get_session",
    "log_path",
    "require_pyspark",
    "spark_ratings",
    "spark_reg_param",
    "spark_version",
]


class SparkEngine:
    """The ``spark`` engine (see :mod:`recommender.engines`): the embed stage and the ALS
    fit on Spark. ``master`` None: spark-submit's, else ``local[*]``; a session already
    active in this process (the CLI starts one for ``--spark-master``) is used as it is."""

    name = "spark"

    def __init__(self, master: str | None = None, spark=None, conf: dict | None = None) -> None:
        self.master = master
        self.conf = conf
        self._spark = spark

    @property
    def spark(self):
        if self._spark is None:
            self._spark = get_session(self.master, self.conf)
        return self._spark

    def describe(self) -> dict[str, Any]:
        """What a model records of the engine that built it (``info`` shows it)."""
        return {
            "name": self.name,
            "spark_version": spark_version(self.spark),
            "master": str(self.spark.sparkContext.master),
        }

    def fit_als(self, matrix, params: ALSParams, progress=None) -> tuple[np.ndarray, np.ndarray]:
        return fit_als(matrix, params, progress, spark=self.spark)

    def embed(self, job, progress=None):
        """Write the shards of ``job`` from the executors, one task per shard."""
        return embed_shards(self.spark, job, progress)
