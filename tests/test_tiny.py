"""The tiny known-answer model (tests/conftest.py) answers what its data says: the check that
the fast tier's fixture is itself right."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TINY_PER_THEME, TINY_THEMES, colour_vector, tiny_photo


def test_the_stand_in_backbone_gives_the_known_vector(tiny_backbone, tmp_path):
    from recommender.vision import images

    for theme, (rgb, _tags) in TINY_THEMES.items():
        pixels = images.load_for_model(tiny_photo(tmp_path / f"{theme}.jpg", theme), 32)
        got = tiny_backbone.embed(pixels[None])[0]
        assert got == pytest.approx(colour_vector(rgb), abs=0.02)
        assert float(np.linalg.norm(got)) == pytest.approx(1.0, abs=1e-5)


def test_the_tiny_model_counts_what_its_data_set_holds(tiny_model):
    n = len(TINY_THEMES) * TINY_PER_THEME
    counts = tiny_model.manifest["counts"]
    assert (counts["posts"], counts["images"]) == (n, n)
    assert counts["hashtags"] == n + 3 * len(TINY_THEMES)  # each post's own tag + the themes'
    assert counts["pairs"] == n * 4


@pytest.mark.parametrize("theme", sorted(TINY_THEMES))
def test_a_photo_of_a_theme_gets_its_hashtags(tiny_model, theme, tmp_path):
    photo = tiny_photo(tmp_path / "query.jpg", theme, 2)
    for method in ("original", "knn_vote"):
        result = tiny_model.recommend(photo, n_neighbours=4, k=3, method=method)
        assert set(result.tags) == set(TINY_THEMES[theme][1]), method
        # the nearest posts are the theme's own four (the original method always takes its
        # own 5 neighbours, so a fifth from another theme follows them)
        nearest = result.neighbours[:4]
        assert [n.image.split("/")[-1][: len(theme)] for n in nearest] == [theme] * 4
        assert nearest[-1].similarity > 0.99
