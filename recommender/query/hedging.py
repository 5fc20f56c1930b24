"""Category search tags, and hedging: limiting other categories' search tags in a ranking.

A data set scraped by search hashtag (``Post.category``) teaches the model those search
tags very well, so a photo often gets several of them at once (#animals and #food on a baby
photo). Which hashtags name a category: the search tag itself and its simple singular
forms (``animals`` -> ``animal``, ``babies`` -> ``baby``, ``cars`` -> ``car``), see
:func:`category_forms`.

Hedging (``Method.category_margin``) is a post-ranking filter: a category's tags stay in
the ranking only if the category's best tag scores within ``margin`` of the best-scoring
category tag. It removes tags from the ranking; it never changes a score, so the
explanation of every tag that is shown stays exact. A model knows its categories from
its data set (``manifest["categories"]``); one built from a data set without categories,
or before they were stored, has nothing to hedge.

Head hedging (``Method.head_hedge``) uses what the backbone's ImageNet head sees instead.
A curated table, ``assets/imagenet_categories.csv``, names the classes that show a
category (animals: ImageNet's animal classes; food: dishes, fruit, vegetables; cars);
:func:`class_categories` reads it for a model's categories. When the query's top
:data:`~recommender.vision.content.TOP_CLASSES` classes give one such category at least
``head_hedge`` probability, the search tags of every other category the head can name
and gives no probability at all are removed (a photo the head calls a plate of food loses
#animals and #cars). A category the head supports is never removed; one it cannot name
(wedding, fitness, travel ...) is removed too only with ``Method.head_hedge_unnamed``.
Like the margin rule it only removes tags from a ranking.

Evidence hedging (``Method.evidence_hedge``) asks the model's own evidence for each
category: the image prior's value for its search tag (how much the training photos that
look like this one carried it) and how many of the query's neighbours carry one of its
forms. A category both call unlikely leaves the ranking: its search tag's prior below
``evidence_hedge`` and at most a share ``evidence_agreement`` of the neighbours carrying
it. A category whose photos carry only their search tag (:func:`single_tag_categories`,
kept in ``manifest["single_tag_categories"]``) has no tag lists to be unlikely in, only
photos: it stays while any neighbour carries it. See :func:`evidence_hedge_mask`.

Calibrated hedging (``Method.calibrated_hedge``) weighs the same evidence, with the
category's score and rank and more of what the neighbours say (:data:`EVIDENCE_FEATURES`),
by a logistic regression per category fitted at build time (:mod:`recommender.fit.calibration`):
a category whose probability of being carried is below the threshold leaves the ranking.
See :func:`calibrated_hedge_mask`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from recommender.errors import BackboneError

CLASS_CATEGORIES_PATH = (
    Path(__file__).resolve().parent.parent / "assets" / "imagenet_categories.csv"
)
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


def hedge_mask(
    scores: np.ndarray, tag_category: np.ndarray, margin: float | None
) -> np.ndarray | None:
    """Boolean mask of the category tags to remove from a ranking, or None (remove none).

    A category's tags are kept when its best tag's score is within ``margin`` of the best
    score of any category tag; the others' tags are removed. ``margin`` None: no hedging.
    """
    if margin is None or tag_category.size == 0:
        return None
    is_cat = tag_category >= 0
    if not is_cat.any():
        return None
    n_cats = int(tag_category.max()) + 1
    best = np.full(n_cats, -np.inf)
    np.maximum.at(best, tag_category[is_cat], np.asarray(scores, np.float64)[is_cat])
    keep = best >= best.max() - float(margin)
    return category_tags_mask(~keep, tag_category)


def evidence_hedge_mask(
    prior: np.ndarray,
    carried: np.ndarray,
    tag_category: np.ndarray,
    single_tag: np.ndarray,
    threshold: float | None,
    agreement: float,
) -> np.ndarray | None:
    """Boolean mask of the category tags the model's evidence removes, or None (remove none).

    Per category (``(C,)`` arrays, categories as in ``tag_category``): ``prior``, the image
    prior's value for its search tag (without the method's ``prior_weight``; 0 without a
    prior); ``carried``, the share of the query's neighbours whose post carries one of its
    forms; ``single_tag``, whether its photos carry only their search tag. A category is
    removed when its ``prior`` is below ``threshold`` and its ``carried`` share is at most
    ``agreement`` (a single-tag category: when no neighbour carries it). ``threshold``
    None: no evidence hedging.
    """
    if threshold is None or tag_category.size == 0 or not (tag_category >= 0).any():
        return None
    limit = np.where(single_tag, 0.0, float(agreement))
    removed = (np.asarray(prior) < float(threshold)) & (np.asarray(carried) <= limit + 1e-9)
    mask = category_tags_mask(removed, tag_category)
    return mask if mask.any() else None


def read_class_categories(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Read a category -> ImageNet classes table (``category,classes``; ``#`` lines are
    comments; classes are indices or ``a-b`` ranges, space-separated).

    Raises :class:`~recommender.errors.BackboneError` naming the line of anything malformed.
    """
    from recommender.vision.content import N_CLASSES

    path = Path(path)
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BackboneError(f"cannot read the class -> category table {path}: {exc}") from None
    rows = [(n, line) for n, line in enumerate(lines, 1) if line.strip() and line[0] != "#"]
    if not rows or rows[0][1].strip() != "category,classes":
        raise BackboneError(f"{path}: the header must be category,classes")
    out: dict[str, tuple[int, ...]] = {}
    for lineno, line in rows[1:]:
        where = f"{path}, line {lineno}"
        category, _, spec = line.partition(",")
        category = category.strip()
        ids: list[int] = []
        try:
            for part in spec.split():
                lo, _, hi = part.partition("-")
                ids.extend(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            raise BackboneError(f"{where}: classes are indices or a-b ranges: {spec!r}") from None
        if not category or category in out or not ids:
            raise BackboneError(f"{where}: expected a new category and its classes, got {line!r}")
        if min(ids) < 0 or max(ids) >= N_CLASSES:
            raise BackboneError(f"{where}: class indices lie in 0-{N_CLASSES - 1}")
        out[category] = tuple(ids)
    return out


@functools.cache
def _packaged_class_categories() -> dict[str, tuple[int, ...]]:
    return read_class_categories(CLASS_CATEGORIES_PATH)


def class_categories(
    categories: Iterable[str], table: dict[str, tuple[int, ...]] | None = None
) -> np.ndarray:
    """(1000,) int array: the index (into sorted ``categories``) of the category each
    ImageNet class shows, or -1 (also for the table's categories the model lacks).

    ``table``: category -> classes (:func:`read_class_categories`); the packaged one by
    default. A class listed under two of the model's categories goes to the first.
    """
    from recommender.vision.content import N_CLASSES

    table = _packaged_class_categories() if table is None else table
    out = np.full(N_CLASSES, -1, dtype=np.int64)
    for i, category in enumerate(sorted(set(categories))):
        ids = np.asarray(table.get(category, ()), dtype=np.int64)
        free = ids[out[ids] < 0]
        out[free] = i
    return out


def head_hedge_mask(
    classes: np.ndarray | None,
    class_category: np.ndarray,
    tag_category: np.ndarray,
    threshold: float | None,
    unnamed: bool = False,
) -> np.ndarray | None:
    """Boolean mask of the category tags the head's view removes, or None (remove none).

    ``classes``: the query's (1000,) class probabilities; only its top
    :data:`~recommender.vision.content.TOP_CLASSES` count. A category's support is the summed
    probability of those classes that show it (``class_category``). When some category's
    support reaches ``threshold``, the tags of every category the head can name (one class
    or more) whose support is 0 are removed; ``unnamed``: also those of the categories no
    class shows. ``threshold`` None: no head hedging.
    """
    if threshold is None or classes is None or tag_category.size == 0:
        return None
    if not (class_category >= 0).any() or not (tag_category >= 0).any():
        return None
    from recommender.vision.content import keep_top

    n_cats = int(max(class_category.max(), tag_category.max())) + 1
    probs = keep_top(classes)
    shown = class_category >= 0
    support = np.bincount(class_category[shown], weights=probs[shown], minlength=n_cats)
    if support.max() < float(threshold):
        return None
    nameable = np.bincount(class_category[shown], minlength=n_cats) > 0
    removed = (nameable | bool(unnamed)) & (support <= 0)
    mask = category_tags_mask(removed, tag_category)
    return mask if mask.any() else None


# ---------------------------------------------------------------- calibrated hedging
# What the calibrated rule knows of each category for one query, by name. From the image
# and the score: its search tag's image prior (as in evidence hedging), that tag's score
# without the content term, and the category's rank by that score among the categories (0
# best, 1 worst). From the neighbours: the share of the query's neighbours carrying one of
# its forms, the same share with the neighbours weighted as in scoring, the share of the
# WIDE_NEIGHBOURS nearest, and, among the neighbours whose post has a tag list (2+
# hashtags), the share carrying it. And, the same for every category, how alike the
# neighbours are: the nearest one's similarity, their mean similarity, and the share of
# them with a tag list. A model keeps the names its calibration was fitted on
# (recommender.fit.calibration), so a calibration over the first four (the fifth session's)
# still reads.
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
# What the neighbours tell beyond "share" (see Scorer.neighbour_evidence).
NEIGHBOUR_FEATURES = EVIDENCE_FEATURES[4:]


def evidence_features(
    prior: np.ndarray, share: np.ndarray, score: np.ndarray, neighbours: dict | None = None
) -> np.ndarray:
    """(C, F) float64 array of :data:`EVIDENCE_FEATURES` per category.

    ``prior`` and ``share``: the (C,) prior values and neighbour shares
    (:meth:`~recommender.query.scoring.Scorer.category_evidence`); ``score``: the (C,) scores of
    the categories' search tags; ``neighbours``: :data:`NEIGHBOUR_FEATURES` by name
    (:meth:`~recommender.query.scoring.Scorer.neighbour_evidence`), (C,) arrays or numbers; None:
    zeros (only the first four features then mean anything).
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
    """Boolean mask of the category tags calibrated hedging removes, or None (remove none).

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
