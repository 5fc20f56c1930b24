"""The page, driven headless with Streamlit's AppTest on the demo model built once per run.

What a visitor does: upload a photo (or pick an example), move the sliders, flip the spam
filter, upload something that is not a photo; and what a first run without a model shows.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from recommender import HashtagRecommender
from recommender import presentation as pres
from recommender.hashtags import load_blocklist

APP = str(Path(__file__).resolve().parent.parent / "app.py")
CARD = re.compile(r"^\*\*(\d+)\.\*\* similarity \d\.\d{3}$")


# ----------------------------------------------------------------------------- helpers
def new_page(model: Path, dataset: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv("HASHTAG_MODEL", str(model))
    monkeypatch.setenv("HASHTAG_DATASET", str(dataset))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    return at


def upload(at: AppTest, name: str, data: bytes, mime: str = "image/jpeg") -> AppTest:
    at.file_uploader[0].set_value((name, data, mime))
    at.run()
    assert not at.exception
    return at


def neighbour_ranks(at: AppTest) -> list[int]:
    return [int(m.group(1)) for m in (CARD.match(md.value) for md in at.main.markdown) if m]


def top_block(at: AppTest) -> list[str]:
    """The hashtags of the copy-ready top-5 block."""
    return at.main.code[0].value.split()


def all_block(at: AppTest) -> list[str]:
    """The hashtags of the copy-ready block of all k (the top-5 block when k <= 5)."""
    return at.main.code[-1].value.split()


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels and holds none: a decompression bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def tiny_dataset(root: Path) -> Path:
    """Nine one-colour photos in a posts.csv data set: red, green and blue posts."""
    root.mkdir()
    rows = ["image,hashtags"]
    for name, rgb in {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (30, 60, 220)}.items():
        for i in range(3):
            Image.new("RGB", (64, 64), tuple(c + 10 * i for c in rgb)).save(root / f"{name}{i}.png")
            rows.append(f"{name}{i}.png,#{name} #colour #{name}_{i}")
    (root / "posts.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def photos(dataset_path) -> Path:
    folder = dataset_path / "test"
    if not (folder / "food.jpg").is_file():
        pytest.skip(f"the data set's example photos are not in {folder}")
    return folder


@pytest.fixture
def page(demo_build, dataset_path, photos, monkeypatch) -> AppTest:
    return new_page(demo_build[0], dataset_path, monkeypatch)


@pytest.fixture(scope="module")
def expected(demo_model, photos):
    """What the library itself recommends for food.jpg with the page's defaults."""
    return demo_model.recommend(
        photos / "food.jpg", n_neighbors=5, k=10, blocklist=load_blocklist()
    )


# ------------------------------------------------------------------------------- tests
def test_first_view_describes_the_model_and_invites_a_photo(page, demo_model):
    sidebar = " ".join(md.value for md in page.sidebar.markdown)
    counts = demo_model.info()["counts"]
    assert "efficientnet" in sidebar
    assert pres.escape_markdown(f"{counts['images']:,}") in sidebar
    assert [s.value for s in page.sidebar.slider] == [5, 10]
    assert [(s.min, s.max) for s in page.sidebar.slider] == [(1, 50), (1, 30)]
    assert page.sidebar.toggle[0].value is True
    assert "Drop a photo" in page.info[0].value
    assert page.pills[0].options[:2] == ["animals", "architecture"]
    # The demo model has no evaluation: the sidebar says how to add one.
    assert any("--evaluate" in c.value for c in page.sidebar.code)


def test_upload_shows_hashtags_charts_and_neighbours(page, photos, expected):
    upload(page, "food.jpg", (photos / "food.jpg").read_bytes())
    assert not errors(page)
    assert top_block(page) == [f"#{t}" for t in expected.tags[:5]]
    assert all_block(page) == [f"#{t}" for t in expected.tags]
    assert "at most 5 hashtags" in " ".join(md.value for md in page.main.markdown)
    assert len(page.get("plotly_chart")) == 2  # scores, and one hashtag's contributions
    assert page.selectbox[0].value == 0  # explains the best hashtag first
    assert neighbour_ranks(page) == [1, 2, 3, 4, 5]
    # What the ImageNet head sees in the photo, as the library says
    assert expected.seen
    sees = pres.escape_markdown(pres.network_sees(expected.seen))
    assert sees in [c.value for c in page.main.caption]
    # Neighbour hashtags are data-set text: shown escaped, never as Markdown.
    captions = [c.value for c in page.main.caption if c.value.startswith("\\#")]
    assert len(captions) == 5
    first = expected.neighbors[0].hashtags[0]
    assert captions[0].startswith(pres.escape_markdown(f"#{first}"))


def test_sliders_rerank_without_recomputing_features(page, photos, monkeypatch):
    import streamlit as st

    calls = []
    embed = HashtagRecommender.embed_with_classes  # the page's one forward pass per photo
    monkeypatch.setattr(
        HashtagRecommender, "embed_with_classes",
        lambda self, image: calls.append(1) or embed(self, image),
    )
    st.cache_data.clear()
    upload(page, "food.jpg", (photos / "food.jpg").read_bytes())
    assert len(calls) == 1

    page.sidebar.slider[0].set_value(12).run()
    assert neighbour_ranks(page) == list(range(1, 13))
    page.selectbox[0].set_value(9).run()  # explain the 10th hashtag, then show only 3
    page.sidebar.slider[1].set_value(3).run()
    assert len(page.main.code) == 1 and len(top_block(page)) == 3
    assert page.selectbox[0].value == 0
    page.sidebar.slider[1].set_value(25).run()
    assert len(all_block(page)) == 25 and len(top_block(page)) == 5
    page.sidebar.slider[0].set_value(1).run()
    assert neighbour_ranks(page) == [1]
    assert not page.exception
    assert len(calls) == 1  # every rerank reused the cached features

    # The same photo uploaded again under another name: still no recomputation.
    upload(page, "copy.jpg", (photos / "food.jpg").read_bytes())
    assert len(calls) == 1


def test_tensorflow_kernels_survive_between_runs(page, photos, monkeypatch):
    """Streamlit's reset of Keras after each run is switched off: it cost 0.3 s a photo."""
    import keras

    resets = []
    monkeypatch.setattr(keras.backend, "clear_session", lambda *a, **k: resets.append(1))
    upload(page, "food.jpg", (photos / "food.jpg").read_bytes())
    page.sidebar.slider[0].set_value(6).run()
    assert not resets


def test_spam_filter(page, photos, demo_model):
    blocked = load_blocklist()
    page.pills[0].set_value("babies").run()
    assert not page.exception
    shown = {t.lstrip("#") for t in all_block(page)}
    assert shown and not shown & blocked

    page.sidebar.toggle[0].set_value(False).run()
    unfiltered = demo_model.recommend(photos / "babies.jpg", n_neighbors=5, k=10)
    assert all_block(page) == [f"#{t}" for t in unfiltered.tags]
    assert set(unfiltered.tags) & blocked  # this photo does draw engagement bait


def test_not_an_image_is_a_message_and_the_next_upload_works(page, photos, expected):
    upload(page, "notes.png", b"this is a text file with an image's name", "image/png")
    assert len(errors(page)) == 1
    assert "not an image" in errors(page)[0]
    assert not page.main.code and not page.get("plotly_chart")

    upload(page, "food.jpg", (photos / "food.jpg").read_bytes())
    assert not errors(page)
    assert top_block(page) == [f"#{t}" for t in expected.tags[:5]]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (png_header(20_000, 20_000), "pixels"),  # a decompression bomb
        (b"", "empty"),
    ],
    ids=["bomb", "empty"],
)
def test_bad_images_are_messages(page, data, words):
    upload(page, "bad.png", data, "image/png")
    assert len(errors(page)) == 1 and words in errors(page)[0]


def test_truncated_photo_is_a_message(page, photos):
    data = (photos / "food.jpg").read_bytes()
    upload(page, "cut.jpg", data[: len(data) // 3])
    assert len(errors(page)) == 1 and "corrupt" in errors(page)[0]


def test_example_and_upload_replace_each_other(page, photos):
    page.pills[0].set_value("animals").run()
    assert neighbour_ranks(page) == [1, 2, 3, 4, 5]
    animals = top_block(page)

    upload(page, "food.jpg", (photos / "food.jpg").read_bytes())
    assert page.pills[0].value is None  # the upload replaced the example
    food = top_block(page)
    assert food != animals

    page.pills[0].set_value("animals").run()
    assert top_block(page) == animals  # and picking an example replaces the upload
    assert page.file_uploader[0].value is None


def test_evaluation_is_shown_when_the_model_has_one(
    demo_build, dataset_path, tmp_path, monkeypatch
):
    model = tmp_path / "evaluated"
    shutil.copytree(demo_build[0], model)
    manifest = json.loads((model / "manifest.json").read_text(encoding="utf-8"))
    manifest["evaluation"] = {  # as `build --evaluate 2` writes it
        "method": "blend",
        "recall@10": 0.1631,
        "beyond_recall@10": 0.1253,
        "popularity_recall@10": 0.0879,
        "off_topic@10": 1.712,
        "own_category_hit@10": 0.4167,
        "splits": 2,
        "test_posts": 220,
        "seconds": 7.3,
    }
    (model / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")

    at = new_page(model, dataset_path, monkeypatch)
    [metric] = at.sidebar.metric
    assert (metric.label, metric.value) == ("recall@10", "0.163")
    assert metric.delta == "+0.075 vs popularity (0.088)"
    sidebar = " ".join(md.value for md in at.sidebar.markdown)
    assert "**Evaluated:** blend (2 splits, 220 held-out posts each)" in sidebar
    assert any(c.value.startswith("0.125 counting only") for c in at.sidebar.caption)
    assert any(
        c.value.startswith("1.71 of the top 10 are another category's search tag")
        and "42% of photos from categories known only by their search tag" in c.value
        for c in at.sidebar.caption
    )
    assert not any("--evaluate" in c.value for c in at.sidebar.code)


def test_evaluation_missing_a_baseline_is_still_shown(
    demo_build, dataset_path, tmp_path, monkeypatch
):
    model = tmp_path / "evaluated"
    shutil.copytree(demo_build[0], model)
    manifest = json.loads((model / "manifest.json").read_text(encoding="utf-8"))
    manifest["evaluation"] = {"recall@10": 0.2, "popularity_recall@10": None}
    (model / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    at = new_page(model, dataset_path, monkeypatch)
    assert [(m.value, m.delta) for m in at.sidebar.metric] == [("0.200", "")]


def test_missing_model_offers_to_build(tmp_path, monkeypatch):
    data = tiny_dataset(tmp_path / "posts")
    at = new_page(tmp_path / "nothing-here", data, monkeypatch)
    assert "no model yet" in at.info[0].value
    assert [b.label for b in at.button] == ["Build the demo model"]
    assert any("python -m recommender build DATA --out MODEL" in c.value for c in at.code)
    assert not at.file_uploader and not at.error


def test_missing_model_and_data_set_explains_the_cli(tmp_path, monkeypatch):
    at = new_page(tmp_path / "nothing-here", tmp_path / "no-data", monkeypatch)
    assert not at.button
    assert "`HASHTAG_DATASET`" in at.warning[0].value
    assert any("python -m recommender build DATA --out MODEL" in c.value for c in at.code)


def test_damaged_model_says_so_and_offers_to_rebuild(
    demo_build, dataset_path, tmp_path, monkeypatch
):
    model = tmp_path / "damaged"
    shutil.copytree(demo_build[0], model)
    with open(model / "arrays.npz", "r+b") as fh:
        fh.truncate(1000)
    at = new_page(model, dataset_path, monkeypatch)
    assert "damaged" in at.error[0].value
    assert [b.label for b in at.button] == ["Build the demo model"]


def test_build_button_builds_a_model_and_the_page_uses_it(tmp_path, feature_cache_dir, monkeypatch):
    data = tiny_dataset(tmp_path / "posts")
    model = tmp_path / "model"
    at = new_page(model, data, monkeypatch)
    at.button[0].click().run(timeout=180)
    assert not at.exception and not at.error
    info = HashtagRecommender.load(model).info()
    assert info["counts"]["images"] == 9
    assert info["evaluation"]["splits"] == 5  # the demo model comes evaluated
    assert [m.label for m in at.sidebar.metric] == ["recall@10"]
    assert at.file_uploader  # the page reran on the new model
    assert "9" in " ".join(md.value for md in at.sidebar.markdown)

    # Every post carries #colour, so it can top any ranking; the colour tag must follow
    # the photo: a red photo ranks #red above #green and #blue, a blue one #blue first.
    for colour in ("red", "blue"):
        upload(at, f"{colour}.png", (data / f"{colour}1.png").read_bytes(), "image/png")
        ranked = all_block(at)
        others = [f"#{c}" for c in ("red", "green", "blue") if c != colour]
        assert f"#{colour}" in ranked[:2], ranked
        assert all(o not in ranked or ranked.index(o) > ranked.index(f"#{colour}") for o in others)


def test_the_page_follows_a_model_rebuilt_at_the_same_path(
    tmp_path, feature_cache_dir, monkeypatch
):
    """A rebuild while the server runs: the next run shows the new model and says so."""
    from recommender.build import build_model
    from recommender.hashtag_model import ALSParams
    from recommender.recommender import BuildConfig

    config = BuildConfig(als=ALSParams(factors=4, iterations=2))
    data = tiny_dataset(tmp_path / "posts")
    model = tmp_path / "model"
    build_model(data, model, config)
    at = new_page(model, data, monkeypatch)
    facts = " ".join(md.value for md in at.sidebar.markdown)
    assert "**Images indexed:** 9" in facts and not at.toast

    smaller = tmp_path / "smaller"
    shutil.copytree(data, smaller)
    rows = (smaller / "posts.csv").read_text().splitlines()
    (smaller / "posts.csv").write_text("\n".join(rows[:6]) + "\n")  # header + 5 posts
    build_model(smaller, model, config)
    at.run()
    assert not at.exception
    facts = " ".join(md.value for md in at.sidebar.markdown)
    assert "**Images indexed:** 5" in facts and "**Images indexed:** 9" not in facts
    assert [t.value for t in at.toast] == [
        f"The model was rebuilt ({HashtagRecommender.load(model).info()['created']}) and the "
        "page reloaded it."
    ]
    at.run()  # the notice is shown once
    assert not at.toast
