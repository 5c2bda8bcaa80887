"""Small adapters between the pages and the library (``detector``, ``concepts``).

Each function here only arranges library calls for one dashboard need (listing the heads the
sidebar offers, loading the chosen one, scoring a workspace) and holds no model logic. Where
an adapter stands in for a library function that does not exist yet, its docstring says so.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from detector import audit as audit_wording
from ui import resources
from ui.context import HeadOption

IMPORTED_DIR = "imported"  # WS/heads/imported: head files imported through the Data page
HEAD_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")


# -- heads -----------------------------------------------------------------------------------


def imported_dir(workspace) -> Path:
    """Where the Data page stores imported head files of a workspace."""
    return Path(workspace.heads_dir) / IMPORTED_DIR


@st.cache_data(show_spinner=False, ttl=30)
def _released_rows() -> list[dict]:
    from detector.released import released_rows

    return released_rows()


def head_options(workspace, backbone_id: str) -> list[HeadOption]:
    """Released heads, the workspace's trained heads and its imported files, in that order."""
    from detector.heads import list_workspace_heads, read_card

    options: list[HeadOption] = []
    for row in _released_rows():
        options.append(
            HeadOption(
                key=f"released:{row['name']}",
                kind="released",
                name=row["name"],
                location=row["location"],
                backbone_id=row.get("backbone_id"),
                head_type=row.get("head_type"),
                tap=row.get("tap"),
                training_data=row.get("training_data"),
                available=True,  # downloadable; a failed fetch is reported when chosen
                note="default" if row.get("default") else ("cached" if row["available"] else ""),
            )
        )
    for row in list_workspace_heads(workspace):
        options.append(
            HeadOption(
                key=f"workspace:{row['name']}",
                kind="workspace",
                name=row["name"],
                location=row["location"],
                backbone_id=row.get("backbone_id"),
                head_type=row.get("head_type"),
                tap=row.get("tap"),
                training_data=row.get("training_data"),
                available=bool(row.get("available")),
                demo=bool(row.get("demo")),
                note=row.get("error") or "",
            )
        )
    folder = imported_dir(workspace)
    files = (
        sorted(
            p
            for p in folder.iterdir()
            if p.suffix in HEAD_FILE_SUFFIXES and not p.name.startswith(".")
        )
        if folder.is_dir()
        else []
    )
    for path in files:
        card, note = {}, ""
        if path.suffix == ".safetensors":
            try:
                card = read_card(path)
            except Exception as exc:  # listed with its problem instead of hidden
                note = str(exc)
        options.append(
            HeadOption(
                key=f"imported:{path.name}",
                kind="imported",
                name=path.name,
                location=str(path),
                # released-format checkpoints carry no card: they are heads for
                # ViT-L-14-336-quickgelu/openai
                backbone_id=card.get("backbone_id") if card else _released_backbone(path),
                head_type=card.get("head_type"),
                tap=card.get("tap"),
                available=not note,
                demo=bool(card.get("demo")),
                note=note,
            )
        )
    return options


def _released_backbone(path: Path) -> str | None:
    if path.suffix == ".safetensors":
        return None
    from detector.released import BACKBONE_ID

    return BACKBONE_ID


def load_head_option(option: HeadOption):
    """The loaded head of a sidebar option (cached by file hash; released ones by name)."""
    if option.kind == "released":
        return resources.released_head(option.name)
    return resources.head(option.location)


def head_card(head, option: HeadOption | None = None) -> dict:
    """The model card of a loaded head (released heads get theirs from the import)."""
    from detector.heads import head_card as library_card

    card = library_card(head)
    if option is not None:
        card.setdefault("name", option.name)
        card.setdefault("source", option.kind)
    return card


def head_key(head) -> str:
    """A stable id of a loaded head's weights (for cache keys)."""
    from concepts.attribution import head_fingerprint

    return head_fingerprint(head)


def save_imported_head(workspace, name: str, data: bytes) -> Path:
    """Store an uploaded head file under WS/heads/imported after checking that it loads.

    Raises the library's ``HeadError`` (a readable message) when the file is not a head.
    """
    from detector.heads import HeadError, load_head

    safe = Path(name).name
    if Path(safe).suffix not in HEAD_FILE_SUFFIXES:
        raise HeadError(f"{safe}: not a head file (expected {', '.join(HEAD_FILE_SUFFIXES)})")
    folder = imported_dir(workspace)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".import-{os.getpid()}-{safe}"  # keeps the suffix the loader dispatches on
    tmp.write_bytes(data)
    try:
        load_head(tmp)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    target = folder / safe
    os.replace(tmp, target)
    return target


# -- workspace tables ------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=8)
def _images_table(_ws, path: str, version: int) -> pd.DataFrame:
    return _ws.images()


def images_table(workspace) -> pd.DataFrame:
    """``Workspace.images()`` (one row per unique image), re-read after any write."""
    return _images_table(workspace, str(workspace.path), resources.version(workspace))


def group_of(meta: pd.DataFrame) -> pd.Series:
    """``real`` for label 0, the generator (or ``unknown``) for label 1, ``unlabelled`` else."""
    gen = meta["generator"].astype("object").where(meta["generator"].notna(), "unknown")
    group = pd.Series(
        np.where(meta["label"].astype("Float64").fillna(-1) == 0, "real", gen), index=meta.index
    )
    return group.where(meta["label"].notna(), "unlabelled")


def counts_by_group_and_split(meta: pd.DataFrame) -> pd.DataFrame:
    """Images per group (rows: real first, then generators) and split (columns), with totals."""
    labelled = meta[meta["label"].notna()]
    if labelled.empty:
        return pd.DataFrame()
    table = pd.crosstab(group_of(labelled), labelled["split"].fillna("no split"))
    order = ["train", "val", "test"]
    cols = [c for c in order if c in table.columns] + [c for c in table.columns if c not in order]
    table = table[cols]
    table["total"] = table.sum(axis=1)
    rows = (["real"] if "real" in table.index else []) + sorted(
        r for r in table.index if r != "real"
    )
    return table.loc[rows].rename_axis(index="group", columns=None)


def dataset_preview(path) -> dict:
    """What a dataset folder or manifest holds, before embedding anything (no decoding)."""
    from detector.datasets import load_dataset

    dataset = load_dataset(path)
    meta = pd.DataFrame(
        {
            "label": pd.array([r.label for r in dataset.records], dtype="Int64"),
            "generator": [r.generator for r in dataset.records],
            "split": [r.split for r in dataset.records],
        }
    )
    return {
        "source": str(path),
        "root": str(dataset.root),
        "kind": {"folder": "Folder", "manifest": "Manifest", "files": "File"}[dataset.kind],
        "records": len(dataset),
        "real": int((meta["label"] == 0).sum()),
        "synthetic": int((meta["label"] == 1).sum()),
        "errors": list(dataset.errors),
        "table": counts_by_group_and_split(meta) if len(meta) else pd.DataFrame(),
    }


# -- training --------------------------------------------------------------------------------

HEAD_TYPES = {
    "linear": "linear probe",
    "orthogonal": "de-correlated head",
    "concept": "concept bottleneck",
}


def training_available() -> bool:
    """Whether the training module of the library is installed."""
    import importlib.util

    return importlib.util.find_spec("detector.train") is not None


# -- the bias audit --------------------------------------------------------------------------
# The audit's wording lives only in detector.audit (the CLI prints the same text); the Data
# page reaches it through these names.

audit_scope_label = audit_wording.scope_label
audit_value_text = audit_wording.value_text
audit_row_text = audit_wording.separation_sentence
audit_display_table = audit_wording.display_table
