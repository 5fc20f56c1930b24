"""Bounded reading for the layouts: JSON lists item by item, lines and captions capped.

A data set file may be large; one record in it may not. These helpers keep memory at one
record (at most :data:`recommender.limits.RECORD`) whatever the file's size:

* :func:`json_items` reads a JSON list (``posts_1.json``, ``json_files/<tag>.json``) one
  item at a time from a binary stream, instead of building the whole list;
* :func:`bounded_lines` yields a text file's lines, replacing each line over the bound by
  :data:`TOO_LONG` after skipping it in chunks;
* :func:`read_capped_text` reads a caption file up to the bound.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING

from recommender import limits
from recommender.archives import MemberError

if TYPE_CHECKING:
    from recommender.data.records import DatasetBuilder

_CHUNK = 1 << 20
_SPACE = " \t\r\n"
TOO_LONG = object()
"""Stands for a line or list item over the record bound."""


class JsonListError(ValueError):
    """The stream is not a JSON list, or is cut short or invalid at some item."""


def json_items(read: Callable[[int], bytes], shown: str) -> Iterator[object]:
    """Each item of the JSON list that ``read(n)`` returns, in order; :data:`TOO_LONG` in
    place of an item over the record bound.

    Raises :class:`JsonListError` when the stream is not a list or is invalid at some point
    (the items before it have been yielded); an item over the bound ends the list too, since
    nothing past it can be found without parsing it.
    """
    limit = limits.RECORD.value()
    decoder = codecs.getincrementaldecoder("utf-8-sig")("replace")
    parser = json.JSONDecoder()
    buf, pos, eof = "", 0, False

    def more() -> bool:
        nonlocal buf, pos, eof
        if eof:
            return False
        data = read(_CHUNK)
        eof = not data
        buf = buf[pos:] + decoder.decode(data, final=eof)
        pos = 0
        return True

    def next_char() -> str:
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in _SPACE:
                pos += 1
            if pos < len(buf):
                return buf[pos]
            if not more():
                return ""

    if next_char() != "[":
        raise JsonListError(f"{shown}: not a JSON list")
    pos += 1
    if next_char() == "]":
        return
    while True:
        next_char()
        while True:
            try:
                item, end = parser.raw_decode(buf, pos)
            except json.JSONDecodeError as exc:
                if len(buf) - pos > limit:
                    yield TOO_LONG
                    return
                if more():
                    continue
                raise JsonListError(f"{shown}: not valid JSON ({exc.msg})") from None
            if end == len(buf) and more():  # a number at the buffer's end may go on
                continue
            break
        if end - pos > limit:
            yield TOO_LONG
            return
        pos = end
        yield item
        char = next_char()
        if char == "]":
            return
        if char != ",":
            raise JsonListError(f"{shown}: not valid JSON (expected ',' or ']' after an item)")
        pos += 1


def bounded_lines(handle: IO, limit: int | None = None) -> Iterator[object]:
    """The lines of a file opened in text or binary mode, each at most the record bound
    (``limit`` characters or bytes); a longer line is read past in chunks and yielded as
    :data:`TOO_LONG`, so line numbers stay right."""
    limit = limits.RECORD.value() if limit is None else limit
    while True:
        line = handle.readline(limit + 1)
        if not line:
            return
        newline = "\n" if isinstance(line, str) else b"\n"
        if len(line) > limit and not line.endswith(newline):
            while True:
                rest = handle.readline(_CHUNK)
                if not rest or rest.endswith(newline):
                    break
            yield TOO_LONG
            continue
        yield line


def read_capped_text(handle: IO[bytes]) -> tuple[str, bool]:
    """A caption file's text, at most the record bound; and whether it was cut."""
    limit = limits.RECORD.value()
    data = handle.read(limit + 1)
    return data[:limit].decode("utf-8", "replace"), len(data) > limit


def json_list_items(
    builder: DatasetBuilder, read: Callable[[int], bytes], shown: str, what: str = "entry"
) -> Iterator[tuple[int, object]]:
    """(index, item) of a JSON list in a data set file; what cannot be read is counted in
    ``builder`` (an invalid or cut file as unreadable after the items before the fault, an
    item over the record bound as malformed, ending the file) instead of raised."""
    try:
        for index, item in enumerate(json_items(read, shown)):
            if item is TOO_LONG:
                builder.malformed(
                    f"{shown} {what} {index}",
                    limits.message("this item", limits.RECORD) + "; the rest of the file is "
                    "skipped",
                )
                return
            yield index, item
    except limits.LimitExceeded as exc:
        if exc.bound is limits.RECORDS:
            raise
        builder.skip("unreadable_files", str(exc))
    except (JsonListError, MemberError) as exc:
        builder.skip("unreadable_files", str(exc))
    except (OSError, RecursionError) as exc:
        builder.skip("unreadable_files", f"{shown}: cannot read: {exc}")
