"""From a folder of posts to a saved model, in stages that talk through files.

``build_model`` runs, in order (each stage is a function here, tested on its own):

1. :func:`read_stage` -- the data set to a posts table
   (:class:`~recommender.data.datasets.Dataset`);
2. :func:`embed_stage` -- images to feature shards in the feature store, read back as one
   float16 memory map (:func:`recommender.engines.embed_stage.dataset_features`);
3. :func:`fit_stage` -- ALS, single-tag profiles and the image prior, streaming over the
   features (:func:`recommender.fit.training.fit_model`);
4. :func:`index_and_write_stage` -- the neighbour index and the model folder, atomically.

The engine (``local`` or ``spark``, :mod:`recommender.engines`) runs the embed stage and
the ALS fit. Progress: ``progress(stage, done, total)`` with the stages
``features``, ``evaluate``, ``als``, ``prior`` and ``write`` (see
:data:`recommender.ui.presentation.BUILD_STAGES`).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recommender import __version__
from recommender.data.datasets import Dataset, ReadOptions, load_dataset
from recommender.engines import DEFAULT_ENGINE, engine_info, get_engine
from recommender.engines.embed_stage import dataset_features
from recommender.errors import DatasetError
from recommender.features import store as feature_store
from recommender.features.pipeline import BuildProgress, DatasetFeatures
from recommender.fit.calibration import fit_hedging
from recommender.fit.training import Fitted, fit_model
from recommender.query.recommender import BuildConfig, HashtagRecommender
from recommender.store import model_io

if TYPE_CHECKING:
    from recommender.vision.backbones import Backbone

__all__ = [
    "BuildProgress",
    "DatasetFeatures",
    "build_model",
    "dataset_features",
    "embed_stage",
    "fit_stage",
    "index_and_write_stage",
    "read_stage",
]


def _stage(progress: BuildProgress | None, stage: str) -> Callable[[int, int], None] | None:
    return (lambda d, t: progress(stage, d, t)) if progress else None


def read_stage(
    data: str | Path | Sequence[str | Path],
    format: str = "auto",
    options: ReadOptions | None = None,
) -> Dataset:
    """Read stage: the data set at ``data`` (several paths: the parts of a split export) as a
    posts table (bad records counted, skipped); ``options``: what layouts offer to choose."""
    return load_dataset(data, format, options)


def embed_stage(
    dataset: Dataset,
    config: BuildConfig,
    *,
    engine: str = DEFAULT_ENGINE,
    use_cache: bool = True,
    shard_size: int | None = None,
    progress: BuildProgress | None = None,
    backbone: Backbone | None = None,
) -> DatasetFeatures:
    """Embed stage: every image to feature shards (resumable), joined to the posts.

    ``backbone``: an already loaded one to use instead of loading ``config.backbone``.
    Raises :class:`~recommender.errors.DatasetError` when no image could be read.
    """
    feats = dataset_features(
        dataset,
        config,
        use_cache=use_cache,
        progress=progress,
        engine=engine,
        shard_size=shard_size,
        backbone=backbone,
    )
    if not any(r >= 0 for r in feats.image_rows):
        raise DatasetError(_no_image_read(dataset, feats.problems))
    return feats


def _no_image_read(dataset: Dataset, problems: Sequence[str]) -> str:
    """One line saying why no image could be used: the counts per reason and the first."""
    with_image = sum(1 for p in dataset.posts if p.image)
    if with_image:
        if len(problems) > 1:
            reason = f"{failure_reasons(problems)}"
        else:
            reason = f"the first: {problems[0]}" if problems else "check the image files"
        return f"None of the {with_image} images in {dataset.root} could be read; {reason}"
    counts = dataset.report.counts
    reason = next(
        (line for line in dataset.report.problems if "missing" in line or "video" in line),
        f"{counts['images_missing']} referenced images are missing, "
        f"{counts['skipped_video']} videos and {counts['skipped_unsupported_media']} other "
        "files were skipped",
    )
    return (
        f"None of the {len(dataset.posts)} posts in {dataset.root} has an image that could "
        f"be read: {reason}"
    )


def _reason(message: str) -> str:
    """What an image failure is, without its path or numbers ("Over the decompression
    limit", "The file is too large", "HEIC photo: the image is truncated or corrupt")."""
    parts = re.sub(r"\s*'[^']*'", "", message).strip().split(": ")
    labelled = len(parts) > 1 and parts[0].endswith((" photo", " video"))
    reason = ": ".join(parts[:2]) if labelled else parts[0]
    return reason.rstrip(".").strip() or "unknown reason"


def failure_reasons(problems: Sequence[str]) -> str:
    """Counts per reason of the embed stage's problems (``"<image>: <message>"``), the most
    common first, and the first of the most common: "8 images: over the decompression
    limit (the first: ...)"."""
    if not problems:
        return "no image was embedded and no reason was recorded"
    messages = [problem.partition(": ")[2] or problem for problem in problems]
    counts = Counter(_reason(message) for message in messages)
    parts = [
        f"{count} image{'' if count == 1 else 's'}: {reason[0].lower()}{reason[1:]}"
        for reason, count in counts.most_common()
    ]
    top = counts.most_common(1)[0][0]
    example = next(p for p, m in zip(problems, messages, strict=True) if _reason(m) == top)
    return "; ".join(parts) + f" (the first: {example})"


def fit_stage(
    dataset: Dataset,
    feats: DatasetFeatures,
    config: BuildConfig,
    *,
    engine: str = DEFAULT_ENGINE,
    manifest: dict[str, Any] | None = None,
    progress: BuildProgress | None = None,
) -> Fitted:
    """Fit stage: ALS (by the engine), profiles and the image prior -> the model's parts
    (and the sample its hedging is calibrated on)."""
    return fit_model(
        dataset.posts,
        feats.features,
        feats.image_rows,
        config,
        thumbnails=feats.thumbnails,
        manifest=manifest,
        progress=_stage(progress, "als"),
        fit_als=get_engine(engine).fit_als,
        prior_progress=_stage(progress, "prior"),
    )


def index_and_write_stage(
    fitted: Fitted, out: str | Path, progress: BuildProgress | None = None
) -> HashtagRecommender:
    """Index and write stage: the neighbour index, then the model folder (atomically).

    Progress: ``("write", 0, 2)`` before the index, ``1`` once it is built, ``2`` written;
    between the last two, ``("calibrate", done, total)`` while calibrated hedging queries
    its sample of images (:mod:`recommender.fit.calibration`).
    """
    step = _stage(progress, "write") or (lambda _done, _total: None)
    step(0, 2)
    rec = HashtagRecommender(fitted.parts)
    step(1, 2)
    fit_hedging(rec, fitted.calibration_sample, _stage(progress, "calibrate"))
    rec.save(out)
    step(2, 2)
    return rec


def build_model(
    data: str | Path,
    out: str | Path,
    config: BuildConfig | None = None,
    *,
    format: str = "auto",
    use_cache: bool = True,
    progress: BuildProgress | None = None,
    evaluate: int = 0,
    engine: str = DEFAULT_ENGINE,
    shard_size: int | None = None,
    read_options: ReadOptions | None = None,
) -> tuple[HashtagRecommender, dict[str, Any]]:
    """Build a model from the data set at ``data`` and write it to ``out``.

    ``data`` may be several paths, the parts of a split Instagram export; ``read_options``
    are the choices some layouts offer (:class:`~recommender.data.formats.ReadOptions`).

    ``evaluate`` > 0 first runs that many evaluation splits and stores their summary in the
    manifest under ``"evaluation"``
    (:func:`recommender.evaluation.run.build_evaluation`). ``engine`` names
    who embeds and fits (:mod:`recommender.engines`); ``shard_size`` is the images per
    feature shard (:data:`recommender.features.shards.DEFAULT_SHARD_SIZE`).

    Returns the recommender and a summary (counts, problems, timings). A data set with
    nothing usable raises :class:`~recommender.errors.DatasetError`; bad records and images
    are skipped and counted.
    """
    config = config or BuildConfig()
    model_io.check_output(out)  # before any work: never build for a folder it cannot write
    if use_cache:  # and refuse a bad feature store setting before any work
        feature_store.check_cache_dir(feature_store.default_cache_dir())
        feature_store.max_bytes()
    start = time.perf_counter()
    dataset = read_stage(data, format, read_options)
    feats = embed_stage(
        dataset,
        config,
        engine=engine,
        use_cache=use_cache,
        shard_size=shard_size,
        progress=progress,
    )
    evaluation = None
    if evaluate:
        from recommender.evaluation.run import build_evaluation

        evaluation = build_evaluation(dataset, feats, config, evaluate, progress)
    fit_start = time.perf_counter()
    manifest = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "library_version": __version__,
        "dataset": {
            "path": os.path.abspath(dataset.root),
            **({"parts": [str(p) for p in dataset.parts]} if dataset.parts else {}),
            "format": dataset.format,
            "fingerprint": dataset.fingerprint(),
            "report": dict(dataset.report.counts),
        },
        "counts": dict(feats.counts),
        "backbone": feats.backbone,
        "engine": engine_info(engine),
    }
    if evaluation:
        manifest["evaluation"] = evaluation
    fitted = fit_stage(dataset, feats, config, engine=engine, manifest=manifest, progress=progress)
    fit_seconds = time.perf_counter() - fit_start
    total = time.perf_counter() - start
    fitted.parts.manifest["timings"] = {
        "features_seconds": round(feats.seconds, 3),
        "fit_seconds": round(fit_seconds, 3),
        "build_seconds": round(total, 3),
        "images_per_second": round(feats.counts["images_embedded"] / feats.seconds, 1)
        if feats.seconds
        else None,
    }
    rec = index_and_write_stage(fitted, out, progress)
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
