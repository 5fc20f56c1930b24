"""Several visitors at once: does the page serve them all, how fast, in how much memory?

Starts the real server (``streamlit run app.py`` on a free loopback port), opens
``--sessions`` browser sessions (Debian's Chromium through Playwright, one browser with one
context per session) and has them all upload a photo at the same moment, twice:

* round 1: the first photo of every session, on a fresh server (the sessions' first visits
  load the model, as in production, before the uploads start);
* round 2: new photos, with server and pages warm.

"Time to results" runs from the upload until the page shows that photo's results and
nothing older (the script run has finished).

Each session uploads a photo of the data set's ``test/`` folder; round 2 uses mirrored
copies, so no photo's features are already cached. Reports results received, errors, time
to results per session (median and max), and the peak resident memory of the server's
process tree (read from /proc). Only loopback traffic; bounded in sessions and time.

With ``--hostile``, one visitor plays normal: it uploads ``--normal-uploads`` new photos one
after the other on the idle server, then again from the attack's start until the attack
ends, their time to results measured. The ``--sessions`` hostile sessions each
upload the costly images of :mod:`benchmarks.hostile_images` (a 40 MP float TIFF named
``.png``, a 1 x 40,000,000 PNG, a progressive JPEG of 20,000 scans) and one more session
drops 100 files of 19 MB at once, all from a process of their own at nice 19 (its own
Playwright driver and browser, whose scheduler group gets that nice value too;
``--attacker-nice``): on one machine they would otherwise
take more CPU than the server (Playwright's driver alone reads and sends the flood's 1.9 GB),
where a real attacker runs on the attacker's machine. The server is
started as ``make run`` starts it. It reports the server's peak memory during the attack,
the normal visitor's p95 time to results against the same visitor on the idle server
before, and the server's memory after the hostile tabs are closed and Streamlit has
forgotten their sessions (``--settle`` seconds).

    python benchmarks/multi_session.py                 # 6 sessions, models/demo
    python benchmarks/multi_session.py --sessions 3 --model models/demo
    python benchmarks/multi_session.py --hostile --sessions 8 --model models/demo
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MAX_SESSIONS = 20
PAGE_SIZE = {"width": 1280, "height": 900}


# ------------------------------------------------------------------ the server process
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ")".
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def niceness(pid: int) -> int:
    """The nice value of process ``pid`` (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[16])
    except (OSError, IndexError, ValueError):
        return 0


def nice_new_autogroups(nice: int) -> None:
    """Give ``nice`` to the scheduler groups of this process's descendants.

    Playwright starts the browser in a session of its own. With Linux's autogroups
    (``/proc/sys/kernel/sched_autogroup_enabled``) a session is a scheduling group, and a
    process's nice value only weighs against its own group's: a niced browser would still
    take a full share of the CPU against the server. The group's own nice value fixes that."""

    def group(pid: int) -> str:
        try:
            with open(f"/proc/{pid}/autogroup") as fh:
                return fh.read().split()[0]
        except (OSError, IndexError):
            return ""

    own = group(os.getpid())
    for pid in process_tree(os.getpid()):
        if group(pid) not in ("", own):
            try:
                with open(f"/proc/{pid}/autogroup", "w") as fh:
                    fh.write(str(nice))
            except OSError:
                pass  # gone, or no autogroups here


def usage(pids: list[int]) -> tuple[int, float]:
    """(resident bytes, CPU seconds so far) summed over ``pids`` that are still alive."""
    rss, cpu = 0, 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            with open(f"/proc/{pid}/status") as fh:
                kib = next((int(line.split()[1]) for line in fh if line.startswith("VmRSS:")), 0)
        except (OSError, StopIteration):
            continue
        cpu += (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime
        rss += kib * 1024
    return rss, cpu


class Sampler(threading.Thread):
    """Every ``interval`` s: RSS of the server's process tree (peak kept), and CPU time
    of the server tree and of the browser (this script's other child processes)."""

    def __init__(self, server_pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.server_pid, self.interval = server_pid, interval
        self.peak = self.last = 0
        self.server_cpu = self.browser_cpu = self.attacker_cpu = 0.0
        self.timeline: list[tuple[float, float]] = []  # (perf_counter(), server CPU s)
        self._halt = threading.Event()

    def sample(self) -> None:
        server = process_tree(self.server_pid)
        self.last, self.server_cpu = usage(server)
        self.peak = max(self.peak, self.last)
        others = [p for p in process_tree(os.getpid()) if p not in server and p != os.getpid()]
        niced = [p for p in others if niceness(p) > 0]  # the attackers' browser, if apart
        self.browser_cpu = max(self.browser_cpu, usage([p for p in others if p not in niced])[1])
        self.attacker_cpu = max(self.attacker_cpu, usage(niced)[1])
        self.timeline.append((time.perf_counter(), self.server_cpu))

    def server_share(self, start: float, end: float) -> float:
        """The server's CPU use between ``start`` and ``end`` (perf_counter()), in cores."""
        inside = [(t, cpu) for t, cpu in self.timeline if start <= t <= end]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return 0.0
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def reset_peak(self) -> None:
        self.peak = self.last

    def stop(self) -> None:
        self._halt.set()
        self.join()


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    started: float  # time.perf_counter() when the process was spawned
    healthy_after: float  # seconds until /_stcore/health answered "ok"
    log: Path


@contextmanager
def streamlit_server(
    model: Path, dataset: Path | None, log: Path, timeout: float = 120, serve: bool = False
):
    """Run ``streamlit run app.py`` on a free loopback port; yield a :class:`Server`.
    ``serve``: start it as ``make run`` does, ``python -m recommender serve`` (the model
    loaded and warmed when the server starts)."""
    port = free_port()
    env = {**os.environ, "HASHTAG_MODEL": str(model), "TF_CPP_MIN_LOG_LEVEL": "2"}
    if dataset is not None:
        env["HASHTAG_DATASET"] = str(dataset)
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
    if serve:
        command = [sys.executable, "-m", "recommender", "serve", "--model", str(model)]
        command += ["--port", str(port), "--address", "127.0.0.1"]
    started = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}; see {log}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.read() == b"ok":
                        break
            except OSError:
                pass
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"streamlit did not answer within {timeout:.0f} s; see {log}")
            time.sleep(0.1)
        yield Server(url, proc, started, time.perf_counter() - started, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


# ------------------------------------------------------------------------ the browser
# True once the script run has finished and every element on the page is from that run.
PAGE_SETTLED = """() => {
    const app = document.querySelector('[data-testid=stApp]');
    return app && app.dataset.testScriptState === 'notRunning'
        && !document.querySelector('[data-stale=true]');
}"""

# The landing page's preload of the result view's code has ended (the promise it sets:
# recommender.ui.preload.browser_preload_html).
PRELOADED = """async () => window.hashtagPreload && (await window.hashtagPreload, true)"""


def results_caption(page, text: str):
    """The caption under the query photo: names it, and the number of neighbours used."""
    return page.locator(
        "[data-testid=stMain] [data-testid=stCaptionContainer]", has_text=re.compile(text)
    )


def mirrored_copies(photos: list[Path], folder: Path) -> list[Path]:
    """Left-right mirrored JPEG copies: new content, so no cached features apply."""
    from PIL import Image, ImageOps

    out = []
    for photo in photos:
        target = folder / f"{photo.stem}-mirrored.jpg"
        with Image.open(photo) as img:
            ImageOps.mirror(ImageOps.exif_transpose(img).convert("RGB")).save(target, quality=90)
        out.append(target)
    return out


@dataclass
class Outcome:
    session: int
    photo: str
    seconds: float | None = None  # upload until the page shows all of its results
    hashtags: str = ""
    error: str = ""
    first_result_at: float | None = None  # perf_counter() when the results appeared


@dataclass
class Round:
    name: str
    outcomes: list[Outcome] = field(default_factory=list)
    peak_rss: int = 0
    wall: float = 0.0
    server_cpu: float = 0.0  # CPU seconds the server used during the round
    browser_cpu: float = 0.0  # and the browser that played the visitors


async def one_upload(page, session: int, photo: Path, timeout_ms: int) -> Outcome:
    from playwright.async_api import expect

    outcome = Outcome(session, photo.name)
    start = time.perf_counter()
    try:
        await page.locator("input[type=file]").set_input_files(photo)
        caption = results_caption(page, re.escape(photo.stem) + ".*neighbours")
        done = asyncio.ensure_future(caption.wait_for(timeout=timeout_ms))
        failed = asyncio.ensure_future(
            page.locator("[data-testid=stMain] [data-testid=stAlertContentError]").first.wait_for(
                timeout=timeout_ms
            )
        )
        finished, pending = await asyncio.wait({done, failed}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if failed in finished and failed.exception() is None:
            outcome.error = "page shows an error"
            return outcome
        done.result()
        await page.wait_for_function(PAGE_SETTLED, timeout=timeout_ms, polling=50)
        outcome.seconds = time.perf_counter() - start
        outcome.first_result_at = time.perf_counter()
        code = page.locator("[data-testid=stMain] [data-testid=stCode]").first
        await expect(code).to_contain_text("#", timeout=timeout_ms)
        outcome.hashtags = (await code.inner_text()).strip()
        if await page.locator("[data-testid=stException]").count():
            outcome.error = "page shows an exception"
    except Exception as exc:  # a benchmark reports every failure and carries on
        outcome.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
    return outcome


async def drive(server: Server, rounds: list[list[Path]], sampler: Sampler, timeout: float):
    from playwright.async_api import async_playwright

    timeout_ms = int(timeout * 1000)
    results: list[Round] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pages = []
            for _ in rounds[0]:
                context = await browser.new_context(viewport=PAGE_SIZE)
                pages.append(await context.new_page())
            # Open every session first, so the uploads start together.
            await asyncio.gather(*(p.goto(server.url, timeout=timeout_ms) for p in pages))
            await asyncio.gather(
                *(
                    p.locator("input[type=file]").wait_for(state="attached", timeout=timeout_ms)
                    for p in pages
                )
            )
            await asyncio.gather(*(ready_for_photo(p, timeout_ms) for p in pages))
            names = ("round 1, first photos", "round 2, new photos, warm")
            for name, photos in zip(names, rounds, strict=False):
                sampler.reset_peak()
                cpu = (sampler.server_cpu, sampler.browser_cpu)
                start = time.perf_counter()
                outcomes = await asyncio.gather(
                    *(
                        one_upload(page, i + 1, photo, timeout_ms)
                        for i, (page, photo) in enumerate(zip(pages, photos, strict=True))
                    )
                )
                wall = time.perf_counter() - start
                sampler.sample()
                results.append(
                    Round(
                        name,
                        list(outcomes),
                        sampler.peak,
                        wall,
                        sampler.server_cpu - cpu[0],
                        sampler.browser_cpu - cpu[1],
                    )
                )
        finally:
            await browser.close()
    return results


# ---------------------------------------------------------------- the hostile visitors
def distinct_photos(photos: list[Path], count: int, folder: Path) -> list[Path]:
    """``count`` photos of new content (mirrored, flipped, rotated copies), so no cached
    features apply to any of them."""
    from PIL import Image, ImageOps

    turns = (ImageOps.mirror, ImageOps.flip, lambda im: im.rotate(180), lambda im: im)
    out = []
    for i in range(count):
        photo = photos[i % len(photos)]
        turn = turns[(i // len(photos)) % len(turns)]
        target = folder / f"{photo.stem}-v{i}.jpg"
        with Image.open(photo) as img:
            turn(ImageOps.exif_transpose(img).convert("RGB")).save(target, quality=88 + i % 5)
        out.append(target)
    return out


def hostile_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(the costly images, 100 files of 19 MB) written into ``folder``."""
    from benchmarks.hostile_images import float_tiff, many_scan_jpeg, wide_png

    costly = []
    for name, make in (
        ("holiday.png", float_tiff),  # a TIFF: Pillow opens by content
        ("panorama.png", wide_png),
        ("progressive.jpg", many_scan_jpeg),
    ):
        (folder / name).write_bytes(make())
        costly.append(folder / name)
    first = folder / "flood-000.jpg"
    first.write_bytes(os.urandom(19 * 1024 * 1024))
    flood = [first]
    for i in range(1, 100):
        flood.append(folder / f"flood-{i:03d}.jpg")
        os.link(first, flood[-1])
    return costly, flood


async def settle(page, timeout_ms: int) -> None:
    await page.wait_for_function(PAGE_SETTLED, timeout=timeout_ms, polling=100)


async def ready_for_photo(page, timeout_ms: int) -> None:
    """Until an open page is as a person finds it when they have picked a photo: its first
    run ended (a file set before that waits for it) and the result view's code loaded."""
    await page.get_by_text("Drop photos above").wait_for(timeout=timeout_ms)
    await settle(page, timeout_ms)
    await page.wait_for_function(PRELOADED, timeout=timeout_ms, polling=50)


async def new_session(browser, url: str, timeout_ms: int, ready: bool = False):
    """A new tab on the page; with ``ready``, once it is :func:`ready_for_photo`."""
    context = await browser.new_context(viewport=PAGE_SIZE)
    page = await context.new_page()
    await page.goto(url, timeout=timeout_ms)
    await page.locator("input[type=file]").wait_for(state="attached", timeout=timeout_ms)
    if ready:
        await ready_for_photo(page, timeout_ms)
    return context, page


# A session holds at most 20 photos (recommender.ui.uploads); a visitor with more opens the
# page anew, as a person would reload it.
PHOTOS_PER_TAB = 19


async def normal_visitor(
    browser,
    url: str,
    photos: list[Path],
    timeout_ms: int,
    until: asyncio.Future | None = None,
) -> list[Outcome]:
    """Upload ``photos`` one after the other; with ``until``, stop once it is done (or the
    photos run out)."""
    outcomes: list[Outcome] = []
    for first in range(0, len(photos), PHOTOS_PER_TAB):
        context, page = await new_session(browser, url, timeout_ms, ready=True)
        try:
            for photo in photos[first : first + PHOTOS_PER_TAB]:
                if until is not None and until.done():
                    return outcomes
                outcomes.append(await one_upload(page, 0, photo, timeout_ms))
        finally:
            await context.close()
    return outcomes


async def hostile_visitor(browser, url: str, files: list[Path], timeout_ms: int) -> str:
    """Upload ``files`` at once, wait until the page has answered them (an error for the
    newest, the others in the table) and settled; what the page and the upload box said."""
    context, page = await new_session(browser, url, timeout_ms)
    try:
        await page.locator("input[type=file]").set_input_files(files)
        answer = page.locator(
            "[data-testid=stMain] [data-testid=stAlertContentError], "
            "[data-testid=stMain] [data-testid=stException]"
        )
        await answer.first.wait_for(timeout=timeout_ms)
        for _ in range(2):  # uploads still arriving start new runs: wait them out
            await page.wait_for_timeout(2000)
            await settle(page, timeout_ms)
        shown = await answer.all_inner_texts()
        box = await page.locator("[data-testid=stFileUploader]").inner_text()
        return "\n".join(shown + box.splitlines())
    except Exception as exc:  # a benchmark reports every failure and carries on
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
    finally:
        await context.close()


ATTACKED_UPLOADS = 10  # the normal visitor's photos for the attack, per photo on the idle server


async def attackers_apart(
    url: str,
    costly: list[Path],
    flood: list[Path],
    sessions: int,
    timeout: float,
    nice: int,
) -> list[str]:
    """The hostile sessions from a child process at ``nice``: its own Playwright driver
    (which reads and sends the 1.9 GB of the flood) and its own browser; what each page said."""
    command = ["nice", "-n", str(nice), sys.executable, str(Path(__file__).resolve())]
    command += ["--attackers", url, "--sessions", str(sessions), "--timeout", str(timeout)]
    command += ["--costly", *map(str, costly), "--flood", *map(str, flood)]
    child = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    out, _ = await child.communicate()
    try:
        return list(json.loads(out.decode().strip().splitlines()[-1]))
    except (ValueError, IndexError):
        return [f"the attackers' process ended with {child.returncode}"]


def hostile_visits(browser, url: str, costly, flood, sessions: int, timeout_ms: int) -> list:
    """The attack's visits: ``sessions`` uploading the costly images, one the flood."""
    visits = [hostile_visitor(browser, url, costly, timeout_ms) for _ in range(sessions)]
    return [*visits, hostile_visitor(browser, url, flood, timeout_ms)]


async def attackers_main(url, costly, flood, sessions: int, timeout: float) -> list[str]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        nice_new_autogroups(os.nice(0))  # this process's nice value, for its browser too
        try:
            visits = hostile_visits(browser, url, costly, flood, sessions, int(timeout * 1000))
            return list(await asyncio.gather(*visits))
        finally:
            await browser.close()


@dataclass
class Attack:
    idle: list[Outcome]
    loaded: list[Outcome]
    hostile_pages: list[str]
    peak_rss: int
    before_rss: int
    closed_rss: int = 0
    settled_rss: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0  # CPU seconds of the server during the attack
    browser_cpu: float = 0.0  # and of Playwright + the browser playing the normal visitor
    attacker_cpu: float = 0.0  # and of the attackers' own process tree, when niced apart
    # The server's CPU use (cores) while the normal visitor's uploads ran, idle and attacked:
    # the attack reached the server during those uploads only if the second is higher.
    idle_share: float = 0.0
    loaded_share: float = 0.0


def uploads_window(outcomes: list[Outcome]) -> tuple[float, float]:
    """From the first upload's start to the last one's results (perf_counter())."""
    done = [o for o in outcomes if o.seconds is not None and o.first_result_at is not None]
    if not done:
        return 0.0, 0.0
    return (
        min(o.first_result_at - o.seconds for o in done),  # type: ignore[operator]
        max(o.first_result_at for o in done),  # type: ignore[type-var]
    )


async def attack(
    server: Server,
    sampler: Sampler,
    normal: list[Path],
    costly: list[Path],
    flood: list[Path],
    sessions: int,
    timeout: float,
    settle_seconds: float,
    attacker_nice: int = 0,
) -> Attack:
    from playwright.async_api import async_playwright

    timeout_ms = int(timeout * 1000)
    idle_count = (len(normal) - 1) // (1 + ATTACKED_UPLOADS)  # the first loads the model
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # The model is loaded by a first visit; then the idle server's latency.
            await normal_visitor(browser, server.url, normal[:1], timeout_ms)
            idle = await normal_visitor(browser, server.url, normal[1 : idle_count + 1], timeout_ms)
            sampler.sample()
            before = sampler.last
            sampler.reset_peak()
            cpu = (sampler.server_cpu, sampler.browser_cpu, sampler.attacker_cpu)
            start = time.perf_counter()
            # The normal visitor uploads from the attack's start for as long as it lasts
            # (or its photos do).
            if attacker_nice:  # their own Playwright and browser, at low priority
                hostile = asyncio.ensure_future(
                    attackers_apart(server.url, costly, flood, sessions, timeout, attacker_nice)
                )
            else:
                visits = hostile_visits(browser, server.url, costly, flood, sessions, timeout_ms)
                hostile = asyncio.ensure_future(asyncio.gather(*visits))
            loaded = await normal_visitor(
                browser, server.url, normal[idle_count + 1 :], timeout_ms, hostile
            )
            pages = list(await hostile)
            seconds = time.perf_counter() - start
            sampler.sample()
            out = Attack(idle, loaded, pages, sampler.peak, before)
            out.seconds = seconds
            out.server_cpu = sampler.server_cpu - cpu[0]
            out.browser_cpu = sampler.browser_cpu - cpu[1]
            out.attacker_cpu = sampler.attacker_cpu - cpu[2]
            out.closed_rss = sampler.last
            out.idle_share = sampler.server_share(*uploads_window(idle))
            out.loaded_share = sampler.server_share(*uploads_window(loaded))
        finally:
            await browser.close()
    # Streamlit forgets a closed tab's session after two minutes; the sweep frees its files.
    deadline = time.perf_counter() + settle_seconds
    while time.perf_counter() < deadline:
        await asyncio.sleep(1.0)
    sampler.sample()
    out.settled_rss = sampler.last
    return out


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def print_attack(result: Attack, sessions: int, settle_seconds: float) -> None:
    mib = 1024 * 1024
    print(f"hostile run: {sessions} sessions each uploading the costly images, one dropping")
    print("100 files of 19 MB, while one normal visitor uploads new photos one by one")
    for label, outcomes in (("idle server", result.idle), ("under attack", result.loaded)):
        times = [o.seconds for o in outcomes if o.seconds is not None and not o.error]
        errors = [o.error for o in outcomes if o.error]
        line = f"  normal visitor, {label}: {len(times)}/{len(outcomes)} results"
        if times:
            line += (
                f", median {statistics.median(times):.2f} s, p95 {p95(times):.2f} s, "
                f"max {max(times):.2f} s"
            )
        print(line + (f"; errors: {errors[:2]}" if errors else ""))
        slowest = sorted(times, reverse=True)[:5]
        print(f"    slowest: {', '.join(f'{t:.2f}' for t in slowest)} s")
    idle = [o.seconds for o in result.idle if o.seconds and not o.error]
    loaded = [o.seconds for o in result.loaded if o.seconds and not o.error]
    if idle and loaded:
        print(f"  p95 under attack / idle: {p95(loaded) / p95(idle):.2f}x (target: under 3x)")
    print(
        f"  server RSS: {result.before_rss / mib:.0f} MiB before the attack, peak "
        f"{result.peak_rss / mib:.0f} MiB during it (target: under 2.5 GB = 2384 MiB), "
        f"{result.closed_rss / mib:.0f} MiB when the tabs closed, "
        f"{result.settled_rss / mib:.0f} MiB {settle_seconds:.0f} s later"
    )
    attackers = (
        f", the attackers (niced: their Playwright and browser) {result.attacker_cpu:.1f} s"
        if result.attacker_cpu
        else ""
    )
    print(
        f"  attack wall time {result.seconds:.1f} s; CPU time in it: server "
        f"{result.server_cpu:.1f} s, browser {result.browser_cpu:.1f} s{attackers} "
        f"({os.cpu_count()} cores)"
    )
    print(
        f"  the server's CPU use while the normal visitor's uploads ran: idle "
        f"{result.idle_share:.2f} cores, under attack {result.loaded_share:.2f} cores"
    )
    for i, shown in enumerate(result.hostile_pages, 1):
        lines = [line.strip() for line in shown.splitlines() if line.strip()]
        refusals = sorted(
            {
                line[:100]
                for line in lines
                if not line.startswith("Up to")
                and any(w in line for w in ("too large", "scans", "At most", "not an image"))
            }
        )
        print(f"  hostile session {i}: {'; '.join(refusals) or shown.strip()[:150]!r}")


# -------------------------------------------------------------------------- reporting
def print_report(server: Server, results: list[Round], baseline_rss: int) -> None:
    mib = 1024 * 1024
    print(f"server answered its health check {server.healthy_after:.1f} s after start")
    print(f"server memory before any session: {baseline_rss / mib:.0f} MiB")
    first = [o.first_result_at for o in results[0].outcomes if o.first_result_at]
    if first:
        print(f"server start to first result on the page: {min(first) - server.started:.1f} s")
    for rnd in results:
        print()
        print(f"{rnd.name}: {len(rnd.outcomes)} sessions uploading at once")
        print(f"  {'session':>7}  {'photo':<24} {'seconds':>8}  result")
        for o in rnd.outcomes:
            secs = f"{o.seconds:8.2f}" if o.seconds is not None else f"{'-':>8}"
            shown = o.error or (o.hashtags[:60] + ("…" if len(o.hashtags) > 60 else ""))
            print(f"  {o.session:>7}  {o.photo:<24} {secs}  {shown}")
        times = [o.seconds for o in rnd.outcomes if o.seconds is not None and not o.error]
        errors = sum(1 for o in rnd.outcomes if o.error)
        print(
            f"  results received: {len(times)}/{len(rnd.outcomes)}   errors: {errors}   "
            + (
                f"time to results: median {statistics.median(times):.2f} s, "
                f"max {max(times):.2f} s   "
                if times
                else ""
            )
            + f"server peak RSS: {rnd.peak_rss / mib:.0f} MiB"
        )
        print(
            f"  round wall time {rnd.wall:.2f} s; CPU time used in it: server "
            f"{rnd.server_cpu:.2f} s, browser {rnd.browser_cpu:.2f} s ({os.cpu_count()} cores)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--sessions", type=int, default=6, help=f"1 to {MAX_SESSIONS}")
    parser.add_argument("--model", type=Path, default=None, help="default: $HASHTAG_MODEL")
    parser.add_argument("--photos", type=Path, default=None, help="default: <data set>/test")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per step")
    parser.add_argument("--hostile", action="store_true", help="the hostile-visitor run")
    parser.add_argument(
        "--normal-uploads",
        type=int,
        default=20,
        help="with --hostile: the normal visitor's on the idle server (and up to "
        f"{ATTACKED_UPLOADS}x as many during the attack, for as long as it lasts)",
    )
    parser.add_argument(
        "--settle", type=float, default=160.0, help="seconds to wait after the tabs close"
    )
    parser.add_argument(
        "--attacker-nice",
        type=int,
        default=19,
        help="with --hostile: run the attackers in a process of their own (Playwright and "
        "browser) at this nice value, standing in for their own machine (0: one browser "
        "for every visitor)",
    )
    parser.add_argument("--attackers", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--costly", nargs="*", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--flood", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.attackers:  # the child process of a --hostile run (attackers_apart)
        pages = asyncio.run(
            attackers_main(args.attackers, args.costly, args.flood, args.sessions, args.timeout)
        )
        print(json.dumps(pages))
        return 0
    if not 1 <= args.sessions <= MAX_SESSIONS:
        parser.error(f"--sessions must be between 1 and {MAX_SESSIONS}")
    if not Path(CHROMIUM).exists():
        parser.error(f"{CHROMIUM} is missing: apt-get install chromium")

    sys.path.insert(0, str(REPO))
    from recommender.paths import default_dataset, default_model
    from recommender.ui.presentation import example_photos

    model = (args.model or default_model()).resolve()
    photos = example_photos(args.photos or default_dataset() / "test")
    if not photos:
        parser.error("no photos: pass --photos DIR")
    if args.hostile:
        return hostile_main(args, model, photos)
    chosen = [photos[i % len(photos)] for i in range(args.sessions)]
    with tempfile.TemporaryDirectory(prefix="multi-session-") as tmp:
        second = mirrored_copies(
            [photos[(i + args.sessions) % len(photos)] for i in range(args.sessions)], Path(tmp)
        )
        log = Path(tmp) / "server.log"
        try:
            # served as make run serves it (python -m recommender serve)
            with streamlit_server(model, None, log, args.timeout, serve=True) as server:
                sampler = Sampler(server.process.pid)
                sampler.start()
                time.sleep(0.3)
                baseline = sampler.last
                try:
                    results = asyncio.run(drive(server, [chosen, second], sampler, args.timeout))
                finally:
                    sampler.stop()
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
            return 1
    print(f"model: {model}   sessions: {args.sessions}   cores: {os.cpu_count()}")
    print_report(server, results, baseline)
    return 0 if all(not o.error for r in results for o in r.outcomes) else 1


def hostile_main(args, model: Path, photos: list[Path]) -> int:
    with open("/proc/loadavg") as fh:
        load = " ".join(fh.read().split()[:3])
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        folder = Path(tmp)
        normal = distinct_photos(photos, 1 + args.normal_uploads * (1 + ATTACKED_UPLOADS), folder)
        costly, flood = hostile_files(folder)
        log = folder / "server.log"
        try:
            # served as make run serves it (python -m recommender serve)
            with streamlit_server(model, None, log, args.timeout, serve=True) as server:
                sampler = Sampler(server.process.pid)
                sampler.start()
                try:
                    result = asyncio.run(
                        attack(
                            server,
                            sampler,
                            normal,
                            costly,
                            flood,
                            args.sessions,
                            args.timeout,
                            args.settle,
                            args.attacker_nice,
                        )
                    )
                finally:
                    sampler.stop()
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
            return 1
    print(f"model: {model}   cores: {os.cpu_count()}   load average before: {load}")
    print_attack(result, args.sessions, args.settle)
    ok = result.peak_rss < 2.5e9 and all(not o.error for o in result.idle + result.loaded)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
