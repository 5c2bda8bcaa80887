"""The head catalog (``detector.catalog``): one listing of released, workspace and imported
heads for the CLI and the dashboard, lookup by name or key, the import of head files, and
``predict`` finding a workspace head for a backbone that is not the demo's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from detector import catalog, released
from detector.backbone import load_backbone
from detector.cli import main
from detector.heads import HeadError, LinearProbe, read_card, save_head
from detector.store import Workspace
from tests.conftest import REPO
from tests.test_cli_detect import build_workspace

TINY = "tiny-clip/random"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No downloads, an empty cache, no CUE_LENS_RELEASED_DIR."""
    monkeypatch.setenv("CUE_LENS_OFFLINE", "1")
    monkeypatch.setenv("CUE_LENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CUE_LENS_RELEASED_DIR", raising=False)


def _probe(backbone_id: str, dim: int = 8, seed: int = 0) -> LinearProbe:
    X = np.random.default_rng(seed).normal(size=(40, dim))
    return LinearProbe(max_epochs=2, backbone_id=backbone_id).fit(X, np.arange(40) % 2)


def _released_format_checkpoint(path) -> None:
    """A weights-only checkpoint in the authors' layout (a linear probe, not a released file)."""
    state = {
        "model.classification_head.fc.weight": torch.zeros(1, 1024),
        "model.classification_head.fc.bias": torch.zeros(1),
    }
    torch.save({"model_type": "linear", "state_dict": state}, path)


@pytest.fixture
def workspace_with_heads(tmp_path, offline):
    """A workspace with one trained head and two imported files (a card head, a checkpoint)."""
    ws = Workspace(tmp_path / "ws")
    save_head(_probe(TINY), ws.heads_dir / "probe.safetensors")
    mine = save_head(_probe("ViT-B-16/openai", seed=1), tmp_path / "mine.safetensors")
    catalog.save_imported_head(ws, "mine.safetensors", mine.read_bytes())
    ckpt = tmp_path / "paper.ckpt"
    _released_format_checkpoint(ckpt)
    catalog.save_imported_head(ws, "paper.ckpt", ckpt.read_bytes())
    yield ws
    ws.close()


def test_one_listing_holds_released_workspace_and_imported_heads(workspace_with_heads):
    ws = workspace_with_heads
    entries = catalog.list_heads(ws)
    assert [e.kind for e in entries] == ["released"] * 12 + ["workspace"] + ["imported"] * 2
    local = {e.key: e for e in entries if e.kind != "released"}
    assert list(local) == ["workspace:probe", "imported:mine.safetensors", "imported:paper.ckpt"]
    assert local["workspace:probe"].backbone_id == TINY and local["workspace:probe"].demo
    mine = local["imported:mine.safetensors"]
    assert mine.backbone_id == "ViT-B-16/openai" and mine.head_type == "linear" and not mine.demo
    # a released-format checkpoint has no card: its heads read the paper's backbone
    assert local["imported:paper.ckpt"].backbone_id == released.BACKBONE_ID
    assert all(e.available and e.usable for e in local.values())
    default = next(e for e in entries if e.default)
    # released heads not cached here: not available, but a picker may offer them
    assert default.name == released.DEFAULT_RELEASED and not default.available and default.usable
    assert default.note == "default" and default.compatible(released.BACKBONE_ID)
    table = catalog.heads_table(ws)
    assert table["key"].tolist() == [e.key for e in entries]


def test_the_cli_lists_imported_heads(workspace_with_heads, capsys):
    ws = workspace_with_heads
    assert main(["heads", "--workspace", str(ws.path), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["heads"]
    imported = [h["name"] for h in listed if h["kind"] == "imported"]
    assert imported == ["mine.safetensors", "paper.ckpt"]
    assert main(["heads", "--workspace", str(ws.path)]) == 0
    text = capsys.readouterr().out
    assert "imported heads" in text and "paper.ckpt" in text


def test_heads_resolve_by_name_key_and_file(workspace_with_heads):
    ws = workspace_with_heads
    assert catalog.resolve_head("probe", workspace=ws).backbone_id == TINY
    by_key = catalog.resolve_head("imported:mine.safetensors", workspace=ws)
    by_name = catalog.resolve_head("mine.safetensors", workspace=ws)
    assert by_key.backbone_id == by_name.backbone_id == "ViT-B-16/openai"
    ckpt = catalog.resolve_head("imported:paper.ckpt", workspace=ws)
    assert ckpt.head_type == "linear" and ckpt.n_features_in_ == 1024
    with pytest.raises(HeadError, match=r"mine\.safetensors"):  # the hint lists them
        catalog.resolve_head("nope", workspace=ws)
    found = catalog.find_workspace_head(ws, "ViT-B-16/openai@draft")  # draft: same features
    assert found is not None and found.card_["name"] == "mine"
    assert catalog.find_workspace_head(ws, "ViT-B-32/openai") is None


def test_an_unreadable_import_is_refused_and_leaves_nothing(workspace_with_heads):
    ws = workspace_with_heads
    before = sorted(p.name for p in catalog.imported_dir(ws).iterdir())
    with pytest.raises(HeadError, match="not a Cue Lens head"):
        catalog.save_imported_head(ws, "junk.safetensors", b"not a head")
    with pytest.raises(HeadError, match="not a head file"):
        catalog.save_imported_head(ws, "notes.txt", b"text")
    assert sorted(p.name for p in catalog.imported_dir(ws).iterdir()) == before
    # a file copied there by hand that does not read is listed with its problem
    (catalog.imported_dir(ws) / "broken.safetensors").write_bytes(b"xx")
    broken = next(e for e in catalog.list_heads(ws) if e.name == "broken.safetensors")
    assert not broken.available and not broken.usable and "not a Cue Lens head" in broken.note


@pytest.fixture
def vit_checkpoint(monkeypatch, tmp_path):
    """A checkpoint file of a small registered architecture with a real-model name."""
    import open_clip

    cfg = json.loads((REPO / "assets" / "models" / "tiny-clip.json").read_text())
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, "test-vit", cfg)
    torch.manual_seed(3)
    path = tmp_path / "test-vit.pt"
    torch.save(open_clip.create_model("test-vit").state_dict(), path)
    return path


def test_predict_finds_the_workspace_head_of_a_non_demo_backbone(
    tmp_path, vit_checkpoint, capsys, offline
):
    backbone = load_backbone("test-vit", str(vit_checkpoint), device="cpu", precision="fp32")
    assert not backbone.is_demo and backbone.id.startswith("test-vit/file:")
    ws = str(build_workspace(tmp_path / "ws", backbone=backbone.id, dim=backbone.pooled_dim))
    assert main(["train", "--workspace", ws, "--out", "vit_probe"]) == 0
    with Workspace(ws, create=False) as opened:  # a newer head of another backbone
        save_head(_probe(TINY, dim=backbone.pooled_dim), opened.heads_dir / "newer.safetensors")
    image = tmp_path / "image.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 96, 3), np.uint8)).save(image)
    capsys.readouterr()
    argv = ["predict", str(image), "--workspace", ws, "--model", "test-vit"]
    argv += ["--pretrained", str(vit_checkpoint), "--device", "cpu", "--precision", "fp32"]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["head"] == "vit_probe" and out["backbone_id"] == backbone.id
    assert not out["demo"] and out["failed"] == 0 and out["images"][0]["verdict"]
    assert read_card(tmp_path / "ws" / "heads" / "vit_probe.safetensors")["backbone_id"] == (
        backbone.id
    )
