"""Interpretation stability: do the explanations of a head stay the same when it is retrained?

A head retrained with another seed (or, for the concept model, another sparsity weight beta)
on the same split may detect as well as before and still explain itself differently. This
module measures how much, in two layers:

- **pure metrics** over already-fitted artefacts (unit-testable without training):

  - orthogonal-head directions are only defined up to order and sign, so two fits are
    compared by matching their rows with the Hungarian algorithm on |cosine|
    (``scipy.optimize.linear_sum_assignment``), flipping each matched row to the sign of its
    partner, and averaging the matched |cosine| (``match_directions``); the rows may also turn
    inside a subspace that stays put, so ``chordal_distance`` compares the spanned subspaces
    (``sqrt(sum sin^2)`` of the principal angles, ``scipy.linalg.subspace_angles``), 0 for the
    same subspace whatever its basis, at most ``sqrt(k)``;
  - per-concept importance vectors (one per fit) are compared by the Jaccard overlap of their
    top-K concepts by |importance|, the Spearman rank correlation of |importance|, and, per
    concept, the share of fits that agree with its majority sign (``sign_agreement``).

- **a workspace runner** (``run_stability``) that retrains a head type N times with the
  project's own trainers (``detector.train.train_head``, with the concept model's directions
  from ``concepts.bottleneck.concept_training_inputs``) on the workspace's
  stored split, computes each fit's concept importance, and stores the result in the
  workspace (namespace ``stability``), where the dashboard reads it.

Concept importance of one fit is the class-mean difference of its per-image concept
contributions on the validation images (mean over synthetic minus mean over real; the
``difference`` column of ``concepts.importance.class_importance``): exact contributions for the
concept model, the lasso surrogate's contributions (``concepts.attribution.fit_surrogate``,
fitted on that fit's logits over all the workspace's images) for linear and orthogonal heads.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import subspace_angles
from scipy.optimize import linear_sum_assignment
from scipy.stats import spearmanr

from concepts.attribution import fit_surrogate, is_concept_model
from concepts.importance import class_importance
from concepts.report import projected_backbone, resolve_directions
from concepts.scores import concept_scores
from concepts.vocabulary import DEFAULT_VOCABULARY, load_vocabulary
from detector.errors import CueLensError
from detector.identity import is_demo_id
from detector.splits import ensure_splits

NAMESPACE = "stability"
DEFAULT_TOP_K = 10


class StabilityError(CueLensError):
    """Stability cannot be measured with what was given."""


# -- directions (orthogonal head) ----------------------------------------------------------


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero); (k, d) float64."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2:
        raise StabilityError(f"expected a (k, d) matrix of directions, got shape {m.shape}")
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(norms > 0, norms, 1.0)


@dataclass(frozen=True)
class DirectionMatch:
    """How the rows of ``b`` pair with the rows of ``a``.

    ``partner[i]``: the row of ``b`` matched to row ``i`` of ``a``; ``sign[i]``: +1 or -1, the
    flip that aligns it; ``abs_cosine[i]``: |cosine| of the pair; ``mean_abs_cosine``: their
    mean (1 = the same directions up to order and sign).
    """

    partner: np.ndarray
    sign: np.ndarray
    abs_cosine: np.ndarray
    mean_abs_cosine: float

    def aligned(self, b: np.ndarray) -> np.ndarray:
        """``b``'s rows reordered and sign-flipped onto ``a``'s (unit length)."""
        return unit_rows(b)[self.partner] * self.sign[:, None]


def match_directions(a: np.ndarray, b: np.ndarray) -> DirectionMatch:
    """Pair the rows of two (k, d) direction matrices to maximise the total |cosine|."""
    ua, ub = unit_rows(a), unit_rows(b)
    if ua.shape != ub.shape:
        raise StabilityError(f"direction matrices differ in shape: {ua.shape} vs {ub.shape}")
    cos = ua @ ub.T
    rows, cols = linear_sum_assignment(-np.abs(cos))
    partner = np.empty(len(rows), dtype=int)
    partner[rows] = cols
    matched = cos[np.arange(len(partner)), partner]
    sign = np.where(matched < 0, -1.0, 1.0)
    abs_cos = np.abs(matched)
    return DirectionMatch(partner, sign, abs_cos, float(abs_cos.mean()))


def chordal_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Distance between the subspaces spanned by the rows of ``a`` and ``b``:
    ``sqrt(sum sin^2(principal angles))``; 0 = the same subspace, ``sqrt(k)`` = orthogonal."""
    ua, ub = unit_rows(a), unit_rows(b)
    angles = subspace_angles(ua.T, ub.T)
    return float(np.sqrt(np.sum(np.sin(angles) ** 2)))


# -- importance vectors (every head) -------------------------------------------------------


def top_k(importance: np.ndarray, k: int) -> set[int]:
    """Indices of the ``k`` largest |importance| (ties broken by position); entries that are
    exactly 0 (or NaN) are never selected, so a fit that uses fewer than ``k`` concepts has a
    smaller set."""
    a = np.nan_to_num(np.abs(np.asarray(importance, dtype=np.float64)).reshape(-1), nan=0.0)
    k = max(0, min(int(k), int((a > 0).sum())))
    return set(np.argsort(-a, kind="stable")[:k].tolist())


def jaccard(a: set, b: set) -> float:
    """|a & b| / |a | b|; 1 for two empty sets."""
    union = a | b
    return 1.0 if not union else len(a & b) / len(union)


def spearman_abs(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of |a| and |b| over the concepts that are not exactly 0 in
    both (a lasso surrogate sets most weights to 0, and ties shared by both vectors would
    inflate the correlation); NaN when fewer than two remain or either is constant."""
    x = np.abs(np.asarray(a, dtype=np.float64)).reshape(-1)
    y = np.abs(np.asarray(b, dtype=np.float64)).reshape(-1)
    used = (x != 0) | (y != 0)
    x, y = x[used], y[used]
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def sign_agreement(importances: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per concept: (number of fits that share the majority sign, the majority sign).

    Signs are -1, 0 (importance exactly 0, e.g. dropped by the lasso) and +1; a concept
    pushed towards synthetic in every fit has count = number of fits and sign +1.
    """
    signs = np.sign(np.vstack([np.asarray(v, dtype=np.float64).reshape(-1) for v in importances]))
    counts = np.stack([(signs == s).sum(axis=0) for s in (-1.0, 0.0, 1.0)])  # (3, Q)
    best = counts.argmax(axis=0)
    return counts.max(axis=0), np.array([-1, 0, 1])[best]


def pairwise(items: Sequence, measure: Callable) -> dict:
    """``measure`` over every unordered pair of ``items``: mean, min, max, pairs (NaNs kept
    out of the summary and counted)."""
    values = [measure(x, y) for x, y in itertools.combinations(items, 2)]
    if not values:
        raise StabilityError("stability needs at least two fits")
    arr = np.asarray(values, dtype=np.float64)
    ok = arr[np.isfinite(arr)]
    return {
        "mean": float(ok.mean()) if ok.size else None,
        "min": float(ok.min()) if ok.size else None,
        "max": float(ok.max()) if ok.size else None,
        "pairs": len(values),
        "undefined_pairs": int((~np.isfinite(arr)).sum()),
    }


def importance_stability(
    importances: Sequence[np.ndarray], names: Sequence[str], k: int = DEFAULT_TOP_K
) -> dict:
    """Summary and per-concept stability of N importance vectors over the same concepts.

    Returns ``{"top_k": k, "top_k_jaccard": pairwise summary, "spearman_abs": pairwise summary,
    "concepts": [{concept, mean_importance, sign, same_sign, fits, in_top_k}, ...]}`` with
    concepts sorted by |mean importance|.
    """
    vecs = [np.asarray(v, dtype=np.float64).reshape(-1) for v in importances]
    if len(vecs) < 2:
        raise StabilityError("stability needs at least two fits")
    q = len(names)
    if any(v.size != q for v in vecs):
        raise StabilityError(f"importance vectors of sizes {[v.size for v in vecs]} for {q} names")
    tops = [top_k(v, k) for v in vecs]
    same, sign = sign_agreement(vecs)
    in_top = np.zeros(q, dtype=int)
    for t in tops:
        in_top[list(t)] += 1
    mean = np.mean(vecs, axis=0)
    order = np.argsort(-np.abs(mean), kind="stable")
    return {
        "top_k": int(min(k, q)),
        "top_k_jaccard": pairwise(tops, jaccard),
        "spearman_abs": pairwise(vecs, spearman_abs),
        "concepts": [
            {
                "concept": str(names[i]),
                "mean_importance": float(mean[i]),
                "sign": int(sign[i]),
                "same_sign": int(same[i]),
                "fits": len(vecs),
                "in_top_k": int(in_top[i]),
            }
            for i in order
        ],
    }


def direction_stability(matrices: Sequence[np.ndarray]) -> dict:
    """Matched |cosine| and subspace chordal distance over every pair of direction matrices."""
    return {
        "k": int(np.asarray(matrices[0]).shape[0]),
        "matched_abs_cosine": pairwise(
            matrices, lambda a, b: match_directions(a, b).mean_abs_cosine
        ),
        "chordal_distance": pairwise(matrices, chordal_distance),
        "max_chordal_distance": float(math.sqrt(np.asarray(matrices[0]).shape[0])),
    }


def badge(entry: dict) -> str:
    """A concept's stability in words, e.g. ``same sign in 5 of 5 fits, top-10 in 4``."""
    text = f"same sign in {entry['same_sign']} of {entry['fits']} fits"
    return text + (f", top-{entry.get('top_k')} in {entry['in_top_k']}" if "top_k" in entry else "")


def summary_line(result: dict) -> str:
    """One line for a stored result, e.g. ``top-10 overlap 0.82 across 5 seeds``."""
    group = result["groups"][0]
    jac = group["importance"]["top_k_jaccard"]["mean"]
    rho = group["importance"]["spearman_abs"]["mean"]
    line = (
        f"top-{group['importance']['top_k']} overlap "
        f"{'n/a' if jac is None else format(jac, '.2f')} across {len(group['fits'])} "
        f"{group['varied']}s, Spearman of |importance| "
        f"{'n/a' if rho is None else format(rho, '.2f')}"
    )
    directions = group.get("directions")
    if directions:
        cos = directions["matched_abs_cosine"]["mean"]
        dist = directions["chordal_distance"]["mean"]
        line += f"; directions: matched |cos| {cos:.2f}, subspace distance {dist:.2f}"
    return line


# -- retraining on a workspace -------------------------------------------------------------


@dataclass
class Fit:
    """One retrained head: what was varied, its concept importance, its directions."""

    seed: int
    beta: float | None
    importance: np.ndarray
    directions: np.ndarray | None = None
    fidelity: float | None = None
    validation_map: float | None = None
    extra: dict = field(default_factory=dict)


def fit_importance(workspace, head, backbone_id: str, vocabulary, names, directions, *, split):
    """(class-mean difference of contributions on ``split``, fidelity) of one fitted head."""
    meta, x_proj = workspace.dataset(backbone_id, "projected", split=split)
    if meta.empty:
        meta, x_proj = workspace.dataset(backbone_id, "projected")
    labels = meta["label"].astype(int).to_numpy()
    if is_concept_model(head):
        contributions = head.contributions(x_proj)
        names = list(head.concept_names_)
        fidelity = 1.0
    else:
        all_meta, all_proj = workspace.dataset(backbone_id, "projected")
        tap_meta, x_tap = workspace.dataset(backbone_id, head.tap)
        position = {h: i for i, h in enumerate(tap_meta["hash"])}
        keep = [i for i, h in enumerate(all_meta["hash"]) if h in position]
        rows = [position[h] for h in all_meta["hash"].iloc[keep]]
        logits = head.decision_function(x_tap[rows])
        surrogate = fit_surrogate(
            concept_scores(all_proj[keep], directions), logits, names, directions
        )
        contributions = surrogate.contributions(concept_scores(x_proj, directions))
        fidelity = surrogate.fidelity
    table = class_importance(contributions, labels, names).set_index("concept")
    return table.loc[list(names), "difference"].to_numpy(dtype=np.float64), names, fidelity


def _validation_map(validation: dict) -> float | None:
    """mAP on validation from a card (``metrics.mAP.value`` of linear and orthogonal heads,
    ``map`` of the concept model), or None."""
    value = ((validation.get("metrics") or {}).get("mAP") or {}).get("value")
    if value is None:
        value = validation.get("map")
    return None if value is None or not np.isfinite(value) else float(value)


def _key(backbone_id: str, head_type: str) -> str:
    return f"{backbone_id}|{head_type}"


def stored_stability(workspace, backbone_id: str, head_type: str) -> dict | None:
    """The last stability result stored for (backbone, head type), or None."""
    return workspace.get_json(NAMESPACE, _key(backbone_id, head_type))


def run_stability(
    workspace,
    head_type: str = "linear",
    *,
    seeds: int | Sequence[int] = 5,
    betas: Sequence[float] | None = None,
    top: int = DEFAULT_TOP_K,
    backbone_id: str | None = None,
    vocabulary=None,
    params: dict | None = None,
    store: bool = True,
    progress: Callable[[str, float], None] | None = None,
) -> dict:
    """Retrain ``head_type`` once per seed (and per beta for the concept model) on the
    workspace's split and measure how stable its explanations are; stored unless ``store``
    is False. Returns a JSON-ready dict (see the module docstring and ``summary_line``).

    ``seeds``: a count N (seeds 0..N-1) or the seeds themselves. ``betas`` (concept model
    only): one group of N fits per beta, plus an ``across beta`` group of the first seed's fit
    at every beta. ``params`` go to the trainer for every fit.
    """
    import concepts.bottleneck  # noqa: F401  (registers the concept head's inputs for train_head)

    # torch and the head models: loaded only when heads are retrained
    from detector.heads import get_head_type
    from detector.train import resolve_backbone_id, train_head

    seed_list = list(range(int(seeds))) if isinstance(seeds, int) else [int(s) for s in seeds]
    if len(seed_list) < 2:
        raise StabilityError("stability needs at least two seeds (--seeds 2 or more)")
    if betas and head_type != "concept":
        raise StabilityError("--betas varies the concept model's sparsity: use --head concept")
    tap = get_head_type(head_type).tap
    backbone_id = resolve_backbone_id(workspace, tap, backbone_id)
    projected_backbone(workspace, backbone_id)
    vocab = load_vocabulary(vocabulary or DEFAULT_VOCABULARY)
    directions = None
    if head_type != "concept":
        directions = resolve_directions(workspace, backbone_id, vocab)
    split_info = ensure_splits(workspace)
    counts = split_info["counts"]
    eval_split = "val" if counts.get("val") else ("test" if counts.get("test") else None)
    beta_list: list[float | None] = [float(b) for b in betas] if betas else [None]
    runs = [(b, s) for b in beta_list for s in seed_list]
    start = time.perf_counter()
    fits: list[Fit] = []
    names: list[str] = list(vocab.ids)
    for i, (beta, seed) in enumerate(runs):
        if progress is not None:
            label = f"fit {i + 1} of {len(runs)} (seed {seed}" + (
                f", beta {beta:g})" if beta is not None else ")"
            )
            progress(label, i / len(runs))
        fit_params = dict(params or {})
        if beta is not None:
            fit_params["beta"] = beta
        if head_type == "concept" and vocabulary is not None:
            fit_params.setdefault("vocabulary", vocab)
        result = train_head(
            workspace,
            head_type,
            backbone_id=backbone_id,
            seed=seed,
            params=fit_params,
            save=False,
        )
        head = result.head
        importance, names, fidelity = fit_importance(
            workspace, head, backbone_id, vocab, names, directions, split=eval_split
        )
        dirs = None
        if head_type == "orthogonal":
            dirs = np.asarray(head.to_tensors()["directions.weight"], dtype=np.float64)
        validation = result.card.get("validation") or {}
        fits.append(
            Fit(
                seed=seed,
                beta=beta,
                importance=importance,
                directions=dirs,
                fidelity=None if fidelity is None or not np.isfinite(fidelity) else fidelity,
                validation_map=_validation_map(validation),
            )
        )
    if progress is not None:
        progress("measuring", 1.0)

    def group(label: str, members: list[Fit], varied: str) -> dict:
        out = {
            "label": label,
            "varied": varied,
            "fits": [
                {
                    "seed": f.seed,
                    "beta": f.beta,
                    "fidelity": f.fidelity,
                    "validation_map": f.validation_map,
                }
                for f in members
            ],
            "importance": importance_stability([f.importance for f in members], names, top),
        }
        if members[0].directions is not None:
            out["directions"] = direction_stability([f.directions for f in members])
        return out

    groups = []
    for beta in beta_list:
        members = [f for f in fits if f.beta == beta]
        label = "seeds" if beta is None else f"seeds at beta {beta:g}"
        groups.append(group(label, members, "seed"))
    if len(beta_list) > 1:
        first = [next(f for f in fits if f.beta == b) for b in beta_list]
        groups.append(group(f"betas at seed {seed_list[0]}", first, "beta"))
    doc = {
        "backbone_id": backbone_id,
        "head_type": head_type,
        "demo": is_demo_id(backbone_id),
        "vocabulary": {"name": vocab.name, "hash": vocab.hash, "n_concepts": len(names)},
        "seeds": seed_list,
        "betas": betas and [float(b) for b in betas],
        "top_k": top,
        "importance_split": eval_split or "all images",
        "importance_definition": "mean contribution on synthetic minus mean on real images "
        + (
            "(exact, concept model)"
            if head_type == "concept"
            else "(lasso surrogate of each fit's logit)"
        ),
        "groups": groups,
        "seconds": round(time.perf_counter() - start, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    doc["summary"] = summary_line(doc)
    if store:
        workspace.put_json(NAMESPACE, _key(backbone_id, head_type), doc)
    return doc


def concept_badges(result: dict, group: int = 0) -> dict[str, str]:
    """Concept id -> its badge text from a stored result (first group: the seeds)."""
    g = result["groups"][group]
    k = g["importance"]["top_k"]
    return {c["concept"]: badge({**c, "top_k": k}) for c in g["importance"]["concepts"]}
