"""Load and warm the page's model when its server starts, not when the first visitor comes.

Warm means the backbone compiled, one query run through it and the ranking, and the chart
library imported (:func:`warm_page`), so the first upload costs what the next ones do.

``python -m recommender serve`` (``make run``) calls :func:`start` before it starts
Streamlit in the same process; the page's cached loader then calls :func:`take`, which
waits for that load (usually long done) instead of starting its own. Without a preload
(``streamlit run app.py``) :func:`take` simply loads.
"""

from __future__ import annotations

import functools
import threading
from concurrent.futures import Future
from pathlib import Path

_lock = threading.Lock()
_pending: dict[tuple[str, str], Future] = {}


def _key(path: str | Path, version: str) -> tuple[str, str]:
    return str(Path(path).resolve()), version


def start(path: str | Path, version: str) -> Future:
    """Load the model at ``path`` (whose :func:`~recommender.store.model_io.model_version`
    is ``version``) and warm its backbone, in a background thread."""
    future: Future = Future()
    with _lock:
        _pending.clear()  # only the newest model is worth keeping
        _pending[_key(path, version)] = future

    def run() -> None:
        from recommender.query.recommender import HashtagRecommender

        try:
            rec = HashtagRecommender.load(path, warm=True)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever takes it
            future.set_exception(exc)
            return
        try:
            warm_page(rec)
        except Exception:  # noqa: BLE001, S110 - warming is an optimisation only
            pass
        future.set_result(rec)

    threading.Thread(target=run, name="preload-model", daemon=True).start()
    return future


def warm_page(rec) -> None:
    """Run once what the page's first photo runs: a query through the backbone and the
    ranking with its explanations, and the chart library's import and first figures (over
    a second of a first upload, without this)."""
    from PIL import Image

    from recommender.ui import presentation as pres

    result = rec.recommend(Image.new("RGB", (64, 64), (128, 128, 128)), k=10)
    if result.hashtags:
        pres.score_figure(result.hashtags)
        pres.contribution_figure(result.hashtags[0], result.neighbours)


def take(path: str | Path, version: str):
    """The model at ``path``, warmed: the preloaded one if it is this ``version``, else
    loaded now. A preload's error (a damaged model) is raised here, as a load's would be."""
    from recommender.query.recommender import HashtagRecommender

    with _lock:
        future = _pending.pop(_key(path, version), None)
    if future is not None:
        return future.result()
    return HashtagRecommender.load(path, warm=True)


# The parts of Streamlit's page that a result view shows and the landing page does not. The
# browser fetches and runs each the first time an element needs it (Plotly alone is 4.7 MB of
# JavaScript), which made a first upload about twice as slow as the next ones.
RESULT_VIEW_CHUNKS = (
    "PlotlyChart",  # the score and contribution charts
    "StreamlitSyntaxHighlighter",  # st.code: the hashtags to paste
    "ImageList",  # st.image: the photo
    "Selectbox",  # the hashtag to explain
    "Progress",
    "ProgressBar",  # the progress of the features
    "Html",  # the neighbour cards
    "DataFrame",  # the table of several photos
    "DownloadButton",  # its CSV
    "axios",  # the upload itself
)
RESULT_VIEW_FONTS = ("italic 16px 'Source Sans'",)


def _static_js() -> Path:
    import streamlit

    return Path(streamlit.__file__).parent / "static" / "static" / "js"


def result_view_chunks() -> list[str]:
    """The file names of :data:`RESULT_VIEW_CHUNKS` in the installed Streamlit (their names
    carry a content hash). A chunk Streamlit no longer has is left out."""
    names = []
    for stem in RESULT_VIEW_CHUNKS:
        found = sorted(p.name for p in _static_js().glob(f"{stem}.*.js") if p.name.count(".") == 2)
        names += found
    return names


@functools.cache  # the installed Streamlit's files: 10 ms of globbing on every landing run
def browser_preload_html() -> str:
    """A script for the landing page: once the browser is idle, it loads the code and the
    font of the result view, so the first photo shows as fast as the next ones. It shows
    nothing, and a chunk that fails to load is only loaded later, when needed."""
    import json

    return (
        "<script>(() => {\n"
        f"const chunks = {json.dumps(result_view_chunks())};\n"
        f"const fonts = {json.dumps(list(RESULT_VIEW_FONTS))};\n"
        "const main = document.querySelector('script[type=module][src*=\"/static/js/\"]');\n"
        "if (!main || window.hashtagPreload) return;\n"
        "const base = new URL('.', main.src);\n"
        "const load = () => { window.hashtagPreload = Promise.allSettled([\n"
        "  ...chunks.map((name) => import(new URL(name, base).href)),\n"
        "  ...fonts.map((font) => document.fonts.load(font)),\n"
        "]); };\n"
        "(window.requestIdleCallback || setTimeout)(load);\n"
        "})();</script>"
    )
