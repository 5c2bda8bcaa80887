"""Small adapters between the pages and the library (``detector``, ``concepts``).

Each function here only arranges library calls for one dashboard need (listing the heads the
sidebar offers, loading the chosen one, scoring a workspace) and holds no model logic. Where
an adapter stands in for a library function that does not exist yet, its docstring says so.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from concepts.attribution import head_fingerprint
from detector import audit as audit_wording
from detector import catalog
from detector.catalog import HeadEntry
from detector.groups import REAL, UNLABELLED, image_groups
from detector.heads import head_card as library_card
from ui import resources

# -- heads -----------------------------------------------------------------------------------

save_imported_head = catalog.save_imported_head  # the Data page's import of a head file


def head_options(workspace) -> list[HeadEntry]:
    """The head picker's entries: ``detector.catalog.list_heads`` (released heads, then the
    workspace's trained heads and its imported files), the same listing as the CLI's."""
    return catalog.list_heads(workspace)


def load_head_option(option: HeadEntry):
    """The loaded head of a picker entry (cached by file hash; released ones by name)."""
    if option.kind == "released":
        return resources.released_head(option.name)
    return resources.head(option.location)


def head_card(head, option: HeadEntry | None = None) -> dict:
    """The model card of a loaded head (released heads get theirs from the import)."""
    card = library_card(head)
    if option is not None:
        card.setdefault("name", option.name)
        card.setdefault("source", option.kind)
    return card


def head_key(head) -> str:
    """A stable id of a loaded head's weights (for cache keys)."""
    return head_fingerprint(head)


# -- workspace tables ------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=8)
def _images_table(_ws, path: str, version: int) -> pd.DataFrame:
    return _ws.images()


def images_table(workspace) -> pd.DataFrame:
    """``Workspace.images()`` (one row per unique image), re-read after any write."""
    return _images_table(workspace, str(workspace.path), resources.version(workspace))


def group_of(meta: pd.DataFrame) -> pd.Series:
    """``real`` for label 0, the generator (or ``unknown``) for label 1, ``unlabelled`` else
    (``detector.groups.image_groups``)."""
    return pd.Series(image_groups(meta, unlabelled=UNLABELLED), index=meta.index)


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
    rows = ([REAL] if REAL in table.index else []) + sorted(r for r in table.index if r != REAL)
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
