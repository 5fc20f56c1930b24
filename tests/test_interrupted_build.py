"""A build killed half-way leaves the previous model at the same path intact and loadable."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from recommender import HashtagRecommender

REPO = Path(__file__).resolve().parent.parent


def _copy_model(src: Path, dst: Path) -> bytes:
    shutil.copytree(src, dst)
    return (dst / "manifest.json").read_bytes()


def _wait_for(proc: subprocess.Popen, needle: str, timeout: float = 300) -> None:
    """Read the process's output (not line by line: progress bars end lines with \\r)."""
    deadline = time.monotonic() + timeout
    seen = b""
    fd = proc.stdout.fileno()
    while time.monotonic() < deadline:
        chunk = os.read(fd, 4096)
        if not chunk:
            raise AssertionError(f"process ended before {needle!r}: {seen[-2000:]!r}")
        seen += chunk
        if needle.encode() in seen:
            return
    raise AssertionError(f"timed out waiting for {needle!r}")


def test_killed_while_writing_the_files(tiny_build, tmp_path):
    """SIGKILL after the first data file of the new model is on disk."""
    target = tmp_path / "model"
    before = _copy_model(tiny_build[0], target)
    script = textwrap.dedent(
        f"""
        import sys, time
        import recommender.store.model_io as mio
        from recommender import HashtagRecommender
        original = mio._write_stream
        def slow(folder, name, pieces):
            out = original(folder, name, pieces)
            print("wrote", name, flush=True)
            time.sleep(60)
            return out
        mio._write_stream = slow
        HashtagRecommender.load({str(tiny_build[0])!r}).save({str(target)!r})
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(proc, "wrote")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (target / "manifest.json").read_bytes() == before
    HashtagRecommender.load(target)
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".model.tmp-")]
    assert leftovers, "the killed build's temporary folder should be beside the model"
    # The next successful write clears what the dead process left behind.
    HashtagRecommender.load(target).save(target)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model.")]


def test_killed_during_feature_extraction(demo_build, dataset_path, tmp_path):
    """SIGKILL of a real `build` while it embeds images (no cache, so it is slow enough)."""
    target = tmp_path / "model"
    before = _copy_model(demo_build[0], target)
    env = {**os.environ, "HASHTAG_CACHE": str(tmp_path / "cache"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "recommender", "build", str(dataset_path), "--out", str(target)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(proc, "image features")
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (target / "manifest.json").read_bytes() == before
    HashtagRecommender.load(target)
