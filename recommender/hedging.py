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
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


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
    mask = np.zeros(len(tag_category), dtype=bool)
    mask[is_cat] = ~keep[tag_category[is_cat]]
    return mask
