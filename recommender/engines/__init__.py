"""Build engines by name: who runs the embed stage and the ALS fit.

``python -m recommender build DATA --engine NAME`` picks one from :data:`ENGINES`; ``local``
(the default) runs everything in this process; ``spark`` is the other entry of
:data:`ENGINES`. Every engine honours :class:`Engine`'s contract, so the stages after it
cannot tell which engine ran.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from recommender.config import ALSParams
from recommender.errors import ConfigError, DatasetError
from recommender.features.job import EmbedJob, EmbedStats, Progress

# EmbedJob, EmbedStats and Progress live in recommender.features.job (the engines import that,
# never this registry); they are re-exported here, part of the engine contract above.
__all__ = [
    "DEFAULT_ENGINE",
    "ENGINES",
    "EmbedJob",
    "EmbedStats",
    "Engine",
    "LocalEngine",
    "Progress",
    "engine_info",
    "get_engine",
]


class Engine(Protocol):
    """Who runs the embed stage and the ALS fit: the contract every engine honours.

    ``embed(job: EmbedJob, progress=None) -> EmbedStats``
        Write the feature shards of ``job.paths`` into ``job.store``
        (a :class:`~recommender.features.shards.ShardStore`). Shard ``i`` covers
        ``job.paths[i * S : (i + 1) * S]`` (``S = job.shard_size``) and holds, in path order,
        one row per readable image: its content hash, float16 features, thumbnail
        (``job.thumb_size`` px, see :func:`recommender.features.pipeline.embed_shard`), and the
        extra array ``position`` (int64, the image's index into ``job.paths``). Its ``meta`` is
        ``{"first": i * S, "size": <paths covered>, "errors": [[position, message], ...]}``
        for the unreadable images, which never fail the job. A shard that is already committed
        and whose hashes match the files is kept: a killed job resumes where it stopped.
        ``progress(done, total)`` counts images.

    ``fit_als(matrix, params, progress=None) -> (post_factors, tag_factors)``
        Implicit ALS on the posts x hashtags CSR ``matrix`` with
        :class:`~recommender.config.ALSParams`; float32 factors, finite or
        :class:`~recommender.fit.als.FitError`. ``progress(iteration, iterations)``.

    Every engine passes the shared contract test ``tests/test_engines.py``.
    """

    name: str

    def embed(self, job: EmbedJob, progress: Progress | None = None) -> EmbedStats: ...

    def fit_als(
        self, matrix: sp.csr_matrix, params: ALSParams, progress: Progress | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...


class LocalEngine:
    """Everything in this process: decoding threads + the backbone, ``implicit`` for ALS."""

    name = "local"

    def __init__(self, backbone=None) -> None:
        self._backbone = backbone  # tests pass a stand-in; None loads job.backbone

    def embed(self, job: EmbedJob, progress: Progress | None = None) -> EmbedStats:
        from recommender.data.records import is_uri
        from recommender.features.pipeline import embed_to_shards

        # file: URIs arrive as paths (Dataset.image_path); what is left is s3a://, hdfs://...
        remote = [p for p in job.paths if isinstance(p, str) and is_uri(p)]
        if remote:
            raise DatasetError(
                f"{len(remote)} images are URIs the local engine cannot open ({remote[0]}); "
                "build with --engine spark, which reads them with Spark's binaryFile"
            )
        return embed_to_shards(job, backbone=self._backbone, progress=progress)

    def fit_als(
        self, matrix: sp.csr_matrix, params: ALSParams, progress: Progress | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        from recommender.fit.als import fit_als

        return fit_als(matrix, params, progress)


# name -> factory(**options). A heavy engine's factory imports its module inside, so that
# ``import recommender`` never imports Spark: e.g. ``"spark": _spark_engine`` where
# ``def _spark_engine(**o): from .spark_engine import SparkEngine; return SparkEngine(**o)``.
def _spark_engine(**options: Any) -> Engine:
    from recommender.engines.spark import SparkEngine

    return SparkEngine(**options)


ENGINES: dict[str, Callable[..., Engine]] = {"local": LocalEngine, "spark": _spark_engine}
DEFAULT_ENGINE = "local"


def get_engine(name: str = DEFAULT_ENGINE, **options: Any) -> Engine:
    """The engine registered as ``name``; :class:`ConfigError` names the known ones."""
    if name not in ENGINES:
        raise ConfigError(f"unknown engine {name!r}; choose one of: {', '.join(sorted(ENGINES))}")
    return ENGINES[name](**options)


def engine_info(name: str = DEFAULT_ENGINE) -> dict[str, Any]:
    """What a model records of the engine that built it (``info`` shows it): its name, and
    what an engine's optional ``describe()`` adds (Spark: its version and master)."""
    describe = getattr(get_engine(name), "describe", None)
    return {"name": name, **(describe() if describe else {})}
