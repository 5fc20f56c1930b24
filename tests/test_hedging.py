"""Category search tags and hedging: singular forms, the hedge mask against a slow
reference, method variants by name, and hedged rankings that remove tags without changing
any score."""

import numpy as np
import pytest
from conftest import check_hedged_is_plain_without
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender.data.datasets import Post
from recommender.errors import BackboneError, ConfigError
from recommender.fit.als import ALSParams
from recommender.query.hedging import (
    category_forms,
    class_categories,
    evidence_hedge_mask,
    form_categories,
    head_hedge_mask,
    hedge_mask,
    read_class_categories,
    single_tag_categories,
    tag_categories,
)
from recommender.query.recommender import BuildConfig, HashtagRecommender
from recommender.query.scoring import METHODS, get_method


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


def ref_hedge(scores, tag_category, margin):
    """Slow reference: a category survives if its best tag is within margin of the best."""
    best = {}
    for s, c in zip(scores, tag_category):
        if c >= 0:
            best[c] = max(best.get(c, -np.inf), s)
    top = max(best.values())
    return [bool(c >= 0 and best[c] < top - margin) for c in tag_category]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-2, 2), st.integers(-1, 3)), min_size=1, max_size=12),
    st.floats(0, 1),
)
def test_hedge_mask_matches_the_slow_reference(cells, margin):
    scores = np.array([s for s, _ in cells])
    cats = np.array([c for _, c in cells])
    mask = hedge_mask(scores, cats, margin)
    if not (cats >= 0).any():
        assert mask is None
    else:
        assert mask.tolist() == ref_hedge(scores, cats, margin)


def test_hedge_mask_hand_case_and_no_hedging():
    scores = np.array([0.9, 0.5, 0.85, 0.3, 0.7])
    cats = np.array([0, -1, 1, 1, 2])  # category 1's best (0.85) is within 0.1 of 0.9
    assert hedge_mask(scores, cats, 0.1).tolist() == [False, False, False, False, True]
    assert hedge_mask(scores, cats, 0.0).tolist() == [False, False, True, True, True]
    assert hedge_mask(scores, cats, None) is None


def test_method_variants_by_name():
    m = get_method("profiles_prior:category_margin=0.25,prior_weight=0.5")
    assert m.name == "profiles_prior:category_margin=0.25,prior_weight=0.5"
    assert (m.category_margin, m.prior_weight, m.profiles) == (0.25, 0.5, True)
    assert get_method("knn_vote:profiles=true").profiles is True
    assert get_method("profiles_prior:category_margin=none").category_margin is None
    assert get_method("blend") is METHODS["blend"]
    for bad, says in [
        ("nope", "unknown method"),
        ("blend:colour=3", "bad method option"),
        ("blend:category_margin", "bad method option"),
        ("blend:power=high", "not a number"),
        ("blend:profiles=maybe", "not true or false"),
        ("blend:category_margin=-1", "category_margin must be >= 0"),
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
    rec = HashtagRecommender.fit(
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
    named = {rec.tags[i] for i in np.flatnonzero(rec.scorer.tag_category >= 0)}
    assert named == {"city", "dogs", "dog", "sea"}
    again = HashtagRecommender.load(rec.save(tmp_path / "m"))
    assert again.scorer.tag_category.tolist() == rec.scorer.tag_category.tolist()


@pytest.mark.parametrize("margin", [0.0, 0.05, 0.2])
def test_hedging_removes_category_tags_and_changes_no_score(category_model, margin):
    rec, queries = category_model
    hedged_name = f"blend_profiles:category_margin={margin}"
    removed_any = False
    for q in queries:
        plain = rec.recommend_features(q, n_neighbors=8, k=30, method="blend_profiles")
        hedged = rec.recommend_features(q, n_neighbors=8, k=30, method=hedged_name)
        scores = {t.tag: t.score for t in plain.hashtags}
        for t in hedged.hashtags:  # same score, same exact explanation
            assert t.score == pytest.approx(scores[t.tag], abs=1e-6)
            assert sum(t.contributions) + t.prior == pytest.approx(t.score, abs=1e-5)
        # the hedged list is the plain one minus the removed category tags, in order
        cat = {rec.tags[i]: int(rec.scorer.tag_category[i]) for i in range(len(rec.tags))}
        best = {}
        for t in plain.hashtags:
            if cat[t.tag] >= 0:
                best.setdefault(cat[t.tag], t.score)
        top = max(best.values())
        kept = [t.tag for t in plain.hashtags if cat[t.tag] < 0 or best[cat[t.tag]] >= top - margin]
        assert hedged.tags[: len(kept)] == kept[: len(hedged.tags)]
        removed_any |= len(kept) < len(plain.tags)
    assert removed_any  # the case is built so that hedging has something to remove


def test_a_hedged_method_is_saved_and_restored_with_its_margin():
    from recommender.query.scoring import Method

    for name in ("profiles_prior:category_margin=0.3", "profiles_prior"):
        method = get_method(name)
        assert Method.from_dict(method.to_dict()) == method
    with pytest.raises(ConfigError, match="category_margin"):
        Method.from_dict({**METHODS["blend"].to_dict(), "category_margin": "wide"})


def test_the_cli_takes_method_variants_and_refuses_bad_ones(capsys):
    from recommender.cli import build_parser

    variant = "profiles_prior:category_margin=0.3"
    for command in (["recommend", "x.jpg"], ["evaluate"], ["build", "data"]):
        assert build_parser().parse_args(command + ["--method", variant]).method == variant
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["recommend", "x.jpg", "--method", "blend:colour=1"])
    assert exit_.value.code == 2
    assert "bad method option 'colour=1'" in capsys.readouterr().err


# -- head hedging: what the ImageNet head sees ------------------------------------------


def _probs(**by_class):
    """(1000,) class probabilities: the given ``c<id>=p`` and the rest spread thinly."""
    p = np.full(1000, 1e-6, dtype=np.float32)
    for key, value in by_class.items():
        p[int(key[1:])] = value
    return p


def test_the_packaged_class_categories_name_what_the_head_plainly_sees():
    cats = ["animals", "babies", "cars", "food", "wedding"]
    cc = class_categories(cats)
    assert cc.shape == (1000,)
    names = {c: cats[cc[c]] if cc[c] >= 0 else None for c in range(1000)}
    # tabby, golden retriever; cheeseburger, pizza, espresso; sports car; crib, groom:
    # babies and wedding are not named (see the table's notes)
    assert [names[c] for c in (281, 207, 933, 963, 967, 817, 520, 982)] == [
        "animals",
        "animals",
        "food",
        "food",
        "food",
        "cars",
        None,
        None,
    ]
    # categories the model lacks are left out; the index is into the sorted categories
    assert set(class_categories(["food", "travel"]).tolist()) == {-1, 0}


def test_head_hedge_mask_hand_case():
    table = {"a": (0, 1), "b": (2,), "c": (3,)}  # d: no class names it
    cc = class_categories(["a", "b", "c", "d"], table)
    assert cc[:5].tolist() == [0, 0, 1, 2, -1]
    tags = np.array([0, -1, 1, 2, 3, 0])
    # top 5 classes: 0 (0.5), 1 (0.3), 3 (0.1), then two classes no category shows:
    # a's support 0.8 >= 0.7, b has none (removed), c 0.1 (kept), d cannot be named (kept)
    p = _probs(c0=0.5, c1=0.3, c3=0.1, c10=0.05, c11=0.04)
    assert head_hedge_mask(p, cc, tags, 0.7).tolist() == [False, False, True, False, False, False]
    # unnamed: d, which no class shows, goes too (c is still supported)
    assert head_hedge_mask(p, cc, tags, 0.7, unnamed=True).tolist() == [
        False,
        False,
        True,
        False,
        True,
        False,
    ]
    assert head_hedge_mask(p, cc, tags, 0.9) is None  # no category is that sure
    assert head_hedge_mask(p, cc, tags, 0.9, unnamed=True) is None
    assert head_hedge_mask(p, cc, tags, None) is None
    assert head_hedge_mask(None, cc, tags, 0.7) is None
    # class 2 is the 6th most probable: outside the top 5, so b still has no support
    p6 = _probs(c0=0.5, c1=0.3, c3=0.1, c10=0.05, c11=0.04, c2=0.01)
    assert head_hedge_mask(p6, cc, tags, 0.7).tolist()[2] is True
    p5 = _probs(c0=0.5, c1=0.3, c3=0.1, c10=0.05, c2=0.04)
    assert head_hedge_mask(p5, cc, tags, 0.7) is None  # b and c are supported now


def test_the_class_category_table_refuses_malformed_lines(tmp_path):
    good = tmp_path / "ok.csv"
    good.write_text("# note\ncategory,classes\nfood,923-925 963\ncars,817\n")
    assert read_class_categories(good) == {"food": (923, 924, 925, 963), "cars": (817,)}
    for body, says in [
        ("cat,classes\n", "header"),
        ("category,classes\nfood,pizza\n", "indices or a-b ranges"),
        ("category,classes\nfood,1000\n", "0-999"),
        ("category,classes\nfood,1\nfood,2\n", "line 3"),
        ("category,classes\nfood,\n", "line 2"),
    ]:
        bad = tmp_path / "bad.csv"
        bad.write_text(body)
        with pytest.raises(BackboneError, match=says):
            read_class_categories(bad)


@pytest.fixture(scope="module")
def head_model():
    """Categories the head names (animals, cars, food) and one it does not (wedding); posts
    often carry another category's search tag."""
    return _model_of_categories(("animals", "cars", "food", "wedding"), 120, 96, 7, 2, "car")


def test_head_hedging_removes_unseen_categories_and_changes_no_score(head_model):
    rec, queries = head_model
    cat_of = {rec.tags[i]: int(rec.scorer.tag_category[i]) for i in range(len(rec.tags))}
    names = rec.manifest["categories"]
    assert names == ["animals", "cars", "food", "wedding"]
    # the head: pizza 0.8 and a tabby 0.05 (animals supported, cars not, wedding unnamed)
    pizza = _probs(c963=0.8, c281=0.05, c964=0.05, c923=0.04, c999=0.03)
    removed_any = wedding_seen = False
    for q in queries:
        plain = rec.recommend_features(q, 8, 30, "blend_profiles", classes=pizza)
        hedged = rec.recommend_features(q, 8, 30, "blend_profiles:head_hedge=0.6", classes=pizza)
        scores = {t.tag: t.score for t in plain.hashtags}
        for t in hedged.hashtags:  # same score, same exact explanation
            assert t.score == pytest.approx(scores[t.tag], abs=1e-6)
        kept = [t for t in plain.tags if cat_of[t] != names.index("cars")]
        assert hedged.tags == kept[: len(hedged.tags)]
        removed_any |= len(kept) < len(plain.tags)
        # not sure enough, or no classes given: the plain ranking
        unsure = rec.recommend_features(q, 8, 30, "blend_profiles:head_hedge=0.9", classes=pizza)
        assert unsure.tags == plain.tags
        wide = rec.recommend_features(
            q, 8, 30, "blend_profiles:head_hedge=0.6,head_hedge_unnamed=true", classes=pizza
        )
        gone = {names.index("cars"), names.index("wedding")}
        assert wide.tags == [t for t in plain.tags if cat_of[t] not in gone][: len(wide.tags)]
        wedding_seen |= "wedding" in plain.tags and "wedding" in hedged.tags
        blind = rec.recommend_features(q, 8, 30, "blend_profiles:head_hedge=0.6")
        assert blind.tags == rec.recommend_features(q, 8, 30, "blend_profiles").tags
    assert removed_any  # every post carries #cars or #car: there is something to remove
    assert wedding_seen  # kept by the plain rule, removed by the unnamed one
    again = rec.scorer.class_category
    assert again[963] == names.index("food") and again[982] == -1


def test_a_head_hedged_method_is_saved_and_restored():
    from recommender.query.scoring import Method

    both = "profiles_prior:head_hedge=0.5,category_margin=1,head_hedge_unnamed=true"
    for name in ("profiles_prior:head_hedge=0.5", both):
        method = get_method(name)
        assert method.head_hedge == 0.5
        assert Method.from_dict(method.to_dict()) == method
    saved = METHODS["profiles_prior"].to_dict()
    del saved["head_hedge"], saved["head_hedge_unnamed"]  # saved before they existed: off
    assert Method.from_dict(saved).head_hedge is None
    assert Method.from_dict(saved).head_hedge_unnamed is False
    with pytest.raises(ConfigError, match="head_hedge"):
        Method.from_dict({**saved, "head_hedge": "sure"})
    for bad in ("0", "1.5", "-0.2"):
        with pytest.raises(ConfigError, match="head_hedge must lie in"):
            get_method(f"blend:head_hedge={bad}")


# -- evidence hedging: what the model's prior and the neighbours say --------------------


def test_an_evidence_hedged_method_is_saved_restored_and_checked():
    from recommender.query.scoring import Method

    method = get_method("profiles_prior:evidence_hedge=0.5,evidence_agreement=0.2")
    assert (method.evidence_hedge, method.evidence_agreement) == (0.5, 0.2)
    assert Method.from_dict(method.to_dict()) == method
    saved = METHODS["profiles_prior"].to_dict()
    del saved["evidence_hedge"], saved["evidence_agreement"]  # a model saved before them
    assert Method.from_dict(saved).evidence_hedge is None  # stays unhedged
    assert get_method("profiles_prior:evidence_hedge=none").evidence_hedge is None
    for bad, says in (
        ("evidence_hedge=-0.1", "evidence_hedge must be"),
        ("evidence_agreement=1.5", "evidence_agreement must lie"),
        ("evidence_agreement=-1", "evidence_agreement must lie"),
    ):
        with pytest.raises(ConfigError, match=says):
            get_method(f"profiles_prior:{bad}")


def test_single_tag_categories_are_those_whose_photos_carry_only_their_search_tag():
    photos = [("cars", 1)] * 19 + [("cars", 3)] + [("food", 4)] * 3 + [("food", 1)] * 7
    photos += [(None, 5), ("nature", 1)]
    # cars: 1 of 20 with a tag list (under a tenth); food: 3 of 10; nature: none
    assert single_tag_categories(photos) == ["cars", "nature"]
    assert single_tag_categories([]) == []


def ref_evidence(prior, carried, tag_category, single, threshold, agreement):
    """Slow reference: a category tag goes when its category's prior is under the threshold
    and no more than the allowed share of neighbours carry it (none for single-tag ones)."""
    out = []
    for c in tag_category:
        if c < 0:
            out.append(False)
            continue
        limit = 0.0 if single[c] else agreement
        out.append(bool(prior[c] < threshold and carried[c] <= limit + 1e-9))
    return out


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(-1, 3), min_size=1, max_size=12),
    st.lists(
        st.tuples(st.floats(-1, 1), st.sampled_from([0, 0.05, 0.1, 0.5]), st.booleans()),
        min_size=4,
        max_size=4,
    ),
    st.floats(0, 1),
    st.sampled_from([0.0, 0.05, 0.1]),
)
def test_evidence_hedge_mask_matches_the_slow_reference(cats, per_cat, threshold, agreement):
    tags = np.array(cats)
    prior = np.array([p for p, _, _ in per_cat])
    carried = np.array([c for _, c, _ in per_cat])
    single = np.array([s for _, _, s in per_cat])
    mask = evidence_hedge_mask(prior, carried, tags, single, threshold, agreement)
    want = ref_evidence(prior, carried, tags, single, threshold, agreement)
    assert (mask.tolist() if mask is not None else [False] * len(tags)) == want
    assert evidence_hedge_mask(prior, carried, tags, single, None, agreement) is None


def test_evidence_hedging_on_the_real_model_removes_unlikely_categories_only(
    demo_model, dataset_path
):
    rec = demo_model
    assert rec.manifest["single_tag_categories"] == [
        "architecture",
        "babies",
        "cars",
        "fitness",
        "nature",
        "wedding",
    ]
    names = rec.manifest["categories"]
    single = set(rec.manifest["single_tag_categories"])
    cat_of = {t: int(c) for t, c in zip(rec.tags, rec.scorer.tag_category)}
    plain_m = get_method("profiles_prior:calibrated_hedge=none,evidence_hedge=none")
    hedged_m = get_method("profiles_prior:calibrated_hedge=none,evidence_hedge=0.3")
    assert METHODS["profiles_prior"].evidence_hedge is None  # an option since the sixth session
    removed_total = left_total = 0
    for photo in sorted((dataset_path / "test").glob("*.jpg")):
        features, classes = rec.embed_with_classes(photo)
        plain = rec.recommend_features(features, 15, 60, plain_m, classes=classes)
        hedged = rec.recommend_features(features, 15, 30, hedged_m, classes=classes)
        # the evidence, by hand: the search tag's prior and the 15 neighbours' own hashtags
        prior = {t.tag: t.prior for t in plain.hashtags}
        idx, _ = rec.index.search(features, 15)
        gone = set()
        whole_prior = rec.scorer.prior(features, plain_m) / plain_m.prior_weight
        for c, name in enumerate(names):
            forms = category_forms(name)
            share = np.mean([bool(forms & set(rec.image_hashtags[i])) for i in idx])
            value = whole_prior[rec.tags.index(name)]
            limit = 0.0 if name in single else hedged_m.evidence_agreement
            if value < 0.3 and share <= limit + 1e-9:
                gone.add(c)
            if name in prior:
                assert prior[name] == pytest.approx(value * plain_m.prior_weight, abs=1e-5)
        removed_total += check_hedged_is_plain_without(plain, hedged, rec, gone)
        # each demo photo keeps its own category (the photos are not in the training data)
        assert photo.stem not in {names[c] for c in gone}
        # what the page and the CLI show as left out: the plain top 10's tags that went
        top10 = rec.recommend_features(features, 15, 10, hedged_m, classes=classes)
        assert top10.left_out == [t for t in plain.tags[:10] if cat_of[t] in gone]
        assert rec.recommend_features(features, 15, 10, plain_m, classes=classes).left_out == []
        left_total += len(top10.left_out)
    assert removed_total > 0  # the ten demo photos do lose some other categories' tags
    assert left_total > 0
