"""The Spark engine: the build's embed and ALS stages on Apache Spark (pyspark >= 3.5).

``python -m recommender build DATA --engine spark [--spark-master URL]``. On the executors:
one embed task per shard (the local engine's
:func:`~recommender.features.pipeline.embed_shard`, into a feature store every executor
reaches; :mod:`~recommender.engines.spark.embed`, :mod:`~recommender.engines.spark.read`)
and Spark's ALS (:mod:`~recommender.engines.spark.als`). Everything else (reading the data
set, weighting the matrix, profiles, the image prior, the index, the write) runs on the
driver as in the local engine, streaming over the shards, so both engines write the same
model folder; as Spark aggregations those small results would shuffle every feature vector.
:mod:`~recommender.engines.spark.session` makes the session.
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
from recommender.features.shards import DEFAULT_SHARD_SIZE, MIN_AUTO_SHARD_SIZE

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

    def shard_size(self, images: int) -> int:
        """Images per shard when the user did not choose: two shards for every task slot
        (below ``2 x slots x DEFAULT_SHARD_SIZE`` images, default shards would leave
        executors idle: the demo data set is one shard of 10,000), at least
        ``MIN_AUTO_SHARD_SIZE`` images, at most ``DEFAULT_SHARD_SIZE``. The same cluster
        gives the same size, so a rerun resumes at the first missing shard."""
        slots = max(1, int(self.spark.sparkContext.defaultParallelism))
        return max(MIN_AUTO_SHARD_SIZE, min(DEFAULT_SHARD_SIZE, -(-int(images) // (2 * slots))))

    def fit_als(self, matrix, params: ALSParams, progress=None) -> tuple[np.ndarray, np.ndarray]:
        return fit_als(matrix, params, progress, spark=self.spark)

    def embed(self, job, progress=None):
        """Write the shards of ``job`` from the executors, one task per shard."""
        return embed_shards(self.spark, job, progress)
