"""The hashtag model: implicit-feedback ALS on the post x hashtag matrix.

Posts are the users, hashtags the items. Every post that carries hashtags trains the model,
whether or not it has an image; the image index (see :mod:`recommender.query.neighbours`) only
holds the posts that have one.
"""

from __future__ import annotations

import warnings
from array import array
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp

from recommender.config import ALSParams
from recommender.errors import FitError
from recommender.mapped import chunks


def tag_vocabulary(
    post_tags: Sequence[Sequence[str]], min_support: int = 1
) -> tuple[list[str], np.ndarray]:
    """Hashtags that occur in at least ``min_support`` posts, most frequent first.

    Returns the tags and their post counts; ties are broken alphabetically so the order is
    deterministic.
    """
    counts: dict[str, int] = {}
    for tags in post_tags:
        for tag in set(tags):
            counts[tag] = counts.get(tag, 0) + 1
    kept = sorted((t for t, c in counts.items() if c >= min_support), key=lambda t: (-counts[t], t))
    return kept, np.array([counts[t] for t in kept], dtype=np.int64)


def interaction_matrix(
    post_tags: Sequence[Sequence[str]], vocabulary: Sequence[str]
) -> sp.csr_matrix:
    """Binary posts x hashtags CSR matrix over ``vocabulary`` (unknown tags are ignored)."""
    column = {t: i for i, t in enumerate(vocabulary)}
    indptr = np.zeros(len(post_tags) + 1, dtype=np.int64)
    indices = array("i")  # 4 bytes a pair, not a Python int's 28
    for row, tags in enumerate(post_tags):
        cols = sorted({column[t] for t in tags if t in column})
        indices.extend(cols)
        indptr[row + 1] = len(indices)
    data = np.ones(len(indices), dtype=np.float32)
    return sp.csr_matrix(
        (data, np.frombuffer(indices, dtype=np.int32), indptr),
        shape=(len(post_tags), len(vocabulary)),
    )


def weight_matrix(matrix: sp.csr_matrix, params: ALSParams) -> sp.csr_matrix:
    """The posts x hashtags matrix as ALS sees it (float32; BM25 if ``params`` say so).

    Every ALS engine factorises this same matrix.
    """
    weighted = sp.csr_matrix(matrix, dtype=np.float32)
    if params.weighting == "bm25":
        from implicit.nearest_neighbours import bm25_weight

        # bm25 weights the item axis of an items x users matrix: transpose there and back.
        weighted = bm25_weight(weighted.T.tocoo(), K1=100, B=0.8).T.tocsr().astype(np.float32)
    return weighted


def fit_als(
    matrix: sp.csr_matrix,
    params: ALSParams,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit ALS on a posts x hashtags matrix; return (post_factors, tag_factors) as float32.

    Raises :class:`FitError` if the factors come out non-finite.
    """
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.recommender_base import ModelFitError

    from recommender.blas import serial_blas

    weighted = weight_matrix(matrix, params)

    def callback(iteration: int, _elapsed: float, _loss: float | None) -> None:
        if progress is not None:
            progress(iteration + 1, params.iterations)

    # implicit's own solver threads do the work; a threaded BLAS underneath only slows it.
    with serial_blas(), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        model = AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            alpha=params.alpha,
            iterations=params.iterations,
            random_state=params.random_state,
        )
        try:
            model.fit(weighted.tocsr(), show_progress=False, callback=callback)
        except ModelFitError as exc:  # implicit's own NaN check, during the iterations
            raise FitError(
                f"ALS failed ({exc}); lower alpha or raise regularization and rebuild"
            ) from None
    posts = np.ascontiguousarray(model.user_factors, dtype=np.float32)
    tags = np.ascontiguousarray(model.item_factors, dtype=np.float32)
    if not (np.isfinite(posts).all() and np.isfinite(tags).all()):
        raise FitError(
            "ALS produced non-finite factors; lower alpha or raise regularization and rebuild"
        )
    return posts, tags


# Profiles keep the hashtags seen with the single tag in at least this many posts.
PROFILE_MIN_COOCCURRENCE = 2
# Ridge prior: hashtags in the targets of at least this many training images, and the L2
# penalty on unit-length image features (3 measured best of 1, 3, 10 on the demo data).
PRIOR_MIN_POSTS = 3
PRIOR_L2 = 3.0
# The prior predicts at most this many hashtags (the most frequent): its weights are d x Q
# float32 (1280 x 20k = 100 MB). The demo data has far fewer, so the cap only bites at scale.
PRIOR_MAX_TAGS = 20_000
PRIOR_CHUNK = 8192  # images per step of the X^T X, X^T Y accumulation


def single_tag_profiles(
    matrix: sp.csr_matrix,
    image_tags: sp.csr_matrix,
    min_cooccurrence: int = PROFILE_MIN_COOCCURRENCE,
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Profiles of the hashtags that are some indexed image's only hashtag.

    ``matrix`` is the posts x hashtags matrix of every training post, ``image_tags`` that of
    the indexed images. The profile of hashtag ``s`` gives each hashtag ``t`` the share of
    the posts carrying ``s`` and at least one other hashtag that also carry ``t`` (kept
    when at least ``min_cooccurrence`` posts carry both), and ``s`` itself 1.

    Returns ``(profiles, image_profile)``: a (P, T) CSR matrix and, per indexed image, its
    row in ``profiles`` (-1 for images with several hashtags).
    """
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    image_tags = sp.csr_matrix(image_tags, dtype=np.float32)
    n_tags = matrix.shape[1]
    single = np.flatnonzero(np.diff(image_tags.indptr) == 1)
    image_profile = np.full(image_tags.shape[0], -1, dtype=np.int64)
    if len(single) == 0:
        return sp.csr_matrix((0, n_tags), dtype=np.float32), image_profile
    single_tag = image_tags.indices[image_tags.indptr[single]]
    tags, row_of = np.unique(single_tag, return_inverse=True)
    image_profile[single] = row_of
    rich = matrix[np.flatnonzero(np.diff(matrix.indptr) >= 2)]
    rich.data[:] = 1.0
    together = sp.csr_matrix(rich[:, tags].T @ rich)  # (P, T) co-occurrence counts
    together.data[together.data < min_cooccurrence] = 0
    together.eliminate_zeros()
    posts_with = np.asarray(rich[:, tags].sum(axis=0)).ravel()
    profiles = sp.csr_matrix(
        sp.diags(1.0 / np.maximum(posts_with, 1)).astype(np.float32) @ together, dtype=np.float32
    )
    own = sp.csr_matrix(
        (np.ones(len(tags), np.float32), (np.arange(len(tags)), tags)), shape=profiles.shape
    )
    profiles = profiles - profiles.multiply(own) + own  # each profile gives its own tag 1
    profiles.sort_indices()
    return sp.csr_matrix(profiles, dtype=np.float32), image_profile


def vote_targets(
    image_tags: sp.csr_matrix, profiles: sp.csr_matrix, image_profile: np.ndarray
) -> sp.csr_matrix:
    """What each indexed image stands for: its hashtags, or its single hashtag's profile."""
    image_tags = sp.csr_matrix(image_tags, dtype=np.float32)
    has = np.asarray(image_profile) >= 0
    if profiles.shape[0] == 0 or not has.any():
        return image_tags
    own = sp.diags((~has).astype(np.float32)) @ image_tags
    # Only the single-tag images' profile rows, placed at their rows: selecting a profile for
    # every image and zeroing most of them would cost (images x profile length).
    single = np.flatnonzero(has)
    place = sp.csr_matrix(
        (np.ones(len(single), np.float32), (single, np.arange(len(single)))),
        shape=(image_tags.shape[0], len(single)),
    )
    borrowed = place @ profiles[np.asarray(image_profile)[single]]
    return sp.csr_matrix(own + borrowed, dtype=np.float32)


def fit_image_prior(
    features: np.ndarray,
    targets: sp.csr_matrix,
    min_posts: int = PRIOR_MIN_POSTS,
    l2: float = PRIOR_L2,
    *,
    rows: np.ndarray | None = None,
    max_tags: int = PRIOR_MAX_TAGS,
    chunk: int = PRIOR_CHUNK,
    progress: Callable[[int, int], None] | None = None,
    leverage_of: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ridge regression from image features to hashtags, streamed over the images.

    ``targets`` (images x hashtags) is what each image stands for (see
    :func:`vote_targets`: an image known by a single hashtag stands for that hashtag's
    profile, not for "this tag and no other"); image ``i``'s features are
    ``features[rows[i]]`` (``features[i]`` without ``rows``; a float16 memory map is fine).
    Returns ``(weights, tags)``: a (d, Q) float32 array and the Q hashtag columns it
    predicts: hashtags present in the targets of at least ``min_posts`` images, at most
    ``max_tags`` of them (the most frequent); empty when there are fewer such images.

    Memory: X^T X (d x d) and X^T Y (d x Q) are accumulated in float32, ``chunk`` images at
    a time with Y sparse, so it is O(d^2 + d Q + chunk d) whatever the number of images.
    ``progress(done, n)`` is called after each chunk.

    ``leverage_of``: (S,) positions of images (as ``targets``' rows) whose leverage
    ``h = x (X^T X + l2 I)^-1 x^T`` is returned as a third item, (S,) float64 (0 when the
    prior is empty): an image's leave-one-out prediction is ``(p - h y) / (1 - h)`` from
    its prediction ``p`` and target ``y`` (:mod:`recommender.fit.calibration` uses it).
    """
    sample = np.zeros(0, np.int64) if leverage_of is None else np.asarray(leverage_of, np.int64)

    def result(weights, tags, leverage):
        return (weights, tags) if leverage_of is None else (weights, tags, leverage)

    targets = sp.csr_matrix(targets, dtype=np.float32)
    dim = features.shape[1]
    n = targets.shape[0]
    empty = result(np.zeros((dim, 0), np.float32), np.zeros(0, np.int64), np.zeros(len(sample)))
    support = np.asarray((targets > 0).sum(axis=0)).ravel()
    tags = np.flatnonzero(support >= min_posts)
    if len(tags) > max_tags:  # keep the most frequent; ties by column, columns ascending
        order = np.lexsort((tags, -support[tags]))
        tags = np.sort(tags[order[:max_tags]])
    if n < min_posts or len(tags) == 0:
        return empty
    y = sp.csr_matrix(targets[:, tags])
    xtx = np.zeros((dim, dim), np.float32)
    xty = np.zeros((len(tags), dim), np.float32)
    for start, stop, x in chunks(features, rows, chunk):  # the map's pages are let go
        xtx += x.T @ x
        xty += y[start:stop].T @ x
        if progress is not None:
            progress(stop, n)
    gram = xtx.astype(np.float64) + l2 * np.eye(dim)
    weights = np.linalg.solve(gram, xty.T.astype(np.float64)).astype(np.float32)
    if not np.isfinite(weights).all():
        raise FitError("the image prior came out non-finite; raise its L2 penalty")
    leverage = np.zeros(len(sample))
    if len(sample):
        x_s = np.asarray(features[sample if rows is None else rows[sample]], dtype=np.float64)
        leverage = np.einsum("sd,ds->s", x_s, np.linalg.solve(gram, x_s.T))
    return result(weights, tags.astype(np.int64), leverage)
