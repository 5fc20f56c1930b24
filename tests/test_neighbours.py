"""Exact cosine search against a slow, obvious reference."""

import json

import numpy as np
import pytest

from recommender.query.neighbours import make_index


def _unit(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_search_matches_a_full_sort():
    rng = np.random.default_rng(0)
    vectors = _unit(rng, 500, 32)
    index = make_index(vectors)
    for q in _unit(rng, 20, 32):
        idx, sims = index.search(q, 10)
        reference = sorted(range(500), key=lambda i: -float(vectors[i] @ q))[:10]
        assert idx.tolist() == reference
        np.testing.assert_allclose(sims, vectors[idx] @ q, rtol=1e-5)
        assert np.all(np.diff(sims) <= 0)


def test_n_larger_than_the_index_returns_everything_and_ties_keep_index_order():
    vectors = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    idx, sims = make_index(vectors).search(np.array([1, 0], dtype=np.float32), 10)
    assert idx.tolist() == [0, 1, 2]
    assert sims.tolist() == [1.0, 1.0, 0.0]


def test_wrong_dimension_and_kind_are_refused():
    index = make_index(np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match="dimensions"):
        index.search(np.ones(4), 1)
    with pytest.raises(ValueError, match="unknown index kind"):
        make_index(np.eye(3), kind="magic")


def test_the_index_is_read_only():
    index = make_index(np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError):
        index.vectors[0, 0] = 5


# ----------------------------------------------------------------- approximate (IVF) index
def _clusters(rng, n_clusters, per_cluster, d, spread=0.05):
    centres = _unit(rng, n_clusters, d)
    x = np.repeat(centres, per_cluster, axis=0)
    x = (x + spread * rng.normal(size=x.shape)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), centres


def test_ivf_finds_the_exact_neighbours_on_easy_data():
    pytest.importorskip("faiss")
    from recommender.query.neighbours import ExactIndex, IVFIndex

    rng = np.random.default_rng(0)
    vectors, centres = _clusters(rng, 8, 50, 32)
    ivf = make_index(vectors, kind="ivf", nprobe=2)  # visits 2 of the 10 clusters
    assert isinstance(ivf, IVFIndex) and ivf.nlist == 10 and len(ivf) == 400
    exact = ExactIndex(vectors)
    queries = centres + 0.03 * rng.normal(size=centres.shape).astype(np.float32)
    for q in queries / np.linalg.norm(queries, axis=1, keepdims=True):
        idx, sims = ivf.search(q, 10)
        ref_idx, ref_sims = exact.search(q, 10)
        assert idx.tolist() == ref_idx.tolist()
        np.testing.assert_allclose(sims, ref_sims, rtol=1e-5)  # re-scored exactly


def test_sq8_codes_alone_and_float16_vectors_give_the_same_neighbours():
    pytest.importorskip("faiss")
    from recommender.query.neighbours import IVFIndex

    rng = np.random.default_rng(1)
    vectors, centres = _clusters(rng, 4, 60, 16)
    exact = make_index(vectors, kind="exact")
    codes = IVFIndex.build(vectors, keep_vectors=False)
    half = IVFIndex.build(vectors.astype(np.float16))
    assert codes.vectors is None and codes.codes == "SQ8"
    assert half.vectors.dtype == np.float16 and half.codes == "RaBitQ"
    for q in centres:
        ref = set(exact.search(q, 5)[0].tolist())
        assert set(codes.search(q, 5)[0].tolist()) == ref
        assert set(half.search(q, 5)[0].tolist()) == ref
        sims = codes.search(q, 5)[1]
        np.testing.assert_allclose(sims, exact.search(q, 5)[1], atol=0.02)


def test_ivf_round_trips_through_bytes():
    pytest.importorskip("faiss")
    from recommender.query.neighbours import IVFIndex

    rng = np.random.default_rng(2)
    vectors, centres = _clusters(rng, 6, 40, 24)
    ivf = IVFIndex.build(vectors, nprobe=2)
    again = IVFIndex.from_bytes(ivf.to_bytes(), vectors, nprobe=ivf.nprobe)
    assert (again.nlist, again.nprobe, len(again)) == (ivf.nlist, 2, 240)
    for q in centres:
        a, b = ivf.search(q, 7), again.search(q, 7)
        assert a[0].tolist() == b[0].tolist()
        np.testing.assert_array_equal(a[1], b[1])


def test_auto_switches_to_ivf_at_the_documented_size(monkeypatch):
    from recommender.query import neighbours

    vectors = np.eye(50, dtype=np.float32)
    assert neighbours.choose_kind(neighbours.APPROX_MIN_SIZE - 1) == "exact"
    assert neighbours.choose_kind(neighbours.APPROX_MIN_SIZE) == "ivf"
    assert make_index(vectors).kind == "exact"
    pytest.importorskip("faiss")
    monkeypatch.setattr(neighbours, "APPROX_MIN_SIZE", 50)
    assert make_index(vectors).kind == "ivf"


def test_ivf_refuses_bad_parameters():
    pytest.importorskip("faiss")
    from recommender.query.neighbours import IVFIndex

    vectors = _unit(np.random.default_rng(3), 100, 8)
    with pytest.raises(ValueError, match="nlist"):
        IVFIndex.build(vectors, nlist=101)
    with pytest.raises(ValueError, match="nprobe"):
        IVFIndex.build(vectors, nlist=2, nprobe=3)
    with pytest.raises(ValueError, match="do not match"):
        IVFIndex.from_bytes(IVFIndex.build(vectors, nlist=2).to_bytes(), vectors[:50])
    with pytest.raises(ValueError, match="dimensions"):
        IVFIndex.build(vectors, nlist=2).search(np.ones(9), 1)
    with pytest.raises(ValueError, match="unknown codes"):
        IVFIndex.build(vectors, codes="PQ8")
    with pytest.raises(ValueError, match="re-scoring"):
        IVFIndex.build(vectors, codes="RaBitQ", keep_vectors=False)


def test_float16_exact_search_matches_float32():
    rng = np.random.default_rng(4)
    vectors = _unit(rng, 3000, 16)  # more rows than one conversion chunk
    half = make_index(vectors.astype(np.float16), kind="exact")
    assert half.vectors.dtype == np.float16
    full = make_index(vectors.astype(np.float16).astype(np.float32), kind="exact")
    for q in _unit(rng, 5, 16):
        assert half.search(q, 10)[0].tolist() == full.search(q, 10)[0].tolist()


# ------------------------------------------------------------ in a model, saved and loaded
def _clustered_model(n_clusters=8, per_cluster=40, d=32):
    from recommender.config import ALSParams
    from recommender.data.datasets import Post
    from recommender.fit.training import fit_recommender
    from recommender.query.recommender import BuildConfig

    rng = np.random.default_rng(5)
    vectors, centres = _clusters(rng, n_clusters, per_cluster, d)
    posts = [
        Post(f"p{i}", f"img/{i}.jpg", (f"topic{i // per_cluster}", f"own{i}"), None)
        for i in range(len(vectors))
    ]
    config = BuildConfig(als=ALSParams(factors=4, iterations=5))
    rec = fit_recommender(posts, vectors, list(range(len(posts))), config)
    return rec, centres


def test_a_model_over_the_threshold_uses_ivf_and_round_trips_it(monkeypatch, tmp_path):
    pytest.importorskip("faiss")
    from recommender import HashtagRecommender, ModelError
    from recommender.query import neighbours
    from recommender.store.model_io import NEIGHBOURS

    exact, centres = _clustered_model()
    assert exact.index.kind == "exact"
    monkeypatch.setattr(neighbours, "APPROX_MIN_SIZE", 100)
    rec, _ = _clustered_model()
    assert rec.index.kind == "ivf" and rec.index.nlist > 1
    assert rec.arrays.features.dtype == np.float16
    rec.index.nprobe = 2  # really skip clusters, and check the saved setting comes back
    rec.save(tmp_path / "model")
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["neighbours"]["kind"] == "ivf" and NEIGHBOURS in manifest["files"]
    monkeypatch.setattr(neighbours, "APPROX_MIN_SIZE", 10**9)  # loading does not rebuild
    loaded = HashtagRecommender.load(tmp_path / "model")
    assert loaded.index.kind == "ivf" and loaded.index.nprobe == 2
    same_vectors = make_index(rec.arrays.features, kind="exact")  # float16, exactly
    for q in centres:
        want = exact.recommend_features(q, n_neighbours=10, k=3)
        ref_idx, ref_sims = same_vectors.search(q, 10)
        for model in (rec, loaded):
            got = model.recommend_features(q, n_neighbours=10, k=3)
            assert [n.index for n in got.neighbours] == ref_idx.tolist()
            np.testing.assert_allclose([n.similarity for n in got.neighbours], ref_sims)
            np.testing.assert_allclose(
                [n.similarity for n in got.neighbours],
                [n.similarity for n in want.neighbours],
                atol=1e-3,
            )
            assert got.tags[0] == want.tags[0]

    blob = tmp_path / "model" / NEIGHBOURS
    blob.write_bytes(blob.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelError, match="checksum"):
        HashtagRecommender.load(tmp_path / "model")


def test_a_small_model_saves_no_index_file(tmp_path):
    from recommender import HashtagRecommender
    from recommender.store.model_io import NEIGHBOURS

    rec, _ = _clustered_model(n_clusters=2, per_cluster=5)
    rec.save(tmp_path / "model")
    assert not (tmp_path / "model" / NEIGHBOURS).exists()
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["neighbours"] == {"kind": "exact", "size": 10}
    assert HashtagRecommender.load(tmp_path / "model").index.kind == "exact"


def test_serial_blas_nests_and_restores_the_thread_count_across_threads():
    import threading

    threadpoolctl = pytest.importorskip("threadpoolctl")
    from recommender.blas import serial_blas

    def blas_threads():  # numpy's own BLAS (faiss may bring another one, left alone)
        return [
            i["num_threads"]
            for i in threadpoolctl.threadpool_info()
            if i["user_api"] == "blas" and "numpy" in i["filepath"]
        ]

    before = blas_threads()
    if not before:
        pytest.skip("numpy has no BLAS threadpool here")
    with serial_blas():
        assert set(blas_threads()) == {1}
        with serial_blas():
            assert set(blas_threads()) == {1}
        assert set(blas_threads()) == {1}
    assert blas_threads() == before

    barrier = threading.Barrier(6)

    def query():
        for _ in range(50):
            with serial_blas():
                if _ == 0:
                    barrier.wait()  # all six inside at once
                np.eye(8, dtype=np.float32) @ np.ones(8, dtype=np.float32)

    threads = [threading.Thread(target=query) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert blas_threads() == before
