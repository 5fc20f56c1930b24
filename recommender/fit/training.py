"""Training: from posts and their image features to a model.

:func:`fit_model` runs the hashtag model (ALS), the single-tag profiles and the image prior
and returns the model folder's parts with the sample calibration will query;
:func:`fit_recommender` does the whole fit: those parts, served by a
:class:`~recommender.query.recommender.HashtagRecommender`, with its calibrated hedging.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from recommender.config import BuildConfig
from recommender.data.datasets import Post
from recommender.errors import DatasetError
from recommender.fit.als import (
    fit_als,
    fit_image_prior,
    interaction_matrix,
    single_tag_profiles,
    tag_vocabulary,
    vote_targets,
)
from recommender.fit.calibration import CalibrationSample, calibration_sample, fit_hedging
from recommender.fit.original import fit_original
from recommender.query.hedging import dataset_categories, single_tag_categories
from recommender.query.neighbours import choose_kind
from recommender.query.recommender import HashtagRecommender
from recommender.store.arrays import ModelArrays, ModelParts


class _Rows(Sequence):
    """``items[rows[i]]`` for each ``i``, looked up when asked (thumbnails stay in shards)."""

    def __init__(self, items: Sequence, rows: np.ndarray) -> None:
        self.items, self.rows = items, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.items[int(self.rows[i])]


@dataclass
class Fitted:
    """What :func:`fit_model` makes: the model folder's ``parts``, and the sample of its
    images calibrated hedging is fitted on (:func:`recommender.fit.calibration.fit_hedging`,
    once the parts serve queries)."""

    parts: ModelParts
    calibration_sample: CalibrationSample


def fit_recommender(
    posts: Sequence[Post],
    features: np.ndarray,
    image_rows: Sequence[int],
    config: BuildConfig | None = None,
    **options: Any,
) -> HashtagRecommender:
    """Train on ``posts`` and return the recommender, its hedging calibrated.

    ``image_rows[i]`` is the row of ``features`` holding post ``i``'s image features, or
    -1 when the post has no (usable) image. Every post trains the hashtag model; only
    posts with a row enter the image index. ``options``: those of :func:`fit_model`
    (``thumbnails``, aligned with ``features``; ``manifest``; ``progress`` ...).
    """
    fitted = fit_model(posts, features, image_rows, config, **options)
    rec = HashtagRecommender(fitted.parts)
    fit_hedging(rec, fitted.calibration_sample)
    return rec


def fit_model(
    posts: Sequence[Post],
    features: np.ndarray,
    image_rows: Sequence[int],
    config: BuildConfig | None = None,
    thumbnails: Sequence[bytes] | None = None,
    manifest: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    fit_als: Callable[..., tuple[np.ndarray, np.ndarray]] = fit_als,
    prior_progress: Callable[[int, int], None] | None = None,
) -> Fitted:
    """Train on ``posts``; see :func:`fit_recommender`.

    ``fit_als(matrix, params, progress)`` is the engine's ALS (:mod:`recommender.engines`).
    ``features`` may be a float16 memory map: it is read in chunks for the prior.
    """
    config = config or BuildConfig()
    if len(image_rows) != len(posts):
        raise ValueError("image_rows must have one entry per post")
    post_tags = [p.hashtags for p in posts]
    vocab, counts = tag_vocabulary(post_tags, config.als.min_support)
    if not vocab:
        raise DatasetError("no hashtags to learn from: every post's hashtags were dropped")
    matrix = interaction_matrix(post_tags, vocab)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    post_factors, tag_factors = fit_als(matrix, config.als, progress)
    timings["als_seconds"] = round(time.perf_counter() - start, 3)
    start = time.perf_counter()
    with_image = [i for i, row in enumerate(image_rows) if row >= 0]
    if not with_image:
        raise DatasetError("no posts with an image to search")
    rows = np.array([image_rows[i] for i in with_image], dtype=np.int64)
    image_tags = matrix[with_image]
    profiles, image_profile = single_tag_profiles(matrix, image_tags)
    targets = vote_targets(image_tags, profiles, image_profile)
    timings["profiles_seconds"] = round(time.perf_counter() - start, 3)
    start = time.perf_counter()
    categories = dataset_categories(p.category for p in posts)
    single = single_tag_categories((posts[i].category, len(posts[i].hashtags)) for i in with_image)
    # Calibration learns from the photos whose posts say what they carry: a real tag list,
    # or a category whose photos carry only their search tag (not a lone #selfie post).
    sample = calibration_sample(
        np.array([len(posts[i].hashtags) >= 2 or posts[i].category in single for i in with_image])
    )
    prior_weights, prior_tags, leverage = cast(  # with leverage_of, also the leverages
        "tuple[np.ndarray, np.ndarray, np.ndarray]",
        fit_image_prior(features, targets, rows=rows, progress=prior_progress, leverage_of=sample),
    )
    calibration = _calibration_sample(sample, leverage, targets, prior_tags, vocab, categories)
    # Large models keep float16 features: half the memory, same neighbours. When every
    # row is indexed, in order, a float16 memory map is kept as it is (no copy).
    dtype = np.float16 if choose_kind(len(rows)) == "ivf" else np.float32
    if features.dtype == dtype and np.array_equal(rows, np.arange(len(features))):
        model_features = features
    else:
        model_features = np.ascontiguousarray(features[rows], dtype=dtype)
    timings["prior_seconds"] = round(time.perf_counter() - start, 3)
    start = time.perf_counter()
    # The original project's method, refitted for the page's comparison (its own factors).
    original = fit_original(posts, matrix, with_image)
    timings["original_seconds"] = round(time.perf_counter() - start, 3)
    arrays = ModelArrays(
        features=model_features,
        image_factors=post_factors[with_image],
        tag_factors=tag_factors,
        tag_counts=counts,
        image_tags_indptr=image_tags.indptr.astype(np.int64),
        image_tags_indices=image_tags.indices.astype(np.int32),
        profiles_indptr=profiles.indptr.astype(np.int64),
        profiles_indices=profiles.indices.astype(np.int32),
        profiles_data=profiles.data.astype(np.float32),
        image_profile=image_profile,
        prior_weights=prior_weights,
        prior_tags=prior_tags,
    )
    if original is not None:
        arrays.original_rows = original.rows
        arrays.original_image_factors = original.image_factors
        arrays.original_tags = original.tag_ids
        arrays.original_tag_factors = original.tag_factors
    index = {
        "tags": vocab,
        "images": [
            {
                "path": posts[i].image or "",
                "post_id": posts[i].post_id,
                "hashtags": list(posts[i].hashtags),
            }
            for i in with_image
        ],
    }
    full_manifest = dict(manifest or {})
    full_manifest["config"] = config.to_dict()
    full_manifest["fit_timings"] = timings
    # The search tags the posts were collected by: what hedging limits at query time.
    full_manifest["categories"] = categories
    # Those whose photos carry only their search tag: hedging judges them apart (see
    # recommender.query.hedging).
    full_manifest["single_tag_categories"] = single
    full_manifest.setdefault("counts", {})
    full_manifest["counts"].update(
        {
            "posts": len(posts),
            "images": len(with_image),
            "hashtags": len(vocab),
            "pairs": int(matrix.nnz),
        }
    )
    thumbs: Sequence[bytes] = [] if thumbnails is None else _Rows(thumbnails, rows)
    return Fitted(ModelParts(full_manifest, arrays, index, thumbs), calibration)


def _calibration_sample(
    sample: np.ndarray,
    leverage: np.ndarray,
    targets,
    prior_tags: np.ndarray,
    vocab: Sequence[str],
    categories: Sequence[str],
) -> CalibrationSample:
    """The sample's prior targets at each category's search tag (0 where the prior does not
    predict it), with their leverages: what calibration needs of the prior."""
    tag_ids = {t: i for i, t in enumerate(vocab)}
    predicted = set(int(t) for t in prior_tags)
    out = np.zeros((len(sample), len(categories)))
    rows = targets[sample].tocsc() if len(sample) else None
    for c, category in enumerate(categories):
        t = tag_ids.get(category, -1)
        if rows is not None and t in predicted:
            out[:, c] = rows[:, t].toarray().ravel()
    return CalibrationSample(sample, leverage, out)
