"""From a folder of posts to a saved model: read -> extract features -> fit -> write."""

from __future__ import annotations

import datetime as _dt
import os
import time
from pathlib import Path
from typing import Any

from . import __version__
from .datasets import Dataset, load_dataset
from .errors import DatasetError
from .features import BuildProgress, DatasetFeatures, dataset_features
from .recommender import BuildConfig, HashtagRecommender

__all__ = ["BuildProgress", "DatasetFeatures", "build_model", "dataset_features"]


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
