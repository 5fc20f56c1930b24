"""Every error raised on purpose derives from RecommenderError, and bad numbers are refused
where they enter the library (the config dataclasses, the query), in one line."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.config import ALSParams, Method, get_method
from recommender.data.datasets import Post
from recommender.errors import ConfigError, DatasetError, FitError, RecommenderError
from recommender.fit.als import fit_als, interaction_matrix
from recommender.fit.training import fit_recommender
from recommender.query.recommender import BuildConfig, HashtagRecommender


def test_fit_error_and_config_error_are_recommender_errors():
    assert issubclass(FitError, RecommenderError) and not issubclass(FitError, RuntimeError)
    assert issubclass(ConfigError, RecommenderError) and issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_size": 0},
        {"batch_size": -3},
        {"workers": -1},
        {"workers": 0},
        {"thumb_size": -1},
        {"thumb_size": 0},
        {"thumb_size": 5000},
        {"batch_size": 2.5},
        {"workers": True},
        {"method": "no_such_method"},
        {"als": {"factors": 3}},
    ],
)
def test_build_config_refuses_bad_values(kwargs):
    with pytest.raises(ConfigError):
        BuildConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"factors": 0},
        {"iterations": 0},
        {"regularization": -0.1},
        {"regularization": float("nan")},
        {"alpha": 0.0},
        {"alpha": float("inf")},
        {"weighting": "tfidf"},
        {"min_support": 0},
        {"random_state": -1},
    ],
)
def test_als_params_refuse_bad_values(kwargs):
    with pytest.raises(ConfigError):
        ALSParams(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"als_weight": 1.5},
        {"als_weight": 0.5, "weighting": "other"},
        {"als_weight": 0.5, "power": -1.0},
        {"als_weight": 0.5, "power": float("nan")},
        {"als_weight": 0.5, "prior_weight": -1.0},
    ],
)
def test_methods_refuse_bad_values(kwargs):
    with pytest.raises(ConfigError):
        Method("m", **kwargs)


def test_an_unknown_method_name_is_a_config_error():
    with pytest.raises(ConfigError, match="choose one of"):
        get_method("nope")


def test_method_from_dict_round_trips_and_fills_fields_added_later():
    for name in ("original", "blend", "profiles_prior"):
        method = get_method(name)
        assert Method.from_dict(method.to_dict()) == method
    saved = {"name": "old", "als_weight": 1}  # saved before the other fields existed
    assert Method.from_dict(saved) == Method("old", als_weight=1.0)
    with pytest.raises(ConfigError, match="lacks als_weight"):
        Method.from_dict({"name": "old"})
    with pytest.raises(ConfigError, match="JSON object"):
        Method.from_dict("blend")


def test_an_als_that_diverges_raises_fit_error():
    tags = [["a", "b"], ["b", "c"], ["a", "c", "d"], ["d"]] * 5
    matrix = interaction_matrix(tags, ["a", "b", "c", "d"])
    params = ALSParams(factors=4, iterations=3, alpha=1e30, weighting="none")
    with pytest.raises(FitError, match="lower alpha"):
        fit_als(matrix, params)


def tiny() -> HashtagRecommender:
    posts = [Post(str(i), f"{i}.jpg", ("a", "b") if i % 2 else ("c",), None) for i in range(6)]
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(6, 8)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    return fit_recommender(
        posts, feats, list(range(6)), BuildConfig(als=ALSParams(factors=2, iterations=2))
    )


@pytest.mark.parametrize("n,k", [(0, 5), (51, 5), (5, 0), (5, 101)])
def test_query_numbers_out_of_range_are_recommender_errors(n, k):
    rec = tiny()
    with pytest.raises(ConfigError, match="must be between"):
        rec.recommend_features(np.ones(8, np.float32) / np.sqrt(8), n, k)


def test_fitting_posts_without_hashtags_is_a_dataset_error():
    posts = [Post("0", "0.jpg", (), None)]
    with pytest.raises(DatasetError, match="no hashtags"):
        fit_recommender(posts, np.ones((1, 4), np.float32), [0])
