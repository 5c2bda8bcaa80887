"""``python -m detector concepts`` and ``explain`` end to end, on tiny-clip."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from concepts.bottleneck import train_concept_model
from concepts.directions import concept_directions
from concepts.synthetic import orthonormal_directions, planted_data, store_planted
from concepts.vocabulary import load_vocabulary
from detector.cli import main
from detector.heads import LinearProbe, load_head, make_card, save_head
from detector.store import Workspace

BACKBONE = "tiny-clip/random"
REPO = Path(__file__).resolve().parents[1]
CONCEPTS = [
    "lens_flare",
    "bokeh",
    "film_grain",
    "motion_blur",
    "watermark",
    "legible_text",
    "correct_hands",
    "vignetting",
    "depth_of_field",
    "minimalist_style",
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_backbone):
    """A workspace of planted tiny-clip-sized embeddings, a small vocabulary (directions
    cached), a linear head and a concept head saved in WS/heads, and two image files."""
    root = tmp_path_factory.mktemp("cli")
    vocab_path = root / "small.csv"
    load_vocabulary().subset(CONCEPTS).to_frame()[
        ["id", "positive", "negative", "category", "explanation"]
    ].to_csv(vocab_path, index=False)
    vocab = load_vocabulary(vocab_path)
    data = planted_data(
        orthonormal_directions(8, tiny_backbone.projected_dim, seed=1),
        240,
        shifts={"gen_a": {0: 1.0}, "gen_b": {3: -1.0}},
        extra=32,
        splits={"train": 0.75, "val": 0.25},
        seed=2,
    )
    ws_path = root / "ws"
    with Workspace(ws_path) as ws:
        store_planted(ws, BACKBONE, data)
        concept_directions(vocab, tiny_backbone, workspace=ws)
        rng = np.random.default_rng(3)
        linear = LinearProbe.from_tensors(
            {
                "weight": rng.normal(size=(1, 64)).astype(np.float32),
                "bias": np.zeros(1, np.float32),
            },
            {"backbone_id": BACKBONE},
        )
        save_head(linear, ws.heads_dir / "lin", make_card(linear))
        train_concept_model(ws, BACKBONE, vocabulary=vocab, out=ws.heads_dir / "cm", max_epochs=3)
    image = root / "photo.png"
    Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(image)
    broken = root / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    return {
        "ws": str(ws_path),
        "vocab": str(vocab_path),
        "image": str(image),
        "broken": str(broken),
        "heads": ws_path / "heads",
    }


def explain_with_concept_model(capsys, setup, *argv) -> dict:
    """``explain --json`` of ``argv`` (images, then options) by the setup's concept model."""
    head = str(setup["heads"] / "cm.safetensors")
    return run_json(
        capsys, "explain", *argv, "--head", head, "--model", "tiny-clip", "--device", "cpu"
    )


def run_json(capsys, *argv) -> dict:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_concepts_without_a_head(setup, capsys):
    out = run_json(
        capsys, "concepts", "-w", setup["ws"], "--vocabulary", setup["vocab"], "--top", "4"
    )
    assert out["backbone_id"] == BACKBONE and out["demo"] and out["banner"].startswith("DEMO")
    assert out["vocabulary"]["n_concepts"] == len(CONCEPTS)
    assert out["head"] is None and out["fidelity"] is None
    assert len(out["single_concept_auc"]) == 4
    assert {"concept", "category", "all", "gen_a", "gen_b"} <= set(out["single_concept_auc"][0])
    assert out["groups"] == {"gen_a": 60, "gen_b": 60, "real": 120}


def test_concepts_of_a_linear_head_report_their_fidelity(setup, capsys):
    out = run_json(
        capsys, "concepts", "-w", setup["ws"], "--vocabulary", setup["vocab"], "--head", "lin"
    )
    assert out["head"]["head_type"] == "linear" and out["method"] == "lasso surrogate"
    assert isinstance(out["fidelity"], float)
    assert len(out["importance"]) == len(CONCEPTS) and out["surrogate_weights"]
    assert "fidelity" in " ".join(out["notes"])
    assert (
        main(
            [
                "concepts",
                "-w",
                setup["ws"],
                "--vocabulary",
                setup["vocab"],
                "--head",
                "lin",
                "--top",
                "3",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "DEMO" in text and "fidelity" in text and "lasso surrogate" in text


def test_concepts_of_a_concept_model_are_exact(setup, capsys):
    out = run_json(capsys, "concepts", "-w", setup["ws"], "--head", "cm")
    assert out["method"] == "exact" and out["fidelity"] == 1.0
    assert {"usage_real", "usage_synthetic"} <= set(out["importance"][0])
    assert {r["concept"] for r in out["importance"]} <= set(CONCEPTS)


def test_a_custom_phrase(setup, capsys):
    out = run_json(capsys, "concepts", "-w", setup["ws"], "--phrase", "a rainbow")
    assert out["against"] == "a photograph" and 0 <= out["auc"] <= 1
    assert set(out["auc_by_generator"]) == {"gen_a", "gen_b"}
    assert [r["group"] for r in out["distribution"]] == ["real", "synthetic", "gen_a", "gen_b"]
    assert (
        main(["concepts", "-w", setup["ws"], "--phrase", "a rainbow", "--against", "a grey sky"])
        == 0
    )
    assert "AUC gen_a vs real" in capsys.readouterr().out


def test_explain_a_concept_model_exactly(setup, capsys):
    out = explain_with_concept_model(capsys, setup, setup["image"], setup["broken"], "--top", "3")
    assert out["demo"] and out["head"]["head_type"] == "concept"
    assert out["failed"] == [{"path": setup["broken"], "error": out["failed"][0]["error"]}]
    (image,) = out["images"]
    assert image["method"] == "exact" and image["fidelity"] == 1.0
    assert image["not_explained_by_concepts"] == 0.0 and len(image["concepts"]) == 3
    assert image["baseline"] + image["explained_by_concepts"] == pytest.approx(image["logit"])


def test_explain_a_linear_head_with_its_surrogate(setup, capsys):
    args = [
        "explain",
        setup["image"],
        "--head",
        "lin",
        "--workspace",
        setup["ws"],
        "--vocabulary",
        setup["vocab"],
        "--model",
        "tiny-clip",
        "--device",
        "cpu",
    ]
    out = run_json(capsys, *args)
    (image,) = out["images"]
    assert image["method"] == "lasso surrogate" and isinstance(image["fidelity"], float)
    total = image["baseline"] + image["explained_by_concepts"] + image["not_explained_by_concepts"]
    assert total == pytest.approx(image["logit"], abs=1e-9)
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "not explained by concepts" in text and "fidelity" in text and "DEMO" in text


def test_explain_errors_are_readable(setup, capsys):
    capsys.readouterr()
    head = str(setup["heads"] / "lin.safetensors")
    assert main(["explain", setup["image"], "--head", head, "--model", "tiny-clip"]) == 2
    assert "needs a workspace" in capsys.readouterr().err
    assert main(["concepts", "-w", setup["ws"], "--vocabulary", "no-such-vocabulary"]) == 2
    assert "unknown vocabulary" in capsys.readouterr().err


def test_train_concept_in_a_fresh_process_matches_the_library_trainer(setup, tmp_path):
    """``python -m detector train --head concept`` in a fresh interpreter (nothing of concepts/
    imported beforehand) trains the head ``train_concept_model`` gives for the same seed."""
    argv = ["train", "-w", setup["ws"], "--head", "concept", "--vocabulary", setup["vocab"]]
    argv += ["--param", "max_epochs=4", "--seed", "1", "--out", str(tmp_path / "cli_cm"), "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "detector", *argv], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    card = json.loads(done.stdout)["card"]
    assert card["head_type"] == "concept" and card["vocabulary"]["n_concepts"] == len(CONCEPTS)
    cli = load_head(tmp_path / "cli_cm.safetensors")
    with Workspace(setup["ws"], create=False) as ws:
        library, _ = train_concept_model(
            ws, BACKBONE, vocabulary=setup["vocab"], seed=1, max_epochs=4
        )
    assert cli.concept_names_ == library.concept_names_ == CONCEPTS
    for name, tensor in library.to_tensors().items():
        np.testing.assert_array_equal(cli.to_tensors()[name], tensor, err_msg=name)
