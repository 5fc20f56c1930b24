"""One BLAS-thread switch for the whole process: a build's ALS fit and a page query that
overlap, in either order, leave the process on the thread count it had, and neither runs
on more than one thread while the other is inside."""

from __future__ import annotations

import threading

import numpy as np
import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")

from recommender.blas import serial_blas  # noqa: E402
from recommender.config import ALSParams  # noqa: E402
from recommender.fit.als import fit_als, interaction_matrix  # noqa: E402


def blas_threads() -> set[int]:
    return {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}


@pytest.fixture
def two_threads():
    """The process on 2 BLAS threads for the test (whatever it had), restored afterwards."""
    if not blas_threads():
        pytest.skip("no BLAS threadpool in this process")
    with threadpoolctl.threadpool_limits(2, "blas"):
        assert blas_threads() == {2}
        yield


def small_matrix():
    tags = [["a", "b"], ["b", "c"], ["a", "c", "d"], ["d", "e"], ["e", "a"]] * 8
    return interaction_matrix(tags, ["a", "b", "c", "d", "e"])


def fit_in_thread(on_iteration):
    """A real ALS fit (what build runs) in a thread; ``on_iteration(i)`` runs inside it."""
    errors: list[BaseException] = []

    def progress(done: int, _total: int) -> None:
        on_iteration(done)

    def target():
        try:
            fit_als(small_matrix(), ALSParams(factors=4, iterations=3), progress)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, errors


def test_a_query_that_ends_during_a_build_leaves_the_build_serial(two_threads):
    """query enters, build enters, query leaves, build leaves."""
    fit_started, query_left = threading.Event(), threading.Event()
    seen: list[set[int]] = []

    def on_iteration(i):
        if i == 1:
            fit_started.set()
            assert query_left.wait(30)
            seen.append(blas_threads())  # the query has gone; the build is still running

    with serial_blas():  # what HashtagRecommender.recommend_features runs inside
        thread, errors = fit_in_thread(on_iteration)
        assert fit_started.wait(60)
    query_left.set()
    thread.join(60)
    assert not errors and not thread.is_alive()
    assert seen == [{1}]
    assert blas_threads() == {2}


def test_a_build_that_ends_during_a_query_leaves_the_process_as_it_was(two_threads):
    """build enters, query enters, build leaves, query leaves."""
    query_in = threading.Event()
    fit_started = threading.Event()

    def on_iteration(i):
        if i == 1:
            fit_started.set()
            assert query_in.wait(30)

    thread, errors = fit_in_thread(on_iteration)
    assert fit_started.wait(60)
    with serial_blas():
        query_in.set()
        thread.join(60)  # the build finishes while this query is inside
        assert not errors and not thread.is_alive()
        assert blas_threads() == {1}
        np.eye(8, dtype=np.float32) @ np.ones(8, dtype=np.float32)
    assert blas_threads() == {2}


def test_many_queries_and_builds_at_once_restore_the_thread_count(two_threads):
    stop = threading.Event()
    inside: list[set[int]] = []

    def queries():
        while not stop.is_set():
            with serial_blas():
                inside.append(blas_threads())

    runners = [threading.Thread(target=queries) for _ in range(3)]
    for t in runners:
        t.start()
    for _ in range(3):
        fit_als(small_matrix(), ALSParams(factors=4, iterations=2))
    stop.set()
    for t in runners:
        t.join()
    assert inside and all(s == {1} for s in inside)
    assert blas_threads() == {2}
