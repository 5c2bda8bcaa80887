"""Training on a workspace: splits, threshold on validation reals, model card, saving, the
concept dispatch, and cross-generator transfer matrices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detector.heads import LinearProbe, load_head
from detector.inference import evaluate_head
from detector.metrics import sigmoid, threshold_at_fpr
from detector.store import ImageRow, Workspace
from detector.train import (
    TrainError,
    TrainingCancelled,
    matrix_table,
    parse_groups,
    train_head,
    transfer_matrix,
    workspace_transfer_matrix,
)

BACKBONE = "tiny-clip/random"
# a few hundred images: a larger learning rate than the paper's lets the heads converge
FAST = {"lr": 0.01}


def build_workspace(
    path, *, generators=None, n_real=120, dim=24, seed=0, split=None, projected=False
):
    """A workspace of random embeddings: each generator's fakes shifted along its direction."""
    if generators is None:
        generators = {"ProGAN": ("gan", 40), "StyleGAN": ("gan", 40), "SD": ("sd", 40)}
    rng = np.random.default_rng(seed)
    directions = {"gan": np.eye(dim)[0] * 5.0, "sd": np.eye(dim)[1] * 5.0}
    rows, hashes, vectors = [], [], []
    for i in range(n_real):
        h = f"real{i:05d}"
        rows.append(
            ImageRow(hash=h, path=f"/data/real/{i}.png", label=0, source=f"s{i % 2}", split=split)
        )
        hashes.append(h)
        vectors.append(rng.normal(size=dim))
    for gen, (family, n) in generators.items():
        for i in range(n):
            h = f"{gen}{i:05d}"
            rows.append(
                ImageRow(
                    hash=h,
                    path=f"/data/{gen}/{i}.png",
                    label=1,
                    generator=gen,
                    source=f"s{i % 2}",
                    split=split,
                )
            )
            hashes.append(h)
            vectors.append(rng.normal(size=dim) + directions[family])
    ws = Workspace(path)
    ws.add_images(rows)
    ws.put_embeddings(BACKBONE, "pooled", hashes, np.array(vectors))
    if projected:
        ws.put_embeddings(BACKBONE, "projected", hashes, np.array(vectors)[:, :16])
    return ws


def test_train_saves_a_head_with_a_complete_card(tmp_path):
    with build_workspace(tmp_path / "ws") as ws:
        result = train_head(ws, "linear", out="probe", seed=1, params=FAST)
        assert result.path == ws.heads_dir / "probe.safetensors" and result.path.is_file()
        card = load_head(result.path).card_
        assert card["head_type"] == "linear" and card["backbone_id"] == BACKBONE
        assert card["tap"] == "pooled" and card["feature_dim"] == 24
        assert card["demo"] is True
        assert (
            card["hyperparameters"]["lr"] == 0.01 and card["hyperparameters"]["random_state"] == 1
        )
        training = card["training"]
        assert training["workspace"] == str(ws.path)
        assert training["train_split"] == "train" and training["val_split"] == "val"
        assert set(training["train_counts"]["by_generator"]) == {"ProGAN", "StyleGAN", "SD"}
        assert training["train_counts"]["n_real"] == 72  # 60% of 120 reals
        assert card["validation"]["metrics"]["mAP"]["value"] > 0.9
        assert card["preprocessing"]["interpolation"] == "bilinear"
        assert card["created"]
        # the threshold comes from the validation reals alone, at the target FPR
        meta_va, X_va = ws.dataset(BACKBONE, "pooled", split="val")
        reals = sigmoid(result.head.decision_function(X_va[meta_va["label"].to_numpy() == 0]))
        assert card["threshold"] == pytest.approx(threshold_at_fpr(reals, 0.05))
        assert "validation reals" in card["threshold_rule"]


def test_training_is_seeded(tmp_path):
    with build_workspace(tmp_path / "ws") as ws:
        a = train_head(ws, "orthogonal", seed=2, save=False, params={"k": 3})
        b = train_head(ws, "orthogonal", seed=2, save=False, params={"k": 3})
        for key, value in a.head.to_tensors().items():
            np.testing.assert_array_equal(value, b.head.to_tensors()[key])
        assert a.card["hyperparameters"]["k"] == 3


def test_eval_uses_the_test_part_train_left_out(tmp_path):
    with build_workspace(tmp_path / "ws") as ws:
        result = train_head(ws, "linear", out="probe", params=FAST)
        head = load_head(result.path)
        evaluation = evaluate_head(ws, head, n_boot=50)
        test_hashes = {h for h, s in ws.get_splits().items() if s == "test"}
        assert set(evaluation.predictions["hash"]) == test_hashes
        summary = evaluation.to_json()["summary"]
        assert summary["mAP"]["value"] > 0.9
        assert summary["accuracy@validation"]["threshold"] == pytest.approx(
            result.card["threshold"]
        )
        assert evaluation.context["demo"] is True


def test_without_a_validation_split_part_of_train_is_held_out(tmp_path):
    with build_workspace(tmp_path / "ws", split="train") as ws:
        result = train_head(ws, "linear", save=False)
        assert "no 'val' split" in result.card["training"]["validation_source"]
        assert result.card["validation"]["n"] > 0
        assert result.card["training"]["train_counts"]["n"] < 240


def test_clear_errors(tmp_path):
    with build_workspace(tmp_path / "ws") as ws:
        with pytest.raises(TrainError, match="unknown hyperparameter"):
            train_head(ws, "linear", params={"learning_rate": 1.0}, save=False)
        with pytest.raises(TrainError, match="no pooled embeddings for backbone"):
            train_head(ws, "linear", backbone_id="ViT-L-14-336/openai", save=False)
        with pytest.raises(TrainError, match="split 'nope'"):
            train_head(ws, "linear", train_split="nope", save=False)
    with Workspace(tmp_path / "empty") as empty, pytest.raises(TrainError, match="embed"):
        train_head(empty, "linear")


def test_only_one_class_in_train_is_refused(tmp_path):
    ws = build_workspace(tmp_path / "ws", generators={}, split="train")
    with ws, pytest.raises(TrainError, match="needs both"):
        train_head(ws, "linear")


def test_concept_training_without_its_inputs_says_so(tmp_path, monkeypatch):
    """detector never imports concepts: without the provider concepts.bottleneck registers,
    training a concept head stops with a message saying what to import."""
    import detector.train as train_module

    monkeypatch.setattr(train_module, "_HEAD_INPUTS", {})
    ws = build_workspace(tmp_path / "ws", projected=True)
    with ws, pytest.raises(TrainError, match=r"import concepts\.bottleneck"):
        train_head(ws, "concept")


def test_concept_training_takes_its_inputs_from_the_registered_provider(tmp_path, monkeypatch):
    import detector.train as train_module

    calls = {}

    def provider(workspace, backbone_id, params):
        calls.update(backbone_id=backbone_id, params=dict(params))
        params = {k: v for k, v in params.items() if k != "vocabulary"}
        directions = np.eye(4, 16, dtype=np.float32)
        card = {"vocabulary": {"name": "stub"}, "templates": ["a {}"], "other": 1}
        return {**params, "directions": directions, "concept_names": list("abcd")}, card

    monkeypatch.setattr(train_module, "_HEAD_INPUTS", {"concept": provider})
    params = {"alpha": 0.1, "max_epochs": 5, "vocabulary": "stub"}
    with build_workspace(tmp_path / "ws", projected=True) as ws:
        result = train_head(ws, "concept", out="cbm", seed=3, params=params)
    assert calls == {"backbone_id": BACKBONE, "params": params}
    head = result.head
    assert (head.alpha, head.random_state, head.n_iter_) == (0.1, 3, 5)
    assert head.concept_names_ == list("abcd")
    np.testing.assert_array_equal(head.directions_, np.eye(4, 16))
    assert result.card["tap"] == "projected" and result.card["feature_dim"] == 16
    assert result.card["vocabulary"] == {"name": "stub"} and result.card["templates"] == ["a {}"]
    assert "other" not in result.card
    assert "validation reals" in result.card["threshold_rule"]
    assert result.path.name == "cbm.safetensors"
    assert load_head(result.path).concept_names_ == list("abcd")


# -- live curves and cancelling -------------------------------------------------------------


@pytest.mark.parametrize("head_type", ["linear", "orthogonal"])
def test_epoch_callback_reports_every_epoch_and_changes_nothing(tmp_path, head_type):
    records = []
    with build_workspace(tmp_path / "ws") as ws:
        live = train_head(ws, head_type, save=False, params=FAST, epoch_callback=records.append)
        plain = train_head(ws, head_type, save=False, params=FAST)
    head = live.head
    assert [r["epoch"] for r in records] == list(range(1, head.n_iter_ + 1))
    assert set(records[0]) == {"epoch", "train_loss", "val_loss", "best_epoch"}
    assert [r["train_loss"] for r in records] == head.loss_curve_
    assert [r["val_loss"] for r in records] == head.validation_loss_curve_
    assert records[-1]["best_epoch"] == head.best_epoch_ == live.card["training"]["best_epoch"]
    assert all(r["best_epoch"] <= r["epoch"] for r in records)
    assert records[-1]["train_loss"] < records[0]["train_loss"]  # it learns
    # early stopping: training ended `patience` epochs after the best one
    assert head.n_iter_ - head.best_epoch_ == head.patience or head.n_iter_ == head.max_epochs
    for key, value in plain.head.to_tensors().items():  # deterministic, callback or not
        np.testing.assert_array_equal(value, head.to_tensors()[key])


def test_epoch_callback_without_validation_data_keeps_the_last_epoch():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(12, 4)), np.array([0, 1] * 6)  # too few to hold any out
    records = []
    head = LinearProbe(max_epochs=4).fit(X, y, epoch_callback=records.append)
    assert [(r["epoch"], r["val_loss"], r["best_epoch"]) for r in records] == [
        (e, None, e) for e in range(1, 5)
    ]
    assert head.n_iter_ == 4


def test_cancelling_from_the_epoch_callback_stops_and_saves_nothing(tmp_path):
    seen = []

    def cancel_at_three(record):
        seen.append(record["epoch"])
        if record["epoch"] == 3:
            raise TrainingCancelled()

    with build_workspace(tmp_path / "ws") as ws:
        with pytest.raises(TrainingCancelled):
            train_head(
                ws,
                "linear",
                out="probe",
                params={**FAST, "patience": 1000},
                epoch_callback=cancel_at_three,
            )
        assert seen == [1, 2, 3]
        assert not (ws.heads_dir / "probe.safetensors").exists()
        assert not list(ws.heads_dir.glob("*.safetensors"))


def test_concept_bottleneck_takes_the_epoch_callback_too():
    from concepts.bottleneck import ConceptBottleneck
    from concepts.synthetic import orthonormal_directions, planted_data

    d = orthonormal_directions(8, 24, seed=1)
    data = planted_data(d, 200, shifts={"g": {2: 1.5}}, spread=0.3, noise=0.05, seed=2)
    records = []
    head = ConceptBottleneck(d, lr=1e-2, max_epochs=6).fit(
        data.projected, data.labels, epoch_callback=records.append
    )
    assert [r["epoch"] for r in records] == list(range(1, head.n_iter_ + 1))
    assert [r["val_loss"] for r in records] == head.validation_loss_curve_
    assert records[-1]["best_epoch"] == head.best_epoch_

    def stop(record):
        raise TrainingCancelled()

    with pytest.raises(TrainingCancelled):
        ConceptBottleneck(d, max_epochs=6).fit(data.projected, data.labels, epoch_callback=stop)


# -- transfer --------------------------------------------------------------------------------


def test_group_syntax():
    gens = ["ProGAN", "SD", "StyleGAN"]
    groups = parse_groups("ProGAN, gan=ProGAN+StyleGAN, all, source:s1", gens)
    assert [g.name for g in groups] == ["ProGAN", "gan", "all", "source:s1"]
    assert groups[1].generators == ("ProGAN", "StyleGAN") and groups[2].generators is None
    assert [g.name for g in parse_groups("each", gens, side="test")] == gens
    assert parse_groups("loo", gens) == ["loo"]
    with pytest.raises(TrainError, match="unknown generator 'DALL-E'"):
        parse_groups("DALL-E", gens)
    with pytest.raises(TrainError, match="unknown generator"):
        parse_groups("x=ProGAN+Nope", gens)
    with pytest.raises(TrainError, match="loo"):
        parse_groups("loo", gens, side="test")


def test_transfer_matrix_shows_the_family_gap(tmp_path):
    with build_workspace(tmp_path / "ws") as ws:
        result = workspace_transfer_matrix(
            ws, "ProGAN,all", "each", n_boot=100, seed=0, params=FAST
        )
    cell = result.set_index(["train_group", "test_group"])["mAP"]
    assert cell["ProGAN", "StyleGAN"] > 0.9  # same family transfers
    assert cell["ProGAN", "SD"] < cell["ProGAN", "StyleGAN"] - 0.2  # another family does not
    assert cell["all", "SD"] > 0.9
    # each test group holds fewer than 10 fakes: no interval, and the note says why
    few = result["n_test_fake"] < 10
    assert few.all()
    assert result.loc[few, "ci_low"].isna().all() and result.loc[few, "ci_high"].isna().all()
    assert result.loc[few, "note"].str.contains("too few fakes").all()
    table = matrix_table(result)
    assert list(table.index) == ["ProGAN", "all"]
    assert list(table.columns) == ["ProGAN", "SD", "StyleGAN"]


def test_leave_one_generator_out(tmp_path):
    with build_workspace(tmp_path / "ws") as ws:
        result = workspace_transfer_matrix(ws, "loo", None, n_boot=0, params=FAST)
    assert list(result["kind"].unique()) == ["loo"]
    assert list(result["test_group"]) == ["ProGAN", "SD", "StyleGAN"]
    loo = result.set_index("test_group")["mAP"]
    assert loo["SD"] < loo["StyleGAN"]  # the only diffusion generator is unseen when left out
    assert result.loc[result["test_group"] == "SD", "train_generators"].item() == "ProGAN+StyleGAN"


def test_transfer_cells_that_cannot_be_computed_say_why():
    meta = pd.DataFrame(
        {
            "hash": [f"h{i}" for i in range(8)],
            "label": [0, 0, 1, 1, 0, 0, 1, 1],
            "generator": [None, None, "A", "B", None, None, "A", "A"],
            "split": ["train", "train", "train", "train", "test", "test", "test", "test"],
            "source": None,
            "pair_id": None,
        }
    )
    X = np.random.default_rng(0).normal(size=(8, 4))
    result = transfer_matrix(meta, X, "A,B", "all", n_boot=10, params={"max_epochs": 2})
    assert len(result) == 2 and result["mAP"].notna().all()
    meta.loc[meta["split"] == "test", "label"] = 1
    meta.loc[meta["split"] == "test", "generator"] = "A"
    result = transfer_matrix(meta, X, "A", "all", n_boot=10, params={"max_epochs": 2})
    assert np.isnan(result["mAP"].iloc[0]) and "no real images" in result["note"].iloc[0]
