"""Experiment: which rule limits other categories' search tags without losing own-category hits?

Hedging only removes tags from a ranking, never changes a score, so every rule can be
tried on the same scores: per split of ``python -m recommender evaluate`` (same splits,
test and probe posts), the default method's scores (its default neighbours, with the
content term) are computed once for every held-out image, then each rule filters them.
Rules:

- ``margin=m``: :func:`hedge_mask`, what the retired ``Method.category_margin`` did: keep
  a category's tags only if its best tag scores within ``m`` of the best
  category tag;
- ``probe=t``: what the image features say about the category: a ridge regression from
  the training images' features to their category (one-hot, the same solver and penalty
  as the image prior), fitted per split on the training images only; keep a category's
  tags only if the image's predicted share is at least ``t`` (the most likely category
  always stays);
- ``softmax=t``: the same with a multinomial logistic regression (L2 ``1e-4``), a
  calibrated posterior: keep a category only if its probability is at least ``t``;
- ``carry=t``: one logistic regression per category for "the post carries this category's
  tag" (any form; travel posts that carry #nature count for nature), fitted on every
  training post with an image; keep a category only if that probability is at least ``t``;
- ``nb=a``: neighbour agreement: keep a category only if more than a share ``a`` of the 50
  nearest training images' posts carry one of its tags;
- ``evidence=t/a``: :func:`evidence_hedge_mask`, what the retired
  ``Method.evidence_hedge=t,evidence_agreement=a`` did: remove a
  category whose search tag's image prior is below ``t`` and that at most a share ``a`` of
  the query's neighbours carry (a single-tag category: none of them); it needs nothing the
  model does not already hold;
- ``calibrated=t/s``: :func:`recommender.query.hedging.calibrated_hedge_mask`, what
  ``Method.calibrated_hedge=t,calibrated_single=s`` does (the default's rule): remove a
  category when the model's calibration (:mod:`recommender.fit.calibration`, fitted at build
  time on the
  training images) gives a post like this one less than ``t`` probability of carrying one
  of its forms (a single-tag category: less than ``s``);
- ``x&y``: remove a category only if every part says so; ``x|y``: if either does;
  ``+boost=w``: also add ``w`` times
  the ``carry`` probability to each category's search tag (this one changes scores: a
  lever to win back own-category hits);
- ``x>demote=t/s``: after rule ``x``, what ``Method.calibrated_demote=t,
  calibrated_demote_single=s`` does: move a category's tags below the top 5
  (:func:`recommender.query.hedging.moved_below`, not out of the ranking) when the
  calibration gives it less than ``t`` (a single-tag category: ``s``).

For each rule: ``off_topic@5``, ``off_topic@10``, ``own_category_hit@10`` and ``@5``,
recall@10, recall@5, precision@5, hit@10 and beyond-category recall@10 (means over splits), and the
mean paired difference against ``--against`` (no rule by default) with its standard error.
A rule may become the default only if it lowers ``off_topic@10`` without lowering
``own_category_hit@10``.

    .venv/bin/python -m benchmarks.hedging_rules [--splits 5] [--seed 0] [--data DATA]
        [--rules R1,R2,...] [--against RULE] [--json OUT]   # DATA: $HASHTAG_DATASET
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import scipy.optimize
import scipy.sparse as sp

from recommender.blas import serial_blas
from recommender.config import get_method
from recommender.data.datasets import load_dataset
from recommender.engines.embed_stage import dataset_features
from recommender.evaluation import (
    beyond_category,
    hit_rate_at_k,
    image_keys,
    off_topic_at_k,
    off_topic_tags,
    own_category_hit_at_k,
    precision_at_k,
    recall_at_k,
    stratified_splits,
)
from recommender.fit.als import fit_image_prior
from recommender.fit.training import fit_recommender
from recommender.paths import default_dataset
from recommender.query.hedging import (
    DEMOTE_TOP,
    WIDE_NEIGHBOURS,
    calibrated_hedge_mask,
    category_forms,
    category_tags_mask,
    dataset_categories,
    moved_below,
)
from recommender.query.recommender import BuildConfig
from recommender.query.scoring import DEFAULT_NEIGHBOURS, top_k

RULES = (
    ["none"]
    + [f"margin={m}" for m in (0.0, 0.1, 0.2, 0.3, 0.5)]
    + [f"probe={t}" for t in (0.02, 0.05, 0.1, 0.15, 0.2)]
    + [f"probe={t}&margin={m}" for t in (0.05, 0.1, 0.2) for m in (0.1, 0.3)]
    + [f"softmax={t}" for t in (0.05, 0.1, 0.15)]
    + [f"carry={t}" for t in (0.05, 0.1, 0.15, 0.2)]
    + [f"nb={a}" for a in (0.02, 0.05, 0.1)]
    + [f"carry={t}&nb={a}" for t in (0.1, 0.15, 0.2, 0.3) for a in (0.05, 0.1)]
    + [f"carry={t}&nb=0.1+boost={w}" for t in (0.2, 0.3) for w in (0.2, 0.5)]
    + [
        f"evidence={t}/{a}"
        for t, a in ((0.3, 0.07), (0.4, 0.07), (0.5, 0.07), (0.4, 0.14), (0.3, 0.2), (0.5, 0.2))
    ]
    + [
        f"calibrated={t}/{s}"
        for t in (0.1, 0.2, 0.25, 0.275, 0.3, 0.325, 0.35, 0.4)
        for s in (0.06, 0.08, 0.1, 0.105, 0.11, 0.12)
    ]
    + [
        f"evidence=0.3/0.07|calibrated={t}/{s}"
        for t in (0.25, 0.3, 0.325)
        for s in (0.08, 0.1, 0.105)
    ]
    + [
        f"calibrated=0.325/0.105>demote={t}/{s}"
        for t in (0.4, 0.5, 0.6, 0.7)
        for s in (0.105, 0.2, 0.3, 0.4)
    ]
)
K = 21  # as the evaluation ranks: one more than its recall curve needs
AGREEMENT_NEIGHBOURS = 50  # the neighbours the ``nb`` rule asks
L2 = 1e-4  # the logistic regressions' penalty (features are unit vectors)


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


def logistic(x: np.ndarray, y: np.ndarray, multinomial: bool) -> tuple[np.ndarray, np.ndarray]:
    """L2-penalised logistic regression by L-BFGS: ``(weights (d, c), bias (c,))``.

    ``multinomial``: ``y`` (n,) class ids, one softmax over the classes; otherwise ``y`` is
    (n, c) 0/1 and every column is its own binary problem (fitted jointly, independent).
    """
    n, d = x.shape
    c = int(y.max()) + 1 if multinomial else y.shape[1]
    target = np.eye(c)[y] if multinomial else y.astype(np.float64)

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        weights, bias = w[: d * c].reshape(d, c), w[d * c :]
        z = x @ weights + bias
        if multinomial:
            z = z - z.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            value = -np.log(p[np.arange(n), y] + 1e-12).mean()
        else:
            p = 1.0 / (1.0 + np.exp(-z))
            value = -(target * np.log(p + 1e-12) + (1 - target) * np.log(1 - p + 1e-12)).sum() / n
        g = (p - target) / n
        value += 0.5 * L2 * float((weights * weights).sum())
        return value, np.concatenate([(x.T @ g + L2 * weights).ravel(), g.sum(axis=0)])

    fit = scipy.optimize.minimize(
        loss, np.zeros(d * c + c), jac=True, method="L-BFGS-B", options={"maxiter": 500}
    )
    return fit.x[: d * c].reshape(d, c), fit.x[d * c :]


def predict(x: np.ndarray, model: tuple[np.ndarray, np.ndarray], multinomial: bool) -> np.ndarray:
    z = x.astype(np.float64) @ model[0] + model[1]
    if not multinomial:
        return 1.0 / (1.0 + np.exp(-z))
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def rule_mask(rule: str, scores, tag_category, signals) -> np.ndarray | None:
    """Tags ``rule`` removes (None: none). ``signals``: the image's per-category ``probe``,
    ``softmax``, ``carry``, ``nb``, ``evidence`` and ``calibrated`` values, the share
    ``nb15`` of its neighbours carrying each category, and which categories are
    ``single_tag``."""
    rule = rule.partition("+")[0]
    if rule == "none":
        return None
    if "|" in rule:  # what either part removes, as a method with two hedging rules does
        masks = [rule_mask(part, scores, tag_category, signals) for part in rule.split("|")]
        masks = [m for m in masks if m is not None]
        return np.logical_or.reduce(masks) if masks else None
    parts = dict(p.split("=") for p in rule.split("&"))
    n_cats = len(signals["calibrated"])
    drop = np.ones(n_cats, dtype=bool)
    for name, value in parts.items():
        if name == "calibrated":
            threshold, single = (float(v) for v in value.split("/"))
            by_calibration = calibrated_hedge_mask(
                signals["calibrated"], tag_category, signals["single_tag"], threshold, single
            )
            dropped = removed_categories(by_calibration, tag_category, n_cats)
        elif name == "evidence":
            threshold, agreement = (float(v) for v in value.split("/"))
            by_evidence = evidence_hedge_mask(
                signals["evidence"],
                signals["nb15"],
                tag_category,
                signals["single_tag"],
                threshold,
                agreement,
            )
            dropped = removed_categories(by_evidence, tag_category, n_cats)
        elif name == "margin":
            by_margin = hedge_mask(scores, tag_category, float(value))
            dropped = removed_categories(by_margin, tag_category, n_cats)
        elif name == "nb":
            dropped = signals["nb"] <= float(value)
        else:
            dropped = signals[name] < float(value)
            if name == "probe":
                dropped[np.argmax(signals[name])] = False
        drop &= dropped
    return category_tags_mask(drop, tag_category)


def removed_categories(mask: np.ndarray | None, tag_category: np.ndarray, n_cats: int):
    """(K,) boolean: the categories whose tags a library hedging ``mask`` removes."""
    out = np.zeros(n_cats, dtype=bool)
    if mask is not None:
        out[np.unique(tag_category[mask])] = True
    return out


def demoted_ranking(rule: str, scores, k: int, removed, tag_category, signals) -> np.ndarray:
    """The top ``k`` of ``scores`` without the ``removed`` tags, after the rule's demotion
    (``>demote=t/s``; none: plain order), as the recommender ranks."""
    _, arrow, demote = rule.partition(">")
    if not arrow:
        return top_k(scores, k, removed)
    threshold, single = (float(v) for v in demote.partition("=")[2].split("/"))
    down = calibrated_hedge_mask(
        signals["calibrated"], tag_category, signals["single_tag"], threshold, single
    )
    if down is None:
        return top_k(scores, k, removed)
    return moved_below(top_k(scores, k + DEMOTE_TOP, removed), down)[:k]


def boosted(rule: str, scores: np.ndarray, category_tag: np.ndarray, carry: np.ndarray):
    """``scores`` with ``w * carry`` added to each category's search tag (``+boost=w``)."""
    _, plus, boost = rule.partition("+")
    if not plus:
        return scores
    out = scores.copy()
    known = category_tag >= 0
    out[category_tag[known]] += float(boost.split("=")[1]) * carry[known]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(default_dataset()))
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="split s uses seed + s")
    parser.add_argument("--rules", help="comma-separated rules (default: the built-in list)")
    parser.add_argument("--against", default="none", help="the rule paired differences take")
    parser.add_argument("--json", help="also write every rule's per-split metrics there")
    args = parser.parse_args()
    rules = list(dict.fromkeys(args.rules.split(","))) if args.rules else list(RULES)
    rules = list(dict.fromkeys(["none", args.against, *rules]))
    # the regressions over every training image are fitted only for the rules that read them
    fitted = {name for name in ("probe", "softmax", "carry") if any(name in r for r in rules)}
    fitted |= {"carry" for r in rules if "+boost" in r}
    config = BuildConfig()
    method = get_method(config.method)
    dataset = load_dataset(args.data)
    feats = dataset_features(dataset, config)
    posts, rows = dataset.posts, feats.image_rows
    splits = stratified_splits(
        posts, rows, args.splits, seed=args.seed, image_keys=image_keys(dataset, posts, rows)
    )
    categories = dataset_categories(p.category for p in posts)
    position = {c: i for i, c in enumerate(categories)}
    results: dict[str, dict[str, list[float]]] = {r: {} for r in rules}
    for s, split in enumerate(splits):
        start = time.perf_counter()
        train = [int(i) for i in split.train]
        rec = fit_recommender(
            [posts[i] for i in train], feats.features, [rows[i] for i in train], config
        )
        held = np.concatenate([split.test, split.probe])
        queries = feats.features[[rows[i] for i in held]]
        x_queries = np.asarray(queries, np.float32)
        held_classes = feats.classes.take([rows[i] for i in held]) if feats.classes else None
        signals = {
            name: np.zeros((len(held), len(categories)))
            for name in ("probe", "softmax", "carry", "nb", "nb15", "evidence")
        }
        signals["calibrated"] = np.full((len(held), len(categories)), np.nan)
        if "probe" in fitted:  # the category probe: training images only
            known = [i for i in train if rows[i] >= 0 and posts[i].category]
            onehot = sp.csr_matrix(
                (
                    np.ones(len(known)),
                    (np.arange(len(known)), [position[posts[i].category] for i in known]),
                ),
                shape=(len(known), len(categories)),
            )
            weights, columns = fit_image_prior(feats.features[[rows[i] for i in known]], onehot)
            signals["probe"][:, columns] = queries @ weights
        if "softmax" in fitted:
            known = [i for i in train if rows[i] >= 0 and posts[i].category]
            x_known = np.asarray(feats.features[[rows[i] for i in known]], dtype=np.float32)
            y_known = np.array([position[posts[i].category] for i in known])
            signals["softmax"] = predict(x_queries, logistic(x_known, y_known, True), True)
        if "carry" in fitted:
            forms = [category_forms(c) for c in categories]
            imaged = [i for i in train if rows[i] >= 0]
            carries = np.array([[bool(f & set(posts[i].hashtags)) for f in forms] for i in imaged])
            x_imaged = np.asarray(feats.features[[rows[i] for i in imaged]], np.float32)
            signals["carry"] = predict(x_queries, logistic(x_imaged, carries, False), False)
        # the model's own view of its categories: the same ones, in the same order
        assert rec.manifest["categories"] == categories
        tag_category, category_tag = rec.hedge.tag_category, rec.hedge.category_tag
        with serial_blas():
            scores = []
            for j, q in enumerate(queries):
                found, found_sims = rec.index.search(q, max(AGREEMENT_NEIGHBOURS, WIDE_NEIGHBOURS))
                signals["nb"][j] = rec.hedge.carried(found[:AGREEMENT_NEIGHBOURS]).mean(axis=0)
                probs = None if held_classes is None else held_classes.dense(j)
                s_ = rec.score_nearest(q, found, found_sims, DEFAULT_NEIGHBOURS, method, probs)
                scores.append(s_.scores)
                evidence = rec.hedge.evidence(method, s_)  # "prior" and "share" first
                signals["evidence"][j], signals["nb15"][j] = evidence[:, 0], evidence[:, 1]
                if rec.hedge.calibration is not None:
                    signals["calibrated"][j] = rec.hedge.calibration.probability(evidence)
        n_test = len(split.test)
        truth = [set(posts[i].hashtags) for i in split.test]
        own = [posts[i].category for i in split.test]
        off = off_topic_tags(own, categories, rec.tags[:10])
        targets = [str(posts[i].category) for i in split.probe]
        for rule in rules:
            ranked = []
            for j, sc in enumerate(scores):
                sig = {name: value[j] for name, value in signals.items()}
                sig["single_tag"] = rec.hedge.single_tag
                sc = boosted(rule, sc, category_tag, sig["carry"])
                removed = rule_mask(rule.partition(">")[0], sc, tag_category, sig)
                best = demoted_ranking(rule, sc, K, removed, tag_category, sig)
                ranked.append([rec.tags[t] for t in best])
            b_ranked, b_truth, keep = beyond_category(ranked[:n_test], truth, own)
            values = {
                "off_topic@5": off_topic_at_k(ranked[:n_test], truth, off, 5).mean(),
                "off_topic@10": off_topic_at_k(ranked[:n_test], truth, off, 10).mean(),
                "own_category_hit@10": own_category_hit_at_k(ranked[n_test:], targets, 10).mean(),
                "own_category_hit@5": own_category_hit_at_k(ranked[n_test:], targets, 5).mean(),
                "recall@10": recall_at_k(ranked[:n_test], truth, 10).mean(),
                "recall@5": recall_at_k(ranked[:n_test], truth, 5).mean(),
                "precision@5": precision_at_k(ranked[:n_test], truth, 5).mean(),
                "hit@10": hit_rate_at_k(ranked[:n_test], truth, 10).mean(),
                "beyond_recall@10": recall_at_k(
                    [r for r, k in zip(b_ranked, keep, strict=True) if k],
                    [t for t, k in zip(b_truth, keep, strict=True) if k],
                    10,
                ).mean(),
            }
            for metric, value in values.items():
                results[rule].setdefault(metric, []).append(float(value))
        print(f"split {s + 1}/{len(splits)}: {time.perf_counter() - start:.1f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"seed": args.seed, "results": results}, indent=1))
    metrics = list(results["none"])
    width = max(len(r) for r in rules) + 2
    print(f"\n{len(splits)} splits (seeds {args.seed}-{args.seed + len(splits) - 1}): means")
    print(f"{'rule':<{width}}" + "".join(f"{m:>20}" for m in metrics))
    for rule in rules:
        print(f"{rule:<{width}}" + "".join(f"{np.mean(results[rule][m]):>20.4f}" for m in metrics))
    print(f"\npaired difference against {args.against}: mean (standard error)")
    print(f"{'rule':<{width}}" + "".join(f"{m:>20}" for m in metrics))
    base = results[args.against]
    for rule in rules:
        diffs = ""
        for m in metrics:
            d = np.array(results[rule][m]) - np.array(base[m])
            se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
            diffs += f"{f'{d.mean():+.4f} ({se:.4f})':>20}"
        print(f"{rule:<{width}}{diffs}")


if __name__ == "__main__":
    main()
