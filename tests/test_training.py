"""Training pieces that stream: the chunked ridge prior and the sparse single-tag profiles."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recommender.fit.als import fit_image_prior, single_tag_profiles, vote_targets


def _case(n=300, d=16, t=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = sp.random(n, t, density=0.2, random_state=seed, format="csr", dtype=np.float32)
    y.data[:] = rng.uniform(0.2, 1.0, len(y.data))
    return x, y


def _dense_prior(x, y, tags, l2):
    x = x.astype(np.float64)
    yd = y[:, tags].toarray().astype(np.float64)
    return np.linalg.solve(x.T @ x + l2 * np.eye(x.shape[1]), x.T @ yd)


def test_the_prior_from_chunks_equals_the_dense_solution():
    x, y = _case()
    weights, tags = fit_image_prior(x, y, min_posts=3, l2=3.0, chunk=7)
    assert len(tags) == 12
    np.testing.assert_allclose(weights, _dense_prior(x, y, tags, 3.0), atol=1e-5)
    # the dual form, for fewer images than dimensions, is the same solution
    xs, ys = _case(n=10, d=16)
    w_small, t_small = fit_image_prior(xs, ys, min_posts=1, l2=3.0, chunk=3)
    xd = xs.astype(np.float64)
    dual = xd.T @ np.linalg.solve(xd @ xd.T + 3.0 * np.eye(10), ys[:, t_small].toarray())
    np.testing.assert_allclose(w_small, dual, atol=1e-5)


def test_the_prior_reads_rows_through_an_index_and_float16():
    x, y = _case()
    order = np.random.default_rng(1).permutation(len(x))
    store = np.empty_like(x)
    store[order] = x  # image i lives in row order[i]
    direct, tags = fit_image_prior(x, y, chunk=50)
    via, tags2 = fit_image_prior(store, y, rows=order, chunk=50)
    np.testing.assert_array_equal(tags, tags2)
    np.testing.assert_allclose(via, direct, atol=1e-6)
    half, _ = fit_image_prior(x.astype(np.float16), y, chunk=50)
    np.testing.assert_allclose(half, direct, atol=2e-3)


def test_the_prior_keeps_only_the_most_frequent_hashtags_up_to_its_cap():
    x, y = _case()
    support = np.asarray((y > 0).sum(axis=0)).ravel()
    _, tags = fit_image_prior(x, y, max_tags=4)
    assert len(tags) == 4 and list(tags) == sorted(tags)
    assert support[tags].min() >= np.sort(support)[-4]


def _reference_profiles(matrix, image_tags, min_cooccurrence=2):
    """The old loop: a lil_matrix filled row by row (slow, obviously right)."""
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    single = np.flatnonzero(np.diff(image_tags.indptr) == 1)
    tags = np.unique(image_tags.indices[image_tags.indptr[single]])
    rich = matrix[np.flatnonzero(np.diff(matrix.indptr) >= 2)]
    rich.data[:] = 1.0
    together = sp.csr_matrix(rich[:, tags].T @ rich)
    together.data[together.data < min_cooccurrence] = 0
    together.eliminate_zeros()
    posts_with = np.asarray(rich[:, tags].sum(axis=0)).ravel()
    profiles = sp.lil_matrix(sp.diags(1.0 / np.maximum(posts_with, 1)) @ together)
    for row, tag in enumerate(tags):
        profiles[row, tag] = 1.0
    return sp.csr_matrix(profiles, dtype=np.float32)


def test_sparse_profiles_equal_the_row_by_row_reference():
    rng = np.random.default_rng(3)
    matrix = sp.random(400, 30, density=0.08, random_state=3, format="csr", dtype=np.float32)
    matrix.data[:] = 1.0
    # half the indexed images carry a single hashtag, some of which never co-occur
    image_tags = sp.lil_matrix((60, 30), dtype=np.float32)
    for i in range(60):
        for t in rng.choice(30, size=1 if i % 2 else 3, replace=False):
            image_tags[i, t] = 1.0
    image_tags = sp.csr_matrix(image_tags)
    profiles, image_profile = single_tag_profiles(matrix, image_tags)
    reference = _reference_profiles(matrix, image_tags)
    np.testing.assert_allclose(profiles.toarray(), reference.toarray(), atol=1e-7)
    assert profiles.nnz == reference.nnz
    assert (image_profile[1::2] >= 0).all() and (image_profile[::2] == -1).all()


def test_vote_targets_borrow_profiles_only_for_single_tag_images():
    rng = np.random.default_rng(5)
    matrix = sp.random(300, 20, density=0.15, random_state=5, format="csr", dtype=np.float32)
    matrix.data[:] = 1.0
    image_tags = sp.lil_matrix((40, 20), dtype=np.float32)
    for i in range(40):
        for t in rng.choice(20, size=1 if i % 3 == 0 else 2, replace=False):
            image_tags[i, t] = 1.0
    image_tags = sp.csr_matrix(image_tags)
    profiles, image_profile = single_tag_profiles(matrix, image_tags)
    targets = vote_targets(image_tags, profiles, image_profile).toarray()
    for i in range(40):  # the obvious reference, row by row
        want = profiles[image_profile[i]] if image_profile[i] >= 0 else image_tags[i]
        np.testing.assert_array_equal(targets[i], want.toarray().ravel())
