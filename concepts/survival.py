"""Do explanations survive where detection collapses?

For one fitted head, each concept's **diagnostic importance** on a set of images is the
class-mean difference of its per-image contribution to the logit: mean over the synthetic
images minus mean over the real ones (exact contributions for the concept model, the lasso
surrogate's for linear and orthogonal heads; the ``difference`` of
``concepts.importance.class_importance``). On the head's **source** images (by default its
training split) this says which concepts the detector's decision rests on; on one
generator's fakes against the reals it says which of them still separate that generator.

Per generator, two numbers compare the two importance vectors:

- **diagnostic agreement**: Spearman rank correlation of |importance| over the concepts that
  carry any importance in either vector (1 = the same concepts matter in the same order; near
  0 = unrelated; concepts a lasso surrogate dropped, 0 in both, are left out);
- **selection survival**: Jaccard overlap of the top-K concepts by |importance| (1 = the same
  K concepts; 0 = none of the source's top-K is among the generator's).

They are reported next to the head's AP on that generator, so a generator where detection
collapses can be checked for whether its explanations went silent too.
``survival_table`` is the pure function; ``workspace_survival`` reads a workspace and a head.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from concepts.attribution import is_concept_model, workspace_surrogate
from concepts.importance import REAL, generators_of, group_labels
from concepts.report import (
    DEMO_BANNER,
    _named,
    head_summary,
    projected_backbone,
    resolve_directions,
)
from concepts.scores import concept_scores
from concepts.shift import json_value
from concepts.stability import DEFAULT_TOP_K, jaccard, spearman_abs, top_k
from concepts.vocabulary import DEFAULT_VOCABULARY, load_vocabulary
from detector.errors import CueLensError
from detector.groups import pairing_groups
from detector.identity import is_demo_id
from detector.metrics import MetricsError, per_generator_ap


class SurvivalError(CueLensError):
    """Survival cannot be measured on what the workspace holds."""


def diagnostic_importance(contributions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean contribution over synthetic images minus mean over real ones, per concept (Q,).

    ``contributions`` (N, Q), ``labels`` (N,) 0 real / 1 synthetic; a missing class gives NaN.
    """
    c = np.asarray(contributions, dtype=np.float64)
    y = np.asarray(labels).reshape(-1)
    if c.ndim != 2 or c.shape[0] != y.shape[0]:
        raise SurvivalError(f"contributions {c.shape} do not match {y.shape[0]} labels")
    fake, real = c[y == 1], c[y == 0]
    if not len(fake) or not len(real):
        return np.full(c.shape[1], np.nan)
    return fake.mean(axis=0) - real.mean(axis=0)


def diagnostic_agreement(source: np.ndarray, target: np.ndarray) -> float:
    """Spearman correlation of |source| and |target| importance (NaN if either is constant)."""
    return spearman_abs(source, target)


def selection_survival(source: np.ndarray, target: np.ndarray, k: int = DEFAULT_TOP_K) -> float:
    """Jaccard overlap of the top-``k`` concepts by |importance| of the two vectors."""
    return jaccard(top_k(source, k), top_k(target, k))


def survival_table(
    contributions: np.ndarray,
    meta: pd.DataFrame,
    source_importance: np.ndarray,
    *,
    k: int = DEFAULT_TOP_K,
    ap: dict[str, float] | None = None,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Per generator (its fakes against all reals of ``meta``): AP (from ``ap``), counts,
    diagnostic agreement and selection survival with ``source_importance``.

    Returns the table (one row per generator, sorted by name) and each generator's
    diagnostic importance vector.
    """
    groups = group_labels(meta)
    reals = groups == REAL
    c = np.asarray(contributions, dtype=np.float64)
    rows, vectors = [], {}
    for gen in generators_of(groups):
        keep = reals | (groups == gen)
        labels = (groups[keep] == gen).astype(int)
        imp = diagnostic_importance(c[keep], labels)
        vectors[gen] = imp
        rows.append(
            {
                "generator": gen,
                "ap": (ap or {}).get(gen, float("nan")),
                "n_real": int(reals.sum()),
                "n_fake": int((groups == gen).sum()),
                "diagnostic_agreement": diagnostic_agreement(source_importance, imp),
                "selection_survival": selection_survival(source_importance, imp, k),
            }
        )
    cols = ["generator", "ap", "n_real", "n_fake", "diagnostic_agreement", "selection_survival"]
    return pd.DataFrame(rows, columns=cols), vectors


@dataclass
class SurvivalResult:
    """Survival of one head's explanations per generator (see the module docstring)."""

    head: dict
    backbone_id: str
    names: list[str]
    method: str
    fidelity: float | None
    split: str
    source: str
    top_k: int
    source_importance: np.ndarray
    table: pd.DataFrame
    importance: dict[str, np.ndarray]
    notes: list[str] = field(default_factory=list)

    @property
    def demo(self) -> bool:
        return is_demo_id(self.backbone_id)

    def source_top(self) -> list[str]:
        """The source's top-K concepts by |importance|, most important first."""
        order = np.argsort(-np.abs(self.source_importance), kind="stable")[: self.top_k]
        return [self.names[i] for i in order]

    def compare(self, generators: list[str]) -> pd.DataFrame:
        """For the source's top-K concepts: the source importance and, per generator, its
        importance there and whether the concept ``survives`` (is in that generator's top-K)
        or goes silent."""
        index = {n: i for i, n in enumerate(self.names)}
        top = self.source_top()
        out = pd.DataFrame(
            {
                "concept": top,
                "source": [self.source_importance[index[c]] for c in top],
            }
        )
        for gen in generators:
            if gen not in self.importance:
                raise SurvivalError(
                    f"no generator {gen!r} here (known: {', '.join(self.importance)})"
                )
            imp = self.importance[gen]
            kept = {self.names[i] for i in top_k(imp, self.top_k)}
            out[gen] = [imp[index[c]] for c in top]
            out[f"{gen} survives"] = [c in kept for c in top]
        return out

    def to_dict(self) -> dict:
        """JSON-ready: the per-generator table and, per generator, which of the source's top-K
        concepts survive (are in its top-K) and which go silent."""

        clean = json_value

        gens = list(self.importance)
        cmp = self.compare(gens) if gens else pd.DataFrame({"concept": self.source_top()})
        out = {
            "head": self.head,
            "backbone_id": self.backbone_id,
            "demo": self.demo,
            "method": self.method,
            "fidelity": clean(self.fidelity),
            "split": self.split,
            "source": self.source,
            "top_k": self.top_k,
            "source_top": [
                {"concept": c, "importance": clean(v)}
                for c, v in zip(cmp["concept"], cmp.get("source", []), strict=False)
            ],
            "generators": [
                {k: clean(v) for k, v in r.items()} for r in self.table.to_dict(orient="records")
            ],
            "survivors": {
                g: {
                    "survive": [
                        c for c, s in zip(cmp["concept"], cmp[f"{g} survives"], strict=True) if s
                    ],
                    "silent": [
                        c
                        for c, s in zip(cmp["concept"], cmp[f"{g} survives"], strict=True)
                        if not s
                    ],
                }
                for g in gens
            },
            "notes": self.notes,
        }
        if self.demo:
            out["banner"] = DEMO_BANNER
        return out


def _aligned(workspace, backbone_id: str, tap: str):
    """Labelled images with projected embeddings, and their ``tap`` embeddings in the same
    order (images lacking the tap are left out)."""
    meta, x_proj = workspace.dataset(backbone_id, "projected")
    if meta.empty:
        raise SurvivalError(
            f"{workspace.path}: no labelled images with projected embeddings of {backbone_id!r}"
        )
    if tap == "projected":
        return meta, x_proj, x_proj
    have = workspace.embedded_hashes(backbone_id, tap)
    keep = meta["hash"].isin(have).to_numpy()
    meta, x_proj = meta[keep].reset_index(drop=True), x_proj[keep]
    _, x_tap = workspace.load_embeddings(backbone_id, tap, meta["hash"].tolist())
    return meta, x_proj, x_tap


def workspace_survival(
    workspace,
    head,
    *,
    split: str | None = "test",
    source_split: str | None = None,
    top: int = DEFAULT_TOP_K,
    backbone_id: str | None = None,
    vocabulary=None,
    pairing: str = "shared",
    encoder=None,
) -> SurvivalResult:
    """Survival of ``head``'s explanations on every generator of ``split`` of a workspace.

    ``source_split``: the images whose diagnostic importance is the head's reference; default
    the split the head was trained on (from its card) when the workspace has it, else the
    evaluated images pooled over all generators. ``split`` None or empty means all images.
    AP per generator is ``detector.metrics.per_generator_ap`` (``pairing``, no bootstrap).
    """

    vocab = load_vocabulary(vocabulary or DEFAULT_VOCABULARY)
    backbone_id = projected_backbone(workspace, backbone_id, head)
    if hasattr(head, "check_compatible"):
        head.check_compatible(backbone_id)
    meta, x_proj, x_tap = _aligned(workspace, backbone_id, head.tap)
    notes = []
    if is_concept_model(head):
        head, note = _named(head, vocab)
        notes += [note] if note else []
        names = list(head.concept_names_)
        contributions = head.contributions(x_proj)
        method, fidelity = "exact", 1.0
    else:
        directions = resolve_directions(workspace, backbone_id, vocab, encoder=encoder)
        names = list(vocab.ids)
        surrogate = workspace_surrogate(
            workspace, head, backbone_id, directions, names, vocabulary_hash=vocab.hash
        )
        contributions = surrogate.contributions(concept_scores(x_proj, directions))
        method, fidelity = "lasso surrogate", surrogate.fidelity
        if fidelity is None or not np.isfinite(fidelity):
            fidelity = None
    logits = np.asarray(head.decision_function(x_tap), dtype=np.float64)

    split_mask = np.ones(len(meta), dtype=bool)
    split_name = "all images"
    if split and (meta["split"] == split).any():
        split_mask = (meta["split"] == split).to_numpy()
        split_name = split
    elif split:
        notes.append(f"no images in split {split!r}: every labelled image is evaluated")

    card = getattr(head, "card_", None) or {}
    trained_on = (card.get("training") or {}).get("train_split")
    wanted = source_split or trained_on
    if wanted and (meta["split"] == wanted).any():
        source_mask = (meta["split"] == wanted).to_numpy()
        source_name = f"split {wanted!r}" + (
            " (the head's training split)" if not source_split else ""
        )
    else:
        if wanted:
            notes.append(f"no images in split {wanted!r} for the source importance")
        source_mask = split_mask
        source_name = f"{split_name}, all generators pooled"
    y = meta["label"].astype(int).to_numpy()
    source_importance = diagnostic_importance(contributions[source_mask], y[source_mask])

    sub = meta[split_mask].reset_index(drop=True)
    ap = {}
    try:
        group = pairing_groups(sub) if pairing == "matched" else None
        table = per_generator_ap(
            y[split_mask],
            logits[split_mask],
            sub["generator"],
            pairing=pairing,
            group=group,
            n_boot=0,
        )
        ap = {
            str(r.generator): float(r.value)
            for r in table[table["metric"] == "ap"].itertuples(index=False)
        }
    except MetricsError as exc:
        notes.append(f"AP not computed: {exc}")
    rows, vectors = survival_table(contributions[split_mask], sub, source_importance, k=top, ap=ap)
    if rows.empty:
        raise SurvivalError(
            f"{workspace.path}: no real images and named generators in {split_name} to compare"
        )
    return SurvivalResult(
        head=head_summary(head),
        backbone_id=backbone_id,
        names=names,
        method=method,
        fidelity=fidelity,
        split=split_name,
        source=source_name,
        top_k=int(min(top, len(names))),
        source_importance=source_importance,
        table=rows,
        importance=vectors,
        notes=notes,
    )
