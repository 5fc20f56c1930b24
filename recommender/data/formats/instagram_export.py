"""Instagram's own "Download your information" export (JSON format), zipped or unpacked.

What a person has for their own account. The export (checked against public code that reads
it, see the tests) holds the posts in ``your_instagram_activity/content/posts_1.json``
(``posts_2.json``... in large exports; ``your_instagram_activity/media/`` in some, plain
``content/`` in older ones), each a list of entries::

    {"media": [{"uri": "media/posts/202301/17912345.jpg", "creation_timestamp": 1673000000,
                "title": "Sunday brunch #food #brunch"}], "title": "", ...}

* ``uri`` is relative to the export's top folder (the archive's root).
* A post with several media (a carousel) has its caption in the outer ``title``; a
  single-media post in the media's ``title``. The post keeps its first photo.
* Text is UTF-8 whose bytes were written as Latin-1 escapes (``"caf\\u00c3\\u00a9"`` is
  "café"); :func:`fix_text` undoes it.
* Videos (``.mp4``..., or no extension) are skipped and counted (``skipped_video``); a post
  with only videos is kept without image, for its hashtags.

A ``.zip`` is read in place: nothing is extracted, images are read from the archive when
they are embedded. Any member or ``uri`` whose path leaves the archive (absolute, ``..``:
a "zip slip") is refused and counted in ``skipped_outside_root``, like paths that leave a data
set folder. The zip may also hold the export inside one top folder.
"""

from __future__ import annotations

import json
import re
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from recommender.data.formats import DatasetFormat, SamplePost
from recommender.data.hashtags import extract_hashtags
from recommender.data.records import IMAGE_SUFFIXES, Dataset, DatasetBuilder, unsafe_member
from recommender.errors import DatasetError

NAME = "instagram_export"
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".webm", ".avi", ".3gp", ".mkv")
MAX_JSON_BYTES = 256 << 20

_POSTS = re.compile(
    r"^(?P<base>(?:(?!your_instagram_activity/)[^/]+/)?)"  # at most one top folder
    r"(?:your_instagram_activity/(?:content|media)/|content/)"
    r"posts_(?P<number>\d+)\.(?P<kind>json|html)$"
)


def fix_text(text: str) -> str:
    """Undo the export's mojibake: UTF-8 bytes written as Latin-1 characters.

    Text that is not such mojibake (plain ASCII, or already proper Unicode) is returned
    unchanged.
    """
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _posts_files(names: Sequence[str]) -> tuple[str, list[str], bool]:
    """(base, posts JSON files in order, whether only the HTML export was found)."""
    found: dict[str, list[tuple[int, str]]] = {}
    html = False
    for name in names:
        match = _POSTS.match(name)
        if not match:
            continue
        if match["kind"] == "html":
            html = True
            continue
        found.setdefault(match["base"], []).append((int(match["number"]), name))
    if not found:
        return "", [], html
    base = min(found, key=lambda b: (len(b), b))  # the top-most export wins
    return base, [name for _, name in sorted(found[base])], False


def _folder_names(path: Path) -> list[str]:
    """Candidate posts files of an unpacked export (or of one top folder inside the given
    folder), as archive-style relative names."""
    subs = ("your_instagram_activity/content", "your_instagram_activity/media", "content")

    def names_in(top: Path, prefix: str) -> list[str]:
        return [
            f"{prefix}{sub}/{f.name}"
            for sub in subs
            if (top / sub).is_dir()
            for f in (top / sub).iterdir()
            if f.is_file()
        ]

    names = names_in(path, "")
    if not names:
        for top in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
            names += names_in(top, top.name + "/")
    return names


def detect(path: Path) -> bool:
    if path.is_file():
        if path.suffix.lower() != ".zip" or not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            base, files, html = _posts_files(archive.namelist())
        return bool(files) or html
    if not path.is_dir():
        return False
    _base, files, html = _posts_files(_folder_names(path))
    return bool(files) or html


def _html_only(path: Path) -> DatasetError:
    return DatasetError(
        f"{path} is an Instagram export in HTML format; request the export again with "
        "Format: JSON (Accounts Center > Your information and permissions > Download)"
    )


def load(path: Path) -> Dataset:
    if path.is_file():
        return _load_zip(path)
    if not path.is_dir():
        raise DatasetError(f"{path} is neither an Instagram export .zip nor its folder")
    base, files, html = _posts_files(_folder_names(path))
    if html:
        raise _html_only(path)
    if not files:
        raise DatasetError(f"{path} has no your_instagram_activity/content/posts_1.json")
    root = (path / base).resolve() if base else path.resolve()
    builder = DatasetBuilder(root)
    for name in files:
        rel = name[len(base) :]
        builder.counts["files"] += 1
        if not builder.inside_root(root / rel):
            builder.skip("skipped_outside_root", f"{rel} points outside the export")
            continue
        try:
            data = (root / rel).read_bytes()
        except OSError as exc:
            builder.skip("unreadable_files", f"{rel}: cannot read: {exc}")
            continue
        _load_posts(builder, data, rel, "")
    return builder.finish(NAME, path)


def _load_zip(path: Path) -> Dataset:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"{path} is not a readable zip archive: {exc}") from exc
    with archive:
        builder = DatasetBuilder(path.resolve(), members=set())
        infos = {}
        for info in archive.infolist():
            if unsafe_member(info.filename):
                builder.skip(
                    "skipped_outside_root",
                    f"archive member {info.filename!r} leaves the archive (zip slip); refused",
                )
            elif not info.is_dir():
                infos[info.filename] = info
        builder.members.update(infos)
        base, files, html = _posts_files(list(infos))
        if html:
            raise _html_only(path)
        if not files:
            raise DatasetError(f"{path} has no your_instagram_activity/content/posts_1.json")
        for name in files:
            builder.counts["files"] += 1
            if infos[name].file_size > MAX_JSON_BYTES:
                builder.skip("unreadable_files", f"{name}: larger than {MAX_JSON_BYTES} bytes")
                continue
            try:
                data = archive.read(name)
            except (
                OSError,
                ValueError,
                RuntimeError,
                NotImplementedError,
                zipfile.BadZipFile,
                zlib.error,
            ) as exc:
                builder.skip("unreadable_files", f"{name}: cannot read from the archive: {exc}")
                continue
            _load_posts(builder, data, name, base)
    return builder.finish(NAME, path)


def _load_posts(builder: DatasetBuilder, data: bytes, shown: str, base: str) -> None:
    try:
        entries = json.loads(data)
    except (ValueError, RecursionError) as exc:
        builder.skip("unreadable_files", f"{shown}: not valid JSON ({exc})")
        return
    if not isinstance(entries, list):
        builder.skip("unreadable_files", f"{shown}: not a JSON list of posts")
        return
    for index, entry in enumerate(entries):
        _entry(builder, entry, f"{shown} entry {index}", base)


def _entry(builder: DatasetBuilder, entry: object, where: str, base: str) -> None:
    media = entry.get("media") if isinstance(entry, dict) else None
    if isinstance(media, dict):
        media = [media]
    if not isinstance(entry, dict) or not isinstance(media or [], list):
        builder.counts["records"] += 1
        builder.skip("skipped_malformed", f"{where}: not a post with a list of media")
        return
    media = [m for m in media or [] if isinstance(m, dict)]
    uris = [m["uri"] for m in media if isinstance(m.get("uri"), str) and m["uri"].strip()]
    if any(unsafe_member(uri) for uri in uris):
        builder.counts["records"] += 1
        builder.skip(
            "skipped_outside_root", f"{where}: a media uri leaves the export (zip slip); refused"
        )
        return
    photo = None
    for uri in uris:
        suffix = PurePosixPath(uri).suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            photo = photo or uri
        elif suffix in VIDEO_SUFFIXES or not suffix:
            builder.skip("skipped_video", f"{where}: {uri} is a video, skipped")
        else:
            builder.skip("skipped_unsupported_media", f"{where}: {uri} is not a photo, skipped")
    caption = _caption(entry, media)
    post_id = uris[0] if uris else where
    builder.add_record(post_id, photo, extract_hashtags(caption), where, image_base=base)


def _caption(entry: dict, media: list[dict]) -> str:
    """The outer title (carousels), else the first media title (single-media posts)."""
    for title in [entry.get("title"), *(m.get("title") for m in media)]:
        if isinstance(title, str) and title.strip():
            return fix_text(title)
    return ""


def _mojibake(text: str) -> str:
    return text.encode("utf-8").decode("latin-1")


def write_sample(folder: Path, posts: Sequence[SamplePost]) -> Path:
    """A zipped export: photos under ``media/posts/``, a video for a post without image,
    captions as mojibake, the posts split over ``posts_1.json`` and ``posts_2.json``."""
    path = folder / "instagram-sample-2023-01-31.zip"
    entries = []
    with zipfile.ZipFile(path, "w") as archive:
        for number, post in enumerate(posts):
            uris = [f"media/posts/202301/{post.key}_{i}.jpg" for i in range(len(post.images))]
            for uri, data in zip(uris, post.images, strict=True):
                archive.writestr(uri, data)
            if not uris:  # a reel: a video and its caption
                uris = [f"media/reels/202301/{post.key}.mp4"]
                archive.writestr(uris[0], b"\x00\x00\x00\x18ftypmp42")
            caption = _mojibake(post.caption)
            stamp = 1672570000 + 3600 * number
            media = [{"uri": uri, "creation_timestamp": stamp, "title": ""} for uri in uris]
            if len(media) == 1:
                entries.append({"media": [{**media[0], "title": caption}]})
            else:
                entries.append({"media": media, "title": caption, "creation_timestamp": stamp})
        half = len(entries) // 2
        for number, chunk in ((1, entries[:half]), (2, entries[half:])):
            archive.writestr(
                f"your_instagram_activity/content/posts_{number}.json", json.dumps(chunk)
            )
    return path


FORMAT = DatasetFormat(
    name=NAME,
    title='Instagram export ("Download your information", JSON)',
    summary="Instagram's own export of an account, a .zip or its folder, with "
    "your_instagram_activity/content/posts_1.json",
    description="the `.zip` as Instagram sends it (read in place) or its unpacked folder: "
    "`your_instagram_activity/content/posts_1.json` (`posts_2.json` …; older exports "
    "`content/posts_1.json`) listing each post's media `uri`s and caption; hashtags are read "
    "from the caption, a carousel keeps its first photo, videos are skipped and counted",
    detect=detect,
    load=load,
    write_sample=write_sample,
    priority=20,
)
