"""The embed stage on Spark: one ``mapInPandas`` task per shard runs the local engine's shard
step (:func:`recommender.features.pipeline.embed_shard`) on its executor.

A DataFrame of the images, one row per image ``(shard, position, path, content)``, is
partitioned so that partition ``i`` holds shard ``i``; each task embeds its rows and writes
the shard atomically into the store itself, so the shards are the local engine's, in the
same store, and a killed build resumes at the first missing shard. The store must be a
folder every executor reaches. The backbone is loaded once per Python worker (worker reuse
is on, and :func:`~recommender.vision.backbones.get_backbone` caches it in the process),
with one TensorFlow thread per task CPU (``spark.task.cpus``), so ``local[2]`` runs two
workers without oversubscribing the cores. An image a worker cannot use is recorded as
unreadable with its message, never failing the task (the local engine's rule); an image
that breaks the worker in some other way is isolated and recorded the same way.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

from recommender.data.records import is_uri
from recommender.engines.spark.read import _source_row, _uris, _with_uri_contents
from recommender.engines.spark.session import SparkError, Watch, _task_cpus
from recommender.features.pipeline import Extraction

# What a task's failure to read or write the feature store starts with (found again in
# the driver's exception text, which carries the task's Python traceback).
_UNWRITABLE = "hashtag-store-unwritable: "
_UNWRITABLE_LINE = re.compile(re.escape(_UNWRITABLE) + r"([^\n]*)")


def _embed_failed(watch: Watch, exc: BaseException) -> SparkError:
    """The one line for a failed embed job: no worker left, an unwritable store, or else."""
    found = _UNWRITABLE_LINE.search(str(exc))
    if found and not watch.fired:
        return SparkError(
            f"the Spark executors cannot write the feature store ({found.group(1)[:300]}): "
            "set HASHTAG_CACHE to a folder every executor can write"
        )
    return watch.failed("embed", exc)


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


SHARD_SCHEMA = "shard long, position long, path string, content binary"
SHARD_RESULT_SCHEMA = "shard long, images long, embedded long, reused long, written boolean"


def _shard_task(
    job, settings: dict[str, Any], done=None
) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """The ``mapInPandas`` function of :meth:`SparkEngine.embed`: a partition holds the
    rows of one shard; it embeds them and writes the shard into the store itself, then adds
    its images to the accumulator ``done`` (the driver's progress)."""

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
            try:
                embedded, reused, written = embed_shard(
                    job, int(number), sources, backbone, extract=_extract_guarded
                )
            except OSError as exc:  # the store (images' errors are ImageErrors, recorded)
                raise RuntimeError(f"{_UNWRITABLE}{job.store.folder}: {exc}") from exc
            if done is not None:
                done.add(len(sources))
            yield pd.DataFrame({
                "shard": [int(number)], "images": [len(sources)], "embedded": [embedded],
                "reused": [reused], "written": [bool(written)],
            })  # fmt: skip

    return run


def embed_shards(spark, job, progress=None):
    """The embed stage of ``job`` on ``spark``: its shards written from the executors, one
    task per shard (the engine contract's ``embed``, see :mod:`recommender.engines`)."""
    import dataclasses

    from recommender.features.job import EmbedStats

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
    done = spark.sparkContext.accumulator(0)
    task = _shard_task(dataclasses.replace(job, paths=[]), settings, done)
    results = frame.mapInPandas(task, SHARD_RESULT_SCHEMA)
    with Watch(spark) as watch:
        try:
            rows = _collect_with_progress(spark, results, done, len(job.paths), progress)
        except Exception as exc:  # noqa: BLE001 - a Spark job failure, said in one line
            raise _embed_failed(watch, exc) from None
    for row in rows:
        stats.embedded += int(row["embedded"])
        stats.reused += int(row["reused"])
        if row["written"]:
            stats.shards_written += 1
        else:
            stats.shards_kept += 1
    return stats


def _collect_with_progress(spark, frame, done, total: int, progress=None) -> list:
    """``frame.collect()``, one job whose tasks (one a shard) run on every executor at once,
    while this thread reports the images of the finished tasks (the accumulator ``done``)
    every half second. Not ``toLocalIterator``: it runs one job per partition, one after
    the other, so a cluster would embed one shard at a time."""
    out: list = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            out.extend(frame.collect())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failed.append(exc)

    job = threading.Thread(target=run, name="spark-embed", daemon=True)
    job.start()
    shown = -1
    try:
        while job.is_alive():
            job.join(0.5)
            if progress and done.value != shown:
                shown = done.value
                progress(min(shown, total), total)
    except BaseException:  # Ctrl-C: stop the executors' work too
        spark.sparkContext.cancelAllJobs()
        raise
    if failed:
        raise failed[0]
    if progress and shown != total:
        progress(total, total)
    return out
