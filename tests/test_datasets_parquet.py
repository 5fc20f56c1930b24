"""The Parquet manifest: row groups, Spark's part-file folders, URIs and hostile values."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from recommender.data.datasets import load_dataset
from recommender.data.formats import parquet
from recommender.errors import DatasetError, ImageError
from recommender.vision import images


def jpeg(path, color=(10, 120, 200)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24), color).save(path, "JPEG")
    return path


def table(rows, hashtags_type=None):
    images_, tags = zip(*rows, strict=True) if rows else ((), ())
    return pa.table(
        {
            "image": pa.array(images_, pa.string()),
            "hashtags": pa.array(tags, hashtags_type or pa.list_(pa.string())),
        }
    )


def test_rows_across_row_groups_keep_their_numbers(tmp_path):
    for i in range(9):
        jpeg(tmp_path / "img" / f"{i}.jpg", (i * 20, 0, 0))
    rows = [(f"img/{i}.jpg", [f"tag{i}", "common"]) for i in range(9)]
    rows[6] = ("img/6.jpg", None)  # malformed: no hashtags list
    path = tmp_path / "posts.parquet"
    assert parquet.write_manifest(path, rows, row_group_rows=2) == 9
    assert pq.ParquetFile(path).num_row_groups == 5
    dataset = load_dataset(tmp_path)  # a folder holding posts.parquet
    assert dataset.format == "parquet"
    assert [p.image for p in dataset.posts] == [f"img/{i}.jpg" for i in range(9) if i != 6]
    assert dataset.posts[0].hashtags == ("tag0", "common")
    assert dataset.report.counts["skipped_malformed"] == 1
    assert any("posts.parquet row 7" in problem for problem in dataset.report.problems)


def test_small_batches_read_the_same(tmp_path, monkeypatch):
    for i in range(5):
        jpeg(tmp_path / f"{i}.jpg")
    parquet.write_manifest(tmp_path / "m.parquet", [(f"{i}.jpg", ["aa"]) for i in range(5)])
    whole = load_dataset(tmp_path / "m.parquet").posts
    monkeypatch.setattr(parquet, "BATCH_ROWS", 2)
    assert load_dataset(tmp_path / "m.parquet").posts == whole and len(whole) == 5


def test_spark_folder_of_part_files(tmp_path):
    jpeg(tmp_path / "photos" / "a.jpg")
    jpeg(tmp_path / "photos" / "b.jpg", (1, 2, 3))
    folder = tmp_path / "posts.parquet"
    folder.mkdir()
    pq.write_table(table([("photos/a.jpg", ["food", "brunch"])]), folder / "part-00000.parquet")
    pq.write_table(table([("photos/b.jpg", ["cats"])]), folder / "part-00001.parquet")
    (folder / "_SUCCESS").write_bytes(b"")
    (folder / ".part-00000.parquet.crc").write_bytes(b"crc")
    for path in (folder, tmp_path):
        dataset = load_dataset(path)
        assert dataset.format == "parquet" and dataset.root == tmp_path.resolve()
        assert sorted(p.image for p in dataset.posts) == ["photos/a.jpg", "photos/b.jpg"]
        assert dataset.report.counts["files"] == 2


def test_uris_are_taken_as_given(tmp_path):
    outside = jpeg(tmp_path / "elsewhere" / "x.jpg")
    data = tmp_path / "data"
    data.mkdir()
    rows = [
        ("s3://bucket/photos/1.jpg", ["food"]),
        (outside.as_uri(), ["cats"]),
        ((tmp_path / "elsewhere" / "missing.jpg").as_uri(), ["dogs"]),
        ("../elsewhere/x.jpg", ["birds"]),
        ("/etc/passwd", ["fish"]),
    ]
    pq.write_table(table(rows), data / "posts.parquet")
    dataset = load_dataset(data)
    by_tag = {p.hashtags[0]: p for p in dataset.posts}
    assert set(by_tag) == {"food", "cats", "dogs"}
    assert by_tag["dogs"].image is None  # a file: URI naming no file is missing, as a path is
    assert dataset.report.counts["images_missing"] == 1
    assert dataset.report.counts["skipped_outside_root"] == 2  # relative paths stay inside
    assert dataset.image_path(by_tag["cats"]) == outside
    assert images.read_bytes(dataset.image_path(by_tag["cats"])) == outside.read_bytes()
    assert dataset.image_uri(by_tag["food"]) == "s3://bucket/photos/1.jpg"
    with pytest.raises(ImageError):  # the local engine cannot read s3://: counted unreadable
        images.read_bytes(dataset.image_path(by_tag["food"]))


def test_image_uri_of_a_relative_path(tmp_path):
    jpeg(tmp_path / "a b.jpg")
    parquet.write_manifest(tmp_path / "posts.parquet", [("a b.jpg", ["food"])])
    dataset = load_dataset(tmp_path)
    assert dataset.image_uri(dataset.posts[0]) == (tmp_path / "a b.jpg").resolve().as_uri()


def test_hashtags_as_a_string_and_ids(tmp_path):
    jpeg(tmp_path / "a.jpg")
    t = pa.table(
        {
            "id": pa.array(["p1", None, "p1"]),
            "image": pa.array(["a.jpg", None, None]),
            "hashtags": pa.array(["#food #brunch", "travel, quotes", "#extra"]),
        }
    )
    pq.write_table(t, tmp_path / "posts.parquet")
    dataset = load_dataset(tmp_path / "posts.parquet", "parquet")
    posts = {p.post_id: p for p in dataset.posts}
    assert posts["p1"].hashtags == ("food", "brunch", "extra")  # same id: merged
    assert posts["posts.parquet row 2"].image is None
    assert posts["posts.parquet row 2"].hashtags == ("travel", "quotes")


def test_missing_columns_are_one_clear_error(tmp_path):
    pq.write_table(pa.table({"path": ["a.jpg"], "tags": [["food"]]}), tmp_path / "posts.parquet")
    with pytest.raises(DatasetError, match="needs the columns 'image' and 'hashtags'") as err:
        load_dataset(tmp_path)
    assert "\n" not in str(err.value)


def test_damaged_part_file_is_counted(tmp_path):
    jpeg(tmp_path / "a.jpg")
    folder = tmp_path / "posts.parquet"
    folder.mkdir()
    pq.write_table(table([("a.jpg", ["food"])]), folder / "part-0.parquet")
    (folder / "part-1.parquet").write_bytes(b"PAR1 this is not parquet")
    dataset = load_dataset(folder)
    assert [p.image for p in dataset.posts] == ["a.jpg"]
    assert dataset.report.counts["unreadable_files"] == 1
    (folder / "part-0.parquet").unlink()
    with pytest.raises(DatasetError, match="no usable posts"):
        load_dataset(folder)


def test_two_manifests_in_one_folder(tmp_path):
    parquet.write_manifest(tmp_path / "posts.parquet", [(None, ["food"])])
    parquet.write_manifest(tmp_path / "manifest.parquet", [(None, ["food"])])
    with pytest.raises(DatasetError, match="several Parquet manifests"):
        load_dataset(tmp_path)
