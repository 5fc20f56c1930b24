"""The contract every build engine of recommender.engines honours (local and spark).

The same checks for each registered engine, on real images and the real backbone: the
shards cover fixed ranges in order, record unreadable images, hold the features the local
pipeline computes, are kept (not re-embedded) on a second run; ALS returns finite float32
factors aligned with the matrix and reports its progress.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import copy_real_photos
from PIL import Image

from recommender.config import ALSParams
from recommender.engines import ENGINES, EmbedJob, get_engine
from recommender.features.pipeline import extract_features
from recommender.features.shards import ShardStore

pytestmark = pytest.mark.slow


@pytest.fixture(
    params=[
        pytest.param(n, marks=[pytest.mark.spark] if n == "spark" else []) for n in sorted(ENGINES)
    ]
)
def engine(request):
    if request.param == "spark":
        request.getfixturevalue("spark_session")  # skips without pyspark / Java
    return get_engine(request.param)


@pytest.fixture(scope="module")
def photos(tmp_path_factory, dataset_path):
    folder = tmp_path_factory.mktemp("engine-photos")
    paths = copy_real_photos(dataset_path, folder, 6)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    paths.insert(2, folder / "broken.jpg")
    Image.new("RGB", (300, 200), (10, 120, 200)).save(folder / "flat.png")
    paths.append(folder / "flat.png")
    return [str(p) for p in paths]


@pytest.fixture(scope="module")
def reference(photos):
    from recommender.vision.backbones import get_backbone

    return extract_features(photos, get_backbone(), thumb_size=32)


def test_embed_writes_fixed_shards_with_the_local_pipelines_features(
    engine, photos, reference, tmp_path
):
    store = ShardStore(tmp_path / "store", "contract")
    job = EmbedJob(photos, store, "efficientnet_lite0", "default", 32, 8, 2, shard_size=3)
    seen = []
    stats = engine.embed(job, lambda d, t: seen.append((d, t)))
    assert store.shards() == [0, 1, 2] and stats.shards_written == 3
    assert stats.embedded == len(photos) - 1 and seen[-1] == (len(photos), len(photos))
    shards = [store.read_shard(n) for n in range(3)]
    assert [s.meta["first"] for s in shards] == [0, 3, 6]
    assert [s.meta["size"] for s in shards] == [3, 3, 2]
    assert [e[0] for s in shards for e in s.meta["errors"]] == [2]
    positions = [int(p) for s in shards for p in s.extra["position"]]
    assert positions == reference.ok
    assert [h for s in shards for h in s.hashes] == reference.hashes
    assert [s.thumbnail(i) for s in shards for i in range(len(s))] == reference.thumbnails
    features = np.concatenate([np.asarray(s.features, np.float32) for s in shards])
    expected = reference.features.astype(np.float16).astype(np.float32)
    assert np.abs(features - expected).max() <= 1e-4
    again = engine.embed(job)
    assert again.shards_kept == 3 and again.shards_written == 0 and again.embedded == 0


def test_fit_als_gives_aligned_finite_factors(engine):
    rng = np.random.default_rng(1)
    dense = (rng.random((30, 12)) < 0.3).astype(np.float32)
    dense[:, 0] = 1.0  # every post has a hashtag
    matrix = sp.csr_matrix(dense)
    seen = []
    posts, tags = engine.fit_als(matrix, ALSParams(factors=4, iterations=3),
                                 lambda d, t: seen.append((d, t)))  # fmt: skip
    assert posts.shape == (30, 4) and tags.shape == (12, 4)
    assert posts.dtype == tags.dtype == np.float32
    assert np.isfinite(posts).all() and np.isfinite(tags).all()
    assert seen[-1] == (3, 3)
    scores = posts @ tags.T
    assert scores[dense > 0].mean() > scores[dense == 0].mean()
