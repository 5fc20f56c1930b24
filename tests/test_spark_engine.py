"""The Spark engine (recommender.engines.spark) in local[2], on one session for the run.

Skipped when pyspark or Java is missing, except under HASHTAG_REQUIRE_SPARK=1 (CI), where
that fails instead (see the ``spark_session`` fixture in conftest.py).
"""

from __future__ import annotations

import io
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import copy_real_photos
from PIL import Image

from recommender.config import ALSParams
from recommender.features.pipeline import extract_features
from recommender.fit.als import fit_als, weight_matrix

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spark(spark_session):
    return spark_session  # one session for the whole run (tests/conftest.py)


@pytest.fixture(scope="module")
def se(spark):
    from recommender.engines import spark as spark_engine

    return spark_engine


@pytest.fixture(scope="module")
def backbone():
    from recommender.vision.backbones import get_backbone

    return get_backbone()


@pytest.fixture(scope="module")
def fixture_images(tmp_path_factory, dataset_path):
    """A few real photos, generated ones in other formats and sizes, and broken files."""
    folder = tmp_path_factory.mktemp("spark-images")
    paths = copy_real_photos(dataset_path, folder, 4, "real{}.jpg")
    rng = np.random.default_rng(0)
    for i, (size, fmt) in enumerate([((640, 480), "PNG"), ((90, 300), "WEBP"), ((64, 64), "BMP")]):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        paths.append(folder / f"made{i}.{fmt.lower()}")
        Image.fromarray(pixels).save(paths[-1], format=fmt)
    good = paths[0].read_bytes()
    broken = {
        "truncated.jpg": good[: len(good) // 3],
        "not-an-image.jpg": b"hello, this is text\n" * 50,
        "empty.jpg": b"",
    }
    for name, data in broken.items():
        (folder / name).write_bytes(data)
    # Broken files between good ones, and a path that does not exist.
    order = paths[:3] + [folder / "truncated.jpg"] + paths[3:5] + [folder / "not-an-image.jpg"]
    order += [folder / "missing.jpg", paths[5], folder / "empty.jpg", paths[6], paths[0]]
    # Members of a zip archive (as in an Instagram export): only the driver opens those.
    archive = folder / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("media/a.jpg", paths[1].read_bytes())
        zf.writestr("media/b.jpg", good[: len(good) // 2])
    members = [zipfile.Path(archive, "media/a.jpg"), zipfile.Path(archive, "media/b.jpg")]
    return [str(p) for p in order] + members


def _shards_of(paths, backbone, folder, embed, shard_size):
    """Run ``embed`` (an engine's) on ``paths`` into a store in ``folder``: its shards."""
    from recommender.engines import EmbedJob
    from recommender.features.shards import ShardStore

    store = ShardStore(folder, "k")
    job = EmbedJob(list(paths), store, backbone.name, thumb_size=128, shard_size=shard_size)
    embed(job)
    assert store.shards() == list(range(job.n_shards))
    return [store.read_shard(n) for n in range(job.n_shards)]


def _same_shards(spark_shards, local_shards):
    for a, b in zip(spark_shards, local_shards, strict=True):
        assert a.meta == b.meta  # first, size, and every unreadable image with its message
        assert np.array_equal(a.extra["position"], b.extra["position"])
        assert a.hashes == b.hashes
        assert [a.thumbnail(i) for i in range(len(a))] == [b.thumbnail(i) for i in range(len(b))]
        fa, fb = (np.asarray(s.features, np.float32) for s in (a, b))
        assert fa.shape == fb.shape and np.abs(fa - fb).max(initial=0) <= 1e-4


def test_embed_equals_local_engine_on_a_fixture_with_broken_images(
    se, spark, backbone, fixture_images, tmp_path
):
    from recommender.engines import LocalEngine

    local = _shards_of(fixture_images, backbone, tmp_path / "l", LocalEngine(backbone).embed, 3)
    assert sum(len(s.meta["errors"]) for s in local) == 5  # truncated, text, missing, empty,
    # and a truncated zip member
    got = _shards_of(fixture_images, backbone, tmp_path / "s", se.SparkEngine(spark=spark).embed, 3)
    _same_shards(got, local)
    # The same file twice gives the same row twice (embedded in another batch, to float16
    # precision).
    hashes = [h for s in got for h in s.hashes]
    features = np.concatenate([np.asarray(s.features) for s in got])
    for s in got:
        for i in range(len(s)):
            assert max(Image.open(io.BytesIO(s.thumbnail(i))).size) == 128
    positions = [int(p) for s in got for p in s.extra["position"]]
    first_again = positions.index(len(fixture_images) - 3)
    assert hashes[0] == hashes[first_again]
    assert np.abs(features[0].astype(np.float32) - features[first_again]).max() <= 1e-3


def test_embed_equals_local_engine_on_the_real_data_set(
    se, spark, backbone, dataset_path, tmp_path
):
    """Every 12th image of the real data set (about 270, from every category): the whole
    set takes minutes on a loaded 2-core machine, and the benchmark runs all of it."""
    from recommender.data.datasets import load_dataset
    from recommender.engines import LocalEngine

    ds = load_dataset(dataset_path)
    paths = [str(ds.image_path(p)) for p in ds.posts if p.image][::12]
    assert len(paths) > 250
    local = _shards_of(paths, backbone, tmp_path / "l", LocalEngine(backbone).embed, 100)
    got = _shards_of(paths, backbone, tmp_path / "s", se.SparkEngine(spark=spark).embed, 100)
    _same_shards(got, local)


class _FailsOnBlack:
    """The real backbone, except that a batch holding an all-black image raises: a worker
    that breaks on one image in a way the image checks do not catch."""

    def __init__(self, backbone) -> None:
        self.backbone = backbone
        self.name, self.input_size, self.dim = backbone.name, backbone.input_size, backbone.dim

    def embed(self, batch):
        if any(int(img.max()) == 0 for img in batch):
            raise MemoryError("simulated out-of-memory on this image")
        return self.backbone.embed(batch)


def test_a_worker_failing_on_an_image_records_it_as_unreadable(se, backbone, tmp_path):
    paths = []
    for i, value in enumerate([200, 0, 90]):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(np.full((50, 50, 3), value, np.uint8)).save(paths[-1])
    ex = se._extract_guarded(paths, _FailsOnBlack(backbone), workers=1)
    assert ex.ok == [0, 2]
    assert len(ex.errors) == 1 and ex.errors[0][0] == 1
    assert "MemoryError" in ex.errors[0][1]
    alone = extract_features([paths[0], paths[2]], backbone)
    assert np.allclose(ex.features, alone.features, atol=1e-6)


def test_an_unreachable_master_is_one_line(se):
    with pytest.raises(se.SparkError) as info:
        se.get_session("spark://127.0.0.1:9")
    message = str(info.value)
    assert "cannot reach the Spark master spark://127.0.0.1:9" in message
    assert "\n" not in message


@pytest.mark.parametrize("master", ["mesos://x:5050", "spark://nohost", "yarn"])
def test_unusable_masters_are_refused_before_the_jvm_starts(se, master, monkeypatch):
    monkeypatch.delenv("HADOOP_CONF_DIR", raising=False)
    monkeypatch.delenv("YARN_CONF_DIR", raising=False)
    with pytest.raises(se.SparkError) as info:
        se.check_master(master)
    assert "\n" not in str(info.value)


def test_missing_pyspark_says_how_to_install(se, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark now fails
    with pytest.raises(se.SparkError) as info:
        se.get_session("local[2]")
    assert str(info.value) == "pyspark is not installed: pip install -r requirements-spark.txt"


def test_missing_java_is_one_line(se, monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(se.SparkError, match="Spark needs Java 17"):
        se.get_session("local[2]")


def test_spark_confidence_equals_implicits(se):
    values = np.array([0.01, 0.05, 0.06, 1.0, 3.5], np.float32)
    matrix = sp.csr_matrix(values[None, :])
    rows, cols, ratings = se.spark_ratings(matrix, alpha=20.0)
    confidence = 1.0 + ratings.astype(np.float64)  # Spark's, with alpha = 1
    above = values * 20.0 > 1.0
    assert np.allclose(confidence[above], 20.0 * values[above], rtol=1e-6)
    assert np.all(ratings[~above] == np.float32(se.MIN_RATING))  # still a positive pair
    assert rows.tolist() == [0] * 5 and cols.tolist() == list(range(5))


def test_spark_reg_param_matches_implicits_for_the_average_post(se):
    matrix = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], np.float32))
    # Posts with a tag carry 2 and 4: Spark multiplies regParam by those counts.
    assert se.spark_reg_param(matrix, 0.3) == pytest.approx(0.3 / 3)


def _two_topics(posts: int = 60, tags: int = 24, per_post: int = 5, seed: int = 0):
    """Posts on topic A use tags 0..11, posts on topic B tags 12..23."""
    rng = np.random.default_rng(seed)
    half = tags // 2
    rows, cols = [], []
    for p in range(posts):
        base = 0 if p % 2 == 0 else half
        for t in rng.choice(half, per_post, replace=False):
            rows.append(p)
            cols.append(base + t)
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(posts, tags))
    return matrix, half


def test_spark_als_learns_what_implicit_learns(se, spark):
    matrix, half = _two_topics()
    params = ALSParams(factors=2, iterations=10, weighting="none")  # two topics
    calls = []
    posts, tags = se.fit_als(matrix, params, lambda d, t: calls.append((d, t)), spark=spark)
    assert posts.shape == (matrix.shape[0], 2) and tags.shape == (matrix.shape[1], 2)
    assert posts.dtype == tags.dtype == np.float32
    assert calls[0] == (0, 10) and calls[-1] == (10, 10)
    ref_posts, ref_tags = fit_als(matrix, params)
    for p_f, t_f in ((posts, tags), (ref_posts, ref_tags)):
        scores = p_f @ t_f.T
        own = np.where(np.arange(matrix.shape[0])[:, None] % 2 == 0, 0, 1)
        top = np.argsort(-scores, axis=1)[:, :half]
        assert np.mean((top >= half) == own) > 0.95  # top tags are the post's own topic
    # The rows and columns are aligned with the matrix: observed pairs score highest.
    observed = matrix.toarray() > 0
    spark_scores = posts @ tags.T
    assert spark_scores[observed].mean() > spark_scores[~observed].mean() + 0.3


def test_spark_als_on_the_real_matrix_keeps_every_row_and_column(se, spark, dataset_path):
    from recommender.data.datasets import load_dataset
    from recommender.fit.als import interaction_matrix, tag_vocabulary

    post_tags = [p.hashtags for p in load_dataset(dataset_path).posts]
    vocab, _ = tag_vocabulary(post_tags)
    matrix = interaction_matrix(post_tags, vocab)
    params = ALSParams(iterations=2)
    posts, tags = se.fit_als(matrix, params, spark=spark)
    assert posts.shape == (matrix.shape[0], params.factors)
    assert tags.shape == (matrix.shape[1], params.factors)
    assert np.isfinite(posts).all() and np.isfinite(tags).all()
    # Every post with a hashtag and every hashtag got a (non-zero) factor.
    has = np.diff(matrix.indptr) > 0
    assert (np.abs(posts[has]).sum(axis=1) > 0).all()
    assert (np.abs(tags).sum(axis=1) > 0).all()
    # Its observed pairs score above the rest, as implicit's do.
    weighted = weight_matrix(matrix, params).tocoo()
    observed = np.einsum("ij,ij->i", posts[weighted.row], tags[weighted.col]).mean()
    rng = np.random.default_rng(0)
    r, c = rng.integers(0, matrix.shape[0], 5000), rng.integers(0, matrix.shape[1], 5000)
    assert observed > np.einsum("ij,ij->i", posts[r], tags[c]).mean() + 0.2


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory, dataset_path):
    """A CSV manifest of 16 real photos with their real hashtags (and one broken image)."""
    from recommender.data.datasets import load_dataset

    folder = tmp_path_factory.mktemp("spark-dataset")
    ds = load_dataset(dataset_path)
    posts = [p for p in ds.posts if p.image and len(p.hashtags) >= 2][::200][:16]
    lines = ["image,hashtags"]
    for i, post in enumerate(posts):
        (folder / f"{i}.jpg").write_bytes(ds.image_path(post).read_bytes())
        lines.append(f"{i}.jpg,{' '.join('#' + t for t in post.hashtags)}")
    (folder / "broken.jpg").write_bytes(b"broken")
    lines.append("broken.jpg,#broken #image")
    (folder / "posts.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_a_spark_built_model_is_the_local_one_but_for_als_and_info(
    se, spark, small_dataset, tmp_path, capsys
):
    from recommender import HashtagRecommender
    from recommender.build import build_model
    from recommender.cli import main

    _, local_summary = build_model(small_dataset, tmp_path / "local", use_cache=False)
    _, spark_summary = build_model(
        small_dataset, tmp_path / "spark", use_cache=False, engine="spark", shard_size=5
    )
    a = HashtagRecommender.load(tmp_path / "local")
    b = HashtagRecommender.load(tmp_path / "spark")
    assert a.tags == b.tags and a.image_paths == b.image_paths
    assert local_summary["images_unreadable"] == spark_summary["images_unreadable"] == 1
    fa, fb = (np.asarray(r.arrays.features, np.float32) for r in (a, b))
    assert np.abs(fa - fb).max() <= 1e-4
    assert [a.thumbnail(i) for i in range(len(a.image_paths))] == [
        b.thumbnail(i) for i in range(len(b.image_paths))
    ]
    query = str(small_dataset / "3.jpg")
    assert [n.image for n in a.recommend(query).neighbours] == [
        n.image for n in b.recommend(query).neighbours
    ]
    skip = {"created", "timings", "engine", "files"}
    assert {k for k in a.manifest if k not in skip} == {k for k in b.manifest if k not in skip}
    assert a.manifest["engine"]["name"] == "local"
    assert b.manifest["engine"]["name"] == "spark"
    assert b.manifest["engine"]["spark_version"] == spark.version
    assert main(["info", str(tmp_path / "spark")]) == 0
    assert f"engine:         name=spark, spark_version={spark.version}" in capsys.readouterr().out


def test_the_cli_refuses_an_unreachable_master_in_one_line(se, small_dataset, tmp_path, capsys):
    from recommender.cli import main

    code = main(["build", str(small_dataset), "--out", str(tmp_path / "m"), "--engine",
                 "spark", "--spark-master", "spark://127.0.0.1:9", "--quiet"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err
    assert err.startswith("error: cannot reach the Spark master spark://127.0.0.1:9")
    assert not (tmp_path / "m").exists()


def test_the_cli_without_pyspark_says_how_to_install(se, small_dataset, tmp_path, capsys,
                                                     monkeypatch):  # fmt: skip
    from recommender.cli import main

    monkeypatch.setitem(sys.modules, "pyspark", None)
    code = main(["build", str(small_dataset), "--out", str(tmp_path / "m"), "--engine", "spark"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err == "error: pyspark is not installed: pip install -r requirements-spark.txt"


@pytest.fixture(scope="module")
def uri_images(fixture_images, tmp_path_factory):
    """The fixture's files (not the zip members) as file:// URIs, one of them under a name
    with a space and glob characters, and a URI naming no file; with the same files' paths."""
    folder = tmp_path_factory.mktemp("uri images")
    paths = [p for p in fixture_images if isinstance(p, str)]
    odd = folder / "a photo [1].png"
    shutil.copyfile(paths[4], odd)  # the PNG
    paths = [*paths[:2], str(odd), *paths[2:]]
    uris = [Path(p).as_uri() for p in paths]
    assert "%20" in uris[2] and "%5B1%5D" in uris[2]
    return paths, uris


def test_embed_reads_file_uris_with_binary_file_as_the_local_engine_reads_paths(
    se, spark, backbone, uri_images, tmp_path
):
    from recommender.engines import LocalEngine

    paths, uris = uri_images
    local = _shards_of(paths, backbone, tmp_path / "l", LocalEngine(backbone).embed, 4)
    errors = [tuple(e) for s in local for e in s.meta["errors"]]
    assert [i for i, _ in errors] == [4, 7, 8, 10]  # truncated, text, missing, empty
    got = _shards_of(uris, backbone, tmp_path / "s", se.SparkEngine(spark=spark).embed, 4)
    # Spark's file scan skips empty files: binaryFile cannot tell them from missing ones.
    for s in got:
        for e in s.meta["errors"]:
            if e[0] in (8, 10):
                assert e[1] == f"There is no file, or an empty one, at '{uris[e[0]]}'."
                e[1] = dict(errors)[e[0]]
    _same_shards(got, local)


def test_spark_engine_shards_from_file_uris_are_the_shards_from_paths(
    se, spark, backbone, uri_images, tmp_path
):
    from recommender.engines import EmbedJob, LocalEngine
    from recommender.features.shards import ShardStore

    paths, uris = uri_images
    local, remote = ShardStore(tmp_path / "local", "k"), ShardStore(tmp_path / "uris", "k")
    LocalEngine(backbone).embed(EmbedJob(paths, local, backbone.name, shard_size=5))
    stats = se.SparkEngine(spark=spark).embed(EmbedJob(uris, remote, backbone.name, shard_size=5))
    assert stats.shards_written == 3 and remote.shards() == local.shards() == [0, 1, 2]
    for number in range(3):
        a, b = local.read_shard(number), remote.read_shard(number)
        assert np.array_equal(a.raw_hashes, b.raw_hashes)
        assert np.abs(a.features.astype(np.float32) - b.features.astype(np.float32)).max() <= 1e-4
        assert [e[0] for e in a.meta["errors"]] == [e[0] for e in b.meta["errors"]]


def test_the_local_engine_refuses_uris_it_cannot_open_naming_the_spark_engine(tmp_path):
    from recommender.engines import EmbedJob, LocalEngine
    from recommender.errors import DatasetError
    from recommender.features.shards import ShardStore

    store = ShardStore(tmp_path / "store", "k")
    job = EmbedJob(["s3a://bucket/photos/1.jpg", str(tmp_path / "x.jpg")], store, "mean")
    with pytest.raises(DatasetError) as info:
        LocalEngine().embed(job)
    message = str(info.value)
    assert "\n" not in message and "--engine spark" in message
    assert "s3a://bucket/photos/1.jpg" in message
    assert not (tmp_path / "store").exists()


def test_the_shards_of_one_embed_run_on_every_task_slot_at_once(se, spark):
    """Each partition (a shard's task) sleeps a second and says when it ran: on local[2]
    two of them overlap. ``toLocalIterator``, used before, ran one job per partition, one
    after the other, so a cluster embedded one shard at a time."""
    import time

    from recommender.engines.spark.embed import _collect_with_progress

    done = spark.sparkContext.accumulator(0)

    def task(batches):
        import pandas as pd

        start = time.time()
        rows = sum(len(b) for b in batches)
        time.sleep(1.0)
        done.add(rows)
        yield pd.DataFrame({"rows": [rows], "start": [start], "stop": [time.time()]})

    frame = spark.range(0, 40, numPartitions=2).mapInPandas(
        task, "rows long, start double, stop double"
    )
    seen = []
    out = _collect_with_progress(spark, frame, done, 40, lambda d, t: seen.append((d, t)))
    assert sorted(r["rows"] for r in out) == [20, 20]
    first, second = sorted((r["start"], r["stop"]) for r in out)
    assert second[0] < first[1]  # the second started before the first ended
    assert seen and seen[-1] == (40, 40) and seen == sorted(seen)


def test_the_spark_engine_gives_every_task_slot_two_shards_when_it_chooses(se, spark):
    from recommender.features.shards import DEFAULT_SHARD_SIZE, MIN_AUTO_SHARD_SIZE

    engine = se.SparkEngine(spark=spark)
    slots = spark.sparkContext.defaultParallelism
    assert engine.shard_size(4499) == -(-4499 // (2 * slots))  # the demo data set
    assert engine.shard_size(10) == MIN_AUTO_SHARD_SIZE
    assert engine.shard_size(10**8) == DEFAULT_SHARD_SIZE
