"""Parquet listings and URI paths (``file://``, other pyarrow schemes) as embed inputs.

The Ray engine's equality on a URI listing is in tests/test_distributed.py (its cluster).
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from detector.cli import main
from detector.datasets import DatasetError, load_dataset
from detector.extract import embed_dataset
from detector.store import TAPS, Workspace

pa = pytest.importorskip("pyarrow", reason="pyarrow: pip install -r requirements-scale.txt")
pq = pytest.importorskip("pyarrow.parquet")


def _manifest_rows(samples_dir: Path) -> list[dict]:
    with open(samples_dir / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def _write_listing(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _bits(ws_dir: Path, backbone_id: str, tap: str):
    with Workspace(ws_dir) as ws:
        hashes, x = ws.load_embeddings(backbone_id, tap)
    return hashes, x.astype(np.float16).view(np.uint16)


def test_parquet_listing_by_relative_path_and_by_file_uri_embeds_like_the_manifest(
    samples_dir, tmp_path, tiny_backbone
):
    rows = _manifest_rows(samples_dir)
    keep = ("path", "label", "generator", "source_repo")
    relative = [{k: r[k] for k in keep} for r in rows]
    # The relative listing sits next to (a copy of) the images, as a manifest does.
    rel_listing = tmp_path / "rel" / "listing.parquet"
    for folder in ("real", "synthetic"):
        shutil.copytree(samples_dir / folder, rel_listing.parent / folder)
    _write_listing(rel_listing, relative)
    uris = [dict(r, path=(samples_dir / r["path"]).resolve().as_uri()) for r in relative]
    assert all(r["path"].startswith("file:///") for r in uris)
    uri_listing = _write_listing(tmp_path / "uris.parquet", uris)

    runs = {
        "manifest": samples_dir / "manifest.csv",
        "relative": rel_listing,
        "uri": uri_listing,
    }
    summaries = {}
    for name, source in runs.items():
        dataset = load_dataset(source)
        assert dataset.errors == []
        with Workspace(tmp_path / f"ws_{name}") as ws:
            summaries[name] = embed_dataset(dataset, ws, tiny_backbone, workers=0)
    for name, summary in summaries.items():
        assert (summary.embedded, summary.failed) == (41, 0), name
    uri_dataset = load_dataset(uri_listing)
    assert uri_dataset.kind == "listing"
    assert all(isinstance(r.path, str) for r in uri_dataset.records)  # read via pyarrow
    labels = [r.label for r in load_dataset(samples_dir / "manifest.csv").records]
    assert [r.label for r in uri_dataset.records] == labels
    for tap in TAPS:
        h_ref, x_ref = _bits(tmp_path / "ws_manifest", tiny_backbone.id, tap)
        for name in ("relative", "uri"):
            h, x = _bits(tmp_path / f"ws_{name}", tiny_backbone.id, tap)
            assert h == h_ref, (name, tap)
            assert np.array_equal(x, x_ref), (name, tap)  # bitwise on the stored float16
    with Workspace(tmp_path / "ws_uri") as ws:
        stored = ws.images()
    assert stored["path"].str.startswith("file:///").all()  # the URI is the stored path


def test_missing_files_and_bad_uris_are_per_file_errors_while_the_rest_embeds(
    tmp_path, tiny_backbone, capsys
):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        pixels = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(data / f"ok{i}.png")
    missing_uri = (data / "gone.png").as_uri()
    bad_scheme = "nosuchscheme://bucket/key.png"
    rows = [
        {"path": "ok0.png", "label": "real"},
        {"path": (data / "ok1.png").as_uri(), "label": "synthetic"},
        {"path": "ok2.png", "label": None},  # label may be missing in a listing: unknown
        {"path": "missing.png", "label": "real"},
        {"path": missing_uri, "label": "real"},
        {"path": bad_scheme, "label": "synthetic"},
        {"path": "../outside.png", "label": "real"},  # relative paths stay in the folder
    ]
    listing = _write_listing(data / "list.parquet", rows)
    capsys.readouterr()
    tiny = ["--model", "tiny-clip", "--device", "cpu", "--precision", "fp32", "--workers", "0"]
    code = main(["embed", str(listing), "-w", str(tmp_path / "ws"), *tiny, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    summary = json.loads(out)
    assert summary["embedded"] == 3
    assert summary["failed"] == 4
    reasons = {e["path"]: e["reason"] for e in summary["errors"]}
    assert reasons[str(data / "missing.png")] == "file not found"
    assert reasons[missing_uri] == "file not found"
    assert reasons[bad_scheme].startswith("cannot open URI (")
    assert "nosuchscheme" in reasons[bad_scheme]
    assert "leaves the manifest's folder" in reasons["../outside.png"]
    with Workspace(tmp_path / "ws") as ws:
        stored = ws.images()
    by_path = dict(zip(stored["path"], stored["label"], strict=True))
    assert by_path[str(data / "ok0.png")] == 0
    assert by_path[(data / "ok1.png").as_uri()] == 1
    assert pd.isna(by_path[str(data / "ok2.png")])  # unknown label


def test_csv_manifest_accepts_uris(tmp_path, tiny_backbone):
    image = tmp_path / "elsewhere" / "a.png"
    image.parent.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(image)
    manifest = tmp_path / "m" / "manifest.csv"
    manifest.parent.mkdir()
    manifest.write_text(f"path,label,generator\n{image.as_uri()},synthetic,sd\n")
    dataset = load_dataset(manifest)
    assert dataset.kind == "manifest" and dataset.errors == []
    (record,) = dataset.records
    assert (record.path, record.label, record.generator) == (image.as_uri(), 1, "sd")
    with Workspace(tmp_path / "ws") as ws:
        summary = embed_dataset(dataset, ws, tiny_backbone, workers=0)
    assert (summary.embedded, summary.failed) == (1, 0)


def test_listing_needs_a_path_column_and_a_parquet_file(tmp_path):
    bad = _write_listing(tmp_path / "bad.parquet", [{"file": "a.png", "label": "real"}])
    with pytest.raises(DatasetError, match="needs the column 'path'"):
        load_dataset(bad)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(DatasetError, match="cannot read Parquet listing"):
        load_dataset(broken)


def test_without_pyarrow_listings_and_uris_say_how_to_install(tmp_path, monkeypatch):
    from detector.images import ImageDecodeError
    from detector.uris import read_uri

    listing = _write_listing(tmp_path / "l.parquet", [{"path": "a.png"}])
    for name in ("pyarrow", "pyarrow.fs", "pyarrow.parquet"):
        monkeypatch.setitem(sys.modules, name, None)  # makes the import fail
    with pytest.raises(DatasetError, match=r"pip install -r requirements-scale\.txt"):
        load_dataset(listing)
    with pytest.raises(ImageDecodeError, match=r"pip install -r requirements-scale\.txt"):
        read_uri((tmp_path / "a.png").as_uri())
