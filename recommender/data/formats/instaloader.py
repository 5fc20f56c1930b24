"""A folder written by instaloader: ``<stem>.jpg`` with its caption in ``<stem>.txt``.

What instaloader writes and how each file is read: :func:`load`.
"""

from __future__ import annotations

import json
import lzma
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from recommender.data.formats import DatasetFormat, ReadOptions, SamplePost
from recommender.data.hashtags import extract_hashtags
from recommender.data.records import Dataset, DatasetBuilder
from recommender.errors import DatasetError
from recommender.filetypes import PHOTOS, VIDEOS, sniff_file

NAME = "instaloader"
MAX_CAPTION_BYTES = 1 << 20
MAX_METADATA_BYTES = 32 << 20
"""Largest metadata or comments JSON read, in bytes (decompressed)."""

_SIDECAR = re.compile(r"^(.+)_(\d+)$")
_OLD_CAPTION = re.compile(r"_old_\d{2,}$")
_NOT_MEDIA = (".txt", ".json", ".xz")


@dataclass
class _Post:
    caption: str | None = None  # <stem>.txt
    metadata: str | None = None  # <stem>.json.xz or <stem>.json
    comments: str | None = None  # <stem>_comments.json
    photos: dict[int, str] = field(default_factory=dict)  # by sidecar number (0: single)
    thumbnails: int = 0  # images beside a video of the same name


def _groups(root: Path, builder: DatasetBuilder | None = None) -> Iterator[tuple[str, dict]]:
    """Per folder (relative POSIX path): the posts by stem, and the photos of no post."""

    def onerror(exc: OSError) -> None:
        if builder is not None:
            builder.skip("unreadable_files", f"cannot list {exc.filename}: {exc.strerror}")

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        names = sorted(f for f in filenames if not f.startswith("."))
        posts: dict[str, _Post] = {}
        for name in names:
            lower = name.lower()
            if lower.endswith(".txt"):
                stem = name[:-4]
                if not lower.endswith("_location.txt") and not _OLD_CAPTION.search(stem):
                    posts.setdefault(stem, _Post()).caption = name
            elif lower.endswith("_comments.json"):
                posts.setdefault(name[: -len("_comments.json")], _Post()).comments = name
            elif lower.endswith((".json.xz", ".json")):
                stem = name[: -len(".json.xz")] if lower.endswith(".xz") else name[:-5]
                posts.setdefault(stem, _Post()).metadata = name
        media: dict[str, str] = {}  # stem -> "photo" / "video", by content
        photos: dict[str, str] = {}
        for name in names:
            if name.lower().endswith(_NOT_MEDIA):
                continue
            full = Path(dirpath) / name
            # A symlink is not read here (it may leave the root): the builder vets it.
            kind = "JPEG" if full.is_symlink() else sniff_file(full)
            stem = os.path.splitext(name)[0]
            if kind in VIDEOS:
                media[stem] = "video"
            elif kind in PHOTOS:
                photos.setdefault(stem, name)
        orphans = []
        for stem, image in photos.items():
            if media.get(stem) == "video":
                owner = _owner_of(stem, posts)
                if owner is not None:
                    posts[owner[0]].thumbnails += 1
                continue
            owner = _owner_of(stem, posts)
            if owner is None:
                orphans.append(image)
            else:
                posts[owner[0]].photos.setdefault(owner[1], image)
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        yield rel_dir, {"posts": posts, "orphans": sorted(orphans)}


def _owner_of(stem: str, posts: dict[str, _Post]) -> tuple[str, int] | None:
    """(post stem, sidecar number) of a media file's stem, None if it belongs to no post."""
    if stem in posts:
        return stem, 0
    match = _SIDECAR.match(stem)
    if match and match.group(1) in posts:
        return match.group(1), int(match.group(2))
    return None


def detect(path: Path) -> bool:
    return path.is_dir() and any(
        any(post.photos and (post.caption or post.metadata) for post in group["posts"].values())
        for _, group in _groups(path)
    )


class _Corrupt(ValueError):
    """A metadata file that cannot be read."""


def _read_json(path: Path) -> object:
    """A JSON file, xz-compressed or not, at most :data:`MAX_METADATA_BYTES` decompressed."""
    try:
        if path.name.lower().endswith(".xz"):
            with lzma.open(path, "rb") as handle:
                data = handle.read(MAX_METADATA_BYTES + 1)
        else:
            with path.open("rb") as handle:
                data = handle.read(MAX_METADATA_BYTES + 1)
        if len(data) > MAX_METADATA_BYTES:
            raise _Corrupt(f"larger than {MAX_METADATA_BYTES} bytes")
        return json.loads(data)
    except (OSError, EOFError, lzma.LZMAError, ValueError, RecursionError) as exc:
        if isinstance(exc, _Corrupt):
            raise
        raise _Corrupt(str(exc) or type(exc).__name__) from exc


def _post_node(metadata: object) -> dict | None:
    """The GraphQL node of a Post's metadata, None for other structures (a Profile...)."""
    if not isinstance(metadata, dict) or not isinstance(metadata.get("node"), dict):
        return None
    kind = metadata.get("instaloader", {})
    if isinstance(kind, dict) and kind.get("node_type") not in (None, "Post"):
        return None
    return metadata["node"]


def _node_caption(node: dict) -> str:
    try:
        text = node["edge_media_to_caption"]["edges"][0]["node"]["text"]
    except (KeyError, IndexError, TypeError):
        text = node.get("caption")
    if isinstance(text, dict):  # the iPhone structure: {"text": ...}
        text = text.get("text")
    return text if isinstance(text, str) else ""


def _owner(node: dict | None) -> tuple[str, str]:
    owner = node.get("owner") if isinstance(node, dict) else None
    if not isinstance(owner, dict):
        return "", ""
    return str(owner.get("id") or ""), str(owner.get("username") or "").lower()


def _comment_texts(comments: object, owner: tuple[str, str] | None) -> list[str]:
    """The texts of the comments and answers (only the owner's, unless ``owner`` is None)."""
    texts = []
    for comment in comments if isinstance(comments, list) else []:
        if not isinstance(comment, dict):
            continue
        answers = comment.get("answers")
        for item in [comment, *(answers if isinstance(answers, list) else [])]:
            if not isinstance(item, dict) or not isinstance(item.get("text"), str):
                continue
            if owner is not None:
                who = _owner(item)
                if not ((owner[0] and who[0] == owner[0]) or (owner[1] and who[1] == owner[1])):
                    continue
            texts.append(item["text"])
    return texts


def load(path: Path, options: ReadOptions | None = None) -> Dataset:
    """Read the instaloader folder at ``path`` (and its sub-folders).

    As instaloader (v4.15, ``instaloader.py``/``structures.py``) writes it; the stem is
    ``{date_utc}_UTC`` by default:

    * the photo is ``<stem>.<ext>``, a sidecar's are ``<stem>_1.<ext>``, ``<stem>_2.<ext>``...
      (the post keeps its first photo). The extension comes from the server's Content-Type
      (``.jpg``, ``.webp``, ``.heic``), so what a file is comes from its first bytes. A video
      (``<stem>.mp4``) comes with its thumbnail under the same stem: the thumbnail is skipped
      and counted as a video, as the export reader skips videos;
    * the caption is in ``<stem>.txt``; when it was edited, the older ones were renamed
      ``<stem>_old_01.txt``... Those are not posts, and their superseded tags are not read;
    * the metadata is ``<stem>.json.xz`` (``<stem>.json`` with ``--no-compress-json``):
      ``{"node": {...}, "instaloader": {"node_type": "Post"}}``. Where it is, its caption
      (``node.edge_media_to_caption.edges[0].node.text``, or ``node.caption``) is the post's
      own, whatever ``--post-metadata-txt`` put in the ``.txt``; it is the only one of a
      ``--no-captions`` download. A corrupt one skips its post (counted in
      ``unreadable_files``);
    * with ``--comments``, ``<stem>_comments.json`` lists the comments, each with its answers:
      the hashtags of the post owner's own comments (``owner.id`` or ``owner.username`` as
      in the metadata's ``node.owner``) are the post's too, by default: many put their hashtags
      in a first comment. The ``comment_hashtags`` option takes everyone's, or none.

    Sub-folders (one per profile or hashtag) are walked too.
    """
    options = options or ReadOptions()
    if not path.is_dir():
        raise DatasetError(f"{path} is not a folder of images with .txt captions")
    builder = DatasetBuilder(path.resolve())
    for rel_dir, group in _groups(builder.root, builder):
        prefix = "" if rel_dir == "." else rel_dir + "/"
        for image in group["orphans"]:
            builder.counts["images_without_record"] += 1
            builder.note(f"{prefix}{image}: no caption file, skipped")
        for stem, post in sorted(group["posts"].items()):
            _load_post(builder, options, prefix, rel_dir, stem, post)
    return builder.finish(NAME, path)


def _load_post(
    builder: DatasetBuilder,
    options: ReadOptions,
    prefix: str,
    rel_dir: str,
    stem: str,
    post: _Post,
) -> None:
    where = f"{prefix}{post.caption or post.metadata or post.comments}"
    if post.caption is None and post.metadata is None:
        return  # comments of no post
    builder.counts["files"] += 1
    texts = []
    node = None
    if post.metadata is not None:
        if not builder.inside_root(builder.root / prefix / post.metadata):
            builder.counts["records"] += 1
            builder.skip("skipped_outside_root", f"{where} points outside the data set root")
            return
        try:
            node = _post_node(_read_json(builder.root / prefix / post.metadata))
        except _Corrupt as exc:
            builder.counts["records"] += 1
            builder.skip(
                "unreadable_files", f"{prefix}{post.metadata}: cannot read ({exc}); post skipped"
            )
            return
        if node is None and post.caption is None:
            builder.counts["files"] -= 1
            return  # a profile's or a story's metadata: not a post
        if node is not None:
            texts.append(_node_caption(node))
    if post.caption is not None and node is None:
        caption_path = builder.root / prefix / post.caption
        if not builder.inside_root(caption_path):
            builder.counts["records"] += 1
            builder.skip("skipped_outside_root", f"{where} points outside the data set root")
            return
        try:
            with caption_path.open("rb") as handle:
                texts.append(handle.read(MAX_CAPTION_BYTES).decode("utf-8", "replace"))
        except OSError as exc:
            builder.skip("unreadable_files", f"{where}: cannot read: {exc}")
            return
    if post.comments is not None and options.comment_hashtags != "none":
        texts += _comments(builder, options, prefix, post, node)
    for _ in range(post.thumbnails):
        builder.skip("skipped_video", f"{prefix}{stem}: a video's thumbnail, skipped")
    image = post.photos[min(post.photos)] if post.photos else None
    tags = [tag for text in texts for tag in extract_hashtags(text)]
    builder.add_record(prefix + stem, image, tags, where, image_base=rel_dir)


def _comments(
    builder: DatasetBuilder, options: ReadOptions, prefix: str, post: _Post, node: dict | None
) -> list[str]:
    assert post.comments is not None  # the caller checks
    shown = f"{prefix}{post.comments}"
    owner = None
    if options.comment_hashtags == "owner":
        owner = _owner(node)
        if owner == ("", ""):
            builder.note(f"{shown}: the post's owner is unknown (no metadata .json.xz); skipped")
            return []
    path = builder.root / prefix / post.comments
    if not builder.inside_root(path):
        builder.skip("skipped_outside_root", f"{shown} points outside the data set root")
        return []
    try:
        return _comment_texts(_read_json(path), owner)
    except _Corrupt as exc:
        builder.skip("unreadable_files", f"{shown}: cannot read ({exc})")
        return []


def write_sample(folder: Path, posts: Sequence[SamplePost]) -> Path:
    """Instaloader's names: ``<date>_UTC.jpg``, ``..._1.jpg``... for sidecars, ``.txt``."""
    folder.mkdir(parents=True, exist_ok=True)
    for number, post in enumerate(posts):
        stem = f"2023-01-{number + 1:02d}_12-00-00_UTC"
        (folder / f"{stem}.txt").write_text(post.caption, encoding="utf-8")
        if len(post.images) == 1:
            (folder / f"{stem}.jpg").write_bytes(post.images[0])
        for index, data in enumerate(post.images if len(post.images) > 1 else (), start=1):
            (folder / f"{stem}_{index}.jpg").write_bytes(data)
    return folder


FORMAT = DatasetFormat(
    name=NAME,
    title="instaloader download",
    summary="a folder of <stem>.jpg images with <stem>.txt captions (or <stem>.json.xz metadata)",
    description="`<stem>.jpg` (`.webp`, `.heic`; `<stem>_1.jpg` … for sidecars; told apart "
    "from videos by content, a video's thumbnail skipped) with the caption in `<stem>.txt` "
    "and/or `<stem>.json.xz` (`--no-captions` downloads); hashtags are read from the "
    "caption (not from edited-away `<stem>_old_01.txt`) and from the owner's comments in "
    "`<stem>_comments.json`",
    detect=detect,
    load=load,
    write_sample=write_sample,
    priority=90,
    options=("comment_hashtags",),
)
