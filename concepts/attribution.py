"""Per-image and global attributions of a detector's logit to named concepts.

Two ways, one result type (:class:`Attribution`, where ``baseline + sum(contributions) +
residual == logit`` holds exactly):

- the concept bottleneck explains itself: contribution of concept q is ``s_q * g_q * w_q``,
  the baseline is the classifier bias, the residual is 0 and the fidelity is 1 by construction;
- any other head (linear probe, orthogonal head, or anything with ``decision_function``) gets a
  *surrogate*: a lasso (cross-validated alpha, on standardised concept scores) from the concept
  scores of the projected embeddings to the head's logit on the same images. Its R^2 on
  held-out images is the **fidelity** of the explanation: the share of the head's logit
  variance the concepts account for. Never show concept bars without it. Per image, the
  contributions are ``w_q * (s_q - mean s_q)`` (relative to the average workspace image), the
  baseline is the surrogate's prediction for that average image, and the residual is the part
  of the logit *not explained by concepts*.

An explanation must be a function of (head, image) only: what other people upload to a
shared workspace must not change it. So a surrogate is fitted once on a fixed **reference
set** (the head's training split when the head was trained in this workspace, else the
workspace's labelled images, a pinned sample of at most ``REFERENCE_MAX`` of them; unlabelled
uploads never enter it), stored in the workspace (namespace ``concept_surrogates``) per
backbone, head (fingerprint of its tensors), vocabulary hash and directions, with a version
number and a description of its reference set, and refitted only on request (``refit=True``,
``python -m detector concepts --refit``, the dashboard's "Refit" button), which bumps the
version.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from concepts.scores import concept_scores
from detector.errors import CueLensError

SURROGATE_NAMESPACE = "concept_surrogates"
EXACT = "exact"
SURROGATE = "lasso surrogate"
REFERENCE_MAX = 5000  # images in a surrogate's reference set at most (a pinned sample)


class AttributionError(CueLensError):
    """An attribution cannot be computed (too few images, missing embeddings, ...)."""


# -- the result of one image -----------------------------------------------------------------


@dataclass
class Attribution:
    """Why one image got its logit: ``baseline + table.contribution.sum() + residual == logit``.

    ``table`` has one row per concept, sorted by |contribution| (largest first), with columns
    ``concept, score, reference, gate, weight, contribution``. Concept model:
    ``contribution = score * gate * weight`` and ``reference`` is 0. Surrogate: ``contribution =
    weight * (score - reference)``, ``reference`` being the concept's mean score over the
    workspace, and ``gate`` is NaN.
    ``fidelity`` is 1.0 for the concept model (exact) and the surrogate's held-out R^2 otherwise.
    """

    logit: float
    baseline: float
    residual: float
    fidelity: float
    method: str
    table: pd.DataFrame
    name: str | None = None
    source: dict = field(default_factory=dict)  # the surrogate's version and reference set

    @property
    def probability(self) -> float:
        """sigmoid(logit) = P(synthetic)."""
        return 0.5 * (1.0 + math.tanh(0.5 * self.logit))

    @property
    def explained(self) -> float:
        """The part of the logit carried by concepts (``logit - baseline - residual``)."""
        return float(self.table["contribution"].sum())

    def to_dict(self, top: int | None = None) -> dict:
        """JSON-ready summary with the ``top`` largest contributions (all when None)."""
        rows = self.table if top is None else self.table.head(top)
        return {
            "name": self.name,
            "logit": self.logit,
            "probability": self.probability,
            "method": self.method,
            "fidelity": self.fidelity,
            "baseline": self.baseline,
            "explained_by_concepts": self.explained,
            "not_explained_by_concepts": self.residual,
            "surrogate": {k: self.source[k] for k in ("version", "reference") if k in self.source}
            or None,
            "concepts": [
                {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                for r in rows.to_dict(orient="records")
            ],
        }


def _table(names, scores, weights, contributions, gates=None, reference=None) -> pd.DataFrame:
    n = len(names)
    df = pd.DataFrame(
        {
            "concept": list(names),
            "score": np.asarray(scores, dtype=np.float64),
            "reference": np.zeros(n) if reference is None else np.asarray(reference, float),
            "gate": np.full(n, np.nan) if gates is None else np.asarray(gates, float),
            "weight": np.asarray(weights, dtype=np.float64),
            "contribution": np.asarray(contributions, dtype=np.float64),
        }
    )
    order = np.argsort(-np.abs(df["contribution"].to_numpy()), kind="stable")
    return df.iloc[order].reset_index(drop=True)


# -- the concept model: exact ----------------------------------------------------------------


def attribute_concept_model(head, projected: np.ndarray, names=None) -> list[Attribution]:
    """Exact attributions of a ``ConceptBottleneck`` for projected embeddings (N, dim) or (dim,)."""
    x = np.atleast_2d(np.asarray(projected, dtype=np.float32))
    scores, gates, contributions = head.concept_terms(x)
    logits = contributions.sum(axis=1) + head.b_classifier_
    out = []
    for i in range(x.shape[0]):
        out.append(
            Attribution(
                logit=float(logits[i]),
                baseline=float(head.b_classifier_),
                residual=0.0,
                fidelity=1.0,
                method=EXACT,
                table=_table(
                    head.concept_names_, scores[i], head.w_classifier_, contributions[i], gates[i]
                ),
                name=None if names is None else names[i],
            )
        )
    return out


# -- the surrogate for other heads -----------------------------------------------------------


@dataclass
class ConceptSurrogate:
    """A sparse linear model from concept scores to a head's logit, with its fidelity.

    ``predict(s) = intercept + sum_q coef[q] * (s[q] - score_means[q])``. ``fidelity`` is the
    R^2 on ``n_heldout`` images not used to fit (NaN when the logit does not vary).
    """

    concept_names: list[str]
    directions: np.ndarray
    coef: np.ndarray
    score_means: np.ndarray
    score_stds: np.ndarray
    intercept: float
    alpha: float
    fidelity: float
    r2_train: float
    n_train: int
    n_heldout: int
    info: dict = field(default_factory=dict)

    def scores(self, projected: np.ndarray) -> np.ndarray:
        """Concept scores (N, Q) of projected embeddings with the surrogate's directions."""
        return concept_scores(projected, self.directions)

    def contributions(self, scores: np.ndarray) -> np.ndarray:
        """Per-concept contributions (N, Q) relative to the average image."""
        return (np.atleast_2d(scores).astype(np.float64) - self.score_means) * self.coef

    def predict(self, scores: np.ndarray) -> np.ndarray:
        """The surrogate's logit (N,)."""
        return self.intercept + self.contributions(scores).sum(axis=1)

    def weights_frame(self) -> pd.DataFrame:
        """Concept weights, sorted by |standardised weight| (logit change per score SD)."""
        df = pd.DataFrame(
            {
                "concept": self.concept_names,
                "weight": self.coef,
                "standardized_weight": self.coef * self.score_stds,
            }
        )
        order = np.argsort(-np.abs(df["standardized_weight"].to_numpy()), kind="stable")
        return df.iloc[order].reset_index(drop=True)

    def to_doc(self) -> dict:
        """JSON document of everything but the directions."""
        return {
            "concept_names": list(self.concept_names),
            "coef": self.coef.tolist(),
            "score_means": self.score_means.tolist(),
            "score_stds": self.score_stds.tolist(),
            "intercept": self.intercept,
            "alpha": self.alpha,
            "fidelity": None if math.isnan(self.fidelity) else self.fidelity,
            "r2_train": None if math.isnan(self.r2_train) else self.r2_train,
            "n_train": self.n_train,
            "n_heldout": self.n_heldout,
            "info": self.info,
        }

    @classmethod
    def from_doc(cls, doc: dict, directions: np.ndarray) -> ConceptSurrogate:
        """Inverse of ``to_doc``."""

        def num(v):
            return float("nan") if v is None else float(v)

        return cls(
            concept_names=list(doc["concept_names"]),
            directions=np.asarray(directions, dtype=np.float32),
            coef=np.asarray(doc["coef"], dtype=np.float64),
            score_means=np.asarray(doc["score_means"], dtype=np.float64),
            score_stds=np.asarray(doc["score_stds"], dtype=np.float64),
            intercept=float(doc["intercept"]),
            alpha=float(doc["alpha"]),
            fidelity=num(doc["fidelity"]),
            r2_train=num(doc["r2_train"]),
            n_train=int(doc["n_train"]),
            n_heldout=int(doc["n_heldout"]),
            info=dict(doc.get("info") or {}),
        )


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot <= 1e-12 * max(len(y), 1):
        return float("nan")
    return 1.0 - float(np.sum((y - pred) ** 2)) / ss_tot


def fit_surrogate(
    scores: np.ndarray,
    logits: np.ndarray,
    concept_names,
    directions: np.ndarray | None = None,
    *,
    heldout_fraction: float = 0.25,
    cv: int = 5,
    n_alphas: int = 40,
    max_images: int | None = 50_000,
    random_state: int = 0,
) -> ConceptSurrogate:
    """Fit the lasso surrogate ``logit ~ concept scores`` and measure its held-out R^2.

    ``scores`` (N, Q), ``logits`` (N,). A random ``heldout_fraction`` of the images (at most
    ``max_images`` are used, sampled with ``random_state``) is kept out of the fit; alpha is
    chosen by ``cv``-fold cross-validation on the rest, on standardised scores.
    """
    from sklearn.linear_model import LassoCV
    from sklearn.model_selection import KFold

    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(logits, dtype=np.float64).reshape(-1)
    names = [str(n) for n in concept_names]
    if s.ndim != 2 or s.shape[0] != y.shape[0] or s.shape[1] != len(names):
        raise AttributionError(
            f"scores {s.shape}, logits {y.shape} and {len(names)} concept names do not match"
        )
    rng = np.random.default_rng(random_state)
    if max_images is not None and len(y) > max_images:
        keep = np.sort(rng.choice(len(y), size=max_images, replace=False))
        s, y = s[keep], y[keep]
    n = len(y)
    n_heldout = round(heldout_fraction * n)
    if n - n_heldout < 2 * cv or n_heldout < 5:
        raise AttributionError(
            f"{n} images are too few to fit and check a concept surrogate "
            f"(need at least {max(2 * cv, 5) + 5}); embed more images first"
        )
    perm = rng.permutation(n)
    test, train = perm[:n_heldout], perm[n_heldout:]
    means = s[train].mean(axis=0)
    stds = s[train].std(axis=0)
    stds = np.where(stds > 1e-12, stds, 1.0)
    z_train = (s[train] - means) / stds
    lasso = LassoCV(
        alphas=n_alphas,
        cv=KFold(cv, shuffle=True, random_state=random_state),
        max_iter=5000,
        n_jobs=1,
    )
    lasso.fit(z_train, y[train])
    coef = lasso.coef_ / stds
    surrogate = ConceptSurrogate(
        concept_names=names,
        directions=np.zeros((len(names), 0), np.float32) if directions is None else directions,
        coef=coef,
        score_means=means,
        score_stds=stds,
        intercept=float(lasso.intercept_),
        alpha=float(lasso.alpha_),
        fidelity=float("nan"),
        r2_train=float("nan"),
        n_train=len(train),
        n_heldout=len(test),
    )
    surrogate.r2_train = _r2(y[train], surrogate.predict(s[train]))
    surrogate.fidelity = _r2(y[test], surrogate.predict(s[test]))
    return surrogate


def attribute_with_surrogate(
    surrogate: ConceptSurrogate, scores: np.ndarray, logits: np.ndarray, names=None
) -> list[Attribution]:
    """Surrogate attributions: contributions, baseline and the unexplained residual per image."""
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    y = np.asarray(logits, dtype=np.float64).reshape(-1)
    contributions = surrogate.contributions(s)
    residual = y - surrogate.intercept - contributions.sum(axis=1)
    return [
        Attribution(
            logit=float(y[i]),
            baseline=surrogate.intercept,
            residual=float(residual[i]),
            fidelity=surrogate.fidelity,
            method=SURROGATE,
            table=_table(
                surrogate.concept_names,
                s[i],
                surrogate.coef,
                contributions[i],
                reference=surrogate.score_means,
            ),
            name=None if names is None else names[i],
            source=dict(surrogate.info),
        )
        for i in range(s.shape[0])
    ]


# -- heads and workspaces ----------------------------------------------------------------------


def is_concept_model(head) -> bool:
    """True for heads that explain themselves (the concept bottleneck)."""
    return getattr(head, "head_type", None) == "concept" and hasattr(head, "concept_terms")


def head_fingerprint(head) -> str:
    """Stable hash (16 hex digits) of a head's type and tensors: same weights, same print."""
    h = hashlib.sha256(str(getattr(head, "head_type", type(head).__name__)).encode())
    for name, arr in sorted(head.to_tensors().items()):
        a = np.ascontiguousarray(arr, dtype=np.float32)
        h.update(f"{name}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def directions_fingerprint(directions: np.ndarray) -> str:
    """Stable hash (12 hex digits) of a direction matrix."""
    a = np.ascontiguousarray(directions, dtype=np.float32)
    return hashlib.sha256(f"{a.shape}".encode() + a.tobytes()).hexdigest()[:12]


def surrogate_key(backbone_id: str, head, vocabulary_hash: str, directions: np.ndarray) -> str:
    """Cache key of a workspace surrogate."""
    return (
        f"{backbone_id}|{head_fingerprint(head)}|{vocabulary_hash}|"
        f"{directions_fingerprint(directions)}"
    )


def paired_hashes(workspace, backbone_id: str, tap: str, *, hashes=None) -> list[str]:
    """Sorted hashes of the images that have both ``tap`` and projected embeddings."""
    have = workspace.embedded_hashes(backbone_id, "projected")
    if tap != "projected":
        have &= workspace.embedded_hashes(backbone_id, tap)
    if hashes is not None:
        have &= set(hashes)
    if not have:
        raise AttributionError(
            f"{workspace.path}: no images with both {tap} and projected embeddings for backbone "
            f"{backbone_id!r}; run `python -m detector embed` with that backbone"
        )
    return sorted(have)


def paired_embeddings(
    workspace, backbone_id: str, tap: str, *, hashes=None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(hashes, head-tap matrix, projected matrix) for images that have both taps."""
    order = paired_hashes(workspace, backbone_id, tap, hashes=hashes)
    _, x_tap = workspace.load_embeddings(backbone_id, tap, order)
    if tap == "projected":
        return order, x_tap, x_tap
    _, x_proj = workspace.load_embeddings(backbone_id, "projected", order)
    return order, x_tap, x_proj


def _same_folder(a, b) -> bool:
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except (OSError, TypeError, ValueError):
        return False


def reference_set(workspace, head, backbone_id: str) -> tuple[list[str], str]:
    """The images a head's surrogate is fitted on, and a sentence saying which.

    The head's training split when its card says it was trained in this workspace; else the
    workspace's labelled images; else (a workspace of uploads only) every embedded image. All
    need both the head's tap and the projected tap; at most ``REFERENCE_MAX`` are kept (the
    first by hash: a fixed, content-defined sample). Unlabelled uploads join only in the last
    case, and once fitted the surrogate is kept, so later uploads never change it.
    """
    tap = getattr(head, "tap", "projected")
    have = set(paired_hashes(workspace, backbone_id, tap))
    images = workspace.images(with_errors=False)
    images = images[images["hash"].isin(have)]
    labelled = images[images["label"].notna()]
    name = Path(str(workspace.path)).name
    training = (getattr(head, "card_", None) or {}).get("training") or {}
    split = training.get("train_split")
    chosen, what = None, ""
    if split and training.get("workspace") and _same_folder(training["workspace"], workspace.path):
        in_split = labelled[labelled["split"] == split]
        if len(in_split):
            chosen, what = (
                in_split,
                f"images of the head's training data (split {split!r} of {name})",
            )
    if chosen is None and len(labelled):
        chosen, what = labelled, f"labelled images of {name}"
    if chosen is None:
        chosen, what = images, f"images of {name} (none labelled)"
    hashes = sorted(chosen["hash"].tolist())
    if len(hashes) > REFERENCE_MAX:
        return hashes[:REFERENCE_MAX], f"a pinned sample of {REFERENCE_MAX:,} {what}"
    return hashes, f"{len(hashes):,} {what}"


def stored_surrogate(
    workspace, head, backbone_id: str, directions: np.ndarray, *, vocabulary_hash: str = ""
) -> ConceptSurrogate | None:
    """The surrogate kept in the workspace for this head, vocabulary and directions, if any."""
    key = surrogate_key(backbone_id, head, vocabulary_hash, directions)
    doc = workspace.get_json(SURROGATE_NAMESPACE, key)
    if doc is None or "version" not in (doc.get("info") or {}):
        return None  # none, or one from before reference sets (fitted on uploads too)
    return ConceptSurrogate.from_doc(doc, directions)


def workspace_surrogate(
    workspace,
    head,
    backbone_id: str,
    directions: np.ndarray,
    concept_names,
    *,
    vocabulary_hash: str = "",
    refit: bool = False,
    **fit_options,
) -> ConceptSurrogate:
    """The lasso surrogate of ``head``, fitted once on its reference set and kept.

    The stored surrogate is returned whatever was added to the workspace since; it is fitted
    when there is none (or ``refit``), on ``reference_set`` (see there), and stored with
    ``info``: ``version`` (1, then one more per refit), ``reference`` (which images),
    ``reference_digest`` (SHA-256 prefix of their hashes), ``n_images`` and ``fitted_at``.
    ``fit_options`` go to ``fit_surrogate``.
    """
    check = getattr(head, "check_compatible", None)
    if check is not None:
        check(backbone_id)
    key = surrogate_key(backbone_id, head, vocabulary_hash, directions)
    previous = workspace.get_json(SURROGATE_NAMESPACE, key)
    if not refit:
        found = stored_surrogate(
            workspace, head, backbone_id, directions, vocabulary_hash=vocabulary_hash
        )
        if found is not None:
            return found
    hashes, reference = reference_set(workspace, head, backbone_id)
    hashes, x_tap, x_proj = paired_embeddings(workspace, backbone_id, head.tap, hashes=hashes)
    if check is not None:
        check(backbone_id, x_tap.shape[1])
    logits = np.asarray(head.decision_function(x_tap), dtype=np.float64)
    surrogate = fit_surrogate(
        concept_scores(x_proj, directions), logits, concept_names, directions, **fit_options
    )
    old_version = ((previous or {}).get("info") or {}).get("version") or 0
    surrogate.info = {
        "version": int(old_version) + 1,
        "reference": reference,
        "reference_digest": hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:12],
        "n_images": len(hashes),
        "fitted_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "backbone_id": backbone_id,
        "head_type": getattr(head, "head_type", None),
        "head_fingerprint": head_fingerprint(head),
        "vocabulary_hash": vocabulary_hash,
    }
    workspace.put_json(SURROGATE_NAMESPACE, key, surrogate.to_doc())
    return surrogate


def surrogate_caption(info: dict) -> str:
    """One line naming a surrogate's version and reference set (for captions and CLI)."""
    if not info or "version" not in info:
        return ""
    when = f", fitted {info['fitted_at']}" if info.get("fitted_at") else ""
    return f"surrogate v{info['version']} on {info.get('reference', '?')}{when}"


def attribute(
    head, *, projected, features=None, surrogate: ConceptSurrogate | None = None, names=None
) -> list[Attribution]:
    """Attributions for N images: exact for the concept model, by ``surrogate`` otherwise.

    ``projected`` (N, dim) are the images' projected embeddings; ``features`` their embeddings
    at ``head.tap`` (default ``projected``).
    """
    if is_concept_model(head):
        return attribute_concept_model(head, projected, names)
    if surrogate is None:
        raise AttributionError(
            f"a {getattr(head, 'head_type', 'detector')} head is explained through a concept "
            f"surrogate fitted on a workspace; pass one (see workspace_surrogate)"
        )
    if features is None and getattr(head, "tap", "projected") != "projected":
        raise AttributionError(f"this head reads the {head.tap} tap: pass features=")
    feats = np.atleast_2d(projected if features is None else features)
    logits = head.decision_function(feats)
    return attribute_with_surrogate(surrogate, surrogate.scores(projected), logits, names)
