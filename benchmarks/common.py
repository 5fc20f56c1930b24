"""Shared helpers of the benchmark scripts: synthetic data, timing, memory, tables.

Not part of the library and not imported by it; run the scripts from the repository root
as modules (``python -m benchmarks.bench_query``), so ``recommender`` imports from here.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATASET = Path(
    os.environ.get("HASHTAG_DATASET") or REPO.parent / "shared" / "datasets" / "instagram-2019"
)
DIM = 1280


# ------------------------------------------------------------------------ synthetic data
def random_unit(n: int, dim: int = DIM, seed: int = 0, chunk: int = 65536) -> np.ndarray:
    """``n`` independent uniformly random unit vectors (float32): the worst case for ANN."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, chunk):
        x = rng.standard_normal((min(chunk, n - s), dim), dtype=np.float32)
        out[s : s + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def clustered_unit(n: int, dim: int = DIM, seed: int = 0, **mixture) -> np.ndarray:
    """Unit vectors from a two-level Gaussian mixture shaped like real CNN image features.

    ``topics`` broad themes hold ``n / per_cluster`` tight clusters; points vary around
    their cluster in a ``rank``-dimensional subspace with a power-law spectrum (exponent
    ``alpha``) plus isotropic noise, and every point shares a common mean direction (real
    post-ReLU features are all positive, so they share a large mean component).

    The defaults were fitted to the demo model's 3,281 EfficientNet-Lite0 features: at the
    same size the mixture gives nearest-neighbour similarity ~0.61 (real 0.60), 10th
    neighbour ~0.54 (0.52), median pair ~0.28 (0.26), 99th percentile pair ~0.48 (0.50),
    and the top 100 principal components explain ~52% of the variance (55%).
    ``python -m benchmarks.bench_neighbours --calibrate`` prints both. ``mixture`` takes
    :func:`clustered_chunks`'s keyword options (``topics=10, per_cluster=10, rank=256,
    alpha=0.5, spread=0.85, noise=1.35, mean_share=0.52, chunk=65536``).
    """
    out = np.empty((n, dim), np.float32)
    s = 0
    for x in clustered_chunks(n, dim, seed, **mixture):
        out[s : s + len(x)] = x
        s += len(x)
    return out


def clustered_chunks(
    n: int,
    dim: int = DIM,
    seed: int = 0,
    *,
    topics: int = 10,
    per_cluster: int = 10,
    rank: int = 256,
    alpha: float = 0.5,
    spread: float = 0.85,
    noise: float = 1.35,
    mean_share: float = 0.52,
    chunk: int = 65536,
):
    """:func:`clustered_unit`'s rows, ``chunk`` at a time (float32), never all in memory.

    The defaults of the mixture's shape (see :func:`clustered_unit`) are these ones."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, rank)))
    spectrum = np.arange(1, rank + 1, dtype=np.float64) ** -alpha
    spectrum /= spectrum.sum()
    scale = (basis * np.sqrt(spectrum)).T.astype(np.float32)  # rank x dim
    mean = rng.standard_normal(dim).astype(np.float32)
    mean /= np.linalg.norm(mean)
    n_clusters = max(1, n // per_cluster)
    topic_centres = rng.standard_normal((topics, rank), dtype=np.float32)
    centres = topic_centres[rng.integers(0, topics, n_clusters)]
    centres += rng.standard_normal((n_clusters, rank), dtype=np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        latent = centres[rng.integers(0, n_clusters, m)]
        latent += spread * rng.standard_normal((m, rank), dtype=np.float32)
        x = latent @ scale
        x += (noise / np.sqrt(dim)) * rng.standard_normal((m, dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        x = x * np.sqrt(1 - mean_share**2) + mean_share * mean
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        yield x


def feature_stats(x: np.ndarray) -> dict[str, float]:
    """Similarity structure of a (small) set of unit vectors, to compare with real ones."""
    x = np.asarray(x, np.float32)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    top = -np.sort(-sims, axis=1)
    pairs = sims[np.isfinite(sims)]
    centred = x - x.mean(0)
    var = np.linalg.svd(centred, compute_uv=False) ** 2
    var /= var.sum()
    return {
        "nn1": float(np.median(top[:, 0])),
        "nn10": float(np.median(top[:, 9])),
        "pair_median": float(np.median(pairs)),
        "pair_p99": float(np.percentile(pairs, 99)),
        "var_top100": float(var[:100].sum()),
    }


# -------------------------------------------------------------------- timing and memory
def percentiles(seconds: Sequence[float]) -> dict[str, float]:
    """p50 / p95 / mean of a list of durations, in milliseconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "mean_ms": float(ms.mean()),
        "n": int(len(ms)),
    }


def time_calls(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def proc_status(field: str) -> int:
    """A /proc/self/status memory field (``VmRSS``, ``RssAnon``, ``VmHWM``...) in bytes."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def max_rss_children() -> int:
    """Peak resident memory of the largest finished child process, in bytes."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


class PeakAnon:
    """Samples RssAnon (heap, not file pages) in a thread; ``peak`` is the highest seen.

    Use as a context manager around a build: unlike VmHWM it does not count the page cache
    of memory-mapped input files.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak = proc_status("RssAnon")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, proc_status("RssAnon"))

    def __enter__(self) -> PeakAnon:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, proc_status("RssAnon"))


def load_average() -> str:
    try:
        return " / ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "?"


# ----------------------------------------------------------------------- subprocesses
def run_json(args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 7200):
    """Run ``python -m <args>`` from the repo root; return the last stdout line as JSON."""
    full_env = dict(os.environ)
    full_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def emit(result: dict) -> None:
    """Print a worker's result as one JSON line (what :func:`run_json` reads)."""
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------------------- tables
def table(rows: Sequence[dict], columns: Sequence[tuple[str, str, str]]) -> str:
    """A Markdown table; ``columns`` are (key, header, format spec)."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = []
    for row in rows:
        cells = []
        for key, _, spec in columns:
            value = row.get(key)
            if value is None:
                cells.append("")
            elif isinstance(value, str) or not spec:
                cells.append(str(value))
            else:
                cells.append(format(value, spec))
        body.append("| " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *body])


def header(title: str) -> None:
    print(f"\n## {title}\n(load average {load_average()}, {os.cpu_count()} cores)\n", flush=True)
