"""The original project's scrape: ``json_files/<search>.json`` and ``data/<search>/<image>``.

Each JSON file is a list of post records (``post_link``, ``image_local_name``, ``hashtags``)
scraped under one search hashtag, which every post of the file also gets as its category.
Images no record points to (photos by their content, whatever their names) are added with
their folder's search hashtag.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from recommender.data.bounded import json_list_items
from recommender.data.formats import DatasetFormat, SamplePost
from recommender.data.hashtags import normalize_tag
from recommender.data.records import Dataset, DatasetBuilder, Post
from recommender.errors import DatasetError
from recommender.filetypes import PHOTOS, sniff_file

NAME = "instagram2019"


def sorted_children(builder: DatasetBuilder, folder: Path) -> list[Path]:
    """The visible entries of a folder, sorted; an unreadable folder is counted, not raised."""
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        builder.skip("unreadable_files", f"cannot list {folder}: {exc}")
        return []


def detect(path: Path) -> bool:
    return path.is_dir() and (path / "json_files").is_dir()


def load(path: Path) -> Dataset:
    if not path.is_dir():
        raise DatasetError(f"{path} is not a folder with a json_files/ folder")
    builder = DatasetBuilder(path.resolve())
    if not (builder.root / "json_files").is_dir():
        raise DatasetError(f"{path} has no json_files/ folder")
    for json_file in sorted_children(builder, builder.root / "json_files"):
        if json_file.suffix.lower() != ".json":
            continue
        where = f"json_files/{json_file.name}"
        builder.counts["files"] += 1
        if not builder.inside_root(json_file):
            builder.skip("skipped_outside_root", f"{where} points outside the data set root")
            continue
        try:
            handle = json_file.open("rb")
        except OSError as exc:
            builder.skip("unreadable_files", f"{where}: cannot read: {exc}")
            continue
        search = json_file.stem
        category = normalize_tag(search)
        with handle:  # item by item: memory holds one record, whatever the file's size
            for index, record in json_list_items(builder, handle.read, where, "record"):
                _record(builder, record, index, where, search, category)
    _orphan_images(builder)
    return builder.finish(NAME, path)


def _record(
    builder: DatasetBuilder,
    record: object,
    index: int,
    file: str,
    search: str,
    category: str | None,
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


def _orphan_images(builder: DatasetBuilder) -> None:
    """Add the images no record points to, tagged with their folder's search hashtag."""
    data_dir = builder.root / "data"
    if not data_dir.is_dir():
        return
    for folder in sorted_children(builder, data_dir):
        if not folder.is_dir():
            continue
        category = normalize_tag(folder.name)
        for image in sorted_children(builder, folder):
            rel = f"data/{folder.name}/{image.name}"
            if rel in builder.used_images:
                continue
            # A photo by its content, whatever its name; a symlink is vetted, not read.
            if not image.is_symlink() and sniff_file(image) not in PHOTOS:
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


def write_sample(folder: Path, posts: Sequence[SamplePost]) -> Path:
    """One JSON file per first hashtag (the search), the first image of each post."""
    by_search: dict[str, list[dict]] = {}
    for post in posts:
        search = post.hashtags[0]
        name = f"{post.key}.jpg" if post.images else None
        if name:
            (folder / "data" / search).mkdir(parents=True, exist_ok=True)
            (folder / "data" / search / name).write_bytes(post.images[0])
        by_search.setdefault(search, []).append(
            {
                "post_link": f"https://www.instagram.com/p/{post.key}/",
                "image_local_name": name,
                "hashtags": [f"#{tag}" for tag in post.hashtags],
            }
        )
    (folder / "json_files").mkdir(parents=True, exist_ok=True)
    for search, records in by_search.items():
        text = json.dumps(records, ensure_ascii=False)
        (folder / "json_files" / f"{search}.json").write_text(text, encoding="utf-8")
    return folder


FORMAT = DatasetFormat(
    name=NAME,
    title="the original project's layout",
    summary="a folder with json_files/<tag>.json and data/<tag>/<image>.jpg",
    description="`json_files/<tag>.json` records and `data/<tag>/<file>.jpg` images",
    detect=detect,
    load=load,
    write_sample=write_sample,
    priority=10,
)
