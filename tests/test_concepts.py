"""Directions (and their cache), concept scores, global importances and custom concepts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics.pairwise import cosine_similarity

import concepts.scores as scores_module
from concepts.directions import (
    DEFAULT_TEMPLATES,
    NEUTRAL_PROMPT,
    DirectionsUnavailableError,
    cache_key,
    compute_directions,
    concept_directions,
    custom_vocabulary,
    phrase_direction,
    pole_prompts,
    templates_hash,
)
from concepts.importance import (
    class_importance,
    concept_generator_matrix,
    custom_concept_report,
    group_labels,
    rank_auc,
    single_concept_auc,
)
from concepts.scores import ScoresError, concept_scores, workspace_scores
from concepts.synthetic import (
    FakeTextEncoder,
    planted_data,
    random_directions,
    store_planted,
    toy_vocabulary,
)
from concepts.vocabulary import Vocabulary, VocabularyError, load_vocabulary
from detector.store import Workspace


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


# -- directions ------------------------------------------------------------------------------


def test_direction_is_the_normalised_difference_of_normalised_pole_means():
    enc = FakeTextEncoder(dim=16)
    vocab = Vocabulary.from_pairs([("fog", "thick fog", "clear air")])
    templates = ("a photo of {}.", "an image with {}.")
    got = compute_directions(enc, vocab, templates)[0]
    pos = unit(np.mean([enc.vector(t.format("thick fog")) for t in templates], axis=0))
    neg = unit(np.mean([enc.vector(t.format("clear air")) for t in templates], axis=0))
    np.testing.assert_allclose(got, unit(pos - neg), atol=1e-6)
    assert enc.calls == 1 and enc.texts == 4


def test_explicit_prompts_replace_the_templates_for_their_pole(clip_cues_dir):
    vocab = load_vocabulary(clip_cues_dir / "antonyms.csv").subset(["saturation"])
    prompts, owner = pole_prompts(vocab)
    assert prompts == [
        "A photograph with balanced saturation",
        "A photograph with oversaturation",
    ]
    assert owner.tolist() == [0, 1]
    single = custom_vocabulary("lens flare")
    prompts, owner = pole_prompts(single)
    assert prompts[-1] == NEUTRAL_PROMPT and owner.tolist().count(1) == 1
    assert len(prompts) == len(DEFAULT_TEMPLATES) + 1


def test_every_default_direction_is_unit_and_distinct():
    enc = FakeTextEncoder(dim=64)
    d = compute_directions(enc, load_vocabulary())
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)
    assert np.abs(np.triu(d @ d.T, 1)).max() < 0.999


def test_identical_poles_after_encoding_are_reported():
    class Constant(FakeTextEncoder):
        def vector(self, text):
            return super().vector("same")

    with pytest.raises(VocabularyError, match="same text embedding for both poles"):
        compute_directions(Constant(dim=8), toy_vocabulary(2))


def test_templates_must_hold_a_slot():
    with pytest.raises(ValueError, match="must contain"):
        templates_hash(("a photo",))
    assert templates_hash(DEFAULT_TEMPLATES) == templates_hash(tuple(DEFAULT_TEMPLATES))


def test_second_computation_costs_no_text_encoder_call(tmp_path):
    enc = FakeTextEncoder(dim=16)
    vocab = toy_vocabulary(10)
    with Workspace(tmp_path / "ws") as ws:
        first = concept_directions(vocab, enc, workspace=ws)
        assert enc.calls == 1
        second = concept_directions(vocab, enc, workspace=ws)
        assert enc.calls == 1
        np.testing.assert_array_equal(first, second)
        key = cache_key(enc.id, vocab, DEFAULT_TEMPLATES)
        assert key == f"{enc.id}|{vocab.hash}|{templates_hash(DEFAULT_TEMPLATES)}"
        assert ws.get_array("concept_directions", key) is not None
        # no encoder needed on a hit; a miss without one says what to do
        concept_directions(vocab, backbone_id=enc.id, workspace=ws)
        with pytest.raises(DirectionsUnavailableError, match="text encoder"):
            concept_directions(toy_vocabulary(3), backbone_id=enc.id, workspace=ws)
        # other templates, other vocabulary, other backbone: new entries
        concept_directions(vocab, enc, templates=("a photo of {}.",), workspace=ws)
        concept_directions(toy_vocabulary(11), enc, workspace=ws)
        assert enc.calls == 3
        other = FakeTextEncoder(dim=16, id="fake-clip/other")
        concept_directions(vocab, other, workspace=ws)
        assert other.calls == 1
    with Workspace(tmp_path / "ws") as ws:  # persisted across processes
        concept_directions(vocab, enc, workspace=ws)
        assert enc.calls == 3


def test_cache_hits_cost_the_real_text_tower_nothing(tmp_path, tiny_backbone):
    vocab = load_vocabulary().subset(["lens_flare", "bokeh", "film_grain"])
    with Workspace(tmp_path / "ws") as ws:
        before = tiny_backbone.text_calls
        d = concept_directions(vocab, tiny_backbone, workspace=ws)
        assert tiny_backbone.text_calls == before + 1
        assert d.shape == (3, tiny_backbone.projected_dim)
        again = concept_directions(vocab, tiny_backbone, workspace=ws)
        direction = phrase_direction("a rainbow", encoder=tiny_backbone, workspace=ws)
        phrase_direction("a rainbow", encoder=tiny_backbone, workspace=ws)
        assert tiny_backbone.text_calls == before + 2
        np.testing.assert_array_equal(d, again)
        assert direction.shape == (tiny_backbone.projected_dim,)


# -- scores ----------------------------------------------------------------------------------


def test_scores_are_cosines_in_blocks(monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(103, 20)).astype(np.float32) * 7
    d = random_directions(9, 20)
    monkeypatch.setattr(scores_module, "BLOCK_ROWS", 10)
    s = concept_scores(x, d)
    np.testing.assert_allclose(s, cosine_similarity(x, d), atol=1e-5)
    np.testing.assert_allclose(concept_scores(x[0], d), s[0], atol=1e-6)
    with pytest.raises(ScoresError, match="projected tap"):
        concept_scores(x, random_directions(9, 21))


def test_workspace_scores(tmp_path):
    enc = FakeTextEncoder(dim=16)
    d = compute_directions(enc, toy_vocabulary(5))
    data = planted_data(d, 40, splits={"train": 1.0})
    with Workspace(tmp_path / "ws") as ws:
        with pytest.raises(ScoresError, match="embed"):
            workspace_scores(ws, enc.id, d)
        store_planted(ws, enc.id, data)
        meta, s = workspace_scores(ws, enc.id, d, split="train")
    assert s.shape == (40, 5) and len(meta) == 40
    order = {h: i for i, h in enumerate(data.meta["hash"])}
    idx = [order[h] for h in meta["hash"]]
    np.testing.assert_allclose(s, concept_scores(data.projected[idx], d), atol=2e-3)


# -- importances -----------------------------------------------------------------------------


def test_rank_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 300).astype(bool)
    s = np.round(rng.normal(size=(300, 4)) + y[:, None] * [0, 0.5, 1, -1], 1)
    got = rank_auc(s, y)
    want = [roc_auc_score(y, s[:, j]) for j in range(4)]
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert rank_auc(s[:, 2], y) == pytest.approx(want[2])
    assert np.isnan(rank_auc(s[:, 0], np.zeros(300, bool)))


def planted_generators():
    d = random_directions(8, 128, seed=3)
    return planted_data(
        d, 900, shifts={"gen_a": {2: 0.8}, "gen_b": {5: -0.8}}, spread=0.2, noise=0.02, seed=4
    )


def test_single_concept_auc_finds_each_generators_planted_concept():
    data = planted_generators()
    s = concept_scores(data.projected, data.directions)
    names = [f"c{q}" for q in range(8)]
    auc = single_concept_auc(s, data.meta, names)
    assert list(auc.columns) == ["gen_a", "gen_b", "all"]
    assert auc.loc["c2", "gen_a"] > 0.95 and auc.loc["c5", "gen_b"] < 0.05
    strength = (auc[["gen_a", "gen_b"]] - 0.5).abs()
    assert strength["gen_a"].idxmax() == "c2" and strength["gen_b"].idxmax() == "c5"
    assert strength.drop(index=["c2", "c5"]).to_numpy().max() < 0.3
    groups = group_labels(data.meta)
    keep = np.isin(groups, ["real", "gen_a"])
    assert auc.loc["c2", "gen_a"] == pytest.approx(
        roc_auc_score(groups[keep] == "gen_a", s[keep, 2])
    )


def test_generator_matrix_is_relative_to_the_reals():
    data = planted_generators()
    s = concept_scores(data.projected, data.directions)
    names = [f"c{q}" for q in range(8)]
    diff = concept_generator_matrix(s, data.meta, names)
    sd = concept_generator_matrix(s, data.meta, names, scale="sd")
    assert diff.loc["c2", "gen_a"] > 0.1 and diff.loc["c5", "gen_b"] < -0.1
    assert diff.abs().drop(index=["c2", "c5"]).to_numpy().max() < diff.loc["c2", "gen_a"] / 3
    assert sd.loc["c2", "gen_a"] > 2
    groups = group_labels(data.meta)
    want = s[groups == "gen_a", 2].mean() - s[groups == "real", 2].mean()
    assert diff.loc["c2", "gen_a"] == pytest.approx(want)


def test_class_importance_and_gate_usage():
    contributions = np.array([[1.0, 0.0], [1.0, 0.2], [3.0, 0.0], [3.0, -0.2]])
    gates = np.array([[0.9, 0.1], [0.8, 0.2], [0.9, 0.7], [0.2, 0.9]])
    df = class_importance(contributions, np.array([0, 0, 1, 1]), ["a", "b"], gates=gates)
    assert df["concept"].tolist() == ["a", "b"]
    row = df.iloc[0]
    assert (row.mean_real, row.mean_synthetic, row.difference) == (1.0, 3.0, 2.0)
    assert (row.usage_real, row.usage_synthetic) == (1.0, 0.5)
    assert df.iloc[1].mean_abs == pytest.approx(0.1)


def test_group_labels_handle_missing_generators_and_labels():
    meta = pd.DataFrame(
        {"label": pd.array([0, 1, 1, None], dtype="Int64"), "generator": [None, "x", None, "y"]}
    )
    assert group_labels(meta).tolist() == ["real", "x", "unknown", None]


# -- custom concepts -------------------------------------------------------------------------


def test_custom_concept_on_20000_images():
    rng = np.random.default_rng(5)
    dim, n = 768, 20_000
    enc = FakeTextEncoder(dim=dim)
    direction = phrase_direction("visible lens flare", encoder=enc)
    generators = np.array(["real", "gen_a", "gen_b", "gen_c"])[rng.integers(0, 4, n)]
    shift = np.where(generators == "gen_b", 0.3, 0.0)[:, None] * direction
    projected = (rng.normal(size=(n, dim)) / np.sqrt(dim) + shift).astype(np.float32)
    meta = pd.DataFrame(
        {
            "label": pd.array((generators != "real").astype(int), dtype="Int64"),
            "generator": np.where(generators == "real", None, generators),
        }
    )
    result = custom_concept_report(direction, meta, projected=projected)
    assert result["scores"].shape == (n,)
    assert result["auc_by_generator"]["gen_b"] > 0.95
    assert abs(result["auc_by_generator"]["gen_a"] - 0.5) < 0.05
    dist = result["distribution"].set_index("group")
    assert dist.loc["gen_b", "mean"] > dist.loc["real", "mean"] + 0.2
    assert dist.loc["real", "n"] + dist.loc["synthetic", "n"] == n
    normalized = projected / np.linalg.norm(projected, axis=1, keepdims=True)
    same = custom_concept_report(direction, meta, normalized=normalized)
    np.testing.assert_allclose(same["scores"], result["scores"], atol=1e-5)


def test_custom_pair_and_single_phrase_directions_differ():
    enc = FakeTextEncoder(dim=32)
    single = phrase_direction("lens flare", encoder=enc)
    pair = phrase_direction("lens flare", "no lens flare", encoder=enc)
    assert abs(float(single @ pair)) < 0.99
    assert custom_vocabulary("lens flare").negative == (NEUTRAL_PROMPT,)
    with pytest.raises(VocabularyError, match="non-empty"):
        custom_vocabulary("  ")
