"""Faithfulness to the authors' pipeline that needs no big model: stale backbone ids, the
training recipe pinned by behaviour, and honest metrics (in-sample flags, transfer refusal)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from detector.backbone import stale_reason
from detector.fitting import smoothed_targets
from detector.heads import LinearProbe, OrthogonalHead, make_card

OLD_ID = "ViT-L-14-336/openai"
NEW_ID = "ViT-L-14-336-quickgelu/openai"


def test_gelu_era_embeddings_are_stale_and_recomputed(tmp_path, tiny_backbone, capsys):
    """Old ids stay in the workspace, are reported stale and are never read with new ones."""
    from PIL import Image

    from detector.cli import main
    from detector.datasets import load_dataset
    from detector.extract import embed_dataset
    from detector.hashing import sha256_file
    from detector.store import ImageRow, Workspace

    data = tmp_path / "data"
    for i, cls in enumerate(["real", "gen"] * 2):
        (data / cls).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (80, 70), (40 * i, 90, 200)).save(data / cls / f"{i}.png")
    files = sorted(data.rglob("*.png"))
    ws_path = tmp_path / "ws"
    with Workspace(ws_path) as ws:  # what an earlier Cue Lens left behind
        hashes = [sha256_file(p) for p in files]
        ws.add_images([ImageRow(hash=h, path=str(p)) for h, p in zip(hashes, files, strict=True)])
        for tap, dim in (("pooled", 64), ("projected", 32)):
            ws.put_embeddings(OLD_ID, tap, hashes, np.ones((len(hashes), dim), np.float32))
    # the current backbone for the same weights has the new id (tiny weights stand in)
    current = dataclasses.replace(tiny_backbone, id=NEW_ID)
    with Workspace(ws_path) as ws:
        summary = embed_dataset(load_dataset(data), ws, current, workers=0)
        assert summary.embedded == len(files) and summary.cached == 0
        _, fresh = ws.load_embeddings(NEW_ID, "pooled", hashes)
        assert not np.allclose(fresh, 1.0)
    assert main(["info", "-w", str(ws_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    stale = {b["backbone"]: b["stale"] for b in info["backbones"]}
    assert "QuickGELU" in stale[OLD_ID] and NEW_ID in stale[OLD_ID]
    assert stale[NEW_ID] is None
    assert main(["info", "-w", str(ws_path)]) == 0
    assert "STALE" in capsys.readouterr().out


def test_heads_trained_on_stale_features_say_so():
    head = LinearProbe(max_epochs=1, backbone_id=OLD_ID).fit(
        np.random.default_rng(0).normal(size=(40, 8)), np.arange(40) % 2
    )
    with pytest.raises(ValueError, match="retrain heads"):
        head.check_compatible(NEW_ID, 8)
    assert stale_reason(OLD_ID) and stale_reason(NEW_ID) is None


def test_draft_decoding_is_a_separate_id_that_heads_accept():
    head = LinearProbe(max_epochs=1, backbone_id=NEW_ID).fit(
        np.random.default_rng(0).normal(size=(40, 8)), np.arange(40) % 2
    )
    head.check_compatible(NEW_ID + "@draft", 8)  # the user opted in: accepted
    with pytest.raises(ValueError):
        head.check_compatible(NEW_ID + "@bicubic", 8)


# -- the training recipe, by behaviour -------------------------------------------------------


def test_label_smoothing_targets_are_the_authors():
    t = torch.tensor([0.0, 1.0])
    np.testing.assert_allclose(smoothed_targets(t, 0.1).numpy(), [0.1, 0.9])


def test_a_saturated_probe_settles_at_the_smoothed_target():
    """On separable data without weight decay, smoothed BCE is minimised at p = 0.9 / 0.1."""
    X = np.array([[1.0], [-1.0]] * 32, dtype=np.float32)
    y = np.array([1, 0] * 32)
    head = LinearProbe(lr=0.05, weight_decay=0.0, max_epochs=400, patience=400, batch_size=64).fit(
        X, y, X, y
    )
    p = head.predict_proba(np.array([[1.0], [-1.0]], dtype=np.float32))[:, 1]
    np.testing.assert_allclose(p, [0.9, 0.1], atol=0.01)


def test_orthogonal_head_starts_from_orthogonal_directions():
    X = np.random.default_rng(1).normal(size=(60, 32)).astype(np.float32)
    y = np.arange(60) % 2
    head = OrthogonalHead(k=8, max_epochs=0).fit(X, y, X, y)  # no step: the initial weights
    w = head.directions_.astype(np.float64)
    np.testing.assert_allclose(w @ w.T, np.eye(8), atol=1e-5)


def test_recipe_defaults_and_card():
    assert LinearProbe().max_epochs == 200 and OrthogonalHead().max_epochs == 200
    head = LinearProbe(max_epochs=1).fit(np.eye(4, dtype=np.float32), [0, 1, 0, 1])
    card = make_card(head)
    assert card["recipe"]["max_epochs"] == 200
    assert "clip-cues" in card["recipe"]["source"]


def test_concept_recipe_init_and_optimiser_groups(monkeypatch):
    from concepts import bottleneck
    from concepts.bottleneck import ConceptBottleneck

    head = ConceptBottleneck(np.eye(6, 12, dtype=np.float32))
    assert (head.batch_size, head.max_epochs, head.patience) == (256, 200, 10)
    assert head.early_stopping == "auroc"
    groups = {}
    real_adamw = torch.optim.AdamW

    def spy(param_groups, *args, **kwargs):
        groups["groups"] = [
            {k: v for k, v in g.items() if k != "params"} | {"n": len(list(g["params"]))}
            for g in param_groups
        ]
        return real_adamw(param_groups, *args, **kwargs)

    monkeypatch.setattr(bottleneck.torch.optim, "AdamW", spy)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 12)).astype(np.float32)
    y = np.arange(80) % 2
    # lr 0: one epoch leaves the weights at their initial values
    fitted = ConceptBottleneck(np.eye(6, 12, dtype=np.float32), lr=0.0, max_epochs=1).fit(
        X, y, X, y
    )
    gate, clf = groups["groups"]
    assert gate["weight_decay"] == 0.0 and clf["weight_decay"] == 1e-5
    assert fitted.b_classifier_ == pytest.approx(0.1)
    np.testing.assert_array_equal(fitted.b_concepts_, 0.0)
    xavier = np.sqrt(2.0 / (12 + 6))
    assert 0.5 * xavier < fitted.W_concepts_.std() < 1.5 * xavier


# -- honest metrics ---------------------------------------------------------------------------


def test_in_sample_counts_from_the_card(tmp_path):
    from detector.inference import in_sample_counts

    class WS:
        path = tmp_path

    card = {
        "training": {
            "workspace": str(tmp_path),
            "train_split": "train",
            "val_split": "val",
            "validation_source": "split 'val'",
        }
    }
    preds = pd.DataFrame({"split": ["train", "train", "val", "test"]})
    assert in_sample_counts(card, WS(), preds) == {"train": 2, "validation": 1}
    assert in_sample_counts(card, WS(), preds[preds["split"] == "test"]) == {}
    assert in_sample_counts({}, WS(), preds) == {}  # released heads: unknown


def test_transfer_matrix_refuses_in_sample_test_splits():
    from detector.train import TrainError, transfer_matrix

    meta = pd.DataFrame(
        {
            "label": [0, 1] * 10,
            "generator": [None, "A"] * 10,
            "split": ["train"] * 20,
            "hash": [str(i) for i in range(20)],
        }
    )
    X = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    with pytest.raises(TrainError, match="never saw"):
        transfer_matrix(meta, X, "all", "all", test_split="train")
