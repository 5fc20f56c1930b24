"""What the embed stage asks of an engine, and what the engine reports back.

Plain data shared by :mod:`recommender.engines` (the registry that picks an engine by name),
the engines themselves (:mod:`recommender.features.pipeline` runs the local one,
:mod:`recommender.engines.spark` the Spark one) and
:mod:`recommender.engines.embed_stage`. It imports none of them, so imports run one way:
registry -> engines -> this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from recommender.features.shards import DEFAULT_SHARD_SIZE, ShardStore

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class EmbedJob:
    """What the embed stage is asked to do (plain data: an engine may ship it to workers)."""

    # What to read each image from, in data set order: absolute paths, zip members or URIs
    # (``Dataset.image_path``; :func:`recommender.vision.images.read_bytes` reads all of them).
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
