"""What one visitor may make the page server hold (issue 26 §2): files and bytes per
session bounded, closed sessions' files freed, each upload decoded once."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import count_decodes
from PIL import Image
from starlette.exceptions import HTTPException
from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
from streamlit.runtime.uploaded_file_manager import UploadedFileRec

from recommender.ui import uploads
from recommender.vision import images


class Sessions:
    """The part of Streamlit's session manager the limits ask: is this session known?"""

    def __init__(self, *known: str) -> None:
        self.known = set(known)

    def get_session_info(self, session_id: str):
        return object() if session_id in self.known else None


class Runtime:
    def __init__(self, *known: str) -> None:
        self.uploaded_file_mgr = MemoryUploadedFileManager("/_stcore/upload_file")
        self._session_mgr = Sessions(*known)


def rec(file_id: str, size: int) -> UploadedFileRec:
    return UploadedFileRec(
        file_id=file_id, name=f"{file_id}.jpg", type="image/jpeg", data=b"x" * size
    )


def test_a_session_holds_at_most_max_files(monkeypatch):
    runtime = Runtime("s1", "s2")
    assert uploads.install_limits(runtime)
    mgr = runtime.uploaded_file_mgr
    for i in range(uploads.MAX_FILES):
        mgr.add_file("s1", rec(f"f{i}", 10))
    with pytest.raises(HTTPException) as err:
        mgr.add_file("s1", rec("one-more", 10))
    assert err.value.status_code == 413 and str(uploads.MAX_FILES) in err.value.detail
    mgr.add_file("s1", rec("f0", 20))  # the same file again replaces it
    mgr.add_file("s2", rec("other", 10))  # another visitor is not affected
    mgr.remove_file("s1", "f1")  # removed in the upload box: room for one more
    mgr.add_file("s1", rec("one-more", 10))
    assert len(mgr.file_storage["s1"]) == uploads.MAX_FILES


def test_a_session_holds_at_most_max_session_bytes():
    runtime = Runtime("s1")
    uploads.install_limits(runtime)
    mgr = runtime.uploaded_file_mgr
    big = 19 * 2**20  # 19 MB each, as the hostile visitor sent 100 of them
    held = 0
    refused = 0
    for i in range(100):
        try:
            mgr.add_file("s1", rec(f"f{i}", big))
            held += big
        except HTTPException:
            refused += 1
    assert held <= uploads.MAX_SESSION_BYTES and refused == 100 - held // big
    assert sum(len(f.data) for f in mgr.file_storage["s1"].values()) == held


def test_files_of_sessions_the_server_forgot_are_freed():
    runtime = Runtime("alive", "closed")
    uploads.install_limits(runtime)
    mgr = runtime.uploaded_file_mgr
    mgr.add_file("alive", rec("a", 10))
    mgr.add_file("closed", rec("b", 2**20))
    # The tab closed: Streamlit keeps the session two minutes for a reconnect, then forgets
    # it without shutting it down, and its uploads stayed for good.
    runtime._session_mgr.known.discard("closed")
    assert uploads.sweep(runtime) == 1
    assert "closed" not in mgr.file_storage and "a" in mgr.file_storage["alive"]
    assert mgr._total_bytes == 10 and mgr._file_count == 1


def test_install_limits_without_a_server_changes_nothing():
    assert uploads.install_limits() is False  # no Streamlit runtime in this process


def test_the_limits_line_names_files_bytes_pixels_and_scans():
    line = uploads.limits_line()
    for figure in (str(uploads.MAX_FILES), "100 MB", "20 MB", "40 megapixels", "100"):
        assert figure in line


def jpeg(size=(1600, 1200)) -> bytes:
    out = io.BytesIO()
    Image.linear_gradient("L").resize(size).convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


def test_an_upload_is_decoded_once_for_model_preview_and_thumbnail(monkeypatch):
    data = jpeg()
    calls = count_decodes(monkeypatch)
    ready = uploads.prepare_photo(data, 224)
    assert len(calls) == 1 and not ready.error
    monkeypatch.undo()  # decode as usual again
    assert np.array_equal(ready.pixels, images.load_for_model(data, 224))  # as the CLI sees it
    preview = Image.open(io.BytesIO(ready.preview))
    thumb = Image.open(io.BytesIO(ready.thumb))
    assert max(preview.size) == uploads.PREVIEW_SIDE and max(thumb.size) == uploads.THUMB_SIDE


def test_a_bad_upload_gives_its_reason_and_nothing_else():
    ready = uploads.prepare_photo(b"not an image", 224)
    assert ready.pixels is None and ready.preview == b"" and "not an image" in ready.error


def _put(session: str, file_id: str, length: int | None) -> dict:
    headers = [(b"host", b"127.0.0.1")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {
        "type": "http",
        "method": "PUT",
        "path": f"/_stcore/upload_file/{session}/{file_id}",
        "headers": headers,
    }


def _call(gate, scope) -> tuple[list[dict], list[dict]]:
    """Run the ASGI ``gate`` on ``scope``: (what it sent, what reached the app behind it)."""
    import asyncio

    sent, reached = [], []

    async def receive():
        raise AssertionError("the body was read")

    async def send(message):
        sent.append(message)

    gate.app = lambda scope, receive, send: _app(scope, reached)
    asyncio.run(gate(scope, receive, send))
    return sent, reached


async def _app(scope, reached):
    reached.append(scope)


def test_the_upload_gate_refuses_from_the_headers_what_add_file_would_refuse():
    """The flood's 6th file of 19 MB (and a 21st file) is refused before its body is read,
    with the same message; uploads within the bounds, other requests, other sessions and
    uploads without a length go through to Streamlit."""
    runtime = Runtime("s1", "s2")
    uploads.install_limits(runtime)
    mgr = runtime.uploaded_file_mgr
    big = 19 * 2**20
    for i in range(5):
        mgr.add_file("s1", rec(f"f{i}", big))
    gate = uploads.UploadGate(None, runtime)
    sent, reached = _call(gate, _put("s1", "f5", big + 300))
    assert sent[0]["status"] == 413 and not reached
    assert sent[1]["body"].decode() == uploads.session_problem(5, 5 * big, big)
    for scope in (
        _put("s1", "f0", big + 300),  # the same file again replaces it
        _put("s1", "small", 2**20),  # still room for 1 MB
        _put("s2", "f5", big + 300),  # another visitor
        _put("s1", "f5", None),  # no length: Streamlit's own checks
        {**_put("s1", "f5", big), "method": "GET"},
        {"type": "websocket", "path": "/_stcore/stream", "headers": []},
    ):
        sent, reached = _call(gate, scope)
        assert not sent and reached == [scope]
    for i in range(uploads.MAX_FILES):
        mgr.add_file("s2", rec(f"g{i}", 10))
    sent, _ = _call(gate, _put("s2", "one-more", 10))
    assert sent[0]["status"] == 413 and str(uploads.MAX_FILES).encode() in sent[1]["body"]


def test_serve_puts_the_upload_gate_in_front_of_streamlits_server():
    from streamlit.web.server.starlette import starlette_app

    assert uploads.install_upload_gate()
    assert uploads.install_upload_gate()  # once
    stack = starlette_app.create_streamlit_middleware()
    assert stack[0].cls is uploads.UploadGate
    assert sum(m.cls is uploads.UploadGate for m in stack) == 1
