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
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = "DEMO: random weights, scores are not meaningful"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_start(home: Path, chromium: str, timeout: float = 300.0) -> dict:
    """Start a server on ``home``, open it, return the measured seconds."""
    from playwright.sync_api import sync_playwright

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMLIT_", "CUE_LENS_"))}
    env.update(CUE_LENS_HOME=str(home), CUE_LENS_OFFLINE="1")
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.port",
         str(port), "--server.headless", "true"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
            if time.monotonic() - t0 > timeout:
                raise RuntimeError("the server did not start")
        server = time.monotonic() - t0
        out = {"server": server}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
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
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
