"""Reading the images on the executors: a path each executor opens itself, the bytes of a zip
member (only the driver can open those), or a URI read by Spark's ``binaryFile`` reader
(file://, hdfs://, s3a://: whatever the cluster's Hadoop reads) and joined back to its row.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote, urlsplit

from recommender.data.records import is_uri
from recommender.errors import RecommenderError


def _source_row(source) -> tuple[str | None, bytes | None]:
    """A path the executors open themselves, or (for a member of a zip archive, which only
    the driver can open) the file's bytes."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source), None
    from recommender.vision import images

    try:
        return None, images.read_bytes(source)
    except RecommenderError:  # the worker records it as unreadable, as the local engine does
        return f"{source}", None


# The parts of a Hadoop path string (``Path.toString``: scheme, authority, decoded path), as
# Spark's binaryFile reader gives them in its ``path`` column.
_HADOOP_PATH = r"^([A-Za-z][A-Za-z0-9+.-]*):(//([^/]*))?(/.*)$"
_GLOB = re.compile(r"([\\{}\[\]*?])")


def _uri_key(uri: str) -> tuple[str, str, str]:
    """(scheme, authority, decoded path) of a URI: what the join with binaryFile's ``path``
    column matches on (``file:///a%20b.jpg`` is listed as ``file:/a b.jpg``)."""
    parts = urlsplit(uri)
    return parts.scheme.lower(), parts.netloc, unquote(parts.path)


def _hadoop_path(uri: str) -> str:
    """The string Spark's ``load`` takes for ``uri``: decoded (it does not decode), with
    the glob characters escaped (it expands globs)."""
    scheme, authority, path = _uri_key(uri)
    text = f"{scheme}://{authority}{path}" if authority else f"{scheme}:{path}"
    return _GLOB.sub(r"\\\1", text)


def _existing(spark, uris: list[str]) -> list[str]:
    """The URIs whose file exists, asked of Hadoop's file systems on the driver (only when
    a load found some missing: one call per URI)."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    found = []
    for uri in uris:
        path = jvm.org.apache.hadoop.fs.Path(jvm.java.net.URI(uri))
        try:
            if path.getFileSystem(conf).isFile(path):
                found.append(uri)
        except Exception:  # noqa: BLE001 - no file system for it: the worker reports it
            pass
    return found


def _with_uri_contents(spark, frame, uris: list[str]):
    """``frame`` (``path``, ``content`` columns) with ``content`` filled, for the rows whose
    ``path`` is one of ``uris``, by Spark's ``binaryFile`` reader: file://, hdfs://,
    s3a://, whatever the cluster's Hadoop reads. A URI it cannot find keeps no content, so
    the worker records it as unreadable (no file at that URI), as for a missing path."""
    from pyspark.sql import functions as F
    from pyspark.sql.utils import AnalysisException

    wanted = sorted(set(uris))
    reader = spark.read.format("binaryFile")
    try:
        files = reader.load([_hadoop_path(u) for u in wanted])
        files.schema  # noqa: B018 - resolving the paths raises for a missing one
    except AnalysisException:
        present = _existing(spark, wanted)
        if not present:
            return frame
        files = reader.load([_hadoop_path(u) for u in present])
    names = spark.createDataFrame(
        [(u, *_uri_key(u)) for u in wanted], "uri string, scheme string, auth string, key string"
    )
    listed = files.select(
        F.lower(F.regexp_extract("path", _HADOOP_PATH, 1)).alias("f_scheme"),
        F.regexp_extract("path", _HADOOP_PATH, 3).alias("f_auth"),
        F.regexp_extract("path", _HADOOP_PATH, 4).alias("f_key"),
        F.col("content").alias("f_content"),
    )
    # An authority the URI leaves out (hdfs:///x) is the default file system's: match the
    # path alone then.
    matched = names.join(
        listed,
        (names.scheme == listed.f_scheme)
        & (names.key == listed.f_key)
        & ((names.auth == "") | (names.auth == listed.f_auth)),
    ).select(F.col("uri").alias("m_uri"), "f_content")
    joined = frame.join(matched, frame.path == matched.m_uri, "left")
    return joined.select(
        *[
            F.coalesce("f_content", "content").alias(c) if c == "content" else F.col(c)
            for c in frame.columns
        ]
    )


def _uris(rows: list[tuple], path_at: int) -> list[str]:
    """The paths of ``rows`` that are URIs Spark must read (not local paths)."""
    return [r[path_at] for r in rows if r[path_at] is not None and is_uri(r[path_at])]
