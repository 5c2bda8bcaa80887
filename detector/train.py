"""Training heads on a workspace's cached embeddings, and cross-generator transfer matrices.

``train_head`` is what ``python -m detector train`` runs: it makes a seeded split when the
dataset has none (``detector.splits``), trains on the train split with early stopping on the
validation split, chooses the decision threshold on the validation reals, evaluates on
validation, and saves the head with its model card. Concept heads need directions built from
a vocabulary's text: ``concepts.bottleneck`` registers their provider with
:func:`register_head_inputs` when imported (detector's core never imports ``concepts``).
``transfer_matrix`` trains one head per
training group and reports mAP (with CIs) on each test group, or leave-one-generator-out.

Group syntax (``--train`` / ``--test`` of ``matrix``), comma-separated tokens:

- ``GEN``: one generator (``unknown`` = synthetic images without a named generator);
- ``NAME=GEN1+GEN2+...``: a named group of generators (e.g. a family: ``gan=ProGAN+StyleGAN``);
- ``all``: every generator present;
- ``source:SRC``: every image (real and synthetic) whose source is SRC (a dataset);
- ``each`` (test side): one column per generator;
- ``loo`` (train side, alone): leave-one-generator-out; train on all generators but G, test on
  G, one row per generator.

Reals: a generator group trains and tests against all reals of the split; a ``source:`` group
uses that source's reals only.

Live curves and cancelling: ``train_head(..., epoch_callback=fn)`` calls ``fn(record)`` once
per epoch with ``{"epoch", "train_loss", "val_loss", "best_epoch"}`` (the head protocol in
``detector.heads``). To stop, the callback raises (``TrainingCancelled``, or any exception of
the caller's own); ``train_head`` lets it propagate and saves nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from detector.catalog import is_bare_name, workspace_head_path
from detector.errors import CueLensError
from detector.fitting import EpochCallback
from detector.groups import pairing_groups
from detector.heads import (
    get_head_type,
    head_hyperparameters,
    make_card,
    save_head,
)
from detector.metrics import (
    DEFAULT_N_BOOT,
    DEFAULT_TARGET_FPR,
    UNKNOWN_GENERATOR,
    MetricsError,
    evaluate,
    per_generator_ap,
    select_threshold,
    sigmoid,
    summary,
)
from detector.splits import assign_splits, ensure_splits, strata_of


class TrainError(CueLensError):
    """A head cannot be trained on what the workspace holds."""


class TrainingCancelled(Exception):
    """Raised by an ``epoch_callback`` to stop training; no head is saved."""


HeadInputs = Callable[[object, str, dict], tuple[dict, dict]]
"""``provider(workspace, backbone_id, params) -> (constructor parameters, card fields)``."""

_HEAD_INPUTS: dict[str, HeadInputs] = {}


def register_head_inputs(head_type: str, provider: HeadInputs) -> None:
    """Let ``train_head`` build what a head type needs beyond its hyperparameters.

    The concept head's directions come from a vocabulary's text: ``concepts.bottleneck``
    registers its provider here on import (detector's core never imports ``concepts``).
    ``provider`` takes the caller's ``params`` and returns the head's constructor parameters
    and extra model card fields.
    """
    _HEAD_INPUTS[head_type] = provider


# -- data access -----------------------------------------------------------------------------


def resolve_backbone_id(workspace, tap: str, backbone_id: str | None = None) -> str:
    """The backbone whose ``tap`` embeddings to use: the given one, or the only one stored."""
    table = workspace.backbones()
    have = table[table["tap"] == tap]
    if backbone_id is not None:
        if backbone_id not in set(have["backbone"]):
            known = ", ".join(f"{b} ({t}, {n})" for b, t, n in table.itertuples(index=False))
            raise TrainError(
                f"{workspace.path}: no {tap} embeddings for backbone {backbone_id!r} "
                f"(stored: {known or 'none'}); run `python -m detector embed` with that model"
            )
        return backbone_id
    if have.empty:
        raise TrainError(
            f"{workspace.path}: no {tap} embeddings yet; run `python -m detector embed DATASET "
            f"--workspace {workspace.path}` first"
        )
    if len(have) > 1:
        raise TrainError(
            f"{workspace.path}: embeddings of several backbones ({', '.join(have['backbone'])}); "
            f"choose one with --backbone"
        )
    return str(have["backbone"].iloc[0])


def label_counts(meta: pd.DataFrame) -> dict:
    """Counts of a labelled set: total, reals, fakes, images per stratum (real / generator)."""
    if meta.empty:
        return {"n": 0, "n_real": 0, "n_fake": 0, "by_generator": {}}
    strata = strata_of(meta)
    return {
        "n": len(meta),
        "n_real": int((meta["label"] == 0).sum()),
        "n_fake": int((meta["label"] == 1).sum()),
        "by_generator": {
            str(k): int(v) for k, v in strata[strata != "real"].value_counts().sort_index().items()
        },
    }


def _labels(meta: pd.DataFrame) -> np.ndarray:
    return meta["label"].astype(int).to_numpy()


# -- fitting ---------------------------------------------------------------------------------


def fit_head(
    head_type: str,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    *,
    backbone_id: str | None = None,
    seed: int = 0,
    params: dict | None = None,
    workspace=None,
    epoch_callback: EpochCallback | None = None,
):
    """A fitted head on arrays; ``params`` override its hyperparameters (``random_state``
    defaults to ``seed``); ``epoch_callback`` goes to ``fit`` (see the module docstring). A
    concept head needs ``directions`` (and ``concept_names``) among ``params``."""
    params = dict(params or {})
    if head_type == "concept" and params.get("directions") is None:
        raise TrainError(
            "concept heads are trained on a workspace (they need concept directions): use "
            "train_head(workspace, 'concept') or `python -m detector train --head concept`"
        )
    cls = get_head_type(head_type)
    unknown = set(params) - set(cls._get_param_names())
    if unknown:
        raise TrainError(
            f"unknown hyperparameter(s) for a {head_type} head: {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(cls._get_param_names()))})"
        )
    params.setdefault("random_state", seed)
    head = cls(**{**params, "backbone_id": backbone_id})
    has_val = X_val is not None and y_val is not None and len(y_val) > 0
    fit_args = {"epoch_callback": epoch_callback} if epoch_callback is not None else {}
    try:
        if has_val:
            return head.fit(X_train, y_train, X_val=X_val, y_val=y_val, **fit_args)
        return head.fit(X_train, y_train, **fit_args)
    except ValueError as exc:
        raise TrainError(f"cannot train a {head_type} head: {exc}") from exc


def _check_trainable(meta: pd.DataFrame, what: str) -> None:
    counts = label_counts(meta)
    if counts["n_real"] == 0 or counts["n_fake"] == 0:
        raise TrainError(
            f"{what} has {counts['n_real']} real and {counts['n_fake']} synthetic images; "
            f"training needs both"
        )


def _carve_validation(meta: pd.DataFrame, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split a training set 80/20 (stratified, pairs kept) when there is no validation split."""
    assignment = assign_splits(meta, fractions={"train": 0.8, "val": 0.2}, seed=seed)
    is_val = meta["hash"].map(assignment).eq("val").to_numpy()
    return ~is_val, is_val


@dataclass
class TrainResult:
    """A trained head, its model card, and where it was saved (None when not saved)."""

    head: object
    card: dict
    path: Path | None = None
    split: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"path": str(self.path) if self.path else None, "card": self.card, **self.split}


def head_output_path(workspace, out: str | Path | None, head_type: str) -> Path:
    """Where ``train`` saves: a bare name goes to ``WS/heads/NAME.safetensors``."""
    out = str(out) if out else head_type
    if is_bare_name(out) and not Path(out).exists():
        return workspace_head_path(workspace, out)
    path = Path(out).expanduser()
    return path if path.suffix == ".safetensors" else path.with_name(path.name + ".safetensors")


def train_head(
    workspace,
    head_type: str = "linear",
    *,
    backbone_id: str | None = None,
    train_split: str = "train",
    val_split: str = "val",
    seed: int = 0,
    params: dict | None = None,
    target_fpr: float = DEFAULT_TARGET_FPR,
    out: str | Path | None = None,
    save: bool = True,
    epoch_callback: EpochCallback | None = None,
) -> TrainResult:
    """Train a head on the workspace, pick its threshold on validation reals, save it.

    Datasets without splits first get a seeded, stratified, pair-preserving split stored in the
    workspace (``detector.splits.ensure_splits``). Without a validation split, 20% of the
    training split is held out for early stopping and the threshold (recorded in the card).

    ``epoch_callback(record)`` is called once per epoch with ``{"epoch", "train_loss",
    "val_loss", "best_epoch"}`` (losses are floats; ``val_loss`` is None without validation
    data). An exception it raises (e.g. ``TrainingCancelled``) stops training and propagates;
    nothing is saved then. The callback does not change the result: training stays
    deterministic for a given seed.
    """
    cls = get_head_type(head_type)
    tap = cls.tap
    backbone_id = resolve_backbone_id(workspace, tap, backbone_id)
    split_info = ensure_splits(workspace, seed=seed)
    meta_tr, X_tr = workspace.dataset(backbone_id, tap, split=train_split)
    if meta_tr.empty:
        raise TrainError(
            f"{workspace.path}: no labelled images with {tap} embeddings of {backbone_id!r} in "
            f"split {train_split!r} (splits: {split_info['counts']})"
        )
    _check_trainable(meta_tr, f"split {train_split!r}")
    meta_va, X_va = workspace.dataset(backbone_id, tap, split=val_split)
    validation_source = f"split {val_split!r}"
    if meta_va.empty and len(meta_tr) >= 5 and head_type != "concept":
        keep, held = _carve_validation(meta_tr, seed)
        meta_va, X_va = meta_tr[held].reset_index(drop=True), X_tr[held]
        meta_tr, X_tr = meta_tr[keep].reset_index(drop=True), X_tr[keep]
        validation_source = f"20% of split {train_split!r} (no {val_split!r} split)"
    elif meta_va.empty:
        validation_source = "none"
    y_tr = _labels(meta_tr)
    y_va = _labels(meta_va) if not meta_va.empty else None
    params, extra_card = _head_inputs(workspace, head_type, backbone_id, params)
    if head_type == "concept" and meta_va.empty:
        validation_source = "a share of the training split held out by the concept trainer"
    head = fit_head(
        head_type,
        X_tr,
        y_tr,
        X_va if y_va is not None else None,
        y_va,
        backbone_id=backbone_id,
        seed=seed,
        params=params,
        workspace=workspace,
        epoch_callback=epoch_callback,
    )

    validation: dict = {"source": validation_source, **label_counts(meta_va)}
    threshold = {"threshold": 0.5, "rule": "0.5 (no validation set)"}
    if y_va is not None:
        logits = head.decision_function(X_va)
        threshold = select_threshold(y_va, sigmoid(logits), target_fpr=target_fpr)
        try:
            table = evaluate(
                y_va,
                logits,
                meta_va["generator"],
                threshold=threshold["threshold"],
                n_boot=0,
                what=f"validation ({validation_source})",
            )
            validation["metrics"] = summary(table)
        except MetricsError as exc:
            validation["metrics"] = {}
            validation["note"] = str(exc)
    training = {
        "workspace": str(workspace.path),
        "train_split": train_split,
        "val_split": val_split,
        "validation_source": validation_source,
        "split_seed": split_info["seed"],
        "seed": seed,
        "train_counts": label_counts(meta_tr),
        "epochs": getattr(head, "n_iter_", None),
        "best_epoch": getattr(head, "best_epoch_", None),
        "best_validation_loss": _finite(getattr(head, "best_validation_loss_", None)),
    }
    keep = {k: v for k, v in extra_card.items() if k in ("vocabulary", "templates")}
    card = make_card(
        head,
        **keep,
        training=training,
        validation=validation,
        threshold=float(threshold["threshold"]),
        threshold_rule=threshold["rule"],
        target_fpr=target_fpr,
        hyperparameters=head_hyperparameters(head),
    )
    path = None
    if save:
        path = save_head(head, head_output_path(workspace, out, head_type), card)
        card["name"] = path.stem
        card["path"] = str(path)
    head.card_ = card
    return TrainResult(head=head, card=card, path=path, split={"splits": split_info})


def _head_inputs(workspace, head_type, backbone_id, params) -> tuple[dict, dict]:
    """``params`` completed by the head type's registered provider, and its card fields."""
    params = dict(params or {})
    provider = _HEAD_INPUTS.get(head_type)
    if provider is not None:
        return provider(workspace, backbone_id, params)
    if head_type == "concept":
        raise TrainError(
            "training a concept head needs concept directions, which concepts/bottleneck.py "
            "builds from a vocabulary: import concepts.bottleneck before training (the CLI's "
            "`train --head concept` and the dashboard do)"
        )
    return params, {}


def _finite(x):
    return float(x) if x is not None and np.isfinite(x) else None


# -- cross-generator transfer ----------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """A named set of images: generators (None = all) or a whole source (dataset)."""

    name: str
    generators: tuple[str, ...] | None = None
    source: str | None = None

    def fake_mask(self, meta: pd.DataFrame) -> np.ndarray:
        fake = meta["label"].to_numpy() == 1
        if self.source is not None:
            return fake & (meta["source"].to_numpy() == self.source)
        if self.generators is None:
            return fake
        gens = strata_of(meta).to_numpy()
        return fake & np.isin(gens, list(self.generators))

    def real_mask(self, meta: pd.DataFrame) -> np.ndarray:
        real = meta["label"].to_numpy() == 0
        if self.source is not None:
            return real & (meta["source"].to_numpy() == self.source)
        return real


def generators_in(meta: pd.DataFrame) -> list[str]:
    """Generator names present among the synthetic images (``unknown`` for unnamed)."""
    strata = strata_of(meta)
    return sorted(set(strata[strata != "real"]))


def parse_groups(spec: str | list[str], generators: list[str], *, side: str = "train") -> list:
    """Parse a GROUPS string (see module docstring) into ``Group`` objects.

    Returns ``["loo"]`` for leave-one-generator-out on the train side.
    """
    tokens = spec if isinstance(spec, list) else [t.strip() for t in str(spec).split(",")]
    tokens = [t for t in tokens if t]
    if not tokens:
        raise TrainError(f"empty --{side} group list")
    if "loo" in tokens:
        if side != "train" or len(tokens) > 1:
            raise TrainError("'loo' stands alone, on the --train side")
        return ["loo"]
    known = set(generators)
    groups: list[Group] = []
    tokens = list(dict.fromkeys(tokens))
    for token in tokens:
        if token == "all":
            groups.append(Group("all", None))
        elif token == "each":
            groups.extend(Group(g, (g,)) for g in generators)
        elif token.startswith("source:"):
            groups.append(Group(token, None, token[len("source:") :]))
        elif "=" in token:
            name, members = token.split("=", 1)
            gens = tuple(m.strip() for m in members.split("+") if m.strip())
            missing = [g for g in gens if g not in known]
            if missing or not gens:
                raise TrainError(
                    f"group {name!r}: unknown generator(s) {', '.join(missing) or '(none given)'} "
                    f"(present: {', '.join(generators)})"
                )
            groups.append(Group(name.strip(), gens))
        else:
            if token not in known:
                raise TrainError(
                    f"unknown generator {token!r} in --{side} (present: {', '.join(generators)}; "
                    f"also: all, each, NAME=A+B, source:SRC{', loo' if side == 'train' else ''})"
                )
            groups.append(Group(token, (token,)))
    unique: dict[str, Group] = {}
    for g in groups:  # 'each' may repeat a generator named on its own: keep the first
        unique.setdefault(g.name, g)
    return list(unique.values())


def transfer_matrix(
    meta: pd.DataFrame,
    X: np.ndarray,
    train_groups,
    test_groups,
    *,
    head_type: str = "linear",
    backbone_id: str | None = None,
    pairing: str = "shared",
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    params: dict | None = None,
    train_split: str = "train",
    val_split: str = "val",
    test_split: str = "test",
    workspace=None,
) -> pd.DataFrame:
    """Train on each training group, report mAP with CI on each test group: one tidy table.

    ``meta`` (with a ``split`` column) is aligned with ``X``. ``train_groups``/``test_groups``
    are GROUPS strings or lists of ``Group``; ``"loo"`` on the train side gives
    leave-one-generator-out. Columns: kind, train_group, test_group, train_generators,
    test_generators, mAP, ci_low, ci_high, n_train_real, n_train_fake, n_test_real,
    n_test_fake, note.
    """
    generators = generators_in(meta)
    if isinstance(train_groups, str) or (
        isinstance(train_groups, list) and train_groups and isinstance(train_groups[0], str)
    ):
        train_groups = parse_groups(train_groups, generators, side="train")
    if isinstance(test_groups, str) or (
        isinstance(test_groups, list) and test_groups and isinstance(test_groups[0], str)
    ):
        test_groups = parse_groups(test_groups, generators, side="test")
    if test_split in (train_split, val_split):
        # The matrix reports out-of-sample transfer only: a test split that is the training
        # or validation split would score heads on their own images.
        role = "train" if test_split == train_split else "validation"
        raise TrainError(
            f"test split {test_split!r} is also the {role} split: the transfer matrix only "
            f"evaluates on images its heads never saw"
        )
    split = meta["split"].to_numpy()
    is_tr, is_va, is_te = split == train_split, split == val_split, split == test_split
    groups_all = pairing_groups(meta).to_numpy()
    y = meta["label"].astype(int).to_numpy()

    if train_groups == ["loo"]:
        plan = [
            ("loo", Group(f"all but {g}", tuple(x for x in generators if x != g)), [Group(g, (g,))])
            for g in generators
        ]
    else:
        plan = [("matrix", g, list(test_groups)) for g in train_groups]

    rows = []
    for kind, train_group, tests in plan:
        tr = is_tr & (train_group.fake_mask(meta) | train_group.real_mask(meta))
        va = is_va & (train_group.fake_mask(meta) | train_group.real_mask(meta))
        base = {
            "kind": kind,
            "train_group": train_group.name,
            "train_generators": _gen_label(train_group),
            "n_train_real": int((tr & (y == 0)).sum()),
            "n_train_fake": int((tr & (y == 1)).sum()),
        }
        head, note = None, None
        if base["n_train_real"] == 0 or base["n_train_fake"] == 0:
            note = "training group has no real or no synthetic images in the train split"
        else:
            has_val = (va & (y == 0)).any() and (va & (y == 1)).any()
            head = fit_head(
                head_type,
                X[tr],
                y[tr],
                X[va] if has_val else None,
                y[va] if has_val else None,
                backbone_id=backbone_id,
                seed=seed,
                params=params,
                workspace=workspace,
            )
        for test_group in tests:
            te = is_te & (test_group.fake_mask(meta) | test_group.real_mask(meta))
            row = {
                **base,
                "test_group": test_group.name,
                "test_generators": _gen_label(test_group),
                "mAP": math.nan,
                "ci_low": math.nan,
                "ci_high": math.nan,
                "n_test_real": int((te & (y == 0)).sum()),
                "n_test_fake": int((te & (y == 1)).sum()),
                "note": note,
            }
            if head is not None:
                try:
                    table = per_generator_ap(
                        y[te],
                        head.decision_function(X[te]),
                        meta["generator"].to_numpy()[te],
                        pairing=pairing,
                        group=groups_all[te],
                        n_boot=n_boot,
                        seed=seed,
                        what=f"split {test_split!r} of test group {test_group.name!r}",
                        pairs=meta["pair_id"].to_numpy()[te] if "pair_id" in meta else None,
                    )
                    m = table[table["metric"] == "mAP"].iloc[0]
                    row.update(mAP=m["value"], ci_low=m["ci_low"], ci_high=m["ci_high"])
                    row["note"] = m["note"]
                except MetricsError as exc:
                    row["note"] = str(exc)
            rows.append(row)
    columns = [
        "kind",
        "train_group",
        "test_group",
        "train_generators",
        "test_generators",
        "mAP",
        "ci_low",
        "ci_high",
        "n_train_real",
        "n_train_fake",
        "n_test_real",
        "n_test_fake",
        "note",
    ]
    return pd.DataFrame(rows, columns=columns)


def _gen_label(group: Group) -> str:
    if group.source is not None:
        return f"source:{group.source}"
    return "all" if group.generators is None else "+".join(group.generators)


def workspace_transfer_matrix(
    workspace,
    train_groups,
    test_groups="each",
    *,
    head_type: str = "linear",
    backbone_id: str | None = None,
    seed: int = 0,
    **kwargs,
) -> pd.DataFrame:
    """``transfer_matrix`` on a workspace's embeddings (splits made first when missing)."""
    tap = get_head_type(head_type).tap
    backbone_id = resolve_backbone_id(workspace, tap, backbone_id)
    ensure_splits(workspace, seed=seed)
    meta, X = workspace.dataset(backbone_id, tap)
    if meta.empty:
        raise TrainError(f"{workspace.path}: no labelled images with {tap} embeddings")
    return transfer_matrix(
        meta,
        X,
        train_groups,
        test_groups,
        head_type=head_type,
        backbone_id=backbone_id,
        seed=seed,
        workspace=workspace,
        **kwargs,
    )


def _finite_number(value) -> bool:
    """A finite float (NaN, None and missing values from JSON are not)."""
    try:
        return bool(np.isfinite(float(value)))
    except (TypeError, ValueError):
        return False


def matrix_table(result: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """The transfer result pivoted to train x test cells ``"0.93 [0.88, 0.97]"`` for display."""
    if result.empty:
        return pd.DataFrame()

    def cell(row) -> str:
        if not _finite_number(row["mAP"]):
            return "n/a"
        if _finite_number(row["ci_low"]):
            return (
                f"{row['mAP']:.{digits}f} [{row['ci_low']:.{digits}f}, {row['ci_high']:.{digits}f}]"
            )
        return f"{row['mAP']:.{digits}f}"

    cells = result.assign(cell=result.apply(cell, axis=1))
    if (result["kind"] == "loo").all():
        return cells.set_index("test_group")[["train_group", "cell"]].rename(
            columns={"cell": "mAP [95% CI]"}
        )
    table = cells.pivot(index="train_group", columns="test_group", values="cell")
    table = table.reindex(index=list(dict.fromkeys(result["train_group"])))
    return table[list(dict.fromkeys(result["test_group"]))]


__all__ = [
    "UNKNOWN_GENERATOR",
    "Group",
    "TrainError",
    "TrainResult",
    "TrainingCancelled",
    "fit_head",
    "label_counts",
    "matrix_table",
    "parse_groups",
    "register_head_inputs",
    "resolve_backbone_id",
    "train_head",
    "transfer_matrix",
    "workspace_transfer_matrix",
]
