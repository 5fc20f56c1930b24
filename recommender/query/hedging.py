"""Category hedging: which other categories' search tags leave a query's ranking, and why.

A data set scraped by search hashtag (``Post.category``) teaches the model those search tags
very well, so a photo often gets several of them at once (#animals and #food on a baby
photo). :class:`CategoryHedge` holds a model's categories (which hashtags name one, see
:func:`category_forms`), weighs the evidence of one query about each (:data:`EVIDENCE_FEATURES`)
with the model's :class:`HedgeCalibration`, and names the tags a method's
``calibrated_hedge`` removes and those its ``calibrated_demote`` moves below the top
:data:`DEMOTE_TOP` (an uncertain other category's tag may belong in the list without leading
it). It removes and reorders tags, never changes a score, so every shown score stays exact.
The calibration is fitted at build time (:mod:`recommender.fit.calibration`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from recommender.errors import ModelError

if TYPE_CHECKING:
    from recommender.config import Method
    from recommender.query.scoring import Scored

# A category is "single-tag" when fewer than this share of its photos' posts carry a real
# hashtag list (2+ hashtags): in the demo data architecture, babies, cars, fitness, nature
# and wedding, whose photos are known only by their search tag.
SINGLE_TAG_SHARE = 0.1


def category_forms(tag: str) -> set[str]:
    """The search tag and its simple English singular form (``babies`` -> ``baby``).

    Only plain plurals: ``-ies`` -> ``-y``, ``-ches/-shes/-sses/-xes`` -> drop ``-es``,
    otherwise a final ``-s`` that does not follow another ``s`` (``fitness`` stays).
    """
    forms = {tag}
    if len(tag) > 4 and tag.endswith("ies"):
        forms.add(tag[:-3] + "y")
    elif tag.endswith(("ches", "shes", "sses", "xes")):
        forms.add(tag[:-2])
    elif len(tag) > 3 and tag.endswith("s") and not tag.endswith("ss"):
        forms.add(tag[:-1])
    return forms


def dataset_categories(categories: Iterable[str | None]) -> list[str]:
    """The distinct search tags of a data set's posts, sorted (none without categories)."""
    return sorted({c for c in categories if c})


def single_tag_categories(photos: Iterable[tuple[str | None, int]]) -> list[str]:
    """The categories whose photos carry only their search tag, sorted.

    ``photos``: ``(category, number of hashtags)`` of every post with an image. A category
    is single-tag when fewer than :data:`SINGLE_TAG_SHARE` of its photos' posts have 2+
    hashtags.
    """
    counts: dict[str, list[int]] = {}
    for category, n_tags in photos:
        if category:
            seen = counts.setdefault(category, [0, 0])
            seen[0] += 1
            seen[1] += int(n_tags) >= 2
    return sorted(c for c, (n, rich) in counts.items() if rich < SINGLE_TAG_SHARE * n)


def form_categories(categories: Iterable[str]) -> dict[str, str]:
    """Every form of every category (see :func:`category_forms`) -> its category.

    A form shared by two categories belongs to the first in sorted order.
    """
    out: dict[str, str] = {}
    for category in sorted(set(categories)):
        for form in sorted(category_forms(category)):
            out.setdefault(form, category)
    return out


def tag_categories(tags: Sequence[str], categories: Iterable[str]) -> np.ndarray:
    """(T,) int array: the index (into sorted ``categories``) each hashtag names, or -1."""
    names = sorted(set(categories))
    position = {c: i for i, c in enumerate(names)}
    forms = form_categories(names)
    return np.array([position[forms[t]] if t in forms else -1 for t in tags], dtype=np.int64)


def category_tags_mask(removed: np.ndarray, tag_category: np.ndarray) -> np.ndarray:
    """(T,) boolean mask of every form of the categories ``removed`` ((K,) boolean) names,
    from ``tag_category`` (:func:`tag_categories`)."""
    mask = np.zeros(len(tag_category), dtype=bool)
    is_cat = tag_category >= 0
    mask[is_cat] = removed[tag_category[is_cat]]
    return mask


# What the calibration knows of each category for one query, by name. From the image
# and the score: its search tag's image prior (without the method's prior_weight), that tag's score
# without the content term, and the category's rank by that score among the categories (0
# best, 1 worst). From the neighbours: the share of the query's neighbours carrying one of
# its forms, the same share with the neighbours weighted as in scoring, the share of the
# WIDE_NEIGHBOURS nearest, and, among the neighbours whose post has a tag list (2+
# hashtags), the share carrying it. And, the same for every category, how alike the
# neighbours are: the nearest one's similarity, their mean similarity, and the share of
# them with a tag list. A model keeps the names its calibration was fitted on
# (recommender.fit.calibration), so a calibration over fewer of them still reads.
EVIDENCE_FEATURES = (
    "prior",
    "share",
    "score",
    "rank",
    "weighted_share",
    "wide_share",
    "top_similarity",
    "mean_similarity",
    "list_share",
    "lists",
)
# How many nearest neighbours "wide_share" counts (more than a query's default 15: a
# steadier share for a category few photos carry).
WIDE_NEIGHBOURS = 50
# What the neighbours tell beyond "share" (see CategoryHedge.evidence).
NEIGHBOUR_FEATURES = EVIDENCE_FEATURES[4:]


def evidence_features(
    prior: np.ndarray, share: np.ndarray, score: np.ndarray, neighbours: dict | None = None
) -> np.ndarray:
    """(C, F) float64 array of :data:`EVIDENCE_FEATURES` per category.

    ``prior`` and ``share``: the (C,) prior values and neighbour shares; ``score``: the (C,)
    scores of the categories' search tags; ``neighbours``: :data:`NEIGHBOUR_FEATURES` by
    name, (C,) arrays or numbers; None: zeros (only the first four features then mean
    anything). :meth:`CategoryHedge.evidence` gathers them for a query.
    """
    score = np.asarray(score, dtype=np.float64)
    n = len(score)
    rank = np.empty(n, dtype=np.float64)
    rank[np.argsort(-score, kind="stable")] = np.arange(n) / max(n - 1, 1)
    neighbours = neighbours or {}
    columns = [np.asarray(prior, np.float64), np.asarray(share, np.float64), score, rank]
    columns += [
        np.broadcast_to(np.asarray(neighbours.get(name, 0.0), np.float64), (n,))
        for name in NEIGHBOUR_FEATURES
    ]
    return np.stack(columns, axis=1)


def calibrated_hedge_mask(
    probability: np.ndarray,
    tag_category: np.ndarray,
    single_tag: np.ndarray,
    threshold: float | None,
    single_threshold: float,
) -> np.ndarray | None:
    """Boolean mask of the category tags calibrated hedging removes (or, given a method's
    ``calibrated_demote`` thresholds, moves down), or None (none).

    ``probability``: per category, how likely a post that looks like the query carries one
    of its forms (:meth:`HedgeCalibration.probability`; NaN: not calibrated, kept). A
    category is removed when that is below ``threshold``, a single-tag category
    (``single_tag``) when it is below ``single_threshold``. ``threshold`` None: off.
    """
    if threshold is None or tag_category.size == 0 or not (tag_category >= 0).any():
        return None
    limit = np.where(single_tag, float(single_threshold), float(threshold))
    p = np.asarray(probability, dtype=np.float64)
    removed = np.isfinite(p) & (p < limit)
    mask = category_tags_mask(removed, tag_category)
    return mask if mask.any() else None


# The top of a ranking a person pastes: calibrated demotion keeps uncertain other
# categories' search tags out of it (see moved_below).
DEMOTE_TOP = 5


def moved_below(
    ranking: np.ndarray, demoted: np.ndarray | None, top: int = DEMOTE_TOP
) -> np.ndarray:
    """``ranking`` (hashtag ids, best first) with the ``demoted`` ones ((T,) boolean mask;
    None: none) moved below its first ``top`` places.

    Those places go to the best ``top`` tags not demoted; every other tag keeps its order
    after them, so a demoted tag follows them at once. Nothing is removed. With fewer than
    ``top`` tags not demoted, demoted ones fill the rest of the top in their order.
    """
    ranking = np.asarray(ranking, dtype=np.int64)
    if demoted is None or not demoted[ranking[:top]].any():
        return ranking
    first = np.flatnonzero(~demoted[ranking])[:top]
    rest = np.ones(len(ranking), dtype=bool)
    rest[first] = False
    return np.concatenate([ranking[first], ranking[rest]])


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


class CategoryHedge:
    """A model's categories, and which of their tags leave a query's ranking.

    Built from the model's hashtags ``tags``, its ``categories`` (search tags), those of
    them whose photos carry only their search tag (``single``), ``image_tags`` (which
    hashtags each indexed post carries, (N, T) sparse) and the model's ``calibration``
    (None: not calibrated, nothing is removed). The arrays are per hashtag
    (``tag_category``: the category each names, -1: none), per category (``category_tag``:
    its search tag's hashtag, -1: unknown; ``single_tag``) and per indexed image
    (``has_list``: its post has 2+ hashtags).
    """

    def __init__(
        self,
        tags: Sequence[str],
        categories: Iterable[str],
        single: Iterable[str],
        image_tags: sp.csr_matrix,
        calibration: HedgeCalibration | None = None,
    ) -> None:
        self.categories = sorted({str(c) for c in categories})
        single = {str(c) for c in single}
        tag_ids = {t: i for i, t in enumerate(tags)}
        self.tag_category = tag_categories(tags, self.categories)
        self.category_tag = np.array([tag_ids.get(c, -1) for c in self.categories], np.int64)
        self.single_tag = np.array([c in single for c in self.categories], dtype=bool)
        self.image_tags = sp.csr_matrix(image_tags)
        if self.image_tags.shape[1] != len(tags):
            raise ValueError("image_tags do not match the hashtags")
        self.has_list = np.diff(self.image_tags.indptr) >= 2
        forms = np.flatnonzero(self.tag_category >= 0)
        # (T, C): which category each hashtag is a form of
        self._tag_forms = sp.csr_matrix(
            (np.ones(len(forms), np.float32), (forms, self.tag_category[forms])),
            shape=(len(tags), len(self.categories)),
        )
        self.calibration = calibration

    @property
    def n_categories(self) -> int:
        return len(self.categories)

    def active(self, method: Method) -> bool:
        """Whether ``method`` hedges on this model (it asks to remove or to move tags, and
        the model is calibrated)."""
        asks = method.calibrated_hedge is not None or method.calibrated_demote is not None
        return asks and self.calibration is not None

    def wide_neighbours(self, method: Method) -> int:
        """How many nearest images a query under ``method`` should fetch for its evidence
        beyond its neighbours (0: none needed)."""
        calibration = self.calibration
        if not self.active(method) or calibration is None:
            return 0
        if "wide_share" not in calibration.features:
            return 0
        return WIDE_NEIGHBOURS

    def carried(self, images: np.ndarray) -> np.ndarray:
        """(S, C) boolean: whether each of the indexed ``images``' posts carries one of
        each category's forms."""
        return (self.image_tags[np.asarray(images)] @ self._tag_forms).toarray() > 0

    def evidence(
        self,
        method: Method,
        query: Scored,
        prior_of: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> np.ndarray:
        """(C, F) :func:`evidence_features` of one ``query`` scored under ``method``.

        Of ``query.nearest`` (the indexed images nearest the query, most similar first),
        the first :data:`WIDE_NEIGHBOURS` count for ``wide_share``. ``prior_of``: maps the
        (C,) prior values to those to use instead (calibration's leave-one-out prior), the
        scores moving with them.
        """
        n_cats = self.n_categories
        known = self.category_tag >= 0
        value = np.zeros(n_cats, dtype=np.float64)
        if method.prior_weight > 0:
            value[known] = query.at(query.prior, self.category_tag[known]) / method.prior_weight
        score = np.zeros(n_cats)
        score[known] = query.at(query.scores, self.category_tag[known])
        if query.content is not None:
            score[known] -= query.at(query.content, self.category_tag[known])
        n = len(query.weights)
        share = np.zeros(n_cats, dtype=np.float64)
        around: dict[str, np.ndarray | float] = {}
        if n and n_cats:
            nearest = np.asarray(query.nearest, dtype=np.int64)
            carried = self.carried(nearest[: max(n, WIDE_NEIGHBOURS)])  # one product
            share = carried[:n].mean(axis=0)
            around = self._around(carried, query.weights, query.similarities, nearest[:n])
        if prior_of is not None and method.prior_weight > 0:
            shifted = prior_of(value)
            score += method.prior_weight * (shifted - value)
            value = shifted
        return evidence_features(value, share, score, around)

    def _around(
        self,
        carried: np.ndarray,
        weights: np.ndarray,
        similarities: np.ndarray,
        neighbours: np.ndarray,
    ) -> dict[str, np.ndarray | float]:
        """:data:`NEIGHBOUR_FEATURES` by name, from ``carried`` of the nearest images (the
        neighbours first)."""
        n = len(neighbours)
        near = carried[:n].astype(np.float64)
        w = np.asarray(weights, np.float64)
        total = w.sum()
        w = w / total if total > 0 else np.full(len(w), 1.0 / len(w))
        lists = self.has_list[neighbours]
        sims = np.asarray(similarities, np.float64)
        return {
            "weighted_share": w @ near,
            "wide_share": carried.mean(axis=0),
            "top_similarity": float(sims[0]),
            "mean_similarity": float(sims.mean()),
            "list_share": near[lists].sum(axis=0) / max(int(lists.sum()), 1),
            "lists": float(lists.mean()),
        }

    def removed(self, method: Method, query: Scored) -> Hedging:
        """Which tags ``method``'s hedging takes out of the ranking of ``query``, which it
        moves below the top :data:`DEMOTE_TOP`, and why."""
        if not self.active(method) or self.calibration is None:  # (active: calibrated)
            return Hedging(None, None)
        probability = self.calibration.probability(self.evidence(method, query))
        mask = calibrated_hedge_mask(
            probability,
            self.tag_category,
            self.single_tag,
            method.calibrated_hedge,
            method.calibrated_single,
        )
        demoted = calibrated_hedge_mask(
            probability,
            self.tag_category,
            self.single_tag,
            method.calibrated_demote,
            method.calibrated_demote_single,
        )
        return Hedging(mask, probability, demoted)


@dataclass(frozen=True, eq=False)
class Hedging:
    """What hedging did to one ranking: ``removed``, the (T,) mask of the tags it took out
    (None: none), ``demoted``, the (T,) mask of those it moves below the top
    :data:`DEMOTE_TOP` (None: none), and why: ``probability``, the calibration's (C,)
    chance that a post like the query carries each category (None: no hedging asked or
    possible)."""

    removed: np.ndarray | None
    probability: np.ndarray | None
    demoted: np.ndarray | None = None
