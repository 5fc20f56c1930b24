"""Calibrated hedging: the prior's exact leave-one-out values, the per-category logistic
regressions, the mask against a slow reference, the calibration a build keeps (and refuses
damaged), and hedged rankings on the real demo model."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import check_hedged_is_plain_without, rewrite_manifest
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender.config import METHODS, Method, get_method
from recommender.errors import ConfigError, ModelError, RecommenderError
from recommender.fit.als import fit_image_prior
from recommender.fit.calibration import (
    CALIBRATION_IMAGES,
    DUPLICATE_SIMILARITY,
    DUPLICATE_SLACK,
    MIN_EXAMPLES,
    calibration_sample,
    fit_calibration,
)
from recommender.query.hedging import (
    EVIDENCE_FEATURES,
    NEIGHBOUR_FEATURES,
    WIDE_NEIGHBOURS,
    HedgeCalibration,
    calibrated_hedge_mask,
    category_forms,
    evidence_features,
)
from recommender.query.recommender import HashtagRecommender


def test_the_prior_leverage_gives_the_exact_leave_one_out_prediction():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = sp.csr_matrix((rng.random((40, 5)) < 0.4).astype(np.float32))
    rows = rng.permutation(40)  # image i's features are x[rows[i]]
    sample = np.array([0, 7, 19, 39])
    weights, tags, leverage = fit_image_prior(
        x, y, min_posts=1, l2=2.0, rows=rows, chunk=9, leverage_of=sample
    )
    for j, i in enumerate(sample):
        keep = np.delete(np.arange(40), i)
        w_without, _ = fit_image_prior(x, y[keep], min_posts=1, l2=2.0, rows=rows[keep])
        want = x[rows[i]] @ w_without  # the prior refitted without image i
        p = x[rows[i]] @ weights
        t = y[i].toarray().ravel()[tags]
        got = (p - leverage[j] * t) / (1.0 - leverage[j])
        assert got == pytest.approx(want, abs=2e-4)
    assert ((leverage > 0) & (leverage < 1)).all()
    # without leverage_of the prior is what it always was
    plain = fit_image_prior(x, y, min_posts=1, l2=2.0, rows=rows, chunk=9)
    assert len(plain) == 2 and np.array_equal(plain[0], weights)


def test_the_calibration_sample_is_every_eligible_image_or_a_reproducible_draw():
    eligible = np.array([True, False, True, True, False])
    assert calibration_sample(eligible, size=10).tolist() == [0, 2, 3]
    many = np.arange(1000) % 3 > 0
    a, b = calibration_sample(many, size=50, seed=1), calibration_sample(many, size=50, seed=1)
    assert np.array_equal(a, b) and len(np.unique(a)) == 50 and (np.diff(a) > 0).all()
    assert many[a].all()


def test_evidence_features_rank_the_categories_by_score_and_name_every_column():
    f = evidence_features([0.1, 0.5, 0.0], [0.2, 0.0, 1.0], [0.3, 0.9, -0.1])
    assert f.shape == (3, len(EVIDENCE_FEATURES))
    assert f[:, 0].tolist() == [0.1, 0.5, 0.0] and f[:, 1].tolist() == [0.2, 0.0, 1.0]
    assert f[:, 3].tolist() == [0.5, 0.0, 1.0]  # 0: the best-scoring category
    assert (f[:, 4:] == 0).all()  # nothing said of the neighbours: zeros
    around = {name: np.array([k, k + 0.5, k + 0.25]) for k, name in enumerate(NEIGHBOUR_FEATURES)}
    around["lists"] = 0.75  # the same for every category
    g = evidence_features([0.1, 0.5, 0.0], [0.2, 0.0, 1.0], [0.3, 0.9, -0.1], around)
    assert np.array_equal(g[:, :4], f[:, :4])
    for name in NEIGHBOUR_FEATURES:
        want = np.broadcast_to(around[name], (3,))
        assert g[:, EVIDENCE_FEATURES.index(name)].tolist() == want.tolist(), name


def test_the_evidence_counts_what_the_neighbours_carry(demo_model):
    rec = demo_model
    names = rec.manifest["categories"]
    method = rec.method
    q = np.asarray(rec.arrays.features[3], np.float32)
    wide, wide_sims = rec.index.search(q, WIDE_NEIGHBOURS)
    s = rec.score_nearest(q, wide, wide_sims, 15, method)
    idx, sims, w = s.neighbours, s.similarities, s.weights
    assert np.array_equal(idx, wide[:15])
    got = rec.hedge.evidence(method, s)
    column = {name: got[:, EVIDENCE_FEATURES.index(name)] for name in EVIDENCE_FEATURES}
    tags = [set(rec.image_hashtags[i]) for i in wide]
    lists = [len(t) >= 2 for t in tags[:15]]
    for c, name in enumerate(names):  # by hand, from the neighbours' own hashtags
        has = [bool(category_forms(name) & t) for t in tags]
        t = rec.tags.index(name)
        assert column["prior"][c] == pytest.approx(s.prior[t] / method.prior_weight)
        assert column["score"][c] == pytest.approx(s.scores[t] - s.content[t])
        assert column["share"][c] == pytest.approx(np.mean(has[:15]))
        assert column["weighted_share"][c] == pytest.approx(np.dot(w, has[:15]) / w.sum())
        assert column["wide_share"][c] == pytest.approx(np.mean(has))
        with_list = [h for h, lst in zip(has[:15], lists, strict=True) if lst]
        assert column["list_share"][c] == pytest.approx(np.mean(with_list) if with_list else 0.0)
    assert np.all(column["lists"] == pytest.approx(np.mean(lists)))
    assert np.all(column["top_similarity"] == pytest.approx(sims[0]))
    assert np.all(column["mean_similarity"] == pytest.approx(sims.mean()))
    # only the neighbours found: the wide share is the neighbours' share
    narrow = rec.hedge.evidence(method, dataclasses.replace(s, nearest=idx))
    assert np.array_equal(narrow[:, EVIDENCE_FEATURES.index("wide_share")], column["share"])
    assert np.array_equal(np.delete(narrow, 5, axis=1), np.delete(got, 5, axis=1))
    # a replaced prior moves the prior and the score alike
    moved = rec.hedge.evidence(method, s, prior_of=lambda v: v + 0.5)
    assert moved[:, 0] == pytest.approx(column["prior"] + 0.5)
    assert moved[:, 2] == pytest.approx(column["score"] + 0.5 * method.prior_weight)


def _synthetic(n, rng):
    """Three categories: 0 carried when the share is high, 1 never predictable (noise),
    2 carried by too few images to calibrate."""
    share = rng.random((n, 3))
    carried = np.zeros((n, 3), dtype=bool)
    carried[:, 0] = rng.random(n) < 1 / (1 + np.exp(-(8 * share[:, 0] - 4)))
    carried[:, 1] = rng.random(n) < 0.3
    carried[: MIN_EXAMPLES - 1, 2] = True
    feats = np.stack([evidence_features(rng.random(3), share[i], rng.random(3)) for i in range(n)])
    return feats, carried


def test_fit_calibration_learns_what_tells_a_category_and_skips_thin_ones():
    rng = np.random.default_rng(0)
    feats, carried = _synthetic(2000, rng)
    cal = fit_calibration(feats, carried)
    assert cal.fitted.tolist() == [True, True, False] and cal.images == 2000
    low, high = feats[0].copy(), feats[0].copy()
    low[:, 1], high[:, 1] = 0.05, 0.95
    p_low, p_high = cal.probability(low), cal.probability(high)
    assert p_low[0] < 0.1 < 0.9 < p_high[0]  # the true curve: 0.03 and 0.97
    assert abs(p_low[1] - p_high[1]) < 0.1 and 0.2 < p_low[1] < 0.4  # noise: its base rate
    assert np.isnan(p_low[2]) and np.isnan(p_high[2])  # not calibrated: never removed


def test_each_category_learns_only_from_the_images_it_is_fitted_on():
    rng = np.random.default_rng(4)
    feats, carried = _synthetic(3000, rng)
    # category 0 is carried on a high share only in the first half; the second half
    # carries it at random: fitted on the first half, the curve stays steep
    carried[1500:, 0] = rng.random(1500) < 0.5
    fit_on = np.ones(carried.shape, bool)
    fit_on[1500:, 0] = False
    steep = fit_calibration(feats, carried, fit_on=fit_on)
    flat = fit_calibration(feats, carried)
    low, high = feats[0].copy(), feats[0].copy()
    low[:, 1], high[:, 1] = 0.05, 0.95
    assert steep.probability(low)[0] < 0.1 < 0.9 < steep.probability(high)[0]
    assert flat.probability(high)[0] - flat.probability(low)[0] < 0.75
    # the other categories learned from every image, as without fit_on
    assert steep.probability(high)[1] == pytest.approx(flat.probability(high)[1])
    fit_on[:, 1] = False  # nothing to learn from: not fitted, never removed
    assert not fit_calibration(feats, carried, fit_on=fit_on).fitted[1]


def test_a_calibration_is_plain_data_and_damage_is_refused():
    rng = np.random.default_rng(1)
    cal = fit_calibration(*_synthetic(500, rng))
    saved = json.loads(json.dumps(cal.to_dict()))
    again = HedgeCalibration.from_dict(saved, 3)
    q = evidence_features([0.2, 0.1, 0.0], [0.4, 0.1, 0.0], [0.5, 0.2, 0.1])
    assert again.probability(q)[:2] == pytest.approx(cal.probability(q)[:2], abs=1e-6)
    bad_cases = [
        ("features", ["prior", "share"]),
        ("features", [*EVIDENCE_FEATURES[:-1], "colour"]),
        ("features", [*EVIDENCE_FEATURES[:-1], "prior"]),
        ("mean", [[0.0] * 4] * 2),
        ("scale", [[0.0] * len(EVIDENCE_FEATURES)] * 3),
        ("weights", "many"),
        ("fitted", [1, 0, 1]),
    ]
    for key, value in bad_cases:
        with pytest.raises(ModelError, match="calibration is damaged.*rebuild") as info:
            HedgeCalibration.from_dict({**saved, key: value}, 3)
        assert "\n" not in str(info.value)
    with pytest.raises(ModelError, match="shaped for 4 categories"):
        HedgeCalibration.from_dict(saved, 4)
    with pytest.raises(ModelError):
        HedgeCalibration.from_dict("weights", 3)
    # A calibration over the fifth session's four features still reads and answers from
    # those columns alone.
    feats, carried = _synthetic(500, np.random.default_rng(1))
    old = fit_calibration(feats[:, :, :4], carried, names=EVIDENCE_FEATURES[:4])
    loaded = HedgeCalibration.from_dict(json.loads(json.dumps(old.to_dict())), 3)
    assert loaded.features == EVIDENCE_FEATURES[:4]
    q_full = q.copy()
    q_full[:, 4:] = 9.0  # what it was not fitted on does not count
    assert loaded.probability(q_full)[:2] == pytest.approx(loaded.probability(q)[:2])
    with pytest.raises(ValueError, match="names"):
        fit_calibration(feats[:, :, :4], carried)


def ref_calibrated(prob, tag_category, single, threshold, single_threshold):
    out = []
    for c in tag_category:
        limit = single_threshold if c >= 0 and single[c] else threshold
        out.append(bool(c >= 0 and np.isfinite(prob[c]) and prob[c] < limit))
    return out


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(-1, 3), min_size=1, max_size=12),
    st.lists(
        st.tuples(st.one_of(st.floats(0, 1), st.just(float("nan"))), st.booleans()),
        min_size=4,
        max_size=4,
    ),
    st.floats(0, 1),
    st.floats(0, 1),
)
def test_calibrated_hedge_mask_matches_the_slow_reference(cats, per_cat, threshold, single_t):
    tags = np.array(cats)
    prob = np.array([p for p, _ in per_cat])
    single = np.array([s for _, s in per_cat])
    mask = calibrated_hedge_mask(prob, tags, single, threshold, single_t)
    want = ref_calibrated(prob, tags, single, threshold, single_t)
    assert (mask.tolist() if mask is not None else [False] * len(tags)) == want
    assert calibrated_hedge_mask(prob, tags, single, None, single_t) is None


def test_a_calibrated_method_is_saved_restored_and_checked():
    method = get_method("profiles_prior:calibrated_hedge=0.2,calibrated_single=0.05")
    assert (method.calibrated_hedge, method.calibrated_single) == (0.2, 0.05)
    assert Method.from_dict(method.to_dict()) == method
    default = METHODS["profiles_prior"]  # the default hedges so
    assert (default.calibrated_hedge, default.calibrated_single) == (0.325, 0.105)
    # and moves an uncertain one below the top 5 (benchmarks/README.md, "Demotion")
    assert (default.calibrated_demote, default.calibrated_demote_single) == (0.4, 0.3)
    saved = default.to_dict()
    del saved["calibrated_hedge"], saved["calibrated_single"]  # a model saved before them
    assert Method.from_dict(saved).calibrated_hedge is None
    for bad, says in (
        ("calibrated_hedge=1.5", "calibrated_hedge must lie"),
        ("calibrated_hedge=-0.1", "calibrated_hedge must lie"),
        ("calibrated_single=2", "calibrated_single must lie"),
    ):
        with pytest.raises(ConfigError, match=says):
            get_method(f"profiles_prior:{bad}")


# -- the real demo model -----------------------------------------------------------------


def _eligible(rec) -> int:
    """How many of the model's photos calibration may sample: those with a tag list, or a
    single-tag category's photo (a post carrying only that category's search tag)."""
    single = {rec.manifest["categories"][c] for c in np.flatnonzero(rec.hedge.single_tag)}
    return sum(len(t) >= 2 or (len(t) == 1 and t[0] in single) for t in rec.image_hashtags)


def test_the_demo_build_calibrates_every_category_on_its_own_photos(demo_model):
    rec = demo_model
    cal = rec.hedge.calibration
    names = rec.manifest["categories"]
    assert cal is not None and cal.n_categories == len(names) == 10
    assert cal.fitted.all() and cal.features == EVIDENCE_FEATURES
    assert cal.images == min(CALIBRATION_IMAGES, _eligible(rec))
    assert rec.manifest["hedge_calibration"] == cal.to_dict()
    assert rec.manifest["fit_timings"]["calibration_seconds"] > 0
    # Across the model's own photos, the calibrated probability of a category is higher
    # for those whose post carries it: per category, the mean over carriers beats the rest
    # (a category whose posts have tag lists: among the photos with a tag list, the ones
    # it learned from).
    rng = np.random.default_rng(0)
    method = rec.method
    for_image = {c: ([], []) for c in range(len(names))}
    for i in rng.choice(rec.arrays.n_images, 300, replace=False):
        q = np.asarray(rec.arrays.features[i], np.float32)
        wide, wide_sims = rec.index.search(q, WIDE_NEIGHBOURS + DUPLICATE_SLACK)
        keep = (wide != i) & (wide_sims < DUPLICATE_SIMILARITY)  # itself and exact duplicates
        wide, wide_sims = wide[keep][:WIDE_NEIGHBOURS], wide_sims[keep][:WIDE_NEIGHBOURS]
        s = rec.score_nearest(q, wide, wide_sims, 15, method)
        p = cal.probability(rec.hedge.evidence(method, s))
        tags = set(rec.image_hashtags[i])
        for c, name in enumerate(names):
            if rec.hedge.single_tag[c] or len(tags) >= 2:
                for_image[c][0 if category_forms(name) & tags else 1].append(p[c])
    for c, (carriers, others) in for_image.items():
        if carriers and others:
            assert np.mean(carriers) > np.mean(others), names[c]


def test_calibrated_hedging_on_the_demo_photos_removes_tags_and_changes_no_score(
    demo_model, dataset_path
):
    rec = demo_model
    plain_m = get_method("profiles_prior:calibrated_hedge=none,calibrated_demote=none")
    # the default's calibrated hedging, without its demotion (which only reorders; see
    # tests/test_hedging.py)
    hedged_m = get_method("profiles_prior:calibrated_demote=none")
    assert hedged_m.calibrated_hedge is not None
    names = rec.manifest["categories"]
    removed_total = 0
    for photo in sorted((dataset_path / "test").glob("*.jpg")):
        features, classes = rec.embed_with_classes(photo)
        plain = rec.recommend_features(features, 15, 60, plain_m, classes=classes)
        hedged = rec.recommend_features(features, 15, 30, hedged_m, classes=classes)
        # by hand: the categories whose calibrated probability is under the threshold
        wide, wide_sims = rec.index.search(features, WIDE_NEIGHBOURS)
        s = rec.score_nearest(features, wide, wide_sims, 15, plain_m, classes)
        p = rec.hedge.calibration.probability(rec.hedge.evidence(plain_m, s))
        assert rec.rank(features, 15, 30, hedged_m, classes=classes).probability == (
            pytest.approx(p, nan_ok=True)
        )
        limit = np.where(
            rec.hedge.single_tag, hedged_m.calibrated_single, hedged_m.calibrated_hedge
        )
        gone = {c for c in range(len(names)) if p[c] < limit[c]}
        removed_total += check_hedged_is_plain_without(plain, hedged, rec, gone)
        # the demo photos are not in the training data: each keeps its own category
        assert photo.stem not in {names[c] for c in gone}
    assert removed_total > 0


def test_a_damaged_calibration_refuses_the_model_and_an_old_model_has_none(demo_build, tmp_path):
    path, _ = demo_build
    model = tmp_path / "model"
    shutil.copytree(path, model)
    manifest_path = model / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    damaged = {
        **manifest,
        "hedge_calibration": {**manifest["hedge_calibration"], "weights": [[1.0]]},
    }
    rewrite_manifest(model, damaged)
    with pytest.raises(ModelError, match="calibration is damaged") as info:
        HashtagRecommender.load(model)
    assert isinstance(info.value, RecommenderError) and "\n" not in str(info.value)
    old = {k: v for k, v in manifest.items() if k != "hedge_calibration"}
    rewrite_manifest(model, old)
    rec = HashtagRecommender.load(model)  # built before calibration: nothing to hedge with
    assert rec.hedge.calibration is None
    q = np.asarray(rec.arrays.features[0], np.float32)
    m = get_method("profiles_prior:calibrated_hedge=0.5")
    assert rec.recommend_features(q, 15, 10, m).left_out == []


def test_info_says_what_the_calibration_was_fitted_on(demo_build, capsys):
    from recommender import cli

    path, _ = demo_build
    assert cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    images = HashtagRecommender.load(path).hedge.calibration.images
    assert images > 1500  # every eligible photo of the demo, more than before
    assert f"hedging:        calibrated on {images} of its photos, 10 of 10 categories" in out
