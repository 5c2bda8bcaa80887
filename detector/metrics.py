"""Metrics a reviewer can trust: per-generator AP and mAP, pooled AP, AUROC, accuracies at named
thresholds, validation-chosen thresholds, and stratified bootstrap confidence intervals.

Every function takes plain arrays (labels 0 real / 1 synthetic, scores, generator names,
source or pair group per image) and returns floats, dicts or tidy DataFrames, so the CLI, the
dashboard and notebooks call the same code.

Definitions
-----------
- **AP of a generator**: average precision of that generator's fakes (positives) against the
  reals (negatives). ``pairing="shared"``: all reals of the evaluated set; ``"matched"``: only
  the reals whose group (pair id, else source) is one of the groups of that generator's fakes.
  AP is the step-wise sum ``sum_k (R_k - R_{k-1}) P_k`` over distinct score thresholds
  (identical to scikit-learn's ``average_precision_score``).
- **mAP**: the mean of the per-generator APs. **pooled AP**: one AP over all fakes against all
  reals; it is not mAP (it weights generators by their number of fakes and runs higher).
- **Thresholds** are probabilities; an image is called synthetic when ``p > threshold``.
  ``0.5``; ``validation``: chosen on validation *reals only* (``threshold_at_fpr``: the
  smallest threshold whose false-positive rate on validation reals is at most the target);
  ``oracle``: fitted on the evaluated labels themselves (best balanced accuracy), an upper
  bound only, always named ``oracle``.
- **Confidence intervals**: percentile bootstrap, seeded, 1000 resamples by default. The
  resampled units are pair groups (images sharing a ``pair_id`` are drawn together, so a fake
  and the real it was made from never split) and single images without a pair id; units are
  resampled within strata (reals, and each generator's fakes) so every resample keeps about
  their counts. All metrics of one evaluation share the same resamples. Below
  :data:`MIN_FAKES_FOR_CI` fakes (of a generator, or overall) no interval is given: the note
  says ``too few fakes (n)``, because a resample cannot show how AP varies with the fakes.
- **unknown**: fakes without a generator name are reported as the generator ``unknown`` but
  are left out of mAP unless ``include_unknown=True`` (they may mix several generators, and
  mAP weights every generator equally). Every mAP row's note says how many generators it
  averages.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

from detector.errors import CueLensError
from detector.groups import REAL, UNKNOWN_GENERATOR, fake_generators

PAIRINGS = ("shared", "matched")
DEFAULT_TARGET_FPR = 0.05
DEFAULT_N_BOOT = 1000
MIN_RELIABLE_GROUP = 5  # images of a class in a group below which a metric gets a caveat
MIN_FAKES_FOR_CI = 10
_CHUNK_ELEMENTS = 4_000_000  # bootstrap weights per chunk (rows x images), bounds memory

TIDY_COLUMNS = [
    "metric",
    "generator",
    "threshold_name",
    "threshold",
    "value",
    "ci_low",
    "ci_high",
    "n_real",
    "n_fake",
    "note",
]


class MetricsError(CueLensError, ValueError):
    """The inputs cannot give the metric asked for (e.g. no reals in the evaluated split)."""


# -- plain metrics ---------------------------------------------------------------------------


def _labels(y) -> np.ndarray:
    try:
        y = pd.array(np.asarray(y, dtype=object).reshape(-1), dtype="Float64")
    except (TypeError, ValueError) as exc:
        raise MetricsError(f"labels must be 0 (real) or 1 (synthetic) ({exc})") from None
    y = y.to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isnan(y).any():
        raise MetricsError("labels contain missing values; evaluate labelled images only")
    if not np.isin(y, (0, 1)).all():
        raise MetricsError("labels must be 0 (real) or 1 (synthetic)")
    return y.astype(np.int8)


def _scores(scores, n: int) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(s) != n:
        raise MetricsError(f"{len(s)} scores for {n} labels")
    if not np.isfinite(s).all():
        raise MetricsError("scores contain NaN or infinite values")
    return s


class _Ranked:
    """Scores sorted once (descending) with the end of each block of tied scores."""

    def __init__(self, y: np.ndarray, scores: np.ndarray):
        self.order = np.argsort(-scores, kind="mergesort")
        s = scores[self.order]
        self.y = y[self.order].astype(np.float64)
        self.last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]

    def counts(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weighted true and false positives at each distinct threshold; weights (B, n)."""
        w = weights[:, self.order]
        tp = np.cumsum(w * self.y, axis=1)[:, self.last]
        fp = np.cumsum(w * (1.0 - self.y), axis=1)[:, self.last]
        return tp, fp

    def average_precision(self, weights: np.ndarray) -> np.ndarray:
        tp, fp = self.counts(weights)
        pos = tp[:, -1:]
        precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
        recall = np.divide(tp, pos, out=np.zeros_like(tp), where=pos > 0)
        ap = (np.diff(recall, axis=1, prepend=0.0) * precision).sum(axis=1)
        ap[pos[:, 0] <= 0] = np.nan
        return ap

    def auroc(self, weights: np.ndarray) -> np.ndarray:
        tp, fp = self.counts(weights)
        pos, neg = tp[:, -1:], fp[:, -1:]
        tpr = np.divide(tp, pos, out=np.zeros_like(tp), where=pos > 0)
        fpr = np.divide(fp, neg, out=np.zeros_like(fp), where=neg > 0)
        tpr = np.concatenate([np.zeros((len(tp), 1)), tpr], axis=1)
        fpr = np.concatenate([np.zeros((len(fp), 1)), fpr], axis=1)
        area = (np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1]) / 2).sum(axis=1)
        area[(pos[:, 0] <= 0) | (neg[:, 0] <= 0)] = np.nan
        return area


def average_precision(y_true, scores, sample_weight=None) -> float:
    """Average precision of synthetic (1) against real (0); NaN without any synthetic image.

    Same value as ``sklearn.metrics.average_precision_score`` (ties handled identically).
    """
    y = _labels(y_true)
    s = _scores(scores, len(y))
    w = np.ones((1, len(y))) if sample_weight is None else np.asarray(sample_weight, float)[None]
    return float(_Ranked(y, s).average_precision(w)[0])


def auroc(y_true, scores, sample_weight=None) -> float:
    """Area under the ROC curve; NaN unless both classes are present."""
    y = _labels(y_true)
    s = _scores(scores, len(y))
    w = np.ones((1, len(y))) if sample_weight is None else np.asarray(sample_weight, float)[None]
    return float(_Ranked(y, s).auroc(w)[0])


def sigmoid(z) -> np.ndarray:
    """Logistic function, numerically stable, float64."""
    z = np.asarray(z, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # NaN in, NaN out (failed images)
        return np.exp(-np.logaddexp(0.0, -z))


def accuracies(y_true, probability, threshold: float = 0.5, sample_weight=None) -> dict:
    """Accuracy, balanced accuracy, real accuracy (specificity) and fake accuracy (recall).

    An image is predicted synthetic when ``probability > threshold``. A rate whose class is
    absent is NaN.
    """
    y = _labels(y_true)
    p = _scores(probability, len(y))
    w = np.ones((1, len(y))) if sample_weight is None else np.asarray(sample_weight, float)[None]
    out = _accuracies(y, p > threshold, w)
    return {k: float(v[0]) for k, v in out.items()}


def _accuracies(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    real, fake = y == 0, y == 1
    correct = pred == (y == 1)
    wr, wf = w[:, real].sum(axis=1), w[:, fake].sum(axis=1)
    cr = (w[:, real] * correct[real]).sum(axis=1)
    cf = (w[:, fake] * correct[fake]).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        real_acc = np.where(wr > 0, cr / wr, np.nan)
        fake_acc = np.where(wf > 0, cf / wf, np.nan)
        acc = (cr + cf) / (wr + wf)
    return {
        "accuracy": acc,
        "balanced_accuracy": (real_acc + fake_acc) / 2,
        "real_accuracy": real_acc,
        "fake_accuracy": fake_acc,
    }


# -- thresholds ------------------------------------------------------------------------------


def threshold_at_fpr(real_probability, target_fpr: float = DEFAULT_TARGET_FPR) -> float:
    """The smallest threshold t with at most ``target_fpr`` of these reals above it.

    Only real images' probabilities are used. With n reals, ``floor(target_fpr * n)`` of them
    may score above t (those are the false positives the target allows).
    """
    reals = np.sort(np.asarray(real_probability, dtype=np.float64))[::-1]
    if len(reals) == 0:
        raise MetricsError("no real images to choose a threshold on")
    if not 0 <= target_fpr < 1:
        raise MetricsError(f"target false-positive rate must be in [0, 1), got {target_fpr}")
    allowed = math.floor(target_fpr * len(reals) + 1e-9)
    return float(reals[min(allowed, len(reals) - 1)])


def select_threshold(y_val, probability_val, *, target_fpr: float = DEFAULT_TARGET_FPR) -> dict:
    """The decision threshold chosen on validation reals (see ``threshold_at_fpr``).

    Returns ``{"threshold", "rule", "target_fpr", "n_real", "validation_fpr"}``; without any
    validation real the threshold is 0.5 and the rule says so.
    """
    y = _labels(y_val)
    p = _scores(probability_val, len(y))
    reals = p[y == 0]
    if len(reals) == 0:
        return {
            "threshold": 0.5,
            "rule": "0.5 (no validation reals to choose a threshold on)",
            "target_fpr": target_fpr,
            "n_real": 0,
            "validation_fpr": None,
        }
    t = threshold_at_fpr(reals, target_fpr)
    return {
        "threshold": t,
        "rule": f"false-positive rate <= {target_fpr:g} on {len(reals)} validation reals",
        "target_fpr": target_fpr,
        "n_real": len(reals),
        "validation_fpr": float(np.mean(reals > t)),
    }


def oracle_threshold(y_true, probability) -> float:
    """The threshold with the best balanced accuracy on these labels.

    Fitted on the evaluated labels: an optimistic upper bound, reported only as ``oracle``.
    """
    y = _labels(y_true)
    p = _scores(probability, len(y))
    reals, fakes = np.sort(p[y == 0]), np.sort(p[y == 1])
    if len(reals) == 0 or len(fakes) == 0:
        return 0.5
    candidates = np.r_[np.nextafter(p.min(), -np.inf), np.unique(p)]
    real_ok = np.searchsorted(reals, candidates, side="right") / len(reals)
    fake_ok = 1.0 - np.searchsorted(fakes, candidates, side="right") / len(fakes)
    return float(candidates[int(np.argmax(real_ok + fake_ok))])


# -- bootstrap -------------------------------------------------------------------------------


def bootstrap_weights(
    strata: Sequence,
    n_boot: int,
    seed: int = 0,
    chunk: int | None = None,
    groups: Sequence | None = None,
) -> Iterator[np.ndarray]:
    """Bootstrap resamples as count weights per image, in chunks of shape (b, n).

    Units are the images, or with ``groups`` (a pair id per image; None/NaN = its own unit)
    the groups of images sharing an id. A unit's stratum is its images' stratum when they
    agree, else the sorted set of them joined by ``+``. Each stratum's m units are resampled
    with replacement to m units (multinomial counts) and every image gets its unit's count,
    so pair groups stay together and every resample keeps about the number of reals and of
    each generator's fakes.
    """
    strata = np.asarray(strata, dtype=object)
    n = len(strata)
    if groups is None:
        unit_of = np.arange(n)
    else:
        keys = [
            ("img", i) if g is None or (isinstance(g, float) and math.isnan(g)) else ("grp", g)
            for i, g in enumerate(groups)
        ]
        index: dict = {}
        unit_of = np.array([index.setdefault(k, len(index)) for k in keys])
    n_units = int(unit_of.max()) + 1 if n else 0
    members = [[] for _ in range(n_units)]
    for i, u in enumerate(unit_of):
        members[u].append(i)
    unit_stratum = np.array(
        ["+".join(sorted({str(strata[i]) for i in m})) for m in members], dtype=object
    )
    by_stratum = [
        np.flatnonzero(unit_stratum == st) for st in sorted(set(unit_stratum.tolist()), key=str)
    ]
    rng = np.random.default_rng(seed)
    chunk = chunk or max(1, min(n_boot, _CHUNK_ELEMENTS // max(n, 1)))
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        unit_w = np.zeros((b, n_units))
        for idx in by_stratum:
            m = len(idx)
            unit_w[:, idx] = rng.multinomial(m, np.full(m, 1.0 / m), size=b)
        done += b
        yield unit_w[:, unit_of] if n else np.zeros((b, 0))


def _interval(dist: np.ndarray, ci: float) -> tuple[float, float]:
    dist = np.asarray(dist, dtype=float)
    dist = dist[np.isfinite(dist)]
    if len(dist) == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(dist, [50 * (1 - ci), 50 * (1 + ci)])
    return float(lo), float(hi)


# -- per-generator AP and the full evaluation ------------------------------------------------


def small_group_note(n_fake: int, n_real: int, min_n: int = MIN_RELIABLE_GROUP) -> str | None:
    """A caveat for a metric computed on fewer than ``min_n`` fakes or reals, else None.

    AP or AUC over one or two images is a coin flip, not a measurement; the dashboard shows
    such values with this note and the CLI lists it in the ``note`` column.
    """
    small = [f"{n} {what}" for n, what in ((n_fake, "fake"), (n_real, "real")) if n < min_n]
    if not small:
        return None
    return f"only {' and '.join(small)} image(s): too few for a reliable value"


def _generator_subsets(y, gens, pairing, group):
    """For each generator: (indices of its fakes + its reals, n_real, n_fake, note)."""
    real_idx = np.flatnonzero(y == 0)
    names = sorted({g for g in gens[y == 1]}, key=str)
    out = {}
    if pairing not in PAIRINGS:
        raise MetricsError(f"unknown pairing {pairing!r} (use {' or '.join(PAIRINGS)})")
    if pairing == "matched":
        if group is None:
            raise MetricsError(
                "matched pairing needs a group per image (pair_id, else source); none given"
            )
        group = pd.Series(list(group), dtype=object).to_numpy()
    for g in names:
        fake_idx = np.flatnonzero((y == 1) & (gens == g))
        note = None
        if pairing == "shared":
            reals = real_idx
        else:
            keys = {k for k in group[fake_idx] if not pd.isna(k)}
            reals = real_idx[[(not pd.isna(group[i])) and group[i] in keys for i in real_idx]]
            reals = np.asarray(reals, dtype=int)
            if len(reals) == 0:
                note = "no matched reals (same source or pair group) for this generator"
        out[g] = (np.r_[fake_idx, reals].astype(int), len(reals), len(fake_idx), note)
    return out


def _check_both_classes(y: np.ndarray, what: str) -> None:
    n_real, n_fake = int((y == 0).sum()), int((y == 1).sum())
    if n_real == 0:
        raise MetricsError(
            f"{what} has no real images: AP of each generator's fakes against reals cannot be "
            f"computed. Evaluate a split with reals (or make one: `train` or `eval` assign a "
            f"seeded split to datasets without one)"
        )
    if n_fake == 0:
        raise MetricsError(f"{what} has no synthetic images: there is nothing to detect")


def per_generator_ap(
    y,
    scores,
    generator,
    *,
    pairing: str = "shared",
    group=None,
    n_boot: int = DEFAULT_N_BOOT,
    ci: float = 0.95,
    seed: int = 0,
    what: str = "the evaluated set",
    pairs=None,
    include_unknown: bool = False,
) -> pd.DataFrame:
    """AP of each generator's fakes against the reals, with bootstrap CIs, plus mAP.

    Returns a tidy DataFrame, one row per generator (sorted by name) then a row
    ``metric="mAP"`` (generator missing). Columns: metric, generator, value, ci_low, ci_high,
    n_real, n_fake, note.
    """
    table = evaluate(
        y,
        scores,
        generator,
        pairing=pairing,
        group=group,
        n_boot=n_boot,
        ci=ci,
        seed=seed,
        thresholds=False,
        what=what,
        pairs=pairs,
        include_unknown=include_unknown,
    )
    keep = table["metric"].isin(["ap", "mAP"])
    cols = ["metric", "generator", "value", "ci_low", "ci_high", "n_real", "n_fake", "note"]
    return table.loc[keep, cols].reset_index(drop=True)


def mean_average_precision(y, scores, generator, **kwargs) -> float:
    """mAP: the mean over generators of each generator's AP against the reals."""
    table = per_generator_ap(y, scores, generator, n_boot=0, **kwargs)
    return float(table.loc[table["metric"] == "mAP", "value"].iloc[0])


def evaluate(
    y,
    scores,
    generator=None,
    *,
    probability=None,
    pairing: str = "shared",
    group=None,
    threshold: float | None = None,
    oracle: bool = False,
    n_boot: int = DEFAULT_N_BOOT,
    ci: float = 0.95,
    seed: int = 0,
    thresholds: bool = True,
    what: str = "the evaluated set",
    pairs=None,
    include_unknown: bool = False,
    min_fakes_for_ci: int = MIN_FAKES_FOR_CI,
) -> pd.DataFrame:
    """Every detection metric of one scored set, as a tidy DataFrame (``TIDY_COLUMNS``).

    ``pairs``: pair id per image (None where unpaired): bootstrap resamples keep pair groups
    together. ``include_unknown``: count unnamed fakes (generator ``unknown``) in mAP.
    Intervals are left out (NaN, note ``too few fakes (n)``) below ``min_fakes_for_ci``.

    ``y``: 0 real / 1 synthetic; ``scores``: logits (any monotone score works for AP and
    AUROC); ``probability``: P(synthetic), defaults to ``sigmoid(scores)``; ``generator``: per
    image (ignored for reals); ``group``: source or pair id per image (for ``matched``);
    ``threshold``: the validation threshold (probability) from the head's card.

    Rows: ``ap`` per generator, ``mAP``, ``pooled_ap``, ``auroc``; then ``accuracy``,
    ``balanced_accuracy``, ``real_accuracy``, ``fake_accuracy`` (overall, and fake accuracy
    per generator) at ``0.5``, at ``validation`` (when given) and at ``oracle`` (when asked).
    """
    y = _labels(y)
    s = _scores(scores, len(y))
    _check_both_classes(y, what)
    p = sigmoid(s) if probability is None else _scores(probability, len(y))
    gens = fake_generators(y, generator)
    subsets = _generator_subsets(y, gens, pairing, group)
    n_real_all, n_fake_all = int((y == 0).sum()), int((y == 1).sum())

    named_thresholds: list[tuple[str, float]] = []
    if thresholds:
        named_thresholds.append(("0.5", 0.5))
        if threshold is not None:
            named_thresholds.append(("validation", float(threshold)))
        if oracle:
            named_thresholds.append(("oracle", oracle_threshold(y, p)))

    # point estimates and bootstrap distributions share one code path (weights)
    ranked_all = _Ranked(y, s)
    ranked_gen = {
        g: (idx, _Ranked(y[idx], s[idx])) for g, (idx, _, _, note) in subsets.items() if not note
    }
    in_map = [g for g in ranked_gen if include_unknown or g != UNKNOWN_GENERATOR]

    def compute(w: np.ndarray) -> dict[tuple, np.ndarray]:
        out: dict[tuple, np.ndarray] = {}
        per_gen = []
        for g, (idx, ranked) in ranked_gen.items():
            ap = ranked.average_precision(w[:, idx])
            out[("ap", g, None)] = ap
            if g in in_map:
                per_gen.append(ap)
        if per_gen:
            with np.errstate(invalid="ignore"):
                out[("mAP", None, None)] = np.mean(np.vstack(per_gen), axis=0)
        out[("pooled_ap", None, None)] = ranked_all.average_precision(w)
        out[("auroc", None, None)] = ranked_all.auroc(w)
        for name, t in named_thresholds:
            pred = p > t
            for metric, values in _accuracies(y, pred, w).items():
                out[(metric, None, name)] = values
            for g, (idx, _, _, _) in subsets.items():
                fake = idx[y[idx] == 1]
                wf = w[:, fake]
                tot = wf.sum(axis=1)
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[("fake_accuracy", g, name)] = np.where(
                        tot > 0, (wf * pred[fake]).sum(axis=1) / tot, np.nan
                    )
        return out

    point = {k: float(v[0]) for k, v in compute(np.ones((1, len(y)))).items()}
    dists: dict[tuple, list[np.ndarray]] = {k: [] for k in point}
    if n_boot and n_boot > 0:
        strata = np.where(y == 0, REAL, gens).astype(object)
        pair_list = None if pairs is None else list(pairs)
        for w in bootstrap_weights(strata, n_boot, seed, groups=pair_list):
            for k, v in compute(w).items():
                dists[k].append(v)

    threshold_values = dict(named_thresholds)
    rows = []
    for key, value in point.items():
        metric, g, tname = key
        lo, hi = _interval(np.concatenate(dists[key]), ci) if dists[key] else (math.nan, math.nan)
        if g is not None:
            n_real, n_fake, note = subsets[g][1], subsets[g][2], subsets[g][3]
            note = note or small_group_note(n_fake, n_real)
        else:
            n_real, n_fake, note = n_real_all, n_fake_all, None
        if metric == "mAP":
            n_fake = int(sum(subsets[x][2] for x in in_map))
        if dists[key] and n_fake < min_fakes_for_ci:
            lo, hi = math.nan, math.nan
            note = f"too few fakes ({n_fake}) for a confidence interval"
        if metric == "ap" and g == UNKNOWN_GENERATOR and g not in in_map:
            extra = "unnamed fakes, not in mAP (include_unknown to count them)"
            note = f"{note}; {extra}" if note else extra
        rows.append(
            {
                "metric": metric,
                "generator": g,
                "threshold_name": tname,
                "threshold": threshold_values.get(tname) if tname else None,
                "value": value,
                "ci_low": lo,
                "ci_high": hi,
                "n_real": n_real,
                "n_fake": n_fake,
                "note": note,
            }
        )
    # generators without a usable AP are still listed, with their note
    for g, (_, n_real, n_fake, note) in subsets.items():
        if note:
            rows.append(
                {
                    "metric": "ap",
                    "generator": g,
                    "threshold_name": None,
                    "threshold": None,
                    "value": math.nan,
                    "ci_low": math.nan,
                    "ci_high": math.nan,
                    "n_real": n_real,
                    "n_fake": n_fake,
                    "note": note,
                }
            )
    excluded = [g for g, sub in subsets.items() if sub[3]]
    table = pd.DataFrame(rows, columns=TIDY_COLUMNS)
    if ("mAP", None, None) not in point:
        table = pd.concat(
            [
                table,
                pd.DataFrame(
                    [
                        {
                            "metric": "mAP",
                            "value": math.nan,
                            "ci_low": math.nan,
                            "ci_high": math.nan,
                            "n_real": n_real_all,
                            "n_fake": n_fake_all,
                            "note": (
                                "only unnamed fakes (unknown), left out of mAP "
                                "(include_unknown to count them)"
                                if ranked_gen and not in_map
                                else "no generator has a usable AP"
                            ),
                        }
                    ],
                    columns=TIDY_COLUMNS,
                ),
            ],
            ignore_index=True,
        )
    else:
        is_map = table["metric"] == "mAP"
        left_out = excluded + [g for g in ranked_gen if g not in in_map and g not in excluded]
        text = f"mean over {len(in_map)} generators"
        if left_out:
            text += "; without: " + ", ".join(left_out)
        previous = table.loc[is_map, "note"].iloc[0]
        if isinstance(previous, str) and previous:
            text += f"; {previous}"
        table.loc[is_map, "note"] = text
    order = {
        m: i
        for i, m in enumerate(
            [
                "ap",
                "mAP",
                "pooled_ap",
                "auroc",
                "accuracy",
                "balanced_accuracy",
                "real_accuracy",
                "fake_accuracy",
            ]
        )
    }
    tn_order = {"0.5": 1, "validation": 2, "oracle": 3}
    table = table.assign(
        _m=table["metric"].map(order),
        _t=table["threshold_name"].map(lambda t: 0 if pd.isna(t) else tn_order.get(t, 9)),
        _g=table["generator"].map(lambda g: "" if pd.isna(g) else str(g)),
    )
    table = table.sort_values(["_t", "_m", "_g"], kind="mergesort").drop(columns=["_m", "_t", "_g"])
    return table.reset_index(drop=True)


def summary(table: pd.DataFrame) -> dict:
    """The headline numbers of an ``evaluate`` table: mAP, pooled AP, AUROC, accuracies."""
    out: dict = {}
    for row in table.itertuples(index=False):
        if not pd.isna(row.generator):
            continue
        named = not pd.isna(row.threshold_name)
        key = f"{row.metric}@{row.threshold_name}" if named else row.metric
        out[key] = {
            "value": _clean(row.value),
            "ci_low": _clean(row.ci_low),
            "ci_high": _clean(row.ci_high),
        }
        if named:
            out[key]["threshold"] = _clean(row.threshold)
    return out


def _clean(x):
    if x is None:
        return None
    if isinstance(x, (float, np.floating)) and not np.isfinite(x):
        return None
    if isinstance(x, np.generic):
        return x.item()
    return x


def table_records(table: pd.DataFrame) -> list[dict]:
    """A tidy table as JSON-ready records (NaN -> None)."""
    return [{k: _clean(v) for k, v in row.items()} for row in table.to_dict(orient="records")]


def evaluation_json(table: pd.DataFrame, **context) -> dict:
    """JSON form of an ``evaluate`` table: summary, per-generator AP rows, every row."""
    per_gen = table[(table["metric"] == "ap")]
    return {
        **context,
        "summary": summary(table),
        "per_generator": table_records(
            per_gen[["generator", "value", "ci_low", "ci_high", "n_real", "n_fake", "note"]]
        ),
        "rows": table_records(table),
    }
