"""The dataset bias audit: properties that alone separate real from synthetic images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import ExifTags, Image

from detector.audit import audit, audit_table, property_separation, summarise_groups
from detector.cli import main


def _image(seed: int, size=(64, 48), mode="RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


def _save(image: Image.Image, path: Path, **params) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **params)


def _balanced(root: Path, n: int = 6) -> Path:
    """Real and synthetic JPEGs alike in every property the audit reads."""
    for i in range(n):
        for cls in ("real", "gan"):
            size = (64 + 8 * (i % 3), 48 + 8 * (i % 2))
            q = (70, 85, 95)[i % 3]
            _save(_image(2 * i + (cls == "gan"), size), root / cls / f"{i}.jpg", quality=q)
    return root


def _messages(report) -> str:
    return "\n".join(w["message"] for w in report.warnings)


def test_a_balanced_dataset_raises_no_warning(tmp_path):
    report = audit(_balanced(tmp_path))
    assert report.warnings == [] and not report.flagged
    assert len(report.images) == 12 and report.errors == []
    assert set(report.separations["property"]) == {
        "format", "jpeg_quality", "width", "height", "aspect_ratio", "file_size",
        "exif_present", "mode", "declared_ai",
    }  # fmt: skip
    assert report.separations["auc"].between(0.5, 1).all()


def test_format_used_by_one_class_and_size_are_flagged(tmp_path):
    for i in range(5):
        _save(_image(i, (120, 90)), tmp_path / "real" / f"{i}.jpg", quality=90)
        _save(_image(100 + i, (64, 64)), tmp_path / "sd" / f"{i}.png")
    report = audit(tmp_path)
    flagged = {(w["scope"], w["property"]) for w in report.warnings}
    assert {("all", "format"), ("all", "width"), ("all", "height"), ("all", "aspect_ratio")} <= (
        flagged
    )
    text = _messages(report)
    assert "PNG only among synthetic images (5 file(s))" in text
    assert "JPEG only among real images" in text
    assert "the image width alone separates real from synthetic images (AUC 1.00" in text
    assert "typical real 120 px, typical synthetic 64 px" in text
    assert "A detector can score well here by learning" in text
    assert all(w["severity"] == "strong" for w in report.warnings if w["auc"] >= 0.95)
    # JPEG quality cannot be tested: one class has no JPEG at all
    assert "jpeg_quality" not in set(report.separations["property"])


def test_jpeg_quality_exif_and_mode_are_read(tmp_path):
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Camera"
    for i in range(4):
        _save(_image(i), tmp_path / "real" / f"{i}.jpg", quality=95, exif=exif)
        _save(_image(50 + i, mode="L"), tmp_path / "gan" / f"{i}.jpg", quality=60)
    report = audit(tmp_path)
    images = report.images.set_index("class")
    assert (images.loc["real", "jpeg_quality"] == 95).all()
    assert (images.loc["synthetic", "jpeg_quality"] == 60).all()
    flagged = {w["property"] for w in report.warnings}
    assert {"jpeg_quality", "exif_present", "mode"} <= flagged
    assert "format" not in flagged and "width" not in flagged
    row = report.separations.set_index("property").loc["jpeg_quality"]
    assert row["direction"] == "real higher" and row["auc"] == 1.0
    assert "quality 95" in _messages(report) and "quality 60" in _messages(report)


def test_source_scope_finds_what_the_pooled_view_hides(tmp_path):
    """Two sources; inside one of them, the classes differ by size alone."""
    lines = ["path,label,generator,source"]
    for i in range(4):
        for label, size, src in (
            ("real", (96, 96), "a"),
            ("synthetic", (48, 48), "a"),
            ("real", (48, 48), "b"),
            ("synthetic", (96, 96), "b"),
        ):
            name = f"{src}_{label}_{i}.png"
            _save(_image(i + 10 * len(lines), size), tmp_path / name)
            lines.append(f"{name},{label},gen,{src}")
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n")
    report = audit(tmp_path / "manifest.csv")
    by_scope = {(w["scope"], w["group"], w["property"]) for w in report.warnings}
    assert ("source", "a", "width") in by_scope and ("source", "b", "width") in by_scope
    assert not any(scope == "all" for scope, _, _ in by_scope)
    assert "Within source a" in _messages(report)


def test_small_scopes_are_not_tested(tmp_path):
    _save(_image(1, (100, 100)), tmp_path / "real" / "a.png")
    _save(_image(2, (50, 50)), tmp_path / "gan" / "b.png")
    report = audit(tmp_path)
    assert report.separations.empty and report.warnings == []
    assert not audit(tmp_path, min_per_class=1).separations.empty


def test_generator_scope_and_summary(tmp_path):
    for i in range(4):
        _save(_image(i, (80, 60)), tmp_path / "real" / f"{i}.png")
        _save(_image(20 + i, (80, 60)), tmp_path / "gan" / f"{i}.png")
        _save(_image(40 + i, (40, 30)), tmp_path / "diffusion" / f"{i}.png")
    report = audit(tmp_path)
    gens = {(w["scope"], w["group"]) for w in report.warnings if w["property"] == "width"}
    assert ("generator", "diffusion") in gens and ("generator", "gan") not in gens
    summary = report.summary.set_index("generator")
    assert summary.loc["diffusion", "width_median"] == 40
    assert summary.loc["real", "n"] == 4 and summary.loc["real", "formats"] == "PNG 4"
    assert summary.loc["gan", "class"] == "synthetic"
    assert summary.loc["real", "exif_share"] == 0
    by_source = summarise_groups(report.images, by=["class"])
    assert by_source.set_index("class").loc["synthetic", "n"] == 8


def test_unreadable_files_are_listed_not_fatal(tmp_path):
    _balanced(tmp_path, n=3)
    (tmp_path / "real" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    (tmp_path / "gan" / "empty.png").write_bytes(b"")
    report = audit(tmp_path)
    assert len(report.images) == 6
    reasons = {Path(e["path"]).name: e["reason"] for e in report.errors}
    assert set(reasons) == {"broken.jpg", "empty.png"}
    assert reasons["empty.png"] == "empty file"


def test_property_separation_directions():
    frame = pd.DataFrame(
        {"label": [0, 0, 0, 1, 1, 1], "width": [10, 20, 30, 1, 2, 3], "format": list("AABBBB")}
    )
    result = property_separation(frame, "width")
    assert result["auc"] == 1.0 and result["direction"] == "real higher"
    fmt = property_separation(frame, "format")
    assert fmt["auc"] == pytest.approx(0.8333, abs=1e-3)
    assert fmt["one_class_only"] == {"A": {"class": "real", "n": 2}}
    assert property_separation(frame, "width", min_per_class=4) is None


def test_workspace_audit_matches_the_dataset_and_survives_moved_files(tmp_path, tiny_backbone):
    from detector.datasets import load_dataset
    from detector.extract import embed_dataset
    from detector.store import Workspace

    data = tmp_path / "data"
    for i in range(3):
        _save(_image(i, (120, 90)), data / "real" / f"{i}.jpg", quality=90)
        _save(_image(9 + i, (64, 64)), data / "gan" / f"{i}.png")
    with Workspace(tmp_path / "ws") as ws:
        embed_dataset(load_dataset(data), ws, tiny_backbone, workers=0)
    from_dataset = audit(data)
    from_ws = audit(tmp_path / "ws")
    cols = ["format", "width", "height", "file_size", "jpeg_quality", "mode"]
    pd.testing.assert_frame_equal(
        from_ws.images.sort_values("path")[cols].reset_index(drop=True),
        from_dataset.images.sort_values("path")[cols].reset_index(drop=True),
    )
    assert {w["property"] for w in from_ws.warnings} == {
        w["property"] for w in from_dataset.warnings
    }
    (data / "gan" / "0.png").unlink()
    moved = audit(tmp_path / "ws")
    assert len(moved.images) == 6  # audited from the stored facts
    assert "stored in the workspace" in moved.errors[0]["reason"]


def test_samples_size_shortcut_is_flagged(samples_dir):
    report = audit(samples_dir / "manifest.csv")
    assert len(report.images) == 41 and report.errors == []
    ml72 = [w for w in report.warnings if w["group"].startswith("ML72/")]
    assert {w["property"] for w in ml72} >= {"width", "height"}
    assert all(w["scope"] == "source" and w["auc"] == 1.0 for w in ml72)
    table = audit_table(report)
    assert table["flagged"].iloc[: len(report.warnings)].all()
    assert not table["flagged"].iloc[len(report.warnings) :].any()
    assert len(audit_table(report, flagged_only=True)) == len(report.warnings)


def test_cli_json_strict_and_out(samples_dir, tmp_path, capsys):
    out = tmp_path / "props.csv"
    assert main(["audit", str(samples_dir / "manifest.csv"), "--json", "--out", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["images"] == 41 and doc["real"] == 25 and doc["synthetic"] == 16
    assert doc["flagged"] == len(doc["warnings"]) > 0
    assert any(
        w["group"] == "ML72/AI-Image-Classifier-Playground" and w["property"] == "width"
        for w in doc["warnings"]
    )
    assert len(pd.read_csv(out)) == 41
    assert main(["audit", str(samples_dir / "manifest.csv"), "--strict"]) == 1
    text = capsys.readouterr().out
    assert "warning(s):" in text and "Within source ML72" in text


def test_cli_clean_dataset_and_errors(tmp_path, capsys):
    _balanced(tmp_path / "data")
    assert main(["audit", str(tmp_path / "data"), "--strict"]) == 0
    assert "no single property separates" in capsys.readouterr().out
    assert main(["audit", str(tmp_path / "nowhere")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["audit", str(tmp_path / "data"), "--threshold", "0.3"]) == 2


def test_figures_for_the_audit_panel(samples_dir):
    from detector.audit import audit_figure

    report = audit(samples_dir / "manifest.csv")
    group = "ML72/AI-Image-Classifier-Playground"
    fig = audit_figure(report, "width", scope="source", group=group)
    assert [t.name for t in fig.data] == ["real", "synthetic"]
    assert len(fig.data[0].y) == 10 and len(fig.data[1].y) == 3
    assert "AUC 1.00 (flagged)" in fig.layout.title.text
    assert "Within source ML72" in fig.layout.title.text
    formats = audit_figure(report, "format")
    assert formats.data[0].type == "bar"
    assert sum(formats.data[0].y) == 25 and sum(formats.data[1].y) == 16
    with pytest.raises(ValueError, match="unknown property"):
        audit_figure(report, "colour")
