"""How broad a hashtag is: tiers from the frequency quantiles, and the balanced pick."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from recommender.query.breadth import BROAD, MEDIUM, NICHE, Breadth, balanced, breadth_from_counts


def slow_tiers(counts: list[int], broad: float, medium: float) -> list[str]:
    """The definition, spelled out: walk the hashtags from the most used, summing uses."""
    order = sorted(range(len(counts)), key=lambda i: -counts[i])
    total, seen, out = sum(counts), 0, [NICHE] * len(counts)
    broad_min = medium_min = None
    for i in order:
        seen += counts[i]
        if broad_min is None and seen >= broad * total:
            broad_min = counts[i]
        if medium_min is None and seen >= medium * total:
            medium_min = counts[i]
    for i, c in enumerate(counts):
        out[i] = BROAD if c >= broad_min else MEDIUM if c >= medium_min else NICHE
    return out


def test_tiers_on_a_small_vocabulary_with_a_known_answer():
    # 20 uses: the 8 of the first hashtag reach 25%, with the 6 of the next 50%.
    counts = [1, 8, 1, 6, 2, 1, 1]
    breadth = breadth_from_counts(counts)
    assert breadth == Breadth(broad_min=8, medium_min=6)
    assert [breadth.tier(c) for c in counts] == [NICHE, BROAD, NICHE, MEDIUM, NICHE, NICHE, NICHE]
    assert breadth_from_counts([]) == Breadth(1, 1)
    with pytest.raises(ValueError):
        breadth_from_counts(counts, broad_uses=0.6, medium_uses=0.5)


@pytest.mark.parametrize("seed", range(5))
def test_tiers_match_the_slow_definition(seed):
    rng = np.random.default_rng(seed)
    counts = [int(c) for c in rng.zipf(1.6, size=300).clip(max=5000)]
    breadth = breadth_from_counts(counts, 0.25, 0.5)
    assert [breadth.tier(c) for c in counts] == slow_tiers(counts, 0.25, 0.5)


def test_tiers_of_the_real_data_set(demo_model):
    counts = demo_model.tag_counts
    tiers = [demo_model.breadth.tier(int(c)) for c in counts]
    uses = {t: int(counts[[x == t for x in tiers]].sum()) for t in (BROAD, MEDIUM, NICHE)}
    total = int(counts.sum())
    # Broad: few hashtags, at least a quarter of all uses; niche: most hashtags.
    assert 0.25 <= uses[BROAD] / total < 0.35
    assert 0.5 <= (uses[BROAD] + uses[MEDIUM]) / total < 0.6
    assert tiers.count(BROAD) < 0.01 * len(tiers) < tiers.count(MEDIUM)
    assert tiers.count(NICHE) > 0.9 * len(tiers)
    assert demo_model.breadth.tier(int(counts[demo_model.tags.index("food")])) == BROAD


@dataclass(frozen=True)
class Tag:
    tag: str
    tier: str


def tags(spec: str) -> list[Tag]:
    """ "bbmn" -> four hashtags b0 b1 m2 n3 with those tiers, best first."""
    names = {"b": BROAD, "m": MEDIUM, "n": NICHE}
    return [Tag(f"{c}{i}", names[c]) for i, c in enumerate(spec)]


@pytest.mark.parametrize(
    ("ranked", "picked"),
    [
        ("bbbbbmmn", "b0 b1 m5 m6 n7"),  # at most two broad, the rest more specific
        ("mnmnmnb", "m0 n1 m2 n3 b6"),  # some broad: the best broad one comes in
        ("mnmnmn", "m0 n1 m2 n3 m4"),  # none at all: the best specific ones
        ("mnbmnbb", "m0 n1 b2 m3 b5"),  # two broad, three specific
        ("bbbbbbm", "b0 b1 b2 b3 m6"),  # not enough specific ones: broad fill in, in order
        ("bm", "b0 m1"),
    ],
)
def test_balanced_pick(ranked, picked):
    assert " ".join(t.tag for t in balanced(tags(ranked))) == picked


def test_balanced_pick_of_a_real_recommendation(demo_model, dataset_path):
    result = demo_model.recommend(dataset_path / "test" / "nature.jpg", k=20)
    assert [t.tier for t in result.hashtags[:5]].count(BROAD) > 2  # the plain top 5
    picked = balanced(result.hashtags)
    assert len(picked) == 5 and [t.tier for t in picked].count(BROAD) == 2
    assert all(t in result.hashtags for t in picked)
