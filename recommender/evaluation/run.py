"""Run an evaluation: train every candidate method as ``build`` does on each split's
training posts, rank the held-out posts' hashtags, and score the rankings.

:func:`evaluate` works on features computed once; :func:`evaluate_dataset` reads the data
set and computes them first.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recommender.config import DEFAULT_METHOD, METHODS, ALSParams, get_method
from recommender.data.datasets import Post
from recommender.errors import ConfigError
from recommender.evaluation.metrics import (
    CURVE_K,
    GENERIC_TOP,
    OFF_TOPIC_GENERIC,
    POPULARITY,
    off_topic_tags,
    recall_ceiling,
    score_rankings,
    unseen_share,
)
from recommender.evaluation.report import EvaluationResult
from recommender.evaluation.splits import (
    DEFAULT_SEED,
    DEFAULT_SPLITS,
    DEFAULT_TEST_FRACTION,
    Split,
    check_split,
    image_keys,
    stratified_splits,
)
from recommender.query.hedging import dataset_categories
from recommender.query.original import NAME as ORIGINAL
from recommender.query.original import NEIGHBOURS as ORIGINAL_NEIGHBOURS
from recommender.query.scoring import DEFAULT_NEIGHBOURS

if TYPE_CHECKING:
    from recommender.config import BuildConfig
    from recommender.data.datasets import Dataset
    from recommender.features.pipeline import DatasetFeatures
    from recommender.vision.content import TopClasses

N_SWEEP = (1, 2, 3, 5, 10, 20, 30, 50)
SUMMARY_METRICS = ("recall@5", "recall@10", "beyond_recall@10", "off_topic@5", "off_topic@10")
"""Per-method figures ``build --evaluate`` keeps in the manifest's ``evaluation.methods``."""
BUILD_EVALUATION_ALS = "local"
"""The ALS that ``build --evaluate`` fits its models with, whatever the build's engine."""

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Candidate:
    """One line of the results table: a scoring method at a number of neighbours.

    ``method`` None ranks by training popularity. ``als`` None trains ALS with the
    build's parameters; otherwise with these. ``original`` ranks with the original
    project's own factors, which every model fits (:mod:`recommender.fit.original`).
    """

    key: str
    method: str | None
    n_neighbours: int = DEFAULT_NEIGHBOURS
    als: ALSParams | None = None


def default_candidates(
    default_method: str = DEFAULT_METHOD,
    neighbours: Sequence[int] = (DEFAULT_NEIGHBOURS, 30),
    methods: Sequence[str] | None = None,
) -> list[Candidate]:
    """Popularity, then every scoring method at each of ``neighbours``.

    Keys are the method name at the first ``neighbours`` value and ``name/nN`` at the
    others; ``original`` is the original project's method, once, at its own 5 neighbours.
    """
    names = list(methods) if methods is not None else list(METHODS)
    if default_method not in names:
        names.append(default_method)
    out = [Candidate(POPULARITY, None)]
    for j, n in enumerate(neighbours):
        for name in names:
            if name == ORIGINAL:
                if j == 0:
                    out.append(Candidate(ORIGINAL, ORIGINAL, ORIGINAL_NEIGHBOURS))
                continue
            out.append(Candidate(name if j == 0 else f"{name}/n{n}", name, int(n)))
    return out


def candidate(key: str) -> Candidate:
    """The candidate a table key names: ``popularity``, a method (``name`` or
    ``name:field=value,...``, see :func:`recommender.config.get_method`), optionally
    followed by ``/nN`` for N neighbours (default
    :data:`~recommender.query.scoring.DEFAULT_NEIGHBOURS`; ``original`` always takes its
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
    return Candidate(key, method.name, n or DEFAULT_NEIGHBOURS)


def rank_features(
    rec,
    features: np.ndarray,
    method: str,
    n_neighbours: int,
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
    from recommender.config import get_method

    m = get_method(method)
    out = np.full((len(features), k), -1, dtype=np.int64)
    with serial_blas():
        for i, query in enumerate(features):
            probs = None if classes is None else classes.dense(i)
            best = rec.rank(query, n_neighbours, k, m, exclude, probs).best
            out[i, : len(best)] = best
    return out


def _popularity_ranking(rec, count: int, k: int, exclude: np.ndarray | None) -> np.ndarray:
    from recommender.query.scoring import top_k

    best = top_k(rec.tag_counts.astype(np.float64), k, exclude)
    out = np.full((count, k), -1, dtype=np.int64)
    out[:, : len(best)] = best
    return out


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
            metrics, curve = run.score(run.model(cand.als), cand.method, cand.n_neighbours)
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


def build_evaluation(
    dataset: Dataset,
    feats: DatasetFeatures,
    config: BuildConfig,
    splits: int,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """``build --evaluate``: the build's method against popularity and the original
    project's method on ``splits`` held-out splits of the build's own features.

    Returns the manifest's ``"evaluation"``: :meth:`EvaluationResult.summary`, each
    method's :data:`SUMMARY_METRICS` under ``"methods"``, and under ``"als"`` the ALS the
    models were fitted with: always :data:`BUILD_EVALUATION_ALS` (implicit, in this
    process), whatever engine builds the model, since a Spark ALS fit takes minutes and the
    evaluation fits one model per split.
    """
    start = time.perf_counter()
    candidates = [Candidate(POPULARITY, None), Candidate(config.method, config.method)]
    if config.method != ORIGINAL:  # the page compares the default with the original project
        candidates.append(Candidate(ORIGINAL, ORIGINAL, ORIGINAL_NEIGHBOURS))
    result = evaluate(
        dataset.posts,
        feats.features,
        feats.image_rows,
        config,
        candidates=candidates,
        n_splits=splits,
        keys=image_keys(dataset, dataset.posts, feats.image_rows),
        n_sweep=(),
        progress=progress,
        # what the network sees, kept by the embed stage: the figures are those of the
        # method as the model serves it (content term and hedging included)
        classes=feats.classes,
    )
    methods = {
        c.key: {
            metric: round(result.mean(c.key, metric), 4)
            for metric in SUMMARY_METRICS
            if metric in result.per_split[c.key]
        }
        for c in candidates
    }
    return {
        **result.summary(),
        "methods": methods,
        "als": BUILD_EVALUATION_ALS,
        "seconds": round(time.perf_counter() - start, 1),
    }
