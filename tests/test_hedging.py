"""Category search tags and the hedging component: singular forms, single-tag categories,
method variants by name, the retired hedging rules (old models still load), and the
category arrays a model keeps."""

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import check_hedged_is_plain_without

from recommender.config import METHODS, RETIRED_RULES, ALSParams, Method, get_method
from recommender.data.datasets import Post
from recommender.errors import ConfigError, ModelError
from recommender.fit.training import fit_recommender
from recommender.query.hedging import (
    DEMOTE_TOP,
    CategoryHedge,
    category_forms,
    form_categories,
    moved_below,
    single_tag_categories,
    tag_categories,
)
from recommender.query.recommender import BuildConfig, HashtagRecommender, _saved_method
from recommender.query.scoring import Scored


def test_category_forms_are_the_plain_singulars():
    assert category_forms("animals") == {"animals", "animal"}
    assert category_forms("cars") == {"cars", "car"}
    assert category_forms("babies") == {"babies", "baby"}
    assert category_forms("beaches") == {"beaches", "beach"}
    for same in ("fitness", "food", "selfie", "travel", "wedding", "nature", "bus"):
        assert category_forms(same) == {same}


def test_tag_categories_index_sorted_categories():
    forms = form_categories(["food", "animals"])
    assert forms == {"animal": "animals", "animals": "animals", "food": "food"}
    tags = ["food", "dog", "animal", "animals", "foods"]
    assert tag_categories(tags, ["food", "animals"]).tolist() == [1, -1, 0, 0, -1]
    assert tag_categories(tags, []).tolist() == [-1] * 5


def test_demotion_is_a_method_option_checked_and_old_methods_load_without_it():
    m = get_method("profiles_prior:calibrated_demote=0.5,calibrated_demote_single=0.2")
    assert (m.calibrated_demote, m.calibrated_demote_single) == (0.5, 0.2)
    assert Method.from_dict(m.to_dict()) == m
    assert get_method("profiles_prior:calibrated_demote=none").calibrated_demote is None
    saved = m.to_dict()
    del saved["calibrated_demote"], saved["calibrated_demote_single"]  # saved before them
    assert Method.from_dict(saved).calibrated_demote is None
    for bad, says in (
        ("calibrated_demote=1.5", "calibrated_demote must lie"),
        ("calibrated_demote_single=-1", "calibrated_demote_single must lie"),
    ):
        with pytest.raises(ConfigError, match=says):
            get_method(f"profiles_prior:{bad}")


def test_method_variants_by_name():
    m = get_method("profiles_prior:calibrated_hedge=0.25,prior_weight=0.5")
    assert m.name == "profiles_prior:calibrated_hedge=0.25,prior_weight=0.5"
    assert (m.calibrated_hedge, m.prior_weight, m.profiles) == (0.25, 0.5, True)
    assert get_method("knn_vote:profiles=true").profiles is True
    assert get_method("profiles_prior:calibrated_hedge=none").calibrated_hedge is None
    assert get_method("blend") is METHODS["blend"]
    for bad, says in [
        ("nope", "unknown method"),
        ("blend:colour=3", "bad method option"),
        ("blend:calibrated_hedge", "bad method option"),
        ("blend:power=high", "not a number"),
        ("blend:profiles=maybe", "not true or false"),
        ("blend:calibrated_hedge=-1", "calibrated_hedge must lie"),
    ]:
        with pytest.raises(ConfigError, match=says):
            get_method(bad)


def _model_of_categories(cats, n, train, seed, others, stray):
    """``n`` posts cycling through ``cats`` (the first ``train`` fitted, the rest's features
    returned as queries): each carries its category, two own tags, and on odd posts the
    next ``others`` categories' search tags, on even ones the tag ``stray``."""
    rng = np.random.default_rng(seed)
    k = len(cats)
    posts, rows = [], []
    for i in range(n):
        cat = cats[i % k]
        extra = tuple(f"{cat}{j}" for j in rng.choice(4, size=2, replace=False))
        other = tuple(cats[(i + d) % k] for d in range(1, others + 1)) if i % 2 else (stray,)
        posts.append(Post(str(i), f"{i}.jpg", (cat,) + extra + other, cat))
        rows.append(i)
    centres = rng.normal(size=(k, 16))
    feats = np.stack([centres[i % k] + 1.2 * rng.normal(size=16) for i in range(n)])
    feats = (feats / np.linalg.norm(feats, axis=1, keepdims=True)).astype(np.float32)
    rec = fit_recommender(
        posts[:train], feats, rows[:train], BuildConfig(als=ALSParams(factors=4, iterations=3))
    )
    return rec, feats[train:]


@pytest.fixture(scope="module")
def category_model():
    """Three categories whose posts often also carry another category's search tag."""
    return _model_of_categories(("sea", "city", "dogs"), 90, 70, 5, 1, "dog")


def test_the_model_knows_its_categories(category_model, tmp_path):
    rec, _ = category_model
    assert rec.manifest["categories"] == ["city", "dogs", "sea"]
    named = {rec.tags[i] for i in np.flatnonzero(rec.hedge.tag_category >= 0)}
    assert named == {"city", "dogs", "dog", "sea"}
    assert [rec.tags[t] for t in rec.hedge.category_tag] == ["city", "dogs", "sea"]
    again = HashtagRecommender.load(rec.save(tmp_path / "m"))
    assert again.hedge.tag_category.tolist() == rec.hedge.tag_category.tolist()
    assert again.hedge.calibration.to_dict() == rec.hedge.calibration.to_dict()


def test_the_hedge_knows_what_each_post_carries_and_which_have_tag_lists():
    tags = ["sea", "dog", "dogs", "boat", "city"]
    image_tags = sp.csr_matrix(
        np.array([[1, 0, 0, 1, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 1], [0, 0, 0, 1, 0]], np.float32)
    )
    hedge = CategoryHedge(tags, ["sea", "dogs", "city"], ["dogs"], image_tags)
    assert hedge.categories == ["city", "dogs", "sea"]
    assert hedge.single_tag.tolist() == [False, True, False]
    assert hedge.carried([0, 1, 2, 3]).tolist() == [
        [False, False, True],  # sea
        [False, True, False],  # dog: a form of dogs
        [True, True, False],
        [False, False, False],
    ]
    assert hedge.has_list.tolist() == [True, False, True, False]
    method = METHODS["profiles_prior"]  # it hedges, but the hedge has no calibration
    assert not hedge.active(method) and hedge.wide_neighbours(method) == 0
    one = np.ones(1)
    query = Scored(np.array([0]), np.array([0]), one, one, np.zeros(5), np.zeros(5), np.zeros(5))
    nothing = hedge.removed(method, query)
    assert nothing.removed is None and nothing.probability is None
    with pytest.raises(ValueError, match="hashtags"):
        CategoryHedge(tags[:4], ["sea"], [], image_tags)


def test_a_hedged_ranking_is_the_plain_one_without_the_removed_categories(category_model):
    rec, queries = category_model
    assert rec.hedge.calibration is not None and rec.hedge.calibration.fitted.any()
    removed_any = False
    for q in queries:
        plain = rec.recommend_features(q, 8, 30, "blend_profiles")
        method = get_method("blend_profiles:calibrated_hedge=0.9")
        r = rec.rank(q, 8, 30, method)
        limit = np.where(rec.hedge.single_tag, method.calibrated_single, 0.9)
        gone = set(np.flatnonzero(r.probability < limit).tolist())  # NaN: not calibrated, kept
        hedged = rec.recommend_features(q, 8, 30, method)
        removed_any |= check_hedged_is_plain_without(plain, hedged, rec, gone) > 0
    assert removed_any  # the case is built so that hedging has something to remove


def ref_moved_below(ranking, demoted, top):
    """The slow reference: fill the top places one by one with the best tag not demoted
    (a demoted one only when none is left), then the rest in their order."""
    rest = list(ranking)
    first = []
    while len(first) < top and rest:
        pick = next((t for t in rest if not demoted[t]), rest[0])
        first.append(pick)
        rest.remove(pick)
    return first + rest


@pytest.mark.parametrize("seed", range(40))
def test_moved_below_matches_the_slow_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 12))
    ranking = rng.permutation(15)[:n]
    demoted = rng.random(15) < rng.random()
    top = int(rng.integers(0, 7))
    out = moved_below(ranking, demoted, top)
    assert out.tolist() == ref_moved_below(ranking.tolist(), demoted, top)
    assert sorted(out.tolist()) == sorted(ranking.tolist())  # moved, never removed
    assert moved_below(ranking, None, top).tolist() == ranking.tolist()


def test_moved_below_on_a_known_case():
    demoted = np.zeros(10, bool)
    demoted[[1, 4]] = True
    # 1 and 4 leave the top 3 and follow it at once, in their order; 7 and 8 move up
    assert moved_below(np.array([1, 2, 4, 7, 8, 9]), demoted, 3).tolist() == [2, 7, 8, 1, 4, 9]
    assert moved_below(np.array([2, 7, 8, 1]), demoted, 3).tolist() == [2, 7, 8, 1]
    assert moved_below(np.array([1, 4, 2]), demoted, 3).tolist() == [2, 1, 4]  # too few others


def test_demoted_tags_move_below_the_top_5_with_their_scores_and_say_why(category_model):
    rec, queries = category_model
    hedged = get_method("blend_profiles:calibrated_hedge=0.2")
    method = get_method("blend_profiles:calibrated_hedge=0.2,calibrated_demote=0.9")
    assert method.calibrated_demote_single == 0.0  # single-tag categories stay unless asked
    moved_any = False
    for q in queries:
        plain = rec.recommend_features(q, 8, 12, hedged)
        r = rec.rank(q, 8, 12, method)
        out = rec.recommend_features(q, 8, 12, method)
        p = r.probability
        limit = np.where(rec.hedge.single_tag, 0.0, 0.9)
        down = {c for c in range(len(p)) if np.isfinite(p[c]) and p[c] < limit[c]}
        cat_of = rec.hedge.tag_category
        ids = {t: i for i, t in enumerate(rec.tags)}
        # the same tags as without demotion (a tag from below may enter the top k when one
        # moves down and a tag at the end leaves), each with its own exact score
        longer = rec.recommend_features(q, 8, 12 + DEMOTE_TOP, hedged)
        scores = {t.tag: t.score for t in longer.hashtags}
        for t in out.hashtags:
            assert t.score == pytest.approx(scores[t.tag], abs=1e-6)
            assert sum(t.contributions) + t.prior + t.content == pytest.approx(t.score, abs=1e-5)
            assert t.moved_down == (cat_of[ids[t.tag]] in down)
        expected = moved_below(
            np.array([ids[t] for t in longer.tags]), np.isin(cat_of, list(down)) & (cat_of >= 0)
        )[:12]
        assert out.tags == [rec.tags[t] for t in expected]
        moved_any |= any(cat_of[ids[t]] in down for t in plain.tags[:DEMOTE_TOP])
        # every category search tag in the list is explained, with its probability
        named = [s for s in out.search_tags if s.kept]
        assert [s.tag for s in named] == [t for t in out.tags if cat_of[ids[t]] >= 0]
        for s in named:
            assert s.probability == pytest.approx(p[cat_of[ids[s.tag]]])
            assert s.moved_down == (cat_of[ids[s.tag]] in down)
        assert [s.tag for s in out.search_tags if not s.kept] == out.left_out
        # scoring only candidate hashtags (large models) ranks the same
        for k in (3, 5, 12):
            every = rec.rank(q, 8, k, method, candidates=False).best
            assert rec.rank(q, 8, k, method, candidates=True).best.tolist() == every.tolist()
    assert moved_any  # the case is built so that some top 5 holds an uncertain category


# -- retired rules: margin, head and evidence hedging -----------------------------------


def test_an_old_saved_method_with_the_retired_rules_off_still_loads():
    saved = METHODS["profiles_prior"].to_dict()
    old = {
        **saved,
        "category_margin": None,
        "head_hedge": None,
        "head_hedge_unnamed": False,
        "evidence_hedge": None,
        "evidence_agreement": 0.07,
    }  # what every model saved before the rules were retired holds
    assert Method.from_dict(old) == METHODS["profiles_prior"]
    manifest = {"config": {"method": old}}
    assert _saved_method(manifest) == METHODS["profiles_prior"]


@pytest.mark.parametrize(
    "field,value", [("category_margin", 0.3), ("head_hedge", 0.5), ("evidence_hedge", 0.3)]
)
def test_a_saved_method_that_hedges_by_a_retired_rule_is_refused(field, value):
    saved = {**METHODS["profiles_prior"].to_dict(), field: value}
    with pytest.raises(ConfigError, match=f"{field}=.*rebuild the model"):
        Method.from_dict(saved)
    with pytest.raises(ModelError, match="rebuild") as info:
        _saved_method({"config": {"method": saved}})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("option", sorted({*RETIRED_RULES, *filter(None, RETIRED_RULES.values())}))
def test_a_retired_rule_is_no_method_option(option):
    with pytest.raises(ConfigError, match=f"{option} .*no longer has; use calibrated_hedge"):
        get_method(f"profiles_prior:{option}=0.3")


def test_the_cli_takes_method_variants_and_refuses_bad_ones(capsys):
    from recommender.cli import build_parser

    variant = "profiles_prior:calibrated_hedge=0.3"
    for command in (["recommend", "x.jpg"], ["evaluate"], ["build", "data"]):
        assert build_parser().parse_args(command + ["--method", variant]).method == variant
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["recommend", "x.jpg", "--method", "blend:colour=1"])
    assert exit_.value.code == 2
    assert "bad method option 'colour=1'" in capsys.readouterr().err


def test_single_tag_categories_are_those_whose_photos_carry_only_their_search_tag():
    photos = [("cars", 1)] * 19 + [("cars", 3)] + [("food", 4)] * 3 + [("food", 1)] * 7
    photos += [(None, 5), ("nature", 1)]
    # cars: 1 of 20 with a tag list (under a tenth); food: 3 of 10; nature: none
    assert single_tag_categories(photos) == ["cars", "nature"]
    assert single_tag_categories([]) == []
