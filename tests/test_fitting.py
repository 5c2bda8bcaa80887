"""The one training loop (``detector.fitting``): the three head types trained with their
default recipes reproduce the weights recorded before the loop was shared.

``tests/data/training_golden.npz`` holds, for a fixed small dataset, the learned tensors and
training curves of the linear probe, the orthogonal head and the concept bottleneck in each
validation mode (internal hold-out, given validation set, too small to hold out), and the
recipes written into model cards. It was written by ``python tests/test_fitting.py --write``
with the two training loops that existed before ``detector.fitting`` (commit 2f8fd4f); rerun
it only when a change of the trained weights is intended, and say so in the commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from concepts.bottleneck import ConceptBottleneck
from detector.heads import CONCEPT_RECIPE, HEAD_RECIPE, LinearProbe, OrthogonalHead

GOLDEN = Path(__file__).parent / "data" / "training_golden.npz"
DIM, N_CONCEPTS = 16, 6


def _dataset(n: int, seed: int = 0):
    """Embeddings (n, 16) whose label shows along one direction, plus noise; balanced."""
    signal = np.random.default_rng(99).normal(size=DIM)
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.normal(size=(n, DIM)) + 0.8 * np.outer(2 * y - 1, signal / np.linalg.norm(signal))
    return X.astype(np.float32), y


def _directions():
    rng = np.random.default_rng(7)
    d = rng.normal(size=(N_CONCEPTS, DIM))
    return (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)


def _cases():
    """(name, unfitted head, fit arguments) for every head type and validation mode."""
    X, y = _dataset(160)
    Xv, yv = _dataset(60, seed=1)
    Xs, ys = _dataset(12, seed=2)  # too small for a hold-out: the last epoch is kept
    d = _directions()
    return [
        ("linear_holdout", LinearProbe(), (X, y)),
        ("linear_val", LinearProbe(random_state=3), (X, y, Xv, yv)),
        ("linear_small", LinearProbe(max_epochs=7), (Xs, ys)),
        ("orthogonal_holdout", OrthogonalHead(k=4), (X, y)),
        ("orthogonal_val", OrthogonalHead(random_state=5), (X, y, Xv, yv)),
        ("concept_holdout", ConceptBottleneck(d), (X, y)),
        ("concept_val_loss", ConceptBottleneck(d, early_stopping="loss"), (X, y, Xv, yv)),
        ("concept_val_auroc", ConceptBottleneck(d, random_state=2), (X, y, Xv, yv)),
        ("concept_small", ConceptBottleneck(d, max_epochs=9), (Xs, ys)),
    ]


def trained_arrays() -> dict[str, np.ndarray]:
    """Every case's tensors and curves, flattened to ``CASE/NAME`` arrays."""
    out = {}
    for name, head, args in _cases():
        head.fit(*args)
        for key, value in head.to_tensors().items():
            out[f"{name}/{key}"] = np.asarray(value, dtype=np.float32)
        out[f"{name}/loss_curve"] = np.asarray(head.loss_curve_, dtype=np.float64)
        out[f"{name}/validation_loss_curve"] = np.asarray(
            head.validation_loss_curve_, dtype=np.float64
        )
        out[f"{name}/epochs"] = np.array([head.n_iter_, head.best_epoch_])
        out[f"{name}/best_validation_loss"] = np.array([head.best_validation_loss_])
    out["recipes"] = np.array(json.dumps({"head": HEAD_RECIPE, "concept": CONCEPT_RECIPE}))
    return out


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def trained():
    return trained_arrays()


def test_the_shared_loop_reproduces_the_recorded_weights(golden, trained):
    weights = sorted(k for k in golden if k != "recipes")
    assert sorted(k for k in trained if k != "recipes") == weights
    for key in weights:
        np.testing.assert_allclose(trained[key], golden[key], rtol=0, atol=1e-6, err_msg=key)


def test_model_card_recipes_are_unchanged(golden, trained):
    assert json.loads(str(trained["recipes"])) == json.loads(str(golden["recipes"]))


if __name__ == "__main__" and "--write" in sys.argv:
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(GOLDEN, **trained_arrays())
    print(f"wrote {GOLDEN}")
