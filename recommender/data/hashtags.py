"""Hashtag normalisation, extraction from captions, and the spam block list.

Every hashtag that enters the recommender goes through :func:`normalize_tag`, so a tag has
exactly one spelling everywhere: NFKC, lowercase, without ``#``.

What a hashtag is (twitter-text's grammar, where Instagram differs Instagram's) is
:func:`extract_hashtags`'s docstring.

Normalising (:func:`normalize_tag`): NFKC (full-width ``ｔｏｋｙｏ`` meets ``tokyo``),
``İ`` lowercased to ``i`` (``#İstanbul`` meets ``#istanbul``; Python's ``lower`` would add a
combining dot), lowercase, NFC. A joiner is kept only inside a word of a script that spells
with it (Arabic to Sinhala); elsewhere it is invisible and removed. Instagram allows at most
:data:`INSTAGRAM_MAX_HASHTAGS` hashtags on a post, so no more are recommended.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from recommender.errors import DatasetError

MAX_TAG_LENGTH = 150
"""Longest hashtag kept, in characters (instaloader's limit; longer runs are dropped)."""

INSTAGRAM_MAX_HASHTAGS = 30
"""Instagram's long-standing cap of hashtags on a post (older posts carry up to this many;
new posts take 5 since December 2025): the most ``recommend -k`` and the page's k give."""

MAX_DROPPED_EXAMPLES = 10
_EXAMPLE_CHARS = 60

# Package data (recommender/assets/*): found through importlib.resources, so it is there
# wherever the package is installed, not only in a checkout.
BLOCKLIST_PATH = resources.files("recommender") / "assets" / "blocklist.txt"

HASH_SIGNS = "#\uff03"
_ZWNJ, _ZWJ = "\u200c", "\u200d"
_JOINERS = _ZWNJ + _ZWJ
# twitter-text's HASHTAG_SPECIAL_CHARS (Regex.java), joiners apart.
_SPECIAL = frozenset(
    "_\ua67e\u05be\u05f3\u05f4\uff5e\u301c\u309b\u309c\u30a0\u30fb\u3003\u0f0b\u0f0c\u00b7"
)
# Nonspacing marks that render as nothing on their own: variation selectors, the combining
# grapheme joiner, Mongolian free variation selectors, Khmer inherent vowels.
_INVISIBLE_MARKS = frozenset(
    [0x034F, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F]
    + list(range(0xFE00, 0xFE10))
    + list(range(0xE0100, 0xE01F0))
)
# A URL (with a scheme, www., or a bare domain and a path): a '#' in it is a fragment.
_URL = re.compile(
    r"(?:[A-Za-z][A-Za-z0-9+.-]*://|www\.)\S+"
    r"|(?<![\w@.])(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}/\S*"
)


def _is_letter(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "LM" and ord(ch) not in _INVISIBLE_MARKS


def _is_tag_char(ch: str) -> bool:
    """Whether ``ch`` may be part of a hashtag (twitter-text's letters, numerals, specials)."""
    if ch in _SPECIAL or ch in _JOINERS:
        return True
    category = unicodedata.category(ch)
    if category[0] == "M":
        return ord(ch) not in _INVISIBLE_MARKS
    return category[0] == "L" or category == "Nd"


def _joins_words(ch: str) -> bool:
    """Whether a joiner after ``ch`` is part of the spelling (Arabic ... Sinhala scripts)."""
    code = ord(ch)
    return 0x0600 <= code <= 0x0DFF or 0xFB50 <= code <= 0xFDFF or 0xFE70 <= code <= 0xFEFF


def _clean_joiners(tag: str) -> str:
    """Keep a joiner only between two letters of a script that spells with joiners."""
    if _ZWNJ not in tag and _ZWJ not in tag:
        return tag
    out: list[str] = []
    for i, ch in enumerate(tag):
        if ch in _JOINERS:
            before = next((c for c in reversed(out) if c not in _JOINERS), "")
            after = next((c for c in tag[i + 1 :] if c not in _JOINERS), "")
            keep = before and after and _is_letter(after) and _joins_words(before)
            if not keep or out[-1:] == [ch]:
                continue
        out.append(ch)
    return "".join(out)


def _is_tag_body(text: str) -> bool:
    if not text or unicodedata.category(text[0])[0] == "M":
        return False  # a combining mark with nothing to combine with
    return all(_is_tag_char(ch) for ch in text) and any(_is_letter(ch) for ch in text)


def _nfkc(text: str) -> str:
    """NFKC, except for twitter-text's special characters (NFKC turns ``～`` into ``~``)."""
    if not any(ch in _SPECIAL for ch in text):
        return unicodedata.normalize("NFKC", text)
    pieces = re.split(f"([{''.join(sorted(_SPECIAL))}])", text)
    return "".join(p if p in _SPECIAL else unicodedata.normalize("NFKC", p) for p in pieces)


def normalize_tag(raw: str) -> str | None:
    """Return the canonical spelling of a hashtag, or None if it cannot be a real one.

    Parameters
    ----------
    raw : str
        A hashtag as found in the data, with or without leading ``#`` (or ``＃``).

    Returns
    -------
    str or None
        The tag in Unicode NFKC, stripped of surrounding whitespace and leading hash signs,
        lowercased (``İ`` to ``i``), joiners kept only inside words of scripts that spell
        with them. None when the result is empty, one ASCII character, has no letter (only
        digits or ``_``), is longer than :data:`MAX_TAG_LENGTH`, or holds a character that
        cannot be in a hashtag (see the module's docstring): markup, URLs, punctuation,
        spaces, emoji, control characters, bidi marks.
    """
    if not isinstance(raw, str):
        return None
    tag = _nfkc(raw).strip().lstrip(HASH_SIGNS)
    tag = tag.replace("\u0130", "i").lower()
    tag = unicodedata.normalize("NFC", _clean_joiners(tag))  # lower can leave a decomposed pair
    if len(tag) > MAX_TAG_LENGTH or (len(tag) < 2 and (not tag or tag.isascii())):
        return None
    return tag if _is_tag_body(tag) else None


# Real data repeats its tags (and a hostile manifest repeats a few thousand of them in every
# post): the same raw spelling is normalised once.
_normalize_cached = functools.lru_cache(maxsize=1 << 16)(normalize_tag)


@dataclass
class TagStats:
    """Running counts of what :func:`normalize_tags` kept and dropped.

    Attributes
    ----------
    kept : int
        Tags kept (after deduplication).
    dropped_invalid : int
        Tags for which :func:`normalize_tag` returned None.
    duplicates : int
        Valid tags dropped because the same normalised tag came earlier in the list.
    examples_dropped : list of str
        The first 10 invalid tags, as found (truncated to 60 characters).
    """

    kept: int = 0
    dropped_invalid: int = 0
    duplicates: int = 0
    examples_dropped: list[str] = field(default_factory=list)

    def add(self, other: TagStats) -> None:
        """Add the counts (and examples, up to 10) of ``other`` to these."""
        self.kept += other.kept
        self.dropped_invalid += other.dropped_invalid
        self.duplicates += other.duplicates
        room = MAX_DROPPED_EXAMPLES - len(self.examples_dropped)
        self.examples_dropped.extend(other.examples_dropped[: max(room, 0)])


def normalize_tags(raw_tags: Iterable[str], stats: TagStats | None = None) -> tuple[str, ...]:
    """Normalise a list of hashtags, dropping invalid ones and duplicates.

    Parameters
    ----------
    raw_tags : iterable of str
        Hashtags as found in the data.
    stats : TagStats, optional
        Updated in place with what was kept and dropped.

    Returns
    -------
    tuple of str
        The valid normalised tags, each once, in first-seen order.
    """
    stats = stats if stats is not None else TagStats()
    seen: dict[str, None] = {}
    for raw in raw_tags:
        tag = _normalize_cached(raw) if isinstance(raw, str) else None
        if tag is None:
            stats.dropped_invalid += 1
            if len(stats.examples_dropped) < MAX_DROPPED_EXAMPLES:
                stats.examples_dropped.append(str(raw)[:_EXAMPLE_CHARS])
        elif tag in seen:
            stats.duplicates += 1
        else:
            seen[tag] = None
    stats.kept += len(seen)
    return tuple(seen)


def extract_hashtags(caption: str) -> list[str]:
    """Find the hashtags in free text, such as an Instagram caption.

    What a hashtag is. Instagram publishes no grammar; the reference is twitter-text's
    (twitter/twitter-text ``Regex.java`` ``VALID_HASHTAG`` and ``conformance/extract.yml``):

    * a hash sign, ``#`` or the full-width ``＃`` (U+FF03), not followed by U+FE0F or U+20E3
      (the keycap emoji ``#️⃣``);
    * then letters, combining marks, decimal digits, ``_`` and twitter-text's special
      characters: the zero-width joiner and non-joiner (which spell Persian, Hindi, Malayalam,
      Sinhala words), the katakana middle dot (``#ハリー・ポッター`` is one tag), the middle
      dot (``#il·lusió``), the wave dash and full-width tilde, the maqaf and geresh, the kana
      voiced marks, the Tibetan tsheg...; the tag ends at any other character (space,
      punctuation, emoji);
    * at least one letter: ``#2019``, ``#_`` and ``#１２３`` are not hashtags;
    * the character before the hash is not ``&`` (``&#39;``) nor a hashtag character
      (``foo#bar``, ``日本語#タグ``), and a tag followed by ``://`` (``#http://...``) or lying
      inside a URL (``https://x.com/page#section``, ``example.com/#top``) is none.

    Where Instagram differs, Instagram wins:

    * ``#a#b`` is two tags, as instaloader (``structures.py``, ``_hashtag_regex``) and the
      app read run-together tags; twitter-text drops both;
    * a tag is at most :data:`MAX_TAG_LENGTH` characters (instaloader's ``\\w{1,150}``, PR
      #1540); a longer run is dropped, not cut;
    * one ASCII character (``#a``) is noise and dropped, one ideograph (``#猫``) is a real tag.

    Parameters
    ----------
    caption : str
        The text, read by the rules above.

    Returns
    -------
    list of str
        The raw tags without the hash sign, in order of appearance, duplicates included;
        digits-only and over-long runs too (:func:`normalize_tags` drops and counts them).
    """
    if not isinstance(caption, str):
        return []
    text = unicodedata.normalize("NFC", caption)
    if "#" not in text and "\uff03" not in text:
        return []
    in_url = bytearray(len(text))
    for match in _URL.finditer(text):
        in_url[match.start() : match.end()] = b"\x01" * (match.end() - match.start())
    tags = []
    run_end = -1  # where the last hash-sign token ended: '#a#b' is two tags
    i, n = 0, len(text)
    while i < n:
        if text[i] not in HASH_SIGNS:
            i += 1
            continue
        before = text[i - 1] if i else ""
        starts = (
            not in_url[i]
            and (i == run_end or not before or (before != "&" and not _is_tag_char(before)))
            and text[i + 1 : i + 2] not in ("\ufe0f", "\u20e3")
        )
        end = i + 1
        while end < n and _is_tag_char(text[end]):
            end += 1
        if starts and end > i + 1 and not text.startswith("://", end):
            tags.append(text[i + 1 : end])
        if starts:
            run_end = end
        i = end
    return tags


def _read_blocklist(path: Path | resources.abc.Traversable) -> set[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(
            f"cannot read the hashtag block list {path}: {exc}. "
            "It must be a UTF-8 text file with one hashtag per line."
        ) from exc
    tags = set()
    for line in text.splitlines():
        line = line.strip()
        # "# text" is a comment; "#tag" (no space) is a tag written with its hash.
        if not line or line == "#" or line.startswith(("# ", "#\t", "##")):
            continue
        tag = normalize_tag(line)
        if tag is not None:
            tags.add(tag)
    return tags


def load_blocklist(paths: Iterable[str | Path] = ()) -> frozenset[str]:
    """Load the packaged spam-hashtag block list plus any user block lists.

    Parameters
    ----------
    paths : iterable of str or Path, optional
        Extra block-list files: UTF-8, one hashtag per line (``#`` optional), blank lines and
        comment lines (``#`` followed by a space) ignored.

    Returns
    -------
    frozenset of str
        The normalised blocked tags. Lines that are not valid hashtags are ignored.

    Raises
    ------
    DatasetError
        If the packaged list or a user file cannot be read.
    """
    tags = _read_blocklist(BLOCKLIST_PATH)
    for path in paths:
        tags |= _read_blocklist(Path(path))
    return frozenset(tags)
