"""From a folder of posts to a saved model: read -> extract features -> fit -> write."""

from __future__ import annotations

import datetime as _dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .datasets import Dataset, load_dataset
from .errors import DatasetError
from .features import Extraction, FeatureCache, extract_features
from .recommender import BuildConfig, HashtagRecommender

# progress(stage, done, total); stages: "features", "als"
BuildProgress = Callable[[str, int, int], None]


@dataclass
class DatasetFeatures:
    """Features of a data set's images, aligned with its posts.

    ``image_rows[i]`` is the row of ``features`` for post ``i`` (-1: no usable image).
    """

    dataset: Dataset
    features: np.ndarray
    image_rows: list[int]
    thumbnails: list[bytes]
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    backbone: dict[str, Any] = field(default_factory=dict)


def backbone_cache_key(backbone) -> str:
    return f"{backbone.name}-{backbone.weights}"


def dataset_features(
    dataset: Dataset,
    config: BuildConfig,
    *,
    use_cache: bool = True,
    progress: BuildProgress | None = None,
) -> DatasetFeatures:
    """Extract the features of every post image of ``dataset`` (deduplicated by content)."""
    from .backbones import get_backbone

    backbone = get_backbone(config.backbone, config.weights)
    with_image = [i for i, p in enumerate(dataset.posts) if p.image]
    paths = [dataset.image_path(dataset.posts[i]) for i in with_image]
    cache = FeatureCache.for_backbone(backbone_cache_key(backbone)) if use_cache else None
    start = time.perf_counter()
    ex: Extraction = extract_features(
        paths,
        backbone,
        batch_size=config.batch_size,
        workers=config.workers,
        thumb_size=config.thumb_size,
        cache=cache,
        progress=(lambda d, t: progress("features", d, t)) if progress else None,
    )
    seconds = time.perf_counter() - start
    image_rows = [-1] * len(dataset.posts)
    seen: dict[str, int] = {}
    duplicates = 0
    for row, (pos, key) in enumerate(zip(ex.ok, ex.hashes, strict=False)):
        if key in seen:
            duplicates += 1
            continue
        seen[key] = row
        image_rows[with_image[pos]] = row
    problems = [f"{dataset.posts[with_image[pos]].image}: {msg}" for pos, msg in ex.errors]
    counts = {
        "images_embedded": len(ex.ok) - ex.cached,
        "images_from_cache": ex.cached,
        "images_unreadable": len(ex.errors),
        "images_duplicate": duplicates,
    }
    # name, input_size, dim, weights, weights_sha256, preprocessing: loading checks the last two
    info = backbone.fingerprint()
    return DatasetFeatures(
        dataset, ex.features, image_rows, ex.thumbnails, counts, problems, seconds, info
    )


def _evaluation_summary(
    dataset: Dataset,
    feats: DatasetFeatures,
    config: BuildConfig,
    splits: int,
    progress: BuildProgress | None,
) -> dict[str, Any]:
    from .evaluation import POPULARITY, Candidate, evaluate, image_keys

    start = time.perf_counter()
    result = evaluate(
        dataset.posts,
        feats.features,
        feats.image_rows,
        config,
        candidates=[Candidate(POPULARITY, None), Candidate(config.method, config.method)],
        n_splits=splits,
        keys=image_keys(dataset, dataset.posts, feats.image_rows),
        n_sweep=(),
        progress=progress,
    )
    return {**result.summary(), "seconds": round(time.perf_counter() - start, 1)}


def build_model(
    data: str | Path,
    out: str | Path,
    config: BuildConfig | None = None,
    *,
    format: str = "auto",
    use_cache: bool = True,
    progress: BuildProgress | None = None,
    evaluate: int = 0,
) -> tuple[HashtagRecommender, dict[str, Any]]:
    """Build a model from the data set at ``data`` and write it to ``out``.

    ``evaluate`` > 0 first runs that many evaluation splits (the default method against
    popularity, see :mod:`recommender.evaluation`) and stores the summary in the
    manifest under ``"evaluation"``.

    Returns the recommender and a summary (counts, problems, timings). A data set with
    nothing usable raises :class:`~recommender.errors.DatasetError`; bad records and images
    are skipped and counted.
    """
    config = config or BuildConfig()
    start = time.perf_counter()
    dataset = load_dataset(data, format)
    feats = dataset_features(dataset, config, use_cache=use_cache, progress=progress)
    if not any(r >= 0 for r in feats.image_rows):
        raise DatasetError(
            f"None of the {sum(1 for p in dataset.posts if p.image)} images in {data} could be "
            "read; check the image files."
        )
    evaluation = (
        _evaluation_summary(dataset, feats, config, evaluate, progress) if evaluate else None
    )
    fit_start = time.perf_counter()
    manifest = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "library_version": __version__,
        "dataset": {
            "path": os.path.abspath(dataset.root),
            "format": dataset.format,
            "fingerprint": dataset.fingerprint(),
            "report": dict(dataset.report.counts),
        },
        "counts": dict(feats.counts),
        "backbone": feats.backbone,
    }
    if evaluation:
        manifest["evaluation"] = evaluation
    rec = HashtagRecommender.fit(
        dataset.posts,
        feats.features,
        feats.image_rows,
        config,
        thumbnails=feats.thumbnails,
        manifest=manifest,
        progress=(lambda d, t: progress("als", d, t)) if progress else None,
    )
    fit_seconds = time.perf_counter() - fit_start
    total = time.perf_counter() - start
    rec.manifest["timings"] = {
        "features_seconds": round(feats.seconds, 3),
        "fit_seconds": round(fit_seconds, 3),
        "build_seconds": round(total, 3),
        "images_per_second": round(feats.counts["images_embedded"] / feats.seconds, 1)
        if feats.seconds
        else None,
    }
    rec.save(out)
    summary = {
        "model": str(Path(out)),
        "dataset": str(dataset.root),
        "format": dataset.format,
        "dataset_report": dataset.report.summary(),
        "problems": dataset.report.problems + feats.problems,
        **rec.manifest["counts"],
        **rec.manifest["timings"],
    }
    return rec, summary
