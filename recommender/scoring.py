"""Turning the nearest training images into hashtag scores, and explaining each score.

Every method here is linear in the neighbours: a hashtag's score is the sum of one
contribution per neighbour, so the explanation "how much did each neighbour add" is exact.

- ALS part: neighbour j adds ``w_j * (p_j . h_t)``, its post factors against the tag's
  factors. With uniform weights and nothing else this is the original project's method
  (the mean of the neighbours' post factors, dotted with every hashtag's factors).
- Vote part: neighbour j adds ``w_j * [t in tags_j]``.

A method blends the two with ``als_weight`` and chooses uniform or similarity weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp

NEIGHBOUR_WEIGHTINGS = ("uniform", "similarity")


@dataclass(frozen=True)
class Method:
    """How neighbour hashtags become scores.

    Attributes
    ----------
    als_weight : float
        1.0 scores with ALS factors only, 0.0 with neighbour votes only, between: a blend.
    weighting : str
        ``"uniform"``: every neighbour counts the same; ``"similarity"``: in proportion to
        ``max(similarity, 0) ** power``.
    power : float
        Sharpness of the similarity weighting.
    """

    name: str
    als_weight: float
    weighting: str = "similarity"
    power: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.als_weight <= 1.0:
            raise ValueError("als_weight must lie in [0, 1]")
        if self.weighting not in NEIGHBOUR_WEIGHTINGS:
            raise ValueError(f"weighting must be one of {NEIGHBOUR_WEIGHTINGS}")

    def to_dict(self) -> dict:
        return asdict(self)


METHODS: dict[str, Method] = {
    # The original project: plain mean of the neighbours' ALS post factors.
    "original": Method("original", als_weight=1.0, weighting="uniform"),
    "als_weighted": Method("als_weighted", als_weight=1.0, weighting="similarity"),
    "knn_vote": Method("knn_vote", als_weight=0.0, weighting="similarity"),
    "blend": Method("blend", als_weight=0.5, weighting="similarity"),
}
DEFAULT_METHOD = "blend"


def get_method(method: str | Method) -> Method:
    """Look a method up by name (or pass a :class:`Method` through)."""
    if isinstance(method, Method):
        return method
    try:
        return METHODS[method]
    except KeyError:
        raise ValueError(
            f"unknown method {method!r}; choose one of {', '.join(sorted(METHODS))}"
        ) from None


def neighbour_weights(similarities: np.ndarray, method: Method) -> np.ndarray:
    """Weights of the neighbours, summing to 1 (uniform when all similarities are <= 0)."""
    n = len(similarities)
    if n == 0:
        return np.empty(0, dtype=np.float32)
    if method.weighting == "similarity":
        w = np.maximum(similarities.astype(np.float64), 0.0) ** method.power
        total = w.sum()
        if total > 0:
            return (w / total).astype(np.float32)
    return np.full(n, 1.0 / n, dtype=np.float32)


class Scorer:
    """Scores hashtags from the neighbours found in the image index.

    Parameters
    ----------
    image_factors : (N_images, f) array
        ALS post factors of the posts in the image index, in index order.
    tag_factors : (T, f) array
        ALS hashtag factors.
    image_tags : (N_images, T) sparse matrix
        Binary: which hashtags each indexed post carries.
    """

    def __init__(
        self, image_factors: np.ndarray, tag_factors: np.ndarray, image_tags: sp.csr_matrix
    ) -> None:
        self.image_factors = np.ascontiguousarray(image_factors, dtype=np.float32)
        self.tag_factors = np.ascontiguousarray(tag_factors, dtype=np.float32)
        self.image_tags = sp.csr_matrix(image_tags, dtype=np.float32)
        if self.image_factors.shape[0] != self.image_tags.shape[0]:
            raise ValueError("image_factors and image_tags disagree on the number of images")
        if self.tag_factors.shape[0] != self.image_tags.shape[1]:
            raise ValueError("tag_factors and image_tags disagree on the number of hashtags")

    @property
    def n_tags(self) -> int:
        return self.tag_factors.shape[0]

    def scores(self, neighbours: np.ndarray, weights: np.ndarray, method: Method) -> np.ndarray:
        """Score of every hashtag, shape (T,)."""
        total = np.zeros(self.n_tags, dtype=np.float32)
        if len(neighbours) == 0:
            return total
        if method.als_weight > 0:
            user = weights @ self.image_factors[neighbours]
            total += method.als_weight * (self.tag_factors @ user)
        if method.als_weight < 1:
            votes = self.image_tags[neighbours].T @ weights
            total += (1.0 - method.als_weight) * np.asarray(votes, dtype=np.float32).ravel()
        return total

    def contributions(
        self, neighbours: np.ndarray, weights: np.ndarray, tags: np.ndarray, method: Method
    ) -> np.ndarray:
        """What each neighbour adds to each of ``tags``: shape (n_neighbours, len(tags)).

        Columns sum to :meth:`scores` of those tags (up to float rounding).
        """
        out = np.zeros((len(neighbours), len(tags)), dtype=np.float32)
        if len(neighbours) == 0 or len(tags) == 0:
            return out
        if method.als_weight > 0:
            dots = self.image_factors[neighbours] @ self.tag_factors[tags].T
            out += method.als_weight * dots
        if method.als_weight < 1:
            votes = self.image_tags[neighbours][:, tags].toarray()
            out += (1.0 - method.als_weight) * votes
        return out * weights[:, None]


def top_k(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``k`` highest scores, best first (ties: lower index first).

    ``exclude`` is a boolean mask of hashtags never to return.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if exclude is not None and exclude.any():
        scores = np.where(exclude, -np.inf, scores)
        k = min(k, int((~exclude).sum()))
    k = max(0, min(int(k), len(scores)))
    if k == 0:
        return np.empty(0, dtype=np.int64)
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return top[np.lexsort((top, -scores[top]))].astype(np.int64)
