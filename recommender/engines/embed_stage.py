"""The embed stage, end to end: a data set's post images -> the features of every post.

It puts the images into an :class:`~recommender.features.job.EmbedJob`, lets the engine named
``engine`` (:mod:`recommender.engines`) write the shards into the feature store
(:mod:`recommender.features.store`), reads them back verified
(:func:`recommender.features.pipeline.read_shards`) and joins them to the posts. It sits above the
engine registry, which sits above the engines, so no import runs back.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recommender.engines import get_engine
from recommender.features import store as feature_store
from recommender.features.job import EmbedJob
from recommender.features.pipeline import (
    BuildProgress,
    DatasetFeatures,
    ShardThumbnails,
    read_shards,
)
from recommender.features.shards import DEFAULT_SHARD_SIZE

if TYPE_CHECKING:
    from recommender.config import BuildConfig
    from recommender.data.datasets import Dataset


def dataset_features(
    dataset: Dataset,
    config: BuildConfig,
    *,
    use_cache: bool = True,
    progress: BuildProgress | None = None,
    engine: str = "local",
    shard_size: int | None = None,
    cache_dir: str | Path | None = None,
    backbone=None,
) -> DatasetFeatures:
    """The embed stage: the features of every post image of ``dataset``, from shards.

    The engine (:mod:`recommender.engines`) writes the shards into the feature store
    (:mod:`recommender.features.store`; ``use_cache=False`` uses a private one deleted
    afterwards); they are then read back, verified, and joined to the posts. Images with the
    same content are embedded once and indexed once (``images_duplicate``).
    """

    if backbone is None:
        from recommender.vision.backbones import get_backbone

        backbone = get_backbone(config.backbone, config.weights)
    with_image = [i for i, p in enumerate(dataset.posts) if p.image]
    paths = [dataset.image_path(dataset.posts[i]) for i in with_image]
    key = feature_store.store_key(backbone, config.thumb_size)
    runner = get_engine(engine, **({"backbone": backbone} if engine == "local" else {}))
    if shard_size is None:  # the engine's choice (Spark: enough shards for its task slots)
        choose = getattr(runner, "shard_size", None)
        shard_size = choose(len(paths)) if choose else DEFAULT_SHARD_SIZE
    private = None if use_cache else tempfile.mkdtemp(prefix="hashtag-shards-")
    store = feature_store.run_store(key, dataset.root, private or cache_dir)
    job = EmbedJob(
        paths,
        store,
        backbone.name,
        config.weights,
        thumb_size=config.thumb_size,
        batch_size=config.batch_size,
        workers=config.workers,
        shard_size=shard_size,
    )
    start = time.perf_counter()
    try:
        with feature_store.lease(store):
            stats = runner.embed(
                job, (lambda d, t: progress("features", d, t)) if progress else None
            )
            job.store.sweep()  # what a killed writer (a worker, an earlier build) left
            shards, features = read_shards(job, getattr(backbone, "dim", 0))
    finally:
        if private:
            shutil.rmtree(private, ignore_errors=True)
    if use_cache:
        feature_store.prune(cache_dir=cache_dir)
    seconds = time.perf_counter() - start
    positions = [int(p) for s in shards for p in s.extra["position"]]
    hashes = [h for s in shards for h in s.hashes]
    errors = [(int(p), str(m)) for s in shards for p, m in s.meta.get("errors", [])]
    image_rows = [-1] * len(dataset.posts)
    seen: dict[str, int] = {}
    duplicates = 0
    for row, (pos, key_) in enumerate(zip(positions, hashes, strict=True)):
        if key_ in seen:
            duplicates += 1
            continue
        seen[key_] = row
        image_rows[with_image[pos]] = row
    problems = [f"{dataset.posts[with_image[pos]].image}: {msg}" for pos, msg in errors]
    counts = {
        "images_embedded": stats.embedded,
        "images_from_cache": stats.reused,
        "images_unreadable": len(errors),
        "images_duplicate": duplicates,
    }
    # name, input_size, dim, weights, weights_sha256, preprocessing: loading checks the last two
    info = backbone.fingerprint()
    classes = None
    if shards and all("class_ids" in s.extra and "class_probs" in s.extra for s in shards):
        from recommender.vision.content import TopClasses

        classes = TopClasses(
            np.concatenate([np.asarray(s.extra["class_ids"]) for s in shards]),
            np.concatenate([np.asarray(s.extra["class_probs"]) for s in shards]),
        )
    return DatasetFeatures(
        dataset,
        features,
        image_rows,
        ShardThumbnails(shards),
        counts,
        problems,
        seconds,
        info,
        hashes,
        classes,
    )
