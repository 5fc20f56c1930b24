"""What the page shows, as plain functions: hashtag text, chart figures, model summaries.

Nothing here computes a recommendation; it turns results and manifests into text and
figures, so ``app.py`` stays a thin view and these pieces can be tested without Streamlit.
Text from a data set (hashtags, paths) is escaped for the renderer it goes to: Markdown via
:func:`escape_markdown`, Plotly labels via :func:`plotly_text`.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import html
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recommender.query.breadth import BROAD, MEDIUM, NICHE, Breadth, balanced
from recommender.query.hedging import DEMOTE_TOP
from recommender.query.recommender import Neighbour, Recommendation, SearchTag, TagScore
from recommender.query.scoring import DEFAULT_NEIGHBOURS

TO_PASTE = 5
"""Hashtags in the block to paste: Instagram has taken at most 5 on a new post since its
December 2025 change (:data:`recommender.data.hashtags.TO_PASTE` is the older
cap of 30, the most a ranking shows)."""

PAGE_ICON = Path(__file__).resolve().parent.parent / "assets" / "favicon.png"
"""The page's tab icon, a file the page serves itself (an icon name would be fetched from
an outside host)."""

PHOTO_TYPES = ("jpg", "jpeg", "png", "webp", "heic", "heif")
"""File types the page offers to upload and lists as example photos."""

HIGHLIGHT = "#d62976"  # the theme's primary colour: the first TO_PASTE bars
MUTED = "#e9b3cb"  # the rest
NEGATIVE = "#9e9aa7"

# Every ASCII punctuation character can be backslash-escaped in CommonMark; escaping all of
# them leaves no link, emphasis, HTML, math, directive or heading syntax to interpret.
_MARKDOWN_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")
# GitHub-flavoured Markdown turns bare URLs, www. names and e-mail addresses into links after
# escapes are resolved; an invisible word joiner before these characters stops it.
_AUTOLINK_CHARS = re.compile(r"([.:@])")
WORD_JOINER = "\u2060"


def escape_markdown(text: object) -> str:
    """Return ``text`` so that Markdown (Streamlit's included) shows it literally.

    Every ASCII punctuation character is backslash-escaped, line breaks become spaces and an
    invisible word joiner precedes ``.``, ``:`` and ``@``, so ``[x](javascript:alert(1))``
    stays text, ``<script>`` is not HTML, ``_tag_`` is not emphasis and ``www.example.com``
    is not a link.
    """
    text = _AUTOLINK_CHARS.sub(WORD_JOINER + r"\1", _LINE_BREAKS.sub(" ", str(text)))
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def plotly_text(text: object) -> str:
    """Return ``text`` for a Plotly label or hover text, which understand a little HTML."""
    return html.escape(str(text), quote=True)


def hashtag_line(tags: Iterable[str]) -> str:
    """The copy-ready form of hashtags: ``"#a #b #c"``."""
    return " ".join(f"#{tag}" for tag in tags)


def neighbour_label(rank: int, similarity: float) -> str:
    """How the page names the neighbour of rank ``rank`` (1 = most similar)."""
    return f"{rank}. sim {similarity:.2f}"


def score_figure(hashtags: Sequence[TagScore], highlight: int = TO_PASTE):
    """Horizontal bar chart of hashtag scores in the list's order (best first, but a tag
    hedging moved below the top 5 keeps its score), the first ``highlight`` marked.

    Hovering a bar shows the hashtag and its score, and whether it was moved down.
    """
    import plotly.graph_objects as go

    labels = [plotly_text(f"#{t.tag}") for t in hashtags]
    moved = f"<br>moved below the top {DEMOTE_TOP}: another category's uncertain search tag"
    fig = go.Figure(
        go.Bar(
            x=[t.score for t in hashtags],
            y=labels,
            orientation="h",
            marker_color=[HIGHLIGHT if i < highlight else MUTED for i in range(len(hashtags))],
            customdata=[moved if t.moved_down else "" for t in hashtags],
            hovertemplate="<b>%{y}</b><br>score %{x:.3f}%{customdata}<extra></extra>",
        )
    )
    fig.update_layout(
        height=_bar_height(len(hashtags)),
        margin=dict(l=0, r=10, t=10, b=0),
        xaxis_title="score",
        yaxis=dict(autorange="reversed", type="category"),
        bargap=0.25,
        showlegend=False,
        font=dict(size=13),
    )
    return fig


PRIOR_LABEL = "the photo itself"
PRIOR = "#7b5ea7"
CONTENT_LABEL = "what the network sees"
CONTENT = "#2a9d8f"


SEEN_SURE = 0.5
"""The ImageNet head's probability from which the page names what it sees. On the demo
photos (``python -m benchmarks.seen_threshold``), top classes at 0.5 or more are mostly
right: 80% show the photo's category (animals, food, cars), and 51% stand for a hashtag the
post carries; between 0.1 and 0.5 only 12-35% do. Below it the page says "maybe"."""


def network_sees(seen: Sequence[tuple[str, float]], sure: float = SEEN_SURE) -> str:
    """``"the network sees: cheeseburger (83%)"`` for the classes at least ``sure``; when
    none is, ``"the network is not sure (maybe: ice lolly)"``; "" when nothing was seen."""
    if not seen:
        return ""
    named = [f"{name} ({p:.0%})" for name, p in seen if p >= sure]
    if named:
        return "the network sees: " + ", ".join(named)
    return f"the network is not sure (maybe: {seen[0][0]})"


def search_tags_line(search_tags: Sequence[SearchTag]) -> str:
    """What hedging did with the data set's category search tags, and why, in one line
    (:attr:`~recommender.query.recommender.Recommendation.search_tags`; "" when none):
    ``"search tags of the data set's categories, by how likely a post like this photo
    carries them: kept #food 96%, #babies 41% (moved below the top 5); left out as unlikely
    #animals 3%"``."""
    if not search_tags:
        return ""

    def odds(s: SearchTag) -> str:
        likely = "not calibrated" if s.probability is None else f"{s.probability:.0%}"
        moved = f" (moved below the top {DEMOTE_TOP})" if s.moved_down else ""
        return f"#{s.tag} {likely}{moved}"

    kept = [odds(s) for s in search_tags if s.kept]
    left = [odds(s) for s in search_tags if not s.kept]
    parts = (["kept " + ", ".join(kept)] if kept else []) + (
        ["left out as unlikely " + ", ".join(left)] if left else []
    )
    return (
        "search tags of the data set's categories, by how likely a post like this photo "
        "carries them: " + "; ".join(parts)
    )


def contribution_figure(tag: TagScore, neighbours: Sequence[Neighbour]):
    """Horizontal bar chart of what each neighbour added to ``tag``'s score.

    Bars are labelled by :func:`neighbour_label`, in neighbour order (most similar on top).
    When the method has an image prior (``tag.prior`` not 0), a last bar labelled
    :data:`PRIOR_LABEL` shows what came from the photo itself, and when the ImageNet head
    named something that stands for the hashtag (``tag.content``), a bar labelled
    :data:`CONTENT_LABEL`; the bars sum to the score.
    """
    import plotly.graph_objects as go

    labels = [neighbour_label(i + 1, nb.similarity) for i, nb in enumerate(neighbours)]
    values = list(tag.contributions[: len(neighbours)])
    colours = [HIGHLIGHT if v >= 0 else NEGATIVE for v in values]
    texts = ["neighbour " + label for label in labels]
    if tag.prior:
        labels.append(PRIOR_LABEL)
        values.append(tag.prior)
        colours.append(PRIOR)
        texts.append("what the photo itself suggests (image prior)")
    if tag.content:
        labels.append(CONTENT_LABEL)
        values.append(tag.content)
        colours.append(CONTENT)
        texts.append("what the network names in the photo (ImageNet classes)")
    share = [v / tag.score if tag.score else 0.0 for v in values]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=labels,
            orientation="h",
            marker_color=colours,
            customdata=list(zip(share, texts, strict=True)),
            hovertemplate=(
                "<b>%{customdata[1]}</b><br>adds %{x:.3f} (%{customdata[0]:.0%} of the score)"
                "<extra></extra>"
            ),
        )
    )
    fig.update_layout(
        height=_bar_height(len(values)),
        margin=dict(l=0, r=10, t=10, b=0),
        xaxis_title=plotly_text(f"contribution to the score of #{tag.tag} ({tag.score:.3f})"),
        yaxis=dict(autorange="reversed", type="category"),
        bargap=0.25,
        showlegend=False,
        font=dict(size=13),
    )
    return fig


def _bar_height(bars: int) -> int:
    return 60 + 26 * max(bars, 1)


def model_facts(info: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) lines describing a model from its :meth:`info`, skipping what is absent.

    Values are plain text; escape them for the renderer.
    """
    facts = []
    dataset = _mapping(info.get("dataset"))
    if dataset.get("path"):
        name = Path(str(dataset["path"])).name or str(dataset["path"])
        fmt = dataset.get("format")
        facts.append(("Data set", f"{name} ({fmt})" if fmt else name))
    backbone = _mapping(info.get("backbone"))
    if backbone.get("name"):
        dim = backbone.get("dim")
        facts.append(
            ("Backbone", f"{backbone['name']}, {dim}-d features" if dim else backbone["name"])
        )
    counts = _mapping(info.get("counts"))
    for key, label in (("posts", "Posts"), ("images", "Images indexed"), ("hashtags", "Hashtags")):
        if isinstance(counts.get(key), int):
            facts.append((label, f"{counts[key]:,}"))
    method = _mapping(_mapping(info.get("config")).get("method")).get("name")
    if method:
        facts.append(("Scoring", str(method)))
    if info.get("created"):
        facts.append(("Built", str(info["created"])[:10]))
    return facts


def evaluation_summary(info: Mapping[str, Any], k: int = 10) -> dict[str, Any] | None:
    """The method and recall@k of the model against the popularity baseline, if evaluated.

    Reads ``info["evaluation"]`` as ``build --evaluate`` writes it (flat keys ``method``,
    ``recall@10``, ``beyond_recall@10``, ``popularity_recall@10``, ``splits``,
    ``test_posts``), a missing or non-numeric figure as None.
    Returns None when there is no usable evaluation; otherwise a dict with ``method`` (str or
    None), ``recall``, ``beyond`` and ``popularity`` (float or None), ``off_topic`` (other
    categories' search tags per top ``k``, key ``off_topic@10``) and ``own_category_hit``
    (share of single-tag categories' held-out photos whose own tag made the top ``k``, key
    ``own_category_hit@10``) (float or None), ``off_topic_top`` (the same in the top 5,
    key ``off_topic@5``), ``original`` (the original method's recall@k), ``splits`` and
    ``test_posts`` (int or None) and ``k``.
    """
    evaluation = _mapping(info.get("evaluation"))
    if not evaluation:
        return None
    recall = _number(evaluation.get(f"recall@{k}"))
    method = evaluation.get("method")
    if recall is None and method is None:
        return None
    counts = {key: _number(evaluation.get(key)) for key in ("splits", "test_posts")}
    return {
        "method": None if method is None else str(method),
        "recall": recall,
        "beyond": _number(evaluation.get(f"beyond_recall@{k}")),
        "popularity": _number(evaluation.get(f"popularity_recall@{k}")),
        "off_topic": _number(evaluation.get(f"off_topic@{k}")),
        "off_topic_top": _number(evaluation.get(f"off_topic@{TO_PASTE}")),
        "original": method_recall(info, "original", k),
        "own_category_hit": _number(evaluation.get(f"own_category_hit@{k}")),
        **{key: None if value is None else int(value) for key, value in counts.items()},
        "k": k,
    }


def evaluation_words(evaluation: Mapping[str, Any]) -> list[str]:
    """The evaluation (:func:`evaluation_summary`) in sentences a stakeholder reads at a
    glance, the headline first: "18 of every 100 hashtags people really used are in its
    top 10 (popular tags alone: 9)"."""
    k = evaluation["k"]
    out = []
    if evaluation["recall"] is not None:
        line = (
            f"**{evaluation['recall'] * 100:.0f} of every 100** hashtags people really used "
            f"are in its top {k}"
        )
        extra = []
        if evaluation["popularity"] is not None:
            extra.append(f"the most popular tags alone: {evaluation['popularity'] * 100:.0f}")
        if evaluation.get("original") is not None:
            extra.append(f"the original project: {evaluation['original'] * 100:.0f}")
        out.append(line + (f" ({'; '.join(extra)})" if extra else "") + ".")
    off = evaluation.get("off_topic_top")
    if off is not None:
        out.append(
            f"Its 5 to paste hold {off:.1f} tags of another category on average "
            "(like #food on a dog photo)."
        )
    elif evaluation["off_topic"] is not None:
        out.append(
            f"Its top {k} hold {evaluation['off_topic']:.1f} tags of another category on "
            "average (like #food on a dog photo)."
        )
    if evaluation["own_category_hit"] is not None:
        out.append(
            f"{evaluation['own_category_hit'] * 10:.0f} in 10 photos of a category known only "
            f"by its name (like #babies) get that name in the top {k}."
        )
    return out


def exact_figures(evaluation: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(metric, value) rows of the evaluation's exact figures, for the page's expander."""
    k = evaluation["k"]
    rows = [
        (f"recall@{k}", evaluation["recall"]),
        (f"recall@{k} beyond the search tag", evaluation["beyond"]),
        (f"popularity recall@{k}", evaluation["popularity"]),
        (f"original method recall@{k}", evaluation.get("original")),
        (f"off_topic@{TO_PASTE}", evaluation.get("off_topic_top")),
        (f"off_topic@{k}", evaluation["off_topic"]),
        (f"own_category_hit@{k}", evaluation["own_category_hit"]),
    ]
    out = [(name, f"{value:.4f}") for name, value in rows if value is not None]
    if evaluation["method"]:
        out.insert(0, ("method", str(evaluation["method"])))
    for key in ("splits", "test_posts"):
        if evaluation[key] is not None:
            out.append((key.replace("_", " "), f"{evaluation[key]:,}"))
    return out


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


BUILD_STAGES = {
    # stage: (start, end) of the whole build's progress, label, unit
    "features": (0.0, 0.6, "Extracting image features", "images"),
    "evaluate": (0.6, 0.9, "Evaluating on held-out posts", "steps"),
    "als": (0.9, 0.95, "Training the hashtag model", "iterations"),
    "prior": (0.95, 0.97, "Fitting the image prior", "images"),
    "write": (0.97, 1.0, "Indexing and writing the model", "steps"),
    # between the write stage's steps 1 and 2 (its 0.985 and 1.0)
    "calibrate": (0.985, 0.995, "Calibrating hedging on the model's own photos", "images"),
}


def build_progress(stage: str, done: int, total: int) -> tuple[float, str]:
    """Map a ``build_model`` progress call to (fraction of the whole build, text)."""
    start, end, label, unit = BUILD_STAGES.get(stage, (0.0, 1.0, stage, "steps"))
    part = min(max(done / total, 0.0), 1.0) if total > 0 else 1.0
    return start + (end - start) * part, f"{label}: {done:,} of {total:,} {unit}"


def preview_jpeg(source, max_side: int = 640, quality: int = 85) -> bytes:
    """A JPEG of the photo, upright and at most ``max_side`` pixels on its longer side.

    Raises :class:`~recommender.errors.ImageError` for anything that is not a usable image.
    """
    from PIL import Image

    from recommender.vision.images import open_image

    img = open_image(source)
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def example_photos(folder: str | Path) -> list[Path]:
    """The photos (by :data:`PHOTO_TYPES`) directly in ``folder``, sorted; [] if none."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    suffixes = {f".{t}" for t in PHOTO_TYPES}
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def do_nothing() -> None:
    """A no-op the page installs in place of a Streamlit hook.

    Defined here, not as a lambda in ``app.py``: a function made by the page's script
    would keep that run's whole namespace (its model included) alive for the server's life.
    """


# ------------------------------------------------------------------- how broad a tag is
TIER_BADGES = {BROAD: "orange", MEDIUM: "blue", NICHE: "green"}
TIER_HELP = {
    BROAD: "among the most used hashtags, a quarter of all uses: crowded",
    MEDIUM: "the next most used, up to half of all uses",
    NICHE: "the rest: specific, few posts to compete with",
}


def tier_badge(tier: str) -> str:
    """Streamlit Markdown for a small coloured label naming ``tier`` ("" for no tier)."""
    colour = TIER_BADGES.get(tier)
    return f":{colour}-badge[{tier}]" if colour else ""


def tiered_line(hashtags: Sequence[TagScore], marked: Iterable[str] = ()) -> str:
    """Markdown: every hashtag (escaped) with its tier label; ``marked`` ones in bold."""
    marked = set(marked)
    out = []
    for t in hashtags:
        name = escape_markdown(f"#{t.tag}")
        label = tier_badge(t.tier)
        shown = f"**{name}**" if t.tag in marked else name
        # a no-break space: a label never wraps away from its hashtag
        out.append(f"{shown}\u00a0{label}" if label else shown)
    return " \u2002".join(out)  # an en space between hashtags


BALANCED_DEFAULT = False
"""Whether the page pastes the balanced 5 by default: only if it measures no worse than the
plain top 5 (see benchmarks/README.md)."""


def tier_range(breadth: Breadth, tier: str) -> str:
    """How many training posts a hashtag of ``tier`` has: ``"108+"``, ``"15–107"``."""
    if tier == BROAD:
        return f"{breadth.broad_min:,}+"
    if tier == MEDIUM:
        low, high = breadth.medium_min, breadth.broad_min - 1
        return f"{low:,}" if low >= high else f"{low:,}\u2013{high:,}"
    high = breadth.medium_min - 1
    return "1" if high <= 1 else f"1\u2013{high:,}"


def breadth_legend(breadth: Breadth) -> str:
    """The one-line legend of the tier labels: how many training posts each stands for."""
    parts = [f"{tier_badge(tier)}\u00a0{tier_range(breadth, tier)}" for tier in TIER_BADGES]
    return "Posts using the hashtag: " + " \u2002".join(parts)


def ranked_list(hashtags: Sequence[TagScore], marked: Iterable[str] = ()) -> str:
    """Markdown: a numbered list of hashtags with their tiers, ``marked`` ones in bold."""
    marked = set(marked)
    lines = []
    for i, t in enumerate(hashtags, 1):
        name = escape_markdown(f"#{t.tag}")
        lines.append(f"{i}. {f'**{name}**' if t.tag in marked else name} {tier_badge(t.tier)}")
    return "\n".join(lines)


def shown(result: Recommendation, k: int) -> Recommendation:
    """``result`` cut to its best ``k`` hashtags (the page ranks a longer pool for the mix)."""
    return dataclasses.replace(result, hashtags=list(result.hashtags[:k]))


def to_paste(hashtags: Sequence[TagScore], balanced_mix: bool = False) -> list[TagScore]:
    """The hashtags to paste on a post: the best :data:`TO_PASTE`, or, with
    ``balanced_mix``, a mix of broad and more specific ones (:func:`breadth.balanced`)."""
    if balanced_mix:
        return balanced(hashtags, TO_PASTE)
    return list(hashtags[:TO_PASTE])


# ---------------------------------------------------------------------- many photos
CSV_COLUMNS = ("photo", "top5", "hashtags", "error")
"""The page's "Download CSV": one row per photo; hashtags written ``#a #b``; ``error`` is
why a photo could not be used (then the hashtag columns are empty)."""


@dataclass(frozen=True)
class PhotoRow:
    """One photo of a batch as the table and the CSV show it."""

    photo: str
    top: tuple[str, ...] = ()
    hashtags: tuple[str, ...] = ()
    error: str = ""

    def to_csv(self) -> dict[str, str]:
        return {
            "photo": self.photo,
            "top5": hashtag_line(self.top),
            "hashtags": hashtag_line(self.hashtags),
            "error": self.error,
        }


def photo_row(
    photo: str,
    result: Recommendation | None,
    error: str = "",
    k: int | None = None,
    balanced_mix: bool = False,
) -> PhotoRow:
    """The row of one photo: what to paste and all ``k`` hashtags, or why there are none."""
    if result is None:
        return PhotoRow(photo, error=error or "This photo cannot be used.")
    shown = result.hashtags[:k] if k is not None else result.hashtags
    top = to_paste(result.hashtags, balanced_mix)
    return PhotoRow(photo, tuple(t.tag for t in top), tuple(t.tag for t in shown))


def batch_table(
    names: Sequence[str], rows: Sequence[PhotoRow], previews: Sequence[bytes]
) -> dict[str, list]:
    """The page's table of a batch, by column: ``photo`` (a ``data:`` URL, None when
    there is no preview: the table shows nothing there), ``name``, ``to paste`` and
    ``more`` (the rest of the hashtags, or in short why the photo could not be used:
    :func:`short_reason`)."""
    return {
        "photo": [data_url(p) or None for p in previews],
        "name": list(names),
        "to paste": [hashtag_line(r.top) for r in rows],
        "more": [
            short_reason(r.error)
            if r.error
            else hashtag_line(t for t in r.hashtags if t not in set(r.top))
            for r in rows
        ],
    }


TABLE_REASON_CHARS = 60  # what a table cell at 1440 px shows on one line


def short_reason(error: str, limit: int = TABLE_REASON_CHARS) -> str:
    """The first clause of why a photo cannot be used, short enough for a table cell
    ("This file is not an image in a supported format"); the whole reason is in the CSV
    and under the photo when its row is selected."""
    head = re.split(r" \(|[.:;] ", error.strip(), maxsplit=1)[0].rstrip(".")
    return head if len(head) <= limit else head[: limit - 1].rstrip() + "\u2026"


def batch_csv(rows: Sequence[PhotoRow]) -> bytes:
    """The CSV of a batch (:data:`CSV_COLUMNS`), UTF-8."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(row.to_csv() for row in rows)
    return out.getvalue().encode("utf-8")


class Memo:
    """A small thread-safe least-recently-used map (the page's per-photo features)."""

    def __init__(self, max_items: int) -> None:
        import threading
        from collections import OrderedDict

        self.max_items = max_items
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def data_url(jpeg: bytes) -> str:
    """A ``data:`` URL of JPEG bytes, for an image column of a table ("" for no image)."""
    if not jpeg:
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


# ----------------------------------------------------------------------- share a view
N_RANGE = (1, 50)
K_RANGE = (1, 30)
N_DEFAULT = DEFAULT_NEIGHBOURS  # the sliders' values when a link says nothing
K_DEFAULT = 10


def view_from_query(params: Mapping[str, Any], examples: Sequence[str]) -> dict[str, Any]:
    """The view a link asks for (``?example=food&n=5&k=10``): only the valid parts.

    Returns a dict with some of ``example`` (one of ``examples``), ``n`` and ``k`` (ints in
    :data:`N_RANGE` and :data:`K_RANGE`); anything else in the link is ignored
    (:func:`query_notes` says what).
    """
    return _read_query(params, examples)[0]


def query_notes(params: Mapping[str, Any], examples: Sequence[str]) -> list[str]:
    """One line for each part of a link that :func:`view_from_query` ignored."""
    return _read_query(params, examples)[1]


_ASCII_INT = re.compile(r"\s*([0-9]{1,9})\s*")  # not str.isdigit(): '²' is a digit to it


def _read_query(params: Mapping[str, Any], examples: Sequence[str]):
    out: dict[str, Any] = {}
    notes: list[str] = []
    for key, (low, high) in (("n", N_RANGE), ("k", K_RANGE)):
        value = _first(params.get(key))
        if value is None:
            continue
        match = _ASCII_INT.fullmatch(value)
        if match and low <= int(match.group(1)) <= high:
            out[key] = int(match.group(1))
        else:
            notes.append(
                f"The link's {key}={value[:20]!r} was ignored: {key} is a whole number "
                f"from {low} to {high}."
            )
    example = _first(params.get("example"))
    if example in examples:
        out["example"] = example
    elif example is not None:
        notes.append(f"The link's example={example[:40]!r} was ignored: there is no such example.")
    known = {"n", "k", "example", "embed", "embed_options"}  # the last two are Streamlit's
    notes.extend(
        f"The link's {str(key)[:20]!r} was ignored: links know only n, k and example."
        for key in params
        if key not in known
    )
    return out, notes


def view_to_query(example: str | None, n: int, k: int) -> dict[str, str]:
    """The query parameters of a view, for :func:`view_from_query` to read back."""
    out = {"example": example} if example else {}
    return {**out, "n": str(int(n)), "k": str(int(k))}


def _first(value: Any) -> str | None:
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return value if isinstance(value, str) else None


# ---------------------------------------------------------------- neighbour cards
NEIGHBOUR_TAGS_SHOWN = 8


def neighbour_tags(
    hashtags: Sequence[str], blocked: Iterable[str] | None, shown: int = NEIGHBOUR_TAGS_SHOWN
) -> str:
    """A neighbour's hashtags as the page shows them: the first ``shown`` not in
    ``blocked`` (the spam filter applies to everything shown), then "and N more"."""
    blocked = set(blocked or ())
    kept = [t for t in hashtags if t not in blocked]
    more = len(kept) - shown
    return hashtag_line(kept[:shown]) + (f" and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class NeighbourCard:
    """One nearest photo on the page: its rank, thumbnail (JPEG, may be empty), similarity,
    weight and hashtags line (:func:`neighbour_tags`)."""

    rank: int
    thumbnail: bytes
    similarity: float
    weight: float
    tags: str


NEIGHBOUR_GRID_MIN = 150  # px: two cards a row on a 390 px phone, six on a laptop


def neighbour_grid_html(cards: Sequence[NeighbourCard]) -> str:
    """HTML of the nearest photos as a grid that fits the screen (two a row on a phone);
    each thumbnail at most its own size, so it is never blown up. Text is escaped."""
    items = []
    for card in cards:
        image = (
            f'<img src="{data_url(card.thumbnail)}" alt="neighbour {card.rank}" '
            'style="max-width:100%;height:auto;display:block;margin:0 auto 6px;'
            'border-radius:4px">'
            if card.thumbnail
            else ""
        )
        items.append(
            '<div class="neighbour" style="border:1px solid #e6e1e8;border-radius:8px;'
            'padding:8px;font-size:0.8rem;line-height:1.3;overflow-wrap:anywhere">'
            f"{image}<b>{card.rank}.</b> similarity {card.similarity:.2f} · weight "
            f'{card.weight:.0%}<br><span style="color:#6b6b76">{html.escape(card.tags)}</span>'
            "</div>"
        )
    return (
        '<div class="neighbour-grid" style="display:grid;gap:10px;grid-template-columns:'
        f'repeat(auto-fill,minmax({NEIGHBOUR_GRID_MIN}px,1fr))">' + "".join(items) + "</div>"
    )


# ------------------------------------------------------------------ against the original
ORIGINAL = "original"
COMPARED = 10  # hashtags in each list of the comparison


@dataclass(frozen=True)
class Comparison:
    """This model's top 10 beside the original project's (None, with ``problem`` saying
    why, when the model was built before the original was kept in it)."""

    default: Recommendation
    original: Recommendation | None
    problem: str = ""

    @property
    def shared(self) -> set[str]:
        return set(self.default.tags) & set(self.original.tags if self.original else ())


def compare(rec, features, classes, n: int, blocklist, k: int = COMPARED) -> Comparison:
    """The comparison for one photo: this model as the page runs it (``n`` neighbours,
    ``blocklist``), and the original as it was (its 5 neighbours, no block list)."""
    from recommender.errors import ModelError

    default = rec.recommend_features(
        features, n_neighbours=n, k=k, blocklist=blocklist, classes=classes
    )
    try:
        original = rec.recommend_features(features, k=k, method=ORIGINAL, classes=classes)
    except ModelError as exc:
        return Comparison(default, None, str(exc))
    return Comparison(default, original)


def method_recall(info: Mapping[str, Any], method: str, k: int = 10) -> float | None:
    """Recall@``k`` of ``method`` in the model's evaluation (``build --evaluate``), if any."""
    evaluation = _mapping(info.get("evaluation"))
    figure = _number(_mapping(_mapping(evaluation.get("methods")).get(method)).get(f"recall@{k}"))
    if figure is None and evaluation.get("method") == method:
        figure = _number(evaluation.get(f"recall@{k}"))
    return figure
