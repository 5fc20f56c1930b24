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

A small file can hold huge columns, so the reader is bounded by design (:func:`load`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from recommender import limits
from recommender.data.formats import DatasetFormat, SamplePost, one_manifest
from recommender.data.records import Dataset, DatasetBuilder
from recommender.errors import DatasetError

NAME = "parquet"
MANIFEST_NAMES = ("posts.parquet", "manifest.parquet")
SUFFIX = ".parquet"
BATCH_ROWS = 65_536
SLICE_BYTES = 32 << 20
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
    """Read the manifest at ``path`` (a ``.parquet`` file or part folder, or a data set
    folder holding one), a record batch at a time.

    A small file can hold huge columns (a long string stored once in a dictionary page and
    repeated in every row, long runs of the same hashtag), so the reader is bounded by design:
    string columns stay dictionary-encoded in Arrow; a row group whose column chunk decompresses
    past :data:`recommender.limits.MEMBER`, or whose hashtag lists hold more entries than that
    bound allows (4 bytes each), is skipped with one line; hashtag lists are cut to 1.25 times
    :data:`recommender.limits.TAGS_PER_POST` before they become Python objects; a row over
    :data:`recommender.limits.RECORD` is counted malformed; Python objects are made a slice of
    at most :data:`SLICE_BYTES` at a time.
    """
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
            schema = pq.read_schema(part)
            textual = [
                name
                for name in _text_leaves(schema)
                if name.split(".")[0] in ("image", "hashtags", "id")
            ]
            parquet = pq.ParquetFile(part, read_dictionary=textual)
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
            row = 0
            for group in range(parquet.metadata.num_row_groups):
                rows = parquet.metadata.row_group(group).num_rows
                problem = _row_group_problem(parquet.metadata.row_group(group), wanted)
                if problem:
                    builder.counts["records"] += rows
                    builder.counts["skipped_malformed"] += rows
                    builder.note(limits.message(f"{shown} row group {group}", *problem))
                    row += rows
                    continue
                try:
                    batches = parquet.iter_batches(BATCH_ROWS, row_groups=[group], columns=wanted)
                    row = _read_batches(builder, batches, shown, row)
                except (OSError, ValueError) as exc:
                    builder.skip("unreadable_files", f"{shown}: cannot read: {exc}")
                    break
    return builder.finish(NAME, path)


def _text_leaves(schema):
    """The dotted path of every string or binary leaf, lists included."""
    pa, _pq = _pyarrow()
    for field in schema:
        path, kind = field.name, field.type
        while pa.types.is_list(kind) or pa.types.is_large_list(kind):
            path, kind = path + ".list." + kind.value_field.name, kind.value_type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind):
            yield path


def _row_group_problem(meta, wanted: list[str]) -> tuple[limits.Bound, str] | None:
    """Why a row group must not be read, from its metadata alone (bound, what was found)."""
    bound = limits.MEMBER.value()
    for i in range(meta.num_columns):
        chunk = meta.column(i)
        column = chunk.path_in_schema.split(".")[0]
        if column not in wanted:
            continue
        if chunk.total_uncompressed_size > bound:
            found = f"column {column!r} decompresses to {chunk.total_uncompressed_size:,} bytes"
            return limits.MEMBER, found
        if column == "hashtags" and 4 * chunk.num_values > bound:
            return limits.MEMBER, f"its hashtag lists hold {chunk.num_values:,} entries"
    return None


def _value_bytes(array) -> np.ndarray:
    """Bytes each value of a string column (dictionary-encoded or not) takes; 8 otherwise."""
    pa, _pq = _pyarrow()
    import pyarrow.compute as pc

    if isinstance(array, pa.DictionaryArray):
        lengths = pc.binary_length(array.dictionary).take(array.indices)
    elif pa.types.is_string(array.type) or pa.types.is_binary(array.type):
        lengths = pc.binary_length(array)
    else:
        return np.full(len(array), 8, dtype=np.int64)
    return np.asarray(lengths.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)


def _cut_lists(array, keep: int):
    """A list column cut to ``keep`` entries per row, and the bytes of each row's entries."""
    pa, _pq = _pyarrow()
    import pyarrow.compute as pc

    if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)):
        return array, _value_bytes(array)
    cut = pc.list_slice(array, 0, keep)
    if isinstance(cut, pa.ChunkedArray):
        cut = cut.combine_chunks()
    sizes = np.concatenate([[0], np.cumsum(_value_bytes(cut.flatten()) + 8)])
    offsets = np.asarray(cut.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    offsets = offsets - offsets[0]
    return cut, sizes[offsets[1:]] - sizes[offsets[:-1]]


def _plain(array):
    """A dictionary-encoded column (or list of them) decoded, for a fast ``to_pylist``: a
    slice of rows within the bounds, so decoding it costs what its Python objects will."""
    pa, _pq = _pyarrow()
    kind = array.type
    if pa.types.is_dictionary(kind):
        return array.cast(kind.value_type)
    if (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and pa.types.is_dictionary(
        kind.value_type
    ):
        return array.cast(pa.list_(kind.value_type.value_type))
    return array


def _read_batches(builder: DatasetBuilder, batches, shown: str, row: int = 0) -> int:
    """Add each row of the batches; the number of the last row read."""
    pa, _pq = _pyarrow()
    import pyarrow.compute as pc

    record_bound = limits.RECORD.value()
    cap = limits.TAGS_PER_POST.value()
    keep = cap + cap // 4
    for batch in batches:
        full = batch.column("hashtags")
        tags, sizes = _cut_lists(full, keep)
        cut = np.zeros(batch.num_rows, dtype=np.int64)
        if tags is not full:  # a list column: count what the cut left out
            lengths = pc.list_value_length(full).fill_null(0).to_numpy(zero_copy_only=False)
            cut = np.maximum(np.asarray(lengths, dtype=np.int64) - keep, 0)
        sizes = sizes + _value_bytes(batch.column("image"))
        has_id = "id" in batch.schema.names
        if has_id:
            sizes = sizes + _value_bytes(batch.column("id"))
        over = sizes > record_bound
        for i in np.flatnonzero(over):  # never made into Python objects
            builder.malformed(
                f"{shown} row {row + i + 1}", limits.message("the row", limits.RECORD)
            )
        good = np.flatnonzero(~over)
        image_column = batch.column("image")
        id_column = batch.column("id") if has_id else None
        start = 0
        while start < len(good):
            # Python objects for a slice of rows at a time, at most SLICE_BYTES of text.
            fits = int((np.cumsum(sizes[good[start:]]) <= SLICE_BYTES).sum())
            take = pa.array(good[start : start + max(fits, 1)])
            images = _plain(image_column.take(take)).to_pylist()
            lists = _plain(tags.take(take)).to_pylist()
            ids = (
                _plain(id_column.take(take)).to_pylist()
                if id_column is not None
                else [None] * len(take)
            )
            for i, image, raw, value in zip(take.to_pylist(), images, lists, ids, strict=True):
                where = f"{shown} row {row + i + 1}"
                if cut[i]:
                    builder.counts["tags_over_limit"] += int(cut[i])
                builder.add_fields(where, image, raw, value, where, drop_empty=True, allow_uri=True)
            start += len(take)
        row += batch.num_rows
    return row


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
