"""What one visitor may make the page server hold: uploads per session, bounded and freed,
and each upload decoded once.

Streamlit keeps every file a session uploads in memory until the session shuts down, with
no bound on their number, and a session that closes its tab is only forgotten (after two
minutes), not shut down: its files stayed for good. :func:`install_limits` puts a bound on
the files (:data:`MAX_FILES`) and bytes (:data:`MAX_SESSION_BYTES`) each session holds,
refusing the upload that would go over (HTTP 413, shown in the upload box), and frees the
files of sessions the server no longer knows, every :data:`SWEEP_SECONDS`.

:func:`prepare_photo` decodes an upload once (a JPEG at reduced scale) into everything the
page shows of it: the model input, a preview and a thumbnail.
"""

from __future__ import annotations

import io
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from recommender.errors import RecommenderError

MAX_FILE_MB = 20  # .streamlit/config.toml: server.maxUploadSize
MAX_FILES = 20
MAX_SESSION_BYTES = 100 * 1024 * 1024
SWEEP_SECONDS = 30.0
PREVIEW_SIDE = 640
THUMB_SIDE = 96

_installed: dict[int, Any] = {}
_install_lock = threading.Lock()


def limits_line() -> str:
    """The limits in one line, for the page."""
    from recommender.vision.images import MAX_JPEG_SCANS, MAX_PIXELS

    return (
        f"Up to {MAX_FILES} photos and {MAX_SESSION_BYTES // 2**20} MB at a time, "
        f"{MAX_FILE_MB} MB and {MAX_PIXELS / 1e6:g} megapixels each "
        f"(JPEGs of at most {MAX_JPEG_SCANS} progressive scans)."
    )


def session_problem(held_files: int, held_bytes: int, new_bytes: int) -> str | None:
    """Why a session holding ``held_files`` files of ``held_bytes`` bytes may not add one of
    ``new_bytes``, or None."""
    if held_files >= MAX_FILES:
        return f"At most {MAX_FILES} photos at a time: remove some first."
    if held_bytes + new_bytes > MAX_SESSION_BYTES:
        return f"At most {MAX_SESSION_BYTES // 2**20} MB of photos at a time: remove some first."
    return None


def _problem_adding(store: dict, lock, session_id: str, file_id: str, new_bytes: int) -> str | None:
    """:func:`session_problem` for a session of Streamlit's upload ``store`` adding (or
    replacing) the file ``file_id`` of ``new_bytes``."""
    with lock:
        others = [f for fid, f in store.get(session_id, {}).items() if fid != file_id]
        return session_problem(len(others), sum(len(f.data) for f in others), new_bytes)


def _upload_store(runtime=None):
    """(runtime, its upload manager, the manager's in-memory store and lock) of ``runtime``,
    by default the running Streamlit's; None when there is no server (as under ``AppTest``)
    or its upload store is not the in-memory one this knows."""
    if runtime is None:
        from streamlit.runtime import Runtime, exists

        if not exists():
            return None
        runtime = Runtime.instance()
    manager = runtime.uploaded_file_mgr
    store = getattr(manager, "file_storage", None)
    lock = getattr(manager, "_lock", None)
    if not isinstance(store, dict) or lock is None:
        return None
    return runtime, manager, store, lock


def install_limits(runtime=None) -> bool:
    """Bound and sweep the uploads of a running Streamlit server (once per server); False
    when there is no server to change (as under ``AppTest``) or its upload store is not
    the in-memory one this knows."""
    found = _upload_store(runtime)
    if found is None or not hasattr(found[1], "add_file"):
        return False
    runtime, manager, store, lock = found
    with _install_lock:
        if id(manager) in _installed:
            return True
        original_add = manager.add_file

        def add_file(session_id: str, file) -> None:
            sweep(runtime)
            problem = _problem_adding(store, lock, session_id, file.file_id, len(file.data))
            if problem:
                _refuse(problem)
            original_add(session_id, file)

        manager.add_file = add_file
        _installed[id(manager)] = manager
        _big_blocks_from_mmap()
        threading.Thread(
            target=_sweep_forever, args=(runtime,), name="upload-sweep", daemon=True
        ).start()
    return True


# What a multipart upload adds to its file: boundaries, headers, the file name.
_MULTIPART_SLACK = 16 * 1024
_UPLOAD_PATH = re.compile(r"/_stcore/upload_file/([^/]+)/([^/]+)$")


class UploadGate:
    """ASGI middleware: an upload that would take its session over :func:`session_problem`'s
    bounds is refused from its headers (``Content-Length``), before its body is read.

    Streamlit reads and parses an upload's whole body before anything else may refuse it
    (``add_file`` in :func:`install_limits`): a flood of 19 MB files held the server's event
    loop, and every other visitor waited. ``runtime`` defaults to the running Streamlit's.
    """

    def __init__(self, app, runtime=None) -> None:
        self.app = app
        self._runtime = runtime

    def _problem(self, scope) -> str | None:
        found = _UPLOAD_PATH.search(scope.get("path", ""))
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if found is None or not length.isdigit():
            return None  # not an upload, or no length: Streamlit's own checks decide
        upload_store = _upload_store(self._runtime)
        if upload_store is None:
            return None
        _runtime, _manager, store, lock = upload_store
        session_id, file_id = found.groups()
        new_bytes = max(0, int(length) - _MULTIPART_SLACK)
        return _problem_adding(store, lock, session_id, file_id, new_bytes)

    async def __call__(self, scope, receive, send) -> None:
        if scope.get("type") == "http" and scope.get("method") == "PUT":
            problem = self._problem(scope)
            if problem:
                body = problem.encode()
                await send({
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [
                        (b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close"),
                    ],
                })  # fmt: skip
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def install_upload_gate() -> bool:
    """Put :class:`UploadGate` in front of the Streamlit server this process will start
    (``serve`` calls it before starting Streamlit); False when this Streamlit builds its
    server differently (the limits of :func:`install_limits` still hold)."""
    try:
        from starlette.middleware import Middleware
        from streamlit.web.server.starlette import starlette_app
    except ImportError:
        return False
    make = getattr(starlette_app, "create_streamlit_middleware", None)
    if make is None:
        return False
    if getattr(make, "_gated", False):
        return True

    def with_gate() -> list:
        return [Middleware(UploadGate), *make()]

    with_gate._gated = True  # type: ignore[attr-defined]
    starlette_app.create_streamlit_middleware = with_gate
    return True


def _refuse(message: str) -> None:
    try:
        from starlette.exceptions import HTTPException
    except ImportError:  # another server: refuse all the same
        raise RecommenderError(message) from None
    raise HTTPException(status_code=413, detail=message)


def sweep(runtime) -> int:
    """Free the uploads of sessions the server no longer knows; how many sessions."""
    manager = runtime.uploaded_file_mgr
    sessions = runtime._session_mgr
    gone = [sid for sid in list(manager.file_storage) if sessions.get_session_info(sid) is None]
    for sid in gone:
        manager.remove_session_files(sid)
    if gone:
        _give_back_memory()
    return len(gone)


def _sweep_forever(runtime) -> None:
    while True:
        time.sleep(SWEEP_SECONDS)
        try:
            sweep(runtime)
        except Exception:  # never let the sweeper die; the next pass tries again
            pass


def _big_blocks_from_mmap() -> None:
    """Have glibc serve blocks of 1 MiB and more (uploads, request bodies) from mmap, so
    that freeing them returns the memory; otherwise its threshold grows to 32 MB after the
    first big free, and 19 MB uploads stay in the heap after they are dropped."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def _give_back_memory() -> None:
    """Ask glibc to return freed heap pages to the system (big uploads leave them behind)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@dataclass(frozen=True)
class PreparedPhoto:
    """An upload decoded once: the model input, a preview and a thumbnail (JPEG bytes), or
    why it cannot be used."""

    pixels: np.ndarray | None
    preview: bytes
    thumb: bytes
    error: str = ""

    def model_input(self):
        """The decoded model input as an image ``embed_many`` takes as it is (a resize to
        its own size is a copy): the upload is not decoded again."""
        from PIL import Image

        return None if self.pixels is None else Image.fromarray(self.pixels)


def prepare_photo(data: bytes, size: int) -> PreparedPhoto:
    """Decode ``data`` once (see :func:`recommender.vision.images.open_reduced`) into the
    ``size`` x ``size`` model input, a preview of at most :data:`PREVIEW_SIDE` pixels and a
    thumbnail of :data:`THUMB_SIDE`; the full image is not kept."""
    from PIL import Image

    from recommender.vision import images

    try:
        rgb = images.open_reduced(data, size)
        pixels = images.to_model_input(rgb, size)
        previews = []
        small = rgb.copy()  # thumbnail() shrinks in place: the preview, then the thumbnail
        for side in (PREVIEW_SIDE, THUMB_SIDE):
            small.thumbnail((side, side), Image.Resampling.LANCZOS)
            out = io.BytesIO()
            small.save(out, "JPEG", quality=85)
            previews.append(out.getvalue())
    except RecommenderError as exc:
        return PreparedPhoto(None, b"", b"", str(exc))
    return PreparedPhoto(pixels, previews[0], previews[1])
