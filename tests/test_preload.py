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
