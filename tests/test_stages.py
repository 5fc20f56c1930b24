"""The build's stages, each alone on a tiny data set: read -> embed -> fit -> index/write."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import flat_photos
from test_embed_stage import MeanColour

from recommender import HashtagRecommender
from recommender.build import embed_stage, fit_stage, index_and_write_stage, read_stage
from recommender.config import ALSParams, BuildConfig
from recommender.errors import DatasetError
from recommender.store.arrays import ModelParts

CONFIG = BuildConfig(als=ALSParams(factors=4, iterations=3), thumb_size=16)


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHTAG_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "posts"
    flat_photos(root / "img", 12)
    rows = [
        {"image": f"img/{i:02d}.jpg", "hashtags": ["alpha", f"tag{i % 3}", f"more{i % 2}"]}
        for i in range(12)
    ]
    rows.append({"image": "img/broken.jpg", "hashtags": ["alpha"]})
    rows.append({"hashtags": ["alpha", "textonly"]})
    (root / "posts.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root


def test_read_stage_gives_the_posts_table(tiny):
    ds = read_stage(tiny)
    assert len(ds.posts) == 14 and sum(1 for p in ds.posts if p.image) == 13


def test_embed_stage_gives_float16_features_aligned_with_the_posts(tiny):
    ds = read_stage(tiny)
    bb = MeanColour()
    seen = []
    feats = embed_stage(ds, CONFIG, backbone=bb, shard_size=5, progress=lambda *a: seen.append(a))
    assert feats.features.shape == (12, 3) and feats.features.dtype == np.float16
    assert feats.image_rows[:12] == list(range(12)) and feats.image_rows[12:] == [-1, -1]
    assert feats.counts["images_unreadable"] == 1 and sum(bb.calls) == 12
    assert seen[-1] == ("features", 13, 13)
    again = embed_stage(ds, CONFIG, backbone=MeanColour(), shard_size=5)
    assert again.counts == {**feats.counts, "images_embedded": 0, "images_from_cache": 12}


def test_embed_stage_refuses_a_data_set_without_one_readable_image(tiny):
    for path in (tiny / "img").glob("*.jpg"):
        path.write_bytes(b"not a photo")
    with pytest.raises(DatasetError, match="could be read"):
        embed_stage(read_stage(tiny), CONFIG, backbone=MeanColour())


def test_fit_stage_gives_the_model_parts(tiny):
    ds = read_stage(tiny)
    feats = embed_stage(ds, CONFIG, backbone=MeanColour())
    seen = []
    fitted = fit_stage(ds, feats, CONFIG, manifest={"x": 1}, progress=lambda *a: seen.append(a))
    parts = fitted.parts
    assert isinstance(parts, ModelParts) and parts.manifest["x"] == 1
    # calibration's sample: positions in the index, with what the prior needs of each
    sample = fitted.calibration_sample
    assert len(sample.images) == len(sample.leverage) == len(sample.prior_targets) > 0
    assert sample.images.max() < parts.arrays.n_images
    assert parts.arrays.n_images == 12 and parts.arrays.features.dtype == np.float32
    assert parts.manifest["counts"]["posts"] == 14 and ("als", 3, 3) in seen
    # the prior reports the images it has read, chunk by chunk, up to all 12
    prior = [done for stage, done, total in seen if stage == "prior" and total == 12]
    assert prior and prior == sorted(prior) and prior[-1] == 12
    assert len(parts.index["images"]) == 12 and len(parts.thumbnails) == 12
    assert parts.thumbnails[3] == feats.thumbnails[parts.arrays.n_images - 9]


def test_index_and_write_stage_writes_a_model_that_answers_the_same(tiny, tmp_path):
    ds = read_stage(tiny)
    feats = embed_stage(ds, CONFIG, backbone=MeanColour())
    fitted = fit_stage(ds, feats, CONFIG)
    seen = []
    rec = index_and_write_stage(fitted, tmp_path / "model", lambda *a: seen.append(a))
    assert seen == [("write", 0, 2), ("write", 1, 2), ("write", 2, 2)]
    loaded = HashtagRecommender.load(tmp_path / "model")
    query = np.asarray(feats.features[3], np.float32)
    assert loaded.recommend_features(query).to_dict() == rec.recommend_features(query).to_dict()
    assert loaded.thumbnail(3) == feats.thumbnails[3]
