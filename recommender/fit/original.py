"""The original project's hashtag model, fitted at build time for the page's comparison.

The original (github.com/AlecMorgan/mod_4_project, ``index.ipynb`` at commit c85a11e)
fitted Spark ML's ALS (Spark 2.4.3) on the posts that carry at least one ``#`` tag, one
rating of 1 per (post, hashtag) pair: ``ALS(implicitPrefs=True, alpha=40)`` and Spark's
defaults rank 10, maxIter 10, regParam 0.1. :func:`fit_original` refits that on this
project's posts; :mod:`recommender.query.original` ranks with it (5 neighbours, the mean of
their factors dotted with every hashtag's, top 10, nothing filtered).

:func:`spark_implicit_als` is Spark's implicit ALS written out in NumPy, so the local build
needs no Java: each half step solves, per row ``u`` with ``n_u`` observed items ``I_u``,
``(YᵀY + alpha Σ_{i∈I_u} y_i y_iᵀ + regParam n_u I) x_u = (1 + alpha) Σ_{i∈I_u} y_i``
(Spark's ``ALS.computeFactors``: confidence ``1 + alpha * rating``, and the regularisation
scaled by each row's number of ratings, which implicit's ALS does not do). Factors start
as Spark's do, unit-length Gaussian rows, and the item side is solved first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recommender.data.datasets import Post
from recommender.errors import FitError

RANK = 10
ITERATIONS = 10
REG_PARAM = 0.1
ALPHA = 40.0
SEED = 0  # the original's later commits call als.setSeed(0)
_CHUNK_PAIRS = 1 << 16  # (post, hashtag) pairs whose outer products are summed at once


def has_own_hashtags(post: Post) -> bool:
    """True when the post carries a hashtag other than the search tag it was filed under.

    This project's loaders add a post's search tag to its hashtags (and give images without
    a record only that tag); the original dropped posts without a ``#`` tag of their own
    (its babies and architecture records carry only the bare search word), so those posts
    have no factor and are never a neighbour.
    """
    return any(tag != post.category for tag in post.hashtags)


@dataclass(frozen=True)
class OriginalFactors:
    """The original's model over this project's data.

    ``rows``: the indexed images (rows of the model's image index) whose posts have own
    hashtags, each with its post's factors in ``image_factors`` (M, RANK); ``tag_ids``:
    the model's hashtags the original knows (those of such posts), with ``tag_factors``
    (Q, RANK).
    """

    rows: np.ndarray
    image_factors: np.ndarray
    tag_ids: np.ndarray
    tag_factors: np.ndarray


def fit_original(
    posts: Sequence[Post],
    matrix: sp.csr_matrix,
    with_image: Sequence[int],
    seed: int = SEED,
) -> OriginalFactors | None:
    """Fit the original's ALS on the posts with own hashtags.

    ``matrix`` is the model's binary posts x hashtags matrix (one row per post of
    ``posts``); ``with_image[j]`` the post of the model's indexed image ``j``. Returns None
    when no post has hashtags of its own.
    """
    kept = np.array([i for i, p in enumerate(posts) if has_own_hashtags(p)], dtype=np.int64)
    if not len(kept):
        return None
    sub = sp.csr_matrix(matrix[kept], dtype=np.float64)
    tag_ids = np.flatnonzero(np.diff(sub.tocsc().indptr)).astype(np.int64)
    sub = sub[:, tag_ids].tocsr()
    sub.data[:] = 1.0  # the original's rating column: a constant 1
    user, item = spark_implicit_als(sub, RANK, ITERATIONS, REG_PARAM, ALPHA, seed)
    post_row = np.full(len(posts), -1, dtype=np.int64)
    post_row[kept] = np.arange(len(kept))
    image_post = np.asarray(with_image, dtype=np.int64)
    rows = np.flatnonzero(post_row[image_post] >= 0).astype(np.int64)
    return OriginalFactors(
        rows=rows,
        image_factors=user[post_row[image_post[rows]]].astype(np.float32),
        tag_ids=tag_ids,
        tag_factors=item.astype(np.float32),
    )


def spark_implicit_als(
    ratings: sp.csr_matrix,
    rank: int = RANK,
    iterations: int = ITERATIONS,
    reg_param: float = REG_PARAM,
    alpha: float = ALPHA,
    seed: int = SEED,
) -> tuple[np.ndarray, np.ndarray]:
    """Spark ML's implicit-preference ALS (positive ratings) on a users x items matrix.

    Returns (user_factors, item_factors) as float64. Raises :class:`FitError` if the factors
    come out non-finite.
    """
    ratings = sp.csr_matrix(ratings, dtype=np.float64)
    rng = np.random.default_rng(seed)
    users = _unit_rows(rng.standard_normal((ratings.shape[0], rank)))
    items = _unit_rows(rng.standard_normal((ratings.shape[1], rank)))
    by_item = ratings.T.tocsr()
    for _ in range(iterations):
        items = _solve_side(by_item, users, reg_param, alpha)
        users = _solve_side(ratings, items, reg_param, alpha)
    if not (np.isfinite(users).all() and np.isfinite(items).all()):
        raise FitError("the original method's ALS diverged (non-finite factors)")
    return users, items


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _solve_side(
    ratings: sp.csr_matrix, other: np.ndarray, reg_param: float, alpha: float
) -> np.ndarray:
    """Every row's factors given the other side's (one half step of Spark's ALS)."""
    rank = other.shape[1]
    gram = other.T @ other
    out = np.zeros((ratings.shape[0], rank))
    indptr, indices, data = ratings.indptr, ratings.indices, ratings.data
    start = 0
    while start < ratings.shape[0]:
        stop = int(np.searchsorted(indptr, indptr[start] + _CHUNK_PAIRS, side="right")) - 1
        stop = min(max(stop, start + 1), ratings.shape[0])
        lo, hi = indptr[start], indptr[stop]
        y = other[indices[lo:hi]]
        value = data[lo:hi]
        positive = value > 0
        c1 = alpha * np.abs(value)  # confidence - 1
        counts = np.diff(indptr[start : stop + 1])
        full = counts > 0
        firsts = indptr[start:stop][full] - lo  # a row without ratings keeps a zero factor
        if len(firsts):
            a = np.add.reduceat(c1[:, None, None] * y[:, :, None] * y[:, None, :], firsts)
            b = np.add.reduceat(np.where(positive, 1.0 + c1, 0.0)[:, None] * y, firsts)
            explicit = np.add.reduceat(positive.astype(np.float64), firsts)
            a += gram
            a += (reg_param * explicit)[:, None, None] * np.eye(rank)
            out[start:stop][full] = np.linalg.solve(a, b[:, :, None])[:, :, 0]
        start = stop
    return out
