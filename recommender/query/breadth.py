"""How broad a hashtag is: how many training posts use it, and its tier.

A hashtag used by many posts is crowded (a new post drowns among them); a rare one is
specific. The tiers come from the training data's own frequency quantiles, weighted by use:
rank the model's hashtags by how many training posts carry them, then

- **broad**: the most used hashtags that together make the first :data:`BROAD_USES` (25%)
  of all (post, hashtag) uses;
- **medium**: the next ones, up to :data:`MEDIUM_USES` (50%) of all uses;
- **niche**: the rest.

A hashtag tied with the last one of a tier is in that tier (the tiers on the demo data, and
why by uses: benchmarks/README.md, "The page's balanced 5").

:func:`balanced` picks the hashtags to paste as a mix: at most :data:`BALANCED_MAX_BROAD`
broad ones, the rest more specific.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

BROAD, MEDIUM, NICHE = "broad", "medium", "niche"
TIERS = (BROAD, MEDIUM, NICHE)
BROAD_USES = 0.25
MEDIUM_USES = 0.50
BALANCED_SIZE = 5  # what Instagram accepts on a post
BALANCED_MAX_BROAD = 2
BALANCED_POOL = 20  # the balanced 5 are picked from the best this many


@dataclass(frozen=True)
class Breadth:
    """The post counts at which the tiers start (``broad_min >= medium_min``)."""

    broad_min: int
    medium_min: int

    def tier(self, posts: int) -> str:
        """The tier of a hashtag used by ``posts`` training posts."""
        if posts >= self.broad_min:
            return BROAD
        if posts >= self.medium_min:
            return MEDIUM
        return NICHE

    def to_dict(self) -> dict[str, int]:
        return {"broad_min": self.broad_min, "medium_min": self.medium_min}


def breadth_from_counts(
    tag_counts: Sequence[int] | np.ndarray,
    broad_uses: float = BROAD_USES,
    medium_uses: float = MEDIUM_USES,
) -> Breadth:
    """The tiers of a vocabulary whose hashtag ``i`` is used by ``tag_counts[i]`` posts."""
    if not 0 < broad_uses <= medium_uses <= 1:
        raise ValueError("need 0 < broad_uses <= medium_uses <= 1")
    counts = np.sort(np.asarray(tag_counts, dtype=np.int64))[::-1]
    if len(counts) == 0 or counts[0] <= 0:
        return Breadth(1, 1)
    share = np.cumsum(counts) / counts.sum()

    def count_at(uses: float) -> int:
        # the hashtag whose uses, with all more used ones, first reach ``uses`` of the total
        return int(counts[min(int(np.searchsorted(share, uses - 1e-12)), len(counts) - 1)])

    return Breadth(max(count_at(broad_uses), 1), max(count_at(medium_uses), 1))


class _Tiered(Protocol):
    @property
    def tier(self) -> str: ...


T = TypeVar("T", bound=_Tiered)


def balanced(
    ranked: Sequence[T], size: int = BALANCED_SIZE, max_broad: int = BALANCED_MAX_BROAD
) -> list[T]:
    """``size`` of ``ranked`` (best first) to paste as a mix, in their ranked order.

    The best ``max_broad`` broad hashtags, then the best more specific ones (medium or
    niche) for the rest; when there are not enough of those, more broad ones fill in.
    """
    if size < 0 or max_broad < 0:
        raise ValueError("size and max_broad must be >= 0")
    broad = [i for i, t in enumerate(ranked) if t.tier == BROAD]
    specific = [i for i, t in enumerate(ranked) if t.tier != BROAD]
    chosen = broad[:max_broad]
    chosen += specific[: size - len(chosen)]
    chosen += broad[max_broad:][: size - len(chosen)]
    return [ranked[i] for i in sorted(chosen)]
