"""Experiment: which rule limits other categories' search tags without losing own-category hits?

Hedging only removes tags from a ranking, never changes a score, so every rule can be
tried on the same scores: per split of ``python -m recommender evaluate`` (same splits,
test and probe posts), the default method's scores are computed once for every held-out
image, then each rule filters them. Rules:

- ``margin=m``: :func:`recommender.hedging.hedge_mask`, what ``Method.category_margin``
  does: keep a category's tags only if its best tag scores within ``m`` of the best
  category tag;
- ``probe=t``: what the image features say about the category: a ridge regression from
  the training images' features to their category (one-hot, the same solver and penalty
  as the image prior), fitted per split on the training images only; keep a category's
  tags only if the image's predicted share is at least ``t`` (the most likely category
  always stays);
- ``probe=t&margin=m``: remove a category only if both say so.

For each rule: ``off_topic@10``, ``own_category_hit@10``, recall@10 and beyond-category
recall@10 (means over splits), and the mean paired difference against no rule with its
standard error. A rule may become the default only if it lowers ``off_topic@10`` without
lowering ``own_category_hit@10``.

    .venv/bin/python -m benchmarks.hedging_rules [--splits 5] [--data DATA]  # $HASHTAG_DATASET
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp

from recommender.blas import serial_blas
from recommender.datasets import load_dataset
from recommender.embedding import dataset_features
from recommender.evaluation import (
    beyond_category,
    image_keys,
    off_topic_at_k,
    off_topic_tags,
    own_category_hit_at_k,
    recall_at_k,
    stratified_splits,
)
from recommender.hashtag_model import fit_image_prior
from recommender.hedging import dataset_categories, hedge_mask, tag_categories
from recommender.paths import default_dataset
from recommender.recommender import BuildConfig, HashtagRecommender
from recommender.scoring import get_method, neighbour_weights, top_k

RULES = (
    ["none"]
    + [f"margin={m}" for m in (0.0, 0.1, 0.2, 0.3, 0.5)]
    + [f"probe={t}" for t in (0.02, 0.05, 0.1, 0.15, 0.2)]
    + [f"probe={t}&margin={m}" for t in (0.05, 0.1, 0.2) for m in (0.1, 0.3)]
)
K = 21  # as the evaluation ranks: one more than its recall curve needs


def rule_mask(rule: str, scores, tag_category, probe) -> np.ndarray | None:
    """Tags ``rule`` removes (None: none). ``probe``: the image's predicted category shares."""
    if rule == "none":
        return None
    parts = dict(p.split("=") for p in rule.split("&"))
    n_cats = len(probe)
    drop = np.zeros(n_cats, dtype=bool)
    if "probe" in parts:
        drop = probe < float(parts["probe"])
        drop[np.argmax(probe)] = False
    if "margin" in parts:
        # hedge_mask on one tag per category gives the categories it drops
        by_margin = hedge_mask(scores, tag_category, float(parts["margin"]))
        dropped = np.zeros(n_cats, dtype=bool)
        if by_margin is not None:
            dropped[np.unique(tag_category[by_margin])] = True
        drop = (drop & dropped) if "probe" in parts else dropped
    is_cat = tag_category >= 0
    mask = np.zeros(len(tag_category), dtype=bool)
    mask[is_cat] = drop[tag_category[is_cat]]
    return mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(default_dataset()))
    parser.add_argument("--splits", type=int, default=5)
    args = parser.parse_args()
    config = BuildConfig()
    method = get_method(config.method)
    dataset = load_dataset(args.data)
    feats = dataset_features(dataset, config)
    posts, rows = dataset.posts, feats.image_rows
    splits = stratified_splits(
        posts, rows, args.splits, image_keys=image_keys(dataset, posts, rows)
    )
    categories = dataset_categories(p.category for p in posts)
    position = {c: i for i, c in enumerate(categories)}
    results: dict[str, dict[str, list[float]]] = {r: {} for r in RULES}
    for s, split in enumerate(splits):
        start = time.perf_counter()
        train = [int(i) for i in split.train]
        rec = HashtagRecommender.fit(
            [posts[i] for i in train], feats.features, [rows[i] for i in train], config
        )
        # the category probe: training images only
        known = [i for i in train if rows[i] >= 0 and posts[i].category]
        onehot = sp.csr_matrix(
            (
                np.ones(len(known)),
                (np.arange(len(known)), [position[posts[i].category] for i in known]),
            ),
            shape=(len(known), len(categories)),
        )
        weights, columns = fit_image_prior(feats.features[[rows[i] for i in known]], onehot)
        held = np.concatenate([split.test, split.probe])
        queries = feats.features[[rows[i] for i in held]]
        shares = np.zeros((len(held), len(categories)), dtype=np.float32)
        shares[:, columns] = queries @ weights
        tag_category = tag_categories(rec.tags, categories)
        with serial_blas():
            scores = []
            for q in queries:
                idx, sims = rec.index.search(q, 5)
                scores.append(rec.scorer.scores(idx, neighbour_weights(sims, method), method, q))
        n_test = len(split.test)
        truth = [set(posts[i].hashtags) for i in split.test]
        own = [posts[i].category for i in split.test]
        off = off_topic_tags(own, categories, rec.tags[:10])
        targets = [str(posts[i].category) for i in split.probe]
        for rule in RULES:
            ranked = [
                [rec.tags[t] for t in top_k(sc, K, rule_mask(rule, sc, tag_category, sh))]
                for sc, sh in zip(scores, shares, strict=True)
            ]
            b_ranked, b_truth, keep = beyond_category(ranked[:n_test], truth, own)
            values = {
                "off_topic@10": off_topic_at_k(ranked[:n_test], truth, off, 10).mean(),
                "own_category_hit@10": own_category_hit_at_k(ranked[n_test:], targets, 10).mean(),
                "recall@10": recall_at_k(ranked[:n_test], truth, 10).mean(),
                "beyond_recall@10": recall_at_k(
                    [r for r, k in zip(b_ranked, keep, strict=True) if k],
                    [t for t, k in zip(b_truth, keep, strict=True) if k],
                    10,
                ).mean(),
            }
            for metric, value in values.items():
                results[rule].setdefault(metric, []).append(float(value))
        print(f"split {s + 1}/{len(splits)}: {time.perf_counter() - start:.1f} s", flush=True)
    metrics = list(results["none"])
    print(f"\n{len(splits)} splits; paired difference against no rule: mean (standard error)")
    header = f"{'rule':<22}" + "".join(f"{m:>22}" for m in metrics)
    print(header + "".join(f"{'d ' + m:>26}" for m in metrics))
    base = results["none"]
    for rule in RULES:
        cells = "".join(f"{np.mean(results[rule][m]):>22.4f}" for m in metrics)
        diffs = ""
        for m in metrics:
            d = np.array(results[rule][m]) - np.array(base[m])
            se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
            diffs += f"{f'{d.mean():+.4f} ({se:.4f})':>26}"
        print(f"{rule:<22}{cells}{diffs}")


if __name__ == "__main__":
    main()
