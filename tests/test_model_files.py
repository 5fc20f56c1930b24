"""The model folder: round trip, atomic replacement, and every kind of damage."""

import io
import json

import numpy as np
import pytest
from conftest import rewrite_manifest, someones_project, unchanged

from recommender import HashtagRecommender, ModelError
from recommender.config import ALSParams
from recommender.data.datasets import Post
from recommender.fit.training import fit_recommender
from recommender.query.recommender import BuildConfig
from recommender.store.model_io import (
    ARRAYS,
    FEATURES,
    FORMAT_VERSION,
    INDEX,
    MANIFEST,
    THUMBNAILS,
    output_problem,
    read_model,
    write_model,
)


def tiny_model() -> HashtagRecommender:
    """Two clusters of posts (cats and food), features that separate them, ALS on the tags."""
    rng = np.random.default_rng(1)
    posts, feats = [], []
    for i in range(12):
        cat = i % 2 == 0
        tags = ("cat", "kitten", "pets") if cat else ("food", "pasta", "yummy")
        posts.append(Post(f"p{i}", f"img/{i}.jpg", tags + (f"own{i}",), "cat" if cat else "food"))
        centre = np.array([1.0, 0.0, 0.0, 0.0]) if cat else np.array([0.0, 1.0, 0.0, 0.0])
        feats.append(centre + 0.05 * rng.normal(size=4))
    posts.append(Post("noimg", None, ("cat", "whiskers"), "cat"))
    feats = np.array(feats, dtype=np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    rows = list(range(12)) + [-1]
    config = BuildConfig(als=ALSParams(factors=4, iterations=10))
    thumbs = [bytes([i]) * (i + 1) for i in range(12)]
    return fit_recommender(posts, feats, rows, config, thumbnails=thumbs)


@pytest.fixture
def saved(tmp_path):
    rec = tiny_model()
    path = tmp_path / "model"
    rec.save(path)
    return rec, path


def test_fit_learns_what_the_tiny_data_says():
    rec = tiny_model()
    assert rec.manifest["counts"] == {"posts": 13, "images": 12, "hashtags": 19, "pairs": 50}
    query = np.array([1.0, 0.02, 0.0, 0.0], dtype=np.float32)
    query /= np.linalg.norm(query)
    result = rec.recommend_features(query, n_neighbours=4, k=3, method="knn_vote")
    assert {n.post_id for n in result.neighbours} <= {"p0", "p2", "p4", "p6", "p8", "p10"}
    assert set(result.tags) == {"cat", "kitten", "pets"}
    for t in result.hashtags:
        assert sum(t.contributions) == pytest.approx(t.score, rel=1e-5)
    assert "whiskers" in rec.tags  # the post without an image still trained the tag model


def test_round_trip_gives_identical_results(saved):
    rec, path = saved
    loaded = HashtagRecommender.load(path)
    query = np.array([0.1, 1.0, 0.0, 0.0], dtype=np.float32)
    query /= np.linalg.norm(query)
    for method in ("original", "blend", "knn_vote"):
        a = rec.recommend_features(query, 5, 6, method)
        b = loaded.recommend_features(query, 5, 6, method)
        assert a == b
    assert loaded.thumbnail(3) == bytes([3]) * 4
    assert loaded.thumbnail(99) == b""
    assert loaded.info()["format_version"] == FORMAT_VERSION == 3
    assert isinstance(loaded.arrays.features, np.memmap)  # features are memory-mapped


def test_a_version_1_model_still_loads_and_answers_the_same(saved, tmp_path):
    """Version 1 kept the features in arrays.npz and the thumbnails in thumbnails.npz."""
    from recommender.store.model_io import _write_npz, _write_stream

    rec, path = saved
    old = tmp_path / "v1"
    old.mkdir()
    manifest, arrays, index, thumbs = read_model(path)
    files = {
        "arrays.npz": _write_npz(old, "arrays.npz", dict(arrays)),
        "thumbnails.npz": _write_npz(old, "thumbnails.npz", dict(thumbs)),
        "index.json": _write_stream(old, "index.json", ((path / INDEX).read_bytes(),)),
    }
    manifest = {**manifest, "format_version": 1, "files": files}
    rewrite_manifest(old, manifest)
    loaded = HashtagRecommender.load(old)
    query = np.array([0.1, 1.0, 0.0, 0.0], dtype=np.float32)
    query /= np.linalg.norm(query)
    assert loaded.recommend_features(query, 5, 6) == rec.recommend_features(query, 5, 6)
    assert loaded.thumbnail(3) == bytes([3]) * 4
    loaded.save(tmp_path / "again")  # saving upgrades it to the current version
    assert read_model(tmp_path / "again")[0]["format_version"] == FORMAT_VERSION


def test_nothing_is_pickled(saved):
    _, path = saved
    with np.load(path / ARRAYS, allow_pickle=False) as npz:
        for key in npz.files:
            assert npz[key].dtype != object
    assert np.load(path / FEATURES, allow_pickle=False).dtype == np.float32
    rec = HashtagRecommender.load(path)
    thumbs = b"".join(rec.thumbnail(i) for i in range(len(rec.image_paths)))
    assert (path / THUMBNAILS).read_bytes() == thumbs  # the JPEGs, raw and concatenated
    json.loads((path / MANIFEST).read_text())
    json.loads((path / INDEX).read_text())


def test_object_arrays_are_refused_on_write(tmp_path):
    with pytest.raises(TypeError, match="plain data"):
        write_model(
            tmp_path / "m",
            {},
            {"features": np.zeros((1, 2)), "x": np.array([{"a": 1}], dtype=object)},
            {},
            [],
        )
    with pytest.raises(TypeError, match="plain data"):
        write_model(tmp_path / "m", {}, {"features": np.array([{"a": 1}], dtype=object)}, {}, [])
    assert not (tmp_path / "m").exists()


def _damage(path, name, how):
    file = path / name
    if how == "truncate":
        file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    elif how == "flip":
        data = bytearray(file.read_bytes())
        data[len(data) // 2] ^= 0xFF
        file.write_bytes(bytes(data))
    elif how == "delete":
        file.unlink()


@pytest.mark.parametrize(
    "name,how,message",
    [
        (ARRAYS, "truncate", "damaged"),
        (ARRAYS, "flip", "damaged"),
        (INDEX, "flip", "damaged"),
        (THUMBNAILS, "truncate", "damaged"),
        (FEATURES, "truncate", "damaged"),
        (FEATURES, "flip", "damaged"),
        (FEATURES, "delete", "missing"),
        (ARRAYS, "delete", "missing"),
        (INDEX, "delete", "missing"),
        (MANIFEST, "delete", "not a model folder"),
    ],
)
def test_damaged_files_raise_one_error_saying_how_to_rebuild(saved, name, how, message):
    _rec, path = saved
    _damage(path, name, how)
    with pytest.raises(ModelError, match=message) as err:
        HashtagRecommender.load(path)
    assert "python -m recommender build" in str(err.value)


def test_manifest_that_is_not_json_or_not_ours(saved):
    _rec, path = saved
    (path / MANIFEST).write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        read_model(path)
    (path / MANIFEST).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelError, match="not a hashtag recommender model"):
        read_model(path)


def test_newer_format_version_is_refused(saved):
    _rec, path = saved
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["format_version"] = 99
    rewrite_manifest(path, manifest)
    with pytest.raises(ModelError, match="newer than this program reads"):
        read_model(path)


def test_missing_folder(tmp_path):
    with pytest.raises(ModelError, match="No model folder"):
        HashtagRecommender.load(tmp_path / "nothing")


def test_a_pickle_payload_in_the_arrays_cannot_run(saved, tmp_path):
    """An npz holding a pickled object array, with a matching checksum, is refused."""
    import hashlib
    import io

    _rec, path = saved
    marker = tmp_path / "ran"
    buf = io.BytesIO()
    np.savez(buf, features=np.array([_Boom(str(marker))], dtype=object))
    (path / ARRAYS).write_bytes(buf.getvalue())
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["files"][ARRAYS]["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    rewrite_manifest(path, manifest)
    with pytest.raises(ModelError):
        HashtagRecommender.load(path)
    assert not marker.exists()


class _Boom:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_saving_over_a_model_replaces_it_and_refuses_other_folders(saved, tmp_path):
    rec, path = saved
    rec.save(path)  # over an existing model: fine
    HashtagRecommender.load(path)
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(ModelError, match="refusing to write there"):
        rec.save(other)
    assert (other / "holiday.jpg").read_bytes() == b"precious"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_a_folder_with_a_web_app_manifest_is_not_a_model_and_stays_whole(saved, tmp_path):
    rec, _ = saved
    project = tmp_path / "site"
    files = someones_project(project)
    with pytest.raises(ModelError, match="not this project's") as err:
        rec.save(project)
    assert "\n" not in str(err.value)
    assert unchanged(files) and sorted(p.name for p in project.iterdir()) == [
        "manifest.json",
        "photos",
        "src",
        "thesis.tex",
    ]
    assert output_problem(project) == str(err.value)


def test_a_model_folder_holding_someone_elses_file_is_refused(saved):
    rec, path = saved
    (path / "notes.txt").write_text("mine")
    assert "'notes.txt'" in output_problem(path)
    with pytest.raises(ModelError, match="notes.txt"):
        rec.save(path)
    assert (path / "notes.txt").read_text() == "mine"
    HashtagRecommender.load(path)  # the model itself is untouched too


def test_an_empty_or_missing_folder_or_a_model_may_be_written(saved, tmp_path):
    _, path = saved
    (tmp_path / "empty").mkdir()
    assert output_problem(tmp_path / "empty") is None
    assert output_problem(tmp_path / "missing") is None
    assert output_problem(path) is None
    (tmp_path / "file").write_text("x")
    assert "not a folder" in output_problem(tmp_path / "file")


def test_a_failed_write_leaves_the_previous_model_intact(saved, monkeypatch):
    rec, path = saved
    before = (path / ARRAYS).read_bytes()
    import recommender.store.model_io as mio

    def explode(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(mio, "_write_npz", explode)
    with pytest.raises(OSError):
        rec.save(path)
    assert (path / ARRAYS).read_bytes() == before
    HashtagRecommender.load(path)
    assert [p for p in path.parent.iterdir() if p.name.startswith(".")] == []


def _edit_manifest(path, edit) -> None:
    manifest = json.loads((path / MANIFEST).read_text())
    edit(manifest)
    rewrite_manifest(path, manifest)


def test_a_loaded_model_scores_with_the_method_it_saved_not_todays(saved, monkeypatch):
    """Retuning a method in METHODS must not change an old model's scores."""
    from recommender.config import DEFAULT_METHOD, METHODS, Method

    rec, path = saved
    query = np.array([0.1, 1.0, 0.0, 0.0], dtype=np.float32)
    query /= np.linalg.norm(query)
    before = rec.recommend_features(query, 5, 6)
    retuned = Method(DEFAULT_METHOD, als_weight=0.9, weighting="uniform")
    monkeypatch.setitem(METHODS, DEFAULT_METHOD, retuned)
    loaded = HashtagRecommender.load(path)
    assert loaded.method == rec.method != retuned
    assert loaded.recommend_features(query, 5, 6) == before


def test_a_saved_method_under_a_name_this_version_lacks_still_loads(saved):
    rec, path = saved

    def rename(manifest):
        manifest["config"]["method"]["name"] = "tuned_by_a_newer_version"

    _edit_manifest(path, rename)
    loaded = HashtagRecommender.load(path)
    assert loaded.method.name == "tuned_by_a_newer_version"
    assert loaded.method.als_weight == rec.method.als_weight


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("als_weight", 7.0, "als_weight must lie in"),
        ("weighting", "sideways", "weighting must be one of"),
        ("profiles", "yes", "not a bool"),
        ("telepathy_weight", 1.0, "does not know: telepathy_weight"),
    ],
)
def test_an_invalid_saved_method_is_a_model_error(saved, field, value, message):
    _rec, path = saved

    def spoil(manifest):
        manifest["config"]["method"][field] = value

    _edit_manifest(path, spoil)
    with pytest.raises(ModelError, match=message) as err:
        HashtagRecommender.load(path)
    assert "rebuild" in str(err.value)


def test_readers_never_see_a_gap_or_a_mix_while_the_model_is_replaced(saved):
    """A build swapping the folder while the page loads it: every load gets one whole
    version (before the fix: ~6% of loads failed, 'No model folder' or 'damaged')."""
    import threading

    first, path = saved
    second = tiny_model()
    second.arrays.tag_factors = second.arrays.tag_factors * 2
    versions = [first.scorer.tag_factors, second.arrays.tag_factors]
    done = threading.Event()
    errors: list[str] = []
    loaded: list[int] = []

    def writer():
        try:
            for i in range(60):
                (second if i % 2 == 0 else first).save(path)
        finally:
            done.set()

    def reader():
        while not done.is_set():
            try:
                rec = HashtagRecommender.load(path)
            except ModelError as exc:
                errors.append(str(exc))
                continue
            same = [np.array_equal(rec.scorer.tag_factors, v) for v in versions]
            loaded.append(same.index(True) if any(same) else -1)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(loaded) > 20 and -1 not in loaded and set(loaded) == {0, 1}


def test_model_version_tells_builds_apart_from_the_manifest_alone(saved, tmp_path):
    from recommender.store.model_io import model_version

    rec, path = saved
    first = model_version(path)
    assert model_version(path) == first
    (path / ARRAYS).write_bytes(b"not read: the version comes from the manifest")
    assert model_version(path) == first
    other = tiny_model()
    other.arrays.tag_factors = other.arrays.tag_factors * 2
    other.save(path)
    assert model_version(path) != first
    with pytest.raises(ModelError, match="No model folder"):
        model_version(tmp_path / "nothing")


@pytest.mark.parametrize("name", [FEATURES, THUMBNAILS])
def test_what_is_mapped_is_the_file_whose_checksum_was_checked(saved, monkeypatch, name):
    """A swap that puts another file in place right after its checksum was verified: the
    load still maps the bytes it checked (it maps from the same open file), not the
    newcomer's (mapped by path, it would have served unchecked bytes)."""
    import os

    from recommender.store import model_io

    _, path = saved
    checked = (path / name).read_bytes()
    swapped = {}
    open_checked = model_io._open_checked

    def then_swap(folder, file_name, entry):
        fh = open_checked(folder, file_name, entry)
        if file_name == name:  # the next version lands between the check and the map
            other = folder / f"{name}.next"
            other.write_bytes(bytes(255 - b for b in checked))
            os.replace(other, folder / name)
            swapped[name] = True
        return fh

    monkeypatch.setattr(model_io, "_open_checked", then_swap)
    _, arrays, _, thumbs = read_model(path)
    assert swapped == {name: True}
    assert (path / name).read_bytes() != checked
    if name == FEATURES:
        assert isinstance(arrays["features"], np.memmap)
        header = len(checked) - arrays["features"].nbytes
        assert arrays["features"].tobytes() == checked[header:]
        assert np.array_equal(arrays["features"], np.load(io.BytesIO(checked)))
    else:
        assert isinstance(thumbs["data"], np.memmap)
        assert thumbs["data"].tobytes() == checked
