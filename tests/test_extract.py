"""The extraction pipeline: bad inputs, caching, crash safety, concurrent writers."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detector.datasets import load_dataset
from detector.extract import embed_bytes, embed_dataset, sha256_bytes
from detector.store import Workspace
from tests.conftest import REPO


def _png(color, size=(48, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def _jpeg(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", **kw)
    return buf.getvalue()


def _noise_folder(root: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n):
        cls = "real" if i % 2 == 0 else "gan"
        (root / cls).mkdir(parents=True, exist_ok=True)
        arr = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(arr).save(root / cls / f"{i:05d}.png")
    return root


def _bad_corpus(root: Path) -> dict[str, bool]:
    """Files under root/real and root/gan; value: should the file embed?"""
    real, gan = root / "real", root / "gan"
    real.mkdir(parents=True)
    gan.mkdir(parents=True)
    rng = np.random.default_rng(3)
    photo = _jpeg(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), quality=90)
    expect = {}

    def put(folder: Path, name: str, data: bytes, ok: bool):
        (folder / name).write_bytes(data)
        expect[name] = ok

    put(real, "zero.jpg", b"", False)
    put(real, "truncated.jpg", photo[: len(photo) // 2], False)
    put(real, "text.png", b"hello, I am not an image\n" * 10, False)
    put(real, "photo.jpg", photo, True)
    big = io.BytesIO()
    Image.new("1", (9000, 9000)).save(big, "PNG")  # 81 MP, a few KB on disk
    put(real, "huge.png", big.getvalue(), False)
    i16 = io.BytesIO()
    Image.fromarray(np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)).save(
        i16, "PNG"
    )
    put(gan, "sixteen_bit.png", i16.getvalue(), True)
    cmyk = io.BytesIO()
    Image.new("CMYK", (50, 30), (0, 128, 255, 10)).save(cmyk, "JPEG")
    put(gan, "cmyk.jpg", cmyk.getvalue(), True)
    pal = Image.new("P", (32, 32), 0)
    pal.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    pal.info["transparency"] = 0
    pbuf = io.BytesIO()
    pal.save(pbuf, "PNG", transparency=0)
    put(gan, "palette_alpha.png", pbuf.getvalue(), True)
    gif = io.BytesIO()
    frames = [Image.new("P", (30, 30), c) for c in (1, 2, 3)]
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    put(gan, "animated.gif", gif.getvalue(), True)
    exif = Image.Exif()
    exif[0x0112] = 6
    rot = io.BytesIO()
    Image.new("RGB", (40, 20), (9, 9, 9)).save(rot, "JPEG", exif=exif.tobytes())
    put(gan, "rotated.jpg", rot.getvalue(), True)
    put(gan, "one_pixel.png", _png((1, 2, 3), (1, 1)), True)
    put(gan, "panorama.png", _png((50, 60, 70), (20000, 50)), True)
    other = _jpeg(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
    put(gan, "jpeg_named.png", other, True)  # JPEG bytes behind a .png name
    return expect


def test_bad_inputs_fail_alone_with_reasons_while_the_rest_embeds(tmp_path, tiny_backbone):
    expect = _bad_corpus(tmp_path / "data")
    ws = Workspace(tmp_path / "ws")
    summary = embed_dataset(
        load_dataset(tmp_path / "data"),
        ws,
        tiny_backbone,
        batch_size=4,
        workers=0,
        max_pixels=64_000_000,
    )
    failed = {Path(e["path"]).name: e["reason"] for e in summary.errors}
    assert set(failed) == {k for k, ok in expect.items() if not ok}
    assert all(reason and len(reason) > 5 for reason in failed.values())
    assert "empty" in failed["zero.jpg"]
    assert "MP" in failed["huge.png"] or "pixel" in failed["huge.png"]
    assert summary.embedded == sum(expect.values())
    assert summary.images == len(expect)
    stored = ws.images()
    # decode errors are recorded in the workspace (unreadable zero-byte file has no hash)
    assert stored["error"].notna().sum() == len(failed) - 1
    meta, x = ws.dataset(tiny_backbone.id, "pooled", labelled_only=False)
    assert len(meta) == summary.embedded and np.isfinite(x).all()
    rotated = stored[stored["path"].str.endswith("rotated.jpg")].iloc[0]
    assert (rotated["width"], rotated["height"]) == (20, 40)


def test_second_run_computes_nothing_and_duplicates_embed_once(tmp_path, tiny_backbone):
    data = _noise_folder(tmp_path / "data", 12)
    (data / "gan" / "copy_of_0.png").write_bytes((data / "real" / "00000.png").read_bytes())
    ws = Workspace(tmp_path / "ws")
    first = embed_dataset(load_dataset(data), ws, tiny_backbone, workers=0)
    assert (first.images, first.embedded, first.cached, first.failed) == (13, 12, 1, 0)
    calls = []
    original = tiny_backbone.encode_images
    tiny_backbone.encode_images = lambda x: calls.append(x) or original(x)
    try:
        second = embed_dataset(load_dataset(data), ws, tiny_backbone, workers=0)
    finally:
        del tiny_backbone.encode_images
    assert (second.embedded, second.cached) == (0, 13) and not calls
    assert len(ws.embedded_hashes(tiny_backbone.id, "pooled")) == 12


def test_workers_give_the_same_embeddings_as_the_main_process(tmp_path, tiny_backbone):
    data = _noise_folder(tmp_path / "data", 6)
    ws0, ws2 = Workspace(tmp_path / "a"), Workspace(tmp_path / "b")
    embed_dataset(load_dataset(data), ws0, tiny_backbone, workers=0, batch_size=4)
    embed_dataset(load_dataset(data), ws2, tiny_backbone, workers=2, batch_size=4)
    h0, x0 = ws0.load_embeddings(tiny_backbone.id, "projected")
    h2, x2 = ws2.load_embeddings(tiny_backbone.id, "projected")
    assert h0 == h2
    np.testing.assert_array_equal(x0, x2)


def test_progress_and_cancel(tmp_path, tiny_backbone):
    data = _noise_folder(tmp_path / "data", 10)
    ws = Workspace(tmp_path / "ws")
    seen = []
    summary = embed_dataset(
        load_dataset(data),
        ws,
        tiny_backbone,
        batch_size=3,
        workers=0,
        progress=lambda d, t: seen.append((d, t)),
        should_stop=lambda: len(seen) >= 3,
    )
    assert seen[0] == (0, 10) and seen[1] == (3, 10)
    assert summary.embedded == 6  # two batches done, then cancelled: both kept
    rest = embed_dataset(load_dataset(data), ws, tiny_backbone, workers=0)
    assert (rest.embedded, rest.cached) == (4, 6)


def test_embed_bytes_reuses_workspace_and_reports_bad_files(tmp_path, tiny_backbone):
    ws = Workspace(tmp_path / "ws")
    good, other = _png((10, 20, 30)), _png((200, 20, 30))
    items = [("a.png", good), ("bad.png", b"nope"), ("b.png", other), ("a_again.png", good)]
    first = embed_bytes(items, tiny_backbone, ws)
    assert [r.error is None for r in first] == [True, False, True, True]
    assert "not an image" in first[1].error or "format" in first[1].error
    np.testing.assert_array_equal(first[0].pooled, first[3].pooled)
    second = embed_bytes([("x.png", good)], tiny_backbone, ws)
    assert second[0].cached and second[0].hash == sha256_bytes(good)
    np.testing.assert_allclose(second[0].pooled, first[0].pooled, atol=2e-2, rtol=1e-2)


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def _embed_cmd(data: Path, ws: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "detector",
        "embed",
        str(data),
        "--workspace",
        str(ws),
        "--model",
        "tiny-clip",
        "--precision",
        "fp32",
        "--json",
        *extra,
    ]


@pytest.mark.slow
def test_kill_9_mid_extraction_then_rerun_finishes_exactly_once(tmp_path):
    data = _noise_folder(tmp_path / "data", 600, seed=1)
    ws = tmp_path / "ws"
    proc = subprocess.Popen(
        _embed_cmd(data, ws, "--batch-size", "4", "--workers", "0"),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while _count(ws / "cuelens.sqlite") < 40 and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _count(ws / "cuelens.sqlite")
    assert 0 < partial < 1200, "the kill should land mid-run"
    rerun = subprocess.run(
        _embed_cmd(data, ws, "--workers", "0"), cwd=REPO, capture_output=True, text=True, check=True
    )
    summary = json.loads(rerun.stdout)
    assert summary["embedded"] + summary["cached"] == 600 and summary["failed"] == 0
    assert summary["cached"] >= partial // 2 - 4
    con = sqlite3.connect(ws / "cuelens.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    per_tap = con.execute(
        "SELECT tap, COUNT(*), COUNT(DISTINCT hash) FROM embeddings GROUP BY tap"
    ).fetchall()
    assert sorted(per_tap) == [("pooled", 600, 600), ("projected", 600, 600)]
    con.close()


@pytest.mark.slow
def test_two_concurrent_embeds_on_one_workspace(tmp_path):
    n = 800  # enough that each run embeds for a while after the other has started
    data = _noise_folder(tmp_path / "data", n, seed=2)
    ws = tmp_path / "ws"
    Workspace(ws).close()
    procs = [
        subprocess.Popen(
            _embed_cmd(data, ws, "--batch-size", "2", "--workers", "0"),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-500:] for o in outs]
    summaries = [json.loads(out) for out, _ in outs]
    for summary in summaries:
        assert summary["failed"] == 0 and summary["embedded"] + summary["cached"] == n
    # Each run embeds what was not in the workspace when it started, so both embedding
    # something means each started before the other had finished: the runs overlapped
    # (run one after the other, the second would find all of them cached).
    assert all(s["embedded"] > 0 for s in summaries), summaries
    con = sqlite3.connect(ws / "cuelens.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = con.execute(
        "SELECT tap, COUNT(*), COUNT(DISTINCT hash) FROM embeddings GROUP BY tap"
    ).fetchall()
    assert sorted(rows) == [("pooled", n, n), ("projected", n, n)]
    assert con.execute("SELECT COUNT(*) FROM images").fetchone()[0] == n
    con.close()


def test_cli_on_shared_samples_embeds_41_then_caches_41(tmp_path, samples_dir):
    ws = tmp_path / "ws"
    cmd = [
        sys.executable,
        "-m",
        "detector",
        "embed",
        str(samples_dir / "manifest.csv"),
        "--workspace",
        str(ws),
        "--model",
        "tiny-clip",
        "--json",
    ]
    first = json.loads(
        subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True).stdout
    )
    assert (first["images"], first["embedded"], first["failed"]) == (41, 41, 0)
    assert set(first) >= {"backbone", "cached", "errors", "seconds", "images_per_second"}
    second = json.loads(
        subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True).stdout
    )
    assert (second["images"], second["cached"], second["embedded"]) == (41, 41, 0)
    info = subprocess.run(
        [sys.executable, "-m", "detector", "info", "-w", str(ws), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    counts = json.loads(info.stdout)
    assert counts["by_label"] == {"real": 25, "synthetic": 16}
    assert counts["backbones"][0]["embeddings"] == 41


def test_a_decode_that_hangs_becomes_a_per_file_error(tmp_path, monkeypatch, tiny_backbone):
    import detector.extract as extract

    data = _noise_folder(tmp_path / "data", 2)
    real_decode = extract.decode_image

    def slow_decode(source, **kw):
        if str(source).endswith("00001.png"):
            time.sleep(5)
        return real_decode(source, **kw)

    monkeypatch.setattr(extract, "decode_image", slow_decode)
    records = load_dataset(data).records
    dataset = extract.DecodeDataset(
        [(r, "h") for r in records], tiny_backbone.preprocess, 64, timeout=0.3
    )
    t0 = time.perf_counter()
    samples = [dataset[i] for i in range(len(dataset))]
    # Generous on a shared machine: without the 0.3 s time-out the slow file alone takes 5 s.
    assert time.perf_counter() - t0 < 4.5
    errors = {records[s["index"]].path.name: s["error"] for s in samples}
    assert errors["00000.png"] is None
    assert "longer than 0.3 s" in errors["00001.png"]
