"""The original project's method (github.com/AlecMorgan/mod_4_project at c85a11e): Spark's
implicit ALS against a slow per-row reference, which posts and images take part, its
ranking against the obvious computation, and a model built before it."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recommender.data.datasets import Post
from recommender.errors import ModelError
from recommender.fit.als import interaction_matrix, tag_vocabulary
from recommender.fit.original import fit_original, has_own_hashtags, spark_implicit_als
from recommender.query.original import OriginalModel, require


def _reference_als(r, rank, iterations, reg, alpha, seed):
    """Spark's ALS.computeFactors for implicit preferences, one row at a time: the
    regularisation is regParam times the row's number of ratings (ALS-WR)."""
    r = r.toarray()
    rng = np.random.default_rng(seed)

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    users = unit(rng.standard_normal((r.shape[0], rank)))
    items = unit(rng.standard_normal((r.shape[1], rank)))

    def solve(ratings, other):
        out = np.zeros((ratings.shape[0], rank))
        for u, row in enumerate(ratings):
            a, b, n = other.T @ other, np.zeros(rank), 0
            for i in np.flatnonzero(row):
                c1 = alpha * abs(row[i])
                a += c1 * np.outer(other[i], other[i])
                if row[i] > 0:
                    b += (1 + c1) * other[i]
                    n += 1
            if n:
                out[u] = np.linalg.solve(a + reg * n * np.eye(rank), b)
        return out

    for _ in range(iterations):
        items = solve(r.T, users)
        users = solve(r, items)
    return users, items


def test_spark_implicit_als_equals_the_per_row_reference():
    dense = sp.random(40, 25, density=0.15, random_state=3).toarray()
    dense[5] = 0  # a post without any hashtag keeps a zero factor
    r = sp.csr_matrix((dense > 0).astype(float))
    users, items = spark_implicit_als(r, rank=4, iterations=3, reg_param=0.1, alpha=40.0)
    ref_u, ref_i = _reference_als(r, 4, 3, 0.1, 40.0, 0)
    np.testing.assert_allclose(users, ref_u, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(items, ref_i, rtol=1e-8, atol=1e-10)
    assert not users[5].any()


def _posts():
    return [
        Post("p0", "a/0.jpg", ("cat", "animals"), "animals"),
        Post("p1", "a/1.jpg", ("animals",), "animals"),  # only its search tag: left out
        Post("p2", None, ("cat", "kitten", "animals"), "animals"),  # no image, still trains
        Post("p3", "f/3.jpg", ("pizza", "food"), "food"),
        Post("p4", "f/4.jpg", ("food",), "food"),
        Post("p5", "x/5.jpg", ("solo",), None),  # no category: its one tag is its own
    ]


def test_only_posts_with_hashtags_of_their_own_train_and_are_neighbours():
    posts = _posts()
    assert [has_own_hashtags(p) for p in posts] == [True, False, True, True, False, True]
    vocab, _ = tag_vocabulary([p.hashtags for p in posts])
    matrix = interaction_matrix([p.hashtags for p in posts], vocab)
    with_image = [0, 1, 3, 4, 5]  # the model's image index: posts with an image
    fitted = fit_original(posts, matrix, with_image)
    assert fitted.rows.tolist() == [0, 2, 4]  # the images of p0, p3, p5
    assert sorted(vocab[t] for t in fitted.tag_ids) == sorted(
        {"cat", "animals", "kitten", "pizza", "food", "solo"}
    )
    assert fitted.image_factors.shape == (3, 10) and fitted.tag_factors.shape == (6, 10)
    nobody = [Post("q", "q.jpg", ("food",), "food")]
    assert fit_original(nobody, interaction_matrix([("food",)], ["food"]), [0]) is None


def test_the_ranking_is_the_mean_of_five_neighbours_factors_dotted_with_every_hashtag():
    rng = np.random.default_rng(1)
    features = rng.standard_normal((30, 8)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    rows = np.arange(0, 30, 2)  # every other indexed image has factors
    image_factors = rng.standard_normal((15, 10)).astype(np.float32)
    tag_ids = np.array([0, 2, 3, 5, 7, 8, 9, 11, 12, 13, 14, 16])
    tag_factors = rng.standard_normal((12, 10)).astype(np.float32)
    model = OriginalModel(features, rows, image_factors, tag_ids, tag_factors, n_tags=17)
    query = features[1] + 0.1 * features[4]  # closest to an image without factors
    got = model.rank(query, k=10, n=5)
    sims = features[rows] @ query
    nearest = np.argsort(-sims, kind="stable")[:5]
    assert got.neighbours.tolist() == rows[nearest].tolist()
    assert 1 not in got.neighbours  # never an image whose post has no factors
    scores = tag_factors @ image_factors[nearest].mean(axis=0)
    assert got.best.tolist() == tag_ids[np.argsort(-scores, kind="stable")[:10]].tolist()
    contrib = model.contributions(got, got.best)
    np.testing.assert_allclose(contrib.sum(axis=0), got.scores[got.best], rtol=1e-5)


def test_a_model_built_before_the_original_says_to_rebuild():
    with pytest.raises(ModelError, match="rebuild"):
        require(None)


@pytest.fixture(scope="module")
def small_model():
    from recommender.config import ALSParams, BuildConfig
    from recommender.fit.training import fit_recommender

    rng = np.random.default_rng(3)
    posts = []
    for i in range(60):
        cat = ("sea", "city", "dogs")[i % 3]
        extra = tuple(f"{cat}{j}" for j in rng.choice(5, size=3, replace=False))
        posts.append(Post(str(i), f"{i}.jpg", (cat,) if i % 4 == 0 else (cat,) + extra, cat))
    centres = rng.normal(size=(3, 16))
    feats = np.stack([centres[i % 3] + 0.8 * rng.normal(size=16) for i in range(60)])
    feats = (feats / np.linalg.norm(feats, axis=1, keepdims=True)).astype(np.float32)
    config = BuildConfig(als=ALSParams(factors=4, iterations=3))
    return fit_recommender(posts[:45], feats, list(range(45)), config), feats[45:], posts


def test_the_model_ranks_the_original_way_without_block_list_or_hedging(small_model):
    rec, queries, posts = small_model
    for q in queries:
        got = rec.recommend_features(q, n_neighbours=20, k=10, method="original")
        blocked = rec.recommend_features(q, k=10, method="original", blocklist=set(rec.tags))
        assert got.tags == blocked.tags  # the original had no block list
        assert len(got.neighbours) == 5 and not got.left_out  # always 5, nothing hedged
        assert all(has_own_hashtags(posts[nb.index]) for nb in got.neighbours)
        own = rec.original.rank(q)
        assert [rec.tags[t] for t in own.best] == got.tags
        for t in got.hashtags:  # the explanation adds up: each neighbour's share of the mean
            assert sum(t.contributions) == pytest.approx(t.score, abs=1e-6)


def test_the_original_round_trips_and_an_older_model_says_to_rebuild(small_model, tmp_path):
    from recommender.query.recommender import HashtagRecommender
    from recommender.store.arrays import ORIGINAL, read_parts, write_parts

    rec, queries, _ = small_model
    rec.save(tmp_path / "m")
    back = HashtagRecommender.load(tmp_path / "m")
    assert back.recommend_features(queries[0], method="original").tags == (
        rec.recommend_features(queries[0], method="original").tags
    )
    parts = read_parts(tmp_path / "m")
    for name in ORIGINAL:  # a model written before the original was kept
        setattr(parts.arrays, name, None)
    write_parts(tmp_path / "old", parts)
    old = HashtagRecommender.load(tmp_path / "old")
    assert old.recommend_features(queries[0]).tags  # everything else still works
    with pytest.raises(ModelError, match="rebuild"):
        old.recommend_features(queries[0], method="original")
