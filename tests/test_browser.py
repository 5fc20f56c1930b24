"""The page in a real browser: `streamlit run app.py` driven by Playwright through Chromium.

Uses Debian's Chromium (/usr/bin/chromium; CI runs `apt-get install -y chromium`), never a
browser downloaded by a test tool. The server listens on a free loopback port only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from recommender.data.hashtags import load_blocklist
from recommender.ui.presentation import N_DEFAULT, hashtag_line

pytestmark = [pytest.mark.slow, pytest.mark.browser]

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
START_TIMEOUT = 90  # seconds for the server to answer its health check
RESULT_TIMEOUT_MS = 90_000
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}
# Set to a folder to keep the screenshots (the phone's first screen, the desktop page).
SCREENSHOTS = os.environ.get("HASHTAG_SCREENSHOTS")


def outside_requests(context, url: str) -> list[str]:
    """A list that fills with every request of ``context`` that leaves the machine (any
    host but the page's own server; data: and blob: URLs stay in the browser)."""
    own = url.rstrip("/") + "/"
    leaving: list[str] = []

    def check(request) -> None:
        target = request.url
        if not (target.startswith(own) or target.startswith(("data:", "blob:"))):
            leaving.append(target)

    context.on("request", check)
    return leaving


def screenshot(page, tmp_path: Path, name: str, full_page: bool = False) -> None:
    path = Path(SCREENSHOTS or tmp_path) / name
    page.screenshot(path=str(path), full_page=full_page)
    print(f"screenshot: {path}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def streamlit_server(env: dict[str, str], log: Path) -> Iterator[str]:
    """Run ``streamlit run app.py`` on a free loopback port; yield its URL; stop it."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(REPO / "app.py"),
        "--server.address=127.0.0.1",
        f"--server.port={port}",
        "--server.headless=true",
        "--browser.gatherUsageStats=false",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as a whole below
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.read() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start in {START_TIMEOUT} s:\n{log.read_text()}")
            time.sleep(0.3)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def upload_and_wait(page, url: str | None, photo, expected):
    """Open the page (unless ``url`` is None: it is open), upload ``photo`` and wait for its
    5 to paste; the hashtag blocks."""
    from playwright.sync_api import expect

    if url is not None:
        page.goto(url)
    uploader = page.locator("input[type=file]")
    uploader.wait_for(state="attached", timeout=RESULT_TIMEOUT_MS)
    uploader.set_input_files(photo)
    blocks = page.locator("[data-testid=stMain] [data-testid=stCode]")
    expect(blocks.first).to_have_text(hashtag_line(expected.tags[:5]), timeout=RESULT_TIMEOUT_MS)
    return blocks


def test_upload_in_a_real_browser(demo_build, demo_model, dataset_path, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    photo = dataset_path / "test" / "food.jpg"
    if not photo.is_file():
        pytest.skip(f"the example photo {photo} is missing")
    expected = demo_model.recommend(photo, n_neighbours=N_DEFAULT, k=10, blocklist=load_blocklist())
    env = {"HASHTAG_MODEL": str(demo_build[0]), "HASHTAG_DATASET": str(dataset_path)}

    with (
        streamlit_server(env, tmp_path / "server.log") as url,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 2300})
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
            leaving = outside_requests(context, url)
            page = context.new_page()
            page.goto(url)
            # While the visitor picks a photo, the landing page loads the result view's code
            # (Plotly alone is 4.7 MB), so that the first result shows as fast as the next.
            page.get_by_text("Drop photos above").wait_for(timeout=RESULT_TIMEOUT_MS)
            page.wait_for_function("() => window.hashtagPreload", timeout=RESULT_TIMEOUT_MS)
            loaded = page.evaluate("async () => (await window.hashtagPreload).map(r => r.status)")
            assert loaded and set(loaded) == {"fulfilled"}, loaded
            late = []
            page.on("request", lambda r: "/static/js/" in r.url and late.append(r.url))
            blocks = upload_and_wait(page, None, photo, expected)
            expect(blocks.nth(1)).to_have_text(hashtag_line(expected.tags))
            expect(page.locator(".js-plotly-plot")).to_have_count(2, timeout=RESULT_TIMEOUT_MS)
            expect(
                page.get_by_text(f"The {N_DEFAULT} most similar training photos")
            ).to_be_visible()
            expect(page.locator("[data-testid=stImage] img")).to_have_count(1)  # the photo
            expect(page.locator(".neighbour-grid img")).to_have_count(N_DEFAULT)
            assert page.locator("[data-testid=stException]").count() == 0

            # One click copies the top 5, ready to paste into Instagram.
            blocks.first.hover()
            blocks.first.get_by_role("button", name="Copy to clipboard").click()
            copied = page.evaluate("navigator.clipboard.readText()")
            assert copied.strip() == hashtag_line(expected.tags[:5])

            page.wait_for_timeout(500)  # let the charts finish their entrance transition
            sidebar = page.locator("[data-testid=stSidebar]").bounding_box()
            assert sidebar["x"] >= 0 and sidebar["width"] >= 250  # open on a wide screen

            # Several photos: one table row each. The uploader keeps the photo dropped
            # before, so these three make four.
            photos = sorted((dataset_path / "test").glob("*.jpg"))[:3]
            page.locator("input[type=file]").set_input_files(photos)
            expect(page.get_by_text("4 photos")).to_be_visible(timeout=RESULT_TIMEOUT_MS)
            expect(page.get_by_role("button", name="Download CSV")).to_be_visible(
                timeout=RESULT_TIMEOUT_MS  # the rest of the page follows the table's heading
            )
            assert page.locator("[data-testid=stException]").count() == 0
            assert not late, f"the result view loaded code the landing page did not: {late}"
            # At 1440 px every column of the table is in view: nothing to scroll sideways.
            page.set_viewport_size(DESKTOP)
            page.wait_for_timeout(500)
            grid = page.locator("[data-testid=stDataFrame] .dvn-scroller").first
            widths = grid.evaluate("e => [e.scrollWidth, e.clientWidth]")
            assert widths[0] <= widths[1] + 1, widths
            page.evaluate("window.scrollTo(0, 0)")
            screenshot(page, tmp_path, "desktop.png")
            assert not leaving, f"requests left the machine: {leaving}"
            context.close()

            # A phone, 390 px wide, opening a shared link: the sidebar starts collapsed and
            # the link's example photo is shown.
            phone = browser.new_context(viewport=PHONE)
            leaving = outside_requests(phone, url)
            page = phone.new_page()
            page.goto(f"{url}/?example=food&n={N_DEFAULT}&k=10")
            blocks = page.locator("[data-testid=stMain] [data-testid=stCode]")
            expect(blocks.first).to_have_text(
                hashtag_line(expected.tags[:5]), timeout=RESULT_TIMEOUT_MS
            )
            page.wait_for_timeout(500)
            sidebar = page.locator("[data-testid=stSidebar]").bounding_box()
            assert sidebar is None or sidebar["x"] + sidebar["width"] <= 0, sidebar
            title = page.get_by_role("heading", name="Hashtag recommender").bounding_box()
            assert 0 <= title["x"] < 390  # the page itself is in view, not under the sidebar

            # After an upload on the phone, the 5 to paste and their copy button are on the
            # first screen, without scrolling.
            page = phone.new_page()
            blocks = upload_and_wait(page, url, photo, expected)
            page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(500)
            top = blocks.first.bounding_box()
            assert top["y"] >= 0 and top["y"] + top["height"] <= PHONE["height"], top
            blocks.first.hover()
            copy = blocks.first.get_by_role("button", name="Copy to clipboard").bounding_box()
            assert copy["y"] + copy["height"] <= PHONE["height"], copy
            screenshot(page, tmp_path, "phone.png")
            # The nearest photos two to a row, thumbnails never blown up.
            cards = page.locator(".neighbour-grid .neighbour")
            first, second, third = (cards.nth(i).bounding_box() for i in range(3))
            assert first["y"] == second["y"] < third["y"] and first["x"] < second["x"]
            sizes = page.locator(".neighbour-grid img").evaluate_all(
                "imgs => imgs.map(i => [i.clientWidth, i.naturalWidth])"
            )
            assert all(0 < shown <= natural for shown, natural in sizes), sizes
            assert not leaving, f"requests left the machine: {leaving}"
            phone.close()
        finally:
            browser.close()
