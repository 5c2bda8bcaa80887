"""``python -m detector robustness`` on ../shared/samples with tiny-clip."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from detector.cli import main
from detector.commands.robustness import backbone_spec
from detector.errors import CueLensError
from detector.perturb import TABLE_COLUMNS
from tests.conftest import embed_samples_with_probe


@pytest.fixture(scope="module")
def samples_workspace(samples_dir, tmp_path_factory, tiny_backbone):
    """The 41 sample images embedded with tiny-clip, and a linear probe saved as ``probe``."""
    return embed_samples_with_probe(
        samples_dir, tmp_path_factory.mktemp("samples_ws"), tiny_backbone
    )


def _run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_csv_and_cache(samples_workspace, tmp_path, capsys):
    csv = tmp_path / "robustness.csv"
    args = ["robustness", "-w", str(samples_workspace), "--head", "probe", "--workers", "0"]
    args += ["--perturbations", "jpeg:50,resize:0.5,crop:0.5+jpeg:75"]
    code, out, _ = _run(capsys, *args, "--json", "--out", str(csv))
    assert code == 0
    doc = json.loads(out)
    assert doc["demo"] is True and doc["backbone"] == "tiny-clip/random"
    assert doc["split"] is None  # the samples have no test split: all images
    assert doc["embedded"] == {"jpeg:50": 41, "resize:0.5": 41, "crop:0.5+jpeg:75": 41}
    summary = pd.DataFrame(doc["summary"])
    assert summary["perturbation"].tolist() == ["none", "jpeg:50", "resize:0.5", "crop:0.5+jpeg:75"]
    assert (summary["n_images"] == 41).all()
    table = pd.read_csv(csv)
    assert list(table.columns) == TABLE_COLUMNS
    # 7 named GANs/DALL-E plus the unnamed fakes ("unknown"), for each of 4 perturbations
    assert table.groupby("perturbation")["generator"].nunique().eq(8).all()
    assert (table["n_real"] == 25).all()
    assert table.groupby("perturbation")["n_fake"].sum().eq(16).all()

    code, out, _ = _run(capsys, *args, "--json")
    assert code == 0 and json.loads(out)["embedded"] == {}  # computed once

    code, out, _ = _run(capsys, *args, "--pairing", "matched", "--threshold", "0.9")
    assert code == 0
    assert out.startswith("DEMO backbone tiny-clip")
    assert "matched reals, threshold 0.9" in out
    assert "AP per generator:" in out and "crop:0.5+jpeg:75" in out
    assert f"kept in {samples_workspace}" in out


def test_a_cli_sweep_shows_on_the_generators_page(samples_workspace, capsys):
    from detector.catalog import resolve_head
    from detector.store import Workspace
    from ui import analysis

    args = ["robustness", "-w", str(samples_workspace), "--head", "probe", "--workers", "0"]
    code, _, _ = _run(capsys, *args, "--perturbations", "blur:1", "--pairing", "matched")
    assert code == 0
    with Workspace(samples_workspace) as ws:
        head = resolve_head("probe", workspace=ws)
        shown = analysis.stored_sweeps(ws, head, "tiny-clip/random")  # what the page draws
    (sweep,) = [r for r in shown if r.pairing == "matched"]
    assert sweep.head == "probe" and sweep.split is None
    assert sweep.summary["perturbation"].tolist() == ["none", "blur:1"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--head", "nope"], "head 'nope' not found"),
        (["--head", "probe", "--perturbations", "sharpen:2"], "unknown perturbation"),
        (["--head", "probe", "--split", "holdout"], "no labelled images"),
    ],
)
def test_errors_are_one_readable_line(samples_workspace, capsys, extra, message):
    code, _, err = _run(capsys, "robustness", "-w", str(samples_workspace), *extra)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_missing_workspace(tmp_path, capsys):
    code, _, err = _run(capsys, "robustness", "-w", str(tmp_path / "none"), "--head", "x")
    assert code == 2 and "no Cue Lens workspace" in err


def test_backbone_from_head_id():
    assert backbone_spec("tiny-clip/random") == ("tiny-clip", None, "bilinear")
    assert backbone_spec("ViT-L-14-336/openai") == ("ViT-L-14-336", "openai", "bilinear")
    assert backbone_spec("ViT-B-16/openai@bicubic") == ("ViT-B-16", "openai", "bicubic")
    for local in ("ViT-B-16/file:1a2b3c", "local-dir/dir:abc"):
        with pytest.raises(CueLensError, match="--model"):
            backbone_spec(local)
