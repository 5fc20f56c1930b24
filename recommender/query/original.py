"""The original project's ranking, on its own factors kept in the model folder.

The original (github.com/AlecMorgan/mod_4_project, ``predict_hashtag_for_new_image.ipynb``
at commit c85a11e) finds the 5 images closest to the photo by cosine distance among the
images whose posts have ALS factors, averages those 5 posts' factors, dots the mean with
every hashtag's factors and returns the 10 best. Nothing is filtered: no block list, no
hedging. The factors are fitted at build time (:mod:`recommender.fit.original`); a model
built before them cannot rank this way and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from recommender.errors import ModelError
from recommender.mapped import chunks

NEIGHBOURS = 5
TOP = 10
NAME = "original"
MISSING = (
    "This model was built before the original method was kept in the model folder; "
    "rebuild it (python -m recommender build DATA --out MODEL) to compare with the original."
)


class Weighted(Protocol):
    """What :meth:`OriginalModel.contributions` reads of a ranking."""

    @property
    def neighbours(self) -> np.ndarray: ...

    @property
    def weights(self) -> np.ndarray: ...


@dataclass(frozen=True)
class OriginalRanking:
    """One query: the neighbours (rows of the model's image index), their cosine
    similarities, the (T,) scores over the model's hashtags (-inf where the original does
    not know a hashtag), each neighbour's share of every score, and the best ``k``."""

    neighbours: np.ndarray
    similarities: np.ndarray
    weights: np.ndarray
    scores: np.ndarray
    best: np.ndarray


class OriginalModel:
    """The original's factors over a model: ``rows`` (indexed images with factors),
    ``image_factors`` (M, F), ``tag_ids`` (Q,) into the model's hashtags, ``tag_factors``
    (Q, F)."""

    def __init__(self, features, rows, image_factors, tag_ids, tag_factors, n_tags: int):
        self.features = features
        self.rows = np.asarray(rows, dtype=np.int64)
        self.image_factors = np.asarray(image_factors, dtype=np.float32)
        self.tag_ids = np.asarray(tag_ids, dtype=np.int64)
        self.tag_factors = np.asarray(tag_factors, dtype=np.float32)
        self.n_tags = int(n_tags)

    def search(self, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` rows most cosine-similar to ``query`` among the images with factors
        (exhaustive, as the original: ``features`` are L2-normalised), most similar first."""
        q = np.asarray(query, dtype=np.float32).ravel()
        sims = np.empty(len(self.rows), dtype=np.float32)
        for lo, hi, block in chunks(self.features, self.rows):
            sims[lo:hi] = block @ q
        n = min(int(n), len(sims))
        top = np.argpartition(-sims, n - 1)[:n] if n < len(sims) else np.arange(len(sims))
        top = top[np.lexsort((top, -sims[top]))]
        return top, sims[top]

    def rank(self, query: np.ndarray, k: int = TOP, n: int = NEIGHBOURS) -> OriginalRanking:
        """The original's top ``k`` for one photo's features."""
        found, sims = self.search(query, n)
        mean = self.image_factors[found].mean(axis=0) if len(found) else None
        scores = np.full(self.n_tags, -np.inf)
        if mean is not None:
            scores[self.tag_ids] = self.tag_factors @ mean
        known = min(int(k), len(self.tag_ids))
        order = np.argpartition(-scores, known - 1)[:known] if known else np.zeros(0, np.int64)
        best = order[np.lexsort((order, -scores[order]))]
        weights = np.full(len(found), 1.0 / max(len(found), 1))
        return OriginalRanking(self.rows[found], sims, weights, scores, best)

    def contributions(self, ranking: Weighted, tags: np.ndarray) -> np.ndarray:
        """(neighbours, len(tags)): what each neighbour's factors add to each tag's score."""
        column = np.full(self.n_tags, -1, dtype=np.int64)
        column[self.tag_ids] = np.arange(len(self.tag_ids))
        local = np.searchsorted(self.rows, ranking.neighbours)
        factors = self.image_factors[local] * ranking.weights[:, None]
        return factors @ self.tag_factors[column[np.asarray(tags, dtype=np.int64)]].T


def require(model: OriginalModel | None) -> OriginalModel:
    """``model``, or the one-line :class:`ModelError` saying the model needs a rebuild."""
    if model is None:
        raise ModelError(MISSING)
    return model
