"""The Spark engine: the build's embed and ALS stages on Apache Spark (pyspark >= 3.5).

``python -m recommender build DATA --engine spark [--spark-master URL]`` runs the two stages
that grow with the data on a Spark cluster (or ``local[*]``); everything else runs on the
driver exactly as in the local engine, so both engines write the same model folder.

Which stage runs where
----------------------
read (driver)
    The data set is read into the posts table on the driver (:func:`recommender.data.datasets
    .load_dataset`), as in the local engine.
embed (executors)
    :meth:`SparkEngine.embed`: a DataFrame of the images, one row per image
    ``(shard, position, path)``, partitioned so that partition ``i`` holds shard ``i``,
    goes through ``mapInPandas``. Each task runs the local engine's shard step
    (:func:`recommender.features.pipeline.embed_shard`: read, hash, decode, resize, thumbnail,
    embed, then write the shard atomically into the store) on its executor, so the shards
    are the local engine's, in the same store, and a killed build resumes at the first
    missing shard. The store must be a folder every executor reaches. The backbone is
    loaded once per Python worker (worker reuse is on, and
    :func:`~recommender.vision.backbones.get_backbone` caches it in the process), with one
    TensorFlow thread per task CPU (``spark.task.cpus``), so ``local[2]`` runs two workers
    without oversubscribing the cores. An image a worker cannot use is recorded as
    unreadable with its message, never failing the task: the local engine's rule, and an
    image that breaks the worker in some other way is isolated and recorded the same way.
fit (executors, then driver)
    The posts x hashtags matrix is built and weighted (BM25) on the driver, exactly as the
    local engine does (:func:`recommender.fit.als.weight_matrix`), then factorised by
    ``pyspark.ml.recommendation.ALS(implicitPrefs=True)`` (:func:`fit_als`). The factors
    are collected to the driver as float32 arrays aligned with the matrix rows and columns.
profiles, image prior, index, write (driver)
    On the driver, streaming over the shards, exactly as in the local engine
    (:func:`recommender.fit.training.fit_model`). Why not Spark aggregations: what they build is
    small and the driver must hold it anyway. The prior accumulates X^T X (1280 x 1280) and
    X^T Y (1280 x at most ``PRIOR_MAX_TAGS`` = 20k hashtags, 100 MB) in float32 chunk by
    chunk from the memory-mapped float16 features; the profiles are one sparse product of
    the posts x hashtags matrix (about 12 bytes a pair: 400 MB at 3M posts). As Spark
    aggregations the same two matrices would cost a shuffle of every feature vector
    (2.5 kB an image) to save the driver one sequential read of the shards. The driver's
    memory is what the local engine needs after embedding: the features memory-mapped
    (paged in, not held), the matrix, the factors (64 float32 a post and a hashtag) and the
    prior's accumulators.

The same parameters on both solvers
-----------------------------------
``ALSParams`` drives both. ``factors`` -> ``rank``, ``iterations`` -> ``maxIter``,
``random_state`` -> ``seed``; the matrix is weighted identically before either solver.

* **Confidence.** ``implicit`` gives an observed pair the confidence ``alpha * value`` (its
  preference is 1 for every stored value); Spark gives ``1 + alpha_spark * |rating|`` with
  preference 1 only for ``rating > 0``. This engine passes Spark ``alpha = 1`` and the
  ratings ``alpha * value - 1``, so Spark's confidence is exactly ``alpha * value`` for
  every pair with ``alpha * value > 1``. Pairs with ``alpha * value <= 1`` (BM25 values
  below ``1 / alpha``: 0.05 by default) get a rating of ``1e-6``: preference 1, confidence
  1 instead of implicit's ``alpha * value``.
* **Regularisation.** ``implicit`` adds ``regularization * I`` to every row's system;
  Spark's ALS-WR adds ``regParam * n_u * I``, ``n_u`` the row's number of positive ratings.
  No single ``regParam`` makes the two equal for every row; this engine passes
  ``regParam = regularization / mean(n_u)`` over the posts (the rows the recommendations
  come from), so a post with the average number of hashtags gets the same penalty.
  :data:`REG_SCALING` names the mapping and the benchmark measures it.
* **Solver.** ``implicit`` runs 3 conjugate-gradient steps per row and iteration from a
  random start; Spark solves each row exactly (Cholesky). The factors differ; the
  evaluation's recall@10 is what is compared (see benchmarks/README.md).

The session
-----------
:func:`get_session` starts (or reuses) a session with quiet logs: the JVM's own output goes
to a log file (:data:`LOG_NAME` in the temporary folder) that error messages point to, and
Spark logs only errors. A missing pyspark, a missing Java or an unreachable master raise a
one-line :class:`SparkError`. pyspark is imported only inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

from recommender.data.records import is_uri
from recommender.errors import RecommenderError
from recommender.features.pipeline import Extraction
from recommender.fit.als import ALSParams, FitError, weight_matrix

DEFAULT_MASTER = "local[*]"
LOCAL_DRIVER_MEMORY = "4g"
INSTALL_HINT = "pyspark is not installed: pip install -r requirements-spark.txt"
LOG_NAME = "hashtag-recommender-spark.log"
REG_SCALING = "regularization / mean hashtags per post"
# Ratings Spark receives for pairs whose implicit confidence alpha * value is <= 1.
MIN_RATING = 1e-6
_MASTER_TIMEOUT = 5.0
_LOG4J = """\
rootLogger.level = error
rootLogger.appenderRef.stdout.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
"""


class SparkError(RecommenderError):
    """Spark cannot be used: pyspark or Java missing, master unreachable, job failed."""


# ----------------------------------------------------------------------------- session
def require_pyspark():
    """Import and return ``pyspark``, or raise :class:`SparkError` saying how to install it.

    ``mapInPandas`` also needs pandas and pyarrow (both in requirements-spark.txt).
    """
    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
        import pyspark
    except ImportError:
        raise SparkError(INSTALL_HINT) from None
    return pyspark


def log_path() -> Path:
    """Where the JVM's output of this process' Spark session goes."""
    return Path(tempfile.gettempdir()) / LOG_NAME


def _java_available() -> bool:
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return True
    return shutil.which("java") is not None


def _reachable(host: str, port: int) -> str | None:
    """None if a TCP connection to host:port opens, else why not."""
    try:
        with socket.create_connection((host, port), timeout=_MASTER_TIMEOUT):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def check_master(master: str) -> None:
    """Refuse a master URL Spark cannot use, in one line, before the JVM starts.

    Spark itself retries an unreachable standalone master for a minute before it gives up;
    this checks the TCP port first (5 s). ``local``, ``local[N]`` and ``local[*]`` are
    always usable; ``yarn`` needs ``HADOOP_CONF_DIR`` or ``YARN_CONF_DIR``.
    """
    if master == "local" or (master.startswith("local[") and master.endswith("]")):
        return
    if master == "yarn":
        if not (os.environ.get("HADOOP_CONF_DIR") or os.environ.get("YARN_CONF_DIR")):
            raise SparkError(
                "--spark-master yarn needs HADOOP_CONF_DIR or YARN_CONF_DIR set to the "
                "cluster's Hadoop configuration folder"
            )
        return
    if master.startswith("spark://"):
        hosts = master[len("spark://") :].split(",")
    elif master.startswith("k8s://"):
        url = urlsplit(master[len("k8s://") :])
        hosts = [f"{url.hostname}:{url.port or (443 if url.scheme == 'https' else 80)}"]
    else:
        raise SparkError(
            f"unknown Spark master {master!r}: use local[*], local[N], spark://HOST:PORT, "
            "yarn or k8s://https://HOST:PORT"
        )
    reasons = []
    for hostport in hosts:
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit():
            raise SparkError(f"bad Spark master {master!r}: expected spark://HOST:PORT")
        reason = _reachable(host, int(port))
        if reason is None:
            return
        reasons.append(f"{hostport}: {reason}")
    raise SparkError(
        f"cannot reach the Spark master {master} ({'; '.join(reasons)}); start it, or "
        "pass the right --spark-master (local[*] runs Spark on this machine)"
    )


@contextlib.contextmanager
def _jvm_output_to(path: Path):
    """Point file descriptors 1 and 2 at ``path`` while the JVM is launched (it inherits
    them and keeps them), then give Python its own back."""
    saved = []
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no usable descriptors: nothing to redirect
        yield
        return
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _log_tail(lines: int = 3) -> str:
    try:
        text = log_path().read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    useful = [ln.strip() for ln in text if "Exception" in ln or "Error" in ln]
    return (useful or text)[-1][:300] if (useful or text) else ""


_session_lock = threading.Lock()


def _under_spark_submit() -> bool:
    """True when spark-submit started this process (its JVM gateway is already up)."""
    return bool(os.environ.get("PYSPARK_GATEWAY_PORT"))


def get_session(master: str | None = None, conf: dict[str, str] | None = None):
    """A SparkSession on ``master`` with quiet logs; one already active in this process is
    reused as it is.

    ``master`` None: spark-submit's ``--master`` when spark-submit started this process,
    else :data:`DEFAULT_MASTER`. ``conf`` adds Spark settings
    (``{"spark.executor.memory": "4g"}``). Raises
    :class:`SparkError` (one line) when pyspark or Java is missing or the master is
    unreachable. The recommender package is shipped to the executors with ``addPyFile``,
    so workers import the same code as the driver.
    """
    require_pyspark()
    submitted = master is None and _under_spark_submit()
    master = master or DEFAULT_MASTER
    if not submitted:
        check_master(master)
    if not submitted and not _java_available():
        raise SparkError(
            "Spark needs Java 17: install a JDK (e.g. apt-get install openjdk-17-jre-headless) "
            "or set JAVA_HOME"
        )
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    log = log_path()
    log4j = log.with_name("hashtag-recommender-log4j2.properties")
    log4j.write_text(_LOG4J)
    java_opts = f"-Dlog4j2.configurationFile=file:{log4j}"
    builder = SparkSession.builder if submitted else SparkSession.builder.master(master)
    builder = (
        builder.appName("hashtag-recommender")
        .config("spark.driver.extraJavaOptions", java_opts)
        .config("spark.executor.extraJavaOptions", java_opts)
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.python.worker.reuse", "true")
        # Arrow batches of a few hundred rows: an image's features are 5 kB.
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "256")
    )
    if not submitted and master.startswith("local"):
        # Workers run this interpreter (with TensorFlow and Pillow), not whatever
        # `python3` is first on the PATH; a cluster sets PYSPARK_PYTHON itself.
        builder = (
            builder.config("spark.ui.enabled", "false")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
        )
        # (pyspark reads PYSPARK_PYTHON when the context starts, not spark.pyspark.python.)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        # In local mode the driver's heap is the executors' too: Spark's default of 1 GB
        # runs out in ALS at 300k posts (bench_spark). ``conf`` may set another.
        builder = builder.config("spark.driver.memory", LOCAL_DRIVER_MEMORY)
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    # pyspark warns on every pandas conversion that it does not fully support pandas >= 3;
    # what this module uses of pandas (frames of scalars and bytes) works.
    warnings.filterwarnings(
        "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
    )
    with _session_lock:
        try:
            with _jvm_output_to(log):
                spark = builder.getOrCreate()
        except Exception as exc:  # noqa: BLE001 - py4j and pyspark raise many types
            detail = _log_tail() or f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            raise SparkError(f"Spark could not start on {master} ({detail}); see {log}") from None
    spark.sparkContext.setLogLevel("ERROR")
    _ship_package(spark)
    return spark


def _ship_package(spark) -> None:
    """Send this ``recommender`` package to the executors (once per session)."""
    sc = spark.sparkContext
    if getattr(sc, "_hashtag_recommender_shipped", False):
        return
    package = Path(__file__).resolve().parents[1]  # recommender/, not engines/
    folder = Path(tempfile.mkdtemp(prefix="hashtag-recommender-pyfiles-"))
    archive = folder / "recommender.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(package.rglob("*.py")):
            zf.write(path, path.relative_to(package.parent).as_posix())
    sc.addPyFile(str(archive))
    sc._hashtag_recommender_shipped = True


def spark_version(spark) -> str:
    return str(spark.version)


def _task_cpus(spark) -> int:
    return int(spark.sparkContext.getConf().get("spark.task.cpus", "1"))


# ------------------------------------------------------------------------------- embed
def _embed_settings(spark, backbone: str, weights: str | None) -> dict[str, Any]:
    shipped = None
    if weights not in (None, "default", "imagenet"):
        # A weights file reaches every executor through SparkFiles.
        spark.sparkContext.addFile(os.path.abspath(weights))
        shipped = os.path.basename(weights)
    return {
        "backbone": backbone,
        "weights": weights,
        "shipped_weights": shipped,
        "tf_threads": _task_cpus(spark),
    }


def _worker_backbone(settings: dict[str, Any]):
    """The backbone of this Python worker (built on its first task, then cached)."""
    threads = str(settings["tf_threads"])
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", threads)
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from recommender.vision.backbones import get_backbone

    weights = settings["weights"]
    if settings["shipped_weights"]:
        from pyspark import SparkFiles

        weights = SparkFiles.get(settings["shipped_weights"])
    return get_backbone(settings["backbone"], weights)


def _extract_guarded(sources: list, backbone, **options) -> Extraction:
    """:func:`~recommender.features.pipeline.extract_features` on ``sources`` (same options),
    isolating failures: an image that breaks the worker is recorded as unreadable and the
    task goes on."""
    from recommender.features.pipeline import extract_features

    ex = extract_features(sources, backbone, isolate=True, **options)
    # A URI reaches a worker as a string only when binaryFile gave no content for it (see
    # _with_uri_contents): the file is missing, or empty (Spark's file scan skips those).
    for row, (i, _) in enumerate(ex.errors):
        source = sources[i]
        if isinstance(source, str) and is_uri(source):
            ex.errors[row] = (i, f"There is no file, or an empty one, at '{source}'.")
    return ex


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


def _job_failed(what: str, exc: BaseException) -> SparkError:
    """A failed Spark job as one line; the JVM's details are in the log file."""
    text = str(exc).strip().splitlines()
    first = f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
    return SparkError(f"the Spark {what} job failed ({first}); see {log_path()}")


# -------------------------------------------------------------------------------- ALS
def spark_ratings(weighted, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, rating) triples for Spark's ALS with ``alpha=1``, so that its
    confidence ``1 + rating`` equals implicit's ``alpha * value`` (see the module doc)."""
    coo = weighted.tocoo()
    ratings = np.maximum(alpha * coo.data.astype(np.float64) - 1.0, MIN_RATING)
    return coo.row.astype(np.int32), coo.col.astype(np.int32), ratings.astype(np.float32)


def spark_reg_param(matrix, regularization: float) -> float:
    """``regParam`` for Spark's ALS-WR: ``regularization`` over the mean row count."""
    per_row = np.diff(matrix.tocsr().indptr)
    mean = float(per_row[per_row > 0].mean()) if (per_row > 0).any() else 1.0
    return regularization / mean


def _factor_array(frame, n: int, rank: int) -> np.ndarray:
    """Collect an ALS factor DataFrame (id, features) into an (n, rank) float32 array;
    rows Spark never saw (no ratings) stay zero."""
    out = np.zeros((n, rank), np.float32)
    if hasattr(frame, "toArrow"):  # pyspark >= 4: columnar, no Python object per row
        table = frame.toArrow()
        ids = table.column("id").to_numpy()
        flat = table.column("features").combine_chunks().flatten().to_numpy()
        out[ids] = flat.reshape(len(ids), rank)
    else:
        pdf = frame.toPandas()
        if len(pdf):
            out[pdf["id"].to_numpy()] = np.stack(pdf["features"].to_numpy())
    return out


def fit_als(
    matrix,
    params: ALSParams,
    progress: Callable[[int, int], None] | None = None,
    *,
    spark=None,
    master: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """ALS on Spark with the local engine's parameters: (post_factors, tag_factors) float32,
    aligned with ``matrix``'s rows and columns (see the module doc for the mapping).

    Spark's ALS has no per-iteration callback: ``progress`` is called at the start and the
    end. Raises :class:`~recommender.fit.als.FitError` for non-finite factors.
    """
    spark = spark or get_session(master)
    _ensure_checkpoint_dir(spark)
    if progress:
        progress(0, params.iterations)
    n_rows, n_cols = matrix.shape
    weighted = weight_matrix(matrix, params)
    rows, cols, ratings = spark_ratings(weighted, params.alpha)
    frame = _ratings_frame(spark, rows, cols, ratings)
    from pyspark.ml.recommendation import ALS

    blocks = max(1, spark.sparkContext.defaultParallelism)
    als = ALS(
        rank=params.factors,
        maxIter=params.iterations,
        regParam=spark_reg_param(matrix, params.regularization),
        alpha=1.0,
        implicitPrefs=True,
        nonnegative=False,
        seed=params.random_state,
        numUserBlocks=blocks,
        numItemBlocks=blocks,
        userCol="post",
        itemCol="tag",
        ratingCol="rating",
    )
    try:
        model = als.fit(frame)
        posts = _factor_array(model.userFactors, n_rows, params.factors)
        tags = _factor_array(model.itemFactors, n_cols, params.factors)
    except Exception as exc:  # noqa: BLE001 - a Spark job failure, said in one line
        raise _job_failed("ALS", exc) from None
    if not (np.isfinite(posts).all() and np.isfinite(tags).all()):
        raise FitError(
            "ALS produced non-finite factors; lower alpha or raise regularization and rebuild"
        )
    if progress:
        progress(params.iterations, params.iterations)
    return posts, tags


def _ensure_checkpoint_dir(spark) -> None:
    """ALS cuts its lineage every 10 iterations by checkpointing; without a checkpoint
    folder the lineage grows until the executors overflow their stacks (20 iterations do).

    Uses ``spark.checkpoint.dir`` when set (a cluster needs a folder every executor
    reaches: HDFS, S3, NFS); a local master gets a temporary folder.
    """
    sc = spark.sparkContext
    if sc.getCheckpointDir():
        return
    configured = sc.getConf().get("spark.checkpoint.dir", "")
    if configured:
        sc.setCheckpointDir(configured)
    elif sc.master.startswith("local"):
        sc.setCheckpointDir(tempfile.mkdtemp(prefix="hashtag-recommender-checkpoints-"))
    else:
        raise SparkError(
            "Spark's ALS needs a checkpoint folder every executor can reach: set "
            "spark.checkpoint.dir (e.g. --conf spark.checkpoint.dir=hdfs:///tmp/checkpoints)"
        )


def _ratings_frame(spark, rows: np.ndarray, cols: np.ndarray, ratings: np.ndarray):
    import pandas as pd

    pdf = pd.DataFrame({"post": rows, "tag": cols, "rating": ratings})
    return spark.createDataFrame(pdf, "post int, tag int, rating float")


# ------------------------------------------------------------------------------ engine
SHARD_SCHEMA = "shard long, position long, path string, content binary"
SHARD_RESULT_SCHEMA = "shard long, images long, embedded long, reused long, written boolean"


def _shard_task(job, settings: dict[str, Any]) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """The ``mapInPandas`` function of :meth:`SparkEngine.embed`: a partition holds the
    rows of one shard; it embeds them and writes the shard into the store itself."""

    def run(batches: Iterator[Any]) -> Iterator[Any]:
        import pandas as pd

        from recommender.features.pipeline import embed_shard

        frames = [f for f in batches if len(f)]
        if not frames:
            return
        rows = pd.concat(frames, ignore_index=True).sort_values("position")
        backbone = _worker_backbone(settings)
        for number, group in rows.groupby("shard", sort=True):
            sources = [c if c is not None else p for p, c in zip(group["path"], group["content"])]
            embedded, reused, written = embed_shard(
                job, int(number), sources, backbone, extract=_extract_guarded
            )
            yield pd.DataFrame({
                "shard": [int(number)], "images": [len(sources)], "embedded": [embedded],
                "reused": [reused], "written": [bool(written)],
            })  # fmt: skip

    return run


class SparkEngine:
    """The ``spark`` engine (see :mod:`recommender.engines`): the embed stage and the ALS
    fit on Spark. ``master`` None: spark-submit's, else ``local[*]``; a session already
    active in this process (the CLI starts one for ``--spark-master``) is used as it is."""

    name = "spark"

    def __init__(self, master: str | None = None, spark=None, conf: dict | None = None) -> None:
        self.master = master
        self.conf = conf
        self._spark = spark

    @property
    def spark(self):
        if self._spark is None:
            self._spark = get_session(self.master, self.conf)
        return self._spark

    def describe(self) -> dict[str, Any]:
        """What a model records of the engine that built it (``info`` shows it)."""
        return {
            "name": self.name,
            "spark_version": spark_version(self.spark),
            "master": str(self.spark.sparkContext.master),
        }

    def fit_als(self, matrix, params: ALSParams, progress=None) -> tuple[np.ndarray, np.ndarray]:
        return fit_als(matrix, params, progress, spark=self.spark)

    def embed(self, job, progress=None):
        """Write the shards of ``job`` from the executors, one task per shard."""
        import dataclasses

        from recommender.features.job import EmbedStats

        spark = self.spark
        n_shards = job.n_shards
        stats = EmbedStats()
        if n_shards == 0:
            return stats
        settings = _embed_settings(spark, job.backbone, job.weights)
        rows = []
        for number in range(n_shards):
            first, last = job.shard_range(number)
            for position in range(first, last):
                rows.append((number, position, *_source_row(job.paths[position])))
        source = spark.sparkContext.parallelize(rows, n_shards)
        uris = _uris(rows, 2)
        if uris:  # read by binaryFile on the executors, then back to one shard a partition
            source = _with_uri_contents(spark, source.toDF(SHARD_SCHEMA), uris).rdd.map(tuple)
        frame = (
            source.keyBy(lambda row: row[0])
            .partitionBy(n_shards, lambda number: number)  # partition i holds shard i
            .values()
            .toDF(SHARD_SCHEMA)
        )
        # The paths travel in the DataFrame, not with every task.
        task = _shard_task(dataclasses.replace(job, paths=[]), settings)
        done, total = 0, len(job.paths)
        try:
            for row in frame.mapInPandas(task, SHARD_RESULT_SCHEMA).toLocalIterator():
                stats.embedded += int(row["embedded"])
                stats.reused += int(row["reused"])
                if row["written"]:
                    stats.shards_written += 1
                else:
                    stats.shards_kept += 1
                done += int(row["images"])
                if progress:
                    progress(done, total)
        except Exception as exc:  # noqa: BLE001 - a Spark job failure, said in one line
            raise _job_failed("embed", exc) from None
        return stats
