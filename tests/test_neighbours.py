"""Exact cosine search against a slow, obvious reference."""

import numpy as np
import pytest

from recommender.neighbours import make_index


def _unit(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_search_matches_a_full_sort():
    rng = np.random.default_rng(0)
    vectors = _unit(rng, 500, 32)
    index = make_index(vectors)
    for q in _unit(rng, 20, 32):
        idx, sims = index.search(q, 10)
        reference = sorted(range(500), key=lambda i: -float(vectors[i] @ q))[:10]
        assert idx.tolist() == reference
        np.testing.assert_allclose(sims, vectors[idx] @ q, rtol=1e-5)
        assert np.all(np.diff(sims) <= 0)


def test_n_larger_than_the_index_returns_everything_and_ties_keep_index_order():
    vectors = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    idx, sims = make_index(vectors).search(np.array([1, 0], dtype=np.float32), 10)
    assert idx.tolist() == [0, 1, 2]
    assert sims.tolist() == [1.0, 1.0, 0.0]


def test_wrong_dimension_and_kind_are_refused():
    index = make_index(np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match="dimensions"):
        index.search(np.ones(4), 1)
    with pytest.raises(ValueError, match="unknown index kind"):
        make_index(np.eye(3), kind="magic")


def test_the_index_is_read_only():
    index = make_index(np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError):
        index.vectors[0, 0] = 5
