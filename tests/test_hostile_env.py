"""Hostile environments and files (issue 26 §4): bad settings and odd files end in one line,
before any work, and nothing hangs."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import pytest
from conftest import run_cli as run
from PIL import Image

from recommender.errors import ConfigError, ImageError
from recommender.features import store as feature_store
from recommender.vision import images


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "-0.5", "lots"])
def test_a_bad_cache_bound_is_refused(monkeypatch, value):
    monkeypatch.setenv("HASHTAG_CACHE_MAX_GB", value)
    with pytest.raises(ConfigError, match="HASHTAG_CACHE_MAX_GB"):
        feature_store.max_bytes()


@pytest.mark.parametrize(("value", "gb"), [("0", 0), ("1.5", 1.5), (" 3 ", 3), ("", 20)])
def test_a_good_cache_bound_is_read(monkeypatch, value, gb):
    monkeypatch.setenv("HASHTAG_CACHE_MAX_GB", value)
    assert feature_store.max_bytes() == int(gb * 1e9)


def test_a_negative_bound_never_empties_the_store(monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    kept = cache / "shards" / "key" / "dataset"
    kept.mkdir(parents=True)
    (kept / "000000.json").write_text("{}")
    monkeypatch.setenv("HASHTAG_CACHE_MAX_GB", "-1")
    with pytest.raises(ConfigError):
        feature_store.prune(cache_dir=cache)
    with pytest.raises(ConfigError):
        feature_store.run_store("key", tmp_path, cache)
    assert (kept / "000000.json").exists()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HASHTAG_CACHE_MAX_GB", "nan"),
        ("HASHTAG_CACHE_MAX_GB", "inf"),
        ("HASHTAG_CACHE_MAX_GB", "-2"),
        ("HASHTAG_CACHE", "FILE"),
    ],
)
def test_build_refuses_bad_cache_settings_in_one_line_before_any_work(
    monkeypatch, tmp_path, capsys, name, value
):
    a_file = tmp_path / "cache-is-a-file"
    a_file.write_text("not a folder")
    monkeypatch.setenv(name, str(a_file) if value == "FILE" else value)
    data = tmp_path / "no-such-data-set"  # reading it would fail differently
    code, out, err = run(capsys, "build", data, "--out", tmp_path / "model", "--quiet")
    assert code != 0
    assert err.count("\n") == 1 and err.startswith("error: ") and name in err, err
    assert "Traceback" not in err and not (tmp_path / "model").exists()
    assert a_file.read_text() == "not a folder"


def test_a_cache_under_a_file_is_refused(tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="HASHTAG_CACHE"):
        feature_store.run_store("key", tmp_path, a_file / "below")


_FIFOS: list[Path] = []


def _mkfifo(path: Path) -> Path:
    os.mkfifo(path)
    _FIFOS.append(path)
    return path


def _with_timeout(fn, seconds=10.0):
    """Run ``fn`` in a thread; its result or exception, or fail if it hangs."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():  # free a reader stuck opening a FIFO, so the test run can end
        for fifo in _FIFOS:
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert not thread.is_alive(), "hung reading a FIFO"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def test_reading_a_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "photo.jpg"
    _mkfifo(fifo)
    with pytest.raises(ImageError, match="not a regular file"):
        _with_timeout(lambda: images.read_bytes(fifo))


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_only_regular_files_are_read(tmp_path, kind):
    if kind == "fifo":
        path = tmp_path / "x.png"
        _mkfifo(path)
    elif kind == "device":
        path = Path("/dev/zero")  # endless: read without the check, it fills the cap
    else:
        path = tmp_path / "x.png"
        path.mkdir()
    with pytest.raises(ImageError):
        _with_timeout(lambda: images.read_bytes(path))


def test_a_regular_file_still_reads(tmp_path):
    path = tmp_path / "x.png"
    Image.new("RGB", (4, 4)).save(path)
    assert images.read_bytes(path) == path.read_bytes()
