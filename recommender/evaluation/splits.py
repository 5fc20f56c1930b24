"""Held-out splits: which posts train and which are tested, and the guard against overlap.

:func:`stratified_splits` holds out posts per search hashtag; :func:`check_split` refuses a
split whose train and test share a post, a post id or an image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from recommender.data.datasets import Post
from recommender.errors import ConfigError, DatasetError
from recommender.query.hedging import single_tag_categories

DEFAULT_SPLITS = 5
DEFAULT_TEST_FRACTION = 0.2
DEFAULT_SEED = 0
OVERLAP_MESSAGE = "This will cause incorrect evaluation, check your data split."


def _no_posts() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Split:
    """Indices into the data set's posts: who trains, who is tested.

    ``probe``: held-out posts of the categories without test posts (see
    :func:`stratified_splits`); they leave training like test posts and only score
    ``own_category_hit@10``.
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
