"""Offline evaluation: hold posts out, train as ``build`` does on the rest, rank their hashtags.

``python -m recommender evaluate DATA``: :func:`stratified_splits` holds out posts per
search hashtag, :func:`evaluate` trains every candidate method on the rest (the same
:class:`~recommender.query.recommender.BuildConfig` as ``build``) and scores its ranking of
the held-out posts' hashtags with the per-post metrics here (precision, recall, hit rate,
nDCG at k, their "beyond category" forms, coverage, generic rate, the recall ceiling,
``off_topic@10`` and ``@5``, ``own_category_hit@10``; each checked against a slow reference in the
tests); :class:`EvaluationResult` gives mean and spread over splits and, for ``--compare
A B``, the paired difference A - B with its standard error.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recommender.data.datasets import Post
from recommender.errors import ConfigError, DatasetError
from recommender.fit.als import ALSParams
from recommender.query.hedging import category_forms, dataset_categories, single_tag_categories
from recommender.query.original import NAME as ORIGINAL
from recommender.query.original import NEIGHBOURS as ORIGINAL_NEIGHBOURS
from recommender.query.scoring import DEFAULT_METHOD, DEFAULT_NEIGHBORS, METHODS, get_method

if TYPE_CHECKING:
    from recommender.vision.content import TopClasses

KS = (5, 10)
CURVE_K = 20  # recall@k is also kept for k = 1..CURVE_K, for the plot
GENERIC_TOP = 20
OFF_TOPIC_K = 10
OFF_TOPIC_GENERIC = 10  # without categories, these most frequent hashtags are "off topic"
OFF_TOPIC = f"off_topic@{OFF_TOPIC_K}"
OFF_TOPIC_TOP = 5  # the top 5 a person pastes: off_topic@5 beside off_topic@10
OFF_TOPIC_5 = f"off_topic@{OFF_TOPIC_TOP}"
OWN_HIT = f"own_category_hit@{OFF_TOPIC_K}"
DEFAULT_SPLITS = 5
DEFAULT_TEST_FRACTION = 0.2
DEFAULT_SEED = 0
N_SWEEP = (1, 2, 3, 5, 10, 20, 30, 50)
POPULARITY = "popularity"
OVERLAP_MESSAGE = "This will cause incorrect evaluation, check your data split."

Progress = Callable[[str, int, int], None]


# --------------------------------------------------------------------------- metrics
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


# ---------------------------------------------------------------------------- splits
def _no_posts() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Split:
    """Indices into the data set's posts: who trains, who is tested.

    ``probe``: held-out posts of the categories without test posts (see the module
    notes); they leave training like test posts and only score ``own_category_hit@10``.
    """

    train: np.ndarray
    test: np.ndarray
    seed: int
    probe: np.ndarray = field(default_factory=_no_posts)


def evaluable_posts(posts: Sequence[Post], image_rows: Sequence[int]) -> np.ndarray:
    """Posts with a usable image and a real hashtag list (2+ hashtags)."""
    return np.array(
        [i for i, p in enumerate(posts) if image_rows[i] >= 0 and len(p.hashtags) >= 2],
        dtype=np.int64,
    )


def probe_categories(posts: Sequence[Post], image_rows: Sequence[int]) -> list[str]:
    """Categories whose photos carry only their search tag
    (:func:`recommender.query.hedging.single_tag_categories`: fewer than
    :data:`~recommender.query.hedging.SINGLE_TAG_SHARE` of their posts with an image are
    evaluable; in the demo data none are, except one fitness post)."""
    return single_tag_categories(
        (p.category, len(p.hashtags)) for i, p in enumerate(posts) if image_rows[i] >= 0
    )


def check_split(
    posts: Sequence[Post],
    image_rows: Sequence[int],
    train: Sequence[int] | np.ndarray,
    test: Sequence[int] | np.ndarray,
    image_keys: Sequence[str | None] | None = None,
) -> None:
    """Refuse a split whose train and test share a post, a post id, an image or an image file.

    ``image_keys[i]`` identifies post ``i``'s image file (e.g. its content hash), or None.
    Raises ValueError saying what overlaps.
    """
    train, test = np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64)
    problems = []
    both = np.intersect1d(train, test)
    if len(both):
        problems.append(f"{len(both)} posts are in both")
    ids = {posts[i].post_id for i in train} & {posts[i].post_id for i in test}
    if ids:
        problems.append(f"{len(ids)} post ids are in both (e.g. {sorted(ids)[0]!r})")
    rows = {image_rows[i] for i in train if image_rows[i] >= 0}
    shared_rows = [i for i in test if image_rows[i] >= 0 and image_rows[i] in rows]
    if shared_rows:
        problems.append(f"{len(shared_rows)} test images are in the training image index")
    if image_keys is not None:
        keys = {image_keys[i] for i in train if image_keys[i] is not None}
        same = [i for i in test if image_keys[i] is not None and image_keys[i] in keys]
        if same:
            problems.append(f"{len(same)} test images are also training images")
    if problems:
        raise ConfigError("train and test overlap: " + "; ".join(problems) + ". " + OVERLAP_MESSAGE)


def stratified_splits(
    posts: Sequence[Post],
    image_rows: Sequence[int],
    n_splits: int = DEFAULT_SPLITS,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = DEFAULT_SEED,
    image_keys: Sequence[str | None] | None = None,
) -> list[Split]:
    """``n_splits`` random splits, each holding out ``test_fraction`` of the evaluable posts
    of every category (split ``s`` uses seed ``seed + s``).

    Evaluable (test) posts have a usable image and 2+ hashtags. Categories with (almost)
    no such post (in the demo data, those whose images carry only their search tag) have
    ``test_fraction`` of their single-tag images held out as *probe* posts, which only
    ``own_category_hit@10`` scores. Test and probe posts leave both the ALS model and the
    image index; everything else, posts without an image included, trains. Training posts
    whose ``image_keys`` equal a test post's (the same image file under two posts) are
    dropped from that split's training set.
    """
    if n_splits < 1:
        raise ConfigError("n_splits must be >= 1")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError("test_fraction must lie strictly between 0 and 1")
    candidates = evaluable_posts(posts, image_rows)
    probed = set(probe_categories(posts, image_rows))
    probe_groups: dict[str, list[int]] = {}
    rich = set(candidates.tolist())
    for i, p in enumerate(posts):
        if image_rows[i] >= 0 and p.category in probed and i not in rich:
            probe_groups.setdefault(p.category, []).append(i)
    if len(candidates) < 2:
        raise DatasetError(
            "fewer than 2 posts have both an image and 2+ hashtags: nothing to evaluate on"
        )
    groups: dict[str, list[int]] = {}
    for i in candidates:
        groups.setdefault(str(posts[i].category), []).append(int(i))
    splits = []
    for s in range(n_splits):
        rng = np.random.default_rng(seed + s)
        test: list[int] = []
        for name in sorted(groups):
            members = rng.permutation(groups[name])
            take = int(round(test_fraction * len(members)))
            test.extend(int(i) for i in members[:take])
        test_arr = np.array(sorted(test), dtype=np.int64)
        if len(test_arr) == 0:
            raise ConfigError("the test fraction leaves no test post; raise test_fraction")
        probe: list[int] = []  # drawn after the test posts: those stay as they were
        for name in sorted(probe_groups):
            members = rng.permutation(probe_groups[name])
            probe.extend(int(i) for i in members[: int(round(test_fraction * len(members)))])
        probe_arr = np.array(sorted(probe), dtype=np.int64)
        held = set(test_arr.tolist()) | set(probe)
        if image_keys is not None:
            keys = {image_keys[i] for i in held if image_keys[i] is not None}
            held |= {i for i, key in enumerate(image_keys) if key is not None and key in keys}
        train = np.array([i for i in range(len(posts)) if i not in held], dtype=np.int64)
        check_split(posts, image_rows, train, np.concatenate([test_arr, probe_arr]), image_keys)
        splits.append(Split(train, test_arr, seed + s, probe_arr))
    return splits


# ------------------------------------------------------------------------ candidates
@dataclass(frozen=True)
class Candidate:
    """One line of the results table: a scoring method at a number of neighbours.

    ``method`` None ranks by training popularity. ``als`` None trains ALS with the
    build's parameters; otherwise with these. ``original`` ranks with the original
    project's own factors, which every model fits (:mod:`recommender.fit.original`).
    """

    key: str
    method: str | None
    n_neighbors: int = DEFAULT_NEIGHBORS
    als: ALSParams | None = None


def default_candidates(
    default_method: str = DEFAULT_METHOD,
    neighbors: Sequence[int] = (DEFAULT_NEIGHBORS, 30),
    methods: Sequence[str] | None = None,
) -> list[Candidate]:
    """Popularity, then every scoring method at each of ``neighbors``.

    Keys are the method name at the first ``neighbors`` value and ``name/nN`` at the
    others; ``original`` is the original project's method, once, at its own 5 neighbours.
    """
    names = list(methods) if methods is not None else list(METHODS)
    if default_method not in names:
        names.append(default_method)
    out = [Candidate(POPULARITY, None)]
    for j, n in enumerate(neighbors):
        for name in names:
            if name == ORIGINAL:
                if j == 0:
                    out.append(Candidate(ORIGINAL, ORIGINAL, ORIGINAL_NEIGHBOURS))
                continue
            out.append(Candidate(name if j == 0 else f"{name}/n{n}", name, int(n)))
    return out


def candidate(key: str) -> Candidate:
    """The candidate a table key names: ``popularity``, a method (``name`` or
    ``name:field=value,...``, see :func:`recommender.query.scoring.get_method`), optionally
    followed by ``/nN`` for N neighbours (default
    :data:`~recommender.query.scoring.DEFAULT_NEIGHBORS`; ``original`` always takes its
    own 5)."""
    if key == POPULARITY:
        return Candidate(POPULARITY, None)
    spec, n = key, None
    head, slash, tail = key.rpartition("/n")
    if slash and tail.isdigit():
        spec, n = head, int(tail)
        if not 1 <= n <= 50:
            raise ConfigError(f"{key!r}: the number of neighbours must be between 1 and 50")
    method = get_method(spec)  # checks the name and options
    if method.name == ORIGINAL:
        if n is not None:
            raise ConfigError(f"{key!r}: the original method always uses its 5 neighbours")
        n = ORIGINAL_NEIGHBOURS
    return Candidate(key, method.name, n or DEFAULT_NEIGHBORS)


# --------------------------------------------------------------------------- ranking
def rank_features(
    rec,
    features: np.ndarray,
    method: str,
    n_neighbors: int,
    k: int,
    exclude: np.ndarray | None = None,
    classes: TopClasses | None = None,
) -> np.ndarray:
    """Top-``k`` hashtag ids for each row of ``features``: (rows, k), -1 padded.

    ``classes``: each row's top ImageNet classes, for the content term.

    The steps of :meth:`HashtagRecommender.rank` (what
    :meth:`~HashtagRecommender.recommend_features` explains), with one BLAS thread
    (matrix-vector products are far faster so on a small machine).
    """
    from recommender.blas import serial_blas
    from recommender.query.scoring import get_method

    m = get_method(method)
    out = np.full((len(features), k), -1, dtype=np.int64)
    with serial_blas():
        for i, query in enumerate(features):
            probs = None if classes is None else classes.dense(i)
            best = rec.rank(query, n_neighbors, k, m, exclude, probs).best
            out[i, : len(best)] = best
    return out


def _popularity_ranking(rec, count: int, k: int, exclude: np.ndarray | None) -> np.ndarray:
    from recommender.query.scoring import top_k

    best = top_k(rec.tag_counts.astype(np.float64), k, exclude)
    out = np.full((count, k), -1, dtype=np.int64)
    out[:, : len(best)] = best
    return out


# ------------------------------------------------------------------------ evaluation
@dataclass
class EvaluationResult:
    """Per candidate: metric -> per-split values; plus the protocol's facts."""

    per_split: dict[str, dict[str, list[float]]]
    curves: dict[str, list[np.ndarray]]
    ceiling: list[float]
    unseen: list[float]
    test_posts: list[int]
    default: str
    n_sweep: dict[int, dict[str, list[float]]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def mean(self, key: str, metric: str) -> float:
        return float(np.mean(self.per_split[key][metric]))

    def std(self, key: str, metric: str) -> float:
        return float(np.std(self.per_split[key][metric]))

    def _rounded_mean(self, key: str, metric: str) -> float | None:
        values = self.per_split[key].get(metric)
        return round(float(np.mean(values)), 4) if values else None

    def paired(self, a: str, b: str) -> dict[str, dict[str, float | int | None]]:
        """Per metric both have: mean over splits of ``a - b``, its standard error, splits.

        The standard error is the sample standard deviation of the differences over the
        square root of the number of splits (None with one split).
        """
        out: dict[str, dict[str, float | int | None]] = {}
        for metric, values in self.per_split[a].items():
            other = self.per_split[b].get(metric)
            if other is None or len(other) != len(values):
                continue
            diff = np.asarray(values, dtype=np.float64) - np.asarray(other, dtype=np.float64)
            se = float(np.std(diff, ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else None
            out[metric] = {"mean": float(diff.mean()), "se": se, "splits": len(diff)}
        return out

    def paired_table(self, a: str, b: str) -> str:
        """The paired differences ``a - b`` as plain text, one metric a line."""
        rows = self.paired(a, b)
        n = max((int(r["splits"] or 0) for r in rows.values()), default=0)
        lines = [f"paired difference {a} - {b} over {n} splits (mean ± standard error):"]
        width = max((len(m) for m in rows), default=0)
        for metric, r in rows.items():
            se = "n/a" if r["se"] is None else f"{r['se']:.4f}"
            a_mean, b_mean = self.mean(a, metric), self.mean(b, metric)
            lines.append(
                f"  {metric:<{width}}  {r['mean']:+.4f} ± {se}   ({a_mean:.4f} vs {b_mean:.4f})"
            )
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        """The ``"evaluation"`` entry of a model manifest (the page reads these keys)."""
        return {
            "method": self.default,
            "recall@10": round(self.mean(self.default, "recall@10"), 4),
            "beyond_recall@10": round(self.mean(self.default, "beyond_recall@10"), 4),
            OFF_TOPIC: self._rounded_mean(self.default, OFF_TOPIC),
            OFF_TOPIC_5: self._rounded_mean(self.default, OFF_TOPIC_5),
            OWN_HIT: self._rounded_mean(self.default, OWN_HIT),
            "popularity_recall@10": round(self.mean(POPULARITY, "recall@10"), 4)
            if POPULARITY in self.per_split
            else None,
            "splits": len(self.ceiling),
            "test_posts": int(round(float(np.mean(self.test_posts)))),
        }

    def to_dict(self) -> dict[str, Any]:
        """Means (``metric``) and standard deviations (``metric_std``) over splits."""
        methods = {}
        for key, metrics in self.per_split.items():
            entry: dict[str, Any] = {}
            for metric, values in metrics.items():
                entry[metric] = round(float(np.mean(values)), 4)
                entry[f"{metric}_std"] = round(float(np.std(values)), 4)
            for metric in (OFF_TOPIC, OFF_TOPIC_5, OWN_HIT):  # null when the data set cannot say
                entry.setdefault(metric, None)
            entry["per_split_recall@10"] = [round(float(v), 4) for v in metrics["recall@10"]]
            entry["recall_curve"] = [round(float(v), 4) for v in np.mean(self.curves[key], axis=0)]
            methods[key] = entry
        sweep = {
            str(n): {m: round(float(np.mean(v)), 4) for m, v in values.items()}
            for n, values in self.n_sweep.items()
        }
        return {
            "methods": methods,
            "default": self.default,
            "ceiling_recall@10": round(float(np.mean(self.ceiling)), 4),
            "unseen_test_tag_share": round(float(np.mean(self.unseen)), 4),
            "splits": len(self.ceiling),
            "test_posts": [int(t) for t in self.test_posts],
            "default_n_sweep": sweep,
            **self.info,
        }

    def table(self) -> str:
        """A plain-text table: mean ± std over splits for every candidate."""
        cols = [
            "precision@5", "recall@5", "recall@10", "hit@10", "ndcg@10",
            "beyond_recall@10", "beyond_ndcg@10", "coverage@10", "generic@10",
            OFF_TOPIC_5, OFF_TOPIC, OWN_HIT,
        ]  # fmt: skip
        width = max(len(k) for k in self.per_split) + 2
        lines = [" " * width + " ".join(f"{c:>16}" for c in cols)]
        for key in self.per_split:
            mark = "*" if key == self.default else " "
            cells = [
                f"{self.mean(key, c):.3f} ± {self.std(key, c):.3f}"
                if self.per_split[key].get(c)
                else "n/a"
                for c in cols
            ]
            lines.append(f"{mark}{key:<{width - 1}}" + " ".join(f"{c:>16}" for c in cells))
        lines.append(
            f"ceiling recall@10: {np.mean(self.ceiling):.3f}  (test hashtags never seen in "
            f"training: {np.mean(self.unseen):.1%}); {len(self.ceiling)} splits, "
            f"{np.mean(self.test_posts):.0f} test posts each; * = default"
        )
        if self.n_sweep:
            lines.append(
                f"{self.default} by number of neighbours (recall@10 / beyond / hit@10): "
                + ", ".join(
                    f"n={n}: {np.mean(v['recall@10']):.3f}/{np.mean(v['beyond_recall@10']):.3f}"
                    f"/{np.mean(v['hit@10']):.3f}"
                    for n, v in self.n_sweep.items()
                )
            )
        return "\n".join(lines)


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


def image_keys(dataset, posts: Sequence[Post], image_rows: Sequence[int]) -> list[str | None]:
    """Content hash of the image of every post that has one (cheap: small files)."""
    from recommender.vision import images

    keys: list[str | None] = []
    for p in posts:
        if not p.image:
            keys.append(None)
            continue
        try:
            keys.append(images.content_hash(images.read_bytes(dataset.image_path(p))))
        except Exception:  # noqa: BLE001 - an unreadable file cannot leak anything
            keys.append(None)
    return keys


class _SplitRun:
    """One split: its models (one per ALS setting, trained on demand) and its test posts."""

    def __init__(
        self, posts, features, image_rows, split, config, blocked, timings, classes=None
    ) -> None:
        self.posts = [posts[i] for i in split.train]
        self.rows = [int(image_rows[i]) for i in split.train]
        self.features = features
        queried = np.concatenate([split.test, split.probe]).astype(np.int64)
        self.query = np.asarray(features)[[image_rows[i] for i in queried]]
        self.n_test = len(split.test)
        self.query_classes = (
            None if classes is None else classes.take([image_rows[i] for i in queried])
        )
        self.truth = [set(posts[i].hashtags) for i in split.test]
        self.categories = [posts[i].category for i in split.test]
        self.probe_targets = [str(posts[i].category) for i in split.probe]
        self.config = config
        self.blocked = blocked
        self.timings = timings
        self.models: dict[ALSParams, Any] = {}
        self.base = self.model(None)
        self.generic = set(self.base.tags[:GENERIC_TOP])  # vocabulary: most frequent first
        self.off = off_topic_tags(
            self.categories,
            dataset_categories(p.category for p in posts),
            self.base.tags[:OFF_TOPIC_GENERIC],
        )

    def model(self, als: ALSParams | None):
        from recommender.fit.training import fit_recommender

        als = als or self.config.als
        if als not in self.models:
            start = time.perf_counter()
            cfg = dataclasses.replace(self.config, als=als)
            self.models[als] = fit_recommender(self.posts, self.features, self.rows, cfg)
            self.timings["fit_seconds"] += time.perf_counter() - start
        return self.models[als]

    def score(self, rec, method: str | None, n: int) -> tuple[dict[str, float], np.ndarray]:
        start = time.perf_counter()
        k = CURVE_K + 1  # one more than shown: removing the category still leaves CURVE_K
        exclude = rec.blocked_mask(self.blocked) if self.blocked else None
        if method is None:
            ids = _popularity_ranking(rec, len(self.query), k, exclude)
        else:
            ids = rank_features(rec, self.query, method, n, k, exclude, self.query_classes)
        ranked = [[rec.tags[t] for t in row if t >= 0] for row in ids]
        self.timings["rank_seconds"] += time.perf_counter() - start
        return score_rankings(
            ranked[: self.n_test],
            self.truth,
            self.categories,
            len(rec.tags),
            self.generic,
            self.off,
            ranked[self.n_test :],
            self.probe_targets,
        )


def evaluate(
    posts: Sequence[Post],
    features: np.ndarray,
    image_rows: Sequence[int],
    config=None,
    *,
    candidates: Sequence[Candidate] | None = None,
    splits: Sequence[Split] | None = None,
    n_splits: int = DEFAULT_SPLITS,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = DEFAULT_SEED,
    keys: Sequence[str | None] | None = None,
    blocklist: Iterable[str] | None = None,
    n_sweep: Sequence[int] = N_SWEEP,
    progress: Progress | None = None,
    classes: TopClasses | None = None,
) -> EvaluationResult:
    """Evaluate ``candidates`` on the same splits of ``posts``.

    ``features``/``image_rows`` are as for :func:`~recommender.fit.training.fit_recommender`
    (computed once for the whole data set). ``config`` is the build's configuration; its
    ``method`` is the default being evaluated. ``blocklist`` hashtags are never recommended
    (as in the page). ``n_sweep`` neighbour counts are also tried for the default method.
    ``classes`` (the top ImageNet classes of each row of ``features``, as the embed stage
    keeps them: :attr:`recommender.features.pipeline.DatasetFeatures.classes`) feed the content
    term; without them there is none.
    """
    from recommender.query.recommender import BuildConfig

    config = config or BuildConfig()
    default = config.method
    candidates = list(candidates or default_candidates(default))
    if default not in {c.key for c in candidates}:
        candidates.append(Candidate(default, default))
    if splits is None:
        splits = stratified_splits(posts, image_rows, n_splits, test_fraction, seed, keys)
    else:
        for split in splits:
            held = np.concatenate([split.test, split.probe])
            check_split(posts, image_rows, split.train, held, keys)
    blocked = set(blocklist or ())
    per_split: dict[str, dict[str, list[float]]] = {c.key: {} for c in candidates}
    curves: dict[str, list[np.ndarray]] = {c.key: [] for c in candidates}
    sweep: dict[int, dict[str, list[float]]] = {int(n): {} for n in n_sweep}
    ceiling, unseen, test_sizes, probe_sizes = [], [], [], []
    timings = {"fit_seconds": 0.0, "rank_seconds": 0.0}
    for s, split in enumerate(splits):
        run = _SplitRun(posts, features, image_rows, split, config, blocked, timings, classes)
        ceiling.append(float(recall_ceiling(run.truth, set(run.base.tags), 10).mean()))
        unseen.append(unseen_share(run.truth, set(run.base.tags)))
        test_sizes.append(len(split.test))
        probe_sizes.append(len(split.probe))
        for j, cand in enumerate(candidates):
            metrics, curve = run.score(run.model(cand.als), cand.method, cand.n_neighbors)
            for name, value in metrics.items():
                per_split[cand.key].setdefault(name, []).append(value)
            curves[cand.key].append(curve)
            if progress:
                progress("evaluate", s * len(candidates) + j + 1, len(splits) * len(candidates))
        for n in sweep:
            metrics, _ = run.score(run.base, default, n)
            for name in ("recall@10", "beyond_recall@10", "hit@10"):
                sweep[n].setdefault(name, []).append(metrics[name])
    info = {
        "blocklist": bool(blocked),
        "test_fraction": test_fraction,
        "seed": seed,
        "probe_posts": int(round(float(np.mean(probe_sizes)))),
        "probe_categories": sorted({str(posts[i].category) for sp_ in splits for i in sp_.probe}),
        "fit_seconds": round(timings["fit_seconds"], 1),
        "rank_seconds": round(timings["rank_seconds"], 1),
    }
    if sweep:
        best = max(sweep, key=lambda n: np.mean(sweep[n]["recall@10"]))
        info["default_best_n"] = best
    return EvaluationResult(per_split, curves, ceiling, unseen, test_sizes, default, sweep, info)


def evaluate_dataset(
    data: str | Path,
    config=None,
    *,
    format: str = "auto",
    use_cache: bool = True,
    progress: Progress | None = None,
    **kwargs: Any,
) -> EvaluationResult:
    """Load the data set at ``data``, compute its features once, and :func:`evaluate`."""
    from recommender.data.datasets import load_dataset
    from recommender.engines.embed_stage import dataset_features
    from recommender.query.recommender import BuildConfig

    config = config or BuildConfig()
    start = time.perf_counter()
    dataset = load_dataset(data, format)
    feats = dataset_features(dataset, config, use_cache=use_cache, progress=progress)
    keys = image_keys(dataset, dataset.posts, feats.image_rows)
    features_seconds = time.perf_counter() - start
    result = evaluate(
        dataset.posts, feats.features, feats.image_rows, config, keys=keys,
        progress=progress, classes=feats.classes, **kwargs,
    )  # fmt: skip
    result.info["features_seconds"] = round(features_seconds, 1)
    result.info["images_embedded"] = feats.counts.get("images_embedded", 0)
    result.info["seconds"] = round(time.perf_counter() - start, 1)
    return result


def plot_recall_curves(result: EvaluationResult, path: str | Path) -> Path:
    """Write a PNG of mean recall@k for k = 1..20, one line per candidate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = np.arange(1, CURVE_K + 1)
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    colours: dict[str, Any] = {}
    for key, curves in result.curves.items():
        mean = np.mean(curves, axis=0)
        bold = key == result.default
        method = key.split("/")[0]  # the same method at another n: same colour, dashed
        colour = "black" if method == result.default else colours.get(method)
        line = ax.plot(
            ks,
            mean,
            color=colour,
            ls="--" if "/" in key else "-",
            lw=2.6 if bold else 1.3,
            label=key + (" (default)" if bold else ""),
        )[0]
        colours.setdefault(method, line.get_color())
    ax.axhline(float(np.mean(result.ceiling)), color="grey", ls="--", lw=1, label="ceiling @10")
    ax.set_xlabel("k (hashtags recommended)")
    ax.set_ylabel("recall@k (mean over splits)")
    ax.set_xticks(ks)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"Held-out posts, {len(result.ceiling)} splits")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
