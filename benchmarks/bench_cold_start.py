"""Cold start of the dashboard as a user lives it: `streamlit run app.py`, one browser tab.

    .venv/bin/python benchmarks/bench_cold_start.py [--runs 2] [--chromium /usr/bin/chromium]

Each run starts a new server process (offline, demo mode) and opens the page in headless
Chromium, polling every 0.1 s from the moment the tab is opened. Printed per run, in seconds:

- ``notice``: the first thing on screen that says what is happening (the start-up progress
  notice or the DEMO banner);
- ``banner``: the DEMO banner;
- ``ready``: the Detect page usable (upload box and banner drawn, no demo progress bar).

Two kinds of run: ``fresh`` (an empty ``CUE_LENS_HOME``: the demo dataset is generated and
its head trained) and ``later`` (the same home again: the demo is reused). The server's own
start (until its health check answers) is printed apart as ``server``. Timings depend on the
machine and its load; run it on a quiet machine for figures to quote.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the browser tests' server helpers, shared with them

from browser_support import (  # noqa: E402
    CHROMIUM_ARGS,
    DEMO,
    start_streamlit,
    stop_server,
    wait_until_healthy,
)


def one_start(home: Path, chromium: str, timeout: float = 300.0) -> dict:
    """Start a server on ``home``, open it, return the measured seconds."""
    from playwright.sync_api import sync_playwright

    t0 = time.monotonic()
    proc, url = start_streamlit(home, subprocess.DEVNULL)
    try:
        wait_until_healthy(proc, url, timeout)
        server = time.monotonic() - t0
        out = {"server": server}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            start = time.monotonic()
            page.goto(url)
            while "ready" not in out and time.monotonic() - start < timeout:
                now = time.monotonic() - start
                banner = page.get_by_text(DEMO).count() > 0
                notice = banner or page.get_by_text("Starting Cue Lens").count() > 0
                if notice:
                    out.setdefault("notice", now)
                if banner:
                    out.setdefault("banner", now)
                preparing = page.get_by_text("Preparing the offline demo").count() > 0
                if banner and not preparing and page.locator('input[type="file"]').count():
                    out["ready"] = now
                page.wait_for_timeout(100)
            browser.close()
        return out
    finally:
        stop_server(proc, wait_s=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="fresh and later starts each")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    results: dict[str, list[dict]] = {"fresh": [], "later": []}
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="cue-lens-cold-") as tmp:
            home = Path(tmp)
            for kind in ("fresh", "later"):
                r = one_start(home, args.chromium)
                results[kind].append(r)
                nan = float("nan")
                print(
                    f"{kind:>5}: server {r['server']:.1f} s · notice {r.get('notice', nan):.1f} s"
                    f" · banner {r.get('banner', nan):.1f} s · ready {r.get('ready', nan):.1f} s",
                    flush=True,
                )
    for kind, rows in results.items():
        ready = [r["ready"] for r in rows if "ready" in r]
        if ready:
            median = statistics.median(ready)
            print(f"{kind} start, ready after (median of {len(ready)}): {median:.1f} s")


if __name__ == "__main__":
    main()
