"""instaloader downloads as instaloader writes them (instaloader/instaloader @d3cd639, v4.15.1):
edited captions, --no-captions, --comments, Content-Type extensions, video thumbnails.

Names and shapes follow its source: instaloader.py L242-243 (stem `{date_utc}_UTC`), L338-339
and L736-754 (sidecars `<stem>_<n>`), L341-356 (extension from the Content-Type: `.webp`,
`.heic`), L762-779 (a video and its thumbnail share a stem), L465-472 (edited captions
rotated to `<stem>_old_01.txt`), L360-370 and structures.py L2228-2259 (`<stem>.json.xz`:
`{"node": ..., "instaloader": {"node_type": "Post"}}`, xz without check), structures.py
L505-511 (the caption at node.edge_media_to_caption.edges[0].node.text), L372-443 and L418
(`<stem>_comments.json`: top-level comments with `answers`, each with `owner`).
"""

from __future__ import annotations

import io
import json
import lzma
from pathlib import Path

import pytest
from PIL import Image

from recommender.data.datasets import ReadOptions, load_dataset
from recommender.errors import ConfigError, DatasetError
from recommender.vision import images

OWNER = {"id": "1234567", "username": "someone"}
MP4 = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + bytes(32)


def picture(fmt: str, color=(200, 30, 30)) -> bytes:
    if fmt == "HEIF":
        pytest.importorskip("pillow_heif")
        import recommender.vision.images  # noqa: F401 - registers the HEIF plugin
    out = io.BytesIO()
    Image.new("RGB", (24, 16), color).save(out, fmt)
    return out.getvalue()


def metadata(caption: str | None, node_type: str = "Post") -> bytes:
    node = {
        "__typename": "GraphImage",
        "shortcode": "CxYz123",
        "taken_at_timestamp": 1580473496,
        "owner": OWNER,
        "edge_media_to_caption": {"edges": [{"node": {"text": caption}}] if caption else []},
    }
    structure = {"node": node, "instaloader": {"version": "4.15.1", "node_type": node_type}}
    text = json.dumps(structure, separators=(",", ":"))
    return lzma.compress(text.encode(), check=lzma.CHECK_NONE)


def comment(text: str, owner: dict, answers=()) -> dict:
    return {
        "id": 17900000000000000,
        "created_at": 1580473600,
        "text": text,
        "owner": {**owner, "profile_pic_url": "https://example.invalid/p.jpg"},
        "likes_count": 0,
        "answers": list(answers),
    }


def write(root: Path, files: dict[str, bytes | str]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    return root


def test_edited_captions_are_not_posts(tmp_path):
    stem = "2020-01-31_12-34-56_UTC"
    root = write(
        tmp_path,
        {
            f"{stem}.jpg": picture("JPEG"),
            f"{stem}.txt": "Sunset #sunset #beach\n",
            f"{stem}_old_01.txt": "Sunset #sunst #beach\n",  # the typo, edited away
            f"{stem}_old_02.txt": "Sunset #draft\n",
        },
    )
    dataset = load_dataset(root)
    assert [(p.post_id, p.hashtags) for p in dataset.posts] == [(stem, ("sunset", "beach"))]
    assert dataset.report.counts["records"] == 1


def test_no_captions_downloads_read_the_metadata(tmp_path):
    first, second = "2020-01-31_12-34-56_UTC", "2020-02-01_08-00-00_UTC"
    root = write(
        tmp_path,
        {
            f"{first}.jpg": picture("JPEG"),
            f"{first}.json.xz": metadata("Brunch #food #Brunch"),  # --no-captions: no .txt
            f"{second}.jpg": picture("JPEG"),
            # --post-metadata-txt={likes}: the .txt is not the caption; the metadata is
            f"{second}.txt": "42 likes\n",
            f"{second}.json.xz": metadata("Hiking #mountains"),
            "someone_1234567.json.xz": metadata(None, node_type="Profile"),  # not a post
        },
    )
    posts = {p.post_id: p.hashtags for p in load_dataset(root).posts}
    assert posts == {first: ("food", "brunch"), second: ("mountains",)}


def test_a_corrupt_metadata_file_skips_its_post_and_is_counted(tmp_path):
    good, bad = "2020-01-31_12-34-56_UTC", "2020-02-01_08-00-00_UTC"
    broken = bytearray(metadata("Hiking #mountains"))
    broken[30:60] = bytes(30)
    root = write(
        tmp_path,
        {
            f"{good}.jpg": picture("JPEG"),
            f"{good}.json.xz": metadata("#fine #day"),
            f"{bad}.jpg": picture("JPEG"),
            f"{bad}.txt": "Hiking #mountains\n",
            f"{bad}.json.xz": bytes(broken),
        },
    )
    dataset = load_dataset(root)
    assert [p.post_id for p in dataset.posts] == [good]
    assert dataset.report.counts["unreadable_files"] == 1
    assert any(f"{bad}.json.xz: cannot read" in line for line in dataset.report.problems)


def comments_download(tmp_path) -> Path:
    stem = "2020-01-31_12-34-56_UTC"
    return write(
        tmp_path,
        {
            f"{stem}.jpg": picture("JPEG"),
            f"{stem}.txt": "Sunday walk\n",
            f"{stem}.json.xz": metadata("Sunday walk"),
            f"{stem}_comments.json": json.dumps(
                [  # newest first, as instaloader sorts them
                    comment("love it #spam4spam", {"id": "999", "username": "fan"}),
                    comment(
                        "#nature #walk #sunday",
                        OWNER,
                        answers=[comment("thanks! #grateful", OWNER)],
                    ),
                ],
                indent=4,
            ),
        },
    )


def test_the_owners_comments_give_hashtags_by_default(tmp_path):
    root = comments_download(tmp_path)
    (post,) = load_dataset(root).posts
    assert post.hashtags == ("nature", "walk", "sunday", "grateful")
    (post,) = load_dataset(root, options=ReadOptions(comment_hashtags="all")).posts
    assert post.hashtags == ("spam4spam", "nature", "walk", "sunday", "grateful")
    with pytest.raises(DatasetError, match="no usable posts"):
        load_dataset(root, options=ReadOptions(comment_hashtags="none"))
    with pytest.raises(ConfigError, match="owner, all, none"):
        ReadOptions(comment_hashtags="mine")


def test_without_metadata_the_owner_is_unknown_and_said(tmp_path):
    root = comments_download(tmp_path)
    next(root.glob("*.json.xz")).unlink()
    (root / "2020-01-31_12-34-56_UTC.txt").write_text("Sunday walk #walk\n")
    dataset = load_dataset(root)
    assert dataset.posts[0].hashtags == ("walk",)
    assert any("owner is unknown" in line for line in dataset.report.problems)


def test_file_types_by_content_and_video_thumbnails(tmp_path):
    webp, heic, video, sidecar = (
        "2024-07-01_10-00-00_UTC",
        "2024-07-02_10-00-00_UTC",
        "2024-07-03_10-00-00_UTC",
        "2024-07-04_10-00-00_UTC",
    )
    root = write(
        tmp_path,
        {
            f"{webp}.webp": picture("WEBP"),
            f"{webp}.txt": "#webp #photo",
            f"{heic}.heic": picture("HEIF", (20, 20, 220)),
            f"{heic}.txt": "#heic #photo",
            f"{video}.jpg": picture("JPEG"),  # the video's thumbnail
            f"{video}.mp4": MP4,
            f"{video}.txt": "#reel #dance",
            f"{sidecar}_1.jpg": picture("JPEG"),  # a video's thumbnail in a sidecar
            f"{sidecar}_1.mp4": MP4,
            f"{sidecar}_2.heic": picture("JPEG", (0, 250, 0)),  # JPEG bytes, .heic name
            f"{sidecar}.txt": "#carousel #mixed",
        },
    )
    dataset = load_dataset(root)
    posts = {p.hashtags[0]: p for p in dataset.posts}
    assert posts["webp"].image == f"{webp}.webp"
    assert posts["heic"].image == f"{heic}.heic"
    assert posts["reel"].image is None
    assert posts["carousel"].image == f"{sidecar}_2.heic"
    assert dataset.report.counts["skipped_video"] == 2
    blue = images.open_image(dataset.image_path(posts["heic"])).getpixel((4, 4))
    assert blue[2] > 150 and blue[0] < 80
    green = images.open_image(dataset.image_path(posts["carousel"])).getpixel((4, 4))
    assert green[1] > 200
