"""Calibrated hedging: the prior's exact leave-one-out values, the per-category logistic
regressions, the mask against a slow reference, the calibration a build keeps (and refuses
damaged), and hedged rankings on the real demo model."""

import json
import shutil

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import check_hedged_is_plain_without
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender.calibration import (
    DUPLICATE_SIMILARITY,
    MIN_EXAMPLES,
    HedgeCalibration,
    calibration_sample,
    fit_calibration,
)
from recommender.errors import ConfigError, ModelError, RecommenderError
from recommender.hashtag_model import fit_image_prior
from recommender.hedging import (
    EVIDENCE_FEATURES,
    calibrated_hedge_mask,
    category_forms,
    evidence_features,
)
from recommender.recommender import HashtagRecommender
from recommender.scoring import METHODS, Method, get_method, neighbour_weights


def test_the_prior_leverage_gives_the_exact_leave_one_out_prediction():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = sp.csr_matrix((rng.random((40, 5)) < 0.4).astype(np.float32))
    rows = rng.permutation(40)  # image i's features are x[rows[i]]
    sample = np.array([0, 7, 19, 39])
    weights, tags, leverage = fit_image_prior(x, y, min_posts=1, l2=2.0, rows=rows,
                                              chunk=9, leverage_of=sample)
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


def test_evidence_features_rank_the_categories_by_score():
    f = evidence_features([0.1, 0.5, 0.0], [0.2, 0.0, 1.0], [0.3, 0.9, -0.1])
    assert f.shape == (3, len(EVIDENCE_FEATURES))
    assert f[:, 0].tolist() == [0.1, 0.5, 0.0] and f[:, 1].tolist() == [0.2, 0.0, 1.0]
    assert f[:, 3].tolist() == [0.5, 0.0, 1.0]  # 0: the best-scoring category


def _synthetic(n, rng):
    """Three categories: 0 carried when the share is high, 1 never predictable (noise),
    2 carried by too few images to calibrate."""
    share = rng.random((n, 3))
    carried = np.zeros((n, 3), dtype=bool)
    carried[:, 0] = rng.random(n) < 1 / (1 + np.exp(-(8 * share[:, 0] - 4)))
    carried[:, 1] = rng.random(n) < 0.3
    carried[: MIN_EXAMPLES - 1, 2] = True
    feats = np.stack([evidence_features(rng.random(3), share[i], rng.random(3))
                      for i in range(n)])
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


def test_a_calibration_is_plain_data_and_damage_is_refused():
    rng = np.random.default_rng(1)
    cal = fit_calibration(*_synthetic(500, rng))
    saved = json.loads(json.dumps(cal.to_dict()))
    again = HedgeCalibration.from_dict(saved, 3)
    q = evidence_features([0.2, 0.1, 0.0], [0.4, 0.1, 0.0], [0.5, 0.2, 0.1])
    assert again.probability(q)[:2] == pytest.approx(cal.probability(q)[:2], abs=1e-6)
    bad_cases = [
        ("features", ["prior", "share"]),
        ("mean", [[0.0] * 4] * 2),
        ("scale", [[0.0] * 4] * 3),
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


def ref_calibrated(prob, tag_category, single, threshold, single_threshold):
    out = []
    for c in tag_category:
        limit = single_threshold if c >= 0 and single[c] else threshold
        out.append(bool(c >= 0 and np.isfinite(prob[c]) and prob[c] < limit))
    return out


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(-1, 3), min_size=1, max_size=12),
    st.lists(st.tuples(st.one_of(st.floats(0, 1), st.just(float("nan"))), st.booleans()),
             min_size=4, max_size=4),
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
    default = METHODS["profiles_prior"]  # the default hedges so, and by evidence
    assert (default.calibrated_hedge, default.calibrated_single) == (0.08, 0.06)
    assert default.evidence_hedge == 0.3
    assert (default.category_margin, default.head_hedge) == (None, None)
    saved = default.to_dict()
    del saved["calibrated_hedge"], saved["calibrated_single"]  # a model saved before them
    assert Method.from_dict(saved).calibrated_hedge is None
    for bad, says in (("calibrated_hedge=1.5", "calibrated_hedge must lie"),
                      ("calibrated_hedge=-0.1", "calibrated_hedge must lie"),
                      ("calibrated_single=2", "calibrated_single must lie")):
        with pytest.raises(ConfigError, match=says):
            get_method(f"profiles_prior:{bad}")


# -- the real demo model -----------------------------------------------------------------


def test_the_demo_build_calibrates_every_category_on_its_own_photos(demo_model):
    rec = demo_model
    cal = rec.scorer.calibration
    names = rec.manifest["categories"]
    assert cal is not None and cal.n_categories == len(names) == 10
    assert cal.fitted.all() and cal.images == 1500
    assert rec.manifest["hedge_calibration"] == cal.to_dict()
    assert rec.manifest["fit_timings"]["calibration_seconds"] > 0
    # Across the model's own photos, the calibrated probability of a category is higher
    # for those whose post carries it: per category, the mean over carriers beats the rest.
    rng = np.random.default_rng(0)
    method = rec.method
    for_image = {c: ([], []) for c in range(len(names))}
    for i in rng.choice(rec.arrays.n_images, 300, replace=False):
        q = np.asarray(rec.arrays.features[i], np.float32)
        idx, sims = rec.index.search(q, 16)
        keep = (idx != i) & (sims < DUPLICATE_SIMILARITY)  # itself and exact duplicates
        idx, sims = idx[keep][:15], sims[keep][:15]
        w = neighbour_weights(sims, method)
        scores, prior, _ = rec.scorer.score_parts(idx, w, method, q, None)
        value, share = rec.scorer.category_evidence(prior, idx, method)
        own = np.zeros(len(names))
        own[rec.scorer.category_tag >= 0] = scores[rec.scorer.category_tag]
        p = cal.probability(evidence_features(value, share, own))
        tags = set(rec.image_hashtags[i])
        for c, name in enumerate(names):
            for_image[c][0 if category_forms(name) & tags else 1].append(p[c])
    for c, (carriers, others) in for_image.items():
        if carriers and others:
            assert np.mean(carriers) > np.mean(others), names[c]


def test_calibrated_hedging_on_the_demo_photos_removes_tags_and_changes_no_score(
    demo_model, dataset_path
):
    rec = demo_model
    plain_m = get_method("profiles_prior:evidence_hedge=none,calibrated_hedge=none")
    hedged_m = get_method("profiles_prior:evidence_hedge=none")  # calibrated_hedge 0.08
    names = rec.manifest["categories"]
    removed_total = 0
    for photo in sorted((dataset_path / "test").glob("*.jpg")):
        features, classes = rec.embed_with_classes(photo)
        plain = rec.recommend_features(features, 15, 60, plain_m, classes=classes)
        hedged = rec.recommend_features(features, 15, 30, hedged_m, classes=classes)
        # by hand: the categories whose calibrated probability is under the threshold
        r = rec.rank(features, 15, 60, plain_m, classes=classes)
        value, share = rec.scorer.category_evidence(r.prior, r.neighbours, plain_m)
        known = rec.scorer.category_tag >= 0
        own = np.zeros(len(names))
        own[known] = (r.scores - r.content)[rec.scorer.category_tag[known]]
        p = rec.scorer.calibration.probability(evidence_features(value, share, own))
        limit = np.where(
            rec.scorer.single_tag, hedged_m.calibrated_single, hedged_m.calibrated_hedge
        )
        gone = {c for c in range(len(names)) if p[c] < limit[c]}
        removed_total += check_hedged_is_plain_without(plain, hedged, rec, gone)
        # the demo photos are not in the training data: each keeps its own category
        assert photo.stem not in {names[c] for c in gone}
    assert removed_total > 0


def test_a_damaged_calibration_refuses_the_model_and_an_old_model_has_none(
    demo_build, tmp_path
):
    path, _ = demo_build
    model = tmp_path / "model"
    shutil.copytree(path, model)
    manifest_path = model / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    damaged = {**manifest, "hedge_calibration": {**manifest["hedge_calibration"],
                                                 "weights": [[1.0]]}}
    manifest_path.write_text(json.dumps(damaged), encoding="utf-8")
    with pytest.raises(ModelError, match="calibration is damaged") as info:
        HashtagRecommender.load(model)
    assert isinstance(info.value, RecommenderError) and "\n" not in str(info.value)
    old = {k: v for k, v in manifest.items() if k != "hedge_calibration"}
    manifest_path.write_text(json.dumps(old), encoding="utf-8")
    rec = HashtagRecommender.load(model)  # built before calibration: nothing to hedge with
    assert rec.scorer.calibration is None
    q = np.asarray(rec.arrays.features[0], np.float32)
    m = get_method("profiles_prior:evidence_hedge=none,calibrated_hedge=0.5")
    assert rec.recommend_features(q, 15, 10, m).left_out == []


def test_info_says_what_the_calibration_was_fitted_on(demo_build, capsys):
    from recommender import cli

    path, _ = demo_build
    assert cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "hedging:        calibrated on 1500 of its photos, 10 of 10 categories" in out
