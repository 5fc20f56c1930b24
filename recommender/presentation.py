"""What the page shows, as plain functions: hashtag text, chart figures, model summaries.

Nothing here computes a recommendation; it turns results and manifests into text and
figures, so ``app.py`` stays a thin view and these pieces can be tested without Streamlit.
Text from a data set (hashtags, paths) is escaped for the renderer it goes to: Markdown via
:func:`escape_markdown`, Plotly labels via :func:`plotly_text`.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .recommender import Neighbor, TagScore

INSTAGRAM_MAX_HASHTAGS = 5
"""Instagram accepts at most this many hashtags on a post."""

PHOTO_TYPES = ("jpg", "jpeg", "png", "webp")
"""File types the page offers to upload and lists as example photos."""

HIGHLIGHT = "#d62976"  # the theme's primary colour: the first INSTAGRAM_MAX_HASHTAGS bars
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


def score_figure(hashtags: Sequence[TagScore], highlight: int = INSTAGRAM_MAX_HASHTAGS):
    """Horizontal bar chart of hashtag scores, best at the top, the first ``highlight`` marked.

    Hovering a bar shows the hashtag and its score.
    """
    import plotly.graph_objects as go

    labels = [plotly_text(f"#{t.tag}") for t in hashtags]
    fig = go.Figure(
        go.Bar(
            x=[t.score for t in hashtags],
            y=labels,
            orientation="h",
            marker_color=[HIGHLIGHT if i < highlight else MUTED for i in range(len(hashtags))],
            hovertemplate="<b>%{y}</b><br>score %{x:.3f}<extra></extra>",
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


def network_sees(seen: Sequence[tuple[str, float]]) -> str:
    """``"the network sees: cheeseburger 0.83, hotdog 0.10"`` ("" when nothing was seen)."""
    if not seen:
        return ""
    return "the network sees: " + ", ".join(f"{name} {p:.2f}" for name, p in seen)


def contribution_figure(tag: TagScore, neighbors: Sequence[Neighbor]):
    """Horizontal bar chart of what each neighbour added to ``tag``'s score.

    Bars are labelled by :func:`neighbour_label`, in neighbour order (most similar on top).
    When the method has an image prior (``tag.prior`` not 0), a last bar labelled
    :data:`PRIOR_LABEL` shows what came from the photo itself, and when the ImageNet head
    named something that stands for the hashtag (``tag.content``), a bar labelled
    :data:`CONTENT_LABEL`; the bars sum to the score.
    """
    import plotly.graph_objects as go

    labels = [neighbour_label(i + 1, nb.similarity) for i, nb in enumerate(neighbors)]
    values = list(tag.contributions[: len(neighbors)])
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

    Reads ``info["evaluation"]`` (as ``build --evaluate`` writes it: flat keys ``method``,
    ``recall@10``, ``beyond_recall@10``, ``popularity_recall@10``, ``splits``,
    ``test_posts``) defensively: also under a ``"summary"`` key or with ``_at_`` spellings.
    Returns None when there is no usable evaluation; otherwise a dict with ``method`` (str or
    None), ``recall``, ``beyond`` and ``popularity`` (float or None), ``off_topic`` (other
    categories' search tags per top ``k``, key ``off_topic@10``) and ``own_category_hit``
    (share of single-tag categories' held-out photos whose own tag made the top ``k``, key
    ``own_category_hit@10``) (float or None), ``splits`` and ``test_posts`` (int or None)
    and ``k``.
    """
    evaluation = _mapping(info.get("evaluation"))
    if not evaluation:
        return None
    sources = [evaluation, _mapping(evaluation.get("summary"))]

    def find(*keys: str) -> Any:
        for source in sources:
            for key in keys:
                if key in source:
                    return source[key]
        return None

    recall = _number(find(f"recall@{k}", f"recall_at_{k}"))
    method = find("method")
    if isinstance(method, Mapping):
        method = method.get("name")
    if recall is None and method is None:
        return None
    counts = {key: _number(find(key)) for key in ("splits", "test_posts")}
    return {
        "method": None if method is None else str(method),
        "recall": recall,
        "beyond": _number(find(f"beyond_recall@{k}", f"beyond_recall_at_{k}")),
        "popularity": _number(find(f"popularity_recall@{k}", f"popularity_recall_at_{k}")),
        "off_topic": _number(find(f"off_topic@{k}", f"off_topic_at_{k}")),
        "own_category_hit": _number(find(f"own_category_hit@{k}", f"own_category_hit_at_{k}")),
        **{key: None if value is None else int(value) for key, value in counts.items()},
        "k": k,
    }


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
    "als": (0.9, 1.0, "Training the hashtag model", "iterations"),
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

    from .images import open_image

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
