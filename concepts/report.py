"""Workspace-level concept reports: what the ``concepts`` and ``explain`` commands print.

These functions read a workspace and a head, then call the pure functions of
``concepts.scores``, ``concepts.attribution`` and ``concepts.importance``. The dashboard may
call them or the pure functions directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from concepts.attribution import (
    EXACT,
    SURROGATE,
    Attribution,
    ConceptSurrogate,
    attribute,
    is_concept_model,
    paired_embeddings,
    surrogate_caption,
    workspace_surrogate,
)
from concepts.directions import (
    DEFAULT_TEMPLATES,
    cached_directions,
    concept_directions,
    load_text_encoder,
)
from concepts.importance import (
    class_importance,
    concept_generator_matrix,
    generators_of,
    group_labels,
    single_concept_auc,
)
from concepts.scores import ScoresError, concept_scores
from concepts.vocabulary import DEFAULT_VOCABULARY, Vocabulary, load_vocabulary
from detector.errors import CueLensError
from detector.identity import is_demo_id

DEMO_BANNER = "DEMO: random weights, scores are not meaningful"
EXACT_NOTE = "the concept model explains itself exactly: fidelity 1 by construction"


def projected_backbone(workspace, backbone_id: str | None = None, head=None) -> str:
    """The backbone whose projected embeddings to use: the given one, the head's, or the only
    one the workspace holds."""
    have = workspace.backbones()
    ids = sorted(have.loc[have["tap"] == "projected", "backbone"].unique().tolist())
    wanted = backbone_id or getattr(head, "backbone_id", None)
    if wanted:
        if wanted not in ids:
            raise ScoresError(
                f"{workspace.path}: no projected embeddings for backbone {wanted!r} "
                f"(present: {', '.join(ids) or 'none'}); run `python -m detector embed`"
            )
        return wanted
    if len(ids) != 1:
        raise ScoresError(
            f"{workspace.path}: "
            + (
                f"embeddings of several backbones ({', '.join(ids)}); choose one with --backbone"
                if ids
                else "no projected embeddings; run `python -m detector embed` first"
            )
        )
    return ids[0]


def resolve_directions(
    workspace,
    backbone_id: str,
    vocabulary: Vocabulary,
    *,
    encoder=None,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    device: str = "auto",
    precision: str = "auto",
) -> np.ndarray:
    """Directions from the workspace cache, else computed (loading the backbone when needed)."""
    if encoder is None and cached_directions(workspace, backbone_id, vocabulary, templates) is None:
        encoder = load_text_encoder(backbone_id, device=device, precision=precision)
    return concept_directions(
        vocabulary, encoder, backbone_id=backbone_id, templates=templates, workspace=workspace
    )


def _describe(vocabulary: Vocabulary, names) -> pd.DataFrame:
    lookup = {
        cid: (vocabulary.category[i], vocabulary.explanation[i])
        for i, cid in enumerate(vocabulary.ids)
    }
    return pd.DataFrame(
        {
            "concept": list(names),
            "category": [lookup.get(n, ("", ""))[0] for n in names],
            "explanation": [lookup.get(n, ("", ""))[1] for n in names],
        }
    )


def _named(head, vocab: Vocabulary):
    """Name an unnamed concept model after a vocabulary of its size (row order)."""
    # torch and the concept model's training code: only for a concept-model head
    from concepts.bottleneck import has_default_names, name_concepts

    if has_default_names(head) and len(head.concept_names_) == len(vocab):
        note = f"concept names taken from vocabulary {vocab.name!r} by row order"
        return name_concepts(head, vocab), note
    return head, None


@dataclass
class ConceptReport:
    """Global concept view of one workspace (and optionally one head).

    ``importance``: ``class_importance`` rows (with category) for the head, or None without a
    head. ``auc``: single-concept AUC (concepts x generators + ``all``). ``matrix``: mean score
    per generator relative to the reals, in reals' SDs. ``method``/``fidelity``: ``exact``/1.0
    for the concept model, ``lasso surrogate``/held-out R^2 for other heads.
    """

    workspace: str
    backbone_id: str
    vocabulary: Vocabulary
    concepts: pd.DataFrame
    n_images: int
    groups: dict
    auc: pd.DataFrame
    matrix: pd.DataFrame
    head: dict | None = None
    method: str | None = None
    fidelity: float | None = None
    importance: pd.DataFrame | None = None
    surrogate: ConceptSurrogate | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def demo(self) -> bool:
        return is_demo_id(self.backbone_id)

    def top_auc(self, top: int | None = None) -> pd.DataFrame:
        """Concepts with the strongest single-concept separation (|AUC - 0.5| on ``all``)."""
        df = self.auc.reset_index().merge(self.concepts[["concept", "category"]], on="concept")
        key = np.nan_to_num(np.abs(df["all"].to_numpy() - 0.5), nan=-1.0)
        df = df.iloc[np.argsort(-key, kind="stable")].reset_index(drop=True)
        return df if top is None else df.head(top)

    def top_matrix(self, top: int | None = None) -> pd.DataFrame:
        """Matrix rows sorted by their largest |difference from the reals| over generators."""
        df = self.matrix.reset_index()
        if self.matrix.shape[1] == 0:
            return df
        key = np.nan_to_num(self.matrix.abs().max(axis=1).to_numpy(), nan=-1.0)
        df = df.iloc[np.argsort(-key, kind="stable")].reset_index(drop=True)
        return df if top is None else df.head(top)

    def to_dict(self, top: int | None = 20) -> dict:
        """JSON-ready report (tables cut to ``top`` rows)."""

        def records(df: pd.DataFrame | None):
            if df is None:
                return None
            rows = df if top is None else df.head(top)
            return [{k: _clean(v) for k, v in r.items()} for r in rows.to_dict(orient="records")]

        out = {
            "workspace": self.workspace,
            "backbone_id": self.backbone_id,
            "demo": self.demo,
            "vocabulary": {
                "name": self.vocabulary.name,
                "hash": self.vocabulary.hash,
                "n_concepts": len(self.vocabulary),
            },
            "n_images": self.n_images,
            "groups": self.groups,
            "head": self.head,
            "method": self.method,
            "fidelity": _clean(self.fidelity),
            "importance": records(self.importance),
            "surrogate_weights": records(
                None if self.surrogate is None else self.surrogate.weights_frame()
            ),
            "single_concept_auc": records(self.top_auc()),
            "generator_matrix_sd": records(self.top_matrix()),
            "notes": self.notes,
        }
        if self.demo:
            out["banner"] = DEMO_BANNER
        return out


def _clean(v):
    if isinstance(v, (float, np.floating)):
        return None if math.isnan(float(v)) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def head_summary(head) -> dict:
    """Name, type, backbone and demo flag of a head (from its card when it has one)."""
    card = getattr(head, "card_", None) or {}
    return {
        "name": card.get("name"),
        "head_type": getattr(head, "head_type", None),
        "tap": getattr(head, "tap", None),
        "backbone_id": getattr(head, "backbone_id", None) or card.get("backbone_id"),
        "demo": bool(card.get("demo")),
    }


def concept_report(
    workspace,
    *,
    backbone_id: str | None = None,
    vocabulary: Vocabulary | str = DEFAULT_VOCABULARY,
    head=None,
    encoder=None,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    split: str | None = None,
    refit: bool = False,
    device: str = "auto",
    precision: str = "auto",
) -> ConceptReport:
    """Global importances of the concepts in a workspace, for a head when one is given.

    Without a head: single-concept AUC per generator and the concept x generator matrix.
    With a concept model: its own concepts, exact mean contributions per class and gate usage.
    With another head: its lasso surrogate (fitted once on its reference set, kept),
    the surrogate's mean contributions per class and its fidelity.
    """
    vocab = load_vocabulary(vocabulary)
    backbone_id = projected_backbone(workspace, backbone_id, head)
    if head is not None and hasattr(head, "check_compatible"):
        head.check_compatible(backbone_id)
    notes = []
    if is_concept_model(head):
        head, note = _named(head, vocab)
        notes += [note] if note else []
        directions, names = head.directions_, list(head.concept_names_)
        if not set(names) & set(vocab.ids):
            notes.append(f"the concept model's concepts are not in vocabulary {vocab.name!r}")
    else:
        directions = resolve_directions(
            workspace,
            backbone_id,
            vocab,
            encoder=encoder,
            templates=templates,
            device=device,
            precision=precision,
        )
        names = list(vocab.ids)
    meta, projected = workspace.dataset(backbone_id, "projected", split=split)
    if meta.empty:
        raise ScoresError(
            f"{workspace.path}: no labelled images with projected embeddings of {backbone_id!r}"
            + (f" in split {split!r}" if split else "")
        )
    scores = concept_scores(projected, directions)
    groups = pd.Series(group_labels(meta)).value_counts().sort_index()
    report = ConceptReport(
        workspace=str(workspace.path),
        backbone_id=backbone_id,
        vocabulary=vocab,
        concepts=_describe(vocab, names),
        n_images=len(meta),
        groups={str(k): int(v) for k, v in groups.items()},
        auc=single_concept_auc(scores, meta, names),
        matrix=concept_generator_matrix(scores, meta, names, scale="sd")
        if generators_of(meta) and (meta["label"] == 0).any()
        else pd.DataFrame(index=pd.Index(names, name="concept")),
        notes=notes,
    )
    if head is None:
        return report
    report.head = head_summary(head)
    labels = meta["label"].astype(int).to_numpy()
    if is_concept_model(head):
        importance = class_importance(
            head.contributions(projected), labels, names, gates=head.gates(projected)
        )
        report.method, report.fidelity = EXACT, 1.0
        report.notes.append(EXACT_NOTE)
    else:
        surrogate = workspace_surrogate(
            workspace, head, backbone_id, directions, names, vocabulary_hash=vocab.hash, refit=refit
        )
        importance = class_importance(surrogate.contributions(scores), labels, names)
        report.method, report.fidelity, report.surrogate = SURROGATE, surrogate.fidelity, surrogate
        report.notes.append(
            f"{report.head['head_type']} head explained by a lasso surrogate on concept scores: "
            f"held-out R^2 (fidelity) {surrogate.fidelity:.3f} on {surrogate.n_heldout} images; "
            f"the rest of the logit is not explained by concepts; "
            f"{surrogate_caption(surrogate.info)}"
        )
    report.importance = importance.merge(
        report.concepts[["concept", "category"]], on="concept", how="left"
    )
    return report


def explain_embeddings(
    head,
    *,
    projected: np.ndarray,
    pooled: np.ndarray | None = None,
    workspace=None,
    backbone_id: str | None = None,
    vocabulary: Vocabulary | str = DEFAULT_VOCABULARY,
    encoder=None,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    names=None,
) -> list[Attribution]:
    """Per-image attributions of ``head`` for embedded images (both taps of one backbone).

    The concept model needs nothing else. Other heads need ``workspace`` (holding embeddings
    of ``backbone_id``) where their lasso surrogate is fitted once and cached.
    """
    if is_concept_model(head):
        head, _ = _named(head, load_vocabulary(vocabulary))
        return attribute(head, projected=projected, names=names)
    if workspace is None:
        raise CueLensError(
            f"explaining a {getattr(head, 'head_type', 'detector')} head needs a workspace "
            f"(--workspace) with embeddings of backbone {backbone_id!r}: its concept surrogate "
            f"is fitted there"
        )
    vocab = load_vocabulary(vocabulary)
    backbone_id = projected_backbone(workspace, backbone_id, head)
    directions = resolve_directions(
        workspace, backbone_id, vocab, encoder=encoder, templates=templates
    )
    surrogate = workspace_surrogate(
        workspace, head, backbone_id, directions, list(vocab.ids), vocabulary_hash=vocab.hash
    )
    features = projected if head.tap == "projected" else pooled
    return attribute(head, projected=projected, features=features, surrogate=surrogate, names=names)


def workspace_attributions(
    workspace,
    head,
    *,
    backbone_id: str | None = None,
    vocabulary=DEFAULT_VOCABULARY,
    encoder=None,
    hashes=None,
) -> list[Attribution]:
    """Attributions of workspace images (all, or ``hashes``) from their stored embeddings."""
    backbone_id = projected_backbone(workspace, backbone_id, head)
    order, x_tap, x_proj = paired_embeddings(workspace, backbone_id, head.tap, hashes=hashes)
    return explain_embeddings(
        head,
        projected=x_proj,
        pooled=x_tap,
        workspace=workspace,
        backbone_id=backbone_id,
        vocabulary=vocabulary,
        encoder=encoder,
        names=order,
    )
