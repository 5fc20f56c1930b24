"""Hashtag normalisation, extraction from captions, and the spam block list.

Every hashtag that enters the recommender goes through :func:`normalize_tag`, so a tag has
exactly one spelling everywhere: NFC, lowercase, without ``#``, made only of word characters.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from recommender.errors import DatasetError

MAX_TAG_LENGTH = 100
"""Instagram rejects hashtags longer than this."""

MAX_DROPPED_EXAMPLES = 10
_EXAMPLE_CHARS = 60

# Package data (recommender/assets/*): found through importlib.resources, so it is there
# wherever the package is installed, not only in a checkout.
BLOCKLIST_PATH = resources.files("recommender") / "assets" / "blocklist.txt"

# Nonspacing marks that render as nothing on their own: variation selectors, the combining
# grapheme joiner, Mongolian free variation selectors, Khmer inherent vowels.
_INVISIBLE_MARKS = frozenset(
    [0x034F, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F]
    + list(range(0xFE00, 0xFE10))
    + list(range(0xE0100, 0xE01F0))
)


def _is_tag_char(ch: str, previous: str) -> bool:
    """Whether ``ch`` may continue a hashtag whose previous character is ``previous``."""
    if ch.isalnum() or ch == "_":
        return True
    # Combining vowel signs and diacritics (Devanagari, Thai, ...) that NFC cannot compose
    # are part of the word, but only after a letter or another mark.
    return (
        previous != ""
        and unicodedata.category(ch) in ("Mn", "Mc")
        and ord(ch) not in _INVISIBLE_MARKS
        and (previous.isalpha() or unicodedata.category(previous) in ("Mn", "Mc"))
    )


def _is_tag_body(text: str) -> bool:
    previous = ""
    for ch in text:
        if not _is_tag_char(ch, previous):
            return False
        previous = ch
    return True


def normalize_tag(raw: str) -> str | None:
    """Return the canonical spelling of a hashtag, or None if it cannot be a real one.

    Parameters
    ----------
    raw : str
        A hashtag as found in the data, with or without leading ``#``.

    Returns
    -------
    str or None
        The tag in Unicode NFC, stripped of surrounding whitespace and leading ``#`` characters,
        lowercased. None when the result is empty, a single character, only digits, longer
        than 100 characters, or contains a character that is not a word character (letters,
        digits, ``_``; combining marks are allowed after a letter, invisible ones are not).
        This drops markup, URLs, punctuation, spaces, emoji, control characters and invisible
        format characters (bidi marks, zero-width joiners).
    """
    if not isinstance(raw, str):
        return None
    tag = unicodedata.normalize("NFC", raw).strip().lstrip("#").lower()
    tag = unicodedata.normalize("NFC", tag)  # lowercasing can leave a decomposed sequence
    if len(tag) < 2 or len(tag) > MAX_TAG_LENGTH or tag.isdigit():
        return None
    return tag if _is_tag_body(tag) else None


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
        tag = normalize_tag(raw)
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

    Parameters
    ----------
    caption : str
        The text. A hashtag is ``#`` followed by one or more word characters; it ends at the
        first other character (space, punctuation, emoji, another ``#``).

    Returns
    -------
    list of str
        The raw tags without ``#``, in order of appearance, duplicates included. Pass them
        through :func:`normalize_tags`.
    """
    if not isinstance(caption, str):
        return []
    text = unicodedata.normalize("NFC", caption)
    tags = []
    i, n = 0, len(text)
    while i < n:
        if text[i] != "#":
            i += 1
            continue
        start = end = i + 1
        previous = ""
        while end < n and _is_tag_char(text[end], previous):
            previous = text[end]
            end += 1
        if end > start:
            tags.append(text[start:end])
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
