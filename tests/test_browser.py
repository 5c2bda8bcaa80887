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

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("CUE_LENS_CHROMIUM", "/usr/bin/chromium"))
VIEWPORT = {"width": 1440, "height": 1800}
START_TIMEOUT_S = 60
STEP_TIMEOUT_MS = 90_000
DEMO = "DEMO: random weights, scores are not meaningful"
PERTURBATIONS = ("jpeg:50", "crop:0.5")  # the robustness sweep: small, one chart per family
MAX_SHOT_HEIGHT = 2400
# every Plotly chart on the page has drawn its SVG
DRAWN = """() => [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
    .every(e => e.querySelector('.main-svg'))"""
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


@contextlib.contextmanager
def run_server(home: Path, log_path: Path, **env_extra: str):
    """``streamlit run app.py`` as a user starts it, offline, with ``CUE_LENS_HOME=home``;
    yields its URL and fails the test if the server log shows a traceback."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMLIT_", "CUE_LENS_"))}
    env.update(CUE_LENS_HOME=str(home), CUE_LENS_OFFLINE="1", **env_extra)
    log = open(log_path, "w")  # noqa: SIM115 - closed below
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
                pytest.fail(f"server did not start:\n{log_path.read_text()}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
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


SCREENSHOT_HOME = Path("~/cue-lens-demo").expanduser()  # a path a reader recognises


@pytest.fixture
def server(tmp_path_factory, tmp_path):
    """The dashboard in offline demo mode, data root ``tmp_path``; yields its URL. For the
    README's screenshots (``CUE_LENS_SCREENSHOTS`` set) the home is ``~/cue-lens-demo``, so
    the sidebar shows a path a reader recognises rather than a test's temporary folder."""
    shooting = bool(os.environ.get("CUE_LENS_SCREENSHOTS"))
    home = demo_home_copy(tmp_path_factory, SCREENSHOT_HOME if shooting else None)
    with run_server(home, tmp_path / "server.log", CUE_LENS_DATA_ROOT=str(tmp_path)) as url:
        yield url


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


def scroll_to(page, heading: str) -> None:
    """Bring a section's heading to the top of the view (Streamlit scrolls its own container)."""
    target = page.get_by_role("heading", name=heading)
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


def heading(page, name: str):
    return page.get_by_role("heading", name=name)


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


def test_upload_verdict_pages_and_screenshots(samples_dir, server, tmp_path):
    from playwright.sync_api import sync_playwright

    shots = shots_dir(tmp_path)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport=VIEWPORT)
        try:
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
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            print(f"the page at the failure: {tmp_path / 'failure.png'}")
            raise
        finally:
            browser.close()
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
    ):
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport=VIEWPORT)
        try:
            # 3. cold start: the sidebar never lists the raw page files; a notice comes first
            start = time.monotonic()
            page.goto(url)
            first_notice = ready = None
            while ready is None and time.monotonic() - start < START_TIMEOUT_S * 3:
                links = page.locator('[data-testid="stSidebar"] a').all_inner_texts()
                assert not RAW_MENU & {t.strip() for t in links}, links
                shown = (
                    page.get_by_text("Starting Cue Lens").count() + page.get_by_text(DEMO).count()
                )
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
            other.get_by_role("button", name="Download results (CSV)").wait_for(
                timeout=STEP_TIMEOUT_MS
            )
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
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            print(f"the page at the failure: {tmp_path / 'failure.png'}")
            raise
        finally:
            browser.close()
