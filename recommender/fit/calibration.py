"""Fitting calibrated hedging: per category, how likely a post like the query carries it.

One logistic regression per category over the query's evidence
(:data:`~recommender.query.hedging.EVIDENCE_FEATURES`), fitted at build time on a sample of
the model's own images (those whose posts say what they carry: a real tag list, or a
category whose photos carry only their search tag). Each is queried as if it were new,
through the recommender's own query code, except that its neighbours leave out the image
itself and its exact duplicates and its image prior is the ridge regression's leave-one-out
value (exact and cheap from the image's leverage, :func:`recommender.fit.als.fit_image_prior`).
A category whose posts have tag lists learns from the sampled photos with a tag list only; a
single-tag category learns from the whole sample. The result
(:class:`~recommender.query.hedging.HedgeCalibration`) is kept in the manifest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from recommender.blas import serial_blas
from recommender.config import Method
from recommender.query.hedging import EVIDENCE_FEATURES, WIDE_NEIGHBOURS, HedgeCalibration
from recommender.query.scoring import DEFAULT_NEIGHBOURS

if TYPE_CHECKING:
    from recommender.query.recommender import HashtagRecommender

# How many of the model's images are queried to fit the calibration: a fixed number, so a
# million-image build pays the same seconds as the demo's (whose ~2,900 eligible photos
# are all queried).
CALIBRATION_IMAGES = 4000
# A category is calibrated only with at least this many sampled images on each side
# (carrying one of its forms, and not).
MIN_EXAMPLES = 10
# The L2 penalty of each category's logistic regression (on standardised features).
CALIBRATION_L2 = 1.0
# Neighbours at or above this similarity are the image itself or an exact duplicate.
DUPLICATE_SIMILARITY = 0.9999
# How many more nearest images a sampled image fetches, so that it still has its
# neighbours after leaving out itself and its duplicates.
DUPLICATE_SLACK = 5


@dataclass(frozen=True)
class CalibrationSample:
    """What training hands calibration about its sample (not saved).

    ``images``: (S,) positions of the sampled images in the model's index; ``leverage``:
    (S,) each one's leverage in the image prior's ridge regression; ``prior_targets``: (S,
    C) what each stood for in that regression at its categories' search tags (0 where the
    prior does not predict the tag).
    """

    images: np.ndarray
    leverage: np.ndarray
    prior_targets: np.ndarray


def calibration_sample(
    eligible: np.ndarray, size: int = CALIBRATION_IMAGES, seed: int = 0
) -> np.ndarray:
    """(S,) sorted positions of at most ``size`` of the images ``eligible`` ((N,) boolean)
    marks, drawn reproducibly."""
    pool = np.flatnonzero(np.asarray(eligible, dtype=bool))
    if len(pool) <= size:
        return pool.astype(np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(pool, size=size, replace=False)).astype(np.int64)


def _logistic(x: np.ndarray, y: np.ndarray, l2: float, iterations: int = 50) -> np.ndarray:
    """Weights (F + 1,) of an L2 logistic regression of ``y`` on standardised ``x`` (the
    intercept last, unpenalised), by Newton's method."""
    xs = np.column_stack([x, np.ones(len(x))])
    w = np.zeros(xs.shape[1])
    penalty = np.full(xs.shape[1], float(l2))
    penalty[-1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(xs @ w, -50.0, 50.0)))
        grad = xs.T @ (p - y) + penalty * w
        hess = (xs * (p * (1.0 - p))[:, None]).T @ xs + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def fit_calibration(
    features: np.ndarray,
    carried: np.ndarray,
    l2: float = CALIBRATION_L2,
    fit_on: np.ndarray | None = None,
    names: tuple[str, ...] = EVIDENCE_FEATURES,
) -> HedgeCalibration:
    """Fit one logistic regression per category.

    ``features``: (S, C, F) :func:`~recommender.query.hedging.evidence_features` of S sampled
    images (F features named ``names``); ``carried``: (S, C) whether each one's post
    carries one of the category's forms; ``fit_on``: (S, C) which images each category
    learns from (None: all). A category with fewer than :data:`MIN_EXAMPLES` of those on
    either side is not fitted.
    """
    features = np.asarray(features, dtype=np.float64)
    carried = np.asarray(carried, dtype=bool)
    n_s, n_c, n_f = features.shape
    if len(names) != n_f:
        raise ValueError(f"{n_f} features but {len(names)} names")
    fit_on = np.ones((n_s, n_c), bool) if fit_on is None else np.asarray(fit_on, bool)
    mean = np.zeros((n_c, n_f))
    scale = np.ones((n_c, n_f))
    weights = np.zeros((n_c, n_f + 1))
    fitted = np.zeros(n_c, dtype=bool)
    for c in range(n_c):
        y = carried[fit_on[:, c], c]
        if min(int(y.sum()), int((~y).sum())) < MIN_EXAMPLES:
            continue
        x = features[fit_on[:, c], c, :]
        mean[c] = x.mean(axis=0)
        sd = x.std(axis=0)
        scale[c] = np.where(sd > 1e-12, sd, 1.0)
        weights[c] = _logistic((x - mean[c]) / scale[c], y.astype(np.float64), l2)
        fitted[c] = np.isfinite(weights[c]).all()
        if not fitted[c]:
            weights[c] = 0.0
    return HedgeCalibration(mean, scale, weights, fitted, n_s, tuple(names))


def _left_out(value: np.ndarray, h: float, target: np.ndarray) -> np.ndarray:
    """The prior of a training image as if it had not trained the prior (leave-one-out,
    with its leverage ``h``)."""
    return value - h * (target - value) / (1.0 - h)


def calibrate(
    rec: HashtagRecommender,
    sample: CalibrationSample,
    method: Method,
    n_neighbours: int,
    progress: Callable[[int, int], None] | None = None,
) -> HedgeCalibration | None:
    """Query ``sample``'s images of ``rec`` as if new (see the module notes) and fit the
    calibration for ``method`` with ``n_neighbours`` neighbours; None when the model has no
    categories or no sample. Each image goes through the recommender's own query
    (:meth:`~recommender.query.recommender.HashtagRecommender.score_nearest` and
    :meth:`~recommender.query.hedging.CategoryHedge.evidence`); only its neighbour search
    (without itself) and its prior (leave-one-out) are the sample's own.
    ``progress(done, total)`` every 100 images."""
    hedge = rec.hedge
    images = np.asarray(sample.images, dtype=np.int64)
    if hedge.n_categories == 0 or not (hedge.category_tag >= 0).any() or len(images) == 0:
        return None
    features = np.zeros((len(images), hedge.n_categories, len(EVIDENCE_FEATURES)))
    leverage = np.clip(np.asarray(sample.leverage, np.float64), 0.0, 0.999)
    targets = np.asarray(sample.prior_targets, np.float64)
    wide = max(n_neighbours, WIDE_NEIGHBOURS)
    with serial_blas():
        for j, i in enumerate(images):
            query = np.asarray(rec.arrays.features[i], dtype=np.float32)
            idx, sims = rec.index.search(query, wide + DUPLICATE_SLACK)
            keep = (idx != i) & (sims < DUPLICATE_SIMILARITY)
            s = rec.score_nearest(query, idx[keep][:wide], sims[keep][:wide], n_neighbours, method)
            h, target = leverage[j], targets[j]
            features[j] = hedge.evidence(
                method,
                s,
                prior_of=partial(_left_out, h=h, target=target),
            )
            if progress is not None and ((j + 1) % 100 == 0 or j + 1 == len(images)):
                progress(j + 1, len(images))
    # a category whose posts have tag lists learns from the sampled photos with one
    with_list = hedge.has_list[images]
    fit_on = np.where(hedge.single_tag[None, :], True, with_list[:, None])
    return fit_calibration(features, hedge.carried(images), fit_on=fit_on)


def fit_hedging(
    rec: HashtagRecommender,
    sample: CalibrationSample,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Fit ``rec``'s calibrated hedging on the ``sample`` training drew, for the model's own
    method and the default number of neighbours, and hand it to ``rec`` (kept in its
    manifest, with the seconds it took)."""
    start = time.perf_counter()
    calibration = calibrate(rec, sample, rec.method, DEFAULT_NEIGHBOURS, progress)
    timings = rec.manifest.setdefault("fit_timings", {})
    timings["calibration_seconds"] = round(time.perf_counter() - start, 3)
    rec.use_calibration(calibration)
