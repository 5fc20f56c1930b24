"""A Parquet manifest, the layout for big data: columns ``image`` and ``hashtags``.

``image`` is a path relative to the manifest's folder (the data set root), a URI (``s3://``,
``hdfs://``, ``file:///``: taken as given, for Spark to read; the local engine reads paths
and ``file:`` URIs) or null for a post without image. ``hashtags`` is a list of strings (a
``#a #b`` string is accepted too); an optional ``id`` column names the posts. The manifest is
one ``.parquet`` file, or a folder of part files as Spark writes it (``posts.parquet/part-*``);
a data set folder holding ``posts.parquet`` or ``manifest.parquet`` is one too.

It is read by record batches within row groups, so memory holds one batch (at most
:data:`BATCH_ROWS` rows) besides the posts kept; :func:`write_manifest` writes one from any
iterable of rows, in row groups of a fixed size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from recommender.data.formats import DatasetFormat, SamplePost, one_manifest
from recommender.data.records import Dataset, DatasetBuilder
from recommender.errors import DatasetError

NAME = "parquet"
MANIFEST_NAMES = ("posts.parquet", "manifest.parquet")
SUFFIX = ".parquet"
BATCH_ROWS = 65_536
ROW_GROUP_ROWS = 100_000


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow comes with streamlit
        raise DatasetError(
            "reading a Parquet manifest needs pyarrow: pip install -r requirements.txt"
        ) from exc
    return pa, pq


def find_manifest(path: Path) -> Path | None:
    """The manifest a path names: itself (a ``.parquet`` file or folder) or one inside it."""
    if path.suffix.lower() == SUFFIX:
        return path
    if not path.is_dir():
        return None
    return one_manifest(path, MANIFEST_NAMES, "Parquet manifests", Path.exists)


def _part_files(manifest: Path) -> list[Path]:
    """The file itself, or the part files of a folder (Spark's ``_SUCCESS`` etc. left out)."""
    if manifest.is_file():
        return [manifest]
    return sorted(
        p
        for p in manifest.rglob("*")
        if p.is_file() and not p.name.startswith(("_", ".")) and not p.name.endswith(".crc")
    )


def detect(path: Path) -> bool:
    try:
        manifest = find_manifest(path)
    except DatasetError:
        return True  # several manifests: let load() say so
    return manifest is not None and manifest.exists()


def load(path: Path) -> Dataset:
    manifest = find_manifest(path)
    if manifest is None or not manifest.exists():
        raise DatasetError(
            f"{path} is not a .parquet manifest nor a folder holding one of "
            f"{', '.join(MANIFEST_NAMES)}"
        )
    _pa, pq = _pyarrow()
    builder = DatasetBuilder(manifest.absolute().parent.resolve())
    for part in _part_files(manifest):
        builder.counts["files"] += 1
        shown = part.relative_to(manifest.parent).as_posix()
        try:
            parquet = pq.ParquetFile(part)
        except (OSError, ValueError) as exc:
            builder.skip("unreadable_files", f"{shown}: not a readable Parquet file ({exc})")
            continue
        with parquet:
            columns = parquet.schema_arrow.names
            if "image" not in columns or "hashtags" not in columns:
                raise DatasetError(
                    f"{shown}: a Parquet manifest needs the columns 'image' and 'hashtags' "
                    f"(and optionally 'id'); found {columns}"
                )
            wanted = ["image", "hashtags"] + (["id"] if "id" in columns else [])
            try:
                _read_batches(builder, parquet.iter_batches(BATCH_ROWS, columns=wanted), shown)
            except (OSError, ValueError) as exc:
                builder.skip("unreadable_files", f"{shown}: cannot read: {exc}")
    return builder.finish(NAME, path)


def _read_batches(builder: DatasetBuilder, batches, shown: str) -> None:
    row = 0
    for batch in batches:
        data = batch.to_pydict()
        ids = data.get("id") or [None] * batch.num_rows
        for image, tags, value in zip(data["image"], data["hashtags"], ids, strict=True):
            row += 1
            where = f"{shown} row {row}"
            builder.add_fields(where, image, tags, value, where, drop_empty=True, allow_uri=True)


def write_manifest(
    path: str | Path,
    rows: Iterable[tuple[str | None, Sequence[str]]]
    | Iterable[tuple[str | None, Sequence[str], str]],
    row_group_rows: int = ROW_GROUP_ROWS,
) -> int:
    """Write ``(image, hashtags)`` or ``(image, hashtags, id)`` rows as a Parquet manifest.

    Rows are streamed: memory holds one row group. The file is written to a temporary
    sibling and renamed into place. Returns the number of rows written.
    """
    pa, pq = _pyarrow()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    schema = pa.schema(
        [("id", pa.string()), ("image", pa.string()), ("hashtags", pa.list_(pa.string()))]
    )
    count = 0
    buffer: dict[str, list] = {"id": [], "image": [], "hashtags": []}

    def flush(writer) -> None:
        if buffer["image"]:
            writer.write_table(pa.table(buffer, schema=schema))
            for column in buffer.values():
                column.clear()

    with pq.ParquetWriter(tmp, schema) as writer:
        for row in rows:
            image, tags = row[0], row[1]
            buffer["id"].append(row[2] if len(row) > 2 else None)
            buffer["image"].append(image)
            buffer["hashtags"].append(None if tags is None else list(tags))
            count += 1
            if len(buffer["image"]) >= row_group_rows:
                flush(writer)
        flush(writer)
    tmp.replace(path)
    return count


def write_sample(folder: Path, posts: Sequence[SamplePost]) -> Path:
    """``posts.parquet`` in row groups of two, with one image given as a ``file:`` URI."""
    (folder / "photos").mkdir(parents=True, exist_ok=True)
    rows = []
    for number, post in enumerate(posts):
        image = None
        if post.images:
            (folder / "photos" / f"{post.key}.jpg").write_bytes(post.images[0])
            image = f"photos/{post.key}.jpg"
            if number == 1:
                image = (folder / image).resolve().as_uri()
        rows.append((image, list(post.hashtags), post.key))
    path = folder / "posts.parquet"
    write_manifest(path, rows, row_group_rows=2)
    return path


FORMAT = DatasetFormat(
    name=NAME,
    title="Parquet manifest (big data)",
    summary="a .parquet file (or Spark's folder of part files) with columns image and "
    "hashtags (a list)",
    description="`posts.parquet` (a file, or Spark's folder of part files) with columns "
    "`image` (a path relative to the manifest, or a URI such as `s3://…`) and `hashtags` "
    "(a list of strings), optionally `id`; read by row groups",
    detect=detect,
    load=load,
    write_sample=write_sample,
    priority=30,
)
