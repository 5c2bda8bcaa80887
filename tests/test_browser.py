"""The real dashboard in a real browser: ``streamlit run app.py`` on 127.0.0.1 (a free port),
driven by headless Debian Chromium through Playwright.

One browser session, on a copy of the demo workspace: it uploads a sample image (verdict,
attribution chart, neighbours), then four more (table, CSV); on Generators it waits for the AP
table, computes the transfer matrix and runs a robustness sweep of two perturbations picked in
the perturbation picker (AP-versus-strength charts); it opens Concepts; on Data it waits for
the bias audit (run at once for the demo's 192 files) and trains a linear probe (live loss
curves). Each view is saved once every chart is drawn, with no spinner or error box: into
``tmp_path``, or into ``$CUE_LENS_SCREENSHOTS`` when set (``docs/screenshots`` for the README,
see docs/dashboard.md; the demo home is then ``~/cue-lens-demo``, a path a reader recognises).

A second session lives a new user's first minutes (``test_first_ten_minutes_of_a_new_user``):
no raw file menu at start, an explanation unchanged by other sessions' uploads, a counted
failure, the workspace kept in the URL over a reload, the README's sample manifest accepted,
chart legends clear of their titles. ``.ci/run`` installs Chromium when it is missing; without
``/usr/bin/chromium`` or ``../shared/samples`` the test is skipped with that reason.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path

from browser_support import (  # noqa: F401 (server is a fixture)
    BROWSER_MARKS,
    DEMO,
    START_TIMEOUT_S,
    STEP_TIMEOUT_MS,
    VIEWPORT,
    chromium_page,
    demo_home_copy,
    heading,
    run_server,
    scroll_to,
    server,
    settle,
    shoot,
    shots_dir,
    wait_chart,
    wait_text,
)

PERTURBATIONS = ("jpeg:50", "crop:0.5")  # the robustness sweep: small, one chart per family
SCREENSHOTS = (
    "detect",
    "detect_batch",
    "generators",
    "generators_transfer",
    "generators_robustness",
    "concepts",
    "data",
    "data_audit",
    "data_training",
)

pytestmark = BROWSER_MARKS


def detect(page, samples_dir: Path, shots: Path) -> None:
    sample = samples_dir / "synthetic" / "marco-willi__clip-cues__synthetic1.png"
    page.locator('input[type="file"]').first.set_input_files(str(sample))
    verdict = (
        page.locator("h3")
        .filter(has_text="Likely real")
        .or_(page.locator("h3").filter(has_text="Likely synthetic"))
        .or_(page.locator("h3").filter(has_text="Inconclusive"))
    )
    verdict.first.wait_for(timeout=STEP_TIMEOUT_MS)
    wait_text(page, "Concepts behind the verdict")
    wait_text(page, "Nearest images in the workspace", exact=True)
    shoot(page, shots, "detect")

    batch = (
        sorted((samples_dir / "real").glob("*.png"))[:2]
        + sorted((samples_dir / "synthetic").glob("*.png"))[:2]
    )
    broken = Path(tempfile.mkdtemp()) / "broken.png"
    broken.write_bytes(b"this is not an image")  # the table shows its reason next to the verdict
    page.locator('input[type="file"]').first.set_input_files([str(p) for p in [*batch, broken]])
    wait_text(page, "Inspect one image (most synthetic first)")
    page.get_by_role("button", name="Download results (CSV)").wait_for(timeout=STEP_TIMEOUT_MS)
    shoot(page, shots, "detect_batch", until=page.get_by_text("Inspect one image"))


def generators(page, shots: Path) -> None:
    page.get_by_role("link", name="Generators").click()
    page.get_by_role("heading", name="AP per generator").wait_for(timeout=STEP_TIMEOUT_MS)
    wait_text(page, "mAP (shared pairing)")
    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=STEP_TIMEOUT_MS)
    settle(page)
    compute = page.get_by_role("button", name="Compute the transfer matrix")
    if compute.count():
        compute.click()  # a background job; the page polls it
    wait_text(page, "Train × test mAP")
    wait_chart(page, "transfer_heatmap")
    shoot(page, shots, "generators", until=heading(page, "Cross-generator transfer"))
    wait_chart(page, "sbs_profile")  # the lower half: transfer and side by side
    robustness = heading(page, "Robustness to image processing")
    shoot(page, shots, "generators_transfer", since="Cross-generator transfer", until=robustness)

    # robustness: a sweep of two perturbations, typed into the picker
    scroll_to(page, "Robustness to image processing")
    picker = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Perturbations")
    picker.get_by_role("button", name="Clear all").click()
    settle(page)
    field = picker.locator("input")
    for name in PERTURBATIONS:
        field.click()
        field.fill(name)
        # the option itself: Enter would take the first entry, "Select all matches"
        page.get_by_role("option", name=name, exact=True).click()
        settle(page)
    page.keyboard.press("Escape")
    wait_text(page, f"× {len(PERTURBATIONS)} perturbations")
    for name in PERTURBATIONS:
        assert picker.get_by_text(name, exact=True).count(), f"{name} not picked"
    page.get_by_role("button", name="Run the sweep").click()
    page.get_by_role("button", name="Re-run").wait_for(timeout=STEP_TIMEOUT_MS)
    for family in {p.split(":")[0] for p in PERTURBATIONS}:
        wait_chart(page, f"rob_curve_{family}")
    wait_text(page, "Lowest mAP (")
    shoot(page, shots, "generators_robustness", since="Robustness to image processing")


def data(page, shots: Path) -> None:
    page.get_by_role("link", name="Data").click()
    page.get_by_role("heading", name="Register a dataset and extract embeddings").wait_for(
        timeout=STEP_TIMEOUT_MS
    )
    # the demo's 192 labelled files are audited when the page opens
    wait_text(page, "Each property alone, as a classifier of real vs synthetic")
    wait_chart(page, "audit_figure")
    shoot(page, shots, "data", until=heading(page, "Detector heads and model cards"))
    shoot(page, shots, "data_audit", since="Dataset bias audit")

    scroll_to(page, "Train a detector head")
    form = page.locator('[data-testid="stForm"]').filter(has_text="Validate on")
    form.get_by_role("button", name="Train").click()
    wait_text(page, "(linear probe): done in")
    wait_text(page, "Loss per epoch on the training and validation images")
    curves = page.locator('[data-testid="stPlotlyChart"]').filter(has_text="best epoch")
    curves.locator(".main-svg").first.wait_for(timeout=STEP_TIMEOUT_MS)
    heads = heading(page, "Detector heads and model cards")
    shoot(page, shots, "data_training", since="Train a detector head", until=heads)


def test_upload_verdict_pages_and_screenshots(samples_dir, server, tmp_path):  # noqa: F811
    from playwright.sync_api import sync_playwright

    shots = shots_dir(tmp_path)
    with sync_playwright() as pw, chromium_page(pw, tmp_path) as (_, page):
        page.goto(server)
        wait_text(page, DEMO)
        detect(page, samples_dir, shots)
        generators(page, shots)
        page.get_by_role("link", name="Concepts").click()
        page.get_by_role("heading", name="What the detector relies on").wait_for(
            timeout=STEP_TIMEOUT_MS
        )
        shoot(page, shots, "concepts", until=heading(page, "One concept up close"))
        data(page, shots)
        assert page.get_by_text(DEMO).count()
        assert not page.get_by_text("Traceback").count()
    for name in SCREENSHOTS:
        assert (shots / f"{name}.png").stat().st_size > 10_000, name


# -- the first ten minutes of a new user ------------------------------------------------------

RAW_MENU = {"app", "detect", "concepts", "generators", "data"}  # pages/ file names
ATTR_TICKS = """() => [...document.querySelectorAll(
    '[class*="st-key-attr_"] .yaxislayer-above text')].map(t => t.textContent)"""


def boxes_intersect(a: dict, b: dict) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


def explanation_of(page, image: Path) -> tuple[str, list[str]]:
    """Upload one image; the explanation's caption (surrogate version, reference set) and the
    concept bars' labels."""
    page.locator('input[type="file"]').first.set_input_files(str(image))
    wait_text(page, "Concepts behind the verdict")
    settle(page)
    caption = page.get_by_text("Explanation: surrogate v").first
    caption.wait_for(timeout=STEP_TIMEOUT_MS)
    return caption.inner_text(), page.evaluate(ATTR_TICKS)


def test_first_ten_minutes_of_a_new_user(samples_dir, tmp_path_factory, tmp_path):
    """Cold start without a raw file menu and with the banner at once; an explanation that
    other sessions' uploads do not change; a batch whose failures are counted; the
    workspace kept in the URL over a reload; the README's sample manifest accepted; chart
    legends clear of their titles."""
    from playwright.sync_api import sync_playwright

    from detector.demo import ensure_demo

    home = demo_home_copy(tmp_path_factory)
    mine = home / "my-workspace"  # a workspace of the user's own (the Cue Lens home is allowed)
    shutil.copytree(ensure_demo(home).workspace, mine)
    probe = samples_dir / "synthetic" / "marco-willi__clip-cues__synthetic1.png"
    others = sorted((samples_dir / "real").glob("*.jpg"))[:6]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    # no CUE_LENS_DATA_ROOT: the defaults a newcomer gets
    with (
        run_server(home, tmp_path / "server.log") as url,
        sync_playwright() as pw,
        chromium_page(pw, tmp_path) as (browser, page),
    ):
        # 3. cold start: the sidebar never lists the raw page files; a notice comes first
        start = time.monotonic()
        page.goto(url)
        first_notice = ready = None
        while ready is None and time.monotonic() - start < START_TIMEOUT_S * 3:
            links = page.locator('[data-testid="stSidebar"] a').all_inner_texts()
            assert not RAW_MENU & {t.strip() for t in links}, links
            shown = page.get_by_text("Starting Cue Lens").count() + page.get_by_text(DEMO).count()
            if first_notice is None and shown:
                first_notice = time.monotonic() - start
            if page.locator('input[type="file"]').count() and page.get_by_text(DEMO).count():
                ready = time.monotonic() - start
            page.wait_for_timeout(100)
        assert first_notice is not None and ready is not None
        print(f"cold start, demo built: notice {first_notice:.1f} s, ready {ready:.1f} s")

        # 1. an explanation is a function of (head, image): other sessions' uploads
        before = explanation_of(page, probe)
        # the caption names the surrogate's version and its reference set (the demo head's
        # training split, or the demo's labelled images)
        assert re.search(r"surrogate v\d+ on .+ of demo", before[0]), before[0]
        assert any("↔" in t for t in before[1])
        other = browser.new_page(viewport=VIEWPORT)
        other.goto(url)
        wait_text(other, DEMO)
        other.locator('input[type="file"]').first.set_input_files(
            [str(p) for p in others] + [str(broken)]
        )
        # 2. the failure is counted and its reason is on the page
        other.get_by_role("button", name="Download results (CSV)").wait_for(timeout=STEP_TIMEOUT_MS)
        settle(other)
        failed = other.locator('[data-testid="stMetric"]').filter(has_text="Failed")
        assert failed.locator('[data-testid="stMetricValue"]').inner_text().strip() == "1"
        other.close()
        fresh = browser.new_page(viewport=VIEWPORT)  # nothing memorised in this session
        fresh.goto(url)
        wait_text(fresh, DEMO)
        assert explanation_of(fresh, probe) == before
        fresh.close()

        # 4. the workspace lives in the URL: a reload (and another page) keeps it
        page.goto(f"{url}/?workspace={mine}")
        wait_text(page, DEMO)
        page.locator('[data-testid="stSidebar"]').get_by_text("my-workspace").first.wait_for(
            timeout=STEP_TIMEOUT_MS
        )
        page.reload()
        page.locator('[data-testid="stSidebar"]').get_by_text("my-workspace").first.wait_for(
            timeout=STEP_TIMEOUT_MS
        )
        assert "workspace=" in page.url and "head=" in page.url

        # 6. on Generators the legends stay clear of the titles
        page.get_by_role("link", name="Generators").click()
        page.get_by_role("heading", name="AP per generator").wait_for(timeout=STEP_TIMEOUT_MS)
        for key in ("pr", "roc"):
            wait_chart(page, key)
            legend = page.locator(f".st-key-{key} .legend").first.bounding_box()
            title = page.locator(f".st-key-{key} .gtitle").first.bounding_box()
            assert legend and title and not boxes_intersect(legend, title), key
        assert "workspace=" in page.url  # kept over a page change

        # 5. the README's sample manifest is accepted as written
        page.get_by_role("link", name="Data").click()
        field = page.get_by_label("Dataset folder or CSV manifest")
        field.fill("../shared/samples/manifest.csv")
        field.press("Enter")
        page.get_by_role("button", name="Check dataset").click()
        settle(page)
        page.locator('[data-testid="stMetric"]').filter(has_text="Files").first.wait_for(
            timeout=STEP_TIMEOUT_MS
        )
        assert not page.get_by_text("outside the allowed data folders").count()
