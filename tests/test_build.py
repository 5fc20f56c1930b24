"""`build` on a scraped-looking folder: bad images and records are skipped and counted."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import TINY_BACKBONE, rewrite_manifest
from PIL import Image

from recommender import DatasetError, HashtagRecommender
from recommender.build import build_model
from recommender.config import ALSParams
from recommender.query.recommender import BuildConfig


def _photo(path, colour, seed):
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(colour, 25, size=(96, 128, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, "JPEG", quality=90)


@pytest.fixture
def messy(tmp_path):
    root = tmp_path / "posts"
    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(6):
        _photo(root / "img" / f"red{i}.jpg", (200, 40, 40), i)
        rows.append({"image": f"img/red{i}.jpg", "hashtags": ["sunset", "red", f"own{i}"]})
    for i in range(6):
        _photo(root / "img" / f"blue{i}.jpg", (40, 60, 200), 10 + i)
        rows.append({"image": f"img/blue{i}.jpg", "hashtags": ["ocean", "blue", "sea"]})
    # the same photo saved twice under another name
    (root / "img" / "copy.jpg").write_bytes((root / "img" / "red0.jpg").read_bytes())
    rows.append({"image": "img/copy.jpg", "hashtags": ["sunset", "repost"]})
    # a truncated JPEG and a text file named .jpg
    data = (root / "img" / "blue0.jpg").read_bytes()
    (root / "img" / "broken.jpg").write_bytes(data[: len(data) // 3])
    rows.append({"image": "img/broken.jpg", "hashtags": ["ocean"]})
    (root / "img" / "notes.jpg").write_text("shopping list")
    rows.append({"image": "img/notes.jpg", "hashtags": ["ocean"]})
    # records that point outside the folder, by path and by symlink
    secret = tmp_path / "secret.jpg"
    _photo(secret, (0, 0, 0), 99)
    os.symlink(secret, root / "img" / "link.jpg")
    rows.append({"image": "img/link.jpg", "hashtags": ["leak"]})
    rows.append({"image": "../secret.jpg", "hashtags": ["leak"]})
    rows.append({"image": "/etc/passwd", "hashtags": ["leak"]})
    # markup and control characters in hashtags
    rows.append(
        {
            "image": "img/blue1.jpg",
            "hashtags": [
                "<script>alert(1)</script>",
                "[x](javascript:alert(1))",
                "a\u202eb",
                "ocean",
            ],
        }
    )
    lines = [json.dumps(r) for r in rows] + ["{not json", '{"image": 5, "hashtags": "x"}']
    (root / "posts.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.tensorflow  # the real network: its neighbours tell the noisy photos apart
def test_messy_folder_builds_and_reports_what_it_skipped(messy, tmp_path, feature_cache_dir):
    config = BuildConfig(als=ALSParams(factors=4, iterations=5))
    rec, summary = build_model(messy, tmp_path / "model", config)
    assert summary["images_duplicate"] == 1
    assert summary["images_unreadable"] == 2
    report = rec.info()["dataset"]["report"]
    assert report["skipped_outside_root"] == 3
    assert report["skipped_malformed"] == 2
    assert report["tags_dropped_invalid"] >= 3
    assert summary["images"] == 12  # 6 red + 6 blue; the copy and the broken ones are out
    assert "leak" not in rec.tags
    assert not any("<" in t or "(" in t or "\u202e" in t for t in rec.tags)
    problems = "\n".join(summary["problems"])
    assert "broken.jpg" in problems and "notes.jpg" in problems

    loaded = HashtagRecommender.load(tmp_path / "model")
    result = loaded.recommend(messy / "img" / "red3.jpg", n_neighbours=3, k=3, method="knn_vote")
    assert result.neighbours[0].image == "img/red3.jpg"
    assert {"sunset", "red"} <= set(result.tags)


def test_nothing_usable_is_a_clear_error_and_writes_nothing(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    (root / "posts.csv").write_text("image,hashtags\n,\n")
    with pytest.raises(DatasetError, match="no usable posts"):
        build_model(root, tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_only_unreadable_images_is_a_clear_error(tmp_path, tiny_backbone):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "a.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (root / "posts.csv").write_text("image,hashtags\na.jpg,#beach #sun\n")
    with pytest.raises(DatasetError, match="could be read"):
        build_model(root, tmp_path / "model", BuildConfig(backbone=TINY_BACKBONE))
    assert not (tmp_path / "model").exists()


@pytest.mark.tensorflow
def test_a_model_records_its_backbone_and_refuses_other_weights(messy, tmp_path, monkeypatch):
    """The manifest keeps the backbone's fingerprint; a model whose weights sha256 or
    preprocessing differ from the installed backbone's is refused when it would embed."""
    import json

    from recommender.errors import ModelError
    from recommender.vision import backbones

    model = tmp_path / "model"
    config = BuildConfig(als=ALSParams(factors=4, iterations=2))
    build_model(messy, model, config)
    installed = backbones.get_backbone().fingerprint()
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["backbone"] == installed  # name, input_size, dim, weights (as before) ...
    assert len(installed["weights_sha256"]) == 64  # ... and what loading checks
    photo = messy / "img" / "red3.jpg"

    retrained = "0123456789abcdef" * 4
    manifest["backbone"]["weights_sha256"] = retrained
    rewrite_manifest(model, manifest)
    with pytest.raises(ModelError) as err:
        HashtagRecommender.load(model, warm=True)
    message = str(err.value)
    assert retrained in message and installed["weights_sha256"] in message
    assert f"python -m recommender build <your data set> --out {model}" in message
    lazy = HashtagRecommender.load(model)  # without warm: refused at the first embedding
    with pytest.raises(ModelError, match="weights sha256"):
        lazy.recommend(photo)

    del manifest["backbone"]["weights_sha256"], manifest["backbone"]["preprocessing"]
    rewrite_manifest(model, manifest)
    assert HashtagRecommender.load(model, warm=True).recommend(photo).hashtags  # predates them

    manifest["backbone"]["preprocessing"] = backbones.PREPROCESSING_VERSION
    rewrite_manifest(model, manifest)
    monkeypatch.setattr(backbones, "PREPROCESSING_VERSION", "p-next")
    with pytest.raises(ModelError, match="preprocessing .* p-next"):
        HashtagRecommender.load(model).embed(photo)


def test_the_stored_evaluation_is_the_one_evaluate_gives(
    dataset_path, tmp_path, feature_cache_dir, monkeypatch
):
    """build --evaluate scores the method as the model serves it, with what the network sees
    (the top classes the embed stage kept, no second pass over the photos): its figures are
    those of `evaluate` on the same splits."""
    from conftest import real_photo_manifest

    from recommender.evaluation import (
        ORIGINAL_NEIGHBOURS,
        POPULARITY,
        Candidate,
        evaluate_dataset,
        run,
    )
    from recommender.evaluation.run import SUMMARY_METRICS
    from recommender.vision import content

    data = real_photo_manifest(dataset_path, tmp_path / "posts", 10)
    seen = []
    real_evaluate = run.evaluate

    def spy(*args, **kwargs):
        seen.append((args[1], kwargs.get("classes")))
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(run, "evaluate", spy)
    rec, _ = build_model(data, tmp_path / "model", evaluate=2)
    stored = rec.manifest["evaluation"]["methods"]
    config = BuildConfig()
    assert config.method in stored
    features, classes = seen[0]
    assert isinstance(classes, content.TopClasses) and classes.ids.shape[1] == 5
    assert classes.ids.shape[0] == len(features)  # one row per feature row, never dense
    result = evaluate_dataset(
        data,
        config,
        candidates=[
            Candidate(POPULARITY, None),
            Candidate(config.method, config.method),
            Candidate("original", "original", ORIGINAL_NEIGHBOURS),
        ],
        n_splits=2,
        n_sweep=(),
    )
    for method, figures in stored.items():
        for metric in SUMMARY_METRICS:
            if metric in figures:
                assert figures[metric] == round(result.mean(method, metric), 4), (method, metric)
