"""Load and warm the page's model when its server starts, not when the first visitor comes.

Warm means the backbone compiled, one query run through it and the ranking, and the chart
library imported (:func:`warm_page`), so the first upload costs what the next ones do.

``python -m recommender serve`` (``make run``) calls :func:`start` before it starts
Streamlit in the same process; the page's cached loader then calls :func:`take`, which
waits for that load (usually long done) instead of starting its own. Without a preload
(``streamlit run app.py``) :func:`take` simply loads.
"""

from __future__ import annotations

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
