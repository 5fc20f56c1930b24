"""Instagram exports as people really have them: split over several zips, from before 2020,
in the 2025-26 layout (HEIC photos, flat media folders, videos without extension, archived
posts), with mojibake. Each fixture follows a public example named in its docstring.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from recommender.data.datasets import ReadOptions, load_dataset
from recommender.data.formats.instagram_export import fix_text
from recommender.errors import DatasetError
from recommender.vision import images


def jpeg(color, size=(40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG", quality=90)
    return out.getvalue()


def heic(color) -> bytes:
    pytest.importorskip("pillow_heif")
    out = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(out, "HEIF", quality=90)
    return out.getvalue()


def mojibake(text: str) -> str:
    return text.encode("utf-8").decode("latin-1")


def write_zip(path: Path, files: dict[str, bytes | str | object]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            if not isinstance(data, (bytes, str)):
                data = json.dumps(data)
            archive.writestr(name, data)
    return path


def write_folder(path: Path, files: dict[str, bytes | str | object]) -> Path:
    for name, data in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not isinstance(data, (bytes, str)):
            data = json.dumps(data)
        target.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def personal_information(username: str) -> dict:
    """timelinize datasources/instagram/models.go (a3d52de) L120-138: profile_user[0].
    string_map_data.Username.value; the 2025 path is personal_information/
    personal_information/personal_information.json (instagram.go L283-285)."""
    return {
        "profile_user": [
            {
                "media_map_data": {"Profile photo": {"uri": "media/other/1.jpg"}},
                "string_map_data": {"Username": {"href": "", "value": username, "timestamp": 0}},
            }
        ]
    }


MP4 = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + bytes(32)


# ---------------------------------------------------------------- the 2025-26 layout
def current_export() -> dict:
    """pixelfed/pixelfed PR #5822 (2025-03): posts in your_instagram_activity/media/
    posts_1.json; greg-randall/memento-mori#15 (2026-04): uris media/posts/202603/<id>.webp
    in it; pixelfed#5298: .heic photos since mid-2024, and memento-mori media.py
    fix_file_extensions: ".heic" files that are really JPEG; pixelfed#4477: video uris
    without extension (video/mp4); pixelfed#4478: a carousel's caption in the outer title,
    escaped as Latin-1 (T H \\u00ce\\u00a3 ...). media/other/ and flat media/posts/<id> uris
    are resolved as given (no month folder assumed)."""
    posts = [
        {"media": [{"uri": "media/posts/202603/29458295.heic", "title": "#iphone #heic"}]},
        {"media": [{"uri": "media/posts/29458296.heic", "title": "#jpegbytes #flat"}]},
        {"media": [{"uri": "media/other/29458297.jpg", "title": "#other #folder"}]},
        {  # a carousel: a video without extension first, then a photo
            "media": [
                {"uri": "media/posts/201911/PxUCKAJDMywXQEJ7peNT988Y_17861590900598972"},
                {"uri": "media/posts/202603/29458298.webp", "title": ""},
            ],
            "title": mojibake("T H Σ  P Λ T H\n—\n#chevrolet #elcamino"),
            "creation_timestamp": 1657665070,
        },
        {  # a reel alone, its uri without extension: kept without image for its tags
            "media": [{"uri": "media/posts/201911/Qx_17861590900598973", "title": "#reel #dance"}]
        },
    ]
    webp = io.BytesIO()
    Image.new("RGB", (20, 20), (0, 200, 0)).save(webp, "WEBP")
    return {
        "your_instagram_activity/media/posts_1.json": posts,
        "your_instagram_activity/media/archived_posts.json": {
            "ig_archived_post_media": [
                {"media": [{"uri": "media/posts/202001/1.jpg", "title": "#hidden #archived"}]}
            ]
        },
        "personal_information/personal_information/personal_information.json": (
            personal_information("alifeee")
        ),
        "media/posts/202603/29458295.heic": heic((200, 0, 0)),
        "media/posts/29458296.heic": jpeg((0, 0, 200)),
        "media/other/29458297.jpg": jpeg((9, 9, 9)),
        "media/posts/201911/PxUCKAJDMywXQEJ7peNT988Y_17861590900598972": MP4,
        "media/posts/202603/29458298.webp": webp.getvalue(),
        "media/posts/201911/Qx_17861590900598973": MP4,
        "media/posts/202001/1.jpg": jpeg((1, 2, 3)),
    }


@pytest.mark.parametrize("packed", [True, False])
def test_the_current_layout_by_content(tmp_path, packed):
    files = current_export()
    name = "instagram-alifeee-2026-04-01-2FW22fj"
    path = (
        write_zip(tmp_path / f"{name}.zip", files)
        if packed
        else write_folder(tmp_path / name, files)
    )
    dataset = load_dataset(path)
    posts = {p.hashtags[0]: p for p in dataset.posts}
    assert set(posts) == {"iphone", "jpegbytes", "other", "chevrolet", "reel"}
    assert posts["iphone"].image == "media/posts/202603/29458295.heic"
    assert posts["jpegbytes"].image == "media/posts/29458296.heic"
    assert posts["other"].image == "media/other/29458297.jpg"
    assert posts["chevrolet"].image == "media/posts/202603/29458298.webp"
    assert posts["chevrolet"].hashtags == ("chevrolet", "elcamino")
    assert posts["reel"].image is None
    assert dataset.report.counts["skipped_video"] == 2
    red = images.open_image(dataset.image_path(posts["iphone"])).getpixel((5, 5))
    assert red[0] > 150 and red[1] < 60  # a real HEIC decoded
    assert images.open_image(dataset.image_path(posts["jpegbytes"])).size == (40, 30)


def test_archived_posts_only_when_asked(tmp_path):
    path = write_zip(tmp_path / "export.zip", current_export())
    assert "hidden" not in {t for p in load_dataset(path).posts for t in p.hashtags}
    dataset = load_dataset(path, options=ReadOptions(archived_posts=True))
    hidden = [p for p in dataset.posts if "hidden" in p.hashtags]
    assert [p.image for p in hidden] == ["media/posts/202001/1.jpg"]


# ---------------------------------------------------------------- split exports
def split(tmp_path: Path, second_user: str = "alifeee") -> tuple[Path, Path]:
    """greg-randall/memento-mori#11 (2026-03): "Instagram gives me 2 ZIP exports"; the zip
    names instagram-<username>-<YYYY-MM-DD>-<id>.zip (#11, #15). Which files go in which part
    is not documented: here the posts list and one photo in part 1, two photos in part 2."""
    files = current_export()
    first = {k: v for k, v in files.items() if not k.startswith("media/posts/202603/")}
    second = {k: v for k, v in files.items() if k.startswith("media/posts/202603/")}
    second["personal_information/personal_information/personal_information.json"] = (
        personal_information(second_user)
    )
    part1 = write_zip(tmp_path / "instagram-alifeee-2026-04-01-2FW22fj.zip", first)
    part2 = write_zip(tmp_path / "instagram-alifeee-2026-04-01-9QkX1aB.zip", second)
    return part1, part2


def test_the_parts_of_a_split_export_are_one_data_set(tmp_path):
    part1, part2 = split(tmp_path)
    dataset = load_dataset([part1, part2])
    posts = {p.hashtags[0]: p for p in dataset.posts}
    assert posts["iphone"].image == "media/posts/202603/29458295.heic"
    assert posts["chevrolet"].image == "media/posts/202603/29458298.webp"
    assert posts["jpegbytes"].image == "media/posts/29458296.heic"
    for post in posts.values():
        if post.image:
            assert images.open_image(dataset.image_path(post)).mode == "RGB"
    assert dataset.parts == (part1.resolve(), part2.resolve())
    assert dataset.report.counts["images_missing"] == 0
    assert dataset.fingerprint() == load_dataset([part1, part2]).fingerprint()
    dataset.close()
    # The same as a folder holding the parts.
    assert load_dataset(tmp_path).posts == dataset.posts


def test_part_one_alone_says_photos_are_missing(tmp_path):
    part1, _part2 = split(tmp_path)
    dataset = load_dataset(part1)
    assert dataset.report.problems[0] == (
        "2 photos are missing: is this one part of a split export? pass every part"
    )
    assert {p.hashtags[0]: p.image for p in dataset.posts}["iphone"] is None


def test_part_two_alone_asks_for_every_part(tmp_path):
    _part1, part2 = split(tmp_path)
    with pytest.raises(DatasetError, match="pass every part") as caught:
        load_dataset(part2)
    assert "\n" not in str(caught.value)


def test_a_part_of_another_account_is_refused_in_one_line(tmp_path):
    part1, part2 = split(tmp_path, second_user="someone_else")
    with pytest.raises(DatasetError) as caught:
        load_dataset([part1, part2])
    message = str(caught.value)
    assert "'someone_else'" in message and "'alifeee'" in message and "\n" not in message
    other = write_zip(
        tmp_path / "instagram-bob-2026-01-01-abcdefgh.zip", {"media/posts/x.jpg": b""}
    )
    with pytest.raises(DatasetError, match="'bob'"):
        load_dataset([part1, other])


# ---------------------------------------------------------------- before 2020
def legacy_export() -> dict:
    """PersonalDataPipeline/pdpl-cli src/imports/instagram-2018-import (an export of
    2018-10-16): media.json at the top, {photos: [{taken_at, path, caption?, location?}],
    videos: [...], direct: [...]}, files under photos/YYYYMM/; values as in the excerpts the
    research quotes ("photos/201812/<32 hex>.jpg", "taken_at": "2018-12-31T08:05:13");
    ryanmonro/instagram-data-download-json-tool: caption may be missing, taken_at may carry
    fractions of a second."""
    return {
        "media.json": {
            "photos": [
                {
                    "caption": "Sunset at English Bay #vancouver #sunset",
                    "taken_at": "2018-12-31T08:05:13",
                    "location": "West End, Vancouver",
                    "path": "photos/201812/3e02b2be0d7abbdb7c2bae1fee544665.jpg",
                },
                {
                    "taken_at": "2017-04-16T12:08:35.123",
                    "path": "photos/201704/8674986dfc70767c44dc92d50e81b897.jpg",
                },
            ],
            "videos": [
                {
                    "caption": "#timelapse #sunset",
                    "taken_at": "2018-06-01T10:00:00",
                    "path": "videos/201806/0123456789abcdef0123456789abcdef.mp4",
                }
            ],
            "direct": [{"taken_at": "2018-01-01T00:00:00", "path": "direct/201801/x.jpg"}],
        },
        "profile.json": {"username": "old_account"},
        "comments.json": {"media_comments": []},
        "photos/201812/3e02b2be0d7abbdb7c2bae1fee544665.jpg": jpeg((250, 120, 0)),
        "photos/201704/8674986dfc70767c44dc92d50e81b897.jpg": jpeg((0, 0, 0)),
        "videos/201806/0123456789abcdef0123456789abcdef.mp4": MP4,
    }


@pytest.mark.parametrize("packed", [True, False])
def test_a_pre_2020_export(tmp_path, packed):
    files = legacy_export()
    path = (
        write_zip(tmp_path / "old.zip", files) if packed else write_folder(tmp_path / "old", files)
    )
    dataset = load_dataset(path)
    assert dataset.format == "instagram_export"
    assert [(p.image, p.hashtags) for p in dataset.posts] == [
        ("photos/201812/3e02b2be0d7abbdb7c2bae1fee544665.jpg", ("vancouver", "sunset")),
        (None, ("timelapse", "sunset")),
    ]
    counts = dataset.report.counts
    assert counts["skipped_no_hashtags"] == 1 and counts["skipped_video"] == 1


def test_a_media_json_of_an_unknown_year_names_what_it_found(tmp_path):
    files = {
        "media.json": {"posts": {"count": 3}, "profile": []},
        "profile.json": {},
    }
    with pytest.raises(DatasetError) as caught:
        load_dataset(write_folder(tmp_path / "odd", files))
    message = str(caught.value)
    assert "'posts' (dict)" in message and "'profile' (list)" in message
    assert "\n" not in message


# ---------------------------------------------------------------- mojibake
def test_mojibake_is_repaired_run_by_run():
    """timelinize datasources/facebook/archive.go FixString: U+1F642 written as
    \\u00f0\\u009f\\u0099\\u0082; pixelfed#4478: "\\u00ce\\u00a3" for Σ."""
    broken = mojibake("#café") + " \xe9t\xe9 " + mojibake("#東京 🙂")
    # One run that is not UTF-8 (real Latin-1 "été") no longer leaves the rest garbled.
    assert fix_text(broken) == "#café été #東京 🙂"
    assert fix_text(mojibake("T H Σ") + " Ω") == "T H Σ Ω"  # proper Unicode beside it
    assert fix_text("\xe9") == "\xe9"
    assert fix_text("plain") == "plain"


# ---------------------------------------------------------------- build: what it says
@pytest.fixture
def stage_config(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHTAG_CACHE", str(tmp_path / "cache"))
    from recommender.config import BuildConfig

    return BuildConfig(thumb_size=16)


def test_a_build_without_one_photo_says_why(tmp_path, stage_config):
    from test_embed_stage import MeanColour

    from recommender.build import embed_stage, read_stage

    posts = [{"media": [{"uri": "media/posts/1.heic", "title": "#one #post"}]}]
    part1 = write_zip(tmp_path / "p1.zip", {"your_instagram_activity/media/posts_1.json": posts})
    with pytest.raises(DatasetError) as caught:
        embed_stage(read_stage(part1), stage_config, backbone=MeanColour())
    assert str(caught.value) == (
        f"None of the 1 posts in {part1.resolve()} has an image that could be read: 1 photos "
        "are missing: is this one part of a split export? pass every part"
    )
    broken = heic((9, 9, 9))[:200]
    part2 = write_zip(tmp_path / "p2.zip", {"media/posts/1.heic": broken})
    with pytest.raises(DatasetError) as caught:
        embed_stage(read_stage([part1, part2]), stage_config, backbone=MeanColour())
    assert str(caught.value) == (
        f"None of the 1 images in {part1.resolve()} could be read; the first: "
        "media/posts/1.heic: HEIC photo: the image is truncated or corrupt."
    )


def test_build_takes_every_part_and_the_read_options(tmp_path, monkeypatch):
    from recommender import build, cli

    seen = {}

    def fake_build_model(data, out, config, **kwargs):
        seen.update(data=data, options=kwargs["read_options"])
        raise DatasetError("stop here")

    monkeypatch.setattr(build, "build_model", fake_build_model)
    argv = ["build", "p1.zip", "p2.zip", "--out", str(tmp_path / "m"), "--archived-posts"]
    assert cli.main([*argv, "--comment-hashtags", "all"]) == 1
    assert seen["data"] == ["p1.zip", "p2.zip"]
    assert seen["options"] == ReadOptions(archived_posts=True, comment_hashtags="all")
    assert cli.main(["build", "p1.zip", "--out", str(tmp_path / "m")]) == 1
    assert seen["data"] == "p1.zip" and seen["options"] == ReadOptions()
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["build"].format_help()
    assert "--comment-hashtags" in help_text and "owner's own comments" in help_text


def test_a_folder_with_a_stray_media_zip_is_not_an_export(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes(jpeg((1, 1, 1)))
    (tmp_path / "posts.csv").write_text("image,hashtags\nimg/a.jpg,#beach #sun\n")
    write_zip(tmp_path / "backup.zip", {"media/posts/1.jpg": jpeg((2, 2, 2))})
    assert load_dataset(tmp_path).format == "manifest"
