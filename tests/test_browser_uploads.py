"""The Detect page's uploader with a dozen files whose names differ only near their end, in a
real browser (Streamlit + headless Chromium, the server of ``test_browser``).

Streamlit's chips shorten a long name in the middle ("summer-…-edited.png" for all twelve)
and used to scroll their third row out of sight. The page lists the drop itself under the
uploader: every full name must be visible text on the page, and no file chip may be cut by
the chip box around it.
"""

from __future__ import annotations

import io

from browser_support import (  # noqa: F401 (server is a fixture)
    BROWSER_MARKS,
    DEMO,
    STEP_TIMEOUT_MS,
    chromium_page,
    server,
    settle,
    wait_text,
)

pytestmark = BROWSER_MARKS

N_FILES = 12
PREFIX = "summer-holiday-2026-beach-sunset-camera-roll-export-shot-"
# every chip of the uploader against the chip box that holds it: the part of each chip that
# lies outside the box's visible area, in pixels (0 when whole), and the box's hidden height
CLIPPING = """() => {
    const box = document.querySelector('.st-key-detect_upload [data-testid="stFileChips"]');
    if (!box) return null;
    const outer = box.getBoundingClientRect();
    const chips = [...box.querySelectorAll('[data-testid="stFileChip"]')].map(c => {
        const r = c.getBoundingClientRect();
        return Math.max(0, outer.top - r.top, r.bottom - outer.bottom,
                        outer.left - r.left, r.right - outer.right);
    });
    return {chips, hidden: box.scrollHeight - box.clientHeight};
}"""


def images(folder) -> list:
    """``N_FILES`` small distinct PNGs named ``PREFIX`` + a number + ``-edited.png``."""
    from PIL import Image

    paths = []
    for i in range(N_FILES):
        img = Image.new("RGB", (96 + 8 * i, 80), (20 * i % 256, 120, 255 - 15 * i))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        path = folder / f"{PREFIX}{i + 1:02d}-edited.png"
        path.write_bytes(buf.getvalue())
        paths.append(path)
    return paths


def test_every_dropped_file_name_is_readable_and_no_chip_is_clipped(server, tmp_path):  # noqa: F811
    from playwright.sync_api import sync_playwright

    files = images(tmp_path)
    with sync_playwright() as pw, chromium_page(pw, tmp_path) as (_, page):
        page.goto(server)
        wait_text(page, DEMO)
        page.locator('input[type="file"]').first.set_input_files([str(p) for p in files])
        page.get_by_role("button", name="Download results (CSV)").wait_for(timeout=STEP_TIMEOUT_MS)
        settle(page)
        chips = page.locator('.st-key-detect_upload [data-testid="stFileChip"]')
        assert chips.count() == N_FILES  # the chips themselves are still there
        for path in files:
            shown = page.get_by_text(path.name, exact=True)
            assert any(e.is_visible() for e in shown.all()), f"{path.name} not readable"
        clipping = page.evaluate(CLIPPING)
        assert clipping is not None, "no chip box on the page"
        assert len(clipping["chips"]) == N_FILES
        assert max(clipping["chips"]) < 1, clipping  # every chip whole inside its box
        assert clipping["hidden"] <= 1, clipping  # no row scrolled out of sight
        page.screenshot(path=str(tmp_path / "dropped.png"))  # for a look by eye
