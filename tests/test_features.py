"""The extraction pipeline, with a fake backbone whose answer is known (the shard store that
replaced the feature cache: tests/test_embed_stage.py)."""

import io

import numpy as np
import pytest
from conftest import flat_colour, flat_photos
from PIL import Image

from recommender.features.pipeline import extract_features


class MeanColour:
    """A stand-in backbone: the feature of an image is its unit-length mean colour."""

    name, weights, input_size, dim = "mean-colour", "none", 16, 3

    def __init__(self):
        self.calls = []

    def embed(self, batch):
        assert batch.dtype == np.uint8 and batch.shape[1:] == (16, 16, 3)
        self.calls.append(len(batch))
        v = batch.reshape(len(batch), -1, 3).mean(axis=1) + 1.0
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def photos(tmp_path):
    """23 small JPEGs of distinct flat colours, plus one broken file at position 5."""
    return flat_photos(tmp_path)


def _expected(i):
    v = np.array(flat_colour(i), dtype=np.float64) + 1.0
    return v / np.linalg.norm(v)


@pytest.mark.parametrize("workers,batch_size", [(1, 4), (2, 8), (3, 32)])
def test_features_keep_input_order_and_skip_broken_images(photos, workers, batch_size):
    bb = MeanColour()
    seen = []
    ex = extract_features(
        photos,
        bb,
        batch_size=batch_size,
        workers=workers,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert ex.ok == [i for i in range(24) if i != 5]
    assert [i for i, _ in ex.errors] == [5]
    # Photo k sits at position k, or k + 1 after the broken file: rows follow the photos.
    np.testing.assert_allclose(ex.features, [_expected(k) for k in range(23)], atol=0.02)
    assert len(set(ex.hashes)) == 23 and ex.cached == 0
    assert max(bb.calls) <= batch_size and sum(bb.calls) == 23
    assert seen[-1] == (24, 24)
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:], strict=False))


def test_thumbnails_are_square_jpegs(photos):
    ex = extract_features(photos[:3], MeanColour(), thumb_size=12)
    for data in ex.thumbnails:
        assert Image.open(io.BytesIO(data)).size == (12, 12)


def test_known_images_skip_decoding_and_the_backbone(photos):
    first = extract_features(photos[:10], MeanColour(), thumb_size=8)
    seen = {h: (f, t, None) for h, f, t in zip(first.hashes, first.features, first.thumbnails)}
    bb = MeanColour()
    more = extract_features(photos, bb, thumb_size=8, known=seen.get)
    assert more.cached == 9 and sum(bb.calls) == 23 - 9
    np.testing.assert_allclose(more.features[:9], first.features, atol=1e-6)
    assert more.thumbnails[:9] == first.thumbnails


def test_no_sources_give_an_empty_result():
    ex = extract_features([], MeanColour())
    assert ex.features.shape == (0, 3) and ex.ok == [] and ex.errors == []


def test_the_fast_thumbnail_looks_like_the_reference_one():
    from recommender.features.pipeline import _thumbnail
    from recommender.vision import images

    y, x = np.mgrid[0:480, 0:640]
    pixels = np.stack([x * 255 // 640, y * 255 // 480, (x + y) * 255 // 1120], -1)
    img = Image.fromarray(pixels.astype(np.uint8))
    fast = np.asarray(Image.open(io.BytesIO(_thumbnail(img, 128))), dtype=float)
    ref = np.asarray(Image.open(io.BytesIO(images.thumbnail_jpeg(img, 128))), dtype=float)
    assert fast.shape == ref.shape == (128, 128, 3)
    assert np.abs(fast - ref).mean() < 3
