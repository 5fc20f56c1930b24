"""A folder written by instaloader: ``<stem>.jpg`` with its caption in ``<stem>.txt``.

Multi-image posts (sidecars) are ``<stem>_1.jpg``, ``<stem>_2.jpg``...; the post keeps its
first image. Hashtags come from the caption. Sub-folders (one per profile or hashtag) are
walked too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from recommender.data.formats import DatasetFormat, SamplePost
from recommender.data.hashtags import extract_hashtags
from recommender.data.records import IMAGE_SUFFIXES, Dataset, DatasetBuilder
from recommender.errors import DatasetError

NAME = "instaloader"
MAX_CAPTION_BYTES = 1 << 20

_SIDECAR = re.compile(r"^(.+)_(\d+)$")


def _groups(root: Path, builder: DatasetBuilder | None = None) -> Iterator[tuple[str, dict]]:
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


def detect(path: Path) -> bool:
    return path.is_dir() and any(
        any(images for images in group["captions"].values()) for _, group in _groups(path)
    )


def load(path: Path) -> Dataset:
    if not path.is_dir():
        raise DatasetError(f"{path} is not a folder of images with .txt captions")
    builder = DatasetBuilder(path.resolve())
    for rel_dir, group in _groups(builder.root, builder):
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
    return builder.finish(NAME, path)


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
    summary="a folder of <stem>.jpg images with <stem>.txt captions",
    description="`<stem>.jpg` (`<stem>_1.jpg` … for sidecars) with the caption in "
    "`<stem>.txt`; hashtags are read from the caption",
    detect=detect,
    load=load,
    write_sample=write_sample,
    priority=90,
)
