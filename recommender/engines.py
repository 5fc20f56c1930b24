"""Build engines by name: who runs the embed stage and the ALS fit.

``python -m recommender build DATA --engine NAME`` picks one from :data:`ENGINES`; ``local``
(the default) runs everything in this process. Another engine (``spark``, issue 11)
registers itself with :func:`register_engine` and must honour the same contract, so the
stages after it cannot tell which engine ran:

``embed(job: EmbedJob, progress=None) -> EmbedStats``
    Write the feature shards of ``job.paths`` into ``job.store``
    (a :class:`~recommender.shards.ShardStore`). Shard ``i`` covers
    ``job.paths[i * S : (i + 1) * S]`` (``S = job.shard_size``) and holds, in path order,
    one row per readable image: its content hash, float16 features, thumbnail
    (``job.thumb_size`` px, see :func:`recommender.features.embed_shard_range`), and the
    extra array ``position`` (int64, the image's index into ``job.paths``). Its ``meta`` is
    ``{"first": i * S, "size": <paths covered>, "errors": [[position, message], ...]}``
    for the unreadable images, which never fail the job. A shard that is already committed
    and whose hashes match the files is kept: a killed job resumes where it stopped.
    ``progress(done, total)`` counts images.

``fit_als(matrix, params, progress=None) -> (post_factors, tag_factors)``
    Implicit ALS on the posts x hashtags CSR ``matrix`` with
    :class:`~recommender.hashtag_model.ALSParams`; float32 factors, finite or
    :class:`~recommender.hashtag_model.FitError`. ``progress(iteration, iterations)``.

Every engine passes the shared contract test ``tests/test_engines.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from .errors import ConfigError
from .hashtag_model import ALSParams
from .shards import DEFAULT_SHARD_SIZE, ShardStore

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class EmbedJob:
    """What the embed stage is asked to do (plain data: an engine may ship it to workers)."""

    # What to read each image from, in data set order: absolute paths, zip members or URIs
    # (``Dataset.image_path``; :func:`recommender.images.read_bytes` reads all of them).
    paths: list
    store: ShardStore
    backbone: str
    weights: str | None = "default"
    thumb_size: int = 128
    batch_size: int = 32
    workers: int = 2
    shard_size: int = DEFAULT_SHARD_SIZE

    @property
    def n_shards(self) -> int:
        return -(-len(self.paths) // self.shard_size)

    def shard_range(self, number: int) -> tuple[int, int]:
        """The ``[first, last)`` positions in :attr:`paths` that shard ``number`` covers."""
        first = number * self.shard_size
        return first, min(len(self.paths), first + self.shard_size)


@dataclass
class EmbedStats:
    """What an embed run did: images through the backbone, reused, shards (re)written."""

    embedded: int = 0
    reused: int = 0
    shards_written: int = 0
    shards_kept: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Engine(Protocol):
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
        from .features import embed_to_shards

        return embed_to_shards(job, backbone=self._backbone, progress=progress)

    def fit_als(
        self, matrix: sp.csr_matrix, params: ALSParams, progress: Progress | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        from .hashtag_model import fit_als

        return fit_als(matrix, params, progress)


# name -> factory(**options). A heavy engine's factory imports its module inside, so that
# ``import recommender`` never imports Spark: e.g. ``"spark": _spark_engine`` where
# ``def _spark_engine(**o): from .spark_engine import SparkEngine; return SparkEngine(**o)``.
def _spark_engine(**options: Any) -> Engine:
    from .spark_engine import SparkEngine

    return SparkEngine(**options)


ENGINES: dict[str, Callable[..., Engine]] = {"local": LocalEngine, "spark": _spark_engine}
DEFAULT_ENGINE = "local"


def register_engine(name: str, factory: Callable[..., Engine]) -> None:
    """Make ``factory(**options)`` available as ``--engine name``."""
    ENGINES[name] = factory


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
