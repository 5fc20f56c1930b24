"""How sure must the ImageNet head be before the page says what it sees?

On the demo data set's photos, takes each photo's most probable ImageNet class and, where
that class shows one of the data set's categories (:data:`CATEGORY_CLASSES`: animals, food,
cars), checks it against the category the photo was collected under. Prints
the precision by the class's probability, per band and for everything above each value;
the page names classes only from the lowest value above which more than half are right
(:data:`recommender.ui.presentation.SEEN_SURE`), and says "maybe" below it.

    HASHTAG_DATASET=... python -m benchmarks.seen_threshold
"""

from __future__ import annotations

import argparse

import numpy as np

from .common import DATASET

# The ImageNet-1k classes (Keras order) that plainly show a demo category: the table the
# retired head-hedging rule read (recommender/assets/imagenet_categories.csv until issue 21).
CATEGORY_CLASSES = {
    "animals": tuple(range(0, 398)),
    "food": tuple(range(923, 958)) + tuple(range(959, 970)),
    "cars": (436, 468, 475, 479, 511, 535, 581, 609, 627, 656, 661, 717, 751, 817),
}
EDGES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01)


def top_class_checks(dataset_path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(probability, right) of the top class of photos, judged two ways:

    ``category``: photos whose top class shows a category the data set has (animals, food,
    cars); right when that is the photo's category. ``hashtags``: photos whose post has a
    tag list (2+ hashtags) and whose top class stands for hashtags
    (``assets/imagenet_hashtags.csv``, 685 classes); right when the post carries one.
    """
    from recommender.config import BuildConfig
    from recommender.data.datasets import load_dataset
    from recommender.engines.embed_stage import dataset_features
    from recommender.query.hedging import dataset_categories
    from recommender.vision.content import class_hashtags

    dataset = load_dataset(dataset_path)
    feats = dataset_features(dataset, BuildConfig())
    if feats.classes is None:
        raise SystemExit("the backbone has no ImageNet head")
    categories = sorted(dataset_categories(p.category for p in dataset.posts))
    shows = np.full(1000, -1, dtype=np.int64)  # the category index each class shows
    for i, category in enumerate(categories):
        ids = np.asarray(CATEGORY_CLASSES.get(category, ()), dtype=np.int64)
        shows[ids[shows[ids] < 0]] = i
    tags_of = class_hashtags().hashtags
    found: dict[str, tuple[list, list]] = {"category": ([], []), "hashtags": ([], [])}
    seen_rows = set()
    for post, row in zip(dataset.posts, feats.image_rows, strict=True):
        if row < 0 or row in seen_rows:
            continue
        seen_rows.add(row)
        top = int(feats.classes.ids[row, 0])
        p = float(feats.classes.probs[row, 0])
        if post.category in categories and shows[top] >= 0:
            found["category"][0].append(p)
            found["category"][1].append(categories[shows[top]] == post.category)
        if len(post.hashtags) >= 2 and tags_of[top]:
            found["hashtags"][0].append(p)
            found["hashtags"][1].append(bool(set(tags_of[top]) & set(post.hashtags)))
    return {k: (np.array(p), np.array(r)) for k, (p, r) in found.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DATASET))
    args = parser.parse_args(argv)
    for judged, (p, right) in top_class_checks(args.data).items():
        print(f"\nright by {judged}: {len(p)} photos\n")
        print("| top-class probability | photos | right (band) | right (this and above) |")
        print("|---|---|---|---|")
        for lo, hi in zip(EDGES[:-1], EDGES[1:], strict=True):
            band = (p >= lo) & (p < hi)
            above = p >= lo
            if not above.any():
                continue
            share = f"{right[band].mean():.0%}" if band.any() else "-"
            print(
                f"| {lo:.1f} to {min(hi, 1.0):.1f} | {band.sum()} | {share} | "
                f"{right[above].mean():.0%} ({above.sum()}) |"
            )


if __name__ == "__main__":
    main()
