"""The concept bottleneck detector's concept side: directions from a vocabulary's text,
training on a workspace, and the paper's released concept heads.

The model itself (:class:`ConceptBottleneck`, head type ``concept``: fixed concept directions,
per-image gates, one linear layer; its ``fit`` on the shared training loop) lives in
``detector.heads``, so saved concept heads load and score with the detector alone; it is
re-exported here. This module adds what needs the concept machinery:

- :func:`concept_training_inputs`: the directions and concept names of a vocabulary for a
  workspace's backbone, registered with ``detector.train.register_head_inputs`` on import, so
  ``detector.train.train_head(ws, "concept")`` (``python -m detector train --head concept``,
  the dashboard's training) builds them;
- :func:`train_concept_model`: the same training as a function of its own, returning the head
  and a card with per-generator validation metrics;
- :func:`from_released_state_dict` / :func:`load_released_checkpoint`: the released
  ``cm_antonyms_*.ckpt`` heads, whose 168 concepts are named by the rows of the vocabulary CSV
  released with them (``antonyms.csv``); :func:`name_concepts` names an imported head's rows.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from concepts.directions import (
    DEFAULT_TEMPLATES,
    cached_directions,
    concept_directions,
    load_text_encoder,
)
from concepts.vocabulary import (
    DEFAULT_VOCABULARY,
    Vocabulary,
    VocabularyError,
    load_vocabulary,
)
from detector.heads import (
    CONCEPT_TENSOR_KEYS,
    ConceptBottleneck,
    ConceptModelError,
    make_card,
    save_head,
)
from detector.store import Workspace
from detector.train import register_head_inputs

HEAD_TYPE = ConceptBottleneck.head_type
TENSOR_KEYS = CONCEPT_TENSOR_KEYS


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


def concept_training_inputs(workspace, backbone_id: str, params: dict) -> tuple[dict, dict]:
    """What a concept head needs beyond its hyperparameters, for ``detector.train``.

    ``params`` are the caller's hyperparameters, optionally with ``vocabulary`` (a name, CSV
    path or ``Vocabulary``; default the built-in one), ``templates`` (prompt templates) and
    ``encoder`` (a loaded text encoder; default the backbone reloaded from its id when the
    workspace has no cached directions). Returns ``(constructor parameters, card fields)``:
    the hyperparameters plus ``directions`` and ``concept_names``, and the card's
    ``vocabulary`` and ``templates``.
    """
    params = dict(params)
    vocab = load_vocabulary(params.pop("vocabulary", DEFAULT_VOCABULARY))
    templates = params.pop("templates", DEFAULT_TEMPLATES)
    encoder = params.pop("encoder", None)
    if encoder is None and cached_directions(workspace, backbone_id, vocab, templates) is None:
        encoder = load_text_encoder(backbone_id)
    directions = concept_directions(
        vocab, encoder, backbone_id=backbone_id, templates=templates, workspace=workspace
    )
    card_fields = {
        "vocabulary": {
            "name": vocab.name,
            "hash": vocab.hash,
            "n_concepts": len(vocab),
            "path": vocab.path,
        },
        "templates": list(templates),
    }
    return {**params, "directions": directions, "concept_names": list(vocab.ids)}, card_fields


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
    or are computed once with ``encoder`` (:func:`concept_training_inputs`). Validation images
    (``val_split``; a stratified share of the training split when that split is empty) drive
    early stopping and the card's metrics (per-generator AP against all reals of the split,
    mAP, pooled AP, AUROC). With ``out`` the head is saved through
    ``detector.heads.save_head``. ``hyperparams`` go to ``ConceptBottleneck``;
    ``epoch_callback`` to its ``fit`` (called once per epoch; raising stops training).
    ``python -m detector train --head concept`` trains the same head through
    ``detector.train.train_head`` (threshold on validation reals, the usual card).
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace, create=False)
    params, card_fields = concept_training_inputs(
        ws,
        backbone_id,
        {**hyperparams, "vocabulary": vocabulary, "templates": templates, "encoder": encoder},
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
    head = ConceptBottleneck(**{"random_state": seed, **params, "backbone_id": backbone_id})
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
        **card_fields,
    )
    if out is not None:
        card["path"] = str(save_head(head, out, card))
    return head, card


register_head_inputs(HEAD_TYPE, concept_training_inputs)
