"""How fast does the page answer one visitor? Cold start, an upload, a slider move.

Starts the real server (``streamlit run app.py`` on a free loopback port) and drives one
Chromium session through Playwright, timing what the visitor waits for:

* cold: from spawning the server to the first hashtags on the page (includes loading the
  model: on the first visit with ``streamlit run``, when the server starts with
  ``python -m recommender serve``, as ``make run`` does);
* page open: the first visitor's wait from opening the page (right after the server
  answers its health check) to the upload box, which the page shows once it has the model;
* first upload: the first visitor's first photo, from the upload (the page already open)
  until its results are shown; the goal is at most twice a warm upload;
* upload: a new photo (never seen by the server) until its results are shown;
* slider: one step of the neighbours slider (n) until the page shows the re-ranked result.

    python benchmarks/page_latency.py                  # models/demo, 5 repeats
    python benchmarks/page_latency.py --serve          # started as make run starts it
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from multi_session import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PAGE_SETTLED,
    PAGE_SIZE,
    PRELOADED,
    REPO,
    mirrored_copies,
    results_caption,
    streamlit_server,
)


def wait_for_results(page, caption: str, timeout_ms: int) -> None:
    """Until the caption names the expected result and the page holds nothing older."""
    results_caption(page, caption).wait_for(timeout=timeout_ms)
    page.wait_for_function(PAGE_SETTLED, timeout=timeout_ms, polling=50)


def measure(url: str, started: float, photos: list[Path], repeats: int, timeout_ms: int):
    from playwright.sync_api import sync_playwright

    from recommender.ui.presentation import N_DEFAULT

    uploads, slides = [], []
    n = N_DEFAULT  # the page's neighbours slider at first
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport=PAGE_SIZE).new_page()
            opened = time.perf_counter()
            page.goto(url, timeout=timeout_ms)
            uploader = page.locator("input[type=file]")
            uploader.wait_for(state="attached", timeout=timeout_ms)
            ready = time.perf_counter() - opened
            # The page's first run goes on below the upload box for a moment: a file set
            # before it ends waits for it (and measured that run, not the upload; no person
            # picks a file that fast).
            page.get_by_text("Drop photos above").wait_for(timeout=timeout_ms)
            page.wait_for_function(PAGE_SETTLED, timeout=timeout_ms, polling=50)
            # Then the landing page loads the result view's code while the visitor picks a
            # photo (recommender.ui.preload.browser_preload_html); a person takes longer.
            settled = time.perf_counter()
            page.wait_for_function(PRELOADED, timeout=timeout_ms, polling=50)
            preloaded = time.perf_counter() - settled
            first_start = time.perf_counter()
            uploader.set_input_files(photos[0])
            wait_for_results(page, re.escape(photos[0].stem) + f".* {n} neighbours", timeout_ms)
            cold = time.perf_counter() - started
            first = time.perf_counter() - first_start
            # Let the first page finish (plotly.js loads on the first chart) before timing.
            page.locator(".js-plotly-plot").nth(1).wait_for(timeout=timeout_ms)
            page.wait_for_timeout(1000)

            slider = page.locator("[data-testid=stSidebar] input[type=range]").first
            for photo in photos[1 : repeats + 1]:
                start = time.perf_counter()
                uploader.set_input_files(photo)
                wait_for_results(page, re.escape(photo.stem) + f".* {n} neighbours", timeout_ms)
                uploads.append(time.perf_counter() - start)

                slider.focus()
                start = time.perf_counter()
                page.keyboard.press("ArrowRight")
                n += 1
                wait_for_results(page, f"· {n} neighbours", timeout_ms)
                slides.append(time.perf_counter() - start)
        finally:
            browser.close()
    return cold, ready, preloaded, first, uploads, slides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", type=Path, default=None, help="default: $HASHTAG_MODEL")
    parser.add_argument("--photos", type=Path, default=None, help="default: <data set>/test")
    parser.add_argument("--repeats", type=int, default=5, help="uploads and slider moves, 1-9")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per step")
    parser.add_argument(
        "--serve",
        action="store_true",
        help="start the server with python -m recommender serve (as make run does)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.repeats <= 9:
        parser.error("--repeats must be between 1 and 9")
    if not Path(CHROMIUM).exists():
        parser.error(f"{CHROMIUM} is missing: apt-get install chromium")

    sys.path.insert(0, str(REPO))
    from recommender.paths import default_dataset, default_model
    from recommender.ui.presentation import example_photos

    model = (args.model or default_model()).resolve()
    photos = example_photos(args.photos or default_dataset() / "test")
    if len(photos) < 2:
        parser.error("need at least two photos: pass --photos DIR")
    with tempfile.TemporaryDirectory(prefix="page-latency-") as tmp:
        # Mirrored copies are photos the server has never seen: nothing cached applies.
        fresh = mirrored_copies(
            [photos[i % len(photos)] for i in range(args.repeats + 1)], Path(tmp)
        )
        log = Path(tmp) / "server.log"
        with streamlit_server(model, None, log, args.timeout, serve=args.serve) as server:
            cold, ready, preloaded, first, uploads, slides = measure(
                server.url, server.started, fresh, args.repeats, int(args.timeout * 1000)
            )
    print(f"model: {model}")
    print(f"server health check answered after   {server.healthy_after:6.2f} s")
    print(f"server start to first result (cold)  {cold:6.2f} s")
    print(f"first visitor: page open to upload box {ready:6.2f} s")
    print(f"then, the result view's code loaded in {preloaded:6.2f} s")
    warm = statistics.median(uploads)
    print(f"first visitor's first upload         {first:6.2f} s  ({first / warm:.1f}x a warm one)")
    for name, times in (("upload of a new photo", uploads), ("slider move (n + 1)", slides)):
        print(
            f"{name:<36} median {statistics.median(times):5.2f} s  max {max(times):5.2f} s"
            f"  (each: {', '.join(f'{t:.2f}' for t in times)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
