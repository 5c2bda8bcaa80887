"""The detector commands end to end (train, eval, matrix, heads, predict) and the inference
functions behind them (scores, verdicts, per-image predictions with workspace caching)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from detector.analysis import predict_images
from detector.cli import main
from detector.errors import CueLensError
from detector.heads import LinearProbe
from detector.inference import (
    INCONCLUSIVE,
    LIKELY_REAL,
    LIKELY_SYNTHETIC,
    backbone_spec,
    score_embeddings,
    verdict,
    verdict_edges,
)
from detector.store import ImageRow, Workspace

TINY = "tiny-clip/random"


def build_workspace(path, backbone=TINY, dim=64, n=240, seed=0):
    """Random pooled embeddings; synthetic ones shifted along one direction (three generators)."""
    rng = np.random.default_rng(seed)
    rows, hashes, vectors = [], [], []
    gens = ["ProGAN", "SD", None]
    for i in range(n):
        label = i % 2
        gen = gens[(i // 2) % 3] if label else None
        h = f"{seed}-{i:06d}".ljust(64, "0")
        rows.append(
            ImageRow(hash=h, path=f"/data/{i}.png", label=label, generator=gen, source=f"s{i % 3}")
        )
        hashes.append(h)
        vectors.append(rng.normal(size=dim) + (5.0 if label else 0.0) * np.eye(dim)[0])
    with Workspace(path) as ws:
        ws.add_images(rows)
        ws.put_embeddings(backbone, "pooled", hashes, np.array(vectors))
    return path


def run_json(capsys, *argv):
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_train_eval_matrix_heads_json(tmp_path, capsys):
    ws = str(build_workspace(tmp_path / "ws"))
    trained = run_json(
        capsys,
        "train",
        "--workspace",
        ws,
        "--head",
        "orthogonal",
        "--out",
        "orth",
        "--seed",
        "3",
        "--param",
        "k=4",
        "--param",
        "lr=0.01",
    )
    assert trained["path"].endswith("heads/orth.safetensors")
    card = trained["card"]
    assert card["demo"] is True and card["hyperparameters"]["k"] == 4
    assert card["training"]["seed"] == 3 and 0 < card["threshold"] < 1

    preds_csv = tmp_path / "preds.csv"
    metrics_csv = tmp_path / "metrics.csv"
    eval_orth = ("eval", "--workspace", ws, "--head", "orth")
    evaluated = run_json(
        capsys,
        *eval_orth,
        "--bootstrap",
        "100",
        "--predictions",
        str(preds_csv),
        "--out",
        str(metrics_csv),
        "--oracle",
    )
    assert evaluated["split"] == "test" and evaluated["demo"] is True
    assert evaluated["summary"]["mAP"]["value"] > 0.9
    assert evaluated["summary"]["accuracy@validation"]["threshold"] == pytest.approx(
        card["threshold"]
    )
    assert "accuracy@oracle" in evaluated["summary"]
    preds = pd.read_csv(preds_csv)
    assert list(preds.columns) == [
        "path",
        "hash",
        "label",
        "generator",
        "split",
        "score",
        "probability",
    ]
    assert len(preds) == evaluated["n_images"] and set(preds["split"]) == {"test"}
    assert pd.read_csv(metrics_csv)["metric"].isin(["ap", "mAP"]).any()

    matched = run_json(capsys, *eval_orth, "--pairing", "matched", "--bootstrap", "0")
    assert matched["pairing"] == "matched"

    matrix_csv = tmp_path / "matrix.csv"
    matrix = run_json(
        capsys,
        "matrix",
        "--workspace",
        ws,
        "--train",
        "ProGAN,both=ProGAN+SD",
        "--test",
        "each",
        "--bootstrap",
        "50",
        "--out",
        str(matrix_csv),
        "--param",
        "lr=0.01",
    )
    cells = pd.DataFrame(matrix["cells"])
    assert set(cells["train_group"]) == {"ProGAN", "both"}
    assert set(cells["test_group"]) == {"ProGAN", "SD", "unknown"}
    assert len(pd.read_csv(matrix_csv)) == 6
    loo = run_json(capsys, "matrix", "--workspace", ws, "--train", "loo", "--bootstrap", "0")
    assert {c["kind"] for c in loo["cells"]} == {"loo"}

    listed = run_json(capsys, "heads", "--workspace", ws)
    kinds = pd.DataFrame(listed["heads"]).groupby("kind")["name"].apply(list).to_dict()
    assert len(kinds["released"]) == 12 and kinds["workspace"] == ["orth"]


def test_text_output_labels_demo_and_pooled_ap(tmp_path, capsys):
    ws = str(build_workspace(tmp_path / "ws"))
    assert main(["train", "--workspace", ws, "--out", "probe"]) == 0
    assert "DEMO" in capsys.readouterr().out
    assert main(["eval", "--workspace", ws, "--head", "probe", "--bootstrap", "20"]) == 0
    out = capsys.readouterr().out
    assert "DEMO" in out and "pooled AP (not mAP)" in out and "mAP" in out
    assert main(["matrix", "--workspace", ws, "--train", "all", "--bootstrap", "0"]) == 0
    assert "rows: trained on" in capsys.readouterr().out


def test_user_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["train", "--workspace", str(tmp_path / "missing")]) == 2
    assert "no Cue Lens workspace" in capsys.readouterr().err
    ws = str(build_workspace(tmp_path / "ws"))
    assert main(["eval", "--workspace", ws, "--head", "nope"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["train", "--workspace", ws, "--param", "oops"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["matrix", "--workspace", ws, "--train", "Midjourney"]) == 2
    assert "unknown generator" in capsys.readouterr().err


def test_eval_refuses_a_head_of_another_backbone(tmp_path, capsys):
    ws_tiny = str(build_workspace(tmp_path / "tiny"))
    ws_other = str(build_workspace(tmp_path / "other", backbone="ViT-B-16/openai", dim=64))
    assert main(["train", "--workspace", ws_tiny, "--out", str(tmp_path / "h")]) == 0
    capsys.readouterr()
    assert main(["eval", "--workspace", ws_other, "--head", str(tmp_path / "h.safetensors")]) == 2
    err = capsys.readouterr().err
    assert TINY in err and "ViT-B-16/openai" in err


# -- inference -------------------------------------------------------------------------------


def test_verdict_band_edges_and_rule():
    low, high = verdict_edges(0.5, 1.0)
    assert low == pytest.approx(1 / (1 + np.e)) and high == pytest.approx(np.e / (1 + np.e))
    assert verdict(0.1) == LIKELY_REAL and verdict(0.9) == LIKELY_SYNTHETIC
    assert verdict(0.5) == INCONCLUSIVE and verdict(low) == INCONCLUSIVE
    many = verdict(np.array([0.01, 0.5, 0.99, np.nan]), threshold=0.9, band=0.5)
    assert list(many[:3]) == [LIKELY_REAL, LIKELY_REAL, LIKELY_SYNTHETIC] and many[3] is None
    lo9, hi9 = verdict_edges(0.99, 2.0)  # edges stay inside (0, 1) for extreme thresholds
    assert 0 < lo9 < 0.99 < hi9 < 1
    with pytest.raises(CueLensError):
        verdict_edges(1.0)


def test_score_embeddings_checks_backbone_and_dimension():
    X = np.random.default_rng(0).normal(size=(50, 8))
    y = (X[:, 0] > 0).astype(int)
    head = LinearProbe(max_epochs=3, backbone_id=TINY).fit(X, y)
    logit, prob = score_embeddings(head, X, backbone_id=TINY)
    assert logit.shape == (50,) and np.allclose(prob, 1 / (1 + np.exp(-logit)))
    with pytest.raises(CueLensError, match="ViT-L-14-336/openai"):
        score_embeddings(head, X, backbone_id="ViT-L-14-336/openai")
    with pytest.raises(CueLensError, match="expects 8-d"):
        score_embeddings(head, np.zeros((2, 9)))


def test_backbone_spec_from_ids():
    assert backbone_spec("ViT-L-14-336/openai") == {"model": "ViT-L-14-336", "pretrained": "openai"}
    assert backbone_spec("tiny-clip/random") == {"model": "tiny-clip", "pretrained": None}
    assert backbone_spec("ViT-B-16/openai@bicubic")["interpolation"] == "bicubic"
    with pytest.raises(CueLensError, match="--pretrained"):
        backbone_spec("ViT-B-16/file:0123456789ab")


def test_predict_images_caches_embeddings_and_lists_failures(tmp_path, samples_dir, tiny_backbone):
    images = sorted((samples_dir / "synthetic").iterdir())[:2]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    X = np.random.default_rng(0).normal(size=(40, tiny_backbone.pooled_dim))
    head = LinearProbe(max_epochs=2, backbone_id=tiny_backbone.id).fit(X, np.arange(40) % 2)
    with Workspace(tmp_path / "ws") as ws:
        first = predict_images([*images, broken, tmp_path / "missing.png"], tiny_backbone, head, ws)
        assert list(first.columns) == [
            "path",
            "hash",
            "score",
            "probability",
            "verdict",
            "error",
            "warning",
            "cached",
        ]
        assert first["error"].isna().tolist() == [True, True, False, False]
        assert set(first["verdict"].dropna()) <= {LIKELY_REAL, INCONCLUSIVE, LIKELY_SYNTHETIC}
        assert not first["cached"].any()
        second = predict_images(
            [images[0], ("upload.png", images[1].read_bytes())], tiny_backbone, head, ws
        )
        assert second["cached"].all()
        np.testing.assert_allclose(second["score"], first["score"][:2], rtol=1e-6)
    other = LinearProbe(max_epochs=2, backbone_id="ViT-L-14-336/openai").fit(X, np.arange(40) % 2)
    with pytest.raises(CueLensError, match="ViT-L-14-336/openai"):
        predict_images(images, tiny_backbone, other)


def test_predict_without_weights_explains_how_to_get_them(
    tmp_path, capsys, clip_cues_dir, samples_dir, monkeypatch
):
    monkeypatch.setenv("CUE_LENS_RELEASED_DIR", str(clip_cues_dir))
    monkeypatch.setenv("CUE_LENS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CUE_LENS_CACHE", str(tmp_path / "cache"))
    from detector.backbone import weights_available

    if weights_available(probe_network=False):
        pytest.skip("ViT-L-14-336/openai weights are cached here: nothing to explain")
    image = next((samples_dir / "real").iterdir())
    assert main(["predict", str(image)]) == 2
    err = capsys.readouterr().err
    assert "ViT-L-14-336" in err and "tiny-clip" in err
    assert main(["predict", str(image), "--model", "tiny-clip"]) == 2
    assert "--workspace" in capsys.readouterr().err


def test_end_to_end_on_the_samples_with_tiny_clip(tmp_path, capsys, samples_dir):
    pytest.importorskip("detector.extract", reason="the extraction pipeline is not here yet")
    ws = str(tmp_path / "ws")
    embedded = run_json(
        capsys,
        "embed",
        str(samples_dir / "manifest.csv"),
        "--workspace",
        ws,
        "--model",
        "tiny-clip",
        "--workers",
        "0",
    )
    assert embedded["embedded"] == 41
    trained = run_json(capsys, "train", "--workspace", ws, "--head", "linear", "--out", "demo")
    assert trained["card"]["demo"] is True
    assert trained["splits"]["counts"] == {"test": 8, "train": 25, "val": 8}
    evaluated = run_json(capsys, "eval", "--workspace", ws, "--head", "demo", "--bootstrap", "50")
    assert evaluated["n_images"] == 8 and evaluated["summary"]["mAP"]["value"] is not None
    matrix = run_json(capsys, "matrix", "--workspace", ws, "--train", "loo", "--bootstrap", "20")
    notes = [c["note"] for c in matrix["cells"] if c["mAP"] is None]
    # singletons are not in the test split; unnamed fakes are left out of mAP by default
    assert notes and all("no synthetic images" in n or "only unnamed fakes" in n for n in notes), (
        notes
    )
    image = sorted((samples_dir / "synthetic").iterdir())[0]
    predicted = run_json(capsys, "predict", str(image), "--model", "tiny-clip", "--workspace", ws)
    assert predicted["demo"] is True and predicted["head"] == "demo"
    assert predicted["images"][0]["cached"] is True  # embedded by `embed` already


def test_tiny_images_get_no_verdict_and_say_why(tmp_path, tiny_backbone):
    import io

    from PIL import Image

    from detector.inference import MIN_JUDGE_SIDE, TOO_SMALL, too_small_reason

    def png(size):
        out = io.BytesIO()
        Image.new("RGB", size, (120, 80, 40)).save(out, "PNG")
        return out.getvalue()

    assert too_small_reason(1, 1).startswith(TOO_SMALL)
    assert too_small_reason(MIN_JUDGE_SIDE, 4000) is None
    assert too_small_reason(MIN_JUDGE_SIDE - 1, 4000) is not None
    assert too_small_reason(None, None) is None
    X = np.random.default_rng(0).normal(size=(40, tiny_backbone.pooled_dim))
    head = LinearProbe(max_epochs=2, backbone_id=tiny_backbone.id).fit(X, np.arange(40) % 2)
    items = [("dot.png", png((1, 1))), ("strip.png", png((400, 20))), ("ok.png", png((96, 80)))]
    with Workspace(tmp_path / "ws") as ws:
        for _ in range(2):  # fresh, then from the workspace: the rule holds either way
            table = predict_images(items, tiny_backbone, head, ws)
            assert table["verdict"].tolist()[:2] == [TOO_SMALL, TOO_SMALL]
            assert table["verdict"].iloc[2] in {LIKELY_REAL, INCONCLUSIVE, LIKELY_SYNTHETIC}
            assert "1×1 px" in table["warning"].iloc[0] and table["warning"].isna().iloc[2]
            assert table["probability"].notna().all()
        assert table["cached"].all()
