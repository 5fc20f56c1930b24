"""Calibrated hedging: how likely a post that looks like the query carries each category.

Evidence hedging (:func:`recommender.query.hedging.evidence_hedge_mask`) removes another
category's search tags on two fixed thresholds, the same for every category. Calibration
learns instead, per category, how the evidence of a query (:data:`~recommender.query.hedging.
EVIDENCE_FEATURES`: the image prior of its search tag, its score and its rank among the
categories, and what the neighbours say: how many carry it, weighted or not, among the 50
nearest, among those with a tag list, and how alike they are) tells whether the post carries
one of the category's forms. That is a logistic regression per category, fitted at build
time on a sample of the model's own images (those whose posts say what they carry: a real
tag list, or a category whose photos carry only their search tag), each queried as if it
were new:

- its neighbours leave out the image itself and its exact duplicates;
- its image prior is the ridge regression's leave-one-out value, exact and cheap from the
  image's leverage (:func:`recommender.fit.als.fit_image_prior`), so the sample is
  not judged by a prior that has seen it.

Each category learns from the photos its posts are like. A category whose posts have tag
lists (the demo's animals, food, selfie, travel) learns from the sampled photos with a tag
list only: its question is whether a post with tags, like the query, carries it, and a
photo known by one search tag would only say "no" for it. A category whose photos carry only
their search tag (architecture, babies, cars, fitness, nature, wedding) learns from the
whole sample, its own photos included.

The query's probability per category (:meth:`HedgeCalibration.probability`) then decides
(``Method.calibrated_hedge``, ``Method.calibrated_single`` for a single-tag category): below
the threshold, the category's tags leave the ranking.
Like every hedging rule it only removes tags, so every shown score stays exact.

A calibration is plain numbers in the manifest (``manifest["hedge_calibration"]``), checked
on load; a model without categories, or one built before calibration, has none and
calibrated hedging then removes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from recommender.errors import ModelError
from recommender.query.hedging import EVIDENCE_FEATURES, WIDE_NEIGHBOURS, evidence_features

if TYPE_CHECKING:
    from recommender.query.scoring import Method

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


@dataclass(frozen=True)
class HedgeCalibration:
    """One logistic regression per category over ``features`` (names of
    :data:`EVIDENCE_FEATURES`).

    Arrays of shape (C, F) (``mean``, ``scale``: the features' standardisation) and (C,
    F + 1) (``weights``, the intercept last); ``fitted`` (C,) says which categories had
    enough examples (the others get NaN: never removed). ``images`` is the sample's size.
    """

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    fitted: np.ndarray
    images: int = 0
    features: tuple[str, ...] = EVIDENCE_FEATURES

    @property
    def n_categories(self) -> int:
        return int(self.weights.shape[0])

    def probability(self, features: np.ndarray) -> np.ndarray:
        """(C,) probability per category from the (C, len(EVIDENCE_FEATURES))
        :func:`evidence_features` (the calibration reads the columns it was fitted on)."""
        columns = [EVIDENCE_FEATURES.index(name) for name in self.features]
        x = np.asarray(features, np.float64)[:, columns]
        z = (x - self.mean) / self.scale
        logit = np.einsum("cf,cf->c", z, self.weights[:, :-1]) + self.weights[:, -1]
        p = 1.0 / (1.0 + np.exp(-np.clip(logit, -50.0, 50.0)))
        return np.where(self.fitted, p, np.nan)

    # ------------------------------------------------------------ plain data
    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "images": int(self.images),
            "fitted": [bool(f) for f in self.fitted],
            "mean": self.mean.round(8).tolist(),
            "scale": self.scale.round(8).tolist(),
            "weights": self.weights.round(8).tolist(),
        }

    @classmethod
    def from_dict(cls, saved: Any, n_categories: int) -> HedgeCalibration:
        """The calibration :meth:`to_dict` wrote, for a model of ``n_categories`` categories.

        Raises :class:`~recommender.errors.ModelError` if it is damaged or of another shape.
        """
        problem = "The model's hedging calibration is damaged"
        names = saved.get("features") if isinstance(saved, dict) else None
        if (
            not isinstance(names, list)
            or not names
            or len(set(map(str, names))) != len(names)
            or not set(map(str, names)) <= set(EVIDENCE_FEATURES)
        ):
            raise ModelError(
                f"{problem} (not over features of {list(EVIDENCE_FEATURES)}); rebuild it."
            )
        n_f = len(names)
        try:
            mean = np.array(saved["mean"], dtype=np.float64)
            scale = np.array(saved["scale"], dtype=np.float64)
            weights = np.array(saved["weights"], dtype=np.float64)
            fitted = np.array(saved["fitted"])
            images = saved.get("images", 0)
        except (KeyError, TypeError, ValueError):
            raise ModelError(f"{problem} (a field is missing or bad); rebuild it.") from None
        shapes_ok = (
            mean.shape == scale.shape == (n_categories, n_f)
            and weights.shape == (n_categories, n_f + 1)
            and fitted.shape == (n_categories,)
            and fitted.dtype == bool
            and isinstance(images, int)
        )
        if not shapes_ok:
            raise ModelError(f"{problem} (not shaped for {n_categories} categories); rebuild it.")
        if not (np.isfinite(mean).all() and np.isfinite(weights).all() and (scale > 0).all()):
            raise ModelError(f"{problem} (non-finite numbers); rebuild it.")
        return cls(mean, scale, weights, fitted, images, tuple(str(n) for n in names))


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


def calibrate(
    rec: Any,
    sample: CalibrationSample,
    method: Method,
    n_neighbors: int,
    progress: Callable[[int, int], None] | None = None,
) -> HedgeCalibration | None:
    """Query ``sample``'s images of ``rec`` (a :class:`~recommender.query.recommender.
    HashtagRecommender`: its index, scorer and arrays) as if new (see the module notes)
    and fit the calibration for ``method`` with ``n_neighbors`` neighbours; None when the
    model has no categories or no sample. ``progress(done, total)`` every 100 images."""
    from recommender.blas import serial_blas
    from recommender.query.scoring import neighbour_weights

    scorer = rec.scorer
    n_cats = len(scorer.category_tag)
    images = np.asarray(sample.images, dtype=np.int64)
    if n_cats == 0 or not (scorer.category_tag >= 0).any() or len(images) == 0:
        return None
    features = np.zeros((len(images), n_cats, len(EVIDENCE_FEATURES)))
    leverage = np.clip(np.asarray(sample.leverage, np.float64), 0.0, 0.999)
    targets = np.asarray(sample.prior_targets, np.float64)
    weight = method.prior_weight
    wide = max(n_neighbors, WIDE_NEIGHBOURS)
    with serial_blas():
        for j, i in enumerate(images):
            query = np.asarray(rec.arrays.features[i], dtype=np.float32)
            idx, sims = rec.index.search(query, wide + DUPLICATE_SLACK)
            keep = (idx != i) & (sims < DUPLICATE_SIMILARITY)
            around, around_sims = idx[keep][:wide], sims[keep][:wide]
            idx, sims = around[:n_neighbors], around_sims[:n_neighbors]
            w = neighbour_weights(sims, method)
            scores, prior, _ = scorer.score_parts(idx, w, method, query, None)
            value, share = scorer.category_evidence(prior, idx, method)
            score = scorer.category_scores(scores)
            if weight > 0:  # the leave-one-out prior, in the value and in the score
                h = leverage[j]
                loo = value - h * (targets[j] - value) / (1.0 - h)
                score += weight * (loo - value)
                value = loo
            features[j] = evidence_features(
                value, share, score, scorer.neighbour_evidence(idx, w, sims, around)
            )
            if progress is not None and ((j + 1) % 100 == 0 or j + 1 == len(images)):
                progress(j + 1, len(images))
    # a category whose posts have tag lists learns from the sampled photos with one
    with_list = scorer.has_list[images]
    fit_on = np.where(scorer.single_tag[None, :], True, with_list[:, None])
    return fit_calibration(features, scorer.carried(images), fit_on=fit_on)
