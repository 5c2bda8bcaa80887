"""The Ray engine (``--engine ray``) on one local Ray cluster per session (2 CPUs, tiny-clip).

Everything Ray-related lives in this file so that the cluster starts once (about 10 s).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detector.cli import main
from detector.store import TAPS, Workspace
from tests.conftest import embed_samples_with_probe

ray = pytest.importorskip("ray", reason="Ray is optional: pip install -r requirements-scale.txt")

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--model", "tiny-clip", "--device", "cpu", "--precision", "fp32"]
OBJECT_STORE = 200 * 1024 * 1024  # the box is shared: cap Ray's object store


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster with 2 CPUs for the whole session; yields its address."""
    from detector.distributed import RayOptions, connect

    if ray.is_initialized():
        ray.shutdown()
    connect(RayOptions(num_cpus=2, object_store_memory=OBJECT_STORE))
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _embed(data, ws, *extra, capsys) -> dict:
    capsys.readouterr()
    code = main(["embed", str(data), "-w", str(ws), *TINY, "--json", *extra])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def _all(ws_dir, backbone_id, tap):
    with Workspace(ws_dir) as ws:
        return ws.load_embeddings(backbone_id, tap)


def assert_same_stored(ws_a: Path, ws_b: Path, backbone_id: str) -> None:
    """Both workspaces hold the same hashes in the same order and, per tap, bitwise the same
    stored float16 (``load_embeddings`` returns float32 of exactly those values)."""
    for tap in TAPS:
        h_a, x_a = _all(ws_a, backbone_id, tap)
        h_b, x_b = _all(ws_b, backbone_id, tap)
        assert h_b == h_a
        assert np.array_equal(x_b.astype(np.float16).view(np.uint16),
                              x_a.astype(np.float16).view(np.uint16))  # fmt: skip


def _write_images(folder: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for label in ("real", "fake"):
        (folder / label).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pixels = rng.integers(0, 256, size=(24 + i % 7, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / ("real" if i % 2 else "fake") / f"{i:04d}.png")


def test_ray_equals_local_on_samples(ray_cluster, samples_dir, tmp_path, tiny_backbone, capsys):
    manifest = samples_dir / "manifest.csv"
    local = _embed(manifest, tmp_path / "local", "--workers", "0", capsys=capsys)
    far = _embed(manifest, tmp_path / "ray", "--engine", "ray", "--shard-size", "8", capsys=capsys)
    assert far["embedded"] == local["embedded"] == 41
    assert (far["cached"], far["failed"]) == (0, 0)
    assert_same_stored(tmp_path / "local", tmp_path / "ray", tiny_backbone.id)
    with Workspace(tmp_path / "local") as a, Workspace(tmp_path / "ray") as b:
        assert a.images().equals(b.images())  # labels, generators, sizes, formats, paths
    assert not list((tmp_path / "ray" / "shards").glob("*"))  # every shard ingested
    again = _embed(manifest, tmp_path / "ray", "--engine", "ray", capsys=capsys)
    assert (again["embedded"], again["cached"], again["decoded"]) == (0, 41, 0)


def test_bad_files_are_per_file_errors(ray_cluster, tmp_path, tiny_backbone, capsys):
    data = tmp_path / "data"
    _write_images(data, 6)
    (data / "fake" / "empty.png").write_bytes(b"")
    (data / "fake" / "notes.jpg").write_text("not an image at all")
    good = (data / "real" / "0001.png").read_bytes()
    (data / "real" / "truncated.png").write_bytes(good[: len(good) // 2])
    local = _embed(data, tmp_path / "local", "--workers", "0", capsys=capsys)
    far = _embed(data, tmp_path / "ray", "--engine", "ray", capsys=capsys)
    assert (far["embedded"], far["failed"]) == (local["embedded"], local["failed"]) == (6, 3)

    def reasons(doc):
        return sorted((Path(e["path"]).name, e["reason"]) for e in doc["errors"])

    assert reasons(far) == reasons(local)
    assert {name for name, _ in reasons(far)} == {"empty.png", "notes.jpg", "truncated.png"}
    with Workspace(tmp_path / "local") as a, Workspace(tmp_path / "ray") as b:
        assert a.images().equals(b.images())  # decode errors recorded the same way


def test_uri_listing_on_ray_equals_the_local_manifest(
    ray_cluster, samples_dir, tmp_path, tiny_backbone, capsys
):
    """A Parquet listing of ``file://`` URIs plus one bad URI: the Ray tasks read the URIs
    through pyarrow and embed them exactly as the local engine embeds the CSV manifest."""
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    with open(samples_dir / "manifest.csv", newline="") as f:
        rows = [
            {"path": (samples_dir / r["path"]).resolve().as_uri(), "label": r["label"]}
            for r in csv.DictReader(f)
        ]
    rows.append({"path": "nosuchscheme://bucket/key.png", "label": "real"})
    listing = tmp_path / "listing.parquet"
    pq.write_table(pa.Table.from_pylist(rows), listing)
    local = _embed(
        samples_dir / "manifest.csv", tmp_path / "local", "--workers", "0", capsys=capsys
    )
    far = _embed(listing, tmp_path / "ray", "--engine", "ray", capsys=capsys)
    assert (far["embedded"], far["failed"]) == (local["embedded"], 1) == (41, 1)
    (error,) = far["errors"]
    assert error["path"] == "nosuchscheme://bucket/key.png"
    assert error["reason"].startswith("cannot open URI (")
    assert_same_stored(tmp_path / "local", tmp_path / "ray", tiny_backbone.id)


def test_killed_run_resumes_without_duplicates(ray_cluster, tmp_path, tiny_backbone, capsys):
    data, ws_dir = tmp_path / "data", tmp_path / "ws"
    n = 240
    _write_images(data, n, seed=1)
    cmd = [sys.executable, "-m", "detector", "embed", str(data), "-w", str(ws_dir), *TINY]
    cmd += ["--engine", "ray", "--ray-address", ray_cluster, "--shard-size", "4"]
    cmd += ["--batch-size", "4", "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    db = ws_dir / "cuelens.sqlite"
    landed = 0
    deadline = time.monotonic() + 240
    try:
        while landed == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            if db.exists():
                try:
                    with sqlite3.connect(db, timeout=5) as conn:
                        landed = conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
                except sqlite3.OperationalError:
                    pass  # schema not created yet
        proc.send_signal(signal.SIGKILL)  # the driver dies with shards in flight
    finally:
        proc.kill()
        proc.wait()
    assert landed > 0, "the first shard never landed"
    with Workspace(ws_dir) as ws:
        before = len(ws.embedded_hashes(tiny_backbone.id, "pooled"))
    assert before < n, "the run finished before it could be killed"

    doc = _embed(data, ws_dir, "--engine", "ray", "--shard-size", "64", capsys=capsys)
    assert doc["failed"] == 0
    assert doc["embedded"] + doc["cached"] == n
    assert doc["cached"] >= before and doc["embedded"] > 0
    assert doc["decoded"] == doc["embedded"]  # what was stored before is not decoded again
    with sqlite3.connect(ws_dir / "cuelens.sqlite") as conn:
        per_image = conn.execute(
            "SELECT tap, COUNT(*), COUNT(DISTINCT hash) FROM embeddings GROUP BY tap"
        ).fetchall()
    assert sorted(per_image) == [("pooled", n, n), ("projected", n, n)]  # exactly one each
    assert not list((ws_dir / "shards").glob("*.parquet"))


@pytest.fixture
def probe_workspace(samples_dir, tmp_path, tiny_backbone):
    """The samples embedded locally, with a linear probe saved as ``probe``."""
    return embed_samples_with_probe(samples_dir, tmp_path / "ws", tiny_backbone)


def test_robustness_ray_equals_local(ray_cluster, probe_workspace, tmp_path, tiny_backbone, capsys):
    other = tmp_path / "ws_ray"
    shutil.copytree(probe_workspace, other)
    args = ["--head", "probe", "--perturbations", "jpeg:50,crop:0.5+resize:0.75", "--json"]
    args += ["--device", "cpu", "--precision", "fp32"]
    docs = {}
    for name, ws_dir, extra in (
        ("local", probe_workspace, ["--workers", "0"]),
        ("ray", other, ["--engine", "ray"]),
    ):
        capsys.readouterr()
        assert main(["robustness", "-w", str(ws_dir), *args, *extra]) == 0
        docs[name] = json.loads(capsys.readouterr().out)
    local, far = docs["local"], docs["ray"]
    assert far["embedded"] == local["embedded"] == {"jpeg:50": 41, "crop:0.5+resize:0.75": 41}
    assert far["table"] == local["table"] and far["summary"] == local["summary"]
    for tap in ("pooled@jpeg:50", "projected@crop:0.5+resize:0.75"):
        h_local, x_local = _all(probe_workspace, tiny_backbone.id, tap)
        h_ray, x_ray = _all(other, tiny_backbone.id, tap)
        assert h_ray == h_local and np.array_equal(x_ray, x_local)


def test_engine_ray_without_ray_says_how_to_install(tmp_path, monkeypatch, capsys):
    _write_images(tmp_path / "data", 2)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    code = main(["embed", str(tmp_path / "data"), "-w", str(tmp_path / "ws"), *TINY,
                 "--engine", "ray"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "pip install -r requirements-scale.txt" in err


def test_dashboard_extract_job_on_ray(ray_cluster, tmp_path, tiny_backbone):
    """The Data page's job with a cluster address: the same progress and result as locally."""
    from ui import tasks
    from ui.jobs import Job
    from ui.settings import DEMO_SPEC

    _write_images(tmp_path / "data", 6)
    results = {}
    for name, address in (("local", None), ("ray", ray_cluster)):
        job = Job(id=1, kind="extract", title=name, key=(name,))
        results[name] = tasks.extract_job(
            job, str(tmp_path / name), str(tmp_path / "data"), tiny_backbone, address, DEMO_SPEC
        )
        assert job.progress == 1.0
    assert results["ray"]["engine"] == "ray" and "engine" not in results["local"]
    assert results["ray"]["embedded"] == results["local"]["embedded"] == 6
    assert results["ray"]["splits"] == results["local"]["splits"]
    _, x_local = _all(tmp_path / "local", tiny_backbone.id, "pooled")
    _, x_ray = _all(tmp_path / "ray", tiny_backbone.id, "pooled")
    assert np.array_equal(x_local, x_ray)


def test_an_actor_that_cannot_load_its_backbone_is_one_readable_error(
    ray_cluster, tmp_path, tiny_backbone
):
    from detector.datasets import load_dataset
    from detector.distributed import RayOptions, embed_dataset_ray
    from detector.errors import CueLensError
    from detector.identity import BackboneSpec

    _write_images(tmp_path / "data", 2)
    with Workspace(tmp_path / "ws") as ws, pytest.raises(CueLensError) as caught:
        embed_dataset_ray(
            load_dataset(tmp_path / "data"),
            ws,
            tiny_backbone,
            BackboneSpec("no-such-model", None),
            RayOptions(),
        )
    message = str(caught.value)
    assert "the Ray job stopped" in message and "unknown model 'no-such-model'" in message
