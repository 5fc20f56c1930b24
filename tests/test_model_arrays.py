"""The typed schema of a model's arrays: round trip, extras, and what a broken file gives."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.errors import ModelError
from recommender.store.arrays import ModelArrays, ModelParts, read_parts, write_parts


def _arrays(n: int = 4, t: int = 3, d: int = 5) -> ModelArrays:
    rng = np.random.default_rng(0)
    return ModelArrays(
        features=rng.standard_normal((n, d)).astype(np.float32),
        image_factors=rng.standard_normal((n, 2)).astype(np.float32),
        tag_factors=rng.standard_normal((t, 2)).astype(np.float32),
        tag_counts=np.arange(t, dtype=np.int64) + 1,
        image_tags_indptr=np.arange(n + 1, dtype=np.int64),
        image_tags_indices=np.arange(n, dtype=np.int32) % t,
    )


def test_arrays_round_trip_through_a_model_folder_with_their_extras(tmp_path):
    arrays = _arrays()
    arrays.extra["imagenet_top5"] = np.arange(20, dtype=np.int32).reshape(4, 5)
    index = {"tags": ["a", "b", "c"], "images": []}
    thumbs = {"data": np.frombuffer(b"abcdef", np.uint8), "offsets": np.array([0, 2, 3, 3, 6])}
    manifest = {  # what a model's manifest must hold (recommender.store.model_io)
        "created": "2026-01-01",
        "config": {"backbone": "b", "weights": None, "method": "blend"},
        "counts": {},
        "categories": [],
        "single_tag_categories": [],
        "neighbours": {"kind": "exact"},
    }
    write_parts(tmp_path / "m", ModelParts(manifest, arrays, index, thumbs))
    back = read_parts(tmp_path / "m")
    assert back.manifest["created"] == "2026-01-01" and back.index == index
    for name, value in arrays.to_dict().items():
        assert np.array_equal(back.arrays.to_dict()[name], value), name
    assert np.array_equal(back.arrays.extra["imagenet_top5"], arrays.extra["imagenet_top5"])
    assert back.arrays.profiles() == (None, None)  # optional fields stay absent
    assert back.thumbnails["data"].tobytes() == b"abcdef"
    assert back.arrays.image_tags().toarray().sum() == 4


def test_a_missing_required_array_names_it():
    arrays = _arrays().to_dict()
    del arrays["tag_factors"]
    with pytest.raises(ModelError, match="tag_factors.*rebuild"):
        ModelArrays.from_dict(arrays)


def test_an_extra_array_may_not_shadow_a_field():
    arrays = _arrays()
    arrays.extra["features"] = np.zeros(1)
    with pytest.raises(ValueError, match="clashes"):
        arrays.to_dict()


def test_shapes_that_disagree_with_the_index_are_refused():
    with pytest.raises(ModelError, match="features do not match"):
        _arrays().check(n_images=5, n_tags=3)
    with pytest.raises(ModelError, match="counts do not match"):
        _arrays().check(n_images=4, n_tags=2)
