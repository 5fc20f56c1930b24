"""The hashtag model: implicit-feedback ALS on the post x hashtag matrix.

Posts are the users, hashtags the items. Every post that carries hashtags trains the model,
whether or not it has an image; the image index (see :mod:`recommender.neighbours`) only
holds the posts that have one.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp

WEIGHTINGS = ("none", "bm25")


@dataclass(frozen=True)
class ALSParams:
    """Parameters of the ALS fit.

    ``alpha`` follows ``implicit``: the confidence of an observed pair is ``alpha * value``
    (Spark, which the original project used, takes ``1 + alpha * value``).
    """

    factors: int = 64
    iterations: int = 20
    regularization: float = 0.05
    alpha: float = 20.0
    weighting: str = "bm25"
    min_support: int = 1
    random_state: int = 42

    def __post_init__(self) -> None:
        if self.factors < 1 or self.iterations < 1:
            raise ValueError("ALS needs factors >= 1 and iterations >= 1")
        if self.regularization < 0 or self.alpha <= 0:
            raise ValueError("ALS needs regularization >= 0 and alpha > 0")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, not {self.weighting!r}")
        if self.min_support < 1:
            raise ValueError("min_support must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


class FitError(RuntimeError):
    """ALS produced unusable factors (NaN or infinite)."""


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
    indptr = [0]
    indices: list[int] = []
    for tags in post_tags:
        cols = sorted({column[t] for t in tags if t in column})
        indices.extend(cols)
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.float32)
    return sp.csr_matrix(
        (data, np.array(indices, dtype=np.int32), np.array(indptr, dtype=np.int64)),
        shape=(len(post_tags), len(vocabulary)),
    )


def fit_als(
    matrix: sp.csr_matrix,
    params: ALSParams,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit ALS on a posts x hashtags matrix; return (post_factors, tag_factors) as float32.

    Raises :class:`FitError` if the factors come out non-finite.
    """
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    weighted = matrix.astype(np.float32)
    if params.weighting == "bm25":
        from implicit.nearest_neighbours import bm25_weight

        # bm25 weights the item axis of an items x users matrix: transpose there and back.
        weighted = bm25_weight(weighted.T.tocoo(), K1=100, B=0.8).T.tocsr().astype(np.float32)

    def callback(iteration: int, _elapsed: float, _loss: float | None) -> None:
        if progress is not None:
            progress(iteration + 1, params.iterations)

    # implicit's own solver threads do the work; a threaded BLAS underneath only slows it.
    with threadpool_limits(1, "blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        model = AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            alpha=params.alpha,
            iterations=params.iterations,
            random_state=params.random_state,
        )
        model.fit(weighted.tocsr(), show_progress=False, callback=callback)
    posts = np.ascontiguousarray(model.user_factors, dtype=np.float32)
    tags = np.ascontiguousarray(model.item_factors, dtype=np.float32)
    if not (np.isfinite(posts).all() and np.isfinite(tags).all()):
        raise FitError(
            "ALS produced non-finite factors; lower alpha or raise regularization and rebuild"
        )
    return posts, tags
