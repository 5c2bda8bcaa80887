"""Assessing the cues: the released concept-model comparison, interpretation stability across
seeds, and survival of explanations per generator (``concepts.shift``, ``concepts.stability``,
``concepts.survival`` and their commands)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
import torch

from concepts.bottleneck import ConceptBottleneck
from concepts.directions import (
    CACHE_NAMESPACE,
    DEFAULT_TEMPLATES,
    cache_key,
    concept_directions,
)
from concepts.shift import DOMAINS, concept_shift, rank_correlation, released_shift
from concepts.stability import (
    chordal_distance,
    concept_badges,
    importance_stability,
    jaccard,
    match_directions,
    run_stability,
    sign_agreement,
    spearman_abs,
    stored_stability,
    top_k,
)
from concepts.survival import (
    diagnostic_importance,
    selection_survival,
    survival_table,
    workspace_survival,
)
from concepts.synthetic import orthonormal_directions, planted_data, store_planted
from concepts.vocabulary import load_vocabulary
from detector.cli import main
from detector.heads import make_card, save_head
from detector.store import Workspace

BACKBONE = "tiny-clip/random"


# -- stability metrics on hand-built directions ----------------------------------------------


def _basis(k: int = 4, d: int = 16, seed: int = 0) -> np.ndarray:
    return orthonormal_directions(k, d, seed=seed).astype(np.float64)


def test_permuted_sign_flipped_copy_matches_exactly():
    a = _basis() * np.array([[1.0], [2.0], [0.5], [3.0]])  # row norms must not matter
    perm = np.array([2, 0, 3, 1])
    signs = np.array([-1.0, 1.0, -1.0, -1.0])
    b = a[perm] * signs[:, None]
    match = match_directions(a, b)
    assert match.mean_abs_cosine == pytest.approx(1.0, abs=1e-12)
    # row i of a is row partner[i] of b, and the flip undoes the sign
    assert [int(perm[p]) for p in match.partner] == [0, 1, 2, 3]
    np.testing.assert_allclose(match.aligned(b), a / np.linalg.norm(a, axis=1, keepdims=True))
    assert chordal_distance(a, b) == pytest.approx(0.0, abs=1e-7)


def test_rotated_subspace_keeps_distance_zero_while_matched_cosine_drops():
    a = _basis()
    c, s = np.cos(np.pi / 4), np.sin(np.pi / 4)
    rotation = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, c, -s], [0, 0, s, c]])
    b = rotation @ a  # every row turned by 45 degrees inside the same 4-d subspace
    assert chordal_distance(a, b) == pytest.approx(0.0, abs=1e-7)
    assert match_directions(a, b).mean_abs_cosine == pytest.approx(np.sqrt(0.5), abs=1e-9)


def test_orthogonal_subspaces_are_at_the_largest_distance():
    q = _basis(8, 16)
    assert chordal_distance(q[:4], q[4:]) == pytest.approx(2.0, abs=1e-7)  # sqrt(k)


def test_sign_agreement_and_jaccard_on_constructed_importances():
    fits = [
        np.array([+3.0, -2.0, 0.5, 0.0, 1.0]),
        np.array([+2.0, -1.0, -0.5, 0.0, 4.0]),
        np.array([+1.0, -3.0, 0.4, 0.0, -2.0]),
        np.array([+5.0, +0.1, 0.3, 0.0, 3.0]),
    ]
    same, sign = sign_agreement(fits)
    assert same.tolist() == [4, 3, 3, 4, 3]
    assert sign.tolist() == [1, -1, 1, 0, 1]
    assert top_k(fits[0], 2) == {0, 1} and top_k(fits[1], 2) == {4, 0}
    assert top_k(np.array([0.0, 2.0, 0.0]), 2) == {1}  # concepts at 0 are not "selected"
    assert jaccard({0, 1}, {0, 4}) == pytest.approx(1 / 3)
    assert jaccard(set(), set()) == 1.0
    out = importance_stability(fits, list("abcde"), k=2)
    # top-2 sets: {0,1}, {4,0}, {1,4}, {0,4}: pair Jaccards 1/3,1/3,1/3,1/3,1/3,1
    assert out["top_k_jaccard"]["mean"] == pytest.approx((5 / 3 + 1) / 6)
    assert out["top_k_jaccard"]["pairs"] == 6
    by = {c["concept"]: c for c in out["concepts"]}
    assert by["a"]["same_sign"] == 4 and by["a"]["in_top_k"] == 3
    assert by["e"]["in_top_k"] == 3 and by["c"]["in_top_k"] == 0
    assert out["concepts"][0]["concept"] == "a"  # largest |mean importance|


def test_spearman_leaves_out_concepts_zero_in_both():
    a = np.array([3.0, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    b = np.array([1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    # the five shared zeros would make the ranks agree; on the used concepts they are reversed
    assert spearman_abs(a, b) == pytest.approx(-1.0)
    assert np.isnan(spearman_abs(np.zeros(4), np.zeros(4)))


# -- the released comparison -----------------------------------------------------------------


@pytest.fixture
def released_dir(clip_cues_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("CUE_LENS_RELEASED_DIR", str(clip_cues_dir))
    monkeypatch.setenv("CUE_LENS_OFFLINE", "1")
    monkeypatch.setenv("CUE_LENS_CACHE", str(tmp_path / "cache"))
    return clip_cues_dir


def _raw_weights(folder) -> dict[str, np.ndarray]:
    """W_classifier of each released concept model, read straight from the checkpoints."""
    out = {}
    for d in DOMAINS:
        ck = torch.load(folder / f"cm_antonyms_{d}.ckpt", map_location="cpu", weights_only=True)
        out[d] = ck["state_dict"]["model.W_classifier.weight"].reshape(-1).double().numpy()
    return out


def test_released_comparison_matches_the_checkpoints(released_dir):
    raw = _raw_weights(released_dir)
    with open(released_dir / "antonyms.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    names = [r["attribute_name"] for r in rows]
    shift = released_shift()
    assert shift.domains == list(DOMAINS) and len(shift.table) == len(names) == 168
    table = shift.table.set_index("concept").loc[names]
    for d, w in raw.items():
        np.testing.assert_allclose(table[f"weight_{d}"], w, rtol=1e-6)
        np.testing.assert_allclose(table[f"importance_{d}"], np.abs(w) / np.abs(w).max())
    imp = np.vstack([np.abs(w) / np.abs(w).max() for w in raw.values()])
    np.testing.assert_allclose(table["spread"], imp.std(axis=0), atol=1e-12)
    assert shift.table["spread"].is_monotonic_decreasing
    expected = pd.DataFrame({d: np.abs(w) for d, w in raw.items()}).corr(method="spearman")
    np.testing.assert_allclose(shift.correlation.to_numpy(float), expected.to_numpy(), atol=1e-9)
    # each domain's top concept, with its sign and both poles from the vocabulary
    for d, w in raw.items():
        i = int(np.argmax(np.abs(w)))
        top = shift.top(d, 3).iloc[0]
        assert top["concept"] == names[i]
        assert top["towards"] == ("synthetic" if w[i] > 0 else "real")
        assert (top["positive"], top["negative"]) == (rows[i]["positive"], rows[i]["negative"])
    assert not shift.notes


def test_concept_shift_on_constructed_weights():
    weights = {"x": np.array([2.0, -1.0, 0.0]), "y": np.array([-4.0, 4.0, 1.0])}
    table = concept_shift(weights, ["p", "q", "r"]).set_index("concept")
    assert table.loc["p", "importance_x"] == 1.0 and table.loc["q", "importance_y"] == 1.0
    assert bool(table.loc["p", "sign_flip"]) and not bool(table.loc["r", "sign_flip"])
    assert table.loc["p", "signs"] == "+ -" and table.loc["r", "signs"] == "0 +"
    assert table.loc["q", "spread"] == pytest.approx(0.25)  # importances 0.5 and 1.0
    corr = rank_correlation(weights)
    assert corr.loc["x", "x"] == 1.0 and corr.loc["x", "y"] == corr.loc["y", "x"]


def test_cli_released_prints_the_same_comparison(released_dir, capsys):
    raw = _raw_weights(released_dir)
    assert main(["concepts", "--released", "--json", "--top", "5"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["domains"] == list(DOMAINS) and doc["n_concepts"] == 168 and not doc["demo"]
    rho = pd.DataFrame({d: np.abs(w) for d, w in raw.items()}).corr(method="spearman")
    assert doc["rank_correlation"]["cnnspot"]["synthclic"] == pytest.approx(
        rho.loc["cnnspot", "synthclic"]
    )
    for d, w in raw.items():
        top = doc["top_by_domain"][d]
        assert len(top) == 5 and top[0]["weight"] == pytest.approx(w[np.argmax(np.abs(w))])
    assert main(["concepts", "--released", "--top", "3"]) == 0
    text = capsys.readouterr().out
    assert "Spearman rank correlation" in text and "top 3 concepts of synthclic" in text


def test_cli_released_offline_without_files_says_where_to_put_them(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CUE_LENS_OFFLINE", "1")
    monkeypatch.setenv("CUE_LENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CUE_LENS_RELEASED_DIR", raising=False)
    assert main(["concepts", "--released"]) == 2
    err = capsys.readouterr().err
    assert "cm_antonyms_cnnspot" in err and "CUE_LENS_RELEASED_DIR" in err


# -- survival on a planted workspace ---------------------------------------------------------


@pytest.fixture(scope="module")
def planted_ws(tmp_path_factory):
    """Reals, gen_a (shifted along concept c00) and gen_b (shifted along c05), and a concept
    model whose decision rests on c00: it catches gen_a and misses gen_b."""
    root = tmp_path_factory.mktemp("survival")
    dirs = orthonormal_directions(8, 32, seed=4)
    data = planted_data(
        dirs,
        600,
        shifts={"gen_a": {0: 1.0}, "gen_b": {5: 1.0}},
        splits={"train": 0.5, "test": 0.5},
        seed=5,
    )
    names = [f"c{q:02d}" for q in range(8)]
    weight = np.full(8, 0.3, np.float32)
    weight[0], weight[5] = 8.0, 1.0
    head = ConceptBottleneck.from_tensors(
        {
            "text_embeddings": dirs,
            "W_concepts.weight": np.zeros((8, 32), np.float32),
            "W_concepts.bias": np.full(8, 10.0, np.float32),  # every gate open
            "W_classifier.weight": weight[None, :],
            "W_classifier.bias": np.zeros(1, np.float32),
        },
        {"backbone_id": BACKBONE, "concept_names": names},
    )
    with Workspace(root / "ws") as ws:
        store_planted(ws, BACKBONE, data)
        save_head(head, ws.heads_dir / "planted_cm", make_card(head, name="planted_cm"))
    return root / "ws", head, data


def test_survival_planted_concept_survives_on_one_generator_only(planted_ws):
    path, head, _ = planted_ws
    with Workspace(path, create=False) as ws:
        result = workspace_survival(ws, head, split="test", source_split="train", top=1)
    rows = result.table.set_index("generator")
    assert rows.loc["gen_a", "ap"] > 0.95 and rows.loc["gen_b", "ap"] < 0.75
    assert rows.loc["gen_a", "selection_survival"] == 1.0
    assert rows.loc["gen_b", "selection_survival"] == 0.0
    assert result.source_top() == ["c00"]
    cmp = result.compare(["gen_a", "gen_b"]).set_index("concept")
    assert bool(cmp.loc["c00", "gen_a survives"]) and not bool(cmp.loc["c00", "gen_b survives"])
    assert cmp.loc["c00", "gen_a"] > 10 * abs(cmp.loc["c00", "gen_b"])
    doc = result.to_dict()
    assert doc["survivors"]["gen_b"] == {"survive": [], "silent": ["c00"]}
    assert doc["method"] == "exact" and doc["split"] == "test"


def test_survival_table_and_importance_on_constructed_contributions():
    meta = pd.DataFrame(
        {
            "label": pd.array([0, 0, 1, 1, 1, 1], dtype="Int64"),
            "generator": [None, None, "g", "g", "h", "h"],
        }
    )
    c = np.array([[0, 0], [0, 0], [2, 0], [2, 0], [0, 1], [0, 3]], dtype=float)
    np.testing.assert_allclose(diagnostic_importance(c[:4], np.array([0, 0, 1, 1])), [2, 0])
    table, vectors = survival_table(c, meta, np.array([1.0, 0.0]), k=1, ap={"g": 0.9})
    table = table.set_index("generator")
    assert (
        table.loc["g", "selection_survival"] == 1.0 and table.loc["h", "selection_survival"] == 0.0
    )
    assert table.loc["g", "ap"] == 0.9 and np.isnan(table.loc["h", "ap"])
    np.testing.assert_allclose(vectors["h"], [0, 2])
    assert selection_survival(np.array([1.0, 0.0]), vectors["h"], 1) == 0.0


def test_cli_survival_json(planted_ws, capsys):
    path, _, _ = planted_ws
    argv = ["survival", "-w", str(path), "--head", "planted_cm", "--top", "1"]
    assert main([*argv, "--source-split", "train", "--compare", "gen_a,gen_b", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    gens = {g["generator"]: g for g in doc["generators"]}
    assert gens["gen_a"]["selection_survival"] == 1.0 and gens["gen_b"]["selection_survival"] == 0.0
    assert gens["gen_a"]["ap"] > gens["gen_b"]["ap"]
    assert doc["compare"][0]["concept"] == "c00" and doc["compare"][0]["gen_a survives"]
    assert main(argv) == 0
    assert "selection" not in capsys.readouterr().err


# -- stability on a workspace ----------------------------------------------------------------


@pytest.fixture(scope="module")
def stability_ws(tmp_path_factory, tiny_backbone):
    """Planted along the first concept of a small vocabulary (orthonormal directions cached
    as the vocabulary's), with a train and a validation split."""
    root = tmp_path_factory.mktemp("stability")
    vocab_path = root / "small.csv"
    load_vocabulary().to_frame().head(6)[
        ["id", "positive", "negative", "category", "explanation"]
    ].to_csv(vocab_path, index=False)
    vocab = load_vocabulary(vocab_path)
    dirs = orthonormal_directions(len(vocab), tiny_backbone.projected_dim, seed=6)
    with Workspace(root / "ws") as ws:
        # the text tower's random directions overlap; cache orthonormal ones in their place
        ws.put_array(CACHE_NAMESPACE, cache_key(BACKBONE, vocab, DEFAULT_TEMPLATES), dirs)
        assert np.array_equal(concept_directions(vocab, workspace=ws, backbone_id=BACKBONE), dirs)
        data = planted_data(
            dirs,
            240,
            shifts={"gen_a": {0: 1.5}},
            extra=8,
            splits={"train": 0.6, "val": 0.4},
            seed=7,
        )
        store_planted(ws, BACKBONE, data)
    return root / "ws", vocab_path, vocab


@pytest.mark.parametrize("head_type", ["linear", "orthogonal"])
def test_run_stability_finds_the_planted_concept_every_time(stability_ws, head_type):
    path, vocab_path, vocab = stability_ws
    with Workspace(path, create=False) as ws:
        result = run_stability(ws, head_type, seeds=3, top=1, vocabulary=str(vocab_path))
        assert stored_stability(ws, BACKBONE, head_type)["seeds"] == [0, 1, 2]
    group = result["groups"][0]
    first = group["importance"]["concepts"][0]
    assert first["concept"] == vocab.ids[0]
    assert first["same_sign"] == 3 and first["in_top_k"] == 3 and first["sign"] == 1
    assert group["importance"]["top_k_jaccard"]["mean"] == 1.0
    assert concept_badges(result)[vocab.ids[0]] == "same sign in 3 of 3 fits, top-1 in 3"
    assert "top-1 overlap 1.00 across 3 seeds" in result["summary"]
    if head_type == "orthogonal":
        d = group["directions"]
        assert 0.0 <= d["matched_abs_cosine"]["mean"] <= 1.0
        assert 0.0 <= d["chordal_distance"]["mean"] <= d["max_chordal_distance"]
    else:
        assert "directions" not in group


def test_run_stability_concept_model_equals_its_fits(stability_ws):
    """The concept model's importance per fit is its exact class-mean difference on the
    validation split; recomputed here from heads trained independently with the same seeds."""
    from detector.train import train_head

    path, vocab_path, vocab = stability_ws
    with Workspace(path, create=False) as ws:
        result = run_stability(ws, "concept", seeds=[0, 1], top=2, vocabulary=str(vocab_path))
        meta, x = ws.dataset(BACKBONE, "projected", split="val")
        y = meta["label"].astype(int).to_numpy()
        fits = []
        for seed in (0, 1):
            head = train_head(
                ws, "concept", seed=seed, params={"vocabulary": str(vocab_path)}, save=False
            ).head
            c = head.contributions(x)
            fits.append(c[y == 1].mean(axis=0) - c[y == 0].mean(axis=0))
    concepts = {c["concept"]: c for c in result["groups"][0]["importance"]["concepts"]}
    mean = np.mean(fits, axis=0)
    same = (np.sign(fits[0]) == np.sign(fits[1])).astype(int) + 1
    for i, name in enumerate(vocab.ids):
        assert concepts[name]["mean_importance"] == pytest.approx(mean[i], rel=1e-6, abs=1e-12)
        assert concepts[name]["same_sign"] == same[i]
    assert "directions" not in result["groups"][0]
    assert (
        max(concepts.values(), key=lambda c: abs(c["mean_importance"]))["concept"] == vocab.ids[0]
    )


def test_stability_betas_and_bad_input(stability_ws, capsys):
    path, vocab_path, _ = stability_ws
    argv = ["stability", "-w", str(path), "--vocabulary", str(vocab_path), "--top", "2"]
    assert main([*argv, "--head", "linear", "--seeds", "1"]) == 2
    assert "at least two seeds" in capsys.readouterr().err
    assert main([*argv, "--head", "linear", "--betas", "1e-3"]) == 2
    assert "--head concept" in capsys.readouterr().err
    assert main([*argv, "--head", "concept", "--seeds", "2", "--betas", "1e-4,1e-2",
                 "--param", "max_epochs=5", "--json"]) == 0  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    assert [g["label"] for g in doc["groups"]] == [
        "seeds at beta 0.0001",
        "seeds at beta 0.01",
        "betas at seed 0",
    ]
    assert [f["beta"] for f in doc["groups"][2]["fits"]] == [1e-4, 1e-2]
