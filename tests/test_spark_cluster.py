"""The Spark engine on a real standalone cluster: a master and two workers, each a separate
process started from the pyspark wheel's own ``bin/spark-class`` (tests/spark_cluster.py).

The builds run the README's command in a subprocess (a driver of its own, as a user runs
it), on a small subset of the real data set: every image is embedded on the workers and
written by them into the feature store, then the model is compared with the local engine's.
Faults: a worker SIGKILLed mid-embed, a driver SIGKILLed mid-embed, a master without
workers, a store the executors cannot write.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, real_photo_manifest
from spark_cluster import StandaloneCluster, kill_tree, require_cluster_prerequisites

pytestmark = [pytest.mark.slow, pytest.mark.spark]

BUILD_TIMEOUT = 900  # seconds: a build on a loaded 2-core machine
# The fault tests are about the embed stage: a short ALS keeps their builds quick.
SMALL = ("--shard-size", "2", "--iterations", "2", "--quiet")


@pytest.fixture(scope="module")
def photos(tmp_path_factory, dataset_path) -> Path:
    """24 real food and animal photos with their real hashtags, as a CSV manifest."""
    return real_photo_manifest(dataset_path, tmp_path_factory.mktemp("cluster-data"), 12)


def _env(cluster: StandaloneCluster, cache: Path) -> dict[str, str]:
    env = cluster.env()  # SPARK_LOCAL_IP=127.0.0.1: the driver binds there too
    env.update(HASHTAG_CACHE=str(cache), TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    return env


def _build(cluster, data: Path, out: Path, cache: Path, *extra: str, wait: bool = True):
    """``python -m recommender build DATA --engine spark --spark-master URL --out M``."""
    command = [sys.executable, "-m", "recommender", "build", str(data), "--engine", "spark",
               "--spark-master", cluster.url, "--out", str(out), *extra]  # fmt: skip
    if wait:
        return subprocess.run(
            command, env=_env(cluster, cache), cwd=REPO, capture_output=True, text=True,
            timeout=BUILD_TIMEOUT,
        )  # fmt: skip
    return subprocess.Popen(
        command, env=_env(cluster, cache), cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


def _store(cache: Path) -> Path | None:
    folders = [f for f in (cache / "shards").glob("*/*") if f.is_dir()]
    return folders[0] if folders else None


def _committed(cache: Path) -> dict[str, int]:
    """Shard record name -> its modification time (ns), of the store in ``cache``."""
    store = _store(cache)
    if store is None:
        return {}
    out = {}
    for record in store.glob("[0-9]*.json"):
        try:
            out[record.name] = record.stat().st_mtime_ns
        except FileNotFoundError:
            pass
    return out


def _wait_for_shards(proc, cache: Path, n: int, timeout: float = BUILD_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while len(_committed(cache)) < n:
        if proc.poll() is not None:
            pytest.fail(f"the build ended before {n} shards were written: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            pytest.fail(f"fewer than {n} shards written in {timeout} s")
        time.sleep(0.2)


def _check_store(cache: Path, n_images: int, n_shards: int) -> None:
    """Every image in exactly one committed shard, and no partial file in the store."""
    from recommender.features.shards import ShardStore

    folder = _store(cache)
    records = {json.loads(r.read_text())["number"]: r for r in folder.glob("[0-9]*.json")}
    assert sorted(records) == list(range(n_shards))
    key = json.loads(next(iter(records.values())).read_text())["key"]
    store = ShardStore(folder, key)
    positions = []
    for number in range(n_shards):
        shard = store.read_shard(number)  # verified: size and sha256 against the record
        assert shard is not None and not shard.meta["errors"]
        positions.extend(int(p) for p in shard.extra["position"])
    assert sorted(positions) == list(range(n_images))  # none twice, none missing
    named = {json.loads(r.read_text())["file"] for r in records.values()}
    for path in folder.iterdir():
        assert not path.name.endswith(".tmp"), f"partial file left: {path.name}"
        if path.suffix == ".bin":
            assert path.name in named, f"data file no record names: {path.name}"


def test_the_readme_command_builds_the_local_engines_model_on_the_cluster(
    spark_cluster, photos, dataset_path, tmp_path
):
    from recommender import HashtagRecommender
    from recommender.build import build_model

    result = _build(spark_cluster, photos, tmp_path / "spark", tmp_path / "cache")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"Spark executors run Python {sys.executable}" in result.stderr
    assert "note: the feature store" not in result.stderr  # a master on 127.0.0.1
    build_model(photos, tmp_path / "local", use_cache=False)
    a = HashtagRecommender.load(tmp_path / "local")
    b = HashtagRecommender.load(tmp_path / "spark")
    assert b.manifest["engine"]["name"] == "spark"
    assert b.manifest["engine"]["master"] == spark_cluster.url
    assert a.image_paths == b.image_paths and len(a.image_paths) == 24
    fa, fb = (np.asarray(r.arrays.features, np.float32) for r in (a, b))
    assert np.abs(fa - fb).max() <= 1e-3  # float16 precision
    # The 10 demo photos: the same hashtags (ALS is Spark's here, implicit's there).
    overlaps = []
    for photo in sorted((dataset_path / "test").glob("*.jpg")):
        ta, tb = a.recommend(photo, k=10).tags, b.recommend(photo, k=10).tags
        overlaps.append(len(set(ta) & set(tb)) / 10)
    assert len(overlaps) == 10 and np.mean(overlaps) >= 0.9, overlaps


def test_a_worker_killed_mid_embed_the_build_finishes_on_the_other(spark_cluster, photos, tmp_path):
    cache = tmp_path / "cache"
    proc = _build(spark_cluster, photos, tmp_path / "m", cache, *SMALL, wait=False)  # fmt: skip
    try:
        _wait_for_shards(proc, cache, 6)  # about half of the 12
        killed = spark_cluster.kill_worker(0)  # its JVM, its executor, its Python workers
        assert len(killed) >= 2  # the worker and its executor at least
        _, err = proc.communicate(timeout=BUILD_TIMEOUT)
    finally:
        kill_tree(proc.pid, signal.SIGKILL) if proc.poll() is None else None
        spark_cluster.replace_worker(0)
    assert proc.returncode == 0, err[-2000:]
    _check_store(cache, 24, 12)


def test_a_driver_killed_mid_embed_resumes_at_the_first_missing_shard(
    spark_cluster, photos, tmp_path
):
    cache = tmp_path / "cache"
    proc = _build(spark_cluster, photos, tmp_path / "m", cache, *SMALL, wait=False)  # fmt: skip
    try:
        _wait_for_shards(proc, cache, 6)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver: Python and its JVM
        proc.communicate()
    time.sleep(2)  # tasks already running may still commit their shard
    kept = _committed(cache)
    assert 6 <= len(kept) < 12
    spark_cluster.wait_workers(2)
    result = _build(spark_cluster, photos, tmp_path / "m", cache, *SMALL)
    assert result.returncode == 0, result.stderr[-2000:]
    now = _committed(cache)
    assert len(now) == 12
    assert {name: now[name] for name in kept} == kept  # kept as they were, not rewritten
    _check_store(cache, 24, 12)


@pytest.fixture(scope="module")
def lone_master(tmp_path_factory):
    """A master with no worker (one is added, then killed, by the test that needs one)."""
    require_cluster_prerequisites()
    with StandaloneCluster(tmp_path_factory.mktemp("lone-master"), workers=0) as cluster:
        yield cluster


def test_a_master_with_no_worker_is_one_line_not_a_hang(lone_master, photos, tmp_path):
    start = time.monotonic()
    result = _build(lone_master, photos, tmp_path / "m", tmp_path / "cache", "--spark-wait", "5")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1
    assert lines[-1].startswith(f"error: no Spark executor for 5 s: the master {lone_master.url}")
    assert not (tmp_path / "m").exists()
    assert time.monotonic() - start < 120


def test_the_last_worker_lost_mid_job_stops_the_build_with_one_line(lone_master, photos, tmp_path):
    lone_master.add_worker()
    lone_master.wait_workers(1)
    cache = tmp_path / "cache"
    proc = _build(lone_master, photos, tmp_path / "m", cache, *SMALL, "--spark-wait", "10",
                  wait=False)  # fmt: skip
    try:
        _wait_for_shards(proc, cache, 2)
        lone_master.kill_worker(0)
        killed_at = time.monotonic()
        _, err = proc.communicate(timeout=300)
    finally:
        kill_tree(proc.pid, signal.SIGKILL) if proc.poll() is None else None
    assert proc.returncode == 1
    assert err.strip().splitlines()[-1].startswith("error: no Spark executor for 10 s")
    assert time.monotonic() - killed_at < 120  # stopped, not hung


def test_a_store_the_executors_cannot_write_is_one_line_naming_hashtag_cache(
    spark_cluster, photos, tmp_path
):
    """The driver never writes the store: the executors find a file where its folder
    should be (what an executor without the shared mount sees, even as root)."""
    (tmp_path / "not-a-folder").write_text("a file")
    script = f"""
import sys
from recommender.engines import EmbedJob
from recommender.engines.spark import SparkEngine, SparkError
from recommender.features.shards import ShardStore
store = ShardStore({str(tmp_path / "not-a-folder" / "store")!r}, "k")
paths = [str(p) for p in sorted(__import__("pathlib").Path({str(photos)!r}).rglob("*.jpg"))]
try:
    job = EmbedJob(paths[:4], store, "efficientnet_lite0")
    # One attempt: Spark would retry the task 4 times, to the same end.
    SparkEngine(master={spark_cluster.url!r}, conf={{"spark.task.maxFailures": "1"}}).embed(job)
except SparkError as exc:
    print(exc)
    sys.exit(1)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], env=_env(spark_cluster, tmp_path / "cache"), cwd=REPO,
        capture_output=True, text=True, timeout=BUILD_TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    line = result.stdout.strip()
    assert "\n" not in line
    assert line.startswith("the Spark executors cannot write the feature store (")
    assert "not-a-folder" in line and line.endswith("set HASHTAG_CACHE to a folder every "
                                                   "executor can write")  # fmt: skip
