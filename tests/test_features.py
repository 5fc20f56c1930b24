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
    from recommender.vision import images
    from recommender.vision.pipeline import _thumbnail

    y, x = np.mgrid[0:480, 0:640]
    pixels = np.stack([x * 255 // 640, y * 255 // 480, (x + y) * 255 // 1120], -1)
    img = Image.fromarray(pixels.astype(np.uint8))
    fast = np.asarray(Image.open(io.BytesIO(_thumbnail(img, 128))), dtype=float)
    ref = np.asarray(Image.open(io.BytesIO(images.thumbnail_jpeg(img, 128))), dtype=float)
    assert fast.shape == ref.shape == (128, 128, 3)
    assert np.abs(fast - ref).mean() < 3


# Each step of the pipeline (recommender.vision.pipeline) alone, on a few small images.


class MeanColourHead(MeanColour):
    """The stand-in with a "head": 1000 probabilities peaked on class ``red // 4``."""

    has_classes = True

    def embed(self, batch):
        raise AssertionError("a backbone with a head is run once, by embed_with_classes")

    def embed_with_classes(self, batch):
        features = MeanColour.embed(self, batch)
        probs = np.full((len(batch), 1000), 0.1 / 999, np.float32)
        red = batch[..., 0].reshape(len(batch), -1).mean(axis=1).astype(int) // 4
        probs[np.arange(len(batch)), red] = 0.9
        return features, probs


def test_read_image_hashes_the_bytes_and_reuses_only_a_complete_known_image(photos):
    from recommender.vision import images
    from recommender.vision.pipeline import read_image

    item = read_image(3, photos[0])
    data = photos[0].read_bytes()
    assert item.index == 3 and item.data == data and item.key == images.content_hash(data)
    vector = np.ones(3, np.float32)
    known = {item.key: (vector, b"thumb", None)}.get
    reused = read_image(0, photos[0], known, thumb_size=8)
    assert reused.cached and reused.features is vector and reused.thumbnail == b"thumb"
    assert reused.data is None
    # Asked for classes the known image does not have: read again.
    again = read_image(0, photos[0], known, thumb_size=8, classes=True)
    assert not again.cached and again.data == data
    broken = read_image(0, photos[5].parent / "nowhere.jpg")
    assert broken.error and broken.data is None and broken.key is None
    img = Image.new("RGB", (4, 4))
    assert read_image(0, img).data is img and read_image(0, img).key is None


def test_decode_image_gives_the_model_input_and_the_thumbnail(photos):
    from recommender.vision import images
    from recommender.vision.pipeline import decode_image, read_image

    item = decode_image(read_image(0, photos[2]), 16, 8)
    assert item.pixels.shape == (16, 16, 3) and item.data is None
    assert Image.open(io.BytesIO(item.thumbnail)).size == (8, 8)
    assert np.abs(item.pixels.astype(int) - flat_colour(2)).max() <= 2  # a flat colour
    # The query's decoding (draft) is images.load_for_model's.
    draft = decode_image(read_image(0, photos[2]), 16, draft=True)
    assert np.array_equal(draft.pixels, images.load_for_model(photos[2], 16))
    assert draft.thumbnail is None
    broken = decode_image(read_image(5, photos[5]), 16, 8)
    assert broken.error and broken.pixels is None


def _decoded(photos, n):
    from recommender.vision.pipeline import decode_image, read_image

    return [decode_image(read_image(i, p), 16) for i, p in enumerate(photos[:n])]


def test_embed_batch_is_one_forward_pass_with_the_classes_of_the_same_pass(photos):
    from recommender.vision.pipeline import embed_batch

    bb = MeanColour()
    batch = _decoded(photos, 4)
    embed_batch(bb, batch)
    assert bb.calls == [4] and all(item.pixels is None for item in batch)
    np.testing.assert_allclose([i.features for i in batch], [_expected(k) for k in range(4)],
                               atol=0.02)  # fmt: skip
    head = MeanColourHead()
    top, full = _decoded(photos, 2), _decoded(photos, 2)
    embed_batch(head, top, classes="top")
    embed_batch(head, full, classes="full")
    for k in range(2):
        assert full[k].classes.shape == (1000,)
        ids, probs = top[k].classes
        assert ids[0] == flat_colour(k)[0] // 4 == int(np.argmax(full[k].classes))
        assert probs[0] == pytest.approx(0.9, abs=1e-3)


class FailsOnColour(MeanColour):
    """A backbone that raises on a batch holding one given colour: a worker breaking on an
    image in a way the image checks do not catch."""

    def __init__(self, red: int):
        super().__init__()
        self.red = red

    def embed(self, batch):
        if any(abs(int(img[..., 0].mean()) - self.red) <= 1 for img in batch):
            raise MemoryError("simulated")
        return super().embed(batch)


def test_embed_batch_isolates_an_image_that_breaks_the_backbone_only_when_asked(photos):
    from recommender.vision.pipeline import embed_batch

    bb = FailsOnColour(flat_colour(1)[0])
    with pytest.raises(MemoryError):
        embed_batch(bb, _decoded(photos, 3))
    batch = _decoded(photos, 3)
    embed_batch(bb, batch, isolate=True)
    assert [item.error is None for item in batch] == [True, False, True]
    assert batch[1].error == "the worker failed on this image: MemoryError: simulated"
    np.testing.assert_allclose(batch[2].features, _expected(2), atol=0.02)


def test_collect_gives_the_extraction_in_input_order(photos):
    from recommender.features.pipeline import collect
    from recommender.vision.pipeline import embedded_items

    items = list(embedded_items(photos[:8], MeanColour(), batch_size=3, thumb_size=8))
    assert sorted(item.index for item in items) == list(range(8))
    ex = collect(reversed(items), MeanColour())
    assert ex.ok == [0, 1, 2, 3, 4, 6, 7] and [i for i, _ in ex.errors] == [5]
    ref = extract_features(photos[:8], MeanColour(), batch_size=3, thumb_size=8)
    assert np.array_equal(ex.features, ref.features)
    assert (ex.hashes, ex.thumbnails, ex.errors) == (ref.hashes, ref.thumbnails, ref.errors)


def test_embed_arrays_is_the_query_of_each_image_in_input_order(photos):
    from recommender.vision.pipeline import embed_arrays

    sources = [photos[0], b"not an image", *photos[1:4]]
    features, classes, errors = embed_arrays(sources, MeanColourHead(), batch_size=2)
    assert [e is None for e in errors] == [True, False, True, True, True]
    assert not features[1].any() and not classes[1].any()
    np.testing.assert_allclose(features[[0, 2, 3, 4]], [_expected(k) for k in range(4)],
                               atol=0.02)  # fmt: skip
    assert [int(np.argmax(c)) for c in classes[[0, 2, 3, 4]]] == [
        flat_colour(k)[0] // 4 for k in range(4)
    ]
    features, classes, errors = embed_arrays(sources[:2], MeanColour())
    assert classes is None and errors[0] is None and features.shape == (2, 3)
