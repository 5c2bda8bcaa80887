"""The released concept-model comparison and the survival section in a real browser, in demo
mode, with the released files from ``../shared/clip-cues`` (through ``CUE_LENS_RELEASED_DIR``).

Saves ``concepts_released.png`` and ``generators_survival.png`` into ``tmp_path``, or into
``$CUE_LENS_SCREENSHOTS`` when set (``docs/screenshots`` for the README). Skipped without
``/usr/bin/chromium`` (see ``tests/test_browser.py``) or without ``../shared/clip-cues``.
"""

from __future__ import annotations

import shutil

import pytest
from test_browser import (
    CHROMIUM,
    DEMO,
    STEP_TIMEOUT_MS,
    VIEWPORT,
    heading,
    run_server,
    settle,
    shoot,
    shots_dir,
    wait_chart,
    wait_text,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.is_file(),
        reason=f"{CHROMIUM} not found: install Debian's chromium (.ci/run does) to run this test",
    ),
]


@pytest.fixture
def released_server(tmp_path_factory, tmp_path, clip_cues_dir):
    """``streamlit run app.py`` in offline demo mode, the released files at hand."""
    from detector.demo import ensure_demo

    shared = tmp_path_factory.getbasetemp() / "cue_lens_home"
    ensure_demo(shared)
    home = tmp_path_factory.mktemp("home_cues")
    shutil.copytree(shared, home, dirs_exist_ok=True)
    with run_server(
        home,
        tmp_path / "server.log",
        CUE_LENS_DATA_ROOT=str(tmp_path),
        CUE_LENS_RELEASED_DIR=str(clip_cues_dir),
        CUE_LENS_CACHE=str(tmp_path / "cache"),
    ) as url:
        yield url


def test_released_comparison_and_survival_screenshots(released_server, tmp_path):
    from playwright.sync_api import sync_playwright

    shots = shots_dir(tmp_path)
    released = "How the paper's four detectors differ: concept shift between domains"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport=VIEWPORT)
        try:
            page.goto(released_server)
            wait_text(page, DEMO)
            page.get_by_role("link", name="Concepts").click()
            heading(page, released).wait_for(timeout=STEP_TIMEOUT_MS)
            wait_chart(page, "released_shift")
            wait_chart(page, "released_corr")
            wait_text(page, "Real learned weights")
            shoot(page, shots, "concepts_released", since=released)
            page.get_by_role("link", name="Generators").click()
            survival = "Do explanations survive where detection collapses?"
            heading(page, survival).wait_for(timeout=STEP_TIMEOUT_MS)
            wait_chart(page, "survival_scatter")
            settle(page)
            shoot(page, shots, "generators_survival", since=survival)
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            print(f"the page at the failure: {tmp_path / 'failure.png'}")
            raise
        finally:
            browser.close()
    for name in ("concepts_released", "generators_survival"):
        assert (shots / f"{name}.png").stat().st_size > 10_000, name
