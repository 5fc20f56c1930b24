"""The plain records every data set layout produces, and the builder that vets them.

:class:`Post` and :class:`Dataset` (with its :class:`DatasetReport`), and the
:class:`DatasetBuilder` each layout in :mod:`recommender.data.formats` feeds record by record
(image paths confined to the data set root, hashtags normalised, duplicates merged,
everything skipped counted). It imports no layout: :mod:`recommender.data.datasets` re-exports
it all and adds :func:`~recommender.data.datasets.load_dataset`, which asks the layouts' registry.

Loading never decodes an image: it only checks that each referenced file is a regular file
inside the data set root (or a member of the archive).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import posixpath
import re
import stat
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from recommender import limits
from recommender.data.hashtags import TagStats, normalize_tags
from recommender.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MAX_PROBLEMS = 20

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
    "skipped_duplicate_member",
    "skipped_video",
    "skipped_unsupported_media",
    "tags_kept",
    "tags_dropped_invalid",
    "tags_duplicate",
    "tags_over_limit",
    "distinct_hashtags",
    "post_hashtag_pairs",
)

# A URI as a Parquet manifest may hold it (s3://..., hdfs://..., file:/...): a scheme of two
# or more characters, so that a Windows drive letter ("C:/...") is not one.
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:(//|/)")
_TAG_SEPARATORS = re.compile(r"[\s,#]+")


def is_uri(image: str) -> bool:
    """Whether an image reference is a URI (``s3://...``, ``file:///...``) rather than a path."""
    return bool(_URI.match(image))


@dataclass(frozen=True)
class Post:
    """One training example.

    Attributes
    ----------
    post_id : str
        Unique within the data set.
    image : str or None
        POSIX path of the image relative to the data set root (a member name when the root
        is an archive), a URI (Parquet manifests only), or None if the post has no usable
        image (it still teaches which hashtags go together).
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
        ``skipped_outside_root``, ``skipped_video``, ``tags_dropped_invalid``.
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
            f"{c['tags_duplicate']} repeated tags"
            + (f", {c['tags_over_limit']} over the per-post limit" if c["tags_over_limit"] else ""),
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


ImageRef = Path | zipfile.Path | str
"""What :meth:`Dataset.image_path` returns; :func:`recommender.vision.images.read_bytes`
reads each."""


@dataclass
class Dataset:
    """A loaded data set.

    Attributes
    ----------
    root : Path
        Resolved absolute root: a folder, or a ``.zip`` archive read in place. Every
        ``Post.image`` that is not a URI is relative to it, unless ``parts`` is set.
    format : str
        The name of its layout in :mod:`recommender.data.formats`, e.g. ``"instagram2019"``.
    posts : list of Post
    report : DatasetReport
    parts : tuple of Path
        The parts of a data set given as several paths (a split Instagram export: zips or
        folders); empty otherwise. Then ``root`` is the first part and each image lives in
        the part ``part_of`` names: ``{image: (index in parts, path inside that part)}``.
    """

    root: Path
    format: str
    posts: list[Post]
    report: DatasetReport
    parts: tuple[Path, ...] = ()
    part_of: dict[str, tuple[int, str]] = field(default_factory=dict, repr=False)
    _archive: zipfile.ZipFile | None = field(default=None, repr=False, compare=False)
    _archives: dict[int, zipfile.ZipFile] = field(default_factory=dict, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @functools.cached_property
    def is_archive(self) -> bool:
        """Whether the root is an archive (a file) whose members are the images."""
        return not self.parts and self.root.is_file()

    def _part_zip(self, index: int) -> zipfile.ZipFile:
        with self._lock:
            if index not in self._archives:
                try:
                    self._archives[index] = zipfile.ZipFile(self.parts[index])
                except (OSError, zipfile.BadZipFile) as exc:
                    raise DatasetError(
                        f"cannot open the archive {self.parts[index]}: {exc}"
                    ) from exc
            return self._archives[index]

    def _in_part(self, image: str) -> Path | zipfile.Path:
        """Where an image of a data set in parts is: a file, or a member of a part's zip."""
        index, inner = self.part_of[image]
        part = self.parts[index]
        if part.is_file():
            return zipfile.Path(self._part_zip(index), inner)
        return part / inner

    def _zip(self) -> zipfile.ZipFile:
        with self._lock:
            if self._archive is None:
                try:
                    self._archive = zipfile.ZipFile(self.root)
                except (OSError, zipfile.BadZipFile) as exc:
                    raise DatasetError(f"cannot open the archive {self.root}: {exc}") from exc
            return self._archive

    def close(self) -> None:
        """Close the archive, if one was opened (it reopens on the next image read)."""
        with self._lock:
            if self._archive is not None:
                self._archive.close()
                self._archive = None
            for archive in self._archives.values():
                archive.close()
            self._archives.clear()

    def fingerprint(self) -> str:
        """Return a SHA-256 hex digest identifying this data set's content.

        It covers every post (id, image path, hashtags) and each image file's size and
        modification time (size and CRC-32 for an archive member), so replacing an image
        changes it without reading image contents.
        """
        digest = hashlib.sha256(f"{self.format}\n".encode())
        archive = self._zip() if self.is_archive else None
        for post in sorted(self.posts, key=lambda p: p.post_id):
            entry: list[object] = [post.post_id, post.image, list(post.hashtags)]
            if post.image is not None and post.image in self.part_of:
                entry += _part_stamp(self._in_part(post.image))
            elif post.image is not None:
                entry += _image_stamp(self.root, archive, post.image)
            digest.update(json.dumps(entry, ensure_ascii=False).encode("utf-8", "replace"))
            digest.update(b"\n")
        return digest.hexdigest()

    def image_path(self, post: Post) -> ImageRef:
        """Return what to read a post's image from.

        A :class:`~pathlib.Path` for a file (relative paths and ``file:`` URIs), a
        :class:`zipfile.Path` for a member of an archive, or the URI itself for other
        schemes (``s3://``...: the local engine cannot read those, Spark can). Every one of
        them can be passed to :func:`recommender.vision.images.read_bytes`.

        Raises
        ------
        DatasetError
            If the post has no image.
        """
        if post.image is None:
            raise DatasetError(f"post {post.post_id!r} has no image")
        if is_uri(post.image):
            return _uri_to_path(post.image) or post.image
        if post.image in self.part_of:
            return self._in_part(post.image)
        if self.is_archive:
            return zipfile.Path(self._zip(), post.image)
        return self.root / post.image

    def image_uri(self, post: Post) -> str:
        """Return a post's image as a URI (``file:///...`` for a file), e.g. for Spark.

        Raises
        ------
        DatasetError
            If the post has no image, or it is a member of an archive (unpack it first).
        """
        if post.image is None:
            raise DatasetError(f"post {post.post_id!r} has no image")
        if is_uri(post.image):
            return post.image
        if post.image in self.part_of:
            where = self._in_part(post.image)
            if isinstance(where, Path):
                return where.as_uri()
        if self.is_archive or post.image in self.part_of:
            raise DatasetError(
                f"{post.image} is inside the archive {self.root}; unpack it to give its "
                "images a URI"
            )
        return (self.root / post.image).as_uri()


def _uri_to_path(uri: str) -> Path | None:
    parts = urlsplit(uri)
    if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
        return None
    return Path(url2pathname(unquote(parts.path)))


def _image_stamp(root: Path, archive: zipfile.ZipFile | None, image: str) -> list[object]:
    try:
        if archive is not None and not is_uri(image):
            info = archive.getinfo(image)
            return [info.file_size, info.CRC]
        path = _uri_to_path(image) if is_uri(image) else root / image
        if path is None:
            return [None, None]
        stat = path.stat()
        return [stat.st_size, stat.st_mtime_ns]
    except (OSError, KeyError):
        return [None, None]


def _part_stamp(where: Path | zipfile.Path) -> list[object]:
    try:
        if isinstance(where, zipfile.Path):
            info = where.root.getinfo(where.at)
            return [info.file_size, info.CRC]
        stat = where.stat()
        return [stat.st_size, stat.st_mtime_ns]
    except (OSError, KeyError):
        return [None, None]


def split_tags(text: str) -> list[str]:
    """Split a hashtag field written as ``#a #b`` or ``a, b`` into raw tags."""
    return [tag for tag in _TAG_SEPARATORS.split(text) if tag]


def record_id(value: object, image: str | None, fallback: str) -> str | None:
    """The post id from an optional ``id`` field, else the image, else ``fallback``
    (e.g. ``line 7``).

    None if the field has a wrong type (neither a string nor an integer).
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, type(None))):
        return None
    text = "" if value is None else str(value).strip()
    return text or image or fallback


def parse_fields(
    image: object, tags: object, value: object, fallback: str, *, drop_empty: bool = False
) -> tuple[str, str | None, list[str]] | str:
    """(post id, image, raw tags) from a manifest record's fields, or why it is malformed.

    ``tags`` is a string (``#a #b`` or ``a, b``) or a list of strings; with ``drop_empty``
    (Parquet lists) null and empty entries are allowed and dropped. ``value`` is the
    optional id, ``fallback`` the id of a record with neither id nor image.
    """
    if isinstance(tags, str):
        raw_tags = split_tags(tags)
    elif isinstance(tags, list) and all(
        isinstance(tag, str) or (drop_empty and tag is None) for tag in tags
    ):
        raw_tags = [tag for tag in tags if tag] if drop_empty else tags
    else:
        return "'hashtags' is neither a string nor a list of strings"
    if image is not None and not isinstance(image, str):
        return "'image' is not a string"
    image = (image or "").strip() or None
    post_id = record_id(value, image, fallback)
    if post_id is None:
        return "'id' is not a string or integer"
    return post_id, image, raw_tags


def unsafe_member(name: str) -> bool:
    """Whether a relative path from the data (or an archive member name) leaves its root.

    Absolute paths, drive letters, ``..`` components and NUL characters leave it.
    """
    name = name.replace("\\", "/")
    pure = PurePosixPath(name)
    return (
        "\x00" in name
        or pure.is_absolute()
        or ".." in pure.parts
        or (len(name) > 1 and name[1] == ":")
    )


class DatasetBuilder:
    """Collects posts and counts while a format's loader walks a data set.

    ``members`` is given when the root is an archive: the set of its (safe) member names,
    which then replaces the file system checks.
    """

    def __init__(self, root: Path, members: set[str] | None = None) -> None:
        self.root = root
        self.members = members
        self.report = DatasetReport()
        self.counts = self.report.counts
        self.tag_stats = TagStats()
        self.posts: dict[str, Post] = {}
        self.used_images: set[str] = set()
        self._root_text = os.fspath(root)
        self._root_prefix = os.path.join(self._root_text, "")
        self._real_folders: dict[str, str] = {}
        self._tag_strings: dict[str, str] = {}
        self._max_records = limits.RECORDS.value()
        self._max_tags = limits.TAGS_PER_POST.value()

    def _check_records(self, where: str) -> None:
        """Stop the load once the data set holds more records than the bound."""
        if self.counts["records"] > self._max_records:
            raise limits.LimitExceeded(where, limits.RECORDS)

    def skip(self, key: str, message: str) -> None:
        self.counts[key] += 1
        if len(self.report.problems) < MAX_PROBLEMS:
            self.report.problems.append(message)
        if self.counts["records"] > self._max_records:
            self._check_records(message.partition(":")[0])

    def note(self, message: str) -> None:
        if len(self.report.problems) < MAX_PROBLEMS:
            self.report.problems.append(message)

    def tags(
        self, raw_tags: list[str], category: str | None = None, where: str = ""
    ) -> tuple[str, ...]:
        """The post's normalised hashtags, at most :data:`recommender.limits.TAGS_PER_POST`
        (the first ones; raw tags are read up to 1.25 times the bound, the rest counted)."""
        if not raw_tags and category is None:
            return ()
        cap = self._max_tags
        raw = raw_tags if len(raw_tags) <= cap + cap // 4 else raw_tags[: cap + cap // 4]
        tags = normalize_tags(raw, self.tag_stats)
        if len(tags) > cap or len(raw) < len(raw_tags):
            over = len(raw_tags) - len(raw) + max(len(tags) - cap, 0)
            if self.counts["tags_over_limit"] == 0:
                self.note(limits.message(where or "a post", limits.TAGS_PER_POST))
            self.counts["tags_over_limit"] += over
            self.tag_stats.kept -= max(len(tags) - cap, 0)
            tags = tags[:cap]
        if category is not None and category not in tags:
            tags += (category,)
        # One string object per distinct hashtag, shared by every post that carries it.
        return tuple(self._tag_strings.setdefault(tag, tag) for tag in tags)

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
        if unsafe_member(given):
            return "unsafe", None
        rel = posixpath.normpath(posixpath.join(base, given)) if base else posixpath.normpath(given)
        if rel in (".", "") or rel.startswith("../"):
            return "unsafe", None
        if self.members is not None:
            return ("ok" if rel in self.members else "missing"), rel
        return self._check_file(rel), rel

    def _check_file(self, rel: str) -> str:
        """ "ok", "missing" or "unsafe" for a normalised relative path, following symlinks.

        The real path of each folder is resolved once and cached, so a big manifest costs one
        ``lstat`` per image (a full resolve only for an image that is itself a symlink).
        """
        folder, _, name = rel.rpartition("/")
        try:
            real = self._real_folders.get(folder)
            if real is None:
                real = self._real_folders[folder] = os.path.realpath(
                    os.path.join(self._root_text, folder)
                )
            if not self._inside(real):
                return "unsafe"
            full = os.path.join(real, name)
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                full = os.path.realpath(full)
                if not self._inside(full):
                    return "unsafe"
                mode = os.stat(full).st_mode
        except (OSError, ValueError):
            return "missing"
        return "ok" if stat.S_ISREG(mode) else "missing"

    def _inside(self, real: str) -> bool:
        return real == self._root_text or real.startswith(self._root_prefix)

    def check_uri(self, uri: str) -> str:
        """Vet an image URI: "missing" for a ``file:`` URI naming no file, else "ok".

        A URI is where the data lives, as Spark reads it: it is taken as given, not
        confined to the data set root. Other schemes cannot be checked here.
        """
        path = _uri_to_path(uri)
        if path is None:
            return "ok"
        try:
            return "ok" if path.is_file() else "missing"
        except (OSError, ValueError):
            return "missing"

    def malformed(self, where: str, reason: str) -> None:
        """Count a record that cannot be read as a post, and say why."""
        self.counts["records"] += 1
        self.skip("skipped_malformed", f"{where}: {reason}")

    def add_fields(
        self,
        where: str,
        image: object,
        tags: object,
        value: object,
        fallback: str,
        *,
        drop_empty: bool = False,
        allow_uri: bool = False,
    ) -> None:
        """Vet a manifest record's raw fields (see :func:`parse_fields`) and add it as a
        post, or count it malformed."""
        parsed = parse_fields(image, tags, value, fallback, drop_empty=drop_empty)
        if isinstance(parsed, str):
            self.malformed(where, parsed)
            return
        post_id, image, raw_tags = parsed
        self.add_record(post_id, image, raw_tags, where, allow_uri=allow_uri)

    def add_record(
        self,
        post_id: str,
        image: str | None,
        raw_tags: list[str],
        where: str,
        category: str | None = None,
        image_base: str = "",
        allow_uri: bool = False,
    ) -> None:
        """Vet one record (a JSON record, caption or manifest line) and add it as a post."""
        self.counts["records"] += 1
        self._check_records(where)
        rel = None
        missing = False
        if image:
            if allow_uri and is_uri(image):
                status, rel = self.check_uri(image), image
            else:
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
        tags = self.tags(raw_tags, category, where)
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
