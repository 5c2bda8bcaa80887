"""Detector heads on frozen CLIP features: linear probe, de-correlated (orthogonal) head, the
head protocol every head type follows, and saving / loading heads with their model card.

The head protocol
=================

A *head* maps one feature tap of a frozen backbone to one logit; ``sigmoid(logit)`` is
P(synthetic). Every head type (``linear`` and ``orthogonal`` here, ``concept`` in
``concepts/bottleneck.py``) is a class that:

- has class attributes ``head_type: str`` (its registry name) and ``tap: str`` (``"pooled"``
  or ``"projected"``: the embeddings it reads);
- follows the scikit-learn estimator contract: ``__init__`` only stores keyword parameters;
  ``fit(X, y, X_val=None, y_val=None, epoch_callback=None)`` validates, learns attributes
  ending in ``_`` (at least ``classes_``, ``n_features_in_``) and returns ``self``;
  ``decision_function(X)`` returns the logits, shape (n,); ``predict_proba(X)`` returns
  (n, 2) with column 1 = P(classes_[1]);
  ``predict(X)`` returns labels from ``classes_``; ``get_params()`` returns JSON-serialisable
  parameters. Heads that are saved are trained on labels 0 (real) / 1 (synthetic), so their
  ``classes_`` is ``[0, 1]``;
- has a parameter ``backbone_id`` (``None`` = unknown) naming the backbone whose embeddings it
  was trained on (see ``check_compatible``);
- ``to_tensors() -> dict[str, np.ndarray]``: every learned array, float32, by name;
- classmethod ``from_tensors(tensors, params) -> fitted head``: the inverse, with ``params``
  as returned by ``get_params()`` (unknown keys ignored), ``classes_ = [0, 1]``;
- registers itself with ``register_head_type(head_type, cls)``. ``get_head_type("concept")``
  imports ``concepts.bottleneck`` on first use, which registers ``ConceptBottleneck``.

Deriving from ``DetectorHead`` gives the inference half of the contract (validation, the
backbone check, probabilities, labels) given ``_logits(X) -> (n,) float64``.

Heads trained epoch by epoch take an optional ``epoch_callback`` in ``fit`` (a fit argument,
not a parameter: it is not part of the model). It is called once after every epoch with
``{"epoch", "train_loss", "val_loss", "best_epoch"}`` (``val_loss`` None without a
validation set); an exception it raises stops training and propagates out of ``fit``, which
is how a caller cancels (``detector.train.TrainingCancelled``). It does not touch any random
state, so training with and without it gives the same weights.

Saved heads
===========

A saved head is one ``.safetensors`` file: the tensors of ``to_tensors()`` plus the model card
as JSON in the file's metadata (key ``cue_lens_card``): head type, backbone id, tap, feature
dim, hyperparameters, training summary, validation metrics, the decision threshold chosen on
validation, preprocessing, creation date, and ``demo: true`` for heads on ``tiny-clip``.
Safetensors holds data only; loading it never runs code.
"""

from __future__ import annotations

import copy
import datetime as _dt
import importlib
import json
import os
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from detector.errors import CueLensError
from detector.metrics import sigmoid

CARD_KEY = "cue_lens_card"
FORMAT = "cue-lens-head/1"
HEAD_SUFFIX = ".safetensors"
TAPS = ("pooled", "projected")


class HeadError(CueLensError):
    """A head cannot be built, saved, loaded or found."""


class HeadMismatchError(HeadError, ValueError):
    """A head is applied to embeddings of another backbone or another dimension."""


# -- registry of head types ------------------------------------------------------------------

_HEAD_TYPES: dict[str, type] = {}
_LAZY_HEAD_TYPES = {"concept": "concepts.bottleneck"}


def register_head_type(name: str, cls: type) -> None:
    """Make a head class available under ``name`` (for loading saved heads and ``train``)."""
    _HEAD_TYPES[name] = cls


def get_head_type(name: str) -> type:
    """The head class registered as ``name``; ``concept`` is imported on first use."""
    if name not in _HEAD_TYPES and name in _LAZY_HEAD_TYPES:
        module = _LAZY_HEAD_TYPES[name]
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module.startswith(exc.name):
                raise HeadError(
                    f"head type {name!r} needs the module {module}, which is not installed "
                    f"in this checkout"
                ) from exc
            raise
    if name not in _HEAD_TYPES:
        known = sorted(set(_HEAD_TYPES) | set(_LAZY_HEAD_TYPES))
        raise HeadError(f"unknown head type {name!r} (known: {', '.join(known)})")
    return _HEAD_TYPES[name]


# -- the shared inference half of the contract ----------------------------------------------


class DetectorHead(ClassifierMixin, BaseEstimator):
    """Base class of detector heads: one logit per embedding, sigmoid = P(classes_[1])."""

    head_type: ClassVar[str] = ""
    tap: ClassVar[str] = "pooled"
    recipe: ClassVar[dict | None] = None  # the default training recipe and its source

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    # subclasses implement _logits on validated float arrays
    def _logits(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def decision_function(self, X) -> np.ndarray:
        """Logits, shape (n,); positive means ``classes_[1]`` (synthetic)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self._logits(X)

    def predict_proba(self, X) -> np.ndarray:
        """Probabilities (n, 2): column 0 = ``classes_[0]`` (real), 1 = ``classes_[1]``."""
        p = sigmoid(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X) -> np.ndarray:
        """Labels from ``classes_`` at logit 0 (probability 0.5)."""
        logits = self.decision_function(X)
        return self.classes_[(logits > 0).astype(int)]

    def check_compatible(self, backbone_id: str | None = None, dim: int | None = None) -> None:
        """Refuse embeddings of another backbone or dimension (``HeadMismatchError``)."""
        own = getattr(self, "backbone_id", None)
        if backbone_id is not None and own is not None and not same_features(backbone_id, own):
            from detector.backbone import stale_reason

            stale = stale_reason(own)
            if stale:
                raise HeadMismatchError(
                    f"this {self.head_type} head was trained on embeddings of backbone {own!r}, "
                    f"{stale}; it cannot score {backbone_id!r} embeddings"
                )
            raise HeadMismatchError(
                f"this {self.head_type} head was trained on embeddings of backbone {own!r}, "
                f"not {backbone_id!r}; use a head trained on {backbone_id!r} or embed the images "
                f"with {own!r}"
            )
        expected = getattr(self, "n_features_in_", None)
        if dim is not None and expected is not None and int(dim) != int(expected):
            raise HeadMismatchError(
                f"this {self.head_type} head expects {expected}-d {self.tap} embeddings "
                f"(backbone {own!r}), got {dim}-d ones"
                + (f" from backbone {backbone_id!r}" if backbone_id else "")
            )

    # -- the estimator contract around training ----------------------------------------------

    def _validate_training(self, X, y, X_val, y_val):
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        classes, y_idx = np.unique(y, return_inverse=True)
        if len(classes) != 2:
            raise ValueError(
                f"Only binary classification is supported. {type(self).__name__} needs exactly "
                f"two classes (real, synthetic); got {len(classes)} class(es): "
                f"{classes.tolist()[:5]}"
            )
        self.classes_ = classes
        if X_val is not None and y_val is not None and len(y_val):
            X_val = np.asarray(X_val, dtype=np.float32)
            y_val = np.asarray(y_val)
            if X_val.ndim != 2 or X_val.shape[1] != X.shape[1]:
                raise ValueError(
                    f"X_val has shape {X_val.shape}; expected (n, {X.shape[1]}) like X"
                )
            unknown = set(np.unique(y_val).tolist()) - set(classes.tolist())
            if unknown:
                raise ValueError(f"y_val has labels not seen in y: {sorted(unknown)}")
            yv_idx = np.searchsorted(classes, y_val)
        else:
            X_val, yv_idx = None, None
        return X, y_idx, X_val, yv_idx

    def _record_training(self, result: _TrainingResult) -> None:
        self.n_iter_ = result.epochs
        self.best_epoch_ = result.best_epoch
        self.loss_curve_ = result.train_loss
        self.validation_loss_curve_ = result.val_loss
        self.best_validation_loss_ = result.best_val_loss
        self.penalty_curve_ = result.penalty

    # -- serialisation -----------------------------------------------------------------------

    def to_tensors(self) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray], params: dict | None = None):
        """A fitted head from its tensors and parameters (``classes_`` = [0, 1])."""
        head = cls(**_known_params(cls, params or {}))
        head._set_tensors({k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()})
        head.classes_ = np.array([0, 1])
        return head

    def _set_tensors(self, tensors: dict[str, np.ndarray]) -> None:  # pragma: no cover
        raise NotImplementedError


def same_features(backbone_a: str, backbone_b: str) -> bool:
    """Whether a head trained on one backbone id may score embeddings of the other.

    Ids must be equal, except that ``@draft`` (reduced-scale JPEG decoding, an explicit opt-in
    whose effect on embeddings ``benchmarks/bench_embed.py`` prints) is accepted either way:
    the user chose the approximation. The workspace still keeps such embeddings apart under
    their own id.
    """
    if backbone_a == backbone_b:
        return True
    from detector.backbone import parse_backbone_id

    a, b = parse_backbone_id(backbone_a), parse_backbone_id(backbone_b)
    return (a["model"], a["weights"], a["interpolation"]) == (
        b["model"],
        b["weights"],
        b["interpolation"],
    )


def _known_params(cls, params: dict) -> dict:
    names = cls._get_param_names()
    return {k: v for k, v in params.items() if k in names}


# -- training loop shared by the two heads ----------------------------------------------------


class _TrainingResult:
    def __init__(self):
        self.epochs = 0
        self.best_epoch = 0
        self.train_loss: list[float] = []
        self.val_loss: list[float] = []
        self.penalty: list[float] = []
        self.best_val_loss = float("nan")


def _internal_validation(y_idx: np.ndarray, fraction: float, seed: int):
    """Stratified hold-out indices (train, val) for early stopping when no X_val is given.

    Returns ``(all, None)`` when the data are too small for a hold-out (fewer than 20 samples or
    fewer than 2 per class) or ``fraction`` is 0.
    """
    n = len(y_idx)
    counts = np.bincount(y_idx, minlength=2)
    if fraction <= 0 or n < 20 or counts.min() < 2:
        return np.arange(n), None
    rng = np.random.default_rng(seed)
    val = []
    for c in (0, 1):
        members = np.flatnonzero(y_idx == c)
        rng.shuffle(members)
        take = min(len(members) - 1, max(1, round(fraction * len(members))))
        val.append(members[:take])
    val = np.sort(np.concatenate(val))
    train = np.setdiff1d(np.arange(n), val)
    return train, val


def smoothed_targets(target: torch.Tensor, smoothing: float) -> torch.Tensor:
    """The authors' label smoothing: ``y (1 - s) + (1 - y) s``, so s = 0.1 gives 0.1 / 0.9
    (``clip_cues/model.py`` ``SyntheticImageClassifier.compute_loss``)."""
    return target * (1.0 - smoothing) + (1.0 - target) * smoothing


def _bce_smoothed(logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
    soft = smoothed_targets(target, smoothing)
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, soft)


@contextmanager
def _single_thread():
    """Run torch on one thread: batches of 64 gain nothing from more, and results then match
    across machines with different core counts."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


EpochCallback = Callable[[dict], None]


def _fit_torch(
    head,
    params: list[torch.Tensor],
    forward,
    X,
    y_idx,
    X_val,
    yv_idx,
    penalty=None,
    epoch_callback: EpochCallback | None = None,
):
    with _single_thread():
        return _fit_torch_loop(
            head, params, forward, X, y_idx, X_val, yv_idx, penalty, epoch_callback
        )


def _fit_torch_loop(head, params, forward, X, y_idx, X_val, yv_idx, penalty, epoch_callback):
    """Mini-batch Adam with early stopping on the validation loss; best weights restored.

    ``forward(xb) -> (logits, activations)``; ``penalty(activations) -> scalar`` is added to the
    training loss times ``head.lambda_ortho`` (orthogonal head). The validation loss is the
    label-smoothed BCE alone (the penalty regularises training batches; it is not a measure
    of fit). Deterministic for a given ``random_state`` on one machine and thread count.
    ``epoch_callback(record)`` follows each epoch (see the module docstring).
    """
    seed = int(head.random_state) if head.random_state is not None else 0
    gen = torch.Generator().manual_seed(seed)
    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    yt = torch.from_numpy(y_idx.astype(np.float32))
    if X_val is None:
        tr, va = _internal_validation(y_idx, float(head.validation_fraction), seed)
        if va is not None:
            Xv, yv = Xt[va], yt[va]
            Xt, yt = Xt[tr], yt[tr]
        else:
            Xv = yv = None
    else:
        Xv = torch.from_numpy(np.ascontiguousarray(X_val, dtype=np.float32))
        yv = torch.from_numpy(yv_idx.astype(np.float32))
    smoothing = float(head.label_smoothing)
    lam = float(getattr(head, "lambda_ortho", 0.0))
    opt = torch.optim.Adam(params, lr=float(head.lr), weight_decay=float(head.weight_decay))
    n = Xt.shape[0]
    bs = max(1, int(head.batch_size))
    result = _TrainingResult()
    best = [p.detach().clone() for p in params]
    best_loss = float("inf")
    bad_epochs = 0
    for epoch in range(1, int(head.max_epochs) + 1):
        perm = torch.randperm(n, generator=gen)
        total, total_pen, seen = 0.0, 0.0, 0
        for start in range(0, n, bs):
            idx = perm[start : start + bs]
            logits, acts = forward(Xt[idx])
            loss = _bce_smoothed(logits, yt[idx], smoothing)
            if penalty is not None and lam > 0 and len(idx) > 1:
                pen = penalty(acts)
                total_pen += float(pen.detach()) * len(idx)
                loss = loss + lam * pen
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        result.train_loss.append(total / max(seen, 1))
        result.penalty.append(total_pen / max(seen, 1))
        result.epochs = epoch
        val_loss, stop = None, False
        if Xv is None:
            result.best_epoch = epoch  # no validation: the last epoch is kept
        else:
            with torch.no_grad():
                val_loss = float(_bce_smoothed(forward(Xv)[0], yv, smoothing))
            result.val_loss.append(val_loss)
            if val_loss < best_loss - float(head.tol):
                best_loss, bad_epochs, result.best_epoch = val_loss, 0, epoch
                best = [p.detach().clone() for p in params]
            else:
                bad_epochs += 1
                stop = bad_epochs >= int(head.patience)
        if epoch_callback is not None:
            epoch_callback(
                {
                    "epoch": epoch,
                    "train_loss": result.train_loss[-1],
                    "val_loss": val_loss,
                    "best_epoch": result.best_epoch,
                }
            )
        if stop:
            break
    if Xv is not None:
        with torch.no_grad():
            for p, b in zip(params, best, strict=True):
                p.copy_(b)
        result.best_val_loss = best_loss
    else:
        result.best_epoch = result.epochs
    return result


def _uniform_init(gen: torch.Generator, shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
    bound = 1.0 / np.sqrt(max(fan_in, 1))
    return (torch.rand(shape, generator=gen) * 2 - 1) * bound


# -- the two heads of the paper --------------------------------------------------------------

HEAD_RECIPE = {
    "label_smoothing": "0.1: targets y (1 - s) + (1 - y) s = 0.1 / 0.9",
    "loss": "BCE with logits (+ 0.33 * ||I - A^T A||_F for the orthogonal head)",
    "optimizer": "Adam lr 1e-3, coupled weight decay 0.01",
    "batch_size": 64,
    "max_epochs": 200,
    "early_stopping": "validation loss (label-smoothed BCE), patience 5, best weights restored",
    "init": "linear: nn.Linear default (uniform +-1/sqrt(fan_in)); orthogonal: direction "
    "weights orthogonal_, biases and logit layer nn.Linear default",
    "source": "marco-willi/clip-cues: src/clip_cues_research/finalexp/trainer.py (Recipe), "
    "config/train.yaml (max_epochs 200), config/experiment/clip_orthogonal.yaml, "
    "src/clip_cues/model.py (label smoothing), src/clip_cues/classification_head.py (init)",
}
"""The training recipe of the linear and orthogonal heads, checked against the authors' code;
recorded as ``recipe`` in every model card."""


class LinearProbe(DetectorHead):
    """Linear probe on the pooled CLS embedding: ``logit = x @ coef_ + intercept_``.

    Trained with the authors' recipe (:data:`HEAD_RECIPE`): BCE with label smoothing 0.1
    (targets 0.1 / 0.9), Adam (lr 1e-3, coupled weight decay 0.01), batch 64, at most 200
    epochs, early stopping on the validation loss (patience 5, best weights kept), nn.Linear's
    default uniform initialisation.
    ``fit(X, y, X_val, y_val)`` uses the given validation set; without one it holds out a
    stratified ``validation_fraction`` of the training data.

    Learned: ``coef_`` (d,), ``intercept_`` (float), ``classes_``, ``n_features_in_``,
    ``n_iter_`` (epochs run), ``best_epoch_``, ``loss_curve_``, ``validation_loss_curve_``.
    """

    head_type: ClassVar[str] = "linear"
    tap: ClassVar[str] = "pooled"
    recipe: ClassVar[dict | None] = HEAD_RECIPE

    def __init__(
        self,
        *,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        batch_size: int = 64,
        max_epochs: int = 200,
        patience: int = 5,
        tol: float = 0.0,
        label_smoothing: float = 0.1,
        validation_fraction: float = 0.1,
        random_state: int | None = 0,
        backbone_id: str | None = None,
    ):
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.tol = tol
        self.label_smoothing = label_smoothing
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.backbone_id = backbone_id

    def fit(self, X, y, X_val=None, y_val=None, epoch_callback: EpochCallback | None = None):
        """Train on (X (n, d), y (n,)); optional validation set for early stopping.

        ``epoch_callback(record)`` is called after every epoch (see the module docstring).
        """
        X, y_idx, X_val, yv_idx = self._validate_training(X, y, X_val, y_val)
        d = X.shape[1]
        gen = torch.Generator().manual_seed(int(self.random_state or 0))
        w = _uniform_init(gen, (d,), d).requires_grad_(True)
        b = _uniform_init(gen, (1,), d).requires_grad_(True)

        def forward(xb):
            return xb @ w + b, None

        result = _fit_torch(
            self, [w, b], forward, X, y_idx, X_val, yv_idx, epoch_callback=epoch_callback
        )
        self.coef_ = w.detach().numpy().astype(np.float32).copy()
        self.intercept_ = float(b.detach()[0])
        self._record_training(result)
        return self

    def _logits(self, X):
        return X.astype(np.float64) @ self.coef_.astype(np.float64) + float(self.intercept_)

    def to_tensors(self) -> dict[str, np.ndarray]:
        """``weight`` (1, d) and ``bias`` (1,), as in ``torch.nn.Linear(d, 1)``."""
        check_is_fitted(self)
        return {
            "weight": self.coef_.reshape(1, -1).astype(np.float32),
            "bias": np.array([self.intercept_], dtype=np.float32),
        }

    def _set_tensors(self, tensors):
        weight = tensors["weight"]
        if weight.ndim != 2 or weight.shape[0] != 1:
            raise HeadError(f"linear head: weight of shape {weight.shape}, expected (1, d)")
        self.coef_ = weight[0].copy()
        self.intercept_ = float(tensors["bias"].reshape(-1)[0])
        self.n_features_in_ = int(weight.shape[1])


class OrthogonalHead(DetectorHead):
    """De-correlated head: ``k`` linear directions, then one logit, no non-linearity between.

    ``activations = x @ directions_.T + direction_bias_`` (n, k);
    ``logit = activations @ to_logit_weight_ + to_logit_bias_``. Trained like ``LinearProbe``
    plus ``lambda_ortho * ||I - A^T A||_F`` per batch, where A is the batch's activation
    matrix with each column L2-normalised (so A^T A holds the cosines between directions'
    activations). The paper uses k = 8, lambda = 0.33; the direction weights start orthogonal
    (``torch.nn.init.orthogonal_``), as in the authors' code.
    """

    head_type: ClassVar[str] = "orthogonal"
    tap: ClassVar[str] = "pooled"
    recipe: ClassVar[dict | None] = HEAD_RECIPE

    def __init__(
        self,
        *,
        k: int = 8,
        lambda_ortho: float = 0.33,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        batch_size: int = 64,
        max_epochs: int = 200,
        patience: int = 5,
        tol: float = 0.0,
        label_smoothing: float = 0.1,
        validation_fraction: float = 0.1,
        random_state: int | None = 0,
        backbone_id: str | None = None,
    ):
        self.k = k
        self.lambda_ortho = lambda_ortho
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.tol = tol
        self.label_smoothing = label_smoothing
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.backbone_id = backbone_id

    def fit(self, X, y, X_val=None, y_val=None, epoch_callback: EpochCallback | None = None):
        """Train on (X (n, d), y (n,)); optional validation set for early stopping.

        ``epoch_callback(record)`` is called after every epoch (see the module docstring).
        """
        X, y_idx, X_val, yv_idx = self._validate_training(X, y, X_val, y_val)
        d, k = X.shape[1], int(self.k)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        gen = torch.Generator().manual_seed(int(self.random_state or 0))
        # The authors initialise the direction layer orthogonally (``orthogonal_init: true``,
        # clip_cues/classification_head.py); biases and the logit layer keep nn.Linear's
        # uniform default.
        w1 = torch.nn.init.orthogonal_(torch.empty(k, d), generator=gen).requires_grad_(True)
        b1 = _uniform_init(gen, (k,), d).requires_grad_(True)
        w2 = _uniform_init(gen, (k,), k).requires_grad_(True)
        b2 = _uniform_init(gen, (1,), k).requires_grad_(True)
        eye = torch.eye(k)

        def forward(xb):
            acts = xb @ w1.T + b1
            return acts @ w2 + b2, acts

        def penalty(acts):
            normed = acts / acts.norm(dim=0, keepdim=True).clamp_min(1e-8)
            return torch.linalg.matrix_norm(eye - normed.T @ normed)

        result = _fit_torch(
            self,
            [w1, b1, w2, b2],
            forward,
            X,
            y_idx,
            X_val,
            yv_idx,
            penalty,
            epoch_callback=epoch_callback,
        )
        self.directions_ = w1.detach().numpy().astype(np.float32).copy()
        self.direction_bias_ = b1.detach().numpy().astype(np.float32).copy()
        self.to_logit_weight_ = w2.detach().numpy().astype(np.float32).copy()
        self.to_logit_bias_ = float(b2.detach()[0])
        self._record_training(result)
        return self

    def activations(self, X) -> np.ndarray:
        """The k direction activations (n, k) before the logit layer."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return X.astype(np.float64) @ self.directions_.T.astype(np.float64) + self.direction_bias_

    def activation_gram(self, X) -> np.ndarray:
        """Cosines (k, k) between the directions' activation columns on X (the penalised A^T A)."""
        acts = self.activations(X)
        normed = acts / np.maximum(np.linalg.norm(acts, axis=0, keepdims=True), 1e-12)
        return normed.T @ normed

    def effective_coef(self) -> tuple[np.ndarray, float]:
        """The equivalent linear probe ``(coef (d,), intercept)`` (there is no non-linearity)."""
        check_is_fitted(self)
        w2 = self.to_logit_weight_.astype(np.float64)
        coef = w2 @ self.directions_.astype(np.float64)
        return coef, float(w2 @ self.direction_bias_ + self.to_logit_bias_)

    def _logits(self, X):
        acts = X.astype(np.float64) @ self.directions_.T.astype(np.float64) + self.direction_bias_
        return acts @ self.to_logit_weight_.astype(np.float64) + float(self.to_logit_bias_)

    def to_tensors(self) -> dict[str, np.ndarray]:
        """``directions.weight`` (k, d), ``directions.bias`` (k,), ``to_logit.weight`` (1, k),
        ``to_logit.bias`` (1,)."""
        check_is_fitted(self)
        return {
            "directions.weight": self.directions_.astype(np.float32),
            "directions.bias": self.direction_bias_.astype(np.float32),
            "to_logit.weight": self.to_logit_weight_.reshape(1, -1).astype(np.float32),
            "to_logit.bias": np.array([self.to_logit_bias_], dtype=np.float32),
        }

    def _set_tensors(self, tensors):
        w1 = tensors["directions.weight"]
        w2 = tensors["to_logit.weight"].reshape(-1)
        if w1.ndim != 2 or w2.shape[0] != w1.shape[0]:
            raise HeadError(
                f"orthogonal head: directions {w1.shape} and to_logit {w2.shape} do not fit"
            )
        self.directions_ = w1.copy()
        self.direction_bias_ = tensors["directions.bias"].reshape(-1).copy()
        self.to_logit_weight_ = w2.copy()
        self.to_logit_bias_ = float(tensors["to_logit.bias"].reshape(-1)[0])
        self.n_features_in_ = int(w1.shape[1])
        self.k = int(w1.shape[0])


register_head_type("linear", LinearProbe)
register_head_type("orthogonal", OrthogonalHead)


# -- model cards, saving and loading ---------------------------------------------------------


def is_demo_backbone(backbone_id: str | None) -> bool:
    """True for the random-weights demo backbone (its scores mean nothing)."""
    return bool(backbone_id) and str(backbone_id).startswith("tiny-clip")


def head_hyperparameters(head) -> dict:
    """The head's parameters as JSON-serialisable values (without ``backbone_id``)."""
    params = head.get_params()
    params.pop("backbone_id", None)
    return json.loads(json.dumps(params, default=str))


def make_card(head, **fields) -> dict:
    """A model card for ``head``: identity, dims and hyperparameters, plus ``fields``.

    Fields commonly given: ``training`` (counts, workspace, splits), ``validation`` (metrics),
    ``threshold`` (probability, chosen on validation), ``threshold_rule``, ``preprocessing``.
    """
    backbone_id = getattr(head, "backbone_id", None)
    card = {
        "format": FORMAT,
        "head_type": head.head_type,
        "backbone_id": backbone_id,
        "tap": head.tap,
        "feature_dim": int(getattr(head, "n_features_in_", 0)) or None,
        "hyperparameters": head_hyperparameters(head),
        "threshold": 0.5,
        "threshold_rule": "0.5 (no validation threshold)",
        "preprocessing": default_preprocessing(backbone_id=backbone_id),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "demo": is_demo_backbone(backbone_id),
    }
    recipe = getattr(head, "recipe", None)
    if recipe is not None:
        card["recipe"] = dict(recipe)
    card.update(fields)
    card["demo"] = is_demo_backbone(card.get("backbone_id"))
    return card


def default_preprocessing(
    image_size: int | None = None,
    interpolation: str | None = None,
    backbone_id: str | None = None,
) -> dict:
    """The preprocessing of the reference paper: full decode to RGB, resize of the shorter side
    (bilinear unless the backbone id says ``@bicubic``), centre crop, CLIP mean/std.
    ``image_size`` None = the backbone's own input size; ``@draft`` in the id records
    reduced-scale JPEG decoding."""
    from detector.backbone import CLIP_MEAN, CLIP_STD, DEFAULT_INTERPOLATION, parse_backbone_id

    draft = False
    if backbone_id:
        parts = parse_backbone_id(backbone_id)
        interpolation = interpolation or parts["interpolation"]
        draft = parts["draft"]
    return {
        "decode": "reduced-scale JPEG (draft)" if draft else "full",
        "resize": "shorter side",
        "interpolation": interpolation or DEFAULT_INTERPOLATION,
        "image_size": image_size,
        "crop": "centre",
        "mean": list(CLIP_MEAN),
        "std": list(CLIP_STD),
        "mode": "RGB",
    }


def save_head(head, path: str | os.PathLike, card: dict | None = None) -> Path:
    """Write ``head`` and its model card to one ``.safetensors`` file (atomically).

    Returns the path written. The card defaults to ``make_card(head)``.
    """
    from safetensors.numpy import save_file

    check_is_fitted(head)
    classes = np.asarray(head.classes_)
    if classes.tolist() != [0, 1]:
        raise HeadError(
            f"only heads trained on labels 0 (real) / 1 (synthetic) can be saved; this one has "
            f"classes {classes.tolist()}"
        )
    path = Path(path).expanduser()
    if path.suffix != HEAD_SUFFIX:
        path = path.with_name(path.name + HEAD_SUFFIX)
    card = dict(card) if card is not None else make_card(head)
    card.setdefault("head_type", head.head_type)
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in head.to_tensors().items()}
    metadata = {
        CARD_KEY: json.dumps(card, default=_json_default),
        "format": FORMAT,
        "head_type": head.head_type,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def read_card(path: str | os.PathLike) -> dict:
    """The model card of a saved head, without loading its tensors."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="np") as f:
            metadata = f.metadata() or {}
    except Exception as exc:
        raise HeadError(
            f"{path}: not a Cue Lens head (expected a safetensors file; {exc})"
        ) from exc
    if CARD_KEY not in metadata:
        raise HeadError(f"{path}: safetensors file without a Cue Lens model card")
    try:
        return json.loads(metadata[CARD_KEY])
    except json.JSONDecodeError as exc:
        raise HeadError(f"{path}: unreadable model card ({exc})") from exc


def load_head(path: str | os.PathLike):
    """Load a saved head (``.safetensors`` with card); the card is attached as ``head.card_``.

    Weights-only ``.ckpt`` / ``.pt`` files in the released format are imported through
    ``detector.released.import_checkpoint``. Never unpickles anything.
    """
    from safetensors.numpy import load_file

    path = Path(path).expanduser()
    if not path.is_file():
        raise HeadError(f"{path}: no such head file")
    if path.suffix in (".ckpt", ".pt", ".pth", ".bin"):
        from detector.released import import_checkpoint

        return import_checkpoint(path)
    card = read_card(path)
    try:
        tensors = load_file(str(path))
    except Exception as exc:
        raise HeadError(f"{path}: cannot read head tensors ({exc})") from exc
    cls = get_head_type(card.get("head_type", ""))
    params = dict(card.get("hyperparameters") or {})
    params["backbone_id"] = card.get("backbone_id")
    head = cls.from_tensors(tensors, params)
    dim = card.get("feature_dim")
    if dim is not None and int(getattr(head, "n_features_in_", dim)) != int(dim):
        raise HeadError(
            f"{path}: card says feature_dim {dim} but the tensors take "
            f"{head.n_features_in_}-d input"
        )
    card.setdefault("name", path.stem)
    card["path"] = str(path)
    head.card_ = card
    return head


def head_card(head) -> dict:
    """The model card attached to a loaded head (empty dict for a freshly trained one)."""
    return copy.deepcopy(getattr(head, "card_", None) or {})


def workspace_head_path(workspace, name: str) -> Path:
    """``WS/heads/NAME.safetensors`` for a bare head name."""
    name = name[: -len(HEAD_SUFFIX)] if name.endswith(HEAD_SUFFIX) else name
    return Path(workspace.heads_dir) / f"{name}{HEAD_SUFFIX}"


def is_bare_name(spec: str) -> bool:
    """True for a head name without a directory part (``demo`` or ``demo.safetensors``)."""
    return os.sep not in spec and "/" not in spec and not spec.startswith(".")


def resolve_head(spec: str | os.PathLike | None = None, *, workspace=None, cache_dir=None):
    """Load a head from a file path, a workspace head name, or a released head name.

    Order: an existing file path; ``WS/heads/NAME.safetensors`` when a workspace is given; a
    released head (``detector.released``; downloaded or taken from the cache). ``None`` means
    the default released detector (``linear_probe_synthclic``).
    """
    from detector import released

    if spec is None:
        return released.load_released(released.DEFAULT_RELEASED, cache_dir=cache_dir)
    spec = str(spec)
    path = Path(spec).expanduser()
    if path.is_file():
        return load_head(path)
    if workspace is not None and is_bare_name(spec):
        candidate = workspace_head_path(workspace, spec)
        if candidate.is_file():
            return load_head(candidate)
    if spec in released.RELEASED_HEADS:
        return released.load_released(spec, cache_dir=cache_dir)
    hint = ""
    if workspace is not None:
        names = [p.stem for p in sorted(Path(workspace.heads_dir).glob(f"*{HEAD_SUFFIX}"))]
        hint = f"; workspace heads: {', '.join(names) or 'none'}"
    raise HeadError(
        f"head {spec!r} not found: not a file, not a workspace head, not a released head "
        f"(released: {', '.join(released.RELEASED_HEADS)}){hint}. "
        f"See `python -m detector heads`."
    )


def list_workspace_heads(workspace) -> list[dict]:
    """Cards of the heads saved in ``WS/heads`` (unreadable files are listed with an error)."""
    rows = []
    heads_dir = Path(workspace.heads_dir)
    for path in sorted(heads_dir.glob(f"*{HEAD_SUFFIX}")) if heads_dir.is_dir() else []:
        try:
            card = read_card(path)
            error = None
        except HeadError as exc:
            card, error = {}, str(exc)
        rows.append(
            {
                "name": path.stem,
                "kind": "workspace",
                "head_type": card.get("head_type"),
                "backbone_id": card.get("backbone_id"),
                "tap": card.get("tap"),
                "feature_dim": card.get("feature_dim"),
                "training_data": _training_label(card),
                "threshold": card.get("threshold"),
                "demo": bool(card.get("demo")),
                "created": card.get("created"),
                "available": error is None,
                "location": str(path),
                "error": error,
            }
        )
    return rows


def _training_label(card: dict) -> str | None:
    training = card.get("training") or {}
    if not training:
        return card.get("training_data")
    gens = training.get("train_counts", {}).get("by_generator", {})
    ws = training.get("workspace")
    split = training.get("train_split")
    parts = [f"{Path(ws).name}:{split}" if ws else None, "+".join(sorted(gens)) or None]
    return " ".join(p for p in parts if p) or None


def list_heads(workspace=None, *, cache_dir=None):
    """Released heads (cached or not) and the workspace's heads as one DataFrame."""
    import pandas as pd

    from detector import released

    rows = released.released_rows(cache_dir=cache_dir)
    if workspace is not None:
        rows += list_workspace_heads(workspace)
    return pd.DataFrame(rows)


def find_workspace_head(workspace, backbone_id: str, head_type: str | None = None):
    """The newest workspace head trained on ``backbone_id`` (optionally of ``head_type``)."""
    rows = [
        r
        for r in list_workspace_heads(workspace)
        if r["available"]
        and r["backbone_id"] == backbone_id
        and (head_type is None or r["head_type"] == head_type)
    ]
    if not rows:
        return None
    newest = max(rows, key=lambda r: (r["created"] or "", r["name"]))
    return load_head(newest["location"])
