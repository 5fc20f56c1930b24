"""The page, driven headless with Streamlit's AppTest on the demo model built once per run.

What a visitor does: upload a photo (or pick an example), move the sliders, flip the spam
filter, upload something that is not a photo; and what a first run without a model shows.
"""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from conftest import TINY_BACKBONE, count_decodes, rewrite_manifest
from PIL import Image
from streamlit.testing.v1 import AppTest

from recommender import HashtagRecommender
from recommender.data.hashtags import load_blocklist
from recommender.ui import presentation as pres

APP = str(Path(__file__).resolve().parent.parent / "app.py")
CARD = re.compile(r"<b>(\d+)\.</b> similarity (\d\.\d{2}) · weight (\d+)%<br><span[^>]*>([^<]*)<")


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


def neighbour_grid(at: AppTest) -> str:
    """The HTML of the grid of nearest photos."""
    [grid] = [h.proto.body for h in at.main.get("html") if "neighbour-grid" in h.proto.body]
    return grid


def neighbour_ranks(at: AppTest) -> list[int]:
    return [int(m.group(1)) for m in CARD.finditer(neighbour_grid(at))]


def neighbour_cards(at: AppTest) -> list[tuple[str, str]]:
    """(similarity, weight %) as each neighbour's card shows them, in rank order."""
    return [m.group(2, 3) for m in CARD.finditer(neighbour_grid(at))]


def neighbour_tags(at: AppTest) -> list[str]:
    """Each neighbour card's hashtag line (HTML-escaped), in rank order."""
    return [m.group(4) for m in CARD.finditer(neighbour_grid(at))]


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
        photos / "food.jpg", n_neighbours=pres.N_DEFAULT, k=10, blocklist=load_blocklist()
    )


def count_embeddings(monkeypatch) -> list[int]:
    """The number of photos of each ``embed_many`` call from now on (the real one runs)."""
    calls: list[int] = []
    embed_many = HashtagRecommender.embed_many

    def counted(self, sources, **kw):
        calls.append(len(sources))
        return embed_many(self, sources, **kw)

    monkeypatch.setattr(HashtagRecommender, "embed_many", counted)
    return calls


# ------------------------------------------------------------------------------- tests
def test_first_view_describes_the_model_and_invites_a_photo(page, demo_model):
    sidebar = " ".join(md.value for md in page.sidebar.markdown)
    counts = demo_model.info()["counts"]
    assert "efficientnet" in sidebar
    assert pres.escape_markdown(f"{counts['images']:,}") in sidebar
    assert [s.value for s in page.sidebar.slider] == [pres.N_DEFAULT, pres.K_DEFAULT]
    assert [(s.min, s.max) for s in page.sidebar.slider] == [(1, 50), (1, 30)]
    assert page.sidebar.toggle[0].value is True
    assert "Drop photos" in page.info[0].value
    assert page.file_uploader[0].accept_multiple_files
    assert page.pills[0].options[:2] == ["animals", "architecture"]
    # The demo model has no evaluation: the sidebar says how to add one.
    assert any("--evaluate" in c.value for c in page.sidebar.code)


def test_upload_shows_hashtags_charts_and_neighbours(page, photos, expected):
    upload(page, "food.jpg", (photos / "food.jpg").read_bytes())
    assert not errors(page)
    assert top_block(page) == [f"#{t}" for t in expected.tags[:5]]
    assert all_block(page) == [f"#{t}" for t in expected.tags]
    assert "(Instagram takes at most 5)" in " ".join(md.value for md in page.main.markdown)
    assert len(page.get("plotly_chart")) == 2  # scores, and one hashtag's contributions
    assert page.selectbox[0].value == 0  # explains the best hashtag first
    assert neighbour_ranks(page) == list(range(1, pres.N_DEFAULT + 1))
    # Each card shows the neighbour's similarity and its share of every score.
    assert neighbour_cards(page) == [
        (f"{nb.similarity:.2f}", f"{nb.weight * 100:.0f}") for nb in expected.neighbours
    ]
    # Each thumbnail at most its own size (never blown up), two to a row on a phone.
    grid = neighbour_grid(page)
    assert grid.count("<img") == pres.N_DEFAULT and "max-width:100%" in grid
    # What the ImageNet head sees in the photo, as the library says
    assert expected.seen
    sees = pres.escape_markdown(pres.network_sees(expected.seen))
    assert sees in [c.value for c in page.main.caption]
    # Neighbour hashtags are data-set text: shown escaped, and the spam filter applies.
    blocked = load_blocklist()
    lines = neighbour_tags(page)
    assert len(lines) == pres.N_DEFAULT
    for line, nb in zip(lines, expected.neighbours, strict=True):
        assert line == html.escape(pres.neighbour_tags(nb.hashtags, blocked))


def test_the_note_under_the_photo_agrees_with_the_list(page, photos, demo_model):
    # the demo photo whose list and left-out tags hold the most category search tags
    blocked = load_blocklist()
    results = {
        p.name: demo_model.recommend(p, n_neighbours=pres.N_DEFAULT, k=10, blocklist=blocked)
        for p in sorted(photos.glob("*.jpg"))
    }
    name = max(results, key=lambda n: (len(results[n].search_tags), len(results[n].left_out)))
    result = results[name]
    assert result.left_out  # the default method hedges, and some demo photo has something to hedge
    # and it moves some demo photo's uncertain search tag below the top 5
    assert any(s.moved_down for r in results.values() for s in r.search_tags)
    upload(page, name, (photos / name).read_bytes())
    assert not errors(page)
    assert all_block(page) == [f"#{t}" for t in result.tags]
    note = pres.search_tags_line(result.search_tags)
    assert pres.escape_markdown(note) in [c.value for c in page.main.caption]
    # Every category search tag the list keeps is named as kept, with its probability; the
    # ones left out are not in the list, and are named as left out.
    is_search_tag = {t: c >= 0 for t, c in zip(demo_model.tags, demo_model.hedge.tag_category)}
    kept = [s for s in result.search_tags if s.kept]
    assert [s.tag for s in kept] == [t for t in result.tags if is_search_tag[t]]
    assert [s.tag for s in result.search_tags if not s.kept] == result.left_out
    assert not set(result.left_out) & set(result.tags)
    kept_part, _, left_part = note.partition("left out as unlikely")
    for s in kept:
        assert f"#{s.tag} {s.probability:.0%}" in kept_part
    for tag in result.left_out:
        assert f"#{tag} " in left_part
    # a tag moved below the top 5 is in the list, not in the 5 to paste
    for s in kept:
        if s.moved_down:
            assert f"#{s.tag}" not in top_block(page)
        assert (f"#{s.tag} {s.probability:.0%} (moved below the top 5)" in note) == s.moved_down


def test_sliders_rerank_without_recomputing_features(page, photos, monkeypatch):
    calls = count_embeddings(monkeypatch)
    # Trailing bytes after the JPEG: the same picture, a photo this server has not seen.
    data = (photos / "food.jpg").read_bytes() + b"sliders"
    upload(page, "food.jpg", data)
    assert calls == [1]

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
    assert calls == [1]  # every rerank reused the cached features

    # The same photo uploaded again under another name: still no recomputation.
    upload(page, "copy.jpg", data)
    assert calls == [1]


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
    unfiltered = demo_model.recommend(photos / "babies.jpg", n_neighbours=pres.N_DEFAULT, k=10)
    assert all_block(page) == [f"#{t}" for t in unfiltered.tags]
    assert set(unfiltered.tags) & blocked  # this photo does draw engagement bait


def test_an_iphone_heic_upload_is_read(page, photos, demo_model):
    """HEIC, the iPhone's default format (issue 23), made here with pillow-heif's encoder;
    the upload box offers it and the page answers as the library does for the same file."""
    pytest.importorskip("pillow_heif")
    import io

    from PIL import Image

    assert "heic" in page.file_uploader[0].proto.type or ".heic" in page.file_uploader[0].proto.type
    out = io.BytesIO()
    Image.open(photos / "food.jpg").save(out, "HEIF", quality=90)
    upload(page, "IMG_0042.HEIC", out.getvalue(), "image/heic")
    assert not errors(page)
    expected = demo_model.recommend(
        out.getvalue(), n_neighbours=pres.N_DEFAULT, k=10, blocklist=load_blocklist()
    )
    assert top_block(page) == [f"#{t}" for t in expected.tags[:5]]


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
    assert neighbour_ranks(page) == list(range(1, pres.N_DEFAULT + 1))
    animals = top_block(page)

    upload(page, "food.jpg", (photos / "food.jpg").read_bytes())
    assert page.pills[0].value is None  # the upload replaced the example
    food = top_block(page)
    assert food != animals

    page.pills[0].set_value("animals").run()
    assert top_block(page) == animals  # and picking an example replaces the upload
    assert not page.file_uploader[0].value


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
    rewrite_manifest(model, manifest)

    at = new_page(model, dataset_path, monkeypatch)
    sidebar = [md.value for md in at.sidebar.markdown]
    # In plain words first, the exact figures behind an expander.
    assert (
        "**16 of every 100** hashtags people really used are in its top 10 (the most "
        "popular tags alone: 9)." in sidebar
    )
    off_topic = "Its top 10 hold 1.7 tags of another category on average (like #food on a dog"
    assert any(line.startswith(off_topic) for line in sidebar)
    assert any(line.startswith("4 in 10 photos of a category known only") for line in sidebar)
    assert not at.sidebar.metric
    [expander] = at.sidebar.expander
    assert expander.label == "Exact figures"
    exact = " ".join(md.value for md in expander.markdown)
    esc = pres.escape_markdown
    assert f"{esc('recall@10')}: {esc('0.1631')}" in exact
    assert f"{esc('method')}: {esc('blend')}" in exact
    captions = " ".join(c.value for c in at.sidebar.caption)
    assert "2 random splits, 220 held-out posts each" in captions
    assert not any("--evaluate" in c.value for c in at.sidebar.code)


def test_evaluation_missing_a_baseline_is_still_shown(
    demo_build, dataset_path, tmp_path, monkeypatch
):
    model = tmp_path / "evaluated"
    shutil.copytree(demo_build[0], model)
    manifest = json.loads((model / "manifest.json").read_text(encoding="utf-8"))
    manifest["evaluation"] = {"recall@10": 0.2, "popularity_recall@10": None}
    rewrite_manifest(model, manifest)
    at = new_page(model, dataset_path, monkeypatch)
    assert "**20 of every 100** hashtags people really used are in its top 10." in [
        md.value for md in at.sidebar.markdown
    ]


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


def test_no_build_button_over_someones_folder(tmp_path, monkeypatch):
    """A web app's manifest.json is not a model: the page must not offer to replace it."""
    from conftest import someones_project, unchanged

    data = tiny_dataset(tmp_path / "posts")
    files = someones_project(tmp_path / "site")
    at = new_page(tmp_path / "site", data, monkeypatch)
    assert not at.button
    assert "will not build here" in at.warning[0].value
    assert unchanged(files)


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


@pytest.mark.tensorflow  # the page builds with the default backbone
def test_build_button_builds_a_model_and_the_page_uses_it(tmp_path, feature_cache_dir, monkeypatch):
    data = tiny_dataset(tmp_path / "posts")
    model = tmp_path / "model"
    at = new_page(model, data, monkeypatch)
    at.button[0].click().run(timeout=180)
    assert not at.exception and not at.error
    info = HashtagRecommender.load(model).info()
    assert info["counts"]["images"] == 9
    assert info["evaluation"]["splits"] == 5  # the demo model comes evaluated
    assert any("of every 100" in md.value for md in at.sidebar.markdown)
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
    tmp_path, feature_cache_dir, monkeypatch, tiny_backbone
):
    """A rebuild while the server runs: the next run shows the new model and says so."""
    from recommender.build import build_model
    from recommender.config import ALSParams
    from recommender.query.recommender import BuildConfig

    config = BuildConfig(backbone=TINY_BACKBONE, als=ALSParams(factors=4, iterations=2))
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

    # One model in memory, not every version: the old one is gone once the runs that
    # used it are (the page's variables live in main(), not in the script's globals,
    # which Streamlit keeps alive through the functions each run defines).
    import gc

    gc.collect()
    alive = [o for o in gc.get_objects() if isinstance(o, HashtagRecommender) and o.path == model]
    assert [r.info()["counts"]["images"] for r in alive] == [5]


# ------------------------------------------------------------------ many photos at once
def table_rows(at: AppTest) -> list[dict]:
    frame = at.dataframe[0].value
    return frame.to_dict("records")


def test_a_batch_gets_a_table_and_a_csv_matching_the_per_photo_results(
    page, photos, demo_model, monkeypatch
):
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    downloads = {}
    store = MemoryMediaFileStorage.load_and_get_id

    def keep(self, data, mimetype, kind, filename=None):
        downloads[filename] = data
        return store(self, data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", keep)
    batches = count_embeddings(monkeypatch)
    names = ["animals.jpg", "food.jpg", "notes.jpg", "travel.jpg"]
    files = [
        (name, (photos / name).read_bytes() + b"batch" if name != "notes.jpg" else b"not a photo")
        for name in names
    ]
    page.file_uploader[0].set_value([(name, data, "image/jpeg") for name, data in files]).run()
    assert not page.exception
    # new photos are embedded together, in one call; notes.jpg is refused when decoded
    assert batches == [3]

    expected = {
        name: demo_model.recommend(
            data, n_neighbours=pres.N_DEFAULT, k=10, blocklist=load_blocklist()
        )
        for name, data in files
        if name != "notes.jpg"
    }
    rows = table_rows(page)
    assert [r["name"] for r in rows] == names
    for row in rows:
        if row["name"] == "notes.jpg":
            assert "not an image" in row["more"] and not row["to paste"]
            assert not isinstance(row["photo"], str)  # no thumbnail, and no "None" text
            continue
        want = expected[row["name"]]
        assert row["to paste"] == pres.hashtag_line(want.tags[:5])
        assert row["more"] == pres.hashtag_line(want.tags[5:])
        assert row["photo"].startswith("data:image/jpeg;base64,")

    [download] = page.get("download_button")
    assert download.label == "Download CSV"
    table = list(csv.DictReader(downloads["hashtags.csv"].decode("utf-8").splitlines()))
    assert [r["photo"] for r in table] == names
    assert list(table[0]) == ["photo", "top5", "hashtags", "error"]
    for r in table:
        if r["photo"] == "notes.jpg":
            assert not r["top5"] and not r["hashtags"] and "not an image" in r["error"]
        else:
            assert r["top5"] == pres.hashtag_line(expected[r["photo"]].tags[:5])
            assert r["hashtags"] == pres.hashtag_line(expected[r["photo"]].tags)
            assert not r["error"]

    # No row selected: the newest photo's detail; a selected row shows its own.
    assert top_block(page) == [f"#{t}" for t in expected["travel.jpg"].tags[:5]]
    page.session_state["batch_table"] = {"selection": {"rows": [1], "columns": []}}
    page.run()
    assert top_block(page) == [f"#{t}" for t in expected["food.jpg"].tags[:5]]
    assert neighbour_ranks(page) == list(range(1, pres.N_DEFAULT + 1))
    page.session_state["batch_table"] = {"selection": {"rows": [2], "columns": []}}
    page.run()
    assert len(errors(page)) == 1 and "notes" in errors(page)[0]
    assert len(page.dataframe) == 1  # the table stays, to pick another row
    assert batches == [3]  # selecting rows never recomputes features


def test_a_single_photo_has_no_table(page, photos):
    upload(page, "food.jpg", (photos / "food.jpg").read_bytes())
    assert not page.dataframe and not page.get("download_button")


# --------------------------------------------------------------- how broad each tag is
def test_every_suggestion_carries_a_tier_label(page, demo_model, expected):
    page.pills[0].set_value("food").run()
    labels = [md.value for md in page.main.markdown if "-badge[" in md.value]
    line = labels[0]
    for tag in expected.hashtags:
        name = pres.escape_markdown("#" + tag.tag)
        label = "\u00a0" + pres.tier_badge(tag.tier)  # never wrapped away from its tag
        assert f"{name}**{label}" in line or f"{name}{label}" in line
    assert {t.tier for t in expected.hashtags} >= {"broad", "medium"}
    assert pres.breadth_legend(demo_model.breadth) in [c.value for c in page.main.caption]


def test_balanced_five_pastes_a_mix(page, demo_model, photos):
    from recommender.query.breadth import BALANCED_POOL, balanced

    page.pills[0].set_value("nature").run()
    plain = top_block(page)
    [toggle] = [t for t in page.sidebar.toggle if t.label.startswith("Balanced")]
    toggle.set_value(True).run()
    pool = demo_model.recommend(
        photos / "nature.jpg",
        n_neighbours=pres.N_DEFAULT,
        k=BALANCED_POOL,
        blocklist=load_blocklist(),
    )
    mix = balanced(pool.hashtags)
    assert [t.tier for t in mix].count("broad") == 2
    assert top_block(page) == [f"#{t.tag}" for t in mix] != plain
    assert all_block(page) == [f"#{t}" for t in pool.tags[:10]]  # all k: still the best 10


# -------------------------------------------------------------- against the original
def evaluated_copy(demo_build, tmp_path) -> Path:
    """The demo model with the evaluation `build --evaluate` writes (figures made up)."""
    model = tmp_path / "evaluated"
    shutil.copytree(demo_build[0], model)
    manifest = json.loads((model / "manifest.json").read_text(encoding="utf-8"))
    method = manifest["config"]["method"]["name"]
    manifest["evaluation"] = {
        "method": method,
        "recall@10": 0.1695,
        "beyond_recall@10": 0.1287,
        "popularity_recall@10": 0.0918,
        "splits": 5,
        "test_posts": 220,
        "methods": {
            "popularity": {"recall@10": 0.0918},
            method: {"recall@5": 0.1132, "recall@10": 0.1695},
            "original": {"recall@5": 0.0819, "recall@10": 0.1286},
        },
    }
    rewrite_manifest(model, manifest)
    return model


def numbered(markdown: str) -> list[tuple[str, bool]]:
    """(hashtag, in bold) of each line of a numbered hashtag list."""
    out = []
    for line in markdown.splitlines():
        m = re.match(r"^\d+\. (\*\*)?\\#(.+?)(\*\*)? :\w+-badge\[\w+\]$", line)
        assert m, line
        out.append((m.group(2).replace("\\", ""), bool(m.group(1))))
    return out


def test_comparison_with_the_original_method(
    demo_build, demo_model, dataset_path, photos, tmp_path, monkeypatch
):
    at = new_page(evaluated_copy(demo_build, tmp_path), dataset_path, monkeypatch)
    at.pills[0].set_value("food").run()
    assert not [m for m in at.main.metric]  # the comparison is off at first
    at.toggle(key="compare").set_value(True).run()
    assert not at.exception

    blocked = load_blocklist()
    default = demo_model.recommend(photos / "food.jpg", k=10, blocklist=blocked)
    original = demo_model.recommend(photos / "food.jpg", k=10, method="original")
    lists = [numbered(md.value) for md in at.main.markdown if md.value.startswith("1. ")]
    assert [[tag for tag, _ in got] for got in lists] == [default.tags, original.tags]
    shared = set(default.tags) & set(original.tags)
    assert 0 < len(shared) < 10
    for got in lists:
        assert {tag for tag, bold in got if bold} == shared
    assert [(m.label, m.value) for m in at.main.metric] == [
        ("recall@10", "0.170"),
        ("recall@10", "0.129"),
    ]
    # The original had no block list: the page says so.
    assert any("no block list" in c.value for c in at.main.caption)


def test_comparison_on_a_model_built_before_the_original_says_to_rebuild(
    demo_build, dataset_path, tmp_path, monkeypatch
):
    from recommender.store.arrays import ORIGINAL, read_parts, write_parts

    parts = read_parts(demo_build[0])
    for name in ORIGINAL:
        setattr(parts.arrays, name, None)
    write_parts(tmp_path / "old", parts)
    at = new_page(tmp_path / "old", dataset_path, monkeypatch)
    at.pills[0].set_value("food").run()
    at.toggle(key="compare").set_value(True).run()
    assert not at.exception and not at.error
    assert any("rebuild" in i.value for i in at.main.info)
    assert top_block(at)  # the page's own list is still there


def test_comparison_without_an_evaluation_shows_the_lists_only(page):
    page.pills[0].set_value("food").run()
    page.toggle(key="compare").set_value(True).run()
    assert len([md for md in page.main.markdown if md.value.startswith("1. ")]) == 2
    assert not page.main.metric


# ------------------------------------------------------------------------ share a view
def test_a_link_opens_the_same_view(demo_build, dataset_path, photos, demo_model, monkeypatch):
    monkeypatch.setenv("HASHTAG_MODEL", str(demo_build[0]))
    monkeypatch.setenv("HASHTAG_DATASET", str(dataset_path))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"example": "animals", "n": "12", "k": "7"})
    at.run()
    assert not at.exception
    assert [s.value for s in at.sidebar.slider] == [12, 7]
    assert at.pills[0].value == "animals"
    assert neighbour_ranks(at) == list(range(1, 13))
    want = demo_model.recommend(
        photos / "animals.jpg", n_neighbours=12, k=7, blocklist=load_blocklist()
    )
    assert all_block(at) == [f"#{t}" for t in want.tags]

    # Moving a control rewrites the link.
    at.sidebar.slider[1].set_value(9).run()
    assert at.query_params == {"example": "animals", "n": "12", "k": "9"}
    at.pills[0].set_value("food").run()
    assert at.query_params["example"] == "food"


def page_from_link(demo_build, dataset_path, monkeypatch, query: dict) -> AppTest:
    """The page on the demo model, opened from a link with ``query``."""
    monkeypatch.setenv("HASHTAG_MODEL", str(demo_build[0]))
    monkeypatch.setenv("HASHTAG_DATASET", str(dataset_path))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(query)
    at.run()
    return at


@pytest.mark.parametrize(
    "query",
    [
        {"example": "../../etc/passwd", "n": "999", "k": "-3"},
        {"example": "", "n": "five", "k": "1e3"},
    ],
)
def test_a_bad_link_is_ignored(demo_build, dataset_path, monkeypatch, query):
    at = page_from_link(demo_build, dataset_path, monkeypatch, query)
    assert not at.exception and not at.error
    assert [s.value for s in at.sidebar.slider] == [pres.N_DEFAULT, pres.K_DEFAULT]
    assert at.pills[0].value is None and "Drop photos" in at.info[0].value
    assert at.query_params == {"n": str(pres.N_DEFAULT), "k": str(pres.K_DEFAULT)}


@pytest.mark.parametrize("query", [{"n": "²"}, {"k": "³"}, {"n": "١٢", "k": "7"}])
def test_a_link_with_a_digit_int_cannot_read_is_ignored_with_a_note(
    demo_build, dataset_path, monkeypatch, query
):
    # '²'.isdigit() is True but int('²') raises: /?n=² crashed every load of the page.
    at = page_from_link(demo_build, dataset_path, monkeypatch, query)
    assert not at.exception and not at.error
    notes = [t.value for t in at.toast]
    assert any("was ignored" in note for note in notes), notes


def test_each_upload_is_decoded_once_and_the_limits_are_shown(page, photos, monkeypatch):
    from recommender.ui import uploads

    assert any(uploads.limits_line() in c.value for c in page.caption)
    calls = count_decodes(monkeypatch)
    upload(page, "food.jpg", (photos / "food.jpg").read_bytes() + b"decode-once")
    assert len(calls) == 1 and not errors(page)  # before: the model, then the preview
    page.sidebar.slider[0].set_value(12).run()
    assert len(calls) == 1  # a rerun decodes nothing
