"""The page's model is loaded and warmed when the server starts (``recommender serve``):
the first visitor takes that model instead of loading one."""

from __future__ import annotations

import threading

import pytest

from recommender.errors import ModelError
from recommender.query.recommender import HashtagRecommender
from recommender.ui import preload


@pytest.fixture
def loads(monkeypatch):
    calls = []
    release = threading.Event()

    def load(path, warm=False):
        release.wait(5)
        calls.append((str(path), warm))
        if "damaged" in str(path):
            raise ModelError("The model is damaged; rebuild it.")
        return object()

    monkeypatch.setattr(HashtagRecommender, "load", staticmethod(load))
    return calls, release


def test_the_first_visitor_takes_the_model_loaded_at_start(loads, tmp_path):
    calls, release = loads
    future = preload.start(tmp_path / "m", "v1")
    release.set()
    model = preload.take(tmp_path / "m", "v1")  # waits for the load in progress
    assert model is future.result() and calls == [(str(tmp_path / "m"), True)]
    # Taken once: the page's cache keeps it; a rebuilt model (new version) loads anew.
    other = preload.take(tmp_path / "m", "v2")
    assert other is not model and len(calls) == 2


def test_a_preload_of_a_damaged_model_fails_the_same_way_a_load_would(loads, tmp_path):
    calls, release = loads
    release.set()
    preload.start(tmp_path / "damaged", "v1")
    with pytest.raises(ModelError, match="rebuild"):
        preload.take(tmp_path / "damaged", "v1")


def test_serve_starts_streamlit_on_the_address_given_without_a_source_watcher(
    monkeypatch, tmp_path
):
    """``serve`` is how the page is served (``make run``): no file watcher, whose walk over
    every loaded module after a run cost a first upload 0.3 s on the server's event loop."""
    import sys

    from streamlit.web import cli as streamlit_cli

    from recommender import cli

    seen = []
    monkeypatch.setattr(streamlit_cli, "main", lambda: seen.append(list(sys.argv)) or 0)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setenv("HASHTAG_MODEL", str(tmp_path))  # serve sets it; restored after
    args = ["serve", "--model", str(tmp_path / "none"), "--port", "8765"]
    assert cli.main([*args, "--address", "127.0.0.1"]) == 0
    (argv,) = seen
    assert argv[:2] == ["streamlit", "run"] and argv[2].endswith("app.py")
    assert "--server.fileWatcherType=none" in argv
    assert {"--server.address=127.0.0.1", "--server.port=8765"} <= set(argv)


def test_the_landing_page_preloads_every_part_of_the_result_view_streamlit_has():
    # Streamlit names its chunks with a content hash; a part renamed in a new Streamlit
    # would silently stop being preloaded. (The browser test checks that the first result
    # loads no code the preload did not.)
    chunks = preload.result_view_chunks()
    for stem in preload.RESULT_VIEW_CHUNKS:
        assert any(name.split(".")[0] == stem for name in chunks), stem
    html = preload.browser_preload_html()
    assert html.startswith("<script>") and all(f'"{name}"' in html for name in chunks)
