"""Loading training data sets of (image, hashtags) posts.

Three layouts are supported:

``instagram2019``
    The original project's scrape: ``json_files/<search>.json`` (lists of post records) and
    ``data/<search>/<image_local_name>`` (images).
``instaloader``
    A folder written by instaloader: ``<stem>.jpg`` (``<stem>_1.jpg``, ``<stem>_2.jpg`` ... for
    multi-image posts) with the caption in ``<stem>.txt``; hashtags come from the caption.
``manifest``
    A ``.csv`` (columns ``image``, ``hashtags``, optional ``id``) or ``.jsonl`` file (objects
    with ``image``, ``hashtags``, optional ``id``); image paths relative to the file's folder.
    A row without an id is identified by its image path (rows naming the same image are
    merged into one post), or by its line number when it has no image.

Loading never decodes an image: it only checks that each referenced file is a regular file
inside the data set root. Anything unusable is skipped and counted in a :class:`DatasetReport`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from recommender.errors import DatasetError
from recommender.hashtags import TagStats, extract_hashtags, normalize_tag, normalize_tags

FORMATS = ("auto", "instagram2019", "instaloader", "manifest")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MANIFEST_NAMES = ("posts.csv", "posts.jsonl", "manifest.csv", "manifest.jsonl")
MAX_PROBLEMS = 20
MAX_CAPTION_BYTES = 1 << 20

COUNT_KEYS = (
    "files",
    "unreadable_files",
    "records",
    "posts",
    "posts_with_image",
    "posts_without_image",
    "posts_with_image_and_tags",
    "images_without_record",
    "records_without_image",
    "images_missing",
    "skipped_malformed",
    "skipped_outside_root",
    "skipped_missing_image",
    "skipped_no_hashtags",
    "skipped_duplicate_post",
    "tags_kept",
    "tags_dropped_invalid",
    "tags_duplicate",
    "distinct_hashtags",
    "post_hashtag_pairs",
)

LAYOUTS_HELP = (
    "Supported layouts: (1) instagram2019: a folder with json_files/<tag>.json and "
    "data/<tag>/<image>.jpg; (2) manifest: a .csv file with columns image,hashtags or a .jsonl "
    'file of {"image": ..., "hashtags": [...]} objects (or a folder holding exactly one of '
    + ", ".join(MANIFEST_NAMES)
    + "); (3) instaloader: a folder of <stem>.jpg images with <stem>.txt captions."
)

_SIDECAR = re.compile(r"^(.+)_(\d+)$")
_TAG_SEPARATORS = re.compile(r"[\s,#]+")


@dataclass(frozen=True)
class Post:
    """One training example.

    Attributes
    ----------
    post_id : str
        Unique within the data set.
    image : str or None
        POSIX path of the image relative to the data set root, or None if the post has no
        usable image (it still teaches which hashtags go together).
    hashtags : tuple of str
        Normalised, deduplicated, never empty.
    category : str or None
        The search hashtag the post was scraped under (instagram2019 layout), else None.
    """

    post_id: str
    image: str | None
    hashtags: tuple[str, ...]
    category: str | None = None


@dataclass
class DatasetReport:
    """What loading a data set found, kept and skipped.

    Attributes
    ----------
    counts : dict of str to int
        Every key of ``COUNT_KEYS``, e.g. ``posts``, ``posts_with_image``,
        ``skipped_outside_root``, ``tags_dropped_invalid``.
    problems : list of str
        The first 20 human-readable examples of what was skipped and why.
    """

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNT_KEYS, 0))
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """Return a few lines describing the data set, for the command line."""
        c = self.counts
        lines = [
            f"{c['posts']} posts from {c['records']} records in {c['files']} files: "
            f"{c['posts_with_image']} with an image ({c['posts_with_image_and_tags']} of them "
            f"with 2+ hashtags), {c['posts_without_image']} without",
            f"images: {c['images_without_record']} without a record, "
            f"{c['images_missing']} referenced but missing",
            f"hashtags: {c['distinct_hashtags']} distinct, {c['post_hashtag_pairs']} "
            f"post-hashtag pairs; dropped {c['tags_dropped_invalid']} invalid and "
            f"{c['tags_duplicate']} repeated tags",
        ]
        skipped = [
            f"{c[key]} {key.removeprefix('skipped_').replace('_', ' ')}"
            for key in COUNT_KEYS
            if key.startswith("skipped_") and c[key]
        ]
        if c["unreadable_files"]:
            skipped.append(f"{c['unreadable_files']} unreadable files")
        lines.append("skipped: " + (", ".join(skipped) if skipped else "nothing"))
        return "\n".join(lines)


@dataclass
class Dataset:
    """A loaded data set.

    Attributes
    ----------
    root : Path
        Resolved absolute root; every ``Post.image`` is relative to it.
    format : str
        ``"instagram2019"``, ``"instaloader"`` or ``"manifest"``.
    posts : list of Post
    report : DatasetReport
    """

    root: Path
    format: str
    posts: list[Post]
    report: DatasetReport

    def fingerprint(self) -> str:
        """Return a SHA-256 hex digest identifying this data set's content.

        It covers every post (id, image path, hashtags) and each image file's size and
        modification time, so replacing an image changes it without reading image contents.
        """
        digest = hashlib.sha256(f"{self.format}\n".encode())
        for post in sorted(self.posts, key=lambda p: p.post_id):
            entry: list[object] = [post.post_id, post.image, list(post.hashtags)]
            if post.image is not None:
                try:
                    stat = (self.root / post.image).stat()
                    entry += [stat.st_size, stat.st_mtime_ns]
                except OSError:
                    entry += [None, None]
            digest.update(json.dumps(entry, ensure_ascii=False).encode("utf-8", "replace"))
            digest.update(b"\n")
        return digest.hexdigest()

    def image_path(self, post: Post) -> Path:
        """Return the absolute path of a post's image.

        Raises
        ------
        DatasetError
            If the post has no image.
        """
        if post.image is None:
            raise DatasetError(f"post {post.post_id!r} has no image")
        return self.root / post.image


class _Builder:
    """Collects posts and counts while a loader walks a data set."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.report = DatasetReport()
        self.counts = self.report.counts
        self.tag_stats = TagStats()
        self.posts: dict[str, Post] = {}
        self.used_images: set[str] = set()

    def skip(self, key: str, message: str) -> None:
        self.counts[key] += 1
        self.note(message)

    def note(self, message: str) -> None:
        if len(self.report.problems) < MAX_PROBLEMS:
            self.report.problems.append(message)

    def tags(self, raw_tags: list[str], category: str | None = None) -> tuple[str, ...]:
        tags = normalize_tags(raw_tags, self.tag_stats)
        if category is not None and category not in tags:
            tags += (category,)
        return tags

    def inside_root(self, path: Path) -> bool:
        try:
            return path.resolve().is_relative_to(self.root)
        except (OSError, RuntimeError, ValueError):
            return False

    def check_image(self, given: str, base: str = "") -> tuple[str, str | None]:
        """Vet an image path from the data; return (status, normalised path).

        ``given`` is the path as written in the data, relative to ``base`` (itself relative to
        the root). Status is "ok", "missing" or "unsafe" (absolute, ``..``, outside the root;
        the path is None unless it only escapes through a symlink).
        """
        given = given.replace("\\", "/")
        if "\x00" in given:
            return "unsafe", None
        pure = PurePosixPath(given)
        if pure.is_absolute() or ".." in pure.parts:
            return "unsafe", None
        rel = posixpath.normpath(posixpath.join(base, given)) if base else posixpath.normpath(given)
        if rel in (".", "") or rel.startswith("../"):
            return "unsafe", None
        try:
            resolved = (self.root / rel).resolve()
            if not resolved.is_relative_to(self.root):
                return "unsafe", rel
            if not resolved.is_file():
                return "missing", rel
        except (OSError, RuntimeError, ValueError):
            return "missing", rel
        return "ok", rel

    def add_record(
        self,
        post_id: str,
        image: str | None,
        raw_tags: list[str],
        where: str,
        category: str | None = None,
        image_base: str = "",
    ) -> None:
        """Vet one record (a JSON record, caption or manifest line) and add it as a post."""
        self.counts["records"] += 1
        rel = None
        missing = False
        if image:
            status, rel = self.check_image(image, image_base)
            if rel is not None:
                self.used_images.add(rel)
            if status == "unsafe":
                self.skip(
                    "skipped_outside_root",
                    f"{where}: image path {image!r} is absolute or outside the data set root",
                )
                return
            if status == "missing":
                self.counts["images_missing"] += 1
                missing = True
                rel = None
        tags = self.tags(raw_tags, category)
        if not tags:
            if missing:
                self.skip(
                    "skipped_missing_image",
                    f"{where}: image {image!r} not found and no valid hashtags",
                )
            else:
                self.skip("skipped_no_hashtags", f"{where}: no valid hashtags")
            return
        self.add(Post(post_id, rel, tags, category), where)

    def add(self, post: Post, where: str) -> None:
        first = self.posts.get(post.post_id)
        if first is None:
            self.posts[post.post_id] = post
            return
        self.skip(
            "skipped_duplicate_post",
            f"{where}: post {post.post_id!r} seen before; hashtags merged into the first",
        )
        extra = tuple(tag for tag in post.hashtags if tag not in first.hashtags)
        self.posts[post.post_id] = Post(
            first.post_id,
            first.image if first.image is not None else post.image,
            first.hashtags + extra,
            first.category if first.category is not None else post.category,
        )

    def finish(self, fmt: str, shown_path: str | Path) -> Dataset:
        posts = list(self.posts.values())
        c = self.counts
        c["posts"] = len(posts)
        c["posts_with_image"] = sum(1 for p in posts if p.image is not None)
        c["posts_without_image"] = c["records_without_image"] = c["posts"] - c["posts_with_image"]
        c["posts_with_image_and_tags"] = sum(
            1 for p in posts if p.image is not None and len(p.hashtags) > 1
        )
        c["tags_kept"] = self.tag_stats.kept
        c["tags_dropped_invalid"] = self.tag_stats.dropped_invalid
        c["tags_duplicate"] = self.tag_stats.duplicates
        c["distinct_hashtags"] = len({tag for p in posts for tag in p.hashtags})
        c["post_hashtag_pairs"] = sum(len(p.hashtags) for p in posts)
        if self.tag_stats.examples_dropped:
            examples = ", ".join(repr(t) for t in self.tag_stats.examples_dropped)
            self.note(f"invalid hashtags dropped, e.g. {examples}")
        if not posts:
            raise DatasetError(
                f"no usable posts in {shown_path}: {self.report.summary()}\n"
                + "\n".join(self.report.problems[:5])
            )
        return Dataset(self.root, fmt, posts, self.report)


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _sorted_children(builder: _Builder, folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if _visible(p))
    except OSError as exc:
        builder.skip("unreadable_files", f"cannot list {folder}: {exc}")
        return []


def _load_instagram2019(builder: _Builder) -> None:
    root = builder.root
    json_dir = root / "json_files"
    for json_file in _sorted_children(builder, json_dir):
        if json_file.suffix.lower() != ".json":
            continue
        where = f"json_files/{json_file.name}"
        builder.counts["files"] += 1
        if not builder.inside_root(json_file):
            builder.skip("skipped_outside_root", f"{where} points outside the data set root")
            continue
        try:
            records = json.loads(json_file.read_bytes())
        except (OSError, ValueError, RecursionError) as exc:
            builder.skip("unreadable_files", f"{where}: cannot read: {exc}")
            continue
        if not isinstance(records, list):
            builder.skip("unreadable_files", f"{where}: not a JSON list of post records")
            continue
        search = json_file.stem
        category = normalize_tag(search)
        for index, record in enumerate(records):
            _instagram2019_record(builder, record, index, where, search, category)
    _instagram2019_orphan_images(builder)


def _instagram2019_record(
    builder: _Builder, record: object, index: int, file: str, search: str, category: str | None
) -> None:
    where = f"{file} record {index}"
    if not isinstance(record, dict):
        builder.counts["records"] += 1
        builder.skip("skipped_malformed", f"{where}: not a JSON object")
        return
    raw_tags = record.get("hashtags")
    link = record.get("post_link")
    name = record.get("image_local_name")
    problem = None
    if raw_tags is None:
        raw_tags = []
    elif not isinstance(raw_tags, list) or not all(isinstance(t, str) for t in raw_tags):
        problem = "hashtags is not a list of strings"
    if name is not None and not isinstance(name, str):
        problem = "image_local_name is not a string"
    if problem:
        builder.counts["records"] += 1
        builder.skip("skipped_malformed", f"{where}: {problem}")
        return
    if isinstance(link, str) and link.strip():
        post_id = link.strip()
    elif name:
        post_id = f"{search}/{name}"
    else:
        post_id = f"{search}/record-{index}"
    builder.add_record(post_id, name, raw_tags, where, category, f"data/{search}")


def _instagram2019_orphan_images(builder: _Builder) -> None:
    """Add the images no record points to, tagged with their folder's search hashtag."""
    data_dir = builder.root / "data"
    if not data_dir.is_dir():
        return
    for folder in _sorted_children(builder, data_dir):
        if not folder.is_dir():
            continue
        category = normalize_tag(folder.name)
        for image in _sorted_children(builder, folder):
            rel = f"data/{folder.name}/{image.name}"
            if image.suffix.lower() not in IMAGE_SUFFIXES or rel in builder.used_images:
                continue
            builder.counts["images_without_record"] += 1
            status, _ = builder.check_image(rel)
            if status == "unsafe":
                builder.skip("skipped_outside_root", f"{rel} points outside the data set root")
            elif status == "missing":
                builder.skip("skipped_missing_image", f"{rel} is not a regular file")
            elif category is None:
                builder.skip(
                    "skipped_no_hashtags",
                    f"{rel}: folder name {folder.name!r} is not a valid hashtag",
                )
            else:
                builder.add(Post(rel, rel, (category,), category), rel)


def _instaloader_groups(root: Path, builder: _Builder | None = None) -> Iterator[tuple[str, dict]]:
    """Per folder (relative POSIX path), caption stems with their images (name by number)."""

    def onerror(exc: OSError) -> None:
        if builder is not None:
            builder.skip("unreadable_files", f"cannot list {exc.filename}: {exc.strerror}")

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        names = [f for f in filenames if not f.startswith(".")]
        stems = {
            f[:-4]: {}
            for f in names
            if f.lower().endswith(".txt") and not f.lower().endswith("_location.txt")
        }
        images = [f for f in names if os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES]
        orphans = []
        for image in images:
            stem = os.path.splitext(image)[0]
            if stem in stems:
                stems[stem].setdefault(0, image)
                continue
            match = _SIDECAR.match(stem)
            if match and match.group(1) in stems:
                stems[match.group(1)].setdefault(int(match.group(2)), image)
            else:
                orphans.append(image)
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        yield rel_dir, {"captions": stems, "orphans": sorted(orphans)}


def _looks_like_instaloader(root: Path) -> bool:
    return any(
        any(images for images in group["captions"].values())
        for _, group in _instaloader_groups(root)
    )


def _load_instaloader(builder: _Builder) -> None:
    for rel_dir, group in _instaloader_groups(builder.root, builder):
        prefix = "" if rel_dir == "." else rel_dir + "/"
        for image in group["orphans"]:
            builder.counts["images_without_record"] += 1
            builder.note(f"{prefix}{image}: no caption file, skipped")
        for stem, images in sorted(group["captions"].items()):
            builder.counts["files"] += 1
            where = f"{prefix}{stem}.txt"
            caption_path = builder.root / where
            if not builder.inside_root(caption_path):
                builder.counts["records"] += 1
                builder.skip("skipped_outside_root", f"{where} points outside the data set root")
                continue
            try:
                with caption_path.open("rb") as handle:
                    caption = handle.read(MAX_CAPTION_BYTES).decode("utf-8", "replace")
            except OSError as exc:
                builder.skip("unreadable_files", f"{where}: cannot read: {exc}")
                continue
            image = images[min(images)] if images else None
            builder.add_record(
                prefix + stem, image, extract_hashtags(caption), where, image_base=rel_dir
            )


def _split_tags(text: str) -> list[str]:
    return [tag for tag in _TAG_SEPARATORS.split(text) if tag]


def _manifest_id(value: object, image: str | None, line: int) -> str | None:
    """The post id from an optional ``id`` field; None if the field has a wrong type."""
    if isinstance(value, bool) or not isinstance(value, (str, int, type(None))):
        return None
    text = "" if value is None else str(value).strip()
    return text or image or f"line {line}"


def _load_manifest_csv(builder: _Builder, manifest: Path) -> None:
    name = manifest.name
    with manifest.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise DatasetError(f"{manifest}: cannot read the CSV header: {exc}") from exc
        columns = [column.strip().lower() for column in header or []]
        if "image" not in columns or "hashtags" not in columns:
            raise DatasetError(
                f"{manifest}: the first line must be a header naming the columns 'image' and "
                f"'hashtags' (and optionally 'id'); found {columns}"
            )
        index = {
            column: columns.index(column)
            for column in ("image", "hashtags", "id")
            if column in columns
        }
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                builder.counts["records"] += 1
                builder.skip("skipped_malformed", f"{name} line {reader.line_num}: {exc}")
                continue
            where = f"{name} line {reader.line_num}"
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(columns):
                builder.counts["records"] += 1
                builder.skip(
                    "skipped_malformed",
                    f"{where}: {len(row)} fields, expected {len(columns)} "
                    "(quote the hashtags if they are separated by commas)",
                )
                continue
            image = row[index["image"]].strip() or None
            post_id = _manifest_id(
                row[index["id"]] if "id" in index else None, image, reader.line_num
            )
            raw_tags = _split_tags(row[index["hashtags"]])
            builder.add_record(post_id, image, raw_tags, where)


def _parse_jsonl_line(raw: bytes, line: int) -> tuple[str | None, str | None, list[str]] | str:
    """Return (post id, image, raw tags) from one JSONL line, or the reason it is malformed."""
    try:
        item = json.loads(raw.decode("utf-8-sig" if line == 1 else "utf-8"))
    except (ValueError, RecursionError) as exc:
        return f"not valid JSON ({exc})"
    if not isinstance(item, dict):
        return "not a JSON object"
    if "hashtags" not in item:
        return "no 'hashtags' field"
    tags = item["hashtags"]
    if isinstance(tags, str):
        tags = _split_tags(tags)
    elif not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        return "'hashtags' is neither a string nor a list of strings"
    image = item.get("image")
    if image is not None and not isinstance(image, str):
        return "'image' is not a string"
    image = (image or "").strip() or None
    post_id = _manifest_id(item.get("id"), image, line)
    if post_id is None:
        return "'id' is not a string or integer"
    return post_id, image, tags


def _load_manifest_jsonl(builder: _Builder, manifest: Path) -> None:
    name = manifest.name
    with manifest.open("rb") as handle:
        for line, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            where = f"{name} line {line}"
            parsed = _parse_jsonl_line(raw, line)
            if isinstance(parsed, str):
                builder.counts["records"] += 1
                builder.skip("skipped_malformed", f"{where}: {parsed}")
                continue
            post_id, image, tags = parsed
            builder.add_record(post_id, image, tags, where)


def _find_manifest(folder: Path) -> Path | None:
    found = [folder / name for name in MANIFEST_NAMES if (folder / name).is_file()]
    if len(found) > 1:
        raise DatasetError(
            f"{folder} holds several manifests ({', '.join(p.name for p in found)}); "
            "pass the path of the one to use"
        )
    return found[0] if found else None


def _is_manifest_file(path: Path) -> bool:
    return path.suffix.lower() in (".csv", ".jsonl")


def _detect(path: Path) -> str:
    if path.is_file():
        if _is_manifest_file(path):
            return "manifest"
        raise DatasetError(f"{path} is a file but not a .csv or .jsonl manifest. {LAYOUTS_HELP}")
    if (path / "json_files").is_dir():
        return "instagram2019"
    if _find_manifest(path) is not None:
        return "manifest"
    if _looks_like_instaloader(path):
        return "instaloader"
    raise DatasetError(f"{path} is not a data set of a known layout. {LAYOUTS_HELP}")


def load_dataset(path: str | Path, format: str = "auto") -> Dataset:
    """Load a data set of posts (images with hashtags).

    Parameters
    ----------
    path : str or Path
        The data set folder, or a ``.csv``/``.jsonl`` manifest file (its folder is the root).
    format : {"auto", "instagram2019", "instaloader", "manifest"}
        The layout; ``"auto"`` detects it: a ``json_files/`` folder means instagram2019; a
        ``.csv``/``.jsonl`` file, or a folder with exactly one of ``posts.csv``,
        ``posts.jsonl``, ``manifest.csv``, ``manifest.jsonl``, means manifest; images with
        ``.txt`` captions mean instaloader.

    Returns
    -------
    Dataset
        The posts and a report of what was skipped. Image paths are checked to be regular
        files inside the root (after following symlinks) but not decoded.

    Raises
    ------
    DatasetError
        If the path does not exist or cannot be read, the layout is unknown, a manifest's
        header is wrong, or no usable post remains.
    """
    if format not in FORMATS:
        raise DatasetError(f"unknown data set format {format!r}; use one of {FORMATS}")
    given = Path(path)
    try:
        if not given.exists():
            raise DatasetError(f"data set {given} does not exist. {LAYOUTS_HELP}")
        fmt = _detect(given) if format == "auto" else format
        if fmt == "manifest":
            manifest = given if given.is_file() else _find_manifest(given)
            if manifest is None or not _is_manifest_file(manifest):
                raise DatasetError(
                    f"{given} is not a .csv/.jsonl manifest nor a folder holding one of "
                    f"{', '.join(MANIFEST_NAMES)}"
                )
            builder = _Builder(manifest.absolute().parent.resolve())
            builder.counts["files"] += 1
            if manifest.suffix.lower() == ".csv":
                _load_manifest_csv(builder, manifest)
            else:
                _load_manifest_jsonl(builder, manifest)
        else:
            if not given.is_dir():
                raise DatasetError(f"{given} is not a folder. {LAYOUTS_HELP}")
            builder = _Builder(given.resolve())
            if fmt == "instagram2019":
                if not (builder.root / "json_files").is_dir():
                    raise DatasetError(f"{given} has no json_files/ folder. {LAYOUTS_HELP}")
                _load_instagram2019(builder)
            else:
                _load_instaloader(builder)
    except (OSError, RuntimeError, ValueError) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"cannot read data set {given}: {exc}") from exc
    return builder.finish(fmt, given)
