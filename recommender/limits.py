"""The bounds every reader of untrusted input keeps, in one place.

A data set, an archive or a weights file of a few megabytes must not take gigabytes of
memory or minutes of time. Each bound has a documented default, generous for real data, and
an environment variable to raise it for a data set that really needs more:

* bytes decompressed from one archive member or Parquet column chunk:
  ``HASHTAG_MAX_MEMBER_MB``, default 256 (MB);
* compression ratio of an archive member: ``HASHTAG_MAX_RATIO``, default 200;
* one record (a JSON post, a manifest line, a Parquet row, a caption):
  ``HASHTAG_MAX_RECORD_KB``, default 1024 (kB);
* hashtags kept per post: ``HASHTAG_MAX_TAGS_PER_POST``, default 300;
* records in one data set: ``HASHTAG_MAX_RECORDS``, default 5,000,000 (a local build keeps
  about 5 KB per post, so 5M posts already take ~10 GB; the Spark engine may need more).

Members smaller than :data:`RATIO_FLOOR` bytes may have any ratio (a small file of zeros is
harmless). Instagram itself keeps at most 30 hashtags per post and 2,200 characters per
caption. When a bound is hit, the reader skips the one post, line or member, counts it, and
says so in one line naming the file, the bound and its variable (:func:`message`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from recommender.errors import ConfigError, RecommenderError

RATIO_FLOOR = 1 << 20
"""Members that decompress to less than this may have any compression ratio."""


@dataclass(frozen=True)
class Bound:
    """One bound: its variable, its unit and default, and what it bounds (for messages)."""

    variable: str
    default: int
    scale: int
    unit: str
    what: str

    def value(self) -> int:
        """The bound in bytes (or items): the variable's value if set, else the default."""
        raw = os.environ.get(self.variable, "").strip()
        if not raw:
            return self.default * self.scale
        try:
            number = float(raw)
        except ValueError:
            number = 0.0
        if not number > 0 or number != number or number == float("inf"):
            raise ConfigError(
                f"{self.variable}={raw!r} is not a positive number of {self.unit} "
                f"(default {self.default:,})"
            )
        return int(number * self.scale)

    def shown(self, value: int | None = None) -> str:
        value = self.value() if value is None else value
        number = value / self.scale
        text = f"{number:,.0f}" if number >= 10 or number == int(number) else f"{number:g}"
        return f"{text} {self.unit}".rstrip()


MEMBER = Bound(
    "HASHTAG_MAX_MEMBER_MB",
    256,
    1 << 20,
    "MB",
    "bytes decompressed from one archive member or Parquet column chunk",
)
RATIO = Bound("HASHTAG_MAX_RATIO", 200, 1, "times", "compression ratio of an archive member")
RECORD = Bound(
    "HASHTAG_MAX_RECORD_KB", 1024, 1 << 10, "kB", "size of one record (post, line, row, caption)"
)
TAGS_PER_POST = Bound("HASHTAG_MAX_TAGS_PER_POST", 300, 1, "hashtags", "hashtags kept per post")
RECORDS = Bound("HASHTAG_MAX_RECORDS", 5_000_000, 1, "records", "number of records in one data set")

ALL = (MEMBER, RATIO, RECORD, TAGS_PER_POST, RECORDS)


def message(where: str, bound: Bound, found: str = "") -> str:
    """One line: ``where`` went over ``bound``, and how to raise it."""
    over = f" ({found})" if found else ""
    return (
        f"{where}: over the limit of {bound.shown()} for the {bound.what}{over}; "
        f"set {bound.variable} to raise it"
    )


class LimitExceeded(RecommenderError, ValueError):
    """An input went over one of the bounds; the message names the file, bound and variable."""

    def __init__(self, where: str, bound: Bound, found: str = "") -> None:
        super().__init__(message(where, bound, found))
        self.bound = bound
