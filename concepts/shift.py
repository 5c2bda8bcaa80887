"""Concept shift between training domains, read from the paper's four released concept models.

The released ``cm_antonyms_{cnnspot,synthbuster,synthclic,combined}`` heads share one
vocabulary of 168 antonym concepts (the released ``antonyms.csv``) and each carries a learned
classifier weight per concept (``W_classifier``, shape (1, 168)): how strongly, and towards
which class, the concept's gated score moves that detector's logit. Comparing the four
vectors shows which cues each training domain's detector relies on, and so why a detector
trained on one family of generators transfers badly to another. No backbone is needed: the
numbers are the released weights themselves.

- per concept and domain: ``importance`` = |w| divided by the largest |w| of that domain
  (domains train to different weight scales), and the sign of w (+: an image nearer the
  concept's positive pole is pushed towards synthetic; a concept score is the cosine with
  the direction positive minus negative pole);
- ``spread``: the standard deviation of a concept's importance over the domains (population
  SD, ddof 0): high when its role differs between domains;
- ``sign_flip``: the concept pushes towards synthetic in one domain and towards real in another;
- ``rank_correlation``: Spearman correlation of |w| between every two domains.

``released_shift()`` fetches and verifies the four checkpoints and the vocabulary through
``detector.released`` (cache, ``CUE_LENS_RELEASED_DIR``, or a download) and returns a
``ConceptShift``; ``concept_shift`` and ``rank_correlation`` are the pure functions behind it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from concepts.vocabulary import load_vocabulary
from detector.errors import CueLensError

DOMAINS = ("cnnspot", "synthbuster", "synthclic", "combined")
HEAD_PREFIX = "cm_antonyms_"
SOURCE_NOTE = (
    "the paper's four released concept models (Willi, Mathys, Graber; MIT licence), "
    "classifier weights as released: real learned weights, not the demo"
)


def json_value(v):
    """A table cell as plain JSON: numpy numbers as Python ones, NaN as None."""
    if isinstance(v, (float, np.floating)):
        return None if math.isnan(float(v)) else float(v)
    if isinstance(v, (np.integer, np.bool_)):
        return v.item()
    return v


class ShiftError(CueLensError):
    """The released concept models cannot be compared."""


def concept_shift(weights: dict[str, np.ndarray], names) -> pd.DataFrame:
    """One row per concept: for each domain ``importance_<d>`` (|w| / max |w| of the domain)
    and ``weight_<d>`` (w as released), then ``spread``, ``sign_flip`` and ``signs``
    (e.g. ``+ + - +`` in domain order). Sorted by ``spread``, largest first."""
    names = [str(n) for n in names]
    if not weights:
        raise ShiftError("no domains to compare")
    df = pd.DataFrame({"concept": names})
    importance = []
    for domain, w in weights.items():
        w = np.asarray(w, dtype=np.float64).reshape(-1)
        if w.size != len(names):
            raise ShiftError(f"domain {domain!r}: {w.size} weights for {len(names)} concepts")
        peak = np.abs(w).max()
        imp = np.abs(w) / peak if peak > 0 else np.zeros_like(w)
        df[f"importance_{domain}"] = imp
        df[f"weight_{domain}"] = w
        importance.append(imp)
    stack = np.vstack(importance)
    signs = np.sign(
        np.vstack([np.asarray(w, dtype=np.float64).reshape(-1) for w in weights.values()])
    )
    df["spread"] = stack.std(axis=0)
    df["sign_flip"] = (signs > 0).any(axis=0) & (signs < 0).any(axis=0)
    df["signs"] = [
        " ".join("+" if s > 0 else "-" if s < 0 else "0" for s in col) for col in signs.T
    ]
    order = np.argsort(-df["spread"].to_numpy(), kind="stable")
    return df.iloc[order].reset_index(drop=True)


def rank_correlation(weights: dict[str, np.ndarray]) -> pd.DataFrame:
    """Spearman rank correlation of |w| between every two domains (domains x domains)."""
    domains = list(weights)
    m = pd.DataFrame(index=pd.Index(domains, name="domain"), columns=domains, dtype=float)
    for a in domains:
        for b in domains:
            x = np.abs(np.asarray(weights[a], dtype=np.float64).reshape(-1))
            y = np.abs(np.asarray(weights[b], dtype=np.float64).reshape(-1))
            m.loc[a, b] = 1.0 if a == b else float(spearmanr(x, y).statistic)
    return m


@dataclass
class ConceptShift:
    """The released comparison: per-concept table, rank correlations and concept poles.

    ``poles``: concept id -> (positive pole, negative pole, category) from the released
    vocabulary (empty when the vocabulary could not be had; the concepts are then
    ``concept_<i>``). ``sources``: domain -> the verified checkpoint file read.
    """

    domains: list[str]
    table: pd.DataFrame
    correlation: pd.DataFrame
    poles: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def weights(self, domain: str) -> pd.Series:
        """Signed released weights of one domain, indexed by concept."""
        return self.table.set_index("concept")[f"weight_{domain}"]

    def top(self, domain: str, k: int = 10) -> pd.DataFrame:
        """The ``k`` concepts with the largest importance in ``domain``: concept, importance,
        weight, ``towards`` (``synthetic`` or ``real``: the class an image nearer the positive
        pole is pushed towards, the sign of w), positive and negative pole."""
        col = f"importance_{domain}"
        df = self.table.sort_values(col, ascending=False, kind="stable").head(k)
        weight = df[f"weight_{domain}"].to_numpy()
        return pd.DataFrame(
            {
                "concept": df["concept"].to_numpy(),
                "importance": df[col].to_numpy(),
                "weight": weight,
                "towards": np.where(weight > 0, "synthetic", "real"),
                "positive": [self.poles.get(c, ("", "", ""))[0] for c in df["concept"]],
                "negative": [self.poles.get(c, ("", "", ""))[1] for c in df["concept"]],
            }
        )

    def side_by_side(self, k: int = 10) -> pd.DataFrame:
        """Rank 1..k of every domain in columns: ``<domain>`` (concept with its sign) and
        ``<domain> poles`` (``positive ↔ negative``)."""
        out = {"rank": list(range(1, k + 1))}
        for d in self.domains:
            top = self.top(d, k)
            out[d] = [
                f"{'+' if w > 0 else '-'} {c}"
                for c, w in zip(top["concept"], top["weight"], strict=True)
            ]
            out[f"{d} poles"] = [
                f"{p} ↔ {n}" for p, n in zip(top["positive"], top["negative"], strict=True)
            ]
        return pd.DataFrame(out)

    def to_dict(self, top: int | None = 20) -> dict:
        """JSON-ready: source, domains, rank correlations, the most shifted concepts and each
        domain's top concepts (``top`` rows; None = all)."""

        clean = json_value

        def records(df: pd.DataFrame) -> list[dict]:
            rows = df if top is None else df.head(top)
            return [{k: clean(v) for k, v in r.items()} for r in rows.to_dict(orient="records")]

        shifted = self.table.copy()
        shifted["positive"] = [self.poles.get(c, ("", "", ""))[0] for c in shifted["concept"]]
        shifted["negative"] = [self.poles.get(c, ("", "", ""))[1] for c in shifted["concept"]]
        k = len(self.table) if top is None else top
        return {
            "source": SOURCE_NOTE,
            "demo": False,
            "domains": self.domains,
            "n_concepts": len(self.table),
            "checkpoints": self.sources,
            "rank_correlation": {
                a: {b: clean(self.correlation.loc[a, b]) for b in self.domains}
                for a in self.domains
            },
            "most_shifted": records(shifted),
            "top_by_domain": {d: records(self.top(d, k)) for d in self.domains},
            "notes": self.notes,
        }


def released_shift(
    domains=DOMAINS, *, download: bool | None = None, cache_dir=None
) -> ConceptShift:
    """Fetch, verify and compare the released concept models of ``domains``.

    Raises ``ReleasedHeadError`` (a ``CueLensError``) saying where to put the files when one
    of them cannot be had offline.
    """
    # the released heads' registry loads torch and the head models: only when shift is asked
    from detector.released import (
        RELEASED_VOCABULARY,
        fetch_released,
        read_checkpoint,
        tensors_from_state,
    )

    weights, sources = {}, {}
    n = None
    for domain in domains:
        path = fetch_released(HEAD_PREFIX + domain, download=download, cache_dir=cache_dir)
        model_type, state = read_checkpoint(path)
        if model_type != "concept":
            raise ShiftError(f"{path}: a {model_type!r} checkpoint, not a concept model")
        tensors = tensors_from_state(model_type, state, path)
        weights[domain] = tensors["W_classifier.weight"].reshape(-1).astype(np.float64)
        sources[domain] = str(path)
        n = weights[domain].size if n is None else n
        if weights[domain].size != n:
            raise ShiftError(f"{path}: {weights[domain].size} concepts, the others have {n}")
    notes = []
    poles: dict[str, tuple[str, str, str]] = {}
    try:
        vocab = load_vocabulary(
            fetch_released(RELEASED_VOCABULARY, download=download, cache_dir=cache_dir)
        )
        if len(vocab) != n:
            raise ShiftError(f"the released vocabulary has {len(vocab)} concepts, the heads {n}")
        names = list(vocab.ids)
        poles = {
            c: (vocab.positive[i], vocab.negative[i], vocab.category[i])
            for i, c in enumerate(names)
        }
    except CueLensError as exc:
        names = [f"concept_{i}" for i in range(n or 0)]
        notes.append(f"concept names are positional: {str(exc).splitlines()[0]}")
    return ConceptShift(
        domains=list(domains),
        table=concept_shift(weights, names),
        correlation=rank_correlation(weights),
        poles=poles,
        sources=sources,
        notes=notes,
    )
