"""A CSV or JSONL manifest: one line per post, image path and hashtags.

``.csv``: a header naming the columns ``image`` and ``hashtags`` (``#a #b`` or ``a, b``),
optionally ``id``. ``.jsonl``: one object per line with ``image``, ``hashtags`` (a list or a
string) and optionally ``id``. Image paths are relative to the manifest's folder, which is
the data set root; an empty image is a post without image. A row without an id is
identified by its image path (rows naming the same image are merged into one post), or by
its line number when it has no image.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from recommender import limits
from recommender.data.bounded import TOO_LONG, bounded_lines
from recommender.data.formats import DatasetFormat, SamplePost, one_manifest
from recommender.data.records import Dataset, DatasetBuilder
from recommender.errors import DatasetError

NAME = "manifest"
MANIFEST_NAMES = ("posts.csv", "posts.jsonl", "manifest.csv", "manifest.jsonl")
SUFFIXES = (".csv", ".jsonl")


def find_manifest(folder: Path, names: Sequence[str] = MANIFEST_NAMES) -> Path | None:
    """The one manifest of ``names`` in ``folder``, None if none; several is an error."""
    return one_manifest(folder, names)


def detect(path: Path) -> bool:
    if path.is_file():
        return path.suffix.lower() in SUFFIXES
    return path.is_dir() and find_manifest(path) is not None


def load(path: Path) -> Dataset:
    manifest = path if path.is_file() else find_manifest(path)
    if manifest is None or not manifest.is_file() or manifest.suffix.lower() not in SUFFIXES:
        raise DatasetError(
            f"{path} is not a .csv/.jsonl manifest nor a folder holding one of "
            f"{', '.join(MANIFEST_NAMES)}"
        )
    builder = DatasetBuilder(manifest.absolute().parent.resolve())
    builder.counts["files"] += 1
    if manifest.suffix.lower() == ".csv":
        _load_csv(builder, manifest)
    else:
        _load_jsonl(builder, manifest)
    return builder.finish(NAME, path)


def _load_csv(builder: DatasetBuilder, manifest: Path) -> None:
    name = manifest.name
    with manifest.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        reader = csv.reader(_lines_within_bound(builder, handle, name))
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
                builder.malformed(f"{name} line {reader.line_num}", str(exc))
                continue
            where = f"{name} line {reader.line_num}"
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(columns):
                builder.malformed(
                    where,
                    f"{len(row)} fields, expected {len(columns)} "
                    "(quote the hashtags if they are separated by commas)",
                )
                continue
            value = row[index["id"]] if "id" in index else None
            builder.add_fields(
                where, row[index["image"]], row[index["hashtags"]], value, f"line {reader.line_num}"
            )


def _lines_within_bound(builder: DatasetBuilder, handle, name: str):
    """The file's lines; one over the record bound is counted malformed and read as blank."""
    for line, text in enumerate(bounded_lines(handle), start=1):
        if text is TOO_LONG:
            builder.malformed(f"{name} line {line}", limits.message("the line", limits.RECORD))
            yield "\n"
        else:
            yield text


def _load_jsonl(builder: DatasetBuilder, manifest: Path) -> None:
    name = manifest.name
    with manifest.open("rb") as handle:
        for line, raw in enumerate(bounded_lines(handle), start=1):
            where = f"{name} line {line}"
            if not isinstance(raw, bytes):  # TOO_LONG
                builder.malformed(where, limits.message("the line", limits.RECORD))
                continue
            if not raw.strip():
                continue
            try:
                item = json.loads(raw.decode("utf-8-sig" if line == 1 else "utf-8"))
            except (ValueError, RecursionError) as exc:
                builder.malformed(where, f"not valid JSON ({exc})")
                continue
            if not isinstance(item, dict):
                builder.malformed(where, "not a JSON object")
            elif "hashtags" not in item:
                builder.malformed(where, "no 'hashtags' field")
            else:
                image, tags, value = item.get("image"), item["hashtags"], item.get("id")
                builder.add_fields(where, image, tags, value, f"line {line}")


def write_sample(folder: Path, posts: Sequence[SamplePost]) -> Path:
    """``posts.csv`` with ``#a #b`` hashtags and images under ``photos/``."""
    (folder / "photos").mkdir(parents=True, exist_ok=True)
    path = folder / "posts.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "image", "hashtags"])
        for post in posts:
            image = f"photos/{post.key}.jpg" if post.images else ""
            if image:
                (folder / image).write_bytes(post.images[0])
            writer.writerow([post.key, image, " ".join(f"#{t}" for t in post.hashtags)])
    return path


FORMAT = DatasetFormat(
    name=NAME,
    title="CSV or JSONL manifest",
    summary="a .csv file with columns image,hashtags or a .jsonl file of "
    '{"image": ..., "hashtags": [...]} objects (or a folder holding exactly one of '
    + ", ".join(MANIFEST_NAMES)
    + ")",
    description="`posts.csv` with columns `image,hashtags` (`#a #b` or `a, b`), or "
    '`posts.jsonl` lines `{"image": "photos/1.jpg", "hashtags": ["a", "b"]}`; image paths '
    "relative to the manifest, empty for a post without image",
    detect=detect,
    load=load,
    write_sample=write_sample,
    priority=40,
)
