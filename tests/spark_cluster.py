"""A real standalone Spark cluster on this machine, for the tests and ``bench_spark``.

A master and workers run as separate processes from the pyspark wheel's own
``bin/spark-class`` (``org.apache.spark.deploy.master.Master`` and ``...worker.Worker``) on
Java 17, bound to 127.0.0.1 on free ports (their web UIs too), with their work and log
folders in a temporary folder. Each process leads its own process group; :meth:`stop` ends
every one by process id, with its children (executors, Python workers), and the
``spark_cluster`` fixture always calls it. The README's three commands start the same
cluster by hand.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

MASTER = "org.apache.spark.deploy.master.Master"
WORKER = "org.apache.spark.deploy.worker.Worker"


class ClusterError(RuntimeError):
    """The cluster did not come up (the message names the log to read)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spark_home() -> Path:
    """The pyspark wheel's folder: it holds ``bin/spark-class`` and Spark's jars."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def java_major() -> int | None:
    """The major version of the ``java`` that spark-class runs, or None without one."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else "java"
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for word in out.stderr.split():
        word = word.strip('"')
        if word[:1].isdigit():
            return int(word.split(".")[0])
    return None


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc), deepest last."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        kids = [p for p, pp in parent.items() if pp == current]
        found.extend(kids)
        todo.extend(kids)
    return found


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> list[int]:
    """Send ``sig`` to ``pid`` and all its descendants (found first, then signalled)."""
    targets = [pid, *children(pid)]
    for p in targets:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass
    return targets


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead


class StandaloneCluster:
    """A master and ``workers`` workers of ``cores`` cores and ``memory`` each, on 127.0.0.1."""

    def __init__(self, folder: Path, workers: int = 2, cores: int = 1, memory: str = "2g") -> None:
        self.folder = Path(folder)
        self.n_workers, self.cores, self.memory = workers, cores, memory
        self.port, self.ui_port = free_port(), free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.master: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.ports: list[int] = []  # each worker's
        self.killed: set[int] = set()  # process ids killed on purpose

    # -------------------------------------------------------------------- processes
    def env(self) -> dict[str, str]:
        """The environment the daemons run in (and a driver on this machine can use)."""
        return {
            **os.environ,
            "SPARK_HOME": str(spark_home()),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOG_DIR": str(self.folder / "logs"),
            "SPARK_WORKER_DIR": str(self.folder / "work"),
            "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
        }

    def _launch(self, name: str, args: list[str]) -> subprocess.Popen:
        (self.folder / "logs").mkdir(parents=True, exist_ok=True)
        log = open(self.folder / "logs" / f"{name}.out", "ab")  # noqa: SIM115 - the child's
        try:
            return subprocess.Popen(
                [str(spark_home() / "bin" / "spark-class"), *args],
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped with its children
            )
        finally:
            log.close()

    def start(self, timeout: float = 120.0) -> StandaloneCluster:
        """Start the master and the workers; return once every worker is registered."""
        host = ["--host", "127.0.0.1"]
        self.master = self._launch(
            "master", [MASTER, *host, "--port", str(self.port), "--webui-port", str(self.ui_port)]
        )
        self._wait(lambda s: True, timeout, "the master's web UI to answer")
        for _ in range(self.n_workers):
            self.add_worker()
        self.wait_workers(self.n_workers, timeout)
        return self

    def add_worker(self) -> subprocess.Popen:
        i = len(self.workers)
        work = self.folder / "work" / f"worker{i}"
        work.mkdir(parents=True, exist_ok=True)
        self.ports.append(free_port())
        args = [WORKER, "--host", "127.0.0.1", "--port", str(self.ports[-1]), "--webui-port",
                str(free_port()), "--cores", str(self.cores), "--memory", self.memory,
                "--work-dir", str(work), self.url]  # fmt: skip
        self.workers.append(self._launch(f"worker{i}", args))
        return self.workers[-1]

    def replace_worker(self, i: int) -> None:
        """After :meth:`kill_worker`: a new worker in ``i``'s place, registered."""
        if self.workers[i].poll() is None:
            return
        self.workers[i].wait()
        self.add_worker()
        self.workers[i] = self.workers.pop()
        self.ports[i] = self.ports.pop()
        self._wait(lambda s: self._registered(s, self.ports[i]), 120, "the new worker")

    @staticmethod
    def _registered(state: dict, port: int) -> bool:
        return any(
            w.get("state") == "ALIVE" and w.get("port") == port for w in state.get("workers", [])
        )

    def kill_worker(self, i: int) -> list[int]:
        """SIGKILL worker ``i``'s JVM and everything it started (executor, Python workers)."""
        self.killed.add(self.workers[i].pid)
        return kill_tree(self.workers[i].pid, signal.SIGKILL)

    def stop(self) -> None:
        """End every process of the cluster, children first out, by process id."""
        procs = [p for p in (*self.workers, self.master) if p is not None]
        trees = {p.pid: [p.pid, *children(p.pid)] for p in procs}
        for tree in trees.values():
            for pid in tree:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(alive(p) for t in trees.values() for p in t):
            time.sleep(0.2)
        for tree in trees.values():
            for pid in tree:
                if alive(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        for p in procs:
            p.wait(timeout=30)

    # ---------------------------------------------------------------------- state
    def state(self) -> dict:
        """The master's JSON (``/json/`` on its web UI port)."""
        url = f"http://127.0.0.1:{self.ui_port}/json/"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)

    def alive_workers(self) -> int:
        return sum(w.get("state") == "ALIVE" for w in self.state().get("workers", []))

    def wait_workers(self, n: int, timeout: float = 120.0) -> None:
        """Until the first ``n`` live workers are registered with the master."""
        ports = [p for p, w in zip(self.ports, self.workers) if w.pid not in self.killed][:n]
        self._wait(
            lambda s: all(self._registered(s, port) for port in ports),
            timeout,
            f"{n} workers to register",
        )

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            dead = [
                p for p in (self.master, *self.workers) if p is not None and p.poll() is not None
            ]
            if dead:
                raise ClusterError(f"a Spark daemon exited while waiting for {what}; see "
                                   f"{self.folder / 'logs'}")  # fmt: skip
            try:
                if ready(self.state()):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ClusterError(f"no {what} within {timeout:.0f} s; see {self.folder / 'logs'}")
            time.sleep(0.5)

    def __enter__(self) -> StandaloneCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def require_cluster_prerequisites() -> None:
    """Skip (fail under HASHTAG_REQUIRE_SPARK=1) without pyspark or Java 17."""
    try:
        import pyspark  # noqa: F401

        major = java_major()
        if major != 17:
            raise RuntimeError(f"the cluster needs Java 17, found {major or 'no java'}")
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("HASHTAG_REQUIRE_SPARK"):
            pytest.fail(f"HASHTAG_REQUIRE_SPARK is set but a Spark cluster cannot run: {exc}")
        pytest.skip(f"a Spark cluster cannot run here: {exc}")


@pytest.fixture(scope="module")
def spark_cluster(tmp_path_factory):
    """A standalone master and two workers (1 core, 2 GB each) on 127.0.0.1, stopped (with
    every process they started) when the module's tests are done."""
    require_cluster_prerequisites()
    with StandaloneCluster(tmp_path_factory.mktemp("spark-cluster")) as cluster:
        yield cluster
