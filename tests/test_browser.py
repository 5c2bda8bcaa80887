"""The real dashboard in a real browser: ``streamlit run app.py`` on 127.0.0.1 (a free port),
driven by headless Debian Chromium through Playwright.

It uploads a sample image, waits for the verdict and the attribution chart, visits every page
(Generators must show its AP table) and saves a screenshot of each page: into ``tmp_path``,
or into ``$CUE_LENS_SCREENSHOTS`` when set (``docs/screenshots`` for the README, see
docs/dashboard.md). ``.ci/run`` installs Chromium when it is missing; without
``/usr/bin/chromium`` the test is skipped with that reason.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("CUE_LENS_CHROMIUM", "/usr/bin/chromium"))
VIEWPORT = {"width": 1440, "height": 1800}
START_TIMEOUT_S = 60
STEP_TIMEOUT_MS = 90_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.is_file(),
        reason=f"{CHROMIUM} not found: install Debian's chromium (.ci/run does) to run this test",
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path_factory, tmp_path):
    """The dashboard as a user starts it, in offline demo mode; yields its URL."""
    from detector.demo import ensure_demo

    home = tmp_path_factory.getbasetemp() / "cue_lens_home"  # shared with the AppTests
    ensure_demo(home)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMLIT_", "CUE_LENS_"))}
    env.update(CUE_LENS_HOME=str(home), CUE_LENS_OFFLINE="1", CUE_LENS_DATA_ROOT=str(tmp_path))
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(REPO / "app.py"),
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not start:\n{(tmp_path / 'server.log').read_text()}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        server_log = (tmp_path / "server.log").read_text()
        assert "Traceback" not in server_log, server_log[-3000:]


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


def test_upload_verdict_pages_and_screenshots(server, samples_dir, tmp_path):
    from playwright.sync_api import sync_playwright

    shots = shots_dir(tmp_path)
    sample = samples_dir / "synthetic" / "marco-willi__clip-cues__synthetic1.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(server)
            page.get_by_text("DEMO: random weights, scores are not meaningful").first.wait_for(
                timeout=STEP_TIMEOUT_MS
            )
            page.locator('input[type="file"]').first.set_input_files(str(sample))
            verdict = (
                page.locator("h3")
                .filter(has_text="Likely real")
                .or_(page.locator("h3").filter(has_text="Likely synthetic"))
                .or_(page.locator("h3").filter(has_text="Inconclusive"))
            )
            verdict.first.wait_for(timeout=STEP_TIMEOUT_MS)
            page.get_by_text("Concepts behind the verdict").first.wait_for(timeout=STEP_TIMEOUT_MS)
            page.get_by_text("Nearest images in the workspace", exact=True).wait_for(
                timeout=STEP_TIMEOUT_MS
            )
            settle(page)
            page.screenshot(path=str(shots / "detect.png"))

            batch = (
                sorted((samples_dir / "real").glob("*.png"))[:2]
                + sorted((samples_dir / "synthetic").glob("*.png"))[:2]
            )
            page.locator('input[type="file"]').first.set_input_files([str(p) for p in batch])
            page.get_by_text("Inspect one image (most synthetic first)").wait_for(
                timeout=STEP_TIMEOUT_MS
            )
            page.get_by_role("button", name="Download results (CSV)").wait_for(
                timeout=STEP_TIMEOUT_MS
            )
            settle(page)
            page.screenshot(path=str(shots / "detect_batch.png"))

            for name, marker in (
                ("Generators", "AP per generator"),
                ("Concepts", "What the detector relies on"),
                ("Data", "Register a dataset and extract embeddings"),
            ):
                page.get_by_role("link", name=name).click()
                page.get_by_role("heading", name=marker).wait_for(timeout=STEP_TIMEOUT_MS)
                if name == "Generators":
                    page.get_by_text("mAP (shared pairing)").wait_for(timeout=STEP_TIMEOUT_MS)
                    page.locator('[data-testid="stDataFrame"]').first.wait_for(
                        timeout=STEP_TIMEOUT_MS
                    )
                    settle(page)
                    compute = page.get_by_role("button", name="Compute the transfer matrix")
                    if compute.count():
                        compute.click()  # a background job; the page polls it
                    page.get_by_text("Train × test mAP").first.wait_for(timeout=STEP_TIMEOUT_MS)
                settle(page)
                assert page.get_by_text("DEMO: random weights, scores are not meaningful").count()
                page.screenshot(path=str(shots / f"{name.lower()}.png"))
                if name == "Generators":  # the lower half: transfer and side by side
                    heading = page.get_by_role("heading", name="Cross-generator transfer")
                    heading.evaluate("e => e.scrollIntoView({block: 'start'})")
                    settle(page)
                    page.screenshot(path=str(shots / "generators_transfer.png"))
            assert not page.get_by_text("Traceback").count()
        finally:
            browser.close()
    for name in ("detect", "detect_batch", "generators", "generators_transfer", "concepts", "data"):
        assert (shots / f"{name}.png").stat().st_size > 10_000
