"""Instagram's "Download your information" export (JSON), as a .zip read in place and unpacked.

The fixture follows the export as public readers of it see it (marcomaroni-github/
instagram-to-bluesky, by-jp/www.byjp.me's tools/archive/instagram, pixelfed's import
issues): posts in your_instagram_activity/content/posts_N.json, media uris relative to the
export's top folder, carousel captions in the outer title, single-media captions in the
media's title, UTF-8 written as Latin-1 escapes, videos among the photos.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from recommender.data.datasets import load_dataset
from recommender.data.formats.instagram_export import fix_text
from recommender.errors import DatasetError, ImageError
from recommender.vision import images


def jpeg_bytes(color, size=(80, 60)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def mojibake(text: str) -> str:
    """What the export writes: each UTF-8 byte as one Latin-1 character."""
    return text.encode("utf-8").decode("latin-1")


PHOTOS = {
    "media/posts/202301/17912345.jpg": jpeg_bytes((200, 80, 40)),
    "media/posts/202302/17920001.jpg": jpeg_bytes((20, 160, 90)),
    "media/posts/202302/17920002.jpg": jpeg_bytes((20, 20, 200)),
    "media/posts/202303/17930000.webp": None,  # filled below: a WebP photo
    "media/posts/202305/17950000.jpg": jpeg_bytes((90, 90, 90)),
}
_webp = io.BytesIO()
Image.new("RGB", (40, 40), (250, 250, 0)).save(_webp, "WEBP")
PHOTOS["media/posts/202303/17930000.webp"] = _webp.getvalue()
VIDEOS = {
    "media/posts/202302/17920003.mp4": b"\x00\x00\x00\x18ftypmp42video",
    "media/reels/202304/17940000.mp4": b"\x00\x00\x00\x18ftypmp42reel",
}

POSTS_1 = [
    {  # a single photo: the caption is the media's title, with mojibake
        "media": [
            {
                "uri": "media/posts/202301/17912345.jpg",
                "creation_timestamp": 1673000000,
                "media_metadata": {"camera_metadata": {"has_camera_metadata": False}},
                "title": mojibake("Café au lait ☕ #café #Brunch #SundayBrunch"),
                "cross_post_source": {"source_app": "FB"},
            }
        ]
    },
    {  # a carousel: photo, photo, video; the caption is the outer title
        "media": [
            {
                "uri": "media/posts/202302/17920001.jpg",
                "creation_timestamp": 1675000000,
                "title": "",
            },
            {
                "uri": "media/posts/202302/17920002.jpg",
                "creation_timestamp": 1675000000,
                "title": "",
            },
            {
                "uri": "media/posts/202302/17920003.mp4",
                "creation_timestamp": 1675000000,
                "title": "",
            },
        ],
        "title": mojibake("Tokyo days #東京 #travel #Japan 🇯🇵"),
        "creation_timestamp": 1675000000,
    },
    {  # a reel: only a video, kept without image for its hashtags
        "media": [
            {
                "uri": "media/reels/202304/17940000.mp4",
                "creation_timestamp": 1680000000,
                "title": "Dance #reels #fun",
            }
        ]
    },
    {  # a hostile entry: its uri leaves the archive
        "media": [{"uri": "../../../etc/passwd.jpg", "creation_timestamp": 1, "title": "#evil"}]
    },
    {  # no hashtags at all
        "media": [{"uri": "media/posts/202305/17950000.jpg", "creation_timestamp": 2, "title": "x"}]
    },
]
POSTS_2 = [
    {  # media as one object rather than a list; a WebP photo
        "media": {
            "uri": "media/posts/202303/17930000.webp",
            "creation_timestamp": 1678000000,
            "title": "Lemons #citrus #yellow",
        }
    },
    {  # a photo the export does not hold: kept without image
        "media": [
            {
                "uri": "media/posts/202306/missing.jpg",
                "creation_timestamp": 3,
                "title": "#gone #lost",
            }
        ]
    },
    "not a post",
]
OTHER_FILES = {  # what else an export holds; never read as posts
    "personal_information/personal_information/personal_information.json": b"{}",
    "connections/followers_and_following/followers_1.json": b"[]",
    "your_instagram_activity/content/stories.json": b'{"ig_stories": []}',
    "your_instagram_activity/messages/inbox/friend_1/message_1.json": b'{"messages": []}',
    "media/stories/202301/1.jpg": jpeg_bytes((1, 1, 1)),
}


def write_export(folder: Path, top: str = "") -> None:
    files = {
        **PHOTOS,
        **VIDEOS,
        **OTHER_FILES,
        "your_instagram_activity/content/posts_1.json": json.dumps(POSTS_1).encode(),
        "your_instagram_activity/content/posts_2.json": json.dumps(POSTS_2).encode(),
    }
    for name, data in files.items():
        path = folder / top / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@pytest.fixture
def unpacked(tmp_path) -> Path:
    folder = tmp_path / "instagram-someone-2024-01-01-abcdef"
    write_export(folder)
    return folder


@pytest.fixture
def zipped(tmp_path, unpacked) -> Path:
    path = tmp_path / "instagram-someone-2024-01-01-abcdef.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(unpacked.rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(unpacked).as_posix())
        archive.writestr("../../escaped.jpg", jpeg_bytes((0, 0, 0)))  # zip slip members
        archive.writestr("/tmp/absolute.jpg", jpeg_bytes((0, 0, 0)))
    return path


def tags_by_first(dataset) -> dict[str, object]:
    return {p.hashtags[0]: p for p in dataset.posts}


@pytest.mark.parametrize("kind", ["zipped", "unpacked"])
def test_posts_of_an_export(kind, request):
    path = request.getfixturevalue(kind)
    dataset = load_dataset(path)
    assert dataset.format == "instagram_export"
    posts = tags_by_first(dataset)
    assert set(posts) == {"café", "東京", "reels", "citrus", "gone"}
    assert posts["café"].hashtags == ("café", "brunch", "sundaybrunch")  # mojibake decoded
    assert posts["café"].image == "media/posts/202301/17912345.jpg"
    assert posts["東京"].hashtags == ("東京", "travel", "japan")  # the carousel's outer title
    assert posts["東京"].image == "media/posts/202302/17920001.jpg"  # its first photo
    assert posts["reels"].image is None and posts["reels"].hashtags == ("reels", "fun")
    assert posts["citrus"].image == "media/posts/202303/17930000.webp"
    assert posts["gone"].image is None
    c = dataset.report.counts
    assert c["skipped_video"] == 2  # the carousel's video and the reel
    assert c["skipped_no_hashtags"] == 1 and c["skipped_malformed"] == 1
    assert c["images_missing"] == 1 and c["files"] == 2
    # zip slip: the entry whose uri leaves the export, and (zip only) the two members
    assert c["skipped_outside_root"] == (3 if kind == "zipped" else 1)
    for post in dataset.posts:
        if post.image:
            expected = PHOTOS[post.image]
            assert images.read_bytes(dataset.image_path(post)) == expected
            assert images.open_image(dataset.image_path(post)).mode == "RGB"


def test_zip_and_folder_give_the_same_posts(zipped, unpacked):
    assert load_dataset(zipped).posts == load_dataset(unpacked).posts


def test_the_zip_is_read_in_place(zipped, tmp_path):
    before = sorted(p.name for p in tmp_path.rglob("*"))
    dataset = load_dataset(zipped)
    assert dataset.root == zipped.resolve() and dataset.is_archive
    for post in dataset.posts:
        if post.image:
            assert isinstance(dataset.image_path(post), zipfile.Path)
            images.read_bytes(dataset.image_path(post))
    dataset.fingerprint()
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing extracted
    dataset.close()


def test_zip_slip_problems_are_reported(zipped):
    problems = "\n".join(load_dataset(zipped).report.problems)
    assert "'../../escaped.jpg' leaves the archive" in problems
    assert "'/tmp/absolute.jpg' leaves the archive" in problems
    assert "entry 3: a media uri leaves the export" in problems


def test_a_symlink_out_of_the_folder_is_refused(unpacked, tmp_path):
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(jpeg_bytes((5, 5, 5)))
    target = unpacked / "media/posts/202301/17912345.jpg"
    target.unlink()
    os.symlink(secret, target)
    dataset = load_dataset(unpacked)
    assert "café" not in tags_by_first(dataset)
    assert dataset.report.counts["skipped_outside_root"] == 2


def test_older_exports_and_a_top_folder_in_the_zip(tmp_path):
    old = tmp_path / "old"
    (old / "content").mkdir(parents=True)
    (old / "media/posts/201901").mkdir(parents=True)
    (old / "media/posts/201901/1.jpg").write_bytes(jpeg_bytes((9, 9, 9)))
    entry = {"media": [{"uri": "media/posts/201901/1.jpg", "title": "#old #times"}]}
    (old / "content/posts_1.json").write_text(json.dumps([entry]))
    dataset = load_dataset(old)
    assert [(p.image, p.hashtags) for p in dataset.posts] == [
        ("media/posts/201901/1.jpg", ("old", "times"))
    ]
    path = tmp_path / "wrapped.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("export/content/posts_1.json", json.dumps([entry]))
        archive.writestr("export/media/posts/201901/1.jpg", jpeg_bytes((9, 9, 9)))
    dataset = load_dataset(path)
    assert dataset.posts[0].image == "export/media/posts/201901/1.jpg"
    assert images.read_bytes(dataset.image_path(dataset.posts[0])) == jpeg_bytes((9, 9, 9))


def test_posts_files_in_number_order(tmp_path):
    folder = tmp_path / "export" / "your_instagram_activity" / "content"
    folder.mkdir(parents=True)
    for number in (1, 2, 10):
        entry = {"media": [], "title": f"#file{number} #posts"}
        (folder / f"posts_{number}.json").write_text(json.dumps([entry]))
    dataset = load_dataset(tmp_path / "export")
    assert [p.hashtags[0] for p in dataset.posts] == ["file1", "file2", "file10"]


def test_the_html_export_is_explained(tmp_path):
    path = tmp_path / "html.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("your_instagram_activity/content/posts_1.html", "<html></html>")
    with pytest.raises(DatasetError, match="HTML format.*Format: JSON"):
        load_dataset(path)


def test_a_damaged_member_is_an_unreadable_image(zipped, tmp_path):
    dataset = load_dataset(zipped)
    post = tags_by_first(dataset)["café"]
    with zipfile.ZipFile(zipped) as archive:
        info = archive.getinfo(post.image)
    data = bytearray(zipped.read_bytes())
    data[info.header_offset + 40 : info.header_offset + 200] = b"\xff" * 160
    broken = tmp_path / "broken.zip"
    broken.write_bytes(bytes(data))
    damaged = load_dataset(broken)
    with pytest.raises(ImageError, match="cannot be read from its archive"):
        images.read_bytes(damaged.image_path(tags_by_first(damaged)["café"]))


def test_fix_text():
    assert fix_text("caf\u00c3\u00a9") == "café"
    assert fix_text(mojibake("東京 ☕ 🇯🇵")) == "東京 ☕ 🇯🇵"
    assert fix_text("café") == "café"  # proper Unicode is left alone
    assert fix_text("東京") == "東京"
    assert fix_text("plain #ascii") == "plain #ascii"


def test_an_oversized_member_is_refused_before_it_is_read(zipped, monkeypatch):
    dataset = load_dataset(zipped)
    post = tags_by_first(dataset)["café"]
    monkeypatch.setattr(images, "MAX_BYTES", len(PHOTOS[post.image]) - 1)
    with pytest.raises(ImageError, match="too large"):
        images.read_bytes(dataset.image_path(post))


class MeanColour:
    """A stand-in backbone: an image's feature is its mean colour (the pipeline is real)."""

    name, weights, input_size, dim = "mean-colour", "none", 16, 3

    def embed(self, batch):
        return batch.reshape(len(batch), -1, 3).mean(axis=1).astype("float32")


def test_feature_extraction_reads_the_zip_members(zipped, unpacked):
    from recommender.features.pipeline import extract_features

    results = []
    for path in (zipped, unpacked):
        dataset = load_dataset(path)
        sources = [dataset.image_path(p) for p in dataset.posts if p.image]
        results.append(extract_features(sources, MeanColour(), workers=2, thumb_size=32))
    from_zip, from_folder = results
    assert from_zip.errors == from_folder.errors == []
    assert from_zip.hashes == from_folder.hashes and len(from_zip.ok) == 3
    assert (from_zip.features == from_folder.features).all()


@pytest.mark.slow
def test_a_model_built_from_the_zip_recommends(zipped, tmp_path, feature_cache_dir):
    """What the data scientist does: build from their export as Instagram sent it."""
    from recommender import HashtagRecommender
    from recommender.build import build_model
    from recommender.config import ALSParams
    from recommender.query.recommender import BuildConfig

    config = BuildConfig(als=ALSParams(factors=4, iterations=2))
    _rec, summary = build_model(zipped, tmp_path / "model", config)
    assert summary["format"] == "instagram_export" and summary["images_embedded"] == 3
    assert "1 video" in summary["dataset_report"] or "2 video" in summary["dataset_report"]
    rec = HashtagRecommender.load(tmp_path / "model")
    photo = PHOTOS["media/posts/202301/17912345.jpg"]
    result = rec.recommend(photo, n_neighbours=1, k=3)
    assert result.neighbours[0].image == "media/posts/202301/17912345.jpg"
    assert result.neighbours[0].similarity == pytest.approx(1.0, abs=1e-3)
    assert {t.tag for t in result.hashtags} >= {"café"}


def test_the_fingerprint_follows_the_members(zipped, tmp_path):
    first = load_dataset(zipped).fingerprint()
    assert first == load_dataset(zipped).fingerprint()
    changed = tmp_path / "changed.zip"
    with zipfile.ZipFile(zipped) as old, zipfile.ZipFile(changed, "w") as new:
        for info in old.infolist():
            data = old.read(info)
            if info.filename == "media/posts/202301/17912345.jpg":
                data = jpeg_bytes((1, 2, 3))  # the same name, other content
            new.writestr(info, data)
    assert load_dataset(changed).posts == load_dataset(zipped).posts
    assert load_dataset(changed).fingerprint() != first


def test_duplicate_member_names_in_the_zip_are_counted_and_reported(zipped, tmp_path):
    # A zip may hold two members of one name (zipfile warns "Duplicate name" and writes
    # both); readers then see only the last, silently.
    import warnings

    path = tmp_path / "with-duplicates.zip"
    shutil.copy(zipped, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr("media/posts/202301/17912345.jpg", jpeg_bytes((1, 2, 3)))
            archive.writestr("media/posts/202301/17912345.jpg", jpeg_bytes((4, 5, 6)))
    dataset = load_dataset(path)
    assert dataset.report.counts["skipped_duplicate_member"] == 2
    problems = "\n".join(dataset.report.problems)
    assert "'media/posts/202301/17912345.jpg' appears more than once" in problems
    assert "2 duplicate member" in dataset.report.summary()
    assert load_dataset(zipped).report.counts["skipped_duplicate_member"] == 0
