"""Seeded train / val / test splits for datasets that come without one.

The split is stratified by stratum (``real``, or the generator of a synthetic image, with
``unknown`` for unnamed ones) and keeps pair groups together (all images sharing a
``pair_id`` land in the same split, so a real and its generated counterpart never straddle
train and test). It is stored in the workspace as the split assignment named ``default``
(which ``Workspace.images()`` reports in its ``split`` column), so ``eval`` later sees exactly
the test part ``train`` left out. Images that carry their own split keep it.

Allocation, per stratum: each split first gets ``floor(fraction * n)`` images' worth of pair
groups (largest groups first, seeded order among equals); the remainder goes, group by group,
to the split furthest below its overall target, so strata with one or two images still spread
over the splits in proportion across the dataset instead of all landing in ``train``.
"""

from __future__ import annotations

import hashlib
import math

import pandas as pd

from detector.errors import CueLensError
from detector.groups import REAL, image_groups, split_units

SPLIT_NAMES = ("train", "val", "test")
DEFAULT_FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}
ASSIGNMENT = "default"
RECORD_NAMESPACE = "splits"


class SplitError(CueLensError):
    """A split cannot be made or used."""


def strata_of(meta: pd.DataFrame) -> pd.Series:
    """Stratum per image: ``real`` for label 0, else the generator (``unknown`` if unnamed);
    ``detector.groups.image_groups``."""
    return pd.Series(image_groups(meta), index=meta.index)


def _seeded_key(seed: int, text: str) -> str:
    return hashlib.sha256(f"{seed}:{text}".encode()).hexdigest()


def assign_splits(
    meta: pd.DataFrame,
    *,
    fractions: dict[str, float] | None = None,
    seed: int = 0,
) -> pd.Series:
    """A seeded, stratified, pair-preserving split: Series image hash -> split name.

    ``meta`` needs columns hash, label (0/1), and optionally generator and pair_id. The result
    depends only on the seed and the set of images (not on row order).
    """
    fractions = dict(fractions or DEFAULT_FRACTIONS)
    total = sum(fractions.values())
    if total <= 0 or any(v < 0 for v in fractions.values()):
        raise SplitError(f"split fractions must be non-negative and not all zero: {fractions}")
    fractions = {k: v / total for k, v in fractions.items()}
    names = list(fractions)
    if meta.empty:
        return pd.Series(dtype=object)
    meta = meta.drop_duplicates("hash").reset_index(drop=True)
    strata = strata_of(meta)
    groups = split_units(meta)
    # a group belongs to the stratum of its first synthetic member (else "real")
    frame = pd.DataFrame({"hash": meta["hash"], "stratum": strata, "group": groups})
    frame["is_fake"] = frame["stratum"] != REAL
    group_stratum = (
        frame.sort_values(["is_fake", "stratum"], ascending=[False, True])
        .groupby("group")["stratum"]
        .first()
    )
    group_size = frame.groupby("group").size()
    target = {s: fractions[s] * len(frame) for s in names}
    assigned_total = dict.fromkeys(names, 0)
    assignment: dict[str, str] = {}

    def furthest_below_target(candidates):
        # the split furthest below its overall target; ties by split order
        return max(candidates, key=lambda s: (target[s] - assigned_total[s], -names.index(s)))

    for stratum in sorted(set(group_stratum), key=lambda s: _seeded_key(seed, s)):
        members = group_stratum.index[group_stratum == stratum]
        order = sorted(members, key=lambda g: (-group_size[g], _seeded_key(seed, g)))
        n = int(sum(group_size[g] for g in order))
        quota = {s: math.floor(fractions[s] * n) for s in names}
        counts = dict.fromkeys(names, 0)
        for g in order:
            size = int(group_size[g])
            open_splits = [s for s in names if counts[s] + size <= quota[s]]
            split = (
                max(open_splits, key=lambda s: (quota[s] - counts[s], -names.index(s)))
                if open_splits
                else furthest_below_target([s for s in names if fractions[s] > 0])
            )
            counts[split] += size
            assigned_total[split] += size
            for h in frame.loc[frame["group"] == g, "hash"]:
                assignment[h] = split
    return pd.Series(assignment, name="split").sort_index()


def ensure_splits(
    workspace,
    *,
    seed: int = 0,
    fractions: dict[str, float] | None = None,
) -> dict:
    """Give every labelled image without a split one, stored in the workspace; idempotent.

    Images already split (by their dataset, or by an earlier call) keep their split; new images
    are split with the same rule. Returns ``{"assigned": n_new, "seed", "fractions",
    "counts": {split: n}}``. The seed and fractions of the first call are recorded and reused.
    """
    record = workspace.get_json(RECORD_NAMESPACE, ASSIGNMENT) or {}
    seed = int(record.get("seed", seed))
    fractions = record.get("fractions") or dict(fractions or DEFAULT_FRACTIONS)
    meta = workspace.images(with_errors=False)
    meta = meta[meta["label"].notna()]
    todo = meta[meta["split"].isna()]
    assigned = 0
    if not todo.empty:
        existing = workspace.get_splits(ASSIGNMENT)
        new = assign_splits(todo, fractions=fractions, seed=seed)
        existing.update(new.to_dict())
        workspace.set_splits(existing, ASSIGNMENT)
        workspace.put_json(RECORD_NAMESPACE, ASSIGNMENT, {"seed": seed, "fractions": fractions})
        assigned = len(new)
        meta = workspace.images(with_errors=False)
        meta = meta[meta["label"].notna()]
    counts = meta["split"].fillna("none").value_counts().sort_index()
    return {
        "assigned": assigned,
        "seed": seed,
        "fractions": fractions,
        "counts": {str(k): int(v) for k, v in counts.items()},
    }
