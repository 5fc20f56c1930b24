"""The balanced 5 against the plain top 5, paired on the same held-out splits.

    .venv/bin/python -m benchmarks.balanced_five [DATA] [--splits 10]

The page pastes 5 hashtags. "Balanced" picks them from the best
:data:`~recommender.query.breadth.BALANCED_POOL` as a mix (at most two broad, the rest medium or
niche, :func:`recommender.query.breadth.balanced`); "plain" takes the best 5. Both rankings come
from the same model trained on each split's training posts (the evaluation's protocol:
:func:`recommender.evaluation.stratified_splits`, the build's default method at the page's
default of 5 neighbours, the page's spam filter on). The balanced ranking is the balanced 5
followed by the other hashtags in score order, so ``@10`` figures include the next 5.

Per split and per ranking: recall@5 and recall@10 (mean over test posts), off_topic@10 (the
evaluation's, when it has it) and how many of the 5 are broad. The table shows the mean
over splits of both and of the paired difference balanced - plain, with its standard error
over splits. The page makes the balanced 5 its default only if the difference is no worse.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from benchmarks.common import DATASET
from recommender import evaluation
from recommender.data.hashtags import load_blocklist
from recommender.fit.training import fit_recommender
from recommender.query.breadth import BALANCED_POOL, BROAD, balanced
from recommender.query.hedging import dataset_categories
from recommender.query.recommender import BuildConfig
from recommender.query.scoring import DEFAULT_NEIGHBOURS

PASTED = 5


class _Tag(NamedTuple):
    tag: str
    tier: str


def balanced_ranking(ranked: Sequence[str], tiers: Sequence[str]) -> list[str]:
    """The balanced 5 of ``ranked`` first, then the rest in their order."""
    picked = {t.tag for t in balanced([_Tag(a, b) for a, b in zip(ranked, tiers, strict=True)])}
    return [t for t in ranked if t in picked] + [t for t in ranked if t not in picked]


def split_figures(rec, query, truth, categories, off, blocked) -> dict[str, dict[str, float]]:
    ids = evaluation.rank_features(
        rec, query, rec.method.name, DEFAULT_NEIGHBOURS, BALANCED_POOL, rec.blocked_mask(blocked)
    )
    out: dict[str, dict[str, float]] = {}
    plain = [[rec.tags[t] for t in row if t >= 0] for row in ids]
    tiers = [[rec.breadth.tier(int(rec.tag_counts[t])) for t in row if t >= 0] for row in ids]
    rankings = {
        "plain": plain,
        "balanced": [balanced_ranking(r, t) for r, t in zip(plain, tiers, strict=True)],
    }
    tier_of = {
        rec.tags[t]: rec.breadth.tier(int(rec.tag_counts[t])) for row in ids for t in row if t >= 0
    }
    for name, ranked in rankings.items():
        figures = {
            "recall@5": float(evaluation.recall_at_k(ranked, truth, 5).mean()),
            "recall@10": float(evaluation.recall_at_k(ranked, truth, 10).mean()),
            "broad in the 5": float(
                np.mean([sum(tier_of[t] == BROAD for t in r[:PASTED]) for r in ranked])
            ),
        }
        if off is not None:
            figures["off_topic@10"] = float(
                evaluation.off_topic_at_k(ranked, truth, off, 10).mean()
            )
        out[name] = figures
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=str(DATASET))
    parser.add_argument("--splits", type=int, default=10)
    args = parser.parse_args(argv)

    from recommender.data.datasets import load_dataset
    from recommender.engines.embed_stage import dataset_features

    start = time.perf_counter()
    config = BuildConfig()
    dataset = load_dataset(args.data)
    posts = dataset.posts
    feats = dataset_features(dataset, config)
    keys = evaluation.image_keys(dataset, posts, feats.image_rows)
    splits = evaluation.stratified_splits(posts, feats.image_rows, args.splits, image_keys=keys)
    blocked = load_blocklist()
    has_off_topic = hasattr(evaluation, "off_topic_at_k")
    per_split: list[dict[str, dict[str, float]]] = []
    for split in splits:
        train = [posts[i] for i in split.train]
        rows = [int(feats.image_rows[i]) for i in split.train]
        rec = fit_recommender(train, feats.features, rows, config)
        query = feats.features[[feats.image_rows[i] for i in split.test]]
        truth = [set(posts[i].hashtags) for i in split.test]
        categories = [posts[i].category for i in split.test]
        off = None
        if has_off_topic:
            off = evaluation.off_topic_tags(
                categories,
                dataset_categories(p.category for p in posts),
                rec.tags[: evaluation.OFF_TOPIC_GENERIC],
            )
        per_split.append(split_figures(rec, query, truth, categories, off, blocked))

    metrics = list(per_split[0]["plain"])
    print(
        f"{len(splits)} splits, {np.mean([len(s.test) for s in splits]):.0f} test posts each, "
        f"method {config.method}, n={DEFAULT_NEIGHBOURS}, spam filter on, pool "
        f"{BALANCED_POOL}; {time.perf_counter() - start:.0f} s"
    )
    print(f"{'':16}{'plain':>10}{'balanced':>10}{'balanced - plain':>24}")
    for metric in metrics:
        plain = np.array([s["plain"][metric] for s in per_split])
        mix = np.array([s["balanced"][metric] for s in per_split])
        diff = mix - plain
        se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
        print(
            f"{metric:16}{plain.mean():10.4f}{mix.mean():10.4f}{diff.mean():+14.4f} ± {se:.4f} (se)"
        )
    if not has_off_topic:
        print("off_topic@10: this evaluation does not have it yet")


if __name__ == "__main__":
    main()
