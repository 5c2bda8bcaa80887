"""What the browser tests (and ``benchmarks/bench_cold_start.py``) share: the dashboard started
as a user starts it (``streamlit run app.py`` on 127.0.0.1, a free port, offline), a headless
Chromium page, and the waits and screenshots of a Streamlit page.

The tests import it as ``browser_support`` (pytest puts ``tests/`` on the path); the benchmark
puts ``tests/`` on its path itself. Playwright is imported where a page is opened, so that a
machine without it can still collect the tests and see them skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("CUE_LENS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]
VIEWPORT = {"width": 1440, "height": 1800}
START_TIMEOUT_S = 60
STEP_TIMEOUT_MS = 90_000
DEMO = "DEMO: random weights, scores are not meaningful"
MAX_SHOT_HEIGHT = 2400
# every Plotly chart on the page has drawn its SVG
DRAWN = """() => [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
    .every(e => e.querySelector('.main-svg'))"""
SCREENSHOT_HOME = Path("~/cue-lens-demo").expanduser()  # a path a reader recognises

# the marks of every browser test module (``pytestmark = BROWSER_MARKS``)
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.is_file(),
        reason=f"{CHROMIUM} not found: install Debian's chromium (.ci/run does) to run this test",
    ),
]


# -- the server -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_streamlit(home: Path, log, **env_extra: str) -> tuple[subprocess.Popen, str]:
    """``streamlit run app.py`` offline with ``CUE_LENS_HOME=home`` and no inherited
    ``STREAMLIT_*``/``CUE_LENS_*`` settings; its output goes to ``log`` (a file object or
    ``subprocess.DEVNULL``). Returns the process and its URL, not waiting for it to answer."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMLIT_", "CUE_LENS_"))}
    env.update(CUE_LENS_HOME=str(home), CUE_LENS_OFFLINE="1", **env_extra)
    command = [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py")]
    options = {
        "server.port": str(port),
        "server.address": "127.0.0.1",
        "server.headless": "true",
        "browser.gatherUsageStats": "false",
    }
    command += [part for key, value in options.items() for part in (f"--{key}", value)]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def wait_until_healthy(proc: subprocess.Popen, url: str, timeout: float) -> None:
    """Poll the server's health check until it answers ``ok``; RuntimeError when the process
    ends or ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200 and r.read().strip() == b"ok":
                    return
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"the server ended with code {proc.returncode} before answering")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not answer within {timeout:.0f} s")
        time.sleep(0.1)


def stop_server(proc: subprocess.Popen, wait_s: float = 20) -> None:
    proc.terminate()
    try:
        proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@contextlib.contextmanager
def run_server(home: Path, log_path: Path, **env_extra: str) -> Iterator[str]:
    """The dashboard as a user starts it, on ``home``; yields its URL, fails the test when it
    does not start or when its log shows a traceback."""
    with open(log_path, "w") as log:
        proc, url = start_streamlit(home, log, **env_extra)
        try:
            try:
                wait_until_healthy(proc, url, START_TIMEOUT_S)
            except RuntimeError as err:
                pytest.fail(f"server did not start ({err}):\n{log_path.read_text()[-3000:]}")
            yield url
        finally:
            stop_server(proc)
            log.flush()
            server_log = log_path.read_text()
            assert "Traceback" not in server_log, server_log[-3000:]


def demo_home_copy(tmp_path_factory, home: Path | None = None) -> Path:
    """A Cue Lens home holding the demo (built once, with the AppTests), copied so what a
    browser test does stays out of the AppTests' demo; into ``home`` when given (emptied
    first), else a temporary folder."""
    from detector.demo import ensure_demo

    shared = tmp_path_factory.getbasetemp() / "cue_lens_home"
    ensure_demo(shared)
    if home is None:
        home = tmp_path_factory.mktemp("home")
    else:
        shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(shared, home, dirs_exist_ok=True)
    return home


@pytest.fixture
def server(tmp_path_factory, tmp_path):
    """The dashboard in offline demo mode, data root ``tmp_path``; yields its URL. For the
    README's screenshots (``CUE_LENS_SCREENSHOTS`` set) the home is ``~/cue-lens-demo``, so
    the sidebar shows a path a reader recognises rather than a test's temporary folder."""
    shooting = bool(os.environ.get("CUE_LENS_SCREENSHOTS"))
    home = demo_home_copy(tmp_path_factory, SCREENSHOT_HOME if shooting else None)
    with run_server(home, tmp_path / "server.log", CUE_LENS_DATA_ROOT=str(tmp_path)) as url:
        yield url


# -- the browser ------------------------------------------------------------------------------


@contextlib.contextmanager
def chromium_page(pw, tmp_path: Path, viewport: dict = VIEWPORT):
    """A page of a new headless Chromium (``pw``: a started ``sync_playwright()``); yields
    ``(browser, page)``. On a failure the whole page is saved as ``tmp_path/failure.png``
    before the error goes on; the browser is closed in every case."""
    browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    page = browser.new_page(viewport=viewport)
    try:
        yield browser, page
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        print(f"the page at the failure: {tmp_path / 'failure.png'}")
        raise
    finally:
        browser.close()


def shots_dir(tmp_path: Path) -> Path:
    target = os.environ.get("CUE_LENS_SCREENSHOTS")
    folder = (REPO / target) if target and not Path(target).is_absolute() else Path(target or "")
    folder = folder if target else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def settle(page) -> None:
    """Wait until Streamlit has finished the current run (no running indicator)."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=STEP_TIMEOUT_MS)
    page.wait_for_timeout(700)


def wait_text(page, text: str, *, exact: bool = False) -> None:
    page.get_by_text(text, exact=exact).first.wait_for(timeout=STEP_TIMEOUT_MS)


def heading(page, name: str):
    return page.get_by_role("heading", name=name)


def scroll_to(page, name: str) -> None:
    """Bring a section's heading to the top of the view (Streamlit scrolls its own container)."""
    target = heading(page, name)
    target.wait_for(timeout=STEP_TIMEOUT_MS)
    target.evaluate("e => e.scrollIntoView({block: 'start'})")


def wait_chart(page, key: str) -> None:
    """A Plotly chart drawn by the page with ``key=...``: wait until its SVG is there."""
    chart = page.locator(f".st-key-{key} .main-svg").first
    chart.wait_for(timeout=STEP_TIMEOUT_MS)


def shoot(page, shots: Path, name: str, *, since: str | None = None, until=None) -> None:
    """Screenshot of the view once the run is over and every chart is drawn.

    ``since``: the heading of the section that starts the picture (scrolled to the top; where
    the page ends too early for that, the window is made shorter). ``until``: a locator below
    it that ends the picture just above, so no section is cut off (the window grows or
    shrinks to fit). The window returns to ``VIEWPORT`` afterwards.
    """
    settle(page)
    page.wait_for_function(DRAWN, timeout=STEP_TIMEOUT_MS)
    assert not page.locator('[data-testid="stSpinner"]').count(), f"{name}: a spinner"
    errors = page.locator('[data-testid="stAlertContentError"], [data-testid="stException"]')
    assert not errors.count(), f"{name}: {errors.all_inner_texts()}"
    page.mouse.move(VIEWPORT["width"] // 2, 1)  # no hover toolbar on a table or chart
    height = VIEWPORT["height"]
    if since is not None:
        scroll_to(page, since)
        height -= int(heading(page, since).bounding_box()["y"])  # 0 unless at the page's end
    if until is not None:
        box = until.first.bounding_box()
        assert box is not None, f"{name}: {until} not on the page"
        height = min(MAX_SHOT_HEIGHT, int(box["y"]) - 24)
    height = max(600, height)
    if height != VIEWPORT["height"]:
        page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
        if since is not None:
            scroll_to(page, since)
        settle(page)
    page.screenshot(path=str(shots / f"{name}.png"))
    page.set_viewport_size(VIEWPORT)
