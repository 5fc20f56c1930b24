"""Hashtag normalisation, caption extraction and the block list."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender.data.hashtags import (
    BLOCKLIST_PATH,
    TagStats,
    extract_hashtags,
    load_blocklist,
    normalize_tag,
    normalize_tags,
)
from recommender.errors import DatasetError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("cafe\u0301", "café"),  # NFC composes e + combining acute
        ("café", "café"),
        ("#Food", "food"),
        ("  #Travel \n", "travel"),
        ("###Beach", "beach"),
        ("FOOD", "food"),
        ("snake_case", "snake_case"),
        ("f4f", "f4f"),
        ("2019summer", "2019summer"),
        ("東京タワー", "東京タワー"),
        ("Москва", "москва"),
        ("हिन्दी", "हिन्दी"),  # Devanagari vowel signs are combining marks
        ("x" * 100, "x" * 100),
    ],
)
def test_normalize_tag_keeps_real_hashtags(raw, expected):
    assert normalize_tag(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "#",
        "##a",
        "f",
        "#F",
        "123",
        "#2019",
        "<script>",
        "<script>alert(1)</script>",
        "[x](javascript:alert(1))",
        "a\u200fb",  # right-to-left mark
        "a\u200db",  # zero-width joiner
        "a\u202eb",  # right-to-left override
        "a\ufe0fb",  # variation selector
        "\u0301ab",  # combining mark with nothing to combine with
        "a\x00b",
        "a\nb",
        "two words",
        "hello!",
        "foo-bar",
        "food🍕",
        "x" * 101,
    ],
)
def test_normalize_tag_rejects_non_hashtags(raw):
    assert normalize_tag(raw) is None


def test_normalize_tag_rejects_non_strings():
    assert normalize_tag(None) is None  # type: ignore[arg-type]
    assert normalize_tag(42) is None  # type: ignore[arg-type]


def test_normalize_tags_dedupes_in_first_seen_order_and_counts():
    stats = TagStats()
    tags = normalize_tags(["#Food", "yum", "<b>", "FOOD", "cafe\u0301", "café", "x"], stats)
    assert tags == ("food", "yum", "café")
    assert stats.kept == 3
    assert stats.dropped_invalid == 2
    assert stats.duplicates == 2
    assert stats.examples_dropped == ["<b>", "x"]


def test_normalize_tags_accumulates_and_caps_examples():
    stats = TagStats()
    normalize_tags([f"bad tag {i}" for i in range(8)], stats)
    normalize_tags([f"worse tag {i}" for i in range(8)] + ["ok"], stats)
    assert stats.dropped_invalid == 16
    assert stats.kept == 1
    assert len(stats.examples_dropped) == 10
    assert stats.examples_dropped[0] == "bad tag 0"
    assert stats.examples_dropped[-1] == "worse tag 1"


def test_normalize_tags_without_stats_and_empty():
    assert normalize_tags([]) == ()
    assert normalize_tags(iter(["a", "bb", "BB"])) == ("bb",)


def test_tag_stats_add():
    total = TagStats(1, 2, 3, ["a"])
    total.add(TagStats(10, 20, 30, ["b"] * 12))
    assert (total.kept, total.dropped_invalid, total.duplicates) == (11, 22, 33)
    assert total.examples_dropped == ["a"] + ["b"] * 9


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ("Sunny day at the beach! #Beach #sun", ["Beach", "sun"]),
        ("#food,#yum.#vegan!", ["food", "yum", "vegan"]),
        ("so good 🍕#pizza🍕 #love❤️", ["pizza", "love"]),
        ("line one\n#first\n\n#second\tand #third_tag", ["first", "second", "third_tag"]),
        ("#a#b #cc##dd", ["a", "b", "cc", "dd"]),
        ("no tags here # just a hash", []),
        ("#food #Food #food", ["food", "Food", "food"]),
        ("東京 #東京タワー #café", ["東京タワー", "café"]),
        ("#f4f #like4like", ["f4f", "like4like"]),
        ("(#wrapped) [#braces] #end", ["wrapped", "braces", "end"]),
        ("", []),
    ],
)
def test_extract_hashtags(caption, expected):
    assert extract_hashtags(caption) == expected


def test_extract_then_normalize_drops_invalid():
    stats = TagStats()
    tags = normalize_tags(extract_hashtags("#Food #a #123 #food #Yum\u200f"), stats)
    assert tags == ("food", "yum")
    assert stats.dropped_invalid == 2
    assert stats.duplicates == 1


def test_packaged_blocklist():
    assert BLOCKLIST_PATH.is_file()
    blocked = load_blocklist()
    assert 40 <= len(blocked) <= 80
    for tag in ("follow4follow", "f4f", "like4like", "l4l", "instagood", "photooftheday"):
        assert tag in blocked
    assert all(normalize_tag(tag) == tag for tag in blocked)
    for content_tag in ("food", "travel", "nature", "selfie", "wedding"):
        assert content_tag not in blocked


def test_user_blocklist_adds_to_packaged(tmp_path):
    user = tmp_path / "mine.txt"
    user.write_text(
        "# my own spam tags\n"
        "\n"
        "#BuyNow\n"
        "  cheapfollowers  \n"
        "## also a comment\n"
        "#\n"
        "not a tag!\n"
        "cafe\u0301\n",
        encoding="utf-8",
    )
    other = tmp_path / "other.txt"
    other.write_text("\ufeffspamlink\n", encoding="utf-8")  # BOM from a Windows editor
    blocked = load_blocklist([user, str(other)])
    assert {"buynow", "cheapfollowers", "café", "spamlink"} <= blocked
    assert "f4f" in blocked
    assert "my" not in blocked and "also" not in blocked
    assert len(blocked) == len(load_blocklist()) + 4


def test_missing_user_blocklist_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="block list"):
        load_blocklist([tmp_path / "nope.txt"])


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_normalize_tag_properties(raw):
    tag = normalize_tag(raw)
    if tag is not None:
        assert 2 <= len(tag) <= 100
        assert tag == unicodedata.normalize("NFC", tag)
        assert normalize_tag(tag) == tag
        assert normalize_tag(f" ##{tag} ") == tag
        assert not tag.isdigit()
        assert all(ch.isalnum() or ch == "_" or unicodedata.category(ch) in "MnMc" for ch in tag)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_extract_hashtags_never_crashes(caption):
    tags = extract_hashtags(caption)
    assert all(tag and "#" not in tag and not any(ch.isspace() for ch in tag) for tag in tags)
    assert len(tags) <= caption.count("#")
