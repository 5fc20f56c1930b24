"""Nearest-neighbour search over L2-normalised image features (cosine similarity).

Backends sit behind :func:`make_index`: ``"exact"`` is a float32 matrix product, right for
the model sizes people build from their own posts.
"""

from __future__ import annotations

import numpy as np

INDEX_KINDS = ("exact",)


class ExactIndex:
    """Exact cosine search: one matrix-vector product and a partial sort.

    Parameters
    ----------
    vectors : (N, d) array
        L2-normalised rows. Stored as float32, read-only, so searching is thread-safe.
    """

    kind = "exact"

    def __init__(self, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be 2-d, got shape {vectors.shape}")
        vectors.setflags(write=False)
        self.vectors = vectors

    def __len__(self) -> int:
        return self.vectors.shape[0]

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def search(self, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` most similar rows to one query vector.

        Returns (indices, similarities), most similar first; ties keep the lower index first.
        """
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        if query.shape[0] != self.dim:
            raise ValueError(f"query has {query.shape[0]} dimensions, the index {self.dim}")
        n = max(0, min(int(n), len(self)))
        if n == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        sims = self.vectors @ query
        if n < len(sims):
            top = np.argpartition(-sims, n - 1)[:n]
        else:
            top = np.arange(len(sims))
        order = np.lexsort((top, -sims[top]))
        top = top[order]
        return top.astype(np.int64), sims[top].astype(np.float32)


def make_index(vectors: np.ndarray, kind: str = "exact") -> ExactIndex:
    """Build a search index of the given kind over ``vectors``."""
    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown index kind {kind!r}; choose one of {INDEX_KINDS}")
    return ExactIndex(vectors)
