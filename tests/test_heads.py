"""Detector heads: scikit-learn contract, the paper's training recipe on planted data, saving
with a model card, and refusal of mismatched embeddings."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import estimator_checks_generator

from detector.heads import (
    CARD_KEY,
    HeadError,
    HeadMismatchError,
    LinearProbe,
    OrthogonalHead,
    get_head_type,
    load_head,
    make_card,
    read_card,
    register_head_type,
    save_head,
)
from detector.metrics import auroc

REPO = Path(__file__).resolve().parent.parent


def planted(n: int, d: int, seed: int, shift: float = 2.0):
    """Gaussian features; the synthetic class is shifted by ``shift`` along one unit direction."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, d)).astype(np.float32)
    direction = np.ones(d) / np.sqrt(d)
    X += np.outer(2 * y - 1, direction).astype(np.float32) * shift
    return X, y


# Checks of scikit-learn's contract that cannot apply to these heads, with the reason.
NOT_APPLICABLE = {
    "check_array_api_input": "the heads convert any input to float32 torch tensors and take "
    "no array-API namespace; scikit-learn runs this check only under SCIPY_ARRAY_API=1",
}


def _contract_checks():
    # The checks use a few hundred samples: a larger learning rate and fewer epochs keep them
    # fast and let the heads converge on so little data; the contract depends on neither.
    for estimator in (
        LinearProbe(lr=0.05, max_epochs=30),
        OrthogonalHead(k=3, lr=0.05, max_epochs=30),
    ):
        for est, check in estimator_checks_generator(estimator, legacy=True):
            name = getattr(check, "func", check).__name__
            marks = (
                [pytest.mark.skip(reason=NOT_APPLICABLE[name])] if name in NOT_APPLICABLE else []
            )
            yield pytest.param(est, check, marks=marks, id=f"{type(est).__name__}-{name}")


@pytest.mark.parametrize(("estimator", "check"), list(_contract_checks()))
def test_sklearn_contract(estimator, check):
    check(estimator)


def test_heads_drop_into_pipelines_and_cross_validation():
    X, y = planted(400, 8, 0)
    scores = cross_val_score(
        make_pipeline(StandardScaler(), LinearProbe(lr=0.05, max_epochs=20)), X, y, cv=3
    )
    assert scores.mean() > 0.9


@pytest.mark.parametrize("cls", [LinearProbe, OrthogonalHead])
def test_planted_direction_is_found(cls):
    X, y = planted(6000, 32, 0)
    X_test, y_test = planted(10000, 32, 100)
    head = cls().fit(X[:5000], y[:5000], X_val=X[5000:], y_val=y[5000:])
    assert auroc(y_test, head.decision_function(X_test)) > 0.99
    assert 1 <= head.best_epoch_ <= head.n_iter_ <= head.max_epochs
    # best weights restored: the kept epoch has the lowest validation loss seen
    assert head.best_validation_loss_ == pytest.approx(min(head.validation_loss_curve_))


def test_orthogonal_head_decorrelates_its_directions_on_held_out_data():
    X, y = planted(6000, 32, 0)
    X_test, _ = planted(10000, 32, 100)
    head = OrthogonalHead(random_state=0).fit(X, y)
    gram = head.activation_gram(X_test)
    off_diagonal = np.abs(gram[~np.eye(head.k, dtype=bool)])
    assert off_diagonal.max() < 0.1
    assert np.allclose(np.diag(gram), 1.0)
    # without the penalty the directions stay correlated: the penalty is what does it
    free = OrthogonalHead(random_state=0, lambda_ortho=0.0).fit(X, y)
    free_gram = free.activation_gram(X_test)
    assert np.abs(free_gram[~np.eye(free.k, dtype=bool)]).max() > 0.3


def test_orthogonal_head_is_one_linear_map():
    X, y = planted(500, 16, 3)
    head = OrthogonalHead(k=4, max_epochs=5).fit(X, y)
    coef, intercept = head.effective_coef()
    np.testing.assert_allclose(
        head.decision_function(X), X @ coef + intercept, rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("cls", [LinearProbe, OrthogonalHead])
def test_seeds_reproduce_and_differ(cls):
    X, y = planted(800, 16, 1)
    a = cls(random_state=7, max_epochs=10).fit(X, y).to_tensors()
    b = cls(random_state=7, max_epochs=10).fit(X, y).to_tensors()
    c = cls(random_state=8, max_epochs=10).fit(X, y).to_tensors()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert any(not np.array_equal(a[k], c[k]) for k in a)


def test_every_hyperparameter_is_a_parameter():
    head = OrthogonalHead(
        k=4,
        lambda_ortho=0.5,
        lr=3e-4,
        weight_decay=0.0,
        batch_size=32,
        max_epochs=7,
        patience=2,
        label_smoothing=0.0,
        random_state=3,
    )
    params = head.get_params()
    assert params["k"] == 4 and params["lambda_ortho"] == 0.5 and params["lr"] == 3e-4
    X, y = planted(300, 8, 2)
    head.fit(X, y)
    assert head.n_iter_ <= 7
    defaults = LinearProbe().get_params()
    assert defaults["lr"] == 1e-3 and defaults["weight_decay"] == 0.01
    assert defaults["batch_size"] == 64 and defaults["patience"] == 5
    assert defaults["label_smoothing"] == 0.1
    assert OrthogonalHead().get_params()["k"] == 8
    assert OrthogonalHead().get_params()["lambda_ortho"] == 0.33


@pytest.mark.parametrize("cls", [LinearProbe, OrthogonalHead])
def test_save_and_load_round_trip_with_card(tmp_path, cls):
    X, y = planted(400, 12, 4)
    head = cls(max_epochs=5, backbone_id="tiny-clip/random").fit(X, y)
    card = make_card(head, threshold=0.7, training={"workspace": "/ws"})
    path = save_head(head, tmp_path / "h", card)
    assert path.suffix == ".safetensors"
    loaded = load_head(path)
    np.testing.assert_allclose(loaded.decision_function(X), head.decision_function(X), rtol=1e-6)
    assert loaded.card_["threshold"] == 0.7
    assert loaded.card_["backbone_id"] == "tiny-clip/random"
    assert loaded.card_["demo"] is True
    assert loaded.card_["feature_dim"] == 12
    assert loaded.card_["tap"] == "pooled"
    assert loaded.get_params() == {**head.get_params(), "backbone_id": "tiny-clip/random"}
    # the card lives in the safetensors metadata, readable without the tensors
    assert read_card(path)["head_type"] == cls.head_type
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        assert json.loads(f.metadata()[CARD_KEY])["hyperparameters"]["lr"] == head.lr


def test_card_of_a_real_backbone_is_not_demo():
    X, y = planted(200, 8, 5)
    head = LinearProbe(max_epochs=2, backbone_id="ViT-L-14-336/openai").fit(X, y)
    card = make_card(head)
    assert card["demo"] is False
    assert card["preprocessing"]["interpolation"] == "bilinear"
    assert {"created", "hyperparameters", "feature_dim", "threshold"} <= set(card)


def test_mismatched_backbone_or_dimension_is_refused(tmp_path):
    X, y = planted(200, 8, 6)
    head = LinearProbe(max_epochs=2, backbone_id="tiny-clip/random").fit(X, y)
    with pytest.raises(HeadMismatchError) as err:
        head.check_compatible("ViT-L-14-336/openai", 8)
    assert "tiny-clip/random" in str(err.value) and "ViT-L-14-336/openai" in str(err.value)
    with pytest.raises(HeadMismatchError, match="expects 8-d"):
        head.check_compatible("tiny-clip/random", 1024)
    with pytest.raises(ValueError):
        head.decision_function(np.zeros((3, 9)))


def test_only_binary_real_synthetic_heads_are_saved(tmp_path):
    X, y = planted(200, 8, 7)
    head = LinearProbe(max_epochs=2).fit(X, np.where(y == 1, "fake", "real"))
    with pytest.raises(HeadError, match="classes"):
        save_head(head, tmp_path / "h.safetensors")


def test_a_file_that_is_not_a_head_is_refused(tmp_path):
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_bytes(b"not a safetensors file")
    with pytest.raises(HeadError, match="not a Cue Lens head"):
        load_head(bogus)


def test_head_type_registry(monkeypatch):
    assert get_head_type("linear") is LinearProbe
    assert get_head_type("orthogonal") is OrthogonalHead
    with pytest.raises(HeadError, match="unknown head type"):
        get_head_type("nonsense")

    class Custom(LinearProbe):
        head_type = "custom"

    import detector.heads as heads_module

    monkeypatch.setattr(heads_module, "_HEAD_TYPES", dict(heads_module._HEAD_TYPES))
    register_head_type("custom", Custom)
    assert get_head_type("custom") is Custom


def test_concept_heads_load_and_train_without_the_concepts_package():
    """The concept head's model lives in detector's core: loading, scoring and fitting one
    imports nothing from concepts/ (its text side: directions from a vocabulary)."""
    code = (
        "import sys, tempfile, numpy as np\n"
        "from detector.heads import get_head_type, load_head, save_head\n"
        "import detector.train\n"
        "cls = get_head_type('concept')\n"
        "rng = np.random.default_rng(0)\n"
        "X, y = rng.normal(size=(40, 8)).astype(np.float32), np.arange(40) % 2\n"
        "head = cls(np.eye(3, 8, dtype=np.float32), max_epochs=2).fit(X, y)\n"
        "path = save_head(head, tempfile.mkdtemp() + '/c.safetensors')\n"
        "again = load_head(path)\n"
        "assert np.allclose(again.decision_function(X), head.decision_function(X))\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'concepts')\n"
        "assert not loaded, loaded\n"
        "print(cls.head_type, cls.tap)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["concept", "projected"]


def concepts_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import of concepts/ in ``source``: import statements anywhere,
    and module names as strings (what ``importlib.import_module`` would be given)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            modules = [node.value] if re.fullmatch(r"[\w.]+", node.value) else []
        else:
            continue
        found += [(node.lineno, m) for m in modules if m.split(".")[0] == "concepts"]
    return found


def test_detector_training_modules_never_import_concepts():
    """No import of concepts/ in heads, fitting and train, not even inside a function or
    through importlib (the CLI commands and ui/ may import both)."""
    for name in ("heads.py", "fitting.py", "train.py"):
        assert concepts_imports((REPO / "detector" / name).read_text()) == [], name
