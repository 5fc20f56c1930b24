"""The embed stage: images -> feature shards, resumable, shared, keyed by what they depend on."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import flat_photos
from PIL import Image

from recommender.config import BuildConfig
from recommender.data.datasets import load_dataset
from recommender.engines import EmbedJob, LocalEngine, get_engine
from recommender.engines.embed_stage import dataset_features
from recommender.errors import ConfigError
from recommender.features import store as feature_store
from recommender.features.pipeline import embed_to_shards
from recommender.features.shards import ShardStore

REPO = Path(__file__).resolve().parent.parent


class MeanColour:
    """A stand-in backbone: the feature of an image is its unit-length mean colour."""

    name, weights, input_size, dim = "mean-colour", "none", 16, 3

    def __init__(self, weights_sha256: str = "w0", delay: float = 0.0):
        self.calls: list[int] = []
        self.weights_sha256 = weights_sha256
        self.delay = delay

    @property
    def cache_key(self) -> str:
        return f"{self.name}-{self.weights_sha256[:16]}-p1"

    def fingerprint(self) -> dict:
        return {"name": self.name, "weights_sha256": self.weights_sha256}

    def embed(self, batch):
        self.calls.append(len(batch))
        time.sleep(self.delay)
        v = batch.reshape(len(batch), -1, 3).mean(axis=1) + 1.0
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


class MeanColourHead(MeanColour):
    """The stand-in with an "ImageNet head": 1000 class probabilities from the same call,
    peaked on classes that depend on the image's mean colour."""

    has_classes = True

    def embed(self, batch):
        raise AssertionError("a backbone with a head is run once, by embed_with_classes")

    def embed_with_classes(self, batch):
        features = MeanColour.embed(self, batch)
        logits = np.zeros((len(batch), 1000), np.float32)
        mean = batch.reshape(len(batch), -1, 3).mean(axis=1)
        for c in range(3):
            logits[np.arange(len(batch)), (mean[:, c]).astype(int) + 300 * c] = 3.0 + c
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        return features, probs


def _job(paths, store, shard_size=4, thumb_size=8):
    return EmbedJob(
        [str(p) for p in paths], store, "mean-colour", None, thumb_size, 4, 2, shard_size
    )


def _all_rows(store: ShardStore, n_shards: int):
    shards = [store.read_shard(i) for i in range(n_shards)]
    assert all(s is not None for s in shards)
    return (
        np.concatenate([s.features for s in shards]),
        [int(p) for s in shards for p in s.extra["position"]],
        [e for s in shards for e in s.meta["errors"]],
    )


def test_shards_cover_fixed_ranges_in_order(tmp_path):
    paths = flat_photos(tmp_path / "img")
    store = ShardStore(tmp_path / "store", "k")
    stats = embed_to_shards(_job(paths, store), backbone=MeanColour())
    assert store.shards() == list(range(6)) and stats.shards_written == 6
    features, positions, errors = _all_rows(store, 6)
    assert positions == [i for i in range(24) if i != 5]
    assert [e[0] for e in errors] == [5] and stats.embedded == 23
    assert store.read_shard(1).meta == {"first": 4, "size": 4, "errors": errors}
    assert features.dtype == np.float16 and features.shape == (23, 3)


def test_a_rebuild_embeds_only_new_images_and_keeps_unchanged_shards(tmp_path):
    paths = flat_photos(tmp_path / "img")
    store = ShardStore(tmp_path / "store", "k")
    embed_to_shards(_job(paths[:10], store), backbone=MeanColour())
    first = _all_rows(store, 3)[0]
    bb = MeanColour()
    stats = embed_to_shards(_job(paths, store), backbone=bb)
    assert stats.reused == 9 and sum(bb.calls) == 23 - 9  # only new images hit the backbone
    assert stats.shards_kept == 2  # shards 0 and 1 cover the same files: not rewritten
    np.testing.assert_array_equal(_all_rows(store, 6)[0][:9], first)


def test_a_damaged_shard_is_re_embedded_never_used(tmp_path):
    paths = flat_photos(tmp_path / "img")
    store = ShardStore(tmp_path / "store", "k")
    embed_to_shards(_job(paths, store), backbone=MeanColour())
    before = _all_rows(store, 6)[0]
    data = next((tmp_path / "store").glob("000002-*.bin"))
    data.write_bytes(data.read_bytes()[:100])  # truncated
    bb = MeanColour()
    stats = embed_to_shards(_job(paths, store), backbone=bb)
    assert sum(bb.calls) == 4 and stats.shards_written == 1 and stats.shards_kept == 5
    np.testing.assert_array_equal(_all_rows(store, 6)[0], before)


_KILLABLE = """
import sys, time
sys.path.insert(0, {repo!r})
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_embed_stage import MeanColour, _job
from recommender.features.pipeline import embed_to_shards
from recommender.features.shards import ShardStore
paths = sorted(Path({img!r}).glob("*.jpg"))
store = ShardStore({store!r}, "k")
def progress(done, total):
    print("done", done, total, flush=True)
stats = embed_to_shards(_job(paths, store, shard_size={size}), MeanColour(delay={delay}), progress)
print("embedded", stats.embedded, flush=True)
"""


def _embed_process(tmp_path, size=8, delay=0.05):
    script = _KILLABLE.format(
        repo=str(REPO),
        tests=str(REPO / "tests"),
        img=str(tmp_path / "img"),
        store=str(tmp_path / "store"),
        size=size,
        delay=delay,
    )
    return subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True
    )


def test_a_build_killed_half_way_resumes_and_re_embeds_at_most_one_shard(tmp_path):
    paths = sorted(flat_photos(tmp_path / "img", 47))  # 48 files, 6 shards of 8
    proc = _embed_process(tmp_path)
    last = 0
    try:
        for line in proc.stdout:
            if line.startswith("done"):
                last = int(line.split()[1])
                if last >= len(paths) // 2:
                    break
        proc.send_signal(signal.SIGKILL)
        for line in proc.stdout.read().splitlines():  # what it printed before dying
            if line.startswith("done"):
                last = int(line.split()[1])
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    store = ShardStore(tmp_path / "store", "k")
    kept = store.shards()
    assert kept == list(range(len(kept))) and 1 <= len(kept) < 6
    assert last - 8 * len(kept) <= 8  # what the kill lost: at most one shard's images
    bb = MeanColour()
    stats = embed_to_shards(_job(paths, store, shard_size=8), backbone=bb)
    assert stats.shards_kept == len(kept) and stats.reused == 8 * len(kept)
    assert sum(bb.calls) == stats.embedded == 47 - stats.reused  # only the missing shards
    fresh = ShardStore(tmp_path / "fresh", "k")
    embed_to_shards(_job(paths, fresh, shard_size=8), backbone=MeanColour())
    np.testing.assert_array_equal(_all_rows(store, 6)[0], _all_rows(fresh, 6)[0])


def test_two_builds_sharing_one_store_at_once(tmp_path):
    paths = sorted(flat_photos(tmp_path / "img", 39))
    procs = [_embed_process(tmp_path, size=8, delay=0.02) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    store = ShardStore(tmp_path / "store", "k")
    assert store.shards() == list(range(5))
    fresh = ShardStore(tmp_path / "fresh", "k")
    embed_to_shards(_job(paths, fresh, shard_size=8), backbone=MeanColour())
    np.testing.assert_array_equal(_all_rows(store, 5)[0], _all_rows(fresh, 5)[0])
    assert not [f for f in (tmp_path / "store").iterdir() if f.name.endswith(".tmp")]
    assert len(list((tmp_path / "store").glob("*.bin"))) == 5  # no orphaned data


def _dataset(tmp_path, n=12):
    root = tmp_path / "posts"
    flat_photos(root / "img", n)
    rows = [{"image": f"img/{i:02d}.jpg", "hashtags": ["alpha", f"tag{i % 3}"]} for i in range(n)]
    rows.append({"image": "img/broken.jpg", "hashtags": ["alpha"]})
    (root / "posts.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return load_dataset(root)


def test_the_store_is_keyed_by_thumbnail_size(tmp_path):
    ds = _dataset(tmp_path)
    cache = tmp_path / "cache"
    small = dataset_features(ds, BuildConfig(thumb_size=32), backbone=MeanColour(), cache_dir=cache)
    big = dataset_features(ds, BuildConfig(thumb_size=128), backbone=MeanColour(), cache_dir=cache)
    assert small.counts["images_embedded"] == 12 and big.counts["images_from_cache"] == 0
    # the photos are 40-51 px wide: a 128 px request upsamples, never returns the 32 px ones
    assert {Image.open(io.BytesIO(t)).size for t in big.thumbnails} == {(128, 128)}
    assert {Image.open(io.BytesIO(t)).size for t in small.thumbnails} == {(32, 32)}
    again = dataset_features(ds, BuildConfig(thumb_size=32), backbone=MeanColour(), cache_dir=cache)
    assert again.counts["images_from_cache"] == 12 and again.counts["images_embedded"] == 0


def test_changed_weights_in_the_same_file_do_not_reuse_features(tmp_path):
    from recommender.checksums import sha256_file

    ds = _dataset(tmp_path)
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"first training run")
    config = BuildConfig(weights=str(weights))
    cache = tmp_path / "cache"
    dataset_features(ds, config, backbone=MeanColour(sha256_file(str(weights))), cache_dir=cache)
    same = MeanColour(sha256_file(str(weights)))
    dataset_features(ds, config, backbone=same, cache_dir=cache)
    assert sum(same.calls) == 0
    weights.write_bytes(b"retrained, same path")
    changed = MeanColour(sha256_file(str(weights)))
    feats = dataset_features(ds, config, backbone=changed, cache_dir=cache)
    assert sum(changed.calls) == 12 and feats.counts["images_from_cache"] == 0


def test_features_join_the_posts_with_duplicates_indexed_once(tmp_path):
    ds = _dataset(tmp_path)
    (ds.root / "img" / "copy.jpg").write_bytes((ds.root / "img" / "03.jpg").read_bytes())
    with open(ds.root / "posts.jsonl", "a") as fh:
        fh.write(json.dumps({"image": "img/copy.jpg", "hashtags": ["beta"]}) + "\n")
    ds = load_dataset(ds.root)
    feats = dataset_features(ds, BuildConfig(), backbone=MeanColour(), cache_dir=tmp_path / "c")
    assert feats.counts["images_duplicate"] == 1 and feats.counts["images_unreadable"] == 1
    assert feats.features.dtype == np.float16 and len(feats.thumbnails) == 13
    for post, row in zip(ds.posts, feats.image_rows, strict=True):
        if row >= 0:
            data = (ds.root / post.image).read_bytes()
            assert feats.hashes[row] == hashlib.sha256(data).hexdigest()
    assert feats.image_rows[-1] == -1  # the copy shares the row of 03.jpg
    assert "broken.jpg" in feats.problems[0]


def test_a_private_store_leaves_nothing_behind(tmp_path, monkeypatch):
    ds = _dataset(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    feats = dataset_features(ds, BuildConfig(), use_cache=False, backbone=MeanColour())
    assert len(feats.features) == 12 and feats.features[0].dtype == np.float16
    assert list((tmp_path / "tmp").iterdir()) == []


def test_the_store_is_bounded_least_recently_used_first(tmp_path):
    cache = tmp_path / "cache"
    stores = [feature_store.run_store("k", tmp_path / f"data{i}", cache) for i in range(3)]
    for age, store in enumerate(stores):
        with feature_store.lease(store):
            store.write_shard(0, [hashlib.sha256(b"x").hexdigest()], np.zeros((1, 1000)))
        os.utime(store.folder / "last-used", (1000 + age, 1000 + age))
    size = stores[0].size_bytes()
    with feature_store.lease(stores[0]):  # in use by a build: never pruned
        removed = feature_store.prune(limit=size, cache_dir=cache)
    assert removed == [stores[1].folder, stores[2].folder][: len(removed)]
    assert stores[0].shards() == [0] and not stores[1].folder.exists()
    assert sum(s.size_bytes() for s in stores) <= size


def test_engines_are_chosen_by_name():
    assert isinstance(get_engine("local"), LocalEngine)
    with pytest.raises(ConfigError, match="local"):
        get_engine("nope")


def test_a_failed_shard_write_keeps_the_earlier_shards(tmp_path, monkeypatch):
    paths = flat_photos(tmp_path / "img")
    store = ShardStore(tmp_path / "store", "k")
    embed_to_shards(_job(paths, store), backbone=MeanColour())
    records = {p.name: p.read_bytes() for p in (tmp_path / "store").glob("*.json")}
    real = ShardStore.write_shard

    def fail_on_3(self, number, *a, **k):
        if number == 3:
            raise OSError(28, "No space left on device")
        return real(self, number, *a, **k)

    monkeypatch.setattr(ShardStore, "write_shard", fail_on_3)
    (tmp_path / "img" / "11.jpg").write_bytes((tmp_path / "img" / "00.jpg").read_bytes())  # shard 3
    with pytest.raises(OSError, match="space"):
        embed_to_shards(_job(paths, store), backbone=MeanColour())
    assert {p.name: p.read_bytes() for p in (tmp_path / "store").glob("*.json")} == records
    assert all(store.read_shard(i) is not None for i in range(6))


def test_the_embed_stage_keeps_the_top_classes_of_the_same_forward_pass(tmp_path):
    from recommender.vision.content import TopClasses

    ds = _dataset(tmp_path)
    cache = tmp_path / "cache"
    head = MeanColourHead()
    feats = dataset_features(ds, BuildConfig(), backbone=head, cache_dir=cache, shard_size=5)
    assert sum(head.calls) == 12  # one pass per image, features and classes together
    from recommender.vision.images import load_for_model

    good = [(p, r) for p, r in zip(ds.posts, feats.image_rows, strict=True) if r >= 0]
    rows = [r for _, r in good]
    pixels = np.stack([load_for_model(ds.image_path(p), 16) for p, _ in good])
    expected = TopClasses.of(MeanColourHead().embed_with_classes(pixels)[1])
    assert feats.classes.ids.dtype == np.int16 and feats.classes.probs.dtype == np.float16
    assert feats.classes.ids.shape == (12, 5)
    np.testing.assert_array_equal(feats.classes.ids[rows], expected.ids)
    np.testing.assert_array_equal(feats.classes.probs[rows], expected.probs)
    dense = feats.classes.dense(rows[0])
    assert dense.shape == (1000,) and np.count_nonzero(dense) == 5
    # a rebuild reads them back from the shards: nothing embedded, the same classes
    again_head = MeanColourHead()
    again = dataset_features(ds, BuildConfig(), backbone=again_head, cache_dir=cache, shard_size=5)
    assert sum(again_head.calls) == 0 and again.counts["images_from_cache"] == 12
    np.testing.assert_array_equal(again.classes.ids, feats.classes.ids)
    np.testing.assert_array_equal(again.classes.probs, feats.classes.probs)


def test_shards_without_classes_are_embedded_again_for_a_backbone_with_a_head(tmp_path):
    """A shard that lacks the classes (a headless backbone's, under the same key) is never
    taken for one that has them: its images go through the network again."""
    paths = flat_photos(tmp_path / "img", 8)
    store = ShardStore(tmp_path / "store", "k")
    embed_to_shards(_job(paths, store), backbone=MeanColour())
    assert "class_ids" not in store.read_shard(0).extra
    head = MeanColourHead()
    stats = embed_to_shards(_job(paths, store), backbone=head)
    assert sum(head.calls) == 8 and stats.reused == 0 and stats.shards_written == 3
    shard = store.read_shard(0)
    assert shard.extra["class_ids"].shape == (len(shard), 5)


def test_the_store_key_names_the_shard_format(tmp_path):
    """Code that writes shards of another format version uses another folder, so two
    versions running at once never rewrite each other's shards."""
    from recommender.features.shards import SHARD_VERSION

    key = feature_store.store_key(MeanColour(), 128)
    assert key.endswith(f"-s{SHARD_VERSION}")
    assert feature_store.run_store(key, tmp_path).folder.parts[-2] == key
