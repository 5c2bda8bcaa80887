"""The released concept-model comparison and the survival section in a real browser, in demo
mode, with the released files from ``../shared/clip-cues`` (through ``CUE_LENS_RELEASED_DIR``).

Saves ``concepts_released.png`` and ``generators_survival.png`` into ``tmp_path``, or into
``$CUE_LENS_SCREENSHOTS`` when set (``docs/screenshots`` for the README). Skipped without
``/usr/bin/chromium`` (see ``tests/test_browser.py``) or without ``../shared/clip-cues``.
"""

from __future__ import annotations

import pytest
from browser_support import (
    BROWSER_MARKS,
    DEMO,
    STEP_TIMEOUT_MS,
    chromium_page,
    demo_home_copy,
    heading,
    run_server,
    settle,
    shoot,
    shots_dir,
    wait_chart,
    wait_text,
)

pytestmark = BROWSER_MARKS


@pytest.fixture
def released_server(tmp_path_factory, tmp_path, clip_cues_dir):
    """``streamlit run app.py`` in offline demo mode, the released files at hand."""
    home = demo_home_copy(tmp_path_factory)
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
    with sync_playwright() as pw, chromium_page(pw, tmp_path) as (_, page):
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
    for name in ("concepts_released", "generators_survival"):
        assert (shots / f"{name}.png").stat().st_size > 10_000, name
