"""Applying a head: scores, probabilities and verdicts for embeddings, image files and the
labelled splits of a workspace. The CLI (``predict``, ``eval``) and the dashboard call these;
image bytes go through ``detector.analysis.analyse_bytes``, which applies them.

Verdict rule
------------
Let t be the decision threshold (a probability; by default the one chosen on validation reals
and stored in the head's card, else 0.5) and ``band`` a margin in logit units (default 1.0).
The band edges are ``low = sigmoid(logit(t) - band)`` and ``high = sigmoid(logit(t) + band)``:

- ``p < low``: **likely real**;
- ``p > high``: **likely synthetic**;
- otherwise (``low <= p <= high``): **inconclusive**.

A margin in logit units is symmetric in odds (band 1.0 = the odds within a factor e of the
threshold's odds) and keeps both edges inside (0, 1) even for thresholds near 0 or 1. For
t = 0.5 and band 1.0 the edges are 0.269 and 0.731. ``verdict_edges`` returns them for display.

Too small to judge
------------------
An image whose shorter side is below ``MIN_JUDGE_SIDE`` pixels (e.g. a 1x1 pixel or a 16x16
icon) is scaled up to the backbone's input size, so its score says more about interpolation
than about the image. Its verdict is withheld: ``TOO_SMALL`` instead of a band, with the
reason from ``too_small_reason``. The score itself is still reported. The CLI and the
dashboard share this rule.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from detector.errors import CueLensError
from detector.groups import pairing_groups
from detector.heads import head_card
from detector.identity import BackboneRef
from detector.metrics import DEFAULT_N_BOOT, evaluate, evaluation_json, sigmoid
from detector.splits import ensure_splits

LIKELY_REAL = "likely real"
INCONCLUSIVE = "inconclusive"
LIKELY_SYNTHETIC = "likely synthetic"
VERDICTS = (LIKELY_REAL, INCONCLUSIVE, LIKELY_SYNTHETIC)
TOO_SMALL = "too small to judge"
MIN_JUDGE_SIDE = 64  # pixels; below this on the shorter side the verdict is withheld
DEFAULT_BAND = 1.0


class InferenceError(CueLensError):
    """A head cannot be applied to the given embeddings or images."""


# -- embeddings -> scores -> verdicts --------------------------------------------------------


def head_backbone_id(head) -> str | None:
    """The backbone a head was trained on (its ``backbone_id``, else its card's)."""
    return getattr(head, "backbone_id", None) or head_card(head).get("backbone_id")


def head_threshold(head) -> float:
    """The head's decision threshold: the validation-chosen one in its card, else 0.5."""
    t = head_card(head).get("threshold")
    return float(t) if t is not None else 0.5


def score_embeddings(head, X, *, backbone_id: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(logit, probability)`` arrays (n,) for embeddings X (n, d) of the head's tap.

    With ``backbone_id`` (where X came from), a head trained on another backbone is refused;
    a dimension mismatch is always refused (``HeadMismatchError``, a ``CueLensError``).
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim == 1:
        X = X[None, :]
    if X.shape[0] == 0:
        return np.zeros(0), np.zeros(0)
    if hasattr(head, "check_compatible"):
        head.check_compatible(backbone_id, X.shape[1])
    logit = np.asarray(head.decision_function(X), dtype=np.float64).reshape(-1)
    return logit, sigmoid(logit)


def verdict_edges(threshold: float = 0.5, band: float = DEFAULT_BAND) -> tuple[float, float]:
    """The probabilities ``(low, high)`` bounding the inconclusive band around ``threshold``."""
    if not 0.0 < threshold < 1.0:
        raise InferenceError(f"threshold must be strictly between 0 and 1, got {threshold}")
    if band < 0:
        raise InferenceError(f"band must be >= 0, got {band}")
    centre = math.log(threshold / (1.0 - threshold))
    return float(sigmoid(centre - band)), float(sigmoid(centre + band))


def verdict(probability, threshold: float = 0.5, band: float = DEFAULT_BAND):
    """``likely real`` / ``inconclusive`` / ``likely synthetic`` for one probability or many.

    See the module docstring for the rule. NaN probabilities (failed images) give None.
    """
    low, high = verdict_edges(threshold, band)
    p = np.asarray(probability, dtype=np.float64)
    out = np.where(p < low, LIKELY_REAL, np.where(p > high, LIKELY_SYNTHETIC, INCONCLUSIVE))
    out = np.where(np.isnan(p), None, out).astype(object)
    return out.item() if out.ndim == 0 else out


def too_small_reason(width, height, min_side: int = MIN_JUDGE_SIDE) -> str | None:
    """Why an image of ``width`` x ``height`` pixels gets no verdict, or None when it may.

    Unknown sizes (None) are not judged here (None is returned).
    """
    if width is None or height is None:
        return None
    w, h = int(width), int(height)
    if min(w, h) >= min_side:
        return None
    return (
        f"{TOO_SMALL}: {w}×{h} px, the shorter side is below {min_side} px; the score is shown "
        "but no verdict is given (the image is scaled up to the backbone's input size)"
    )


def image_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from an image file's header (no full decode); None if unread.

    EXIF rotation does not matter for the minimum side.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            return int(im.width), int(im.height)
    except Exception:  # any format Pillow cannot open here is judged by its decode instead
        return None


# -- heads and backbones -----------------------------------------------------------------


def check_backbone(head, backbone) -> None:
    """Refuse (``InferenceError``) a backbone other than the one the head was trained on."""
    own = head_backbone_id(head)
    if own is not None and own != backbone.id:
        raise InferenceError(
            f"the head was trained on embeddings of {own!r}, but the backbone loaded is "
            f"{backbone.id!r}; load {own!r} (e.g. --model/--pretrained) or choose a head "
            f"trained on {backbone.id!r}"
        )


# -- a labelled workspace split -> metrics ---------------------------------------------------


def score_workspace(workspace, head, *, split: str | None = None) -> pd.DataFrame:
    """The head's scores for every labelled image of a split that has its embeddings.

    Columns: path, hash, label, generator, source, pair_id, split, score, probability.
    """
    backbone_id = head_backbone_id(head)
    if backbone_id is None:
        raise InferenceError("the head does not say which backbone it was trained on")
    tap = head.tap
    if backbone_id not in set(workspace.backbones().query("tap == @tap")["backbone"]):
        stored = workspace.backbones()
        known = ", ".join(f"{b} ({t})" for b, t, _ in stored.itertuples(index=False))
        raise InferenceError(
            f"{workspace.path} has no {tap} embeddings of {backbone_id!r}, the backbone this "
            f"head was trained on (stored: {known or 'none'}). Embed the dataset with that "
            f"backbone, or use a head trained on one of the stored backbones"
        )
    meta, X = workspace.dataset(backbone_id, tap, split=split)
    if meta.empty:
        splits = workspace.images()["split"].dropna().unique().tolist()
        raise InferenceError(
            f"{workspace.path}: no labelled images with {tap} embeddings of {backbone_id!r}"
            + (
                f" in split {split!r} (splits here: {', '.join(map(str, splits)) or 'none'})"
                if split
                else ""
            )
        )
    logit, prob = score_embeddings(head, X, backbone_id=backbone_id)
    cols = ["path", "hash", "label", "generator", "source", "pair_id", "split"]
    out = meta[[c for c in cols if c in meta]].copy()
    out["label"] = out["label"].astype(int)
    out["score"] = logit
    out["probability"] = prob
    return out.reset_index(drop=True)


@dataclass
class Evaluation:
    """What ``evaluate_head`` returns: the tidy metrics table, per-image predictions, context."""

    table: pd.DataFrame
    predictions: pd.DataFrame
    context: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return evaluation_json(self.table, **self.context)


def evaluate_head(
    workspace,
    head,
    *,
    split: str | None = "test",
    pairing: str = "shared",
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    oracle: bool = False,
    include_unknown: bool = False,
) -> Evaluation:
    """Every metric of ``head`` on a workspace split, with the head's validation threshold.

    Datasets without splits first get the stored seeded split (the same one ``train`` used).
    ``matched`` pairing groups images by pair id, else source; bootstrap resamples keep pair
    groups together. The context says ``in_sample`` (with counts) when some evaluated images
    are in the splits the head was trained or validated on (:func:`in_sample_counts`).
    """
    split_info = ensure_splits(workspace, seed=seed)
    preds = score_workspace(workspace, head, split=split)
    card = head_card(head)
    threshold = card.get("threshold")
    threshold_rule = card.get("threshold_rule")
    table = evaluate(
        preds["label"].to_numpy(),
        preds["score"].to_numpy(),
        preds["generator"],
        probability=preds["probability"].to_numpy(),
        pairing=pairing,
        group=pairing_groups(preds).to_numpy(),
        threshold=threshold if card.get("released") is not True else None,
        oracle=oracle,
        n_boot=n_boot,
        seed=seed,
        what=f"split {split!r}" if split else "the workspace",
        pairs=preds["pair_id"].to_numpy() if "pair_id" in preds else None,
        include_unknown=include_unknown,
    )
    overlap = in_sample_counts(card, workspace, preds)
    context = {
        "workspace": str(workspace.path),
        "head": card.get("name"),
        "head_type": getattr(head, "head_type", None),
        "backbone_id": head_backbone_id(head),
        "demo": bool(card.get("demo")),
        "split": split,
        "pairing": pairing,
        "n_boot": n_boot,
        "seed": seed,
        "threshold": threshold,
        "threshold_rule": threshold_rule,
        "n_images": len(preds),
        "splits": split_info["counts"],
        "in_sample": bool(overlap),
        "in_sample_counts": overlap,
        "include_unknown": include_unknown,
    }
    return Evaluation(table=table, predictions=preds, context=context)


def in_sample_counts(card: dict, workspace, preds: pd.DataFrame) -> dict:
    """How many evaluated images the head was trained or validated on: ``{"train": n,
    "validation": n}`` (only non-zero entries; empty = out of sample, as far as known).

    Known for heads trained on this workspace (the card names the workspace and the train and
    validation splits; a validation share held out of the training split counts as train).
    Released heads were trained on the authors' data, which this cannot check.
    """
    training = card.get("training") or {}
    where = training.get("workspace")
    if not where or "split" not in preds:
        return {}
    try:
        same = Path(where).resolve() == Path(workspace.path).resolve()
    except OSError:
        same = False
    if not same:
        return {}
    out = {}
    for key, split in (("train", training.get("train_split")), ("validation", None)):
        if key == "validation":
            source = str(training.get("validation_source") or "")
            split = training.get("val_split") if source.startswith("split ") else None
        if split:
            n = int((preds["split"] == split).sum())
            if n:
                out[key] = n
    return out


def backbone_spec(backbone_id: str) -> dict:
    """``load_backbone`` arguments that rebuild the backbone named by an id.

    ``ViT-L-14-336-quickgelu/openai`` -> model ``ViT-L-14-336-quickgelu``, pretrained ``openai``;
    ``tiny-clip/random`` -> ``tiny-clip``; ``@bicubic`` sets the interpolation, ``@draft`` the
    reduced-scale JPEG decoding (``detector.identity.BackboneRef.load_args``). Ids of
    local files or folders cannot be rebuilt from the id alone (``InferenceError``).
    """
    ref = BackboneRef.parse(backbone_id)
    if ref.is_local:
        raise InferenceError(
            f"the head was trained on {backbone_id!r}, loaded from a local file or folder; pass "
            f"--model and --pretrained (or --model local-dir:FOLDER) to load it again"
        )
    return ref.load_args()
