"""Per-post metrics of a ranking against the held-out post's own hashtags.

Precision, recall, hit rate and nDCG at k, their "beyond category" forms, coverage,
generic rate, the recall ceiling, ``off_topic@10`` and ``@5`` and ``own_category_hit@10``
(each checked against a slow reference in the tests). :func:`score_rankings` computes
them all for one candidate on one split.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from recommender.errors import ConfigError
from recommender.query.hedging import category_forms

KS = (5, 10)
CURVE_K = 20  # recall@k is also kept for k = 1..CURVE_K, for the plot
GENERIC_TOP = 20
OFF_TOPIC_K = 10
OFF_TOPIC_GENERIC = 10  # without categories, these most frequent hashtags are "off topic"
OFF_TOPIC = f"off_topic@{OFF_TOPIC_K}"
OFF_TOPIC_TOP = 5  # the top 5 a person pastes: off_topic@5 beside off_topic@10
OFF_TOPIC_5 = f"off_topic@{OFF_TOPIC_TOP}"
OWN_HIT = f"own_category_hit@{OFF_TOPIC_K}"
POPULARITY = "popularity"  # the baseline's key: training popularity, the same for every post


def hits(ranked: Sequence[Sequence[str]], truth: Sequence[set[str]], k: int) -> np.ndarray:
    """(posts, k) booleans: is the j-th recommended hashtag one of the post's own?

    Lists shorter than ``k`` count as misses in the missing places.
    """
    out = np.zeros((len(ranked), k), dtype=bool)
    for i, (tags, true) in enumerate(zip(ranked, truth, strict=True)):
        for j, tag in enumerate(list(tags)[:k]):
            out[i, j] = tag in true
    return out


def _sizes(truth: Sequence[set[str]]) -> np.ndarray:
    sizes = np.array([len(t) for t in truth], dtype=np.float64)
    if (sizes == 0).any():
        raise ConfigError("every test post needs at least one true hashtag")
    return sizes


def precision_at_k(ranked, truth, k: int) -> np.ndarray:
    """Per post: hits in the top ``k`` divided by ``k``."""
    return hits(ranked, truth, k).sum(axis=1) / k


def recall_at_k(ranked, truth, k: int) -> np.ndarray:
    """Per post: hits in the top ``k`` divided by the number of true hashtags."""
    return np.asarray(hits(ranked, truth, k).sum(axis=1) / _sizes(truth))


def hit_rate_at_k(ranked, truth, k: int) -> np.ndarray:
    """Per post: 1 if any of the top ``k`` is a true hashtag, else 0."""
    return np.asarray(hits(ranked, truth, k).any(axis=1), dtype=np.float64)


def ndcg_at_k(ranked, truth, k: int) -> np.ndarray:
    """Per post: DCG of the top ``k`` (binary gains, log2 discount) over the ideal DCG."""
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hits(ranked, truth, k) @ discount
    ideal = np.cumsum(discount)[np.minimum(_sizes(truth), k).astype(int) - 1]
    return dcg / ideal


def beyond_category(
    ranked: Sequence[Sequence[str]], truth: Sequence[set[str]], categories: Sequence[str | None]
) -> tuple[list[list[str]], list[set[str]], np.ndarray]:
    """Remove each post's category from its ranked list and its truth.

    Returns the new lists, the new truths and a mask of the posts that still have a true
    hashtag (only those are scored "beyond category").
    """
    out_ranked, out_truth = [], []
    for tags, true, cat in zip(ranked, truth, categories, strict=True):
        out_ranked.append([t for t in tags if t != cat])
        out_truth.append({t for t in true if t != cat})
    keep = np.array([bool(t) for t in out_truth], dtype=bool)
    return out_ranked, out_truth, keep


def catalogue_coverage(ranked: Sequence[Sequence[str]], k: int, catalogue_size: int) -> float:
    """Share of the catalogue (training hashtags) that appears in somebody's top ``k``."""
    if catalogue_size <= 0:
        return 0.0
    return len({t for tags in ranked for t in list(tags)[:k]}) / catalogue_size


def generic_rate(ranked: Sequence[Sequence[str]], k: int, generic: Iterable[str]) -> float:
    """Share of all recommended top-``k`` hashtags that are in ``generic``."""
    generic = set(generic)
    shown = [t for tags in ranked for t in list(tags)[:k]]
    return sum(t in generic for t in shown) / len(shown) if shown else 0.0


def recall_ceiling(truth: Sequence[set[str]], known: set[str], k: int) -> np.ndarray:
    """Per post: the best recall@k any ranking of the ``known`` hashtags can reach."""
    reachable = np.array([min(len(t & known), k) for t in truth], dtype=np.float64)
    return reachable / _sizes(truth)


def off_topic_at_k(
    ranked: Sequence[Sequence[str]],
    truth: Sequence[set[str]],
    off: Sequence[Iterable[str]],
    k: int,
) -> np.ndarray:
    """Per post: how many of the top ``k`` are in ``off[i]`` but not in the post's ``truth``."""
    out = np.zeros(len(ranked), dtype=np.float64)
    for i, (tags, true, bad) in enumerate(zip(ranked, truth, off, strict=True)):
        bad = set(bad)
        out[i] = sum(1 for t in list(tags)[:k] if t in bad and t not in true)
    return out


def off_topic_tags(
    categories: Sequence[str | None], all_categories: Iterable[str], generic: Sequence[str]
) -> list[frozenset[str]]:
    """Per post, the hashtags :func:`off_topic_at_k` counts against it.

    Every form of every *other* category's search tag; when the data set has no
    categories, ``generic`` (the most frequent training hashtags) for every post.
    """
    names = sorted(set(all_categories))
    if not names:
        return [frozenset(generic)] * len(categories)
    forms = {c: frozenset(category_forms(c)) for c in names}
    every = frozenset().union(*forms.values())
    others = {c: every - forms[c] for c in names}
    return [others.get(c, every) if c else every for c in categories]


def own_category_hit_at_k(
    ranked: Sequence[Sequence[str]], targets: Sequence[str], k: int
) -> np.ndarray:
    """Per post: 1 if its ``targets[i]`` (its own search tag) is in its top ``k``, else 0."""
    return np.array(
        [float(t in list(tags)[:k]) for tags, t in zip(ranked, targets, strict=True)],
        dtype=np.float64,
    )


def unseen_share(truth: Sequence[set[str]], known: set[str]) -> float:
    """Share of the test (post, hashtag) pairs whose hashtag never occurs in training."""
    pairs = sum(len(t) for t in truth)
    return sum(len(t - known) for t in truth) / pairs if pairs else 0.0


def score_rankings(
    ranked: Sequence[Sequence[str]],
    truth: Sequence[set[str]],
    categories: Sequence[str | None],
    catalogue_size: int,
    generic: set[str],
    off: Sequence[Iterable[str]] | None = None,
    probe_ranked: Sequence[Sequence[str]] = (),
    probe_targets: Sequence[str] = (),
) -> tuple[dict[str, float], np.ndarray]:
    """All metrics of one candidate on one split (means over posts), and its recall curve.

    ``off[i]``: the hashtags ``off_topic@10`` and ``off_topic@5`` count against test post ``i`` (see
    :func:`off_topic_tags`); ``probe_ranked``/``probe_targets``: the probe posts' rankings
    and own search tags, for ``own_category_hit@10``.
    """
    out: dict[str, float] = {}
    b_ranked, b_truth, keep = beyond_category(ranked, truth, categories)
    b_ranked = [r for r, kept in zip(b_ranked, keep, strict=True) if kept]
    b_truth = [t for t, kept in zip(b_truth, keep, strict=True) if kept]
    for prefix, r, t in (("", ranked, truth), ("beyond_", b_ranked, b_truth)):
        for k in KS:
            if not t:
                continue
            out[f"{prefix}precision@{k}"] = float(precision_at_k(r, t, k).mean())
            out[f"{prefix}recall@{k}"] = float(recall_at_k(r, t, k).mean())
            out[f"{prefix}hit@{k}"] = float(hit_rate_at_k(r, t, k).mean())
            out[f"{prefix}ndcg@{k}"] = float(ndcg_at_k(r, t, k).mean())
    for k in KS:
        out[f"coverage@{k}"] = catalogue_coverage(ranked, k, catalogue_size)
        out[f"generic@{k}"] = generic_rate(ranked, k, generic)
    if off is not None:
        out[OFF_TOPIC] = float(off_topic_at_k(ranked, truth, off, OFF_TOPIC_K).mean())
        out[OFF_TOPIC_5] = float(off_topic_at_k(ranked, truth, off, OFF_TOPIC_TOP).mean())
    if len(probe_ranked):
        hits_ = own_category_hit_at_k(probe_ranked, probe_targets, OFF_TOPIC_K)
        out[OWN_HIT] = float(hits_.mean())
    curve = (hits(ranked, truth, CURVE_K).cumsum(axis=1) / _sizes(truth)[:, None]).mean(axis=0)
    return out, curve
