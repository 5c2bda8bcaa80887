"""The concept bottleneck detector: a head that decides only through named concepts.

For a projected image embedding x (the image-text space of the backbone):

    e = x / |x|                          unit embedding
    s = e @ D.T                          concept scores (D: unit directions, one row per concept)
    g = sigmoid(W_c e + b_c)             per-image gates, one per concept
    logit = w_y . (s * g) + b_y          sigmoid(logit) = P(synthetic)

and the contribution of concept q to the logit is ``s_q * g_q * w_y[q]``: the contributions plus
``b_y`` are the logit, exactly (``decision_function`` is computed that way).

Training (``fit``) follows the reference paper: gates are sampled from a binary-concrete
relaxation at temperature 0.1, a KL prior pulls every gate towards Bernoulli(alpha) with weight
beta (alpha = beta = 1e-4), AdamW with the gate layer at ten times the classifier's learning
rate, early stopping on the validation loss with the best weights kept. The directions are
fixed (computed from a vocabulary by ``concepts.directions``).

The released ``cm_antonyms_*.ckpt`` heads of the paper import with
:func:`from_released_state_dict`; their 168 concepts are named by the rows of the vocabulary
CSV released with them (``antonyms.csv``).

The estimator follows scikit-learn's contract and the head protocol of ``detector.heads``
(``head_type``, ``tap``, ``backbone_id``, ``to_tensors``/``from_tensors``) and registers
itself there as ``"concept"`` on import, so saved concept heads load with
``detector.heads.load_head`` like any other.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted, validate_data

from concepts.directions import (
    DEFAULT_TEMPLATES,
    cached_directions,
    concept_directions,
    load_text_encoder,
)
from concepts.scores import ScoresError
from concepts.vocabulary import (
    DEFAULT_VOCABULARY,
    Vocabulary,
    VocabularyError,
    load_vocabulary,
)
from detector.errors import CueLensError
from detector.heads import DetectorHead, make_card, register_head_type

HEAD_TYPE = "concept"
TENSOR_KEYS = (
    "text_embeddings",
    "W_concepts.weight",
    "W_concepts.bias",
    "W_classifier.weight",
    "W_classifier.bias",
)


class ConceptModelError(CueLensError):
    """A concept model cannot be trained, imported or applied as asked."""


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


CONCEPT_RECIPE = {
    "label_smoothing": 0.0,
    "loss": "BCE with logits + beta * KL(gates || Bernoulli(alpha)), alpha = beta = 1e-4",
    "optimizer": "AdamW; gate layer lr 1e-2 (10x), weight decay 0; classifier lr 1e-3, "
    "weight decay 1e-5",
    "batch_size": 256,
    "max_epochs": 200,
    "early_stopping": "validation AUROC, patience 10, best epoch restored",
    "init": "xavier_normal_ weights, gate bias 0, classifier bias 0.1",
    "gates": "binary-concrete samples at temperature 0.1 while training, sigmoid at inference",
    "source": "marco-willi/clip-cues: config/experiment/concept_model.yaml (epochs, batch, "
    "patience, lr, weight decay), src/clip_cues/concept_modeling/train.py (optimizer groups, "
    "model selection on validation AUROC), src/clip_cues/concept_modeling/networks.py (init, "
    "loss)",
}
"""The concept bottleneck's training recipe, checked against the authors' code; recorded as
``recipe`` in its model cards."""


class ConceptBottleneck(DetectorHead):
    """Concept bottleneck classifier on projected CLIP embeddings.

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
    weight_decay : AdamW weight decay of the classifier layer (1e-5); ``gate_weight_decay``
        that of the gate layer (0), as in the authors' trainer.
    batch_size, max_epochs, patience, tol : the usual (256, 200, 10).
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

    head_type = HEAD_TYPE
    tap = "projected"
    recipe = CONCEPT_RECIPE

    def __init__(
        self,
        directions=None,
        concept_names=None,
        *,
        alpha: float = 1e-4,
        beta: float = 1e-4,
        temperature: float = 0.1,
        lr: float = 1e-3,
        gate_lr_multiplier: float = 10.0,
        weight_decay: float = 1e-5,
        gate_weight_decay: float = 0.0,
        batch_size: int = 256,
        max_epochs: int = 200,
        patience: int = 10,
        early_stopping: str = "auroc",
        tol: float = 0.0,
        label_smoothing: float = 0.0,
        validation_fraction: float = 0.1,
        random_state: int | None = 0,
        backbone_id: str | None = None,
    ):
        self.directions = directions
        self.concept_names = concept_names
        self.alpha = alpha
        self.beta = beta
        self.temperature = temperature
        self.lr = lr
        self.gate_lr_multiplier = gate_lr_multiplier
        self.weight_decay = weight_decay
        self.gate_weight_decay = gate_weight_decay
        self.early_stopping = early_stopping
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.tol = tol
        self.label_smoothing = label_smoothing
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.backbone_id = backbone_id

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
            raise ScoresError(
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

    def fit(self, X, y, X_val=None, y_val=None, epoch_callback=None):
        """Train gates and classifier on projected embeddings X (N, dim) with labels y (N,).

        ``X_val``/``y_val`` drive early stopping; without them ``validation_fraction`` of the
        training data is held out (stratified). ``epoch_callback(record)`` is called after
        every epoch with ``{"epoch", "train_loss", "val_loss", "best_epoch"}``; an exception
        it raises stops training (the head protocol in ``detector.heads``). Returns ``self``.
        """
        X, y_idx, X_val, yv_idx = self._validate_training(X, y, X_val, y_val)
        X = np.asarray(X, dtype=np.float32)
        directions = self._check_directions(X.shape[1])
        names = self._names(directions.shape[0])
        y01 = y_idx.astype(np.float32)
        if X_val is None:
            X, X_val, y01, yv = _hold_out(X, y01, self.validation_fraction, self.random_state)
        else:
            yv = yv_idx.astype(np.float32)

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny matrices: one thread beats contended thread pools
        try:
            self._train(X, y01, X_val, yv, directions, names, epoch_callback)
        finally:
            torch.set_num_threads(threads)
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
            torch.nn.init.constant_(classifier.bias, 0.1)

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
            target = t * (1 - smooth) + (1 - t) * smooth
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logit, target)
            p = torch.sigmoid(gate_logits)
            log_p = torch.nn.functional.logsigmoid(gate_logits)
            log_1m_p = torch.nn.functional.logsigmoid(-gate_logits)
            kl = p * (log_p - log_alpha) + (1 - p) * (log_1m_p - log_1m_alpha)
            return bce + self.beta * kl.sum(1).mean(), bce

        def val_logits(e, s):
            return classifier(s * torch.sigmoid(gate_layer(e))).squeeze(1)

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
        best = (math.inf, None, 0)
        history = []
        stale = 0
        n = e_tr.shape[0]
        for epoch in range(1, int(self.max_epochs) + 1):
            gate_layer.train()
            classifier.train()
            order = torch.randperm(n, generator=gen)
            total = 0.0
            for start in range(0, n, int(self.batch_size)):
                idx = order[start : start + int(self.batch_size)]
                loss, _ = loss_of(e_tr[idx], s_tr[idx], t_tr[idx], sample=True)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(idx)
            with torch.no_grad():
                val_loss, val_bce = loss_of(e_va, s_va, t_va, sample=False)
                val_auroc = _auroc(t_va, val_logits(e_va, s_va)) if by_auroc else None
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": total / n,
                    "val_loss": float(val_loss),
                    "val_bce": float(val_bce),
                    "val_auroc": val_auroc,
                }
            )
            stop = False
            # Lower is better: the loss, or minus the AUROC.
            score = -val_auroc if by_auroc else float(val_loss)
            if score < best[0] - float(self.tol) or X_val is None:
                state = (
                    copy.deepcopy(gate_layer.state_dict()),
                    copy.deepcopy(classifier.state_dict()),
                )
                best = (score, state, epoch)
                stale = 0
            else:
                stale += 1
                stop = stale >= int(self.patience)
            if epoch_callback is not None:
                epoch_callback(
                    {
                        "epoch": epoch,
                        "train_loss": history[-1]["train_loss"],
                        "val_loss": history[-1]["val_loss"],
                        "best_epoch": best[2],
                    }
                )
            if stop:
                break

        gate_state, clf_state = best[1]
        self._set_weights(
            directions=directions,
            w_concepts=gate_state["weight"].numpy(),
            b_concepts=gate_state["bias"].numpy(),
            w_classifier=clf_state["weight"].numpy()[0],
            b_classifier=float(clf_state["bias"].numpy()[0]),
            names=names,
        )
        self.n_iter_ = len(history)
        self.best_epoch_ = best[2]
        self.loss_curve_ = [h["train_loss"] for h in history]
        self.validation_loss_curve_ = [h["val_loss"] for h in history]
        best_entry = history[best[2] - 1]
        self.best_validation_loss_ = best_entry["val_loss"]
        self.best_validation_auroc_ = best_entry["val_auroc"]

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
        g = _sigmoid(e @ self.W_concepts_.T.astype(np.float64) + self.b_concepts_)
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
        missing = [k for k in TENSOR_KEYS if k not in tensors]
        if missing:
            raise ConceptModelError(f"concept model tensors lack {', '.join(missing)}")
        arrays = {k: np.asarray(_as_numpy(tensors[k]), dtype=np.float32) for k in TENSOR_KEYS}
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


def _auroc(target: torch.Tensor, logits: torch.Tensor) -> float:
    """AUROC of logits against 0/1 targets (ties count half), without scikit-learn's overhead."""
    from scipy.stats import rankdata

    y = target.numpy().astype(bool)
    ranks = rankdata(logits.numpy())
    pos, neg = int(y.sum()), int((~y).sum())
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _hold_out(X: np.ndarray, y01: np.ndarray, fraction: float, seed: int | None):
    """Stratified (train, val) split for early stopping; val is None when the data are tiny."""
    counts = np.bincount(y01.astype(int), minlength=2)
    if fraction <= 0 or len(y01) < 20 or counts.min() < 2:
        return X, None, y01, None
    from sklearn.model_selection import train_test_split

    X_tr, X_va, y_tr, y_va = train_test_split(
        X, y01, test_size=fraction, stratify=y01, random_state=seed
    )
    return X_tr, X_va, y_tr, y_va


def _as_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().cpu().float().numpy()
    return np.asarray(value)


# -- the paper's released checkpoints --------------------------------------------------------


def from_released_state_dict(
    state_dict: Mapping, vocabulary: Vocabulary | str | os.PathLike
) -> ConceptBottleneck:
    """Import a released ``cm_antonyms_*`` state dict; concept names from the vocabulary CSV.

    ``state_dict`` may be the whole checkpoint (``{"state_dict": ..., "model_type": ...}``) or
    its state dict, with or without the ``model.`` prefix, holding torch tensors or arrays.
    Row q of ``text_embeddings`` is the q-th row of the vocabulary (antonyms.csv order).
    """
    if "state_dict" in state_dict:
        model_type = state_dict.get("model_type", "concept")
        if model_type != "concept":
            raise ConceptModelError(f"not a concept checkpoint (model_type {model_type!r})")
        state_dict = state_dict["state_dict"]
    tensors = {
        (k[len("model.") :] if k.startswith("model.") else k): v for k, v in state_dict.items()
    }
    missing = [k for k in TENSOR_KEYS if k not in tensors]
    if missing:
        raise ConceptModelError(
            "not a released concept head: state dict lacks "
            + ", ".join("model." + k for k in missing)
        )
    vocab = load_vocabulary(vocabulary)
    q = int(_as_numpy(tensors["text_embeddings"]).shape[0])
    if q != len(vocab):
        raise VocabularyError(
            f"the checkpoint has {q} concepts but vocabulary {vocab.name!r} has {len(vocab)}: "
            f"use the vocabulary released with the head (antonyms.csv)"
        )
    arrays = {k: _as_numpy(tensors[k]) for k in TENSOR_KEYS}
    return ConceptBottleneck.from_tensors(arrays, {"concept_names": list(vocab.ids)})


def load_released_checkpoint(
    path: str | os.PathLike, vocabulary: Vocabulary | str | os.PathLike
) -> ConceptBottleneck:
    """Load a released ``cm_antonyms_*.ckpt`` file (``torch.load(weights_only=True)``)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConceptModelError(f"{path}: cannot read checkpoint ({exc})") from exc
    if not isinstance(ckpt, Mapping):
        raise ConceptModelError(f"{path}: not a checkpoint dictionary")
    return from_released_state_dict(ckpt, vocabulary)


def has_default_names(head: ConceptBottleneck) -> bool:
    """True when a concept model's concepts are unnamed (``concept_0``, ``concept_1`` ...)."""
    return list(head.concept_names_) == [f"concept_{q}" for q in range(len(head.concept_names_))]


def name_concepts(
    head: ConceptBottleneck, vocabulary: Vocabulary | str | os.PathLike
) -> ConceptBottleneck:
    """A copy of ``head`` whose concepts carry the vocabulary's ids, row by row.

    For concept models imported without names (e.g. a released checkpoint loaded through
    ``detector.released``): row q of the model is row q of the vocabulary, as in the paper.
    """
    vocab = load_vocabulary(vocabulary)
    q = len(head.concept_names_)
    if q != len(vocab):
        raise VocabularyError(
            f"the concept model has {q} concepts but vocabulary {vocab.name!r} has {len(vocab)}"
        )
    named = copy.copy(head)
    named.concept_names_ = list(vocab.ids)
    named.concept_names = list(vocab.ids)
    return named


# -- training on a workspace (``python -m detector train --head concept``) -------------------


def _validation_metrics(head: ConceptBottleneck, meta, X) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = meta["label"].astype(int).to_numpy()
    logits = head.decision_function(X)
    out = {"n": len(y), "accuracy": float(np.mean((logits > 0) == (y == 1)))}
    if len(np.unique(y)) < 2:
        return out
    out["auroc"] = float(roc_auc_score(y, logits))
    out["pooled_ap"] = float(average_precision_score(y, logits))
    reals = y == 0
    per_gen = {}
    generators = meta["generator"].fillna("unknown").astype(str).to_numpy()
    for gen in sorted(set(generators[~reals])):
        keep = reals | ((generators == gen) & ~reals)
        per_gen[gen] = float(average_precision_score(y[keep], logits[keep]))
    out["per_generator_ap"] = per_gen
    out["map"] = float(np.mean(list(per_gen.values()))) if per_gen else None
    return out


def train_concept_model(
    workspace,
    backbone_id: str,
    *,
    vocabulary: Vocabulary | str = DEFAULT_VOCABULARY,
    train_split: str | None = "train",
    val_split: str | None = "val",
    seed: int = 0,
    out: str | os.PathLike | None = None,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    encoder=None,
    epoch_callback=None,
    **hyperparams,
) -> tuple[ConceptBottleneck, dict]:
    """Train a concept bottleneck on a workspace's projected embeddings; returns (head, card).

    ``workspace`` is a ``Workspace`` or its directory. Directions come from the workspace cache
    or are computed once with ``encoder`` (default: the backbone reloaded from its id).
    Validation images (``val_split``; a stratified share of the training split when that split
    is empty) drive early stopping and the card's metrics (per-generator AP against all reals
    of the split, mAP, pooled AP, AUROC). With ``out`` the head is saved through
    ``detector.heads.save_head``. ``hyperparams`` go to ``ConceptBottleneck``;
    ``epoch_callback`` to its ``fit`` (called once per epoch; raising stops training).
    """
    from detector.store import Workspace

    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace, create=False)
    vocab = load_vocabulary(vocabulary)
    if encoder is None and cached_directions(ws, backbone_id, vocab, templates) is None:
        encoder = load_text_encoder(backbone_id)
    directions = concept_directions(
        vocab, encoder, backbone_id=backbone_id, templates=templates, workspace=ws
    )
    meta_tr, X_tr = ws.dataset(backbone_id, "projected", split=train_split)
    if meta_tr.empty:
        splits = sorted(ws.images()["split"].dropna().unique().tolist())
        raise ConceptModelError(
            f"{ws.path}: no labelled projected embeddings for backbone {backbone_id!r} in split "
            f"{train_split!r} (splits here: {', '.join(splits) or 'none'})"
        )
    meta_va, X_va = (
        ws.dataset(backbone_id, "projected", split=val_split)
        if val_split
        else (meta_tr.iloc[:0], None)
    )
    y_tr = meta_tr["label"].astype(int).to_numpy()
    params = {"random_state": seed, **hyperparams, "backbone_id": backbone_id}
    head = ConceptBottleneck(directions=directions, concept_names=list(vocab.ids), **params)
    if meta_va.empty:
        head.fit(X_tr, y_tr, epoch_callback=epoch_callback)
        validation = {
            "split": None,
            "note": f"no images in split {val_split!r}: early stopping on a held-out share of "
            f"the training split; the metrics below are on the whole training split",
            **_validation_metrics(head, meta_tr, X_tr),
        }
    else:
        head.fit(
            X_tr, y_tr, X_va, meta_va["label"].astype(int).to_numpy(), epoch_callback=epoch_callback
        )
        validation = {"split": val_split, **_validation_metrics(head, meta_va, X_va)}
    card = make_card(
        head,
        training={
            "workspace": str(ws.path),
            "train_split": train_split,
            "val_split": val_split,
            "seed": seed,
            "epochs": head.n_iter_,
            "best_epoch": head.best_epoch_,
            "train_counts": {
                "n": len(y_tr),
                "by_label": {"real": int((y_tr == 0).sum()), "synthetic": int((y_tr == 1).sum())},
                "by_generator": {
                    str(k): int(v)
                    for k, v in meta_tr.loc[meta_tr["label"] == 1, "generator"]
                    .fillna("unknown")
                    .value_counts()
                    .sort_index()
                    .items()
                },
            },
        },
        validation=validation,
        threshold=0.5,
        threshold_rule="0.5 (logit 0)",
        vocabulary={
            "name": vocab.name,
            "hash": vocab.hash,
            "n_concepts": len(vocab),
            "path": vocab.path,
        },
        templates=list(templates),
    )
    if out is not None:
        from detector.heads import save_head

        card["path"] = str(save_head(head, out, card))
    return head, card


register_head_type(HEAD_TYPE, ConceptBottleneck)
