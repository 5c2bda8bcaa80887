"""Detector heads on frozen CLIP features: linear probe, de-correlated (orthogonal) head,
concept bottleneck, the head protocol every head type follows, the paper's training recipes
(defaults stated once), and saving / loading heads with their model card.

The head protocol
=================

A *head* maps one feature tap of a frozen backbone to one logit; ``sigmoid(logit)`` is
P(synthetic). Every head type (``linear``, ``orthogonal`` and ``concept``, all here) is a class
that:

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
- registers itself with ``register_head_type(head_type, cls)``.

The concept bottleneck's model lives here so that a saved concept head loads and scores with
the detector alone; building its directions from a vocabulary's text is ``concepts/``' part
(``concepts.bottleneck``), and detector's core never imports ``concepts``.

Deriving from ``DetectorHead`` gives the inference half of the contract (validation, the
backbone check, probabilities, labels) given ``_logits(X) -> (n,) float64``.

All three train on one loop, ``detector.fitting.fit_epochs``. They take an optional
``epoch_callback`` in ``fit`` (a fit argument, not a parameter: it is not part of the model).
It is called once after every epoch with
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
import inspect
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from detector.backbone import CLIP_MEAN, CLIP_STD
from detector.errors import CueLensError
from detector.fitting import (
    EpochCallback,
    FitHistory,
    bce_smoothed,
    fit_epochs,
    single_thread,
    stratified_holdout,
    uniform_init,
)
from detector.identity import DEFAULT_INTERPOLATION, BackboneRef, is_demo_id
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


def register_head_type(name: str, cls: type) -> None:
    """Make a head class available under ``name`` (for loading saved heads and ``train``)."""
    _HEAD_TYPES[name] = cls


def get_head_type(name: str) -> type:
    """The head class registered as ``name`` (``linear``, ``orthogonal``, ``concept``, or one
    registered by the caller)."""
    if name not in _HEAD_TYPES:
        raise HeadError(f"unknown head type {name!r} (known: {', '.join(sorted(_HEAD_TYPES))})")
    return _HEAD_TYPES[name]


def _keyword_init(defaults: dict, positional: tuple[str, ...] = ()):
    """A head's ``__init__``: optional ``positional`` parameters (default None), then keyword-only
    parameters named by ``defaults`` with those defaults; it only stores each argument as an
    attribute (the scikit-learn rule). Its signature is explicit (``inspect.signature``), which
    is what ``get_params``, ``clone`` and ``help`` read, so each default is written once, in the
    recipe constants below."""
    kind = inspect.Parameter
    signature = inspect.Signature(
        [kind("self", kind.POSITIONAL_OR_KEYWORD)]
        + [kind(name, kind.POSITIONAL_OR_KEYWORD, default=None) for name in positional]
        + [kind(name, kind.KEYWORD_ONLY, default=value) for name, value in defaults.items()]
    )

    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)  # unknown names: TypeError as usual
        bound.apply_defaults()
        for name, value in list(bound.arguments.items())[1:]:
            setattr(self, name, value)

    __init__.__signature__ = signature
    return __init__


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

    def _record_training(self, result: FitHistory) -> None:
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
    a, b = BackboneRef.try_parse(backbone_a), BackboneRef.try_parse(backbone_b)
    return a is not None and b is not None and a.features == b.features


def _known_params(cls, params: dict) -> dict:
    names = cls._get_param_names()
    return {k: v for k, v in params.items() if k in names}


# -- the paper's training recipes: every default stated here once ---------------------------

PAPER_DEFAULTS = {
    "lr": 1e-3,
    "weight_decay": 0.01,
    "batch_size": 64,
    "max_epochs": 200,
    "patience": 5,
    "label_smoothing": 0.1,
}
"""Training defaults of the linear probe and the orthogonal head (the authors' recipe); their
constructors and :data:`HEAD_RECIPE` read them from here."""

ORTHOGONAL_DEFAULTS = {"k": 8, "lambda_ortho": 0.33}
"""The orthogonal head's directions and the weight of its de-correlation penalty (the paper's)."""

CONCEPT_DEFAULTS = {
    "alpha": 1e-4,
    "beta": 1e-4,
    "temperature": 0.1,
    "lr": 1e-3,
    "gate_lr_multiplier": 10.0,
    "weight_decay": 1e-5,
    "gate_weight_decay": 0.0,
    "batch_size": 256,
    "max_epochs": 200,
    "patience": 10,
    "early_stopping": "auroc",
    "label_smoothing": 0.0,
}
"""Training defaults of the concept bottleneck (the authors' recipe); its constructor and
:data:`CONCEPT_RECIPE` read them from here."""

FIT_DEFAULTS = {"tol": 0.0, "validation_fraction": 0.1, "random_state": 0, "backbone_id": None}
"""Defaults every head type shares: early-stopping tolerance, internal hold-out share, seed,
and the backbone (None = unknown)."""

CLASSIFIER_BIAS_INIT = 0.1  # the concept bottleneck's initial classifier bias (authors' code)


def _short(x: float) -> str:
    """``1e-3`` for 0.001 (how the recipes write small numbers)."""
    mantissa, exponent = f"{x:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


_P, _O, _C = PAPER_DEFAULTS, ORTHOGONAL_DEFAULTS, CONCEPT_DEFAULTS

HEAD_RECIPE = {
    "label_smoothing": f"{_P['label_smoothing']:g}: targets y (1 - s) + (1 - y) s = "
    f"{_P['label_smoothing']:g} / {1 - _P['label_smoothing']:g}",
    "loss": f"BCE with logits (+ {_O['lambda_ortho']:g} * ||I - A^T A||_F for the orthogonal head)",
    "optimizer": f"Adam lr {_short(_P['lr'])}, coupled weight decay {_P['weight_decay']:g}",
    "batch_size": _P["batch_size"],
    "max_epochs": _P["max_epochs"],
    "early_stopping": f"validation loss (label-smoothed BCE), patience {_P['patience']}, best "
    "weights restored",
    "init": "linear: nn.Linear default (uniform +-1/sqrt(fan_in)); orthogonal: direction "
    "weights orthogonal_, biases and logit layer nn.Linear default",
    "source": "marco-willi/clip-cues: src/clip_cues_research/finalexp/trainer.py (Recipe), "
    "config/train.yaml (max_epochs 200), config/experiment/clip_orthogonal.yaml, "
    "src/clip_cues/model.py (label smoothing), src/clip_cues/classification_head.py (init)",
}
"""The training recipe of the linear and orthogonal heads, checked against the authors' code;
recorded as ``recipe`` in every model card."""

_PRIOR = (
    f"alpha = beta = {_short(_C['alpha'])}"
    if _C["alpha"] == _C["beta"]
    else f"alpha = {_short(_C['alpha'])}, beta = {_short(_C['beta'])}"
)
CONCEPT_RECIPE = {
    "label_smoothing": _C["label_smoothing"],
    "loss": f"BCE with logits + beta * KL(gates || Bernoulli(alpha)), {_PRIOR}",
    "optimizer": f"AdamW; gate layer lr {_short(_C['lr'] * _C['gate_lr_multiplier'])} "
    f"({_C['gate_lr_multiplier']:g}x), weight decay {_C['gate_weight_decay']:g}; classifier lr "
    f"{_short(_C['lr'])}, weight decay {_short(_C['weight_decay'])}",
    "batch_size": _C["batch_size"],
    "max_epochs": _C["max_epochs"],
    "early_stopping": f"validation {'AUROC' if _C['early_stopping'] == 'auroc' else 'loss'}, "
    f"patience {_C['patience']}, best epoch restored",
    "init": f"xavier_normal_ weights, gate bias 0, classifier bias {CLASSIFIER_BIAS_INIT:g}",
    "gates": f"binary-concrete samples at temperature {_C['temperature']:g} while training, "
    "sigmoid at inference",
    "source": "marco-willi/clip-cues: config/experiment/concept_model.yaml (epochs, batch, "
    "patience, lr, weight decay), src/clip_cues/concept_modeling/train.py (optimizer groups, "
    "model selection on validation AUROC), src/clip_cues/concept_modeling/networks.py (init, "
    "loss)",
}
"""The concept bottleneck's training recipe, checked against the authors' code; recorded as
``recipe`` in its model cards."""


# -- the two heads of the paper --------------------------------------------------------------


class _PaperHead(DetectorHead):
    """Training shared by the linear and orthogonal heads: the authors' recipe
    (:data:`HEAD_RECIPE`) on :func:`detector.fitting.fit_epochs`."""

    recipe: ClassVar[dict | None] = HEAD_RECIPE

    def _fit_paper(self, params, forward, X, y_idx, X_val, yv_idx, penalty, epoch_callback):
        """Adam on ``params`` with label-smoothed BCE (+ ``lambda_ortho * penalty``), early
        stopping on the validation BCE; ``forward(xb) -> (logits, activations)``."""
        seed = int(self.random_state) if self.random_state is not None else 0
        gen = torch.Generator().manual_seed(seed)
        Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        yt = torch.from_numpy(y_idx.astype(np.float32))
        if X_val is None:
            tr, va = stratified_holdout(y_idx, float(self.validation_fraction), seed)
            if va is not None:
                Xv, yv = Xt[va], yt[va]
                Xt, yt = Xt[tr], yt[tr]
            else:
                Xv = yv = None
        else:
            Xv = torch.from_numpy(np.ascontiguousarray(X_val, dtype=np.float32))
            yv = torch.from_numpy(yv_idx.astype(np.float32))
        smoothing = float(self.label_smoothing)
        lam = float(getattr(self, "lambda_ortho", 0.0))

        def train_step(idx):
            logits, acts = forward(Xt[idx])
            loss = bce_smoothed(logits, yt[idx], smoothing)
            if penalty is None or lam <= 0 or len(idx) <= 1:
                return loss, 0.0
            pen = penalty(acts)
            return loss + lam * pen, float(pen.detach())

        def validate():
            # the penalty regularises training batches; it is not a measure of fit
            with torch.no_grad():
                val_loss = float(bce_smoothed(forward(Xv)[0], yv, smoothing))
            return val_loss, val_loss

        with single_thread():
            opt = torch.optim.Adam(params, lr=float(self.lr), weight_decay=float(self.weight_decay))
            history = fit_epochs(
                params,
                opt,
                train_step,
                n=Xt.shape[0],
                batch_size=max(1, int(self.batch_size)),
                max_epochs=int(self.max_epochs),
                generator=gen,
                validate=None if Xv is None else validate,
                patience=int(self.patience),
                tol=float(self.tol),
                epoch_callback=epoch_callback,
            )
        self._record_training(history)


class LinearProbe(_PaperHead):
    """Linear probe on the pooled CLS embedding: ``logit = x @ coef_ + intercept_``.

    Trained with the authors' recipe (:data:`HEAD_RECIPE`, defaults :data:`PAPER_DEFAULTS`),
    initialised like ``nn.Linear``. ``fit(X, y, X_val, y_val)`` uses the given validation set;
    without one it holds out a stratified ``validation_fraction`` of the training data.

    Parameters (keyword-only): ``lr``, ``weight_decay`` (Adam's, coupled), ``batch_size``,
    ``max_epochs``, ``patience`` and ``tol`` (early stopping), ``label_smoothing``,
    ``validation_fraction``, ``random_state`` (initialisation, shuffling, hold-out),
    ``backbone_id``; defaults in :data:`PAPER_DEFAULTS` and :data:`FIT_DEFAULTS`.

    Learned: ``coef_`` (d,), ``intercept_`` (float), ``classes_``, ``n_features_in_``,
    ``n_iter_`` (epochs run), ``best_epoch_``, ``loss_curve_``, ``validation_loss_curve_``.
    """

    head_type: ClassVar[str] = "linear"
    tap: ClassVar[str] = "pooled"

    __init__ = _keyword_init({**PAPER_DEFAULTS, **FIT_DEFAULTS})

    def fit(self, X, y, X_val=None, y_val=None, epoch_callback: EpochCallback | None = None):
        """Train on (X (n, d), y (n,)); optional validation set for early stopping.

        ``epoch_callback(record)`` is called after every epoch (see the module docstring).
        """
        X, y_idx, X_val, yv_idx = self._validate_training(X, y, X_val, y_val)
        d = X.shape[1]
        gen = torch.Generator().manual_seed(int(self.random_state or 0))
        w = uniform_init(gen, (d,), d).requires_grad_(True)
        b = uniform_init(gen, (1,), d).requires_grad_(True)

        def forward(xb):
            return xb @ w + b, None

        self._fit_paper([w, b], forward, X, y_idx, X_val, yv_idx, None, epoch_callback)
        self.coef_ = w.detach().numpy().astype(np.float32).copy()
        self.intercept_ = float(b.detach()[0])
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


class OrthogonalHead(_PaperHead):
    """De-correlated head: ``k`` linear directions, then one logit, no non-linearity between.

    ``activations = x @ directions_.T + direction_bias_`` (n, k);
    ``logit = activations @ to_logit_weight_ + to_logit_bias_``. Trained like ``LinearProbe``
    plus ``lambda_ortho * ||I - A^T A||_F`` per batch, where A is the batch's activation
    matrix with each column L2-normalised (so A^T A holds the cosines between directions'
    activations). The paper uses k = 8, lambda = 0.33 (:data:`ORTHOGONAL_DEFAULTS`); the direction
    weights start orthogonal (``torch.nn.init.orthogonal_``), as in the authors' code.

    Parameters: ``k``, ``lambda_ortho``, then those of :class:`LinearProbe`.
    """

    head_type: ClassVar[str] = "orthogonal"
    tap: ClassVar[str] = "pooled"

    __init__ = _keyword_init({**ORTHOGONAL_DEFAULTS, **PAPER_DEFAULTS, **FIT_DEFAULTS})

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
        b1 = uniform_init(gen, (k,), d).requires_grad_(True)
        w2 = uniform_init(gen, (k,), k).requires_grad_(True)
        b2 = uniform_init(gen, (1,), k).requires_grad_(True)
        eye = torch.eye(k)

        def forward(xb):
            acts = xb @ w1.T + b1
            return acts @ w2 + b2, acts

        def penalty(acts):
            normed = acts / acts.norm(dim=0, keepdim=True).clamp_min(1e-8)
            return torch.linalg.matrix_norm(eye - normed.T @ normed)

        self._fit_paper([w1, b1, w2, b2], forward, X, y_idx, X_val, yv_idx, penalty, epoch_callback)
        self.directions_ = w1.detach().numpy().astype(np.float32).copy()
        self.direction_bias_ = b1.detach().numpy().astype(np.float32).copy()
        self.to_logit_weight_ = w2.detach().numpy().astype(np.float32).copy()
        self.to_logit_bias_ = float(b2.detach()[0])
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


# -- the concept bottleneck ------------------------------------------------------------------

CONCEPT_TENSOR_KEYS = (
    "text_embeddings",
    "W_concepts.weight",
    "W_concepts.bias",
    "W_classifier.weight",
    "W_classifier.bias",
)


class ConceptModelError(CueLensError):
    """A concept model cannot be trained, imported or applied as asked."""


class ConceptBottleneck(DetectorHead):
    """Concept bottleneck classifier on projected CLIP embeddings.

    For a projected embedding x: ``e = x / |x|``; concept scores ``s = e @ D.T`` (D: fixed unit
    concept directions, one row per concept); gates ``g = sigmoid(W_c e + b_c)``;
    ``logit = w_y . (s * g) + b_y``. The contribution of concept q to the logit is
    ``s_q * g_q * w_y[q]``: the contributions plus ``b_y`` are the logit, exactly
    (``decision_function`` is computed that way).

    Training follows the reference paper (:data:`CONCEPT_RECIPE`, defaults
    :data:`CONCEPT_DEFAULTS`): gates sampled from a binary-concrete relaxation at
    ``temperature``, a KL prior pulling every gate towards Bernoulli(alpha) with weight beta,
    AdamW with the gate layer at ``gate_lr_multiplier`` times the classifier's learning rate,
    early stopping with the best weights kept. Building the directions from a vocabulary's
    text, and training on a workspace, live in ``concepts.bottleneck``.

    Parameters
    ----------
    directions : array (Q, dim) of unit concept directions (fixed, not learned). They are data,
        not a hyperparameter: ``get_params`` leaves them out (it must stay JSON for the model
        card), ``to_tensors`` carries them as ``text_embeddings``, and ``clone`` keeps them.
    concept_names : Q concept ids (default ``concept_0`` ...).
    alpha, beta : Bernoulli prior of the gates and the weight of its KL term.
    temperature : binary-concrete temperature of the gate samples during training.
    lr : AdamW learning rate of the classifier layer; the gate layer uses
        ``lr * gate_lr_multiplier``.
    weight_decay : AdamW weight decay of the classifier layer; ``gate_weight_decay`` that of
        the gate layer, as in the authors' trainer.
    batch_size, max_epochs, patience, tol : the usual.
    early_stopping : ``"auroc"`` (the authors': keep the epoch with the highest validation
        AUROC; patience counts epochs without a gain above ``tol``) or ``"loss"`` (lowest
        validation loss). With a one-class validation set AUROC is undefined and the loss is
        used.
    label_smoothing : BCE label smoothing (0 = none).
    validation_fraction : share of the training data held out (stratified) for early stopping
        when ``fit`` gets no validation set; with fewer than 20 images or 2 per class, nothing
        is held out and the last epoch is kept.
    random_state : seed of initialisation, shuffling, gate noise and the validation split.
    backbone_id : the backbone whose projected embeddings the model reads (``None`` unknown).

    Learned: ``directions_``, ``W_concepts_`` (Q, dim), ``b_concepts_`` (Q,), ``w_classifier_``
    (Q,), ``b_classifier_`` (float), ``concept_names_``, ``classes_``, ``n_features_in_``,
    ``n_iter_``, ``best_epoch_``, ``loss_curve_``, ``validation_loss_curve_``.
    """

    head_type: ClassVar[str] = "concept"
    tap: ClassVar[str] = "projected"
    recipe: ClassVar[dict | None] = CONCEPT_RECIPE

    __init__ = _keyword_init(
        {**CONCEPT_DEFAULTS, **FIT_DEFAULTS}, positional=("directions", "concept_names")
    )

    def get_params(self, deep: bool = True) -> dict:
        """Hyperparameters (JSON-ready): every constructor argument except ``directions``."""
        params = super().get_params(deep=deep)
        params.pop("directions", None)
        if params.get("concept_names") is not None:
            params["concept_names"] = [str(c) for c in params["concept_names"]]
        return params

    def __sklearn_clone__(self):
        clone = type(self)(**self.get_params(deep=False))
        clone.directions = self.directions
        return clone

    # -- training ----------------------------------------------------------------------------

    def _check_directions(self, dim: int) -> np.ndarray:
        if self.directions is None:
            raise ConceptModelError(
                "ConceptBottleneck needs concept directions (Q, dim); build them with "
                "concepts.directions.concept_directions(vocabulary, backbone)"
            )
        d = np.asarray(self.directions, dtype=np.float32)
        if d.ndim != 2 or d.shape[1] != dim:
            raise ConceptModelError(
                f"directions of shape {d.shape} do not match embeddings of dimension {dim}: "
                f"concepts need the projected tap of the same backbone"
            )
        return d

    def _names(self, n: int) -> list[str]:
        names = list(self.concept_names) if self.concept_names is not None else []
        if not names:
            return [f"concept_{q}" for q in range(n)]
        if len(names) != n:
            raise ConceptModelError(f"{len(names)} concept names for {n} directions")
        return [str(c) for c in names]

    def fit(self, X, y, X_val=None, y_val=None, epoch_callback: EpochCallback | None = None):
        """Train gates and classifier on projected embeddings X (N, dim) with labels y (N,).

        ``X_val``/``y_val`` drive early stopping; without them ``validation_fraction`` of the
        training data is held out (stratified). ``epoch_callback(record)`` is called after
        every epoch (see the module docstring). Returns ``self``.
        """
        X, y_idx, X_val, yv_idx = self._validate_training(X, y, X_val, y_val)
        X = np.asarray(X, dtype=np.float32)
        directions = self._check_directions(X.shape[1])
        names = self._names(directions.shape[0])
        y01 = y_idx.astype(np.float32)
        if X_val is None:
            X, X_val, y01, yv = _concept_hold_out(
                X, y01, self.validation_fraction, self.random_state
            )
        else:
            yv = yv_idx.astype(np.float32)
        with single_thread():
            self._train(X, y01, X_val, yv, directions, names, epoch_callback)
        return self

    def _train(self, X, y01, X_val, yv, directions, names, epoch_callback=None) -> None:
        seed = 0 if self.random_state is None else int(self.random_state)
        gen = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            gate_layer = torch.nn.Linear(X.shape[1], directions.shape[0])
            classifier = torch.nn.Linear(directions.shape[0], 1)
            # The authors' initialisation (clip_cues/concept_modeling/networks.py).
            torch.nn.init.xavier_normal_(gate_layer.weight)
            torch.nn.init.zeros_(gate_layer.bias)
            torch.nn.init.xavier_normal_(classifier.weight)
            torch.nn.init.constant_(classifier.bias, CLASSIFIER_BIAS_INIT)

        d_t = torch.from_numpy(directions)

        def prepare(x: np.ndarray):
            e = torch.nn.functional.normalize(torch.from_numpy(np.ascontiguousarray(x)), dim=1)
            return e, e @ d_t.T

        e_tr, s_tr = prepare(X)
        t_tr = torch.from_numpy(y01)
        if X_val is None:  # too few images to hold any out: train on all, keep the last epoch
            e_va, s_va, t_va = e_tr, s_tr, t_tr
        else:
            e_va, s_va = prepare(X_val)
            t_va = torch.from_numpy(yv)
        smooth = float(self.label_smoothing)
        log_alpha = math.log(self.alpha)
        log_1m_alpha = math.log1p(-self.alpha)

        def loss_of(e, s, t, sample: bool):
            gate_logits = gate_layer(e)
            if sample:
                u = torch.rand(gate_logits.shape, generator=gen).clamp_(1e-6, 1 - 1e-6)
                noise = torch.log(u) - torch.log1p(-u)
                gates = torch.sigmoid((gate_logits + noise) / self.temperature)
            else:
                gates = torch.sigmoid(gate_logits)
            logit = classifier(s * gates).squeeze(1)
            bce = bce_smoothed(logit, t, smooth)
            p = torch.sigmoid(gate_logits)
            log_p = torch.nn.functional.logsigmoid(gate_logits)
            log_1m_p = torch.nn.functional.logsigmoid(-gate_logits)
            kl = p * (log_p - log_alpha) + (1 - p) * (log_1m_p - log_1m_alpha)
            return bce + self.beta * kl.sum(1).mean()

        optimizer = torch.optim.AdamW(
            [
                {
                    "params": gate_layer.parameters(),
                    "lr": self.lr * self.gate_lr_multiplier,
                    "weight_decay": float(self.gate_weight_decay),
                },
                {
                    "params": classifier.parameters(),
                    "lr": self.lr,
                    "weight_decay": float(self.weight_decay),
                },
            ],
        )
        if self.early_stopping not in ("auroc", "loss"):
            raise ConceptModelError(
                f"early_stopping must be 'auroc' or 'loss', got {self.early_stopping!r}"
            )
        by_auroc = self.early_stopping == "auroc" and len(np.unique(t_va.numpy())) == 2
        aurocs: list[float | None] = []

        def train_step(idx):
            return loss_of(e_tr[idx], s_tr[idx], t_tr[idx], sample=True), 0.0

        def validate():
            with torch.no_grad():
                val_loss = float(loss_of(e_va, s_va, t_va, sample=False))
                logits = classifier(s_va * torch.sigmoid(gate_layer(e_va))).squeeze(1)
                aurocs.append(_auroc(t_va, logits) if by_auroc else None)
            # lower is better: the loss, or minus the AUROC
            return val_loss, -aurocs[-1] if by_auroc else val_loss

        params = [*gate_layer.parameters(), *classifier.parameters()]
        history = fit_epochs(
            params,
            optimizer,
            train_step,
            n=e_tr.shape[0],
            batch_size=int(self.batch_size),
            max_epochs=int(self.max_epochs),
            generator=gen,
            validate=validate,
            early_stopping=X_val is not None,
            patience=int(self.patience),
            tol=float(self.tol),
            epoch_callback=epoch_callback,
        )
        self._set_weights(
            directions=directions,
            w_concepts=gate_layer.weight.detach().numpy(),
            b_concepts=gate_layer.bias.detach().numpy(),
            w_classifier=classifier.weight.detach().numpy()[0],
            b_classifier=float(classifier.bias.detach().numpy()[0]),
            names=names,
        )
        self._record_training(history)
        self.best_validation_auroc_ = aurocs[history.best_epoch - 1]

    def _set_weights(
        self, *, directions, w_concepts, b_concepts, w_classifier, b_classifier, names
    ) -> None:
        self.directions_ = np.asarray(directions, dtype=np.float32).copy()
        self.W_concepts_ = np.asarray(w_concepts, dtype=np.float32).copy()
        self.b_concepts_ = np.asarray(b_concepts, dtype=np.float32).reshape(-1).copy()
        self.w_classifier_ = np.asarray(w_classifier, dtype=np.float32).reshape(-1).copy()
        self.b_classifier_ = float(np.asarray(b_classifier, dtype=np.float32).reshape(-1)[0])
        self.concept_names_ = list(names)
        self.n_features_in_ = int(self.directions_.shape[1])
        q = self.directions_.shape[0]
        shapes = (self.W_concepts_.shape, self.b_concepts_.shape, self.w_classifier_.shape)
        if shapes != ((q, self.n_features_in_), (q,), (q,)) or len(self.concept_names_) != q:
            raise ConceptModelError(
                f"inconsistent concept model: {q} directions of dim {self.n_features_in_}, "
                f"gate weights {shapes[0]}, gate bias {shapes[1]}, classifier {shapes[2]}, "
                f"{len(self.concept_names_)} names"
            )

    # -- inference -----------------------------------------------------------------------

    def concept_terms(self, X) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scores s, gates g and contributions s * g * w, each (N, Q) float64, in one pass."""
        check_is_fitted(self, "W_concepts_")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        X = np.asarray(X, dtype=np.float64)
        e = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        s = e @ self.directions_.T.astype(np.float64)
        g = _tanh_sigmoid(e @ self.W_concepts_.T.astype(np.float64) + self.b_concepts_)
        return s, g, s * g * self.w_classifier_.astype(np.float64)

    def concept_scores(self, X) -> np.ndarray:
        """Concept scores s (N, Q): cosine of each embedding with each direction."""
        return self.concept_terms(X)[0]

    def gates(self, X) -> np.ndarray:
        """Gates g (N, Q) in (0, 1) at inference (sigmoid, no sampling)."""
        return self.concept_terms(X)[1]

    def contributions(self, X) -> np.ndarray:
        """Per-image, per-concept contributions ``s * g * w`` (N, Q) to the logit."""
        return self.concept_terms(X)[2]

    @property
    def bias_(self) -> float:
        """The classifier bias: the logit is ``contributions.sum(1) + bias_``."""
        check_is_fitted(self, "W_concepts_")
        return self.b_classifier_

    def _logits(self, X) -> np.ndarray:
        return self.contributions(X).sum(axis=1) + self.b_classifier_

    def decision_function(self, X) -> np.ndarray:
        """Logits (N,), computed as the sum of the contributions plus the bias."""
        return self._logits(X)

    # -- head protocol: tensors ----------------------------------------------------------

    def to_tensors(self) -> dict[str, np.ndarray]:
        """Learned arrays under the released checkpoints' names (without ``model.``)."""
        check_is_fitted(self, "W_concepts_")
        return {
            "text_embeddings": self.directions_,
            "W_concepts.weight": self.W_concepts_,
            "W_concepts.bias": self.b_concepts_,
            "W_classifier.weight": self.w_classifier_[None, :],
            "W_classifier.bias": np.asarray([self.b_classifier_], dtype=np.float32),
        }

    def _set_tensors(self, tensors: Mapping[str, np.ndarray]) -> None:
        missing = [k for k in CONCEPT_TENSOR_KEYS if k not in tensors]
        if missing:
            raise ConceptModelError(f"concept model tensors lack {', '.join(missing)}")
        arrays = {k: np.asarray(tensors[k], dtype=np.float32) for k in CONCEPT_TENSOR_KEYS}
        directions = arrays["text_embeddings"]
        if directions.ndim != 2:
            raise ConceptModelError(
                f"text_embeddings of shape {directions.shape}, expected (Q, dim)"
            )
        self.directions = directions
        self._set_weights(
            directions=directions,
            w_concepts=arrays["W_concepts.weight"],
            b_concepts=arrays["W_concepts.bias"],
            w_classifier=arrays["W_classifier.weight"].reshape(-1),
            b_classifier=arrays["W_classifier.bias"].reshape(-1)[0],
            names=self._names(directions.shape[0]),
        )


def _tanh_sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _auroc(target: torch.Tensor, logits: torch.Tensor) -> float:
    """AUROC of logits against 0/1 targets (ties count half), without scikit-learn's overhead."""
    from scipy.stats import rankdata

    y = target.numpy().astype(bool)
    ranks = rankdata(logits.numpy())
    pos, neg = int(y.sum()), int((~y).sum())
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _concept_hold_out(X: np.ndarray, y01: np.ndarray, fraction: float, seed: int | None):
    """Stratified (train, val) split for early stopping; val is None when the data are tiny.

    The concept bottleneck has always drawn its hold-out with scikit-learn, the other heads with
    ``detector.fitting.stratified_holdout``; the two draws differ, and each is kept so that a
    seed keeps giving the weights it gave (``tests/test_fitting.py``)."""
    counts = np.bincount(y01.astype(int), minlength=2)
    if fraction <= 0 or len(y01) < 20 or counts.min() < 2:
        return X, None, y01, None
    from sklearn.model_selection import train_test_split

    X_tr, X_va, y_tr, y_va = train_test_split(
        X, y01, test_size=fraction, stratify=y01, random_state=seed
    )
    return X_tr, X_va, y_tr, y_va


register_head_type("linear", LinearProbe)
register_head_type("orthogonal", OrthogonalHead)
register_head_type("concept", ConceptBottleneck)


# -- model cards, saving and loading ---------------------------------------------------------


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
        "demo": is_demo_id(backbone_id),
    }
    recipe = getattr(head, "recipe", None)
    if recipe is not None:
        card["recipe"] = dict(recipe)
    card.update(fields)
    card["demo"] = is_demo_id(card.get("backbone_id"))
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
    draft = False
    ref = BackboneRef.try_parse(backbone_id)
    if ref is not None:
        interpolation = interpolation or ref.interpolation
        draft = ref.draft
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

    Only Cue Lens heads: ``detector.catalog.load_head_file`` also imports weights-only
    checkpoints of the released format. Never unpickles anything.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise HeadError(f"{path}: no such head file")
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
