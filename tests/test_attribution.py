"""Attributions of linear and orthogonal heads through the lasso surrogate: planted concepts
come first with fidelity near 1, a head orthogonal to every concept gets fidelity near 0, the
books always balance (baseline + contributions + residual == logit), and the surrogate is
cached in the workspace."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import concepts.attribution as attribution_module
from concepts.attribution import (
    SURROGATE,
    AttributionError,
    ConceptSurrogate,
    attribute,
    attribute_with_surrogate,
    fit_surrogate,
    head_fingerprint,
    workspace_surrogate,
)
from concepts.directions import compute_directions, concept_directions
from concepts.report import concept_report, explain_embeddings, workspace_attributions
from concepts.scores import concept_scores
from concepts.synthetic import (
    FakeTextEncoder,
    planted_data,
    store_planted,
    toy_vocabulary,
)
from detector.errors import CueLensError
from detector.heads import HeadMismatchError, LinearProbe, OrthogonalHead
from detector.store import Workspace

Q, DIM, EXTRA = 20, 40, 8
PLANTED_WEIGHTS = {2: 4.0, 9: -3.0, 15: 2.0}


@pytest.fixture(scope="module")
def setup():
    enc = FakeTextEncoder(dim=DIM)
    vocab = toy_vocabulary(Q)
    directions = compute_directions(enc, vocab)
    data = planted_data(
        directions, 1500, shifts={"gen_a": {2: 0.6}, "gen_b": {9: -0.6}}, extra=EXTRA, seed=21
    )
    return enc, vocab, directions, data


def linear_head(coef: np.ndarray, bias: float = 0.3, backbone_id=None) -> LinearProbe:
    tensors = {"weight": coef[None, :].astype(np.float32), "bias": np.array([bias], np.float32)}
    return LinearProbe.from_tensors(tensors, {"backbone_id": backbone_id})


def concept_aligned_head(directions, backbone_id=None) -> LinearProbe:
    """Reads sum_q w_q <d_q, e / |e|> through the pooled tap: exactly linear in the scores."""
    coef = np.zeros(DIM + EXTRA)
    for q, w in PLANTED_WEIGHTS.items():
        coef[:DIM] += w * directions[q]
    return linear_head(coef, backbone_id=backbone_id)


def orthogonal_to_concepts_head(directions, seed=0, backbone_id=None) -> LinearProbe:
    """Reads a projected direction orthogonal to every concept direction."""
    v = np.random.default_rng(seed).standard_normal(DIM)
    basis, _ = np.linalg.qr(directions.T.astype(np.float64))
    v -= basis @ (basis.T @ v)
    coef = np.zeros(DIM + EXTRA)
    coef[:DIM] = 5 * v / np.linalg.norm(v)
    return linear_head(coef, backbone_id=backbone_id)


def test_planted_concepts_come_first_with_fidelity_near_one(setup):
    _, vocab, directions, data = setup
    head = concept_aligned_head(directions)
    scores = concept_scores(data.projected, directions)
    logits = head.decision_function(data.pooled)
    surrogate = fit_surrogate(scores, logits, vocab.ids, directions)
    assert surrogate.fidelity > 0.99 and surrogate.r2_train > 0.99
    assert surrogate.n_heldout == 375 and surrogate.n_train == 1125
    top = surrogate.weights_frame()["concept"].head(3).tolist()
    assert set(top) == {vocab.ids[q] for q in PLANTED_WEIGHTS}
    for q, w in PLANTED_WEIGHTS.items():
        assert surrogate.coef[q] == pytest.approx(w, rel=0.05)
    # per image, the planted concepts carry the largest contributions
    per_image = attribute_with_surrogate(surrogate, scores[:200], logits[:200])
    planted = {vocab.ids[q] for q in PLANTED_WEIGHTS}
    share = np.mean([a.table["concept"].iloc[0] in planted for a in per_image])
    assert share > 0.95
    assert max(abs(a.residual) for a in per_image) < 0.1


def test_a_head_orthogonal_to_every_concept_has_fidelity_near_zero(setup):
    _, vocab, directions, data = setup
    scores = concept_scores(data.projected, directions)
    for head in (
        orthogonal_to_concepts_head(directions),
        linear_head(np.r_[np.zeros(DIM), np.ones(EXTRA)]),  # reads only non-concept dimensions
    ):
        logits = head.decision_function(data.pooled)
        surrogate = fit_surrogate(scores, logits, vocab.ids, directions)
        assert abs(surrogate.fidelity) < 0.05, surrogate.fidelity
        explained = attribute_with_surrogate(surrogate, scores[:50], logits[:50])
        residual = np.array([a.residual for a in explained])
        contributions = np.array([a.explained for a in explained])
        assert np.abs(residual).mean() > 2 * np.abs(contributions).mean()


def test_contributions_baseline_and_residual_add_up_to_the_logit_exactly(setup):
    _, vocab, directions, data = setup
    head = concept_aligned_head(directions)
    head.coef_[DIM:] = 0.4  # some behaviour no concept explains
    scores = concept_scores(data.projected, directions)
    logits = head.decision_function(data.pooled)
    surrogate = fit_surrogate(scores, logits, vocab.ids, directions)
    assert 0.2 < surrogate.fidelity < 0.95
    explained = attribute_with_surrogate(surrogate, scores[:300], logits[:300])
    for a, logit in zip(explained, logits[:300], strict=True):
        assert a.baseline + a.table["contribution"].sum() + a.residual == pytest.approx(
            logit, rel=0, abs=1e-12
        )
        assert a.method == SURROGATE and a.fidelity == surrogate.fidelity
    out = a.to_dict(top=3)
    json.dumps(out)
    assert len(out["concepts"]) == 3 and out["fidelity"] == surrogate.fidelity
    assert out["not_explained_by_concepts"] == a.residual


def test_orthogonal_heads_are_explained_the_same_way(setup):
    _, vocab, directions, data = setup
    aligned = concept_aligned_head(directions)
    w2 = np.array([1.0, -0.5, 2.0], np.float32)
    rows = np.stack([aligned.coef_ * 0.2, aligned.coef_ * -0.4, aligned.coef_ * 0.6])
    head = OrthogonalHead.from_tensors(
        {
            "directions.weight": rows.astype(np.float32),
            "directions.bias": np.zeros(3, np.float32),
            "to_logit.weight": w2[None, :],
            "to_logit.bias": np.zeros(1, np.float32),
        },
        {"k": 3},
    )
    scores = concept_scores(data.projected, directions)
    surrogate = fit_surrogate(scores, head.decision_function(data.pooled), vocab.ids, directions)
    assert surrogate.fidelity > 0.99
    attributions = attribute(
        head, projected=data.projected[:3], features=data.pooled[:3], surrogate=surrogate
    )
    assert len(attributions) == 3
    with pytest.raises(AttributionError, match="surrogate"):
        attribute(head, projected=data.projected[:3], features=data.pooled[:3])
    with pytest.raises(AttributionError, match="pooled tap"):
        attribute(head, projected=data.projected[:3], surrogate=surrogate)


def test_too_few_images_are_refused():
    with pytest.raises(AttributionError, match="too few"):
        fit_surrogate(np.zeros((12, 3)), np.zeros(12), ["a", "b", "c"])


def test_surrogate_round_trips_through_json(setup):
    _, vocab, directions, data = setup
    scores = concept_scores(data.projected, directions)
    logits = concept_aligned_head(directions).decision_function(data.pooled)
    surrogate = fit_surrogate(scores, logits, vocab.ids, directions)
    doc = json.loads(json.dumps(surrogate.to_doc()))
    again = ConceptSurrogate.from_doc(doc, directions)
    np.testing.assert_allclose(again.predict(scores), surrogate.predict(scores))
    assert again.fidelity == surrogate.fidelity


def test_workspace_surrogate_is_kept_until_a_refit_is_asked_for(setup, tmp_path, monkeypatch):
    enc, vocab, directions, _ = setup
    head = concept_aligned_head(directions, backbone_id=enc.id)
    fits = []
    real_fit = attribution_module.fit_surrogate

    def counting_fit(*args, **kwargs):
        fits.append(1)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(attribution_module, "fit_surrogate", counting_fit)
    half = planted_data(directions, 400, extra=EXTRA, seed=22)
    with Workspace(tmp_path / "ws") as ws:
        store_planted(ws, enc.id, half)
        first = workspace_surrogate(
            ws, head, enc.id, directions, vocab.ids, vocabulary_hash=vocab.hash
        )
        again = workspace_surrogate(
            ws, head, enc.id, directions, vocab.ids, vocabulary_hash=vocab.hash
        )
        assert len(fits) == 1 and again.fidelity == first.fidelity
        assert first.fidelity > 0.98  # float16 storage of the embeddings costs almost nothing
        assert first.info["head_fingerprint"] == head_fingerprint(head)
        assert first.info["version"] == 1 and first.info["n_images"] == 400
        assert first.info["reference"] == "400 labelled images of ws"
        other = concept_aligned_head(directions * 1.01, backbone_id=enc.id)
        workspace_surrogate(ws, other, enc.id, directions, vocab.ids, vocabulary_hash=vocab.hash)
        assert len(fits) == 2
        # more labelled images: the stored surrogate stays (explanations do not drift)
        store_planted(ws, enc.id, planted_data(directions, 40, extra=EXTRA, seed=23))
        kept = workspace_surrogate(
            ws, head, enc.id, directions, vocab.ids, vocabulary_hash=vocab.hash
        )
        assert len(fits) == 2 and kept.info == first.info
        refitted = workspace_surrogate(
            ws, head, enc.id, directions, vocab.ids, vocabulary_hash=vocab.hash, refit=True
        )
        assert len(fits) == 3
        assert refitted.info["version"] == 2 and refitted.info["n_images"] == 440
        with pytest.raises(HeadMismatchError, match="other/backbone"):
            workspace_surrogate(
                ws,
                linear_head(head.coef_, backbone_id="other/backbone"),
                enc.id,
                directions,
                vocab.ids,
            )


def _upload(ws, backbone_id, data):
    """Store planted images as the Detect page stores uploads: no label, no split."""
    from detector.store import ImageRow

    hashes = data.meta["hash"].tolist()
    with ws.transaction():
        ws.add_images(ImageRow(hash=h, path=f"upload:{h[:8]}.png") for h in hashes)
        ws.put_embeddings(backbone_id, "projected", hashes, data.projected)
        ws.put_embeddings(backbone_id, "pooled", hashes, data.pooled)


def test_uploads_do_not_change_an_existing_explanation(setup, tmp_path):
    enc, vocab, directions, _ = setup
    head = concept_aligned_head(directions, backbone_id=enc.id)
    labelled = planted_data(directions, 300, extra=EXTRA, seed=31)
    probe = planted_data(directions, 1, extra=EXTRA, seed=32)

    def explain(ws):
        return explain_embeddings(
            head,
            projected=probe.projected,
            pooled=probe.pooled,
            workspace=ws,
            backbone_id=enc.id,
            vocabulary=vocab,
        )[0]

    with Workspace(tmp_path / "ws") as ws:
        store_planted(ws, enc.id, labelled)
        concept_directions(vocab, enc, workspace=ws)
        # uploads before the first explanation are not part of the reference set either
        _upload(ws, enc.id, planted_data(directions, 60, extra=EXTRA, seed=33))
        before = explain(ws)
        assert before.source["reference"] == "300 labelled images of ws"
        # another user uploads many images that look different (a shifted concept)
        shifted = planted_data(directions, 200, shifts={"gen_a": {2: 2.0}}, extra=EXTRA, seed=34)
        _upload(ws, enc.id, shifted)
        after = explain(ws)
    assert after.source == before.source
    assert after.baseline == before.baseline and after.fidelity == before.fidelity
    pd.testing.assert_frame_equal(after.table, before.table)


def test_a_head_trained_here_is_explained_on_its_training_split(setup, tmp_path):
    enc, vocab, directions, _ = setup
    head = concept_aligned_head(directions, backbone_id=enc.id)
    data = planted_data(directions, 300, extra=EXTRA, seed=35, splits={"train": 0.7, "val": 0.3})
    with Workspace(tmp_path / "ws") as ws:
        store_planted(ws, enc.id, data)
        head.card_ = {"training": {"workspace": str(ws.path), "train_split": "train"}}
        sur = workspace_surrogate(ws, head, enc.id, directions, vocab.ids)
    n_train = int((data.meta["split"] == "train").sum())
    assert 0 < n_train < len(data.meta)
    assert sur.info["n_images"] == n_train
    assert sur.info["reference"].startswith(f"{n_train:,} images of the head's training data")


def test_workspace_reports_for_each_kind_of_head(setup, tmp_path):
    enc, vocab, directions, data = setup
    with Workspace(tmp_path / "ws") as ws:
        store_planted(ws, enc.id, data)
        concept_directions(vocab, enc, workspace=ws)  # cached: the report needs no encoder
        plain = concept_report(ws, vocabulary=vocab)
        assert plain.head is None and plain.importance is None
        assert plain.top_auc(2)["concept"].tolist()[0] in {"c02", "c09"}
        assert set(plain.matrix.columns) == {"gen_a", "gen_b"}
        head = concept_aligned_head(directions, backbone_id=enc.id)
        report = concept_report(ws, vocabulary=vocab, head=head)
        assert report.method == SURROGATE and report.fidelity > 0.98
        assert report.importance["concept"].iloc[0] in {"c02", "c09"}
        doc = report.to_dict(top=5)
        json.dumps(doc)
        assert doc["fidelity"] == report.fidelity and len(doc["importance"]) == 5
        assert any("fidelity" in n for n in doc["notes"])
        per_image = workspace_attributions(ws, head, vocabulary=vocab, hashes=data.meta["hash"][:4])
        assert len(per_image) == 4 and per_image[0].fidelity == report.fidelity
        again = explain_embeddings(
            head,
            projected=data.projected[:2],
            pooled=data.pooled[:2],
            workspace=ws,
            backbone_id=enc.id,
            vocabulary=vocab,
        )
        assert [a.logit for a in again] == pytest.approx(head.decision_function(data.pooled[:2]))
    with pytest.raises(CueLensError, match="needs a workspace"):
        explain_embeddings(head, projected=data.projected[:1], pooled=data.pooled[:1])
