"""The Spark session: start (or reuse) one on a master, with quiet logs, and say in one line
why it cannot start.

:func:`get_session` sends the JVM's own output to a log file (:data:`LOG_NAME` in the
temporary folder) that error messages point to, and Spark logs only errors. A missing
pyspark, a missing Java or an unreachable master raise a one-line :class:`SparkError`;
pyspark is imported only inside the functions that need it. The driver ships its own
``recommender`` package to the executors, so they run the driver's code.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import warnings
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

from recommender.errors import RecommenderError

DEFAULT_MASTER = "local[*]"
LOCAL_DRIVER_MEMORY = "4g"
INSTALL_HINT = "pyspark is not installed: pip install -r requirements-spark.txt"
LOG_NAME = "hashtag-recommender-spark.log"
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
        # ALS's checkpoints are deleted once their data is no longer needed.
        .config("spark.cleaner.referenceTracking.cleanCheckpoints", "true")
        # Arrow batches of a few hundred rows: an image's features are 5 kB.
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "256")
    )
    if not submitted:
        # Executors run this interpreter (with TensorFlow and Pillow), not whatever `python3`
        # is first on their PATH, unless PYSPARK_PYTHON says otherwise (python_source()).
        # (pyspark reads PYSPARK_PYTHON when the context starts.)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if not submitted and master.startswith("local"):
        builder = (
            builder.config("spark.ui.enabled", "false")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
        )
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
    if not is_local(str(spark.sparkContext.master)):
        try:
            wait_for_executors(spark)  # a master with no worker: one line, not a hang
        except SparkError:
            spark.stop()
            raise
    return spark


def _ship_package(spark) -> None:
    """Send this ``recommender`` package to the executors (once per session)."""
    sc = spark.sparkContext
    if getattr(sc, "_hashtag_recommender_shipped", False):
        return
    package = Path(__file__).resolve().parents[2]  # recommender/, not engines/spark/
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


def _job_failed(what: str, exc: BaseException) -> SparkError:
    """A failed Spark job as one line; the JVM's details are in the log file."""
    text = str(exc).strip().splitlines()
    first = f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
    return SparkError(f"the Spark {what} job failed ({first}); see {log_path()}")


# ------------------------------------------------------------------- the cluster's side
# How long a job may have no executor at all before it is stopped (seconds; a Spark
# setting, so --spark-conf sets it too: the CLI's --spark-wait does).
WAIT_CONF = "spark.hashtag.workerWait"
DEFAULT_WAIT = 60.0


def is_local(master: str) -> bool:
    return master == "local" or master.startswith("local[")


def python_source(conf: dict[str, str] | None = None) -> str:
    """One line: which Python the executors run, and where that choice comes from."""
    if conf and conf.get("spark.pyspark.python"):
        return f"Spark executors run Python {conf['spark.pyspark.python']} (spark.pyspark.python)"
    if os.environ.get("PYSPARK_PYTHON") and os.environ["PYSPARK_PYTHON"] != sys.executable:
        return f"Spark executors run Python {os.environ['PYSPARK_PYTHON']} (PYSPARK_PYTHON)"
    return (
        f"Spark executors run Python {sys.executable} (this interpreter; set PYSPARK_PYTHON "
        "to run another): every worker machine needs it at that path, with the same packages"
    )


def _loopback(host: str) -> bool:
    return host in ("localhost", "127.0.0.1", "::1", "[::1]") or host.startswith("127.")


def store_note(master: str, store: str | os.PathLike, declared: bool) -> str | None:
    """One line when the executors may not reach the feature store ``store``, else None.

    The rule: a ``local`` master, or a ``spark://`` master on this machine's loopback
    address (its workers can only be on this machine), shares this machine's folders;
    otherwise the store counts as shared only when the user declared where it lives
    (``declared``: ``$HASHTAG_CACHE`` is set, meant to be a folder every executor mounts).
    """
    if is_local(master):
        return None
    if master.startswith("spark://"):
        hosts = [h.rpartition(":")[0] for h in master[len("spark://") :].split(",")]
        if hosts and all(_loopback(h) for h in hosts):
            return None
    if declared:
        return None
    return (
        f"note: the feature store {store} is this machine's; every Spark executor must "
        "read and write it: on a cluster of several machines set HASHTAG_CACHE to a folder "
        "they all mount (NFS, a shared disk)"
    )


def executors(spark) -> int:
    """Executors registered with the driver now (a local master counts as one)."""
    sc = spark.sparkContext
    if is_local(str(sc.master)):
        return 1
    return max(0, int(sc._jsc.sc().getExecutorMemoryStatus().size()) - 1)  # minus the driver


def worker_wait(spark) -> float:
    return float(spark.sparkContext.getConf().get(WAIT_CONF, str(DEFAULT_WAIT)))


def no_worker(spark, seconds: float) -> SparkError:
    master = spark.sparkContext.master
    return SparkError(
        f"no Spark executor for {seconds:.0f} s: the master {master} has no worker with free "
        f"cores and memory; start one (spark-class org.apache.spark.deploy.worker.Worker "
        f"{master}) and build again, or wait longer with --spark-wait"
    )


def wait_for_executors(spark, timeout: float | None = None) -> None:
    """Return once an executor has joined; :class:`SparkError` after ``timeout`` seconds
    (the session's :data:`WAIT_CONF`) without one: a master with no worker."""
    timeout = worker_wait(spark) if timeout is None else timeout
    deadline = time.monotonic() + timeout
    while executors(spark) == 0:
        if time.monotonic() > deadline:
            raise no_worker(spark, timeout)
        time.sleep(0.5)


class Watch:
    """While a job runs: if no executor is left for the session's :data:`WAIT_CONF` seconds
    (every worker gone), cancel the session's jobs so the job fails instead of waiting for
    ever; :attr:`fired` says it did. A context manager."""

    def __init__(self, spark, timeout: float | None = None) -> None:
        self.spark = spark
        self.timeout = worker_wait(spark) if timeout is None else timeout
        self.fired = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="executor-watch", daemon=True)

    def _run(self) -> None:
        since = None
        while not self._stop.wait(1.0):
            try:
                none = executors(self.spark) == 0
            except Exception:  # noqa: BLE001 - the context is going away: nothing to watch
                return
            since = (since or time.monotonic()) if none else None
            if since is not None and time.monotonic() - since > self.timeout:
                self.fired = True
                self.spark.sparkContext.cancelAllJobs()
                return

    def failed(self, what: str, exc: BaseException) -> SparkError:
        """The one line for ``exc``, a failure of the job this watched."""
        return no_worker(self.spark, self.timeout) if self.fired else _job_failed(what, exc)

    def __enter__(self) -> Watch:
        if not is_local(str(self.spark.sparkContext.master)):
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
