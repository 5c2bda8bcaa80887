"""The dashboard under load: four browser sessions upload 25 images each to one server.

A real ``streamlit run app.py`` server on a free port of 127.0.0.1, in demo mode (tiny-clip,
offline, a workspace under a temporary ``CUE_LENS_HOME``), driven by headless Chromium through
Playwright. One session uploads one image first (the server then holds the backbone, the
demo head and its caches: the memory baseline); then four sessions, each in its own browser
context, upload 25 distinct images at the same time and download their results table.

Checked: every session gets a verdict for each of its 25 files, and only for its own files
(names and SHA-256 of the bytes it sent); the server's resident memory after the run is
within ``MEMORY_BOUND_MB`` of its memory after the first upload; the workspace passes
SQLite's integrity check and holds every upload once. Figures are printed (run with ``-s``)
and quoted in docs/robustness.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from tests.conftest import REPO

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("CUE_LENS_CHROMIUM", "/usr/bin/chromium"))
SESSIONS = 4
IMAGES_PER_SESSION = 25
MEMORY_BOUND_MB = 300  # growth allowed between the first upload and the end of the run
START_TIMEOUT_S = 90
RESULT_TIMEOUT_S = 150


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB, from /proc (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def _image(session: int, index: int) -> bytes:
    """A distinct PNG per (session, index): its own colours, texture and a drawn label."""
    rng = np.random.default_rng(1000 * session + index)
    base = np.array([(200, 60, 60), (60, 160, 60), (60, 60, 200), (180, 160, 40)][session % 4])
    pixels = np.clip(base + rng.normal(0, 40, (96, 128, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    ImageDraw.Draw(image).text((8, 8), f"S{session} #{index}", fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _files(session: int, count: int) -> list[dict]:
    return [
        {
            "name": f"s{session}_img{i:02d}.png",
            "mimeType": "image/png",
            "buffer": _image(session, i),
        }
        for i in range(count)
    ]


@pytest.fixture
def server(tmp_path):
    """A demo-mode dashboard server; yields (url, pid, home); stopped afterwards."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; see .ci/run)")
    pytest.importorskip("playwright.async_api", reason="playwright is a test requirement")
    port = _free_port()
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMLIT_", "CUE_LENS_"))}
    env.update(
        CUE_LENS_HOME=str(home),
        CUE_LENS_MODEL="tiny-clip",
        CUE_LENS_OFFLINE="1",
        CUE_LENS_DATA_ROOT=str(tmp_path),
        PYTHONUNBUFFERED="1",
    )
    log = (tmp_path / "server.log").open("w")
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    proc = subprocess.Popen(
        [*command, "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"server did not start:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
        time.sleep(0.3)
    try:
        yield url, proc.pid, home
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


async def _open_detect(browser, url: str):
    context = await browser.new_context(accept_downloads=True)
    page = await context.new_page()
    page.set_default_timeout(RESULT_TIMEOUT_S * 1000)
    await page.goto(url)
    await page.locator('input[type="file"]').first.wait_for(state="attached")
    return context, page


async def _results(page, expected: int, deadline: float) -> pd.DataFrame:
    """Download the results CSV until it holds ``expected`` rows (the table may update)."""
    button = page.locator('[data-testid="stDownloadButton"] button')
    while True:
        await button.first.wait_for(state="visible")
        async with page.expect_download() as info:
            await button.first.click()
        download = await info.value
        table = pd.read_csv(await download.path())
        if len(table) >= expected or time.monotonic() > deadline:
            return table
        await asyncio.sleep(1.0)


async def _first_upload(url: str, browser) -> None:
    context, page = await _open_detect(browser, url)
    await page.locator('input[type="file"]').first.set_input_files(_files(99, 1))
    await page.get_by_text("P(synthetic)").first.wait_for(state="visible")
    await context.close()


async def _session(browser, url: str, session: int, deadline: float) -> pd.DataFrame:
    context, page = await _open_detect(browser, url)
    try:
        files = _files(session, IMAGES_PER_SESSION)
        await page.locator('input[type="file"]').first.set_input_files(files)
        table = await _results(page, IMAGES_PER_SESSION, deadline)
        table.attrs["sent"] = {f["name"]: hashlib.sha256(f["buffer"]).hexdigest() for f in files}
        return table
    finally:
        await context.close()


async def _drive(url: str, pid: int) -> dict:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            await _first_upload(url, browser)
            await asyncio.sleep(2.0)
            rss_first = _rss_mb(pid)
            start = time.monotonic()
            deadline = start + RESULT_TIMEOUT_S
            tables = await asyncio.gather(
                *[_session(browser, url, s, deadline) for s in range(SESSIONS)]
            )
            seconds = time.monotonic() - start
            rss_peak_run = _rss_mb(pid)
        finally:
            await browser.close()
    await asyncio.sleep(3.0)  # the server drops the closed sessions and their uploads
    return {
        "tables": tables,
        "seconds": seconds,
        "rss_first": rss_first,
        "rss_end_of_run": rss_peak_run,
        "rss_after": _rss_mb(pid),
    }


def test_four_sessions_upload_25_images_each(server, record_property):
    url, pid, home = server
    run = asyncio.run(_drive(url, pid))

    for session, table in enumerate(run["tables"]):
        sent = table.attrs["sent"]
        assert len(table) == IMAGES_PER_SESSION, f"session {session}: {len(table)} results"
        assert sorted(table["file"]) == sorted(sent), f"session {session} got other files"
        for row in table.itertuples(index=False):
            assert row.sha256 == sent[row.file], f"session {session}: {row.file} crossed"
        failed = table["verdict"] == "failed"
        assert not failed.any(), table.loc[failed, "reason"].tolist()
        assert table["verdict"].notna().all(), f"session {session}: missing verdicts"
        assert table["p_synthetic"].between(0, 1).all()

    growth = run["rss_after"] - run["rss_first"]
    figures = (
        f"sessions {SESSIONS}, images {SESSIONS * IMAGES_PER_SESSION}, "
        f"seconds {run['seconds']:.1f}, server RSS after first upload {run['rss_first']:.0f} MiB, "
        f"at end of run {run['rss_end_of_run']:.0f} MiB, after sessions closed "
        f"{run['rss_after']:.0f} MiB (growth {growth:+.0f} MiB, bound {MEMORY_BOUND_MB} MiB)"
    )
    print(f"\nLOAD TEST: {figures}")
    record_property("load_test", figures)
    assert growth <= MEMORY_BOUND_MB, figures

    from detector.store import Workspace

    with Workspace(home / "demo", create=False) as ws:
        assert ws.integrity_check() == "ok"
        uploads = ws.images()
        uploads = uploads[uploads["path"].str.startswith("upload:")]
        expected = {f"upload:s{s}_img{i:02d}.png" for s in range(SESSIONS) for i in range(25)}
        assert expected <= set(uploads["path"])
        assert uploads["hash"].is_unique


def test_rss_reader_follows_this_process_memory():
    before = _rss_mb(os.getpid())
    block = np.ones(200 * 2**20, dtype=np.uint8)  # 200 MiB, every page touched
    during = _rss_mb(os.getpid())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    del block
    assert 180 <= during - before <= 260, (before, during)
    assert during <= peak_mb + 1
