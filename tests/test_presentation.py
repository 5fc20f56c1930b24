"""The page's text and figure helpers, on small hand-made results whose display is known."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from recommender import ImageError
from recommender.query.recommender import Neighbour, SearchTag, TagScore
from recommender.ui import presentation as pres

HOSTILE = [
    "[x](javascript:alert(1))",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "**bold** _em_ `code` ~~del~~",
    "# heading\n- item",
    "$x^2$ :red[colour] :material/home:",
    "https://example.com www.example.com",
    "back\\slash",
]


def _unescape(markdown: str) -> str:
    """A slow, obvious reading of CommonMark backslash escapes."""
    out, i = [], 0
    while i < len(markdown):
        if markdown[i] == "\\" and i + 1 < len(markdown):
            out.append(markdown[i + 1])
            i += 2
        else:
            out.append(markdown[i])
            i += 1
    return "".join(out)


@pytest.mark.parametrize("text", HOSTILE)
def test_escape_markdown_leaves_no_markup(text):
    escaped = pres.escape_markdown(text)
    # Every ASCII punctuation character is escaped, so no syntax can start...
    assert re.search(r"(?<!\\)[\[\]()<>*_`~#$:!|]", escaped.replace("\\\\", "")) is None
    # ...no line break can open a block...
    assert "\n" not in escaped
    # ...and what is displayed is the original text.
    assert _unescape(escaped).replace(pres.WORD_JOINER, "") == text.replace("\n", " ")
    # A bare-URL autolinker finds no "www.", "https:" or "a@b": a word joiner sits in each.
    for char in ".:@":
        assert escaped.count(f"{pres.WORD_JOINER}\\{char}") == text.count(char)


def test_escape_markdown_keeps_words_and_unicode():
    assert pres.escape_markdown("café_au_lait 東京") == "café\\_au\\_lait 東京"
    assert pres.escape_markdown("a.b") == f"a{pres.WORD_JOINER}\\.b"


def test_plotly_text_escapes_html():
    assert pres.plotly_text('<a href="javascript:x">#t</a>') == (
        "&lt;a href=&quot;javascript:x&quot;&gt;#t&lt;/a&gt;"
    )


def test_hashtag_line():
    assert pres.hashtag_line(["food", "bbq", "café"]) == "#food #bbq #café"
    assert pres.hashtag_line([]) == ""


def _result():
    tags = [TagScore(f"tag{i}", 1.0 - i / 10, (0.6 - i / 20, 0.4 - i / 20, 0.0)) for i in range(7)]
    neighbours = [
        Neighbour(i, f"data/x/{i}.jpg", str(i), 0.9 - i / 10, 1 / 3, ("tag0",)) for i in range(3)
    ]
    return tags, neighbours


def test_score_figure_orders_marks_and_escapes():
    tags, _ = _result()
    tags.append(TagScore("<b>x</b>", 0.1, (0.1, 0.0, 0.0)))
    fig = pres.score_figure(tags)
    bar = fig.data[0]
    assert list(bar.x) == [t.score for t in tags]
    assert list(bar.y)[:2] == ["#tag0", "#tag1"]
    assert list(bar.y)[-1] == "#&lt;b&gt;x&lt;/b&gt;"
    colours = list(bar.marker.color)
    assert colours[:5] == [pres.HIGHLIGHT] * 5 and set(colours[5:]) == {pres.MUTED}
    assert "%{x:.3f}" in bar.hovertemplate
    assert fig.layout.yaxis.autorange == "reversed"  # best at the top


def test_contribution_figure_labels_neighbours_by_rank_and_similarity():
    tags, neighbours = _result()
    fig = pres.contribution_figure(tags[0], neighbours)
    bar = fig.data[0]
    assert list(bar.y) == ["1. sim 0.90", "2. sim 0.80", "3. sim 0.70"]
    assert list(bar.x) == list(tags[0].contributions)
    assert [c[0] for c in bar.customdata] == pytest.approx([0.6, 0.4, 0.0])
    assert "#tag0" in fig.layout.xaxis.title.text


def test_contribution_figure_shows_the_image_prior():
    neighbours = _result()[1]
    tag = TagScore("travel", 1.0, (0.3, 0.2, 0.0), prior=0.5)
    bar = pres.contribution_figure(tag, neighbours).data[0]
    assert list(bar.y)[-1] == pres.PRIOR_LABEL
    assert sum(bar.x) == pytest.approx(tag.score)  # the bars add up to the score
    assert [c[0] for c in bar.customdata] == pytest.approx([0.3, 0.2, 0.0, 0.5])
    assert list(bar.marker.color)[-1] == pres.PRIOR


def test_contribution_figure_shows_what_the_network_sees_as_its_own_bar():
    neighbours = _result()[1]
    tag = TagScore("burger", 1.0, (0.3, 0.1, 0.0), prior=0.2, content=0.4)
    bar = pres.contribution_figure(tag, neighbours).data[0]
    assert list(bar.y)[-2:] == [pres.PRIOR_LABEL, pres.CONTENT_LABEL]
    assert list(bar.marker.color)[-1] == pres.CONTENT
    assert sum(bar.x) == pytest.approx(tag.score)  # still adds up
    plain = pres.contribution_figure(TagScore("t", 0.5, (0.3, 0.2, 0.0)), neighbours).data[0]
    assert pres.CONTENT_LABEL not in list(plain.y)


def test_network_sees_names_only_classes_it_is_sure_of():
    sure = pres.SEEN_SURE
    assert pres.network_sees([("cheeseburger", 0.8312), ("hotdog", sure / 2)]) == (
        "the network sees: cheeseburger (83%)"
    )
    assert pres.network_sees([("ice lolly", sure - 0.01), ("bib", 0.05)]) == (
        "the network is not sure (maybe: ice lolly)"
    )
    assert pres.network_sees([]) == ""


def test_contribution_figure_of_zero_score():
    fig = pres.contribution_figure(TagScore("t", 0.0, (0.0, 0.0)), _result()[1][:2])
    assert [c[0] for c in fig.data[0].customdata] == [0.0, 0.0]


def test_model_facts_reads_what_is_there():
    info = {
        "dataset": {"path": "/data/instagram-2019", "format": "instagram2019"},
        "backbone": {"name": "efficientnet_lite0", "dim": 1280},
        "counts": {"posts": 4499, "images": 3281, "hashtags": 14633},
        "config": {"method": {"name": "blend"}},
        "created": "2026-01-02T03:04:05+00:00",
    }
    assert pres.model_facts(info) == [
        ("Data set", "instagram-2019 (instagram2019)"),
        ("Backbone", "efficientnet_lite0, 1280-d features"),
        ("Posts", "4,499"),
        ("Images indexed", "3,281"),
        ("Hashtags", "14,633"),
        ("Scoring", "blend"),
        ("Built", "2026-01-02"),
    ]
    assert pres.model_facts({}) == []
    assert pres.model_facts({"dataset": "oops", "counts": {"posts": "many"}}) == []


FULL = {"method": "blend", "recall@10": 0.41, "popularity_recall@10": 0.18}
SUMMARY = {"method": "blend", "recall": 0.41, "popularity": 0.18, "k": 10}
ABSENT = {
    "beyond": None,
    "splits": None,
    "test_posts": None,
    "off_topic": None,
    "off_topic_top": None,
    "original": None,
    "own_category_hit": None,
}


def test_evaluation_summary_shapes():
    assert pres.evaluation_summary({"evaluation": FULL}) == {**SUMMARY, **ABSENT}


def test_evaluation_summary_as_build_writes_it():
    # The "evaluation" entry of a manifest written by `build --evaluate 2`.
    written = {
        "method": "profiles_prior",
        "recall@10": 0.1624,
        "beyond_recall@10": 0.1253,
        "popularity_recall@10": 0.0879,
        "off_topic@5": 0.9012,
        "off_topic@10": 1.712,
        "own_category_hit@10": 0.4167,
        "splits": 2,
        "test_posts": 220,
        "seconds": 7.3,
        "methods": {"original": {"recall@10": 0.1523}},
    }
    summary = pres.evaluation_summary({"evaluation": written})
    assert summary == {
        "method": "profiles_prior",
        "recall": 0.1624,
        "beyond": 0.1253,
        "popularity": 0.0879,
        "off_topic": 1.712,
        "off_topic_top": 0.9012,
        "original": 0.1523,
        "own_category_hit": 0.4167,
        "splits": 2,
        "test_posts": 220,
        "k": 10,
    }
    # In words a stakeholder reads at a glance; the exact figures stay available.
    assert pres.evaluation_words(summary) == [
        "**16 of every 100** hashtags people really used are in its top 10 (the most "
        "popular tags alone: 9; the original project: 15).",
        "Its 5 to paste hold 0.9 tags of another category on average (like #food on a dog photo).",
        "4 in 10 photos of a category known only by its name (like #babies) get that name "
        "in the top 10.",
    ]
    figures = dict(pres.exact_figures(summary))
    assert figures["recall@10"] == "0.1624" and figures["off_topic@5"] == "0.9012"
    assert figures["method"] == "profiles_prior" and figures["test posts"] == "220"
    older = {**summary, "off_topic_top": None, "original": None, "own_category_hit": None}
    assert pres.evaluation_words(older)[1].startswith("Its top 10 hold 1.7 tags")


@pytest.mark.parametrize("evaluation", [None, {}, "done", [1, 2], {"recall@10": "high"}])
def test_evaluation_summary_absent_or_unusable(evaluation):
    info = {} if evaluation is None else {"evaluation": evaluation}
    assert pres.evaluation_summary(info) is None


def test_evaluation_summary_without_baseline():
    summary = pres.evaluation_summary({"evaluation": {"recall@10": 0.3, "splits": "x"}})
    assert summary == {**ABSENT, "method": None, "recall": 0.3, "popularity": None, "k": 10}


def test_build_progress_spans_the_stages_in_order():
    assert pres.build_progress("features", 0, 100)[0] == 0.0
    mid, text = pres.build_progress("features", 50, 100)
    assert text == "Extracting image features: 50 of 100 images"
    evaluating, text = pres.build_progress("evaluate", 3, 10)
    assert text == "Evaluating on held-out posts: 3 of 10 steps"
    training = pres.build_progress("als", 1, 20)[0]
    assert 0.0 < mid < pres.build_progress("features", 100, 100)[0] <= evaluating < training
    trained, text = pres.build_progress("als", 20, 20)
    assert text == "Training the hashtag model: 20 of 20 iterations"
    prior, text = pres.build_progress("prior", 50, 100)
    assert text == "Fitting the image prior: 50 of 100 images"
    assert training < trained < prior < pres.build_progress("write", 1, 2)[0]
    assert pres.build_progress("write", 2, 2) == (
        1.0,
        "Indexing and writing the model: 2 of 2 steps",
    )
    assert pres.build_progress("features", 0, 0)[0] == pres.build_progress("evaluate", 0, 1)[0]
    assert 0.0 <= pres.build_progress("other", 5, 3)[0] <= 1.0


def test_preview_jpeg_fits_and_is_upright():
    buf = io.BytesIO()
    Image.new("RGB", (2000, 1000), (200, 30, 90)).save(buf, "PNG")
    preview = Image.open(io.BytesIO(pres.preview_jpeg(buf.getvalue(), max_side=300)))
    assert preview.format == "JPEG" and preview.size == (300, 150)


def test_preview_jpeg_refuses_what_is_not_an_image():
    with pytest.raises(ImageError):
        pres.preview_jpeg(b"<html>not an image</html>")


def test_example_photos(tmp_path):
    for name in ("b.JPG", "a.png", "c.webp", "notes.txt", "d.gif"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.jpg").mkdir()
    assert [p.name for p in pres.example_photos(tmp_path)] == ["a.png", "b.JPG", "c.webp"]
    assert pres.example_photos(tmp_path / "missing") == []


# ------------------------------------------------------------------ tiers, batches, links
def _tag(name: str, tier: str = "niche", posts: int = 1) -> TagScore:
    return TagScore(name, 1.0, (1.0,), posts=posts, tier=tier)


def test_tier_labels_are_badges_and_hashtags_stay_text():
    line = pres.tiered_line([_tag("food", "broad"), _tag("a_b_", "niche")], marked=["a_b_"])
    # a no-break space keeps each label on the line of its hashtag
    assert (
        line == "\\#food\u00a0:orange-badge[broad] \u2002**\\#a\\_b\\_**\u00a0:green-badge[niche]"
    )
    assert pres.tier_badge("") == ""
    hostile = pres.ranked_list([_tag("x](javascript:alert(1))", "medium")])
    assert hostile.startswith("1. \\#x\\]\\(javascript") and "(1)" not in hostile


def test_tier_ranges_in_words():
    from recommender.query.breadth import Breadth

    breadth = Breadth(broad_min=108, medium_min=15)
    assert [pres.tier_range(breadth, t) for t in ("broad", "medium", "niche")] == [
        "108+",
        "15\u2013107",
        "1\u201314",
    ]
    legend = pres.breadth_legend(breadth)
    assert legend == (
        "Posts using the hashtag: :orange-badge[broad]\u00a0108+ \u2002"
        ":blue-badge[medium]\u00a015\u2013107 \u2002:green-badge[niche]\u00a01\u201314"
    )
    tiny = Breadth(broad_min=3, medium_min=2)
    assert [pres.tier_range(tiny, t) for t in ("broad", "medium", "niche")] == [
        "3+",
        "2",
        "1",
    ]


def test_photo_rows_and_their_csv():
    from recommender.query.recommender import Recommendation

    tags = [_tag(f"t{i}", "broad" if i < 4 else "niche") for i in range(8)]
    result = Recommendation(tags, [], "m")
    rows = [
        pres.photo_row('a, "quoted".jpg', result, k=6),
        pres.photo_row("bad.jpg", None, "This file is not an image."),
        pres.photo_row("mix.jpg", result, k=6, balanced_mix=True),
    ]
    assert rows[0].top == ("t0", "t1", "t2", "t3", "t4") and len(rows[0].hashtags) == 6
    assert rows[2].top == ("t0", "t1", "t4", "t5", "t6")
    data = pres.batch_csv(rows).decode("utf-8")
    import csv

    parsed = list(csv.DictReader(data.splitlines()))
    assert parsed == [
        {
            "photo": 'a, "quoted".jpg',
            "top5": "#t0 #t1 #t2 #t3 #t4",
            "hashtags": "#t0 #t1 #t2 #t3 #t4 #t5",
            "error": "",
        },
        {"photo": "bad.jpg", "top5": "", "hashtags": "", "error": "This file is not an image."},
        {
            "photo": "mix.jpg",
            "top5": "#t0 #t1 #t4 #t5 #t6",
            "hashtags": "#t0 #t1 #t2 #t3 #t4 #t5",
            "error": "",
        },
    ]


def test_data_url_round_trips():
    import base64

    jpeg = pres.preview_jpeg(_photo_bytes(), max_side=32)
    url = pres.data_url(jpeg)
    assert url.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == jpeg
    assert pres.data_url(b"") == ""


def _photo_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (80, 40), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("query", "view"),
    [
        ({"example": "food", "n": "12", "k": "7"}, {"example": "food", "n": 12, "k": 7}),
        ({"example": ["food", "cars"], "n": ["3"]}, {"example": "food", "n": 3}),
        ({"example": "../etc/passwd", "n": "0", "k": "31"}, {}),
        ({"n": " 50 ", "k": "1"}, {"n": 50, "k": 1}),
        ({"n": "-1", "k": "2.5", "other": "x"}, {}),
        ({}, {}),
    ],
)
def test_view_from_query_keeps_only_valid_parts(query, view):
    assert pres.view_from_query(query, ["food", "travel"]) == view


def test_view_round_trips_through_the_query():
    query = pres.view_to_query("travel", 9, 4)
    assert query == {"example": "travel", "n": "9", "k": "4"}
    assert pres.view_from_query(query, ["travel"]) == {"example": "travel", "n": 9, "k": 4}
    assert pres.view_to_query(None, 5, 10) == {"n": "5", "k": "10"}


def test_method_recall_from_the_evaluation():
    info = {
        "evaluation": {
            "method": "blend",
            "recall@10": 0.2,
            "methods": {"original": {"recall@10": 0.12}, "blend": {"recall@10": 0.2}},
        }
    }
    assert pres.method_recall(info, "original") == 0.12
    assert pres.method_recall(info, "blend") == 0.2
    assert pres.method_recall({"evaluation": {"method": "blend", "recall@10": 0.3}}, "blend") == 0.3
    assert pres.method_recall(info, "knn_vote") is None
    assert pres.method_recall({}, "original") is None
    assert pres.method_recall({"evaluation": {"methods": "junk"}}, "original") is None


def test_memo_forgets_the_least_recently_used():
    memo = pres.Memo(max_items=2)
    memo.put("a", 1)
    memo.put("b", 2)
    assert memo.get("a") == 1  # a is now the most recent
    memo.put("c", 3)
    assert (memo.get("a"), memo.get("b"), memo.get("c"), len(memo)) == (1, None, 3, 2)


def test_neighbour_cards_filter_spam_and_escape():
    tags = ("dog", "likeforlike", "puppy", "l4l", "cute")
    assert pres.neighbour_tags(tags, {"likeforlike", "l4l"}) == "#dog #puppy #cute"
    assert pres.neighbour_tags(tags, None, shown=2) == "#dog #likeforlike and 3 more"
    card = pres.NeighbourCard(1, b"\xff\xd8jpeg", 0.8123, 0.25, "#<script>")
    grid = pres.neighbour_grid_html([card, pres.NeighbourCard(2, b"", 0.5, 0.1, "#x")])
    assert grid.count("<img") == 1 and "data:image/jpeg;base64," in grid
    assert "<script>" not in grid and "&lt;script&gt;" in grid
    assert "similarity 0.81 · weight 25%" in grid
    assert "max-width:100%" in grid  # a thumbnail is never shown larger than it is


def test_batch_table_has_no_none_text_and_says_why_a_photo_failed():
    rows = [
        pres.PhotoRow("a.jpg", ("x", "y"), ("x", "y", "z")),
        pres.PhotoRow("bad.jpg", error="not an image"),
    ]
    table = pres.batch_table(["a.jpg", "bad.jpg"], rows, [b"\xff\xd8", b""])
    assert table["photo"][0].startswith("data:image/jpeg") and table["photo"][1] is None
    assert table["to paste"] == ["#x #y", ""]
    assert table["more"] == ["#z", "not an image"]
    long = "This file is not an image in a supported format (JPEG, PNG, WebP, GIF). Try another."
    assert pres.short_reason(long) == "This file is not an image in a supported format"
    assert len(pres.short_reason("x" * 200)) == pres.TABLE_REASON_CHARS
    assert "None" not in repr(table["to paste"] + table["more"])


@pytest.mark.parametrize("value", ["²", "³", "١٢", "½", "1e3", "99999999999999999999"])
def test_a_link_with_a_unicode_or_huge_number_is_ignored_with_a_note(value):
    # '²'.isdigit() is True but int('²') raises: /?n=² crashed every load of the page.
    for key in ("n", "k"):
        assert pres.view_from_query({key: value}, []) == {}
        (note,) = pres.query_notes({key: value}, [])
        assert f"{key}=" in note and "ignored" in note


def test_query_notes_name_each_ignored_part():
    notes = pres.query_notes({"n": "0", "example": "nope", "zzz": "1", "k": "7"}, ["food"])
    assert len(notes) == 3
    assert pres.query_notes({"n": "5", "example": "food", "embed": "true"}, ["food"]) == []


def test_the_search_tags_note_says_what_was_kept_moved_and_left_out_and_why():
    tags = [
        SearchTag("food", 0.957, True),
        SearchTag("babies", 0.414, True, moved_down=True),
        SearchTag("travel", None, True),  # a category too thin to calibrate
        SearchTag("animals", 0.031, False),
        SearchTag("animal", 0.031, False),
    ]
    assert pres.search_tags_line(tags) == (
        "search tags of the data set's categories, by how likely a post like this photo "
        "carries them: kept #food 96%, #babies 41% (moved below the top 5), #travel not "
        "calibrated; left out as unlikely #animals 3%, #animal 3%"
    )
    assert pres.search_tags_line(tags[:1]).endswith("carries them: kept #food 96%")
    assert pres.search_tags_line(tags[3:]).endswith(
        "carries them: left out as unlikely #animals 3%, #animal 3%"
    )
    assert pres.search_tags_line([]) == ""


def test_the_score_chart_says_which_bar_was_moved_down():
    tags = [TagScore("food", 0.9, ()), TagScore("babies", 0.8, (), moved_down=True)]
    bar = pres.score_figure(tags).data[0]
    assert list(bar.x) == [0.9, 0.8]  # in the list's order, each with its own score
    assert bar.customdata[0] == "" and "moved below the top 5" in bar.customdata[1]
