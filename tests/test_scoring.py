"""Scoring methods on tiny cases whose right answer is worked out by hand."""

import numpy as np
import pytest
import scipy.sparse as sp

from recommender.config import METHODS, Method, get_method
from recommender.query.scoring import Scorer, neighbour_weights, top_k


@pytest.fixture
def scorer():
    # 3 indexed posts, 4 hashtags, 2 factors.
    image_factors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    tag_factors = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.0, 0.0]], dtype=np.float32)
    image_tags = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 1, 0, 0], [1, 1, 0, 1]]))
    return Scorer(image_factors, tag_factors, image_tags)


def test_original_is_mean_of_post_factors_dotted_with_tag_factors(scorer):
    method = METHODS["original"]
    nbrs = np.array([0, 2])
    w = neighbour_weights(np.array([0.9, 0.1], dtype=np.float32), method)
    assert w.tolist() == [0.5, 0.5]  # uniform: similarity does not matter
    mean = (scorer.image_factors[0] + scorer.image_factors[2]) / 2  # [1, 0.5]
    expected = scorer.tag_factors @ mean  # [1, 0.5, 0.75, 0]
    np.testing.assert_allclose(scorer.scores(nbrs, w, method), expected, rtol=1e-6)
    np.testing.assert_allclose(expected, [1.0, 0.5, 0.75, 0.0])


def test_knn_vote_is_similarity_weighted_share_of_neighbours_with_the_tag(scorer):
    method = METHODS["knn_vote"]
    nbrs = np.array([0, 1])
    w = neighbour_weights(np.array([0.6, 0.2], dtype=np.float32), method)
    np.testing.assert_allclose(w, [0.75, 0.25])
    np.testing.assert_allclose(scorer.scores(nbrs, w, method), [0.75, 0.25, 0.75, 0.0])


@pytest.mark.parametrize("name", sorted(METHODS))
def test_contributions_sum_to_scores(scorer, name):
    method = METHODS[name]
    nbrs = np.array([2, 0, 1])
    w = neighbour_weights(np.array([0.8, 0.5, 0.1], dtype=np.float32), method)
    scores = scorer.scores(nbrs, w, method)
    tags = np.array([3, 0, 2])
    contrib = scorer.contributions(nbrs, w, tags, method)
    assert contrib.shape == (3, 3)
    np.testing.assert_allclose(contrib.sum(axis=0), scores[tags], rtol=1e-5, atol=1e-7)


def test_blend_is_halfway_between_als_and_vote(scorer):
    nbrs = np.array([0, 1])
    sims = np.array([0.5, 0.5], dtype=np.float32)
    parts = {}
    for name in ("als_weighted", "knn_vote", "blend"):
        m = METHODS[name]
        parts[name] = scorer.scores(nbrs, neighbour_weights(sims, m), m)
    np.testing.assert_allclose(parts["blend"], (parts["als_weighted"] + parts["knn_vote"]) / 2)


def test_negative_similarities_fall_back_to_uniform_weights():
    w = neighbour_weights(np.array([-0.2, -0.5], dtype=np.float32), METHODS["knn_vote"])
    np.testing.assert_allclose(w, [0.5, 0.5])


def test_top_k_orders_by_score_then_index_and_honours_exclusions():
    scores = np.array([0.1, 0.5, 0.5, 0.9, 0.0])
    assert top_k(scores, 3).tolist() == [3, 1, 2]
    assert top_k(scores, 10).tolist() == [3, 1, 2, 0, 4]
    exclude = np.array([False, False, False, True, False])
    assert top_k(scores, 2, exclude).tolist() == [1, 2]
    assert top_k(scores, 9, np.ones(5, bool)).tolist() == []


def test_unknown_method_and_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="unknown method"):
        get_method("magic")
    with pytest.raises(ValueError):
        Method("x", als_weight=1.5)
    with pytest.raises(ValueError):
        Method("x", als_weight=0.5, weighting="random")


# ------------------------------------------------ single-tag profiles and the image prior
def test_single_tag_profiles_are_co_occurrence_shares_among_multi_tag_posts():
    from recommender.fit.als import single_tag_profiles

    # tags: 0 cars, 1 car, 2 fast, 3 food. Posts: three multi-tag cars posts, one food.
    matrix = sp.csr_matrix(
        np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0]])
    )
    image_tags = sp.csr_matrix(np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 1]]))
    profiles, image_profile = single_tag_profiles(matrix, image_tags, min_cooccurrence=2)
    assert image_profile.tolist() == [0, -1, 1]
    # cars: 3 multi-tag posts carry it; car with it in 3, fast in 2 -> 1, 1, 2/3, 0
    np.testing.assert_allclose(profiles.toarray()[0], [1, 1, 2 / 3, 0])
    # food: no multi-tag post carries it with another tag twice: only itself
    np.testing.assert_allclose(profiles.toarray()[1], [0, 0, 0, 1])


def test_profile_votes_replace_a_single_tag_neighbours_own_vote(scorer):
    profiles = sp.csr_matrix(np.array([[0.0, 0.5, 0.0, 1.0]]))
    image_profile = np.array([-1, -1, 0])
    s = Scorer(scorer.image_factors, scorer.tag_factors, scorer.image_tags, profiles,
               image_profile)  # fmt: skip
    m = METHODS["vote_profiles"]
    w = np.array([0.25, 0.75], dtype=np.float32)
    # neighbour 0 votes its tags [1, 0, 1, 0]; neighbour 2 its profile [0, .5, 0, 1]
    np.testing.assert_allclose(s.scores(np.array([0, 2]), w, m), [0.25, 0.375, 0.25, 0.75])
    # without profiles neighbour 2 votes its own tags [1, 1, 0, 1]
    plain = s.scores(np.array([0, 2]), w, METHODS["knn_vote"])
    np.testing.assert_allclose(plain, [1.0, 0.75, 0.25, 0.75])


def test_prior_is_reported_apart_and_completes_the_sum(scorer):
    prior_weights = np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32)  # d=2 -> tags 0, 3
    s = Scorer(scorer.image_factors, scorer.tag_factors, scorer.image_tags,
               prior_weights=prior_weights, prior_tags=np.array([0, 3]))  # fmt: skip
    m = Method("p", als_weight=0.3, profiles=True, prior_weight=0.5)
    query = np.array([0.6, 0.8], dtype=np.float32)
    np.testing.assert_allclose(s.prior(query, m), [0.3, 0, 0, 0.8])
    nbrs = np.array([1, 2])
    w = neighbour_weights(np.array([0.7, 0.3], dtype=np.float32), m)
    scores = s.scores(nbrs, w, m, query)
    tags = np.array([3, 0, 1])
    total = s.contributions(nbrs, w, tags, m).sum(axis=0) + s.prior(query, m)[tags]
    np.testing.assert_allclose(total, scores[tags], rtol=1e-5, atol=1e-7)
    assert s.prior(None, m).tolist() == [0, 0, 0, 0]  # no query, no prior


def test_image_prior_fits_targets_and_skips_rare_hashtags():
    from recommender.fit.als import fit_image_prior

    x = np.eye(4, dtype=np.float32)
    y = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [1, 1, 0], [0, 0, 1]], dtype=np.float32))
    weights, tags = fit_image_prior(x, y, min_posts=2, l2=1.0)
    assert tags.tolist() == [0, 1]  # tag 2 is on one image only
    # orthonormal features: ridge shrinks every target by 1 / (1 + l2)
    np.testing.assert_allclose(x @ weights, y[:, [0, 1]].toarray() / 2, atol=1e-6)


def test_bad_method_parameters_are_refused():
    with pytest.raises(ValueError):
        Method("x", als_weight=0.5, prior_weight=-1)
    with pytest.raises(ValueError):
        Method("x", als_weight=0.5, power=-1)


# -- the content term ----------------------------------------------------------------------------


def _content_scorer(scorer):
    # class 0 -> hashtag 1, class 1 -> hashtags 1 and 2, class 2 -> nothing
    class_tags = sp.csr_matrix((np.ones(3, np.float32), ([0, 1, 1], [1, 1, 2])), shape=(1000, 4))
    return Scorer(
        scorer.image_factors, scorer.tag_factors, scorer.image_tags, class_tags=class_tags
    )


def test_content_adds_weight_times_the_mapped_classes_probability(scorer):
    with_content = _content_scorer(scorer)
    method = Method("c", als_weight=0.0, content_weight=0.5)
    classes = np.zeros(1000, np.float32)
    classes[[0, 1, 2]] = [0.6, 0.3, 0.1]
    np.testing.assert_allclose(with_content.content(classes, method), [0, 0.45, 0.15, 0])
    nbrs, w = np.array([0, 1]), np.array([0.5, 0.5], np.float32)
    np.testing.assert_allclose(
        with_content.scores(nbrs, w, method, classes=classes),
        scorer.scores(nbrs, w, method) + [0, 0.45, 0.15, 0],
        rtol=1e-6,
    )
    # without classes, without a weight, or without a table: nothing
    assert not with_content.content(None, method).any()
    assert not with_content.content(classes, Method("c", als_weight=0.0)).any()
    assert not scorer.content(classes, method).any()


def test_content_counts_only_the_top_classes(scorer):
    with_content = _content_scorer(scorer)
    method = Method("c", als_weight=0.0, content_weight=1.0)
    classes = np.full(1000, 0.0005, np.float32)
    classes[2:7] = 0.1  # five better classes push class 0 and 1 out of the top 5
    assert not with_content.content(classes, method).any()


def test_content_weight_must_not_be_negative():
    with pytest.raises(ValueError, match="content_weight"):
        Method("c", als_weight=0.0, content_weight=-0.1)


def test_votes_equal_the_summed_vote_rows_of_mixed_neighbours():
    """The scorer sums own and borrowed (profile) votes without building the vote rows;
    the result must be the rows' weighted sum, per neighbour as in ``contributions``."""
    from recommender.fit.als import vote_targets

    rng = np.random.default_rng(3)
    n_images, n_tags = 40, 30
    image_tags = sp.random(n_images, n_tags, density=0.15, random_state=4, format="csr")
    image_tags.data[:] = 1.0
    profiles = sp.random(5, n_tags, density=0.4, random_state=5, format="csr", dtype=np.float32)
    image_profile = np.where(rng.random(n_images) < 0.5, rng.integers(0, 5, n_images), -1)
    factors = (rng.random((n_images, 3)), rng.random((n_tags, 3)))
    prior = {"prior_weights": rng.random((4, 2)), "prior_tags": np.array([1, 7])}
    s = Scorer(*factors, image_tags, profiles, image_profile, **prior)
    m = Method("mix", als_weight=0.25, profiles=True, prior_weight=0.5)
    for _ in range(20):
        nbrs = rng.choice(n_images, 8, replace=False)
        w = rng.random(8).astype(np.float32)
        rows = vote_targets(s.image_tags[nbrs], s.profiles, s.image_profile[nbrs])
        np.testing.assert_allclose(s._votes(nbrs, w, m), rows.T @ w, rtol=1e-5, atol=1e-6)
        tags = rng.choice(n_tags, 6, replace=False)
        als = s.image_factors[nbrs] @ s.tag_factors[tags].T
        expected = (0.25 * als + 0.75 * rows[:, tags].toarray()) * w[:, None]
        np.testing.assert_allclose(s.contributions(nbrs, w, tags, m), expected, rtol=1e-5)
        query = rng.random(4).astype(np.float32)
        total, prior, content = s.score_parts(nbrs, w, m, query)
        np.testing.assert_array_equal(total, s.scores(nbrs, w, m, query))
        np.testing.assert_array_equal(prior, s.prior(query, m))
        assert not content.any()  # no classes, no content term


# ------------------------------------------------------------------ candidate scoring
@pytest.fixture(scope="module")
def zipf_scorer() -> Scorer:
    return _zipf_scorer()


def _sparse_random(rng, rows: int, cols: int, density: float) -> sp.csr_matrix:
    """A random sparse matrix of about ``density`` (scipy.sparse.random takes seconds at
    60,000 columns: it samples cells without replacement)."""
    n = int(rows * cols * density)
    m = sp.csr_matrix(
        (rng.uniform(size=n), (rng.integers(0, rows, n), rng.integers(0, cols, n))),
        shape=(rows, cols),
    )
    m.sum_duplicates()
    return m


def _zipf_scorer(seed: int = 0, n_tags: int = 60_000, n_images: int = 3000) -> Scorer:
    """A larger model shaped like a real one: Zipf-popular hashtags (a few carried by many
    posts, most by one or two), ALS factors whose norm grows with popularity, profiles for
    the single-hashtag posts, a prior over the most popular hashtags and a content table."""
    rng = np.random.default_rng(seed)
    f, d = 16, 24
    popularity = 1.0 / np.arange(1, n_tags + 1) ** 1.1
    popularity /= popularity.sum()
    per_post = rng.integers(1, 25, n_images)
    rows = np.repeat(np.arange(n_images), per_post)
    cols = rng.choice(n_tags, size=len(rows), p=popularity)
    image_tags = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, cols)), shape=(n_images, n_tags)
    )
    image_tags.sum_duplicates()
    image_tags.data[:] = 1
    norms = 0.05 + 2.0 * np.sqrt(popularity / popularity.max())
    tag_factors = rng.normal(size=(n_tags, f)) * (norms / np.sqrt(f))[:, None]
    image_factors = rng.normal(size=(n_images, f)) * 0.5
    single = np.flatnonzero(np.diff(image_tags.indptr) == 1)
    profiles = _sparse_random(rng, 40, n_tags, 0.002)
    image_profile = np.full(n_images, -1)
    image_profile[single] = rng.integers(0, 40, len(single))
    prior_tags = rng.permutation(np.arange(3000))  # the most popular, in no order
    prior_weights = rng.normal(size=(d, len(prior_tags))) * 0.1
    class_tags = _sparse_random(rng, 1000, n_tags, 0.0002)
    class_tags.data[:] = 1
    return Scorer(
        image_factors,
        tag_factors,
        image_tags,
        profiles,
        image_profile,
        prior_weights,
        prior_tags,
        class_tags,
    )


def _same_top(full: np.ndarray, tags, scores, k: int, exclude: np.ndarray) -> None:
    """The candidates' top k is every hashtag's: the same hashtags, except that among equal
    scores at the k-th place either may be shown (top_k leaves that to argpartition)."""
    expected = top_k(full, k, exclude)
    got = tags[top_k(scores, k, exclude[tags])]
    np.testing.assert_array_equal(full[got], full[expected])  # the same scores, best first
    if len(expected) == k and (full[~exclude] == full[expected[-1]]).sum() == 1:
        assert got.tolist() == expected.tolist()  # no tie at the k-th place


@pytest.mark.parametrize("name", sorted(METHODS))
def test_candidates_give_every_hashtags_top_k_on_a_larger_model(zipf_scorer, name, monkeypatch):
    from recommender.query import scoring

    # small blocks: the scan by factor norm stops where its bound says, not a block later
    monkeypatch.setattr(scoring, "_SCAN_BLOCK", 64)
    s = zipf_scorer
    method = METHODS[name]
    rng = np.random.default_rng(1)
    always = np.array([5, 17, 40_000])  # hashtags hedging may take out
    scanned = []
    for trial in range(12):
        nbrs = rng.choice(s.image_factors.shape[0], 15, replace=False)
        w = neighbour_weights(np.sort(rng.uniform(0.2, 0.9, 15))[::-1].astype(np.float32), method)
        query = rng.normal(size=24).astype(np.float32)
        classes = rng.dirichlet(np.ones(1000) * 0.05)
        exclude = np.zeros(s.n_tags, bool)
        exclude[rng.choice(s.n_tags, 50 * (trial % 3), replace=False)] = True
        k = (1, 10, 30)[trial % 3]
        full, prior, content = s.score_parts(nbrs, w, method, query, classes)
        tags, scores, c_prior, c_content = s.score_top(
            nbrs, w, method, query, classes, k, exclude, always, candidates=True
        )
        if tags is None:  # scoring every hashtag was cheaper: the same arrays
            np.testing.assert_array_equal(scores, full)
            continue
        scanned.append(len(tags))
        assert np.all(np.diff(tags) > 0) and np.isin(always, tags).all()
        # every score, and its parts, to the last bit
        np.testing.assert_array_equal(scores, full[tags])
        np.testing.assert_array_equal(c_prior, prior[tags])
        np.testing.assert_array_equal(c_content, content[tags])
        # every hashtag left out scores below the k best that no ranking can leave out
        stays = ~exclude
        stays[always] = False
        outside = np.ones(s.n_tags, bool)
        outside[tags] = False
        kth = np.sort(full[tags][stays[tags]])[-k]
        assert full[outside].max() < kth
        for hedged in (exclude, exclude | ~stays):  # without, and with, hedging's removals
            _same_top(full, tags, scores, k, hedged)
    # far fewer than every hashtag is scored (the model has 60,000)
    assert scanned and max(scanned) < s.n_tags / 4


def test_candidates_fall_back_to_every_hashtag_when_they_cannot_decide():
    s = _zipf_scorer(n_tags=5000, n_images=300)
    vote = METHODS["knn_vote"]  # without ALS every other hashtag scores 0, winning ties
    nbrs = np.array([0])
    w = neighbour_weights(np.array([0.5], np.float32), vote)
    votes = s.image_tags[0].nnz + (
        s.profiles[s.image_profile[0]].nnz if s.image_profile[0] >= 0 else 0
    )
    tags, scores, _, _ = s.score_top(nbrs, w, vote, k=votes + 5, candidates=True)
    assert tags is None and scores.shape == (s.n_tags,)
    np.testing.assert_array_equal(scores, s.scores(nbrs, w, vote))
    # a small model scores every hashtag unless asked
    assert s.score_top(nbrs, w, vote, k=3)[0] is None


def test_scored_reads_candidates_like_every_hashtag():
    from recommender.query.scoring import Scored

    one = np.array([1.0], np.float32)
    full = np.array([0.1, 0.9, 0.3, 0.9, 0.0], np.float32)
    every = Scored(np.array([0]), np.array([0]), one, one, full, full * 0, full * 0)
    tags = np.array([1, 2, 3])
    some = Scored(
        np.array([0]), np.array([0]), one, one, full[tags], full[tags] * 0, full[tags] * 0, tags
    )
    ids = np.array([3, 1])
    np.testing.assert_array_equal(some.at(some.scores, ids), every.at(every.scores, ids))
    assert some.top(2).tolist() == every.top(2).tolist() == [1, 3]
    exclude = np.array([False, True, False, False, False])
    assert some.top(2, exclude).tolist() == every.top(2, exclude).tolist() == [3, 2]


def test_rows_dot_is_the_full_products_rows_to_the_last_bit_at_the_features_width():
    """Some hashtags' prior (1,280 weights each) equals the same entries of every hashtag's
    prior, whichever rows are asked for, including the full product's last partial block.
    On one BLAS thread, as queries run (several threads split the rows where they like)."""
    from recommender.blas import serial_blas
    from recommender.query.scoring import _rows_dot

    rng = np.random.default_rng(0)
    rows = rng.normal(size=(5003, 1280)).astype(np.float32)
    vector = rng.normal(size=1280).astype(np.float32)
    with serial_blas():
        full = rows @ vector
        for size in (1, 3, 4, 5, 97, 1000, 5003):
            ids = np.sort(rng.choice(len(rows), size, replace=False))
            np.testing.assert_array_equal(_rows_dot(rows, ids, vector), full[ids])
        last = _rows_dot(rows, np.array([5000, 5002]), vector)
    np.testing.assert_array_equal(last, full[5000:][::2])


def test_the_prior_bound_is_above_every_score_it_stands_for():
    """ALS + prior of the prior's hashtags never exceed _PriorBound's bound, for queries in
    and out of the directions the weights lie in, and either sign of the weights."""
    from recommender.query.scoring import _PriorBound

    rng = np.random.default_rng(2)
    q, d, f, n_tags = 3000, 256, 16, 5000
    # weights mostly in a few directions, as a ridge prior's are, plus noise
    rows = rng.normal(size=(q, 8)) @ rng.normal(size=(8, d)) + 0.05 * rng.normal(size=(q, d))
    rows = rows.astype(np.float32)
    tag_factors = rng.normal(size=(n_tags, f)).astype(np.float32)
    tags = rng.choice(n_tags, q, replace=False)
    bound = _PriorBound(rows, tag_factors, tags, n_tags)
    assert bound.is_prior.sum() == q and bound.is_prior[tags].all()
    for trial in range(20):
        query = rng.normal(size=d).astype(np.float32)
        query /= np.linalg.norm(query)
        user = rng.normal(size=f).astype(np.float32)
        a, p = (0.5, 1.0) if trial % 2 else (1.0, -0.7)
        exact = a * (tag_factors[tags] @ user) + p * (rows @ query)
        upper = bound.scores(query, user, a, p)
        assert np.all(upper >= exact)
        assert np.median(upper - exact) < np.median(np.abs(exact))  # and not vacuous


@pytest.mark.parametrize("name", ["knn_vote", "profiles_prior"])
def test_contributions_are_each_neighbours_vote_and_als_part_on_a_larger_model(zipf_scorer, name):
    """Against a slow reference: each neighbour's row of votes (its hashtags, or its single
    hashtag's profile), read tag by tag, blended with its ALS dot products."""
    from recommender.fit.als import vote_targets

    s, method = zipf_scorer, METHODS[name]
    rng = np.random.default_rng(3)
    targets = vote_targets(s.image_tags, s.profiles, s.image_profile) if method.profiles else None
    for _ in range(5):
        nbrs = rng.choice(s.image_factors.shape[0], 15, replace=False)
        w = neighbour_weights(np.sort(rng.uniform(0.2, 0.9, 15))[::-1].astype(np.float32), method)
        voted = np.flatnonzero(np.asarray(s.image_tags[nbrs].sum(axis=0)).ravel())
        tags = rng.permutation(np.concatenate([voted[:20], rng.choice(s.n_tags, 10)]))
        got = s.contributions(nbrs, w, tags, method)
        rows = (targets if targets is not None else s.image_tags)[nbrs].toarray()
        a = method.als_weight
        expected = np.zeros((len(nbrs), len(tags)), np.float32)
        for i, n in enumerate(nbrs):
            for j, t in enumerate(tags):
                expected[i, j] = a * (s.image_factors[n] @ s.tag_factors[t]) + (1 - a) * rows[i, t]
        np.testing.assert_allclose(got, expected * w[:, None], rtol=1e-5, atol=1e-6)
