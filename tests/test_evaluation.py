"""Evaluation: metrics against slow, obvious references and hand-computed answers; splits
and their overlap guard; batched ranking equal to the page's; a small real evaluation."""

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender.config import METHODS, ALSParams
from recommender.data.datasets import Post
from recommender.errors import ConfigError
from recommender.evaluation import (
    ORIGINAL_NEIGHBOURS,
    OVERLAP_MESSAGE,
    POPULARITY,
    Candidate,
    EvaluationResult,
    Split,
    beyond_category,
    candidate,
    catalogue_coverage,
    check_split,
    evaluable_posts,
    evaluate,
    generic_rate,
    hit_rate_at_k,
    ndcg_at_k,
    off_topic_at_k,
    off_topic_tags,
    own_category_hit_at_k,
    precision_at_k,
    probe_categories,
    rank_features,
    recall_at_k,
    recall_ceiling,
    stratified_splits,
    unseen_share,
)
from recommender.fit.training import fit_recommender
from recommender.query.recommender import BuildConfig
from recommender.query.scoring import DEFAULT_NEIGHBOURS
from recommender.vision.content import TopClasses


# ------------------------------------------------------------- slow references
def ref_precision(ranked, truth, k):
    return [sum(1 for t in r[:k] if t in s) / k for r, s in zip(ranked, truth)]


def ref_recall(ranked, truth, k):
    return [sum(1 for t in r[:k] if t in s) / len(s) for r, s in zip(ranked, truth)]


def ref_hit(ranked, truth, k):
    return [1.0 if any(t in s for t in r[:k]) else 0.0 for r, s in zip(ranked, truth)]


def ref_ndcg(ranked, truth, k):
    out = []
    for r, s in zip(ranked, truth):
        dcg = sum(1 / math.log2(i + 2) for i, t in enumerate(r[:k]) if t in s)
        idcg = sum(1 / math.log2(i + 2) for i in range(min(len(s), k)))
        out.append(dcg / idcg)
    return out


RANKED = [["a", "b", "c"], ["x", "y", "z"], ["d"]]
TRUTH = [{"a", "c", "d"}, {"q"}, {"d", "e"}]


def test_metrics_on_a_hand_computed_case():
    np.testing.assert_allclose(precision_at_k(RANKED, TRUTH, 2), [1 / 2, 0, 1 / 2])
    np.testing.assert_allclose(recall_at_k(RANKED, TRUTH, 2), [1 / 3, 0, 1 / 2])
    np.testing.assert_allclose(recall_at_k(RANKED, TRUTH, 3), [2 / 3, 0, 1 / 2])
    np.testing.assert_allclose(hit_rate_at_k(RANKED, TRUTH, 1), [1, 0, 1])
    # post 0: hits at ranks 1 and 3 -> DCG 1 + 1/2; ideal (3 true) 1 + 1/log2(3) + 1/2
    ideal = 1 + 1 / math.log2(3) + 0.5
    np.testing.assert_allclose(ndcg_at_k(RANKED, TRUTH, 3), [1.5 / ideal, 0, 1 / (1 + 1 / 1.585)],
                               rtol=1e-3)  # fmt: skip
    # a list shorter than k counts its missing places as misses; precision divides by k
    np.testing.assert_allclose(precision_at_k([["d"]], [{"d"}], 5), [0.2])


words = st.sampled_from(list("abcdefgh"))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(words, max_size=8, unique=True), st.sets(words, min_size=1)),
        min_size=1,
        max_size=6,
    ),
    st.integers(1, 10),
)
def test_metrics_match_the_slow_references(cases, k):
    ranked = [r for r, _ in cases]
    truth = [s for _, s in cases]
    np.testing.assert_allclose(precision_at_k(ranked, truth, k), ref_precision(ranked, truth, k))
    np.testing.assert_allclose(recall_at_k(ranked, truth, k), ref_recall(ranked, truth, k))
    np.testing.assert_allclose(hit_rate_at_k(ranked, truth, k), ref_hit(ranked, truth, k))
    np.testing.assert_allclose(ndcg_at_k(ranked, truth, k), ref_ndcg(ranked, truth, k))


def test_beyond_category_removes_the_search_hashtag_before_cutting():
    ranked = [["food", "pizza", "yum"], ["cat", "cute"]]
    truth = [{"food", "yum"}, {"cat"}]
    r, t, keep = beyond_category(ranked, truth, ["food", "cat"])
    assert r == [["pizza", "yum"], ["cute"]]
    assert t == [{"yum"}, set()]
    assert keep.tolist() == [True, False]
    # with the category gone, "yum" moves into the top 2
    assert recall_at_k(r[:1], t[:1], 2).tolist() == [1.0]
    assert recall_at_k(ranked[:1], truth[:1], 2).tolist() == [0.5]


def test_coverage_generic_rate_ceiling_and_unseen_share():
    ranked = [["a", "b"], ["a", "c"]]
    assert catalogue_coverage(ranked, 2, 6) == pytest.approx(3 / 6)
    assert catalogue_coverage(ranked, 1, 6) == pytest.approx(1 / 6)
    assert generic_rate(ranked, 2, {"a"}) == pytest.approx(2 / 4)
    truth = [{"a", "b", "z"}, {"y"}]
    known = {"a", "b", "c"}
    np.testing.assert_allclose(recall_ceiling(truth, known, 10), [2 / 3, 0])
    np.testing.assert_allclose(recall_ceiling(truth, known, 1), [1 / 3, 0])
    assert unseen_share(truth, known) == pytest.approx(2 / 4)


def ref_off_topic(ranked, truth, post_categories, categories, k):
    """Slow reference, spelled out: another category's tag or its singular, not the post's."""

    def names(category):
        if category.endswith("ies"):
            return {category, category[:-3] + "y"}
        if category.endswith("s") and not category.endswith("ss"):
            return {category, category[:-1]}
        return {category}

    out = []
    for tags, true, own in zip(ranked, truth, post_categories):
        count = 0
        for tag in tags[:k]:
            others = [c for c in categories if c != own and tag in names(c)]
            if others and tag not in true:
                count += 1
        out.append(count)
    return out


def test_off_topic_on_a_hand_computed_case():
    categories = ["animals", "babies", "food", "fitness"]
    ranked = [
        ["baby", "food", "animals", "cute", "animal"],  # a food post tagged #animal itself
        ["fitnes", "fitness", "babies", "dog"],
        ["a", "b"],
    ]
    truth = [{"food", "animal", "yum"}, {"fitness"}, {"a"}]
    own = ["food", "fitness", "food"]
    off = off_topic_tags(own, categories, generic=["never"])
    # post 0: baby and animals count (animal is its own tag, food its own category)
    # post 1: babies counts (fitnes is no form of fitness, fitness is its own)
    assert off_topic_at_k(ranked, truth, off, 10).tolist() == [2, 1, 0]
    assert off_topic_at_k(ranked, truth, off, 1).tolist() == [1, 0, 0]
    # without categories: the most frequent hashtags, unless the post carries them
    generic = off_topic_tags([None, None, None], [], generic=["a", "b", "dog"])
    assert off_topic_at_k(ranked, truth, generic, 10).tolist() == [0, 1, 1]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(
                st.sampled_from(["cars", "car", "babies", "baby", "food", "x", "y"]),
                max_size=8,
                unique=True,
            ),
            st.sets(st.sampled_from(["car", "baby", "food", "x"]), min_size=1),
            st.sampled_from(["cars", "babies", "food"]),
        ),
        min_size=1,
        max_size=6,
    ),
    st.integers(1, 10),
)
def test_off_topic_matches_the_slow_reference(cases, k):
    categories = ["cars", "babies", "food"]
    ranked, truth, own = ([c[i] for c in cases] for i in range(3))
    off = off_topic_tags(own, categories, generic=[])
    np.testing.assert_allclose(
        off_topic_at_k(ranked, truth, off, k), ref_off_topic(ranked, truth, own, categories, k)
    )


def test_own_category_hit_on_a_hand_computed_case():
    ranked = [["wedding", "love"], ["love", "bride", "wedding"], ["car"], []]
    targets = ["wedding", "wedding", "cars", "cars"]
    assert own_category_hit_at_k(ranked, targets, 10).tolist() == [1, 1, 0, 0]
    assert own_category_hit_at_k(ranked, targets, 2).tolist() == [1, 0, 0, 0]


def _result(a, b):
    per_split = {
        "a": {"recall@10": a, "off_topic@10": [1.0, 2.0, 1.5]},
        "b": {"recall@10": b, "off_topic@10": [1.0, 1.0, 1.0]},
    }
    curves = {key: [np.zeros(3)] * 3 for key in per_split}
    return EvaluationResult(per_split, curves, [0.5] * 3, [0.1] * 3, [10] * 3, "a")


def test_paired_difference_and_its_standard_error_by_hand():
    result = _result([0.20, 0.22, 0.18], [0.19, 0.20, 0.18])
    paired = result.paired("a", "b")
    # differences 0.01, 0.02, 0.00: mean 0.01, sample std 0.01, se 0.01 / sqrt(3)
    assert paired["recall@10"]["mean"] == pytest.approx(0.01)
    assert paired["recall@10"]["se"] == pytest.approx(0.01 / math.sqrt(3))
    assert paired["recall@10"]["splits"] == 3
    assert paired["off_topic@10"]["mean"] == pytest.approx(0.5)
    assert paired["off_topic@10"]["se"] == pytest.approx(0.5 / math.sqrt(3))
    assert result.paired("b", "a")["recall@10"]["mean"] == pytest.approx(-0.01)
    text = result.paired_table("a", "b")
    assert "over 3 splits" in text and "+0.0100 ± 0.0058" in text


def test_candidates_by_key():
    assert candidate("popularity") == Candidate(POPULARITY, None)
    assert candidate("blend") == Candidate("blend", "blend", DEFAULT_NEIGHBOURS, None)
    assert candidate("blend/n20") == Candidate("blend/n20", "blend", 20, None)
    # the original project's method, always at its own 5 neighbours
    assert candidate("original") == Candidate("original", "original", ORIGINAL_NEIGHBOURS)
    with pytest.raises(ConfigError, match="always uses its 5"):
        candidate("original/n20")
    spec = "profiles_prior:calibrated_hedge=0.1"
    assert candidate(spec + "/n10") == Candidate(spec + "/n10", spec, 10, None)
    with pytest.raises(ConfigError, match="unknown method"):
        candidate("nope")
    with pytest.raises(ConfigError, match="between 1 and 50"):
        candidate("blend/n0")


def test_a_post_without_true_hashtags_is_refused():
    with pytest.raises(ValueError, match="at least one true hashtag"):
        recall_at_k([["a"]], [set()], 1)


# --------------------------------------------------------------------- splits
def _posts():
    posts, rows = [], []
    for cat in ("food", "cats", "cars"):
        for i in range(10):
            rich = cat != "cars"
            tags = (cat, f"{cat}{i % 3}", "tag") if rich else (cat,)
            posts.append(Post(f"{cat}-{i}", f"data/{cat}/{i}.jpg", tags, cat))
            rows.append(len(rows))
    posts.append(Post("no-image", None, ("food", "pizza"), "food"))
    rows.append(-1)
    # one rich post in an otherwise single-tag category: it stays a test candidate, and
    # the category is still probed (fewer than 10% of its photos are evaluable)
    posts.append(Post("cars-rich", "data/cars/rich.jpg", ("cars", "bmw"), "cars"))
    rows.append(len(rows))
    return posts, rows


def test_splits_hold_out_the_fraction_of_every_category_and_are_reproducible():
    posts, rows = _posts()
    assert len(evaluable_posts(posts, rows)) == 21  # cars carry a single hashtag, but one
    splits = stratified_splits(posts, rows, n_splits=3, test_fraction=0.2, seed=7)
    again = stratified_splits(posts, rows, n_splits=3, test_fraction=0.2, seed=7)
    for a, b in zip(splits, again):
        assert a.test.tolist() == b.test.tolist()
    assert splits[0].test.tolist() != splits[1].test.tolist()
    for split in splits:
        cats = [posts[i].category for i in split.test]
        assert sorted(cats) == ["cats", "cats", "food", "food"]
        # cars has (almost) no evaluable post: 20% of its single-tag photos are probes
        assert [posts[i].category for i in split.probe] == ["cars", "cars"]
        assert len(posts) - 1 not in split.probe
        assert set(split.train) | set(split.test) | set(split.probe) == set(range(len(posts)))
        assert not set(split.train) & (set(split.test) | set(split.probe))
    assert probe_categories(posts, rows) == ["cars"]
    assert splits[0].probe.tolist() != splits[1].probe.tolist()


def test_probes_leave_the_test_posts_as_they_were():
    posts, rows = _posts()
    rich = [i for i, p in enumerate(posts) if len(p.hashtags) > 1]
    without = stratified_splits([posts[i] for i in rich], [rows[i] for i in rich], 3, 0.2, 7)
    with_probes = stratified_splits(posts, rows, 3, 0.2, 7)
    for a, b in zip(without, with_probes):
        assert [rich[i] for i in a.test] == b.test.tolist()
        assert len(a.probe) == 0


def test_the_same_image_file_under_another_post_leaves_training():
    posts, rows = _posts()
    keys = [f"k{i}" for i in range(len(posts))]
    keys[-1] = None
    twin = Post("twin", "data/food/copy.jpg", ("food", "copy"), "food")
    posts.append(twin)
    rows.append(-1)  # a duplicate image: build keeps only the first row
    splits = stratified_splits(posts, rows, n_splits=4, seed=0, image_keys=keys + ["k0"])
    for split in splits:
        if 0 in split.test:
            assert len(posts) - 1 not in split.train
        else:
            assert len(posts) - 1 in split.train


def test_overlapping_train_and_test_are_refused():
    posts, rows = _posts()
    with pytest.raises(ValueError, match=OVERLAP_MESSAGE):
        check_split(posts, rows, [0, 1, 2], [2, 3])
    dup = posts + [Post("food-0", "data/food/x.jpg", ("food", "x"), "food")]
    with pytest.raises(ValueError, match="post ids"):
        check_split(dup, rows + [len(rows)], [0], [len(dup) - 1])
    with pytest.raises(ValueError, match="training image index"):
        check_split(posts, [0] * len(posts), [0], [1])
    keys = ["same"] * len(posts)
    with pytest.raises(ValueError, match="also training images"):
        check_split(posts, rows, [0], [1], keys)
    check_split(posts, rows, [0, 1], [2, 3])  # disjoint: fine
    bad = [Split(np.array([0, 1]), np.array([1]), 0)]
    features = np.eye(len(posts), dtype=np.float32)
    with pytest.raises(ValueError, match=OVERLAP_MESSAGE):
        evaluate(posts, features, rows, splits=bad)
    probe_in_train = [Split(np.array([0, 25]), np.array([1]), 0, np.array([25]))]
    with pytest.raises(ValueError, match=OVERLAP_MESSAGE):
        evaluate(posts, features, rows, splits=probe_in_train)


# ------------------------------------------------------------------- ranking
@pytest.fixture(scope="module")
def small_model():
    rng = np.random.default_rng(3)
    posts, rows = [], []
    for i in range(60):
        cat = ("sea", "city", "dogs")[i % 3]
        extra = tuple(f"{cat}{j}" for j in rng.choice(5, size=3, replace=False))
        tags = (cat,) if i % 4 == 0 else (cat,) + extra
        posts.append(Post(str(i), f"{i}.jpg", tags, cat))
        rows.append(i)
    centres = rng.normal(size=(3, 16))
    feats = np.stack([centres[i % 3] + 0.8 * rng.normal(size=16) for i in range(60)])
    feats = (feats / np.linalg.norm(feats, axis=1, keepdims=True)).astype(np.float32)
    config = BuildConfig(als=ALSParams(factors=4, iterations=3))
    rec = fit_recommender(posts[:45], feats, rows[:45], config)
    return rec, feats[45:]


HEDGED = [
    "profiles_prior:calibrated_hedge=0.5",
    "knn_vote:calibrated_hedge=0.9",
    "knn_vote:calibrated_hedge=0.2,calibrated_demote=0.9",  # demotion reorders the top 5
]


@pytest.mark.parametrize("method", sorted(METHODS) + HEDGED)
@pytest.mark.parametrize("n", [1, 5, 12])
def test_rank_features_gives_the_pages_rankings(small_model, method, n):
    rec, queries = small_model
    ids = rank_features(rec, queries, method, n, 8)
    for row, q in zip(ids, queries):
        page = rec.recommend_features(q, n_neighbours=n, k=8, method=method)
        assert [rec.tags[t] for t in row if t >= 0] == page.tags


def test_rank_features_honours_the_block_list(small_model):
    rec, queries = small_model
    exclude = rec.blocked_mask({"sea", "city", "dogs"})
    ids = rank_features(rec, queries, "knn_vote", 5, 5, exclude)
    assert not {rec.tags[t] for t in ids.ravel() if t >= 0} & {"sea", "city", "dogs"}


def test_rank_features_adds_what_the_network_sees_as_the_page_does(small_model):
    rec, queries = small_model
    method = dataclasses.replace(METHODS["knn_vote"], name="seeing", content_weight=2.0)
    dense = np.zeros((len(queries), 1000), np.float32)
    dense[:, 978] = 0.9  # seashore -> beach, sea (only "sea" is among the model's tags)
    dense[:, 0] = 0.1
    classes = TopClasses.of(dense)  # sparse, as the embed stage keeps them
    ids = rank_features(rec, queries, method, 5, 8, classes=classes)
    for row, q, c in zip(ids, queries, dense):
        page = rec.recommend_features(q, n_neighbours=5, k=8, method=method, classes=c)
        assert [rec.tags[t] for t in row if t >= 0] == page.tags
        assert page.tags[0] == "sea"  # 2.0 * 0.9 outweighs any neighbour vote (<= 1)
    plain = rank_features(rec, queries, method, 5, 8)
    assert (plain[:, 0] != rec.tags.index("sea")).any()


# -------------------------------------------------------------- real data set
@pytest.mark.slow
def test_default_beats_popularity_and_the_original_on_the_real_data(
    dataset_path, feature_cache_dir
):
    from recommender.config import DEFAULT_METHOD
    from recommender.data.datasets import load_dataset
    from recommender.engines.embed_stage import dataset_features
    from recommender.evaluation import image_keys

    config = BuildConfig()
    dataset = load_dataset(dataset_path)
    feats = dataset_features(dataset, config)
    result = evaluate(
        dataset.posts,
        feats.features,
        feats.image_rows,
        config,
        candidates=[
            Candidate(POPULARITY, None),
            Candidate("original", "original", ORIGINAL_NEIGHBOURS),
            Candidate("knn_vote", "knn_vote", 5),
            Candidate(DEFAULT_METHOD, DEFAULT_METHOD, 5),
        ],
        n_splits=2,
        keys=image_keys(dataset, dataset.posts, feats.image_rows),
        n_sweep=(),
    )
    assert result.test_posts[0] > 200  # ~1,100 evaluable posts, 20% held out
    default = result.per_split[DEFAULT_METHOD]["recall@10"]
    for other in (POPULARITY, "original", "knn_vote"):
        assert all(d > o for d, o in zip(default, result.per_split[other]["recall@10"])), other
    assert result.mean(DEFAULT_METHOD, "beyond_recall@10") > result.mean(
        POPULARITY, "beyond_recall@10"
    )
    assert 0.3 < np.mean(result.ceiling) < 0.6
    # the categories known only by their search tag are probed, 20% of their images each
    assert result.info["probe_categories"] == [
        "architecture", "babies", "cars", "fitness", "nature", "wedding"
    ]  # fmt: skip
    assert 300 < result.info["probe_posts"] < 400
    for key in (POPULARITY, DEFAULT_METHOD):
        assert 0 <= result.mean(key, "off_topic@5") <= result.mean(key, "off_topic@10") <= 10
        assert 0 <= result.mean(key, "own_category_hit@10") <= 1
    # popularity's top 10 holds several search tags; the images rank their own better
    assert result.mean(DEFAULT_METHOD, "own_category_hit@10") > 0.3
    summary = result.summary()
    assert summary["method"] == DEFAULT_METHOD and summary["splits"] == 2
    assert set(summary) >= {
        "recall@10", "beyond_recall@10", "popularity_recall@10", "off_topic@10",
        "off_topic@5", "own_category_hit@10",
    }  # fmt: skip
    as_json = result.to_dict()["methods"]
    assert all(m["off_topic@10"] is not None for m in as_json.values())


# ------------------------------------------------------- reporting a result
class _Metrics(dict):
    """A candidate's per-split metrics; any metric not given is 0 on both splits."""

    def __missing__(self, metric):
        return [0.0, 0.0]


def hand_made_result():
    from recommender.evaluation import EvaluationResult

    curve = np.linspace(0.05, 1.0, 20)
    return EvaluationResult(
        per_split={
            POPULARITY: _Metrics({"recall@10": [0.2, 0.4], "hit@10": [0.5, 0.5]}),
            "knn_vote": _Metrics({"recall@10": [0.5, 0.7], "beyond_recall@10": [0.25, 0.35]}),
        },
        curves={POPULARITY: [curve / 2, curve / 2], "knn_vote": [curve, curve * 0.5]},
        ceiling=[0.4, 0.5],
        unseen=[0.1, 0.3],
        test_posts=[100, 200],
        default="knn_vote",
        info={"seconds": 1.5},
    )


def test_table_shows_mean_and_spread_of_every_candidate_and_marks_the_default():
    header, popularity, knn, ceiling = hand_made_result().table().splitlines()
    assert header.split()[:3] == ["precision@5", "recall@5", "recall@10"]
    assert popularity.startswith(f" {POPULARITY}") and knn.startswith("*knn_vote")
    assert "0.300 ± 0.100" in popularity and "0.500 ± 0.000" in popularity  # recall, hit
    assert "0.600 ± 0.100" in knn and "0.300 ± 0.050" in knn  # recall@10, beyond
    assert ceiling.startswith("ceiling recall@10: 0.450")
    assert "20.0%" in ceiling and "2 splits, 150 test posts each" in ceiling


def test_to_dict_and_summary_give_means_spreads_and_curves():
    result = hand_made_result()
    out = result.to_dict()
    knn = out["methods"]["knn_vote"]
    assert knn["recall@10"] == 0.6 and knn["recall@10_std"] == 0.1
    assert knn["per_split_recall@10"] == [0.5, 0.7]
    assert knn["recall_curve"] == [round(v, 4) for v in np.linspace(0.05, 1.0, 20) * 0.75]
    assert out["default"] == "knn_vote" and out["splits"] == 2 and out["test_posts"] == [100, 200]
    assert out["ceiling_recall@10"] == 0.45 and out["unseen_test_tag_share"] == 0.2
    assert out["seconds"] == 1.5  # the run's facts are passed through
    summary = result.summary()
    assert summary["recall@10"] == 0.6 and summary["popularity_recall@10"] == 0.3
    assert summary["beyond_recall@10"] == 0.3 and summary["test_posts"] == 150


def test_the_recall_plot_is_a_png_with_something_drawn(tmp_path):
    from PIL import Image

    from recommender.evaluation import plot_recall_curves

    path = plot_recall_curves(hand_made_result(), tmp_path / "curves.png")
    assert path.stat().st_size > 5000
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (990, 660)
        pixels = np.asarray(img.convert("L"))
    assert pixels.min() < 100 and pixels.max() > 200  # lines on a white background


# ------------------------------------------------------------------ the CLI
@pytest.fixture(scope="module")
def manifest_dataset(dataset_path, tmp_path_factory):
    """20 real photos with their real tag lists in a CSV manifest (no categories)."""
    from conftest import real_photo_manifest

    return real_photo_manifest(dataset_path, tmp_path_factory.mktemp("compare"), 10)


def test_evaluate_compare_prints_the_paired_differences(
    manifest_dataset, feature_cache_dir, capsys
):
    import json

    from recommender.cli import main

    args = ["evaluate", str(manifest_dataset), "--splits", "3", "--quiet"]
    assert main(args + ["--compare", "knn_vote", "popularity", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["methods"]) == {"knn_vote", "popularity"}  # only what was asked for
    for entry in out["methods"].values():
        assert entry["off_topic@10"] is not None  # the 10 most frequent tags, no categories
        assert entry["own_category_hit@10"] is None  # no single-tag category to probe
    paired = out["compare"]["paired"]
    for metric in ("recall@10", "off_topic@10"):
        a, b = out["methods"]["knn_vote"][metric], out["methods"]["popularity"][metric]
        assert paired[metric]["mean"] == pytest.approx(a - b, abs=2e-4)  # means are rounded
        assert paired[metric]["splits"] == 3 and paired[metric]["se"] >= 0
    assert main(args + ["--compare", "knn_vote", "popularity"]) == 0
    text = capsys.readouterr().out
    assert "paired difference knn_vote - popularity over 3 splits" in text
    assert main(args + ["--compare", "knn_vote", "nope"]) == 1
    assert "unknown method 'nope'" in capsys.readouterr().err
