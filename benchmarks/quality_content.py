"""Paired comparisons behind issue 13: the content term's weight, and Lite1 against Lite0.

Runs the project's evaluation (:func:`recommender.evaluation.evaluate`, the same splits for
every candidate) with the test images' ImageNet classes, for the default method at each
``--weights`` value of ``content_weight`` and for each ``--backbones``; prints per metric the
mean over splits and the mean paired difference (with its standard error) against the first
weight on the first backbone. Splits depend only on the posts and their images' content
hashes, so different backbones are scored on identical splits and pair too.

    HASHTAG_DATASET=... python -m benchmarks.quality_content --splits 20 --weights 0 0.2 0.4 0.8 1.6
    HASHTAG_DATASET=... python -m benchmarks.quality_content --splits 20 --weights 0 0.4 \\
        --backbones efficientnet_lite0 efficientnet_lite1
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from .common import DATASET

METRICS = ("recall@10", "beyond_recall@10", "ndcg@10", "hit@10", "precision@5", "generic@10")


def per_split(backbone: str, weights: list[float], splits: int) -> dict[str, dict]:
    from recommender.config import DEFAULT_METHOD, METHODS, BuildConfig
    from recommender.data.datasets import load_dataset
    from recommender.engines.embed_stage import dataset_features
    from recommender.evaluation import Candidate, evaluate, image_keys

    config = BuildConfig(backbone=backbone)
    dataset = load_dataset(DATASET)
    feats = dataset_features(dataset, config)
    keys = image_keys(dataset, dataset.posts, feats.image_rows)
    classes = feats.classes  # kept by the embed stage
    base = METHODS[DEFAULT_METHOD]
    candidates = [
        Candidate(f"w={w:g}", dataclasses.replace(base, name=f"content={w:g}", content_weight=w))
        for w in weights
    ]
    result = evaluate(
        dataset.posts,
        feats.features,
        feats.image_rows,
        config,
        keys=keys,
        candidates=candidates,
        n_splits=splits,
        classes=classes,
        n_sweep=(),
    )
    return {f"{backbone} {c.key}": result.per_split[c.key] for c in candidates}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.2, 0.4, 0.8, 1.6])
    parser.add_argument("--backbones", nargs="+", default=["efficientnet_lite0"])
    args = parser.parse_args(argv)
    rows: dict[str, dict] = {}
    for backbone in args.backbones:
        rows.update(per_split(backbone, args.weights, args.splits))
    reference = next(iter(rows))
    print(f"{args.splits} splits; paired differences against {reference} (mean +- s.e.)\n")
    print("| candidate | " + " | ".join(METRICS) + " |")
    print("|---" * (len(METRICS) + 1) + "|")
    for key, values in rows.items():
        cells = []
        for m in METRICS:
            v, b = np.array(values[m]), np.array(rows[reference][m])
            d = v - b
            se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else 0.0
            cells.append(f"{v.mean():.4f} ({d.mean():+.4f} +- {se:.4f})")
        print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
