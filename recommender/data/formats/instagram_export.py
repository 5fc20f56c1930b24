"""Instagram's own "Download your information" export (JSON format), zipped or unpacked.

What a person has for their own account: :func:`load` says what the export holds and how
it is read, split exports (:func:`load_parts`) included.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from recommender.archives import MemberReader, read_member
from recommender.data.bounded import json_list_items
from recommender.data.formats import DatasetFormat, ReadOptions, SamplePost
from recommender.data.hashtags import extract_hashtags
from recommender.data.records import Dataset, DatasetBuilder, unsafe_member
from recommender.errors import DatasetError
from recommender.filetypes import HEAD_BYTES, PHOTOS, VIDEOS, sniff

NAME = "instagram_export"
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".webm", ".avi", ".3gp", ".mkv")
MAX_JSON_BYTES = 256 << 20

_POSTS = re.compile(
    r"^(?P<base>(?:(?!your_instagram_activity/)[^/]+/)?)"  # at most one top folder
    r"(?:your_instagram_activity/(?:content|media)/|content/)"
    r"(?:posts_(?P<number>\d+)|(?P<archived>archived_posts))\.(?P<kind>json|html)$"
)
_LEGACY = re.compile(r"^(?P<base>(?:[^/]+/)?)media\.json$")
# What else sits at the top of an export (of any year): marks a part holding only media.
_EXPORT_TOPS = (
    "your_instagram_activity",
    "personal_information",
    "account_information",
    "media",
    "content",
    "connections",
    "logged_information",
    "ads_information",
    "security_and_login_information",
    "preferences",
    "photos",
    "videos",
)
_LEGACY_SIBLINGS = ("profile.json", "comments.json", "connections.json", "likes.json")
PERSONAL_INFO = (
    "personal_information/personal_information/personal_information.json",  # 2025-
    "personal_information/personal_information.json",
    "account_information/personal_information.json",  # 2021
)
_ZIP_NAME = re.compile(r"^instagram-(?P<user>[A-Za-z0-9._]+)-\d{4}-\d{2}-\d{2}-\w+$")
_MOJIBAKE_RUN = re.compile(r"[\u0080-\u00ff]+")
_READ_ERRORS = (
    OSError,
    ValueError,
    RuntimeError,
    NotImplementedError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
)


def fix_text(text: str) -> str:
    """Undo the export's mojibake: UTF-8 bytes written as Latin-1 characters.

    Repaired run by run: each run of characters U+0080-U+00FF is decoded as UTF-8 where its
    bytes form UTF-8, and left as it is where they do not (a lone ``é`` is real Latin-1),
    so one broken sequence does not leave the rest of the caption garbled. Plain ASCII and
    proper Unicode are returned unchanged.
    """
    return _MOJIBAKE_RUN.sub(_fix_run, text)


def _fix_run(match: re.Match) -> str:
    decoded = match.group().encode("latin-1").decode("utf-8", "surrogateescape")
    # A byte that is not part of UTF-8 comes back as a lone surrogate: keep its character.
    return re.sub(r"[\udc80-\udcff]", lambda m: chr(ord(m.group()) - 0xDC00), decoded)


# --------------------------------------------------------------------------- one part
class _Outside(ValueError):
    """A file of an unpacked export that is a symlink out of it."""


class _Part:
    """One zip or folder of an export: its file names (relative to the export's top, i.e.
    below ``base``), and reading them within the archive or folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.archive: zipfile.ZipFile | None = None
        self.refused: list[str] = []  # zip members that leave the archive
        self.duplicates: list[str] = []  # names a zip holds twice (zipfile reads the last)
        self.infos: dict[str, zipfile.ZipInfo] = {}
        if path.is_file():
            try:
                self.archive = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise DatasetError(f"{path} is not a readable zip archive: {exc}") from exc
            for info in self.archive.infolist():
                if unsafe_member(info.filename):
                    self.refused.append(info.filename)
                elif not info.is_dir():
                    if info.filename in self.infos:
                        self.duplicates.append(info.filename)
                    self.infos[info.filename] = info
            names = list(self.infos)
        else:
            names = _folder_names(path)
        self.base, self.posts, self.html, self.legacy = _find(names)
        self._names = names

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()

    @property
    def is_part(self) -> bool:
        """Whether this looks like (a part of) an export, even one holding only media."""
        if self.posts or self.html or self.legacy:
            return True
        return any(name.split("/", 1)[0] in _EXPORT_TOPS for name in self._names) or any(
            name.count("/") >= 2 and name.split("/", 2)[1] in _EXPORT_TOPS for name in self._names
        )

    def media_base(self) -> str:
        """The top folder the export sits in ("" at the root), found from its files."""
        if self.posts or self.legacy:
            return self.base
        tops = {name.split("/", 1)[0] for name in self._names if "/" in name}
        if tops & set(_EXPORT_TOPS):
            return ""
        return f"{sorted(tops)[0]}/" if len(tops) == 1 else ""

    def files(self, base: str) -> Iterator[str]:
        """Every file of the part below ``base`` (all of a zip; a folder is walked)."""
        if self.archive is not None:
            yield from (n[len(base) :] for n in self.infos if n.startswith(base))
            return
        top = self.path / base
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(top).as_posix()
            for name in filenames:
                full = os.path.join(dirpath, name)
                if not name.startswith(".") and os.path.isfile(full) and not os.path.islink(full):
                    yield name if rel == "." else f"{rel}/{name}"

    def read(self, name: str) -> bytes:
        """A JSON file of the part (``name`` as found, base included), at most
        :data:`MAX_JSON_BYTES`; raises OSError-like errors the caller counts."""
        if self.archive is not None:
            if self.infos[name].file_size > MAX_JSON_BYTES:
                raise ValueError(f"larger than {MAX_JSON_BYTES} bytes")
            # Decompressed under the bounds: a member lying about its size stops there.
            return read_member(self.archive, self.infos[name], cap=MAX_JSON_BYTES, shown=name)
        path = self.path / name
        if not path.resolve().is_relative_to(self.path.resolve()):
            raise _Outside(f"{name} points outside the export")
        if path.stat().st_size > MAX_JSON_BYTES:
            raise ValueError(f"larger than {MAX_JSON_BYTES} bytes")
        return path.read_bytes()

    def stream(self, name: str):
        """A binary reader of a posts list (``read(n)``), for reading it item by item; the
        archive's member is decompressed under the bounds of :mod:`recommender.archives`."""
        if self.archive is not None:
            return MemberReader(self.archive, self.infos[name], shown=name)
        path = self.path / name
        if not path.resolve().is_relative_to(self.path.resolve()):
            raise _Outside(f"{name} points outside the export")
        return open(path, "rb")

    def head(self, name: str) -> bytes | None:
        """The first bytes of a media file (``name`` below the part's path)."""
        try:
            if self.archive is not None:  # bounded: a bzip2 bomb gives its head, not 1 GB
                with MemberReader(self.archive, name) as handle:
                    return handle.read(HEAD_BYTES)
            with open(self.path / name, "rb") as handle:
                return handle.read(HEAD_BYTES)
        except (*_READ_ERRORS, KeyError):
            return None

    def account(self) -> str | None:
        """The username this part belongs to, if it says (see the module's docstring)."""
        for rel in PERSONAL_INFO:
            name = self.base + rel
            if name not in self._names:
                continue
            try:
                info = json.loads(self.read(name))
                user = info["profile_user"][0]["string_map_data"]["Username"]["value"]
            except (*_READ_ERRORS, KeyError, IndexError, TypeError, RecursionError):
                continue
            if isinstance(user, str) and user.strip():
                return fix_text(user.strip()).lower()
        stem = self.path.name.removesuffix(".zip") if self.archive else self.path.name
        match = _ZIP_NAME.match(stem)
        return match["user"].lower() if match else None


def _folder_names(path: Path) -> list[str]:
    """The files that tell what an unpacked export is (posts lists, media.json, personal
    information, the top folders), at its root or in one top folder, as archive names."""
    subs = (
        "your_instagram_activity/content",
        "your_instagram_activity/media",
        "content",
        "personal_information",
        "personal_information/personal_information",
        "account_information",
    )

    def names_in(top: Path, prefix: str) -> list[str]:
        found = [
            f"{prefix}{sub}/{f.name}"
            for sub in subs
            if (top / sub).is_dir()
            for f in (top / sub).iterdir()
            if f.is_file()
        ]
        found += [
            f"{prefix}{f.name}" + ("/" if f.is_dir() else "")
            for f in top.iterdir()
            if f.name in _EXPORT_TOPS or f.name in ("media.json", *_LEGACY_SIBLINGS)
        ]
        return found

    try:
        names = names_in(path, "")
        if not names:
            for top in sorted(p for p in path.iterdir() if p.is_dir() and not p.name[0] == "."):
                names += names_in(top, top.name + "/")
    except OSError:
        return []
    return names


def _find(names: Sequence[str]) -> tuple[str, list[str], bool, str | None]:
    """(base, posts JSON files in order, whether only the HTML export was found, the
    media.json of a pre-2020 export) among a part's names."""
    found: dict[str, list[tuple[int, str]]] = {}
    html = False
    for name in names:
        match = _POSTS.match(name)
        if not match:
            continue
        if match["kind"] == "html":
            html = True
            continue
        number = int(match["number"]) if match["number"] else 1 << 30  # archived: last
        found.setdefault(match["base"], []).append((number, name))
    if not found:
        siblings = {n for n in names if n.rsplit("/", 1)[-1] in _LEGACY_SIBLINGS}
        for name in sorted(names, key=len):
            match = _LEGACY.match(name)
            if match and (
                any(s.startswith(match["base"]) for s in siblings)
                or any(
                    n.startswith((match["base"] + "photos/", match["base"] + "videos/"))
                    for n in names
                )
            ):
                return match["base"], [], False, name
        return "", [], html, None
    base = min(found, key=lambda b: (len(b), b))  # the top-most export wins
    return base, [name for _, name in sorted(found[base])], False, None


# --------------------------------------------------------------------------- detection
def _holds_parts(path: Path) -> list[Path]:
    """The export parts (zips, or folders named as Instagram names the zips) directly in a
    folder that is not one itself; none unless one of them holds the list of posts."""
    try:
        children = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    except OSError:
        return []
    found = []
    with_posts = False
    for child in children:
        is_zip = child.is_file() and child.suffix.lower() == ".zip" and zipfile.is_zipfile(child)
        if is_zip or (child.is_dir() and _ZIP_NAME.match(child.name)):
            try:
                part = _Part(child)
            except DatasetError:
                continue
            try:
                if part.is_part:
                    found.append(child)
                    with_posts = with_posts or bool(part.posts or part.legacy)
            finally:
                part.close()
    return found if with_posts else []


def detect(path: Path) -> bool:
    if path.is_file():
        if path.suffix.lower() != ".zip" or not zipfile.is_zipfile(path):
            return False
        part = _Part(path)
        part.close()
        return part.is_part  # one part of a split export alone: load says to pass them all
    if not path.is_dir():
        return False
    _base, files, html, legacy = _find(_folder_names(path))
    return bool(files or html or legacy) or bool(_holds_parts(path))


def _html_only(path: Path) -> DatasetError:
    return DatasetError(
        f"{path} is an Instagram export in HTML format; request the export again with "
        "Format: JSON (Accounts Center > Your information and permissions > Download)"
    )


# --------------------------------------------------------------------------- loading
def load(path: Path, options: ReadOptions | None = None) -> Dataset:
    """Read the export at ``path``: a ``.zip`` or the folder it unpacks to.

    What a person has for their own account. The export (checked against public code that reads
    it, see the tests) holds the posts in ``posts_1.json`` (``posts_2.json``... in large
    exports): ``your_instagram_activity/media/`` since 2025, ``your_instagram_activity/content/``
    before, plain ``content/`` in 2020-2023; each a list of entries::

        {"media": [{"uri": "media/posts/202301/17912345.jpg", "creation_timestamp": 1673000000,
                    "title": "Sunday brunch #food #brunch"}], "title": "", ...}

    * ``uri`` is relative to the export's top folder (the archive's root), in any folder
      (``media/posts/YYYYMM/``, flat ``media/posts/``, ``media/other/``), with or without an
      extension: what a file is comes from its first bytes, never its name (``.heic`` files that
      hold JPEG, videos without extension). Videos are skipped and counted (``skipped_video``);
      a post with only videos is kept without image, for its hashtags.
    * A post with several media (a carousel) has its caption in the outer ``title``; a
      single-media post in the media's ``title``. The post keeps its first photo.
    * Text is UTF-8 whose bytes were written as Latin-1 escapes (``"caf\\u00c3\\u00a9"`` is
      "café"); :func:`fix_text` undoes it run by run.
    * ``archived_posts.json`` (``{"ig_archived_post_media": [post...]}``, posts the owner hid)
      is read only with the ``archived_posts`` option.
    * Exports from before 2020 hold ``media.json`` at the top: ``{"photos": [{"path":
      "photos/201812/<hex>.jpg", "caption": ..., "taken_at": ...}], "videos": [...], ...}``.

    Split exports. Instagram sends a large account as several zips, and a post's JSON may sit in
    one part and its photos in another: every part is passed (``build part1.zip part2.zip``, or
    a folder holding the parts) and read as one export. A part's account is the username in its
    ``personal_information.json`` (``profile_user[0].string_map_data.Username.value``), else the
    one in its name as Instagram gives it (``instagram-<username>-<YYYY-MM-DD>-<id>.zip``); parts
    of two accounts are refused. Media a post names but no part holds are counted and named: "N
    photos are missing: is this one part of a split export? pass every part".

    A ``.zip`` is read in place: nothing is extracted, images are read from the archive when
    they are embedded. Any member or ``uri`` whose path leaves the archive (absolute, ``..``:
    a "zip slip") is refused and counted in ``skipped_outside_root``, like paths that leave a data
    set folder. The zip may also hold the export inside one top folder.
    """
    options = options or ReadOptions()
    if not path.exists() or not (path.is_file() or path.is_dir()):
        raise DatasetError(f"{path} is neither an Instagram export .zip nor its folder")
    if path.is_dir():
        _base, files, html, legacy = _find(_folder_names(path))
        if not (files or html or legacy):
            parts = _holds_parts(path)
            if parts:
                return load_parts(parts, options, shown=path)
    part = _Part(path)
    try:
        return _load_single(part, options)
    finally:
        part.close()


def _load_single(part: _Part, options: ReadOptions) -> Dataset:
    path = part.path
    if part.html and not part.posts:
        raise _html_only(path)
    if not part.posts and not part.legacy:
        raise _no_posts(path, part)
    if part.archive is not None:
        builder = DatasetBuilder(path.resolve(), members=set(part.infos))
        for name in part.refused:
            builder.skip(
                "skipped_outside_root",
                f"archive member {name!r} leaves the archive (zip slip); refused",
            )
        _count_duplicates(builder, part, "")
        base = part.base
    else:
        builder = DatasetBuilder((path / part.base).resolve() if part.base else path.resolve())
        base = ""

    def head(rel: str) -> bytes | None:  # rel: as check_image returns it
        return part.head(rel) if part.archive is not None else _file_head(builder.root / rel)

    reader = _Reader(builder, base, head, options)
    _read_lists(reader, part)
    return reader.finish(path)


def _count_duplicates(builder: DatasetBuilder, part: _Part, where: str) -> None:
    """Members of one name twice in a zip: only the last is read, the others never seen."""
    for name in part.duplicates:
        builder.skip(
            "skipped_duplicate_member",
            f"{where}archive member {name!r} appears more than once; the last copy is read",
        )


def _file_head(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read(HEAD_BYTES)
    except OSError:
        return None


def _no_posts(path: Path, part: _Part) -> DatasetError:
    if part.is_part:
        return DatasetError(
            f"{path} is a part of an Instagram export without the list of posts "
            "(your_instagram_activity/media/posts_1.json): pass every part of the split "
            "export together (build part1.zip part2.zip ...)"
        )
    return DatasetError(f"{path} has no your_instagram_activity/media/posts_1.json")


def _opened(reader, name: str, open_member):
    """``open_member(name)`` (a part's ``read`` or ``stream``), or None when the file is
    outside the export or cannot be read: skipped and counted."""
    try:
        return open_member(name)
    except _Outside as exc:
        reader.builder.skip("skipped_outside_root", str(exc))
    except (*_READ_ERRORS, KeyError) as exc:
        reader.builder.skip("unreadable_files", f"{name}: cannot read: {exc}")
    return None


def _read_lists(reader: _Reader, part: _Part) -> None:
    """Read the part's posts lists (or media.json) into ``reader``."""
    for name in part.posts if not part.legacy else [part.legacy]:
        if "archived_posts" in name and not reader.options.archived_posts:
            continue
        reader.builder.counts["files"] += 1
        if name != part.legacy and "archived_posts" not in name:
            # A posts list: read item by item, so memory holds one post (issue 25).
            stream = _opened(reader, name, part.stream)
            if stream is None:
                continue
            with stream:
                for index, entry in json_list_items(reader.builder, stream.read, name):
                    reader.entry(entry, f"{name} entry {index}")
            continue
        data = _opened(reader, name, part.read)
        if data is None:
            continue
        if name == part.legacy:
            reader.legacy(data, name)
        else:
            reader.posts(data, name)


def load_parts(
    paths: Sequence[Path], options: ReadOptions | None = None, shown: Path | None = None
) -> Dataset:
    """Several zips or folders as one export: the parts of a split export."""
    options = options or ReadOptions()
    parts: list[_Part] = []
    try:
        for path in paths:
            parts.append(_Part(path))
        for part in parts:
            if not part.is_part:
                raise DatasetError(f"{part.path} is not a part of an Instagram export")
            if part.html and not part.posts:
                raise _html_only(part.path)
        _same_account(parts)
        return _load_merged(parts, options, shown or paths[0])
    finally:
        for part in parts:
            part.close()


def _same_account(parts: list[_Part]) -> None:
    accounts = [(part.account(), part.path) for part in parts]
    known = [(user, path) for user, path in accounts if user]
    for user, path in known[1:]:
        if user != known[0][0]:
            raise DatasetError(
                f"{path.name} is an export of the account {user!r}, {known[0][1].name} of "
                f"{known[0][0]!r}: pass the parts of one account's export"
            )


def _load_merged(parts: list[_Part], options: ReadOptions, shown: Path) -> Dataset:
    # Every file of every part, by its name in the export (the first part holding it wins).
    where: dict[str, tuple[int, str]] = {}
    for index, part in enumerate(parts):
        base = part.media_base()
        for rel in part.files(base):
            where.setdefault(rel, (index, base + rel))
    with_posts = [part for part in parts if part.posts or part.legacy]
    if not with_posts:
        raise _no_posts(shown, parts[0])
    builder = DatasetBuilder(parts[0].path.resolve(), members=set(where))
    for part in parts:
        for name in part.refused:
            builder.skip(
                "skipped_outside_root",
                f"{part.path.name}: archive member {name!r} leaves the archive (zip slip); refused",
            )
        _count_duplicates(builder, part, f"{part.path.name}: ")

    def head(rel: str) -> bytes | None:
        index, inner = where[rel]
        return parts[index].head(inner)

    reader = _Reader(builder, "", head, options)
    seen: set[str] = set()
    for part in with_posts:
        names = [n for n in part.posts if n[len(part.base) :] not in seen]
        seen.update(n[len(part.base) :] for n in names)
        part.posts = names
        _read_lists(reader, part)
    dataset = reader.finish(shown)
    dataset.parts = tuple(part.path.resolve() for part in parts)
    dataset.part_of = {p.image: where[p.image] for p in dataset.posts if p.image in where}
    return dataset


class _Reader:
    """Turns posts lists into records: media vetted and told apart by content."""

    def __init__(self, builder: DatasetBuilder, base: str, head, options: ReadOptions):
        self.builder = builder
        self.base = base  # the export's top folder inside the archive ("" for a folder)
        self.head = head
        self.options = options
        self.missing = 0

    def posts(self, data: bytes, shown: str) -> None:
        try:
            entries = json.loads(data)
        except (ValueError, RecursionError) as exc:
            self.builder.skip("unreadable_files", f"{shown}: not valid JSON ({exc})")
            return
        if isinstance(entries, dict) and isinstance(entries.get("ig_archived_post_media"), list):
            entries = entries["ig_archived_post_media"]
        if not isinstance(entries, list):
            self.builder.skip("unreadable_files", f"{shown}: not a JSON list of posts")
            return
        for index, entry in enumerate(entries):
            self.entry(entry, f"{shown} entry {index}")

    def legacy(self, data: bytes, shown: str) -> None:
        """A pre-2020 ``media.json``: ``photos`` and ``videos`` lists of ``path``,
        ``caption``, ``taken_at``."""
        try:
            media = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise DatasetError(f"{shown}: not valid JSON ({exc})") from exc
        lists = {k: media.get(k) for k in ("photos", "videos")} if isinstance(media, dict) else {}
        if not any(isinstance(v, list) for v in lists.values()):
            found = (
                ", ".join(f"{k!r} ({type(v).__name__})" for k, v in list(media.items())[:8])
                if isinstance(media, dict)
                else f"a JSON {type(media).__name__}"
            )
            raise DatasetError(
                f"{shown} is not the pre-2020 export's media.json (a 'photos' list of path, "
                f"caption, taken_at): it holds {found or 'nothing'}; this export's layout is "
                "not known, request a new export (Format: JSON)"
            )
        for key, entries in lists.items():
            for index, item in enumerate(entries if isinstance(entries, list) else []):
                where = f"{shown} {key} {index}"
                if not isinstance(item, dict) or not isinstance(item.get("path"), str):
                    self.builder.malformed(where, "not an entry with a 'path'")
                    continue
                caption = item.get("caption")
                entry = {"media": [{"uri": item["path"]}], "title": caption}
                self.entry(entry, where)

    def entry(self, entry: object, where: str) -> None:
        builder = self.builder
        media = entry.get("media") if isinstance(entry, dict) else None
        if isinstance(media, dict):
            media = [media]
        if not isinstance(entry, dict) or not isinstance(media or [], list):
            builder.malformed(where, "not a post with a list of media")
            return
        media = [m for m in media or [] if isinstance(m, dict)]
        uris = [m["uri"] for m in media if isinstance(m.get("uri"), str) and m["uri"].strip()]
        if any(unsafe_member(uri) for uri in uris):
            builder.counts["records"] += 1
            builder.skip(
                "skipped_outside_root",
                f"{where}: a media uri leaves the export (zip slip); refused",
            )
            return
        photo = missing = None
        for uri in uris:
            status, rel = builder.check_image(uri, self.base)
            if status != "ok" or rel is None:
                if status == "missing" and not uri.lower().endswith(VIDEO_SUFFIXES):
                    missing = missing or uri
                    self.missing += 1
                elif status == "unsafe":
                    photo = photo or uri  # add_record refuses and counts it
                continue
            head = self.head(rel)
            kind = sniff(head) if head is not None else None
            if kind in PHOTOS or head is None:  # unreadable: the image reader says why
                photo = photo or uri
            elif kind in VIDEOS:
                builder.skip("skipped_video", f"{where}: {uri} is a video, skipped")
            else:
                builder.skip("skipped_unsupported_media", f"{where}: {uri} is not a photo, skipped")
        caption = _caption(entry, media)
        post_id = uris[0] if uris else where
        builder.add_record(
            post_id, photo or missing, extract_hashtags(caption), where, image_base=self.base
        )

    def finish(self, shown: Path) -> Dataset:
        if self.missing:
            message = (
                f"{self.missing} photos are missing: is this one part of a split export? "
                "pass every part"
            )
            self.builder.report.problems.insert(0, message)
            del self.builder.report.problems[20:]
        return self.builder.finish(NAME, shown)


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
    entries: list[dict[str, object]] = []
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
    summary="Instagram's own export of an account, a .zip or its folder (or every part of "
    "a split export), with your_instagram_activity/media/posts_1.json",
    description="the `.zip` as Instagram sends it (read in place) or its unpacked folder; "
    "a split export as all its parts (`build part1.zip part2.zip`) or a folder holding "
    "them: `your_instagram_activity/media/posts_1.json` (`posts_2.json` …; "
    "`your_instagram_activity/content/` or `content/` in older exports, `media.json` "
    "with `photos[]` before 2020) listing each post's media `uri`s and caption; hashtags "
    "are read from the caption, a carousel keeps its first photo, photos (JPEG, WebP, "
    "HEIC...) and videos are told apart by content, videos are skipped and counted",
    detect=detect,
    load=load,
    write_sample=write_sample,
    priority=20,
    options=("archived_posts",),
    load_parts=load_parts,
)
