"""One process-wide switch for the number of BLAS threads.

Every part of the library that wants numpy's BLAS on one thread (a query's small
matrix-vector products, the ALS fit whose own solver threads do the work, the evaluation's
rankings) enters :func:`serial_blas`. BLAS thread counts are global to the process, so
independent ``threadpool_limits`` blocks in several threads do not compose: each one
restores what it saw on entry, and a build overlapping a query could leave the whole
server on one thread, or run the build on two. Here a reference count decides: the first
caller to enter limits BLAS to one thread, the last one to leave restores the count the
process had before the first entered.

threadpoolctl (3.8+) lets only one Python thread at a time change OpenBLAS' shared pool
and silently ignores the others: whichever thread set a limit first, while alive, would
decide for everyone. Changes here are serialised by one lock, so before each change this
module takes that control for the calling thread.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any

_lock = threading.Lock()
_users = 0
_limiters: list = []  # applied in order, undone in reverse
_controller: Any = None  # threadpoolctl's view of the loaded libraries ...
_modules_seen = -1  # ... made when sys.modules had this many entries


def _limit() -> None:
    """Limit BLAS to one thread: on first entry, and again for libraries imported since.

    threadpoolctl sees the libraries loaded when its controller is made; an extension
    imported later (implicit brings scipy's own OpenBLAS, say) needs a new controller and a
    limiter of its own. Each limiter remembers the counts it found: stacked and undone in
    reverse, the last undo restores every library's count from before the first entry.
    Making a controller costs ~1.5 ms, reusing one ~0.02 ms: it is remade only when
    ``sys.modules`` grew.
    """
    global _controller, _modules_seen
    fresh = _controller is None or len(sys.modules) != _modules_seen
    if not fresh and _users > 0:
        return
    try:
        if fresh:
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
            _modules_seen = len(sys.modules)
        _take_control()
        _limiters.append(_controller.limit(limits=1, user_api="blas"))
    except Exception:  # noqa: BLE001 - no threadpoolctl or no BLAS: run as it is
        pass


def _take_control() -> None:
    """Make the calling thread the one whose OpenBLAS limits threadpoolctl applies."""
    try:
        from threadpoolctl import OpenBLASController
    except ImportError:  # threadpoolctl < 3.2 has no such rule (and no such class)
        return
    clear = getattr(OpenBLASController, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)


@contextlib.contextmanager
def serial_blas() -> Iterator[None]:
    """Run BLAS on one thread inside the block; thread-safe, nestable, reference-counted.

    A query's matrix-vector products are small: a second BLAS thread only adds a hand-off,
    and on a busy machine a wait for a descheduled thread. Measured on the shared 2-core
    machine (benchmarks/bench_query.py): exact search over the demo model's 3.3k images
    7.5 ms with two BLAS threads, 0.6 ms with one; a whole re-ranking 16.5 ms against 1.2.
    """
    global _users
    with _lock:
        _limit()
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                if _limiters:
                    _take_control()
                while _limiters:
                    _limiters.pop().restore_original_limits()
