"""Results kept in a workspace: transfer matrices, bias audits and robustness sweeps.

The CLI (``matrix``, ``audit``, ``robustness``) and the dashboard both write and read them
here, so a result computed by one shows in the other.

Naming scheme
-------------
Every result is one JSON document in the workspace's ``blobs`` table, namespace
``results``, key ``KIND:PART|PART|...``, where the parts are fixed per kind
(:data:`KEY_PARTS`):

- ``transfer:BACKBONE|HEAD_TYPE|PAIRING`` (one matrix per backbone, head type, pairing;
  the last one computed wins, its document says which train and test groups it used);
- ``audit:workspace`` (the audit of the workspace's labelled images, with the fingerprint
  of the images it read, see :func:`audit_fingerprint`);
- ``robustness:HEAD|BACKBONE|SPLIT|PAIRING`` (``SPLIT`` is ``all`` for every image).

The document is ``{"kind", "version", "key": {part: value}, "created", "data"}``.
``version`` is :data:`VERSION`; a document of another version (written by a newer or an
older release) is ignored when read, as if absent, so it is computed again.

Documents of earlier releases (namespaces ``dashboard_transfer``, ``dashboard_audit`` and
``robustness``) are read when no current document exists (migration on read; nothing is
rewritten), so results computed before still show.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import pandas as pd

from detector.audit import AuditReport
from detector.metrics import table_records

NAMESPACE = "results"
VERSION = 1
KEY_PARTS = {
    "transfer": ("backbone", "head_type", "pairing"),
    "audit": ("scope",),
    "robustness": ("head", "backbone", "split", "pairing"),
}
WORKSPACE_SCOPE = "workspace"  # the only audit scope: the workspace's own labelled images
# namespace of the same documents before this module (their keys: the parts joined by "|")
_LEGACY_NAMESPACE = {
    "transfer": "dashboard_transfer",
    "audit": "dashboard_audit",
    "robustness": "robustness",
}


class ResultKeyError(ValueError):
    """A result kind or key part this module does not know."""


# -- the naming scheme -----------------------------------------------------------------------


def _parts(kind: str, parts: dict) -> list[str]:
    if kind not in KEY_PARTS:
        raise ResultKeyError(f"unknown result kind {kind!r} (known: {', '.join(KEY_PARTS)})")
    names = KEY_PARTS[kind]
    if set(parts) != set(names):
        raise ResultKeyError(
            f"a {kind} result is keyed by {', '.join(names)}; got {', '.join(sorted(parts))}"
        )
    values = []
    for name in names:
        value = "all" if parts[name] is None else str(parts[name])
        if not value or "|" in value:
            raise ResultKeyError(f"{kind} key part {name}={value!r} is empty or contains '|'")
        values.append(value)
    return values


def result_key(kind: str, **parts) -> str:
    """The key of a result: ``KIND:PART|PART|...`` (see the module docstring)."""
    return f"{kind}:" + "|".join(_parts(kind, parts))


def save_result(workspace, kind: str, data: dict, **parts) -> dict:
    """Store ``data`` (JSON-safe) as the ``kind`` result keyed by ``parts``; returns the
    document written."""
    values = _parts(kind, parts)
    doc = {
        "kind": kind,
        "version": VERSION,
        "key": dict(zip(KEY_PARTS[kind], values, strict=True)),
        "created": time.time(),
        "data": data,
    }
    workspace.put_json(NAMESPACE, result_key(kind, **parts), doc)
    return doc


def _current(doc, kind: str) -> dict | None:
    if not isinstance(doc, dict) or doc.get("kind") != kind or doc.get("version") != VERSION:
        return None
    return doc if isinstance(doc.get("data"), dict) else None


def load_result(workspace, kind: str, **parts) -> dict | None:
    """The ``kind`` result keyed by ``parts`` (its document), else one of an earlier release
    wrapped as a document, else None."""
    values = _parts(kind, parts)
    doc = _current(workspace.get_json(NAMESPACE, result_key(kind, **parts)), kind)
    if doc is not None:
        return doc
    return _legacy(workspace, kind, "|".join(values))


def list_results(workspace, kind: str, **where) -> list[dict]:
    """Every stored ``kind`` result whose key parts equal ``where`` (all when empty), current
    documents first replacing earlier-release ones of the same key; in key order."""
    if kind not in KEY_PARTS:
        raise ResultKeyError(f"unknown result kind {kind!r} (known: {', '.join(KEY_PARTS)})")
    found: dict[str, dict] = {}
    prefix = f"{kind}:"
    for key in workspace.blob_keys(NAMESPACE):
        if key.startswith(prefix):
            doc = _current(workspace.get_json(NAMESPACE, key), kind)
            if doc is not None:
                found[key[len(prefix) :]] = doc
    for key in workspace.blob_keys(_LEGACY_NAMESPACE[kind]):
        if key not in found:
            doc = _legacy(workspace, kind, key)
            if doc is not None:
                found[key] = doc
    wanted = {k: "all" if v is None else str(v) for k, v in where.items()}
    return [
        found[k]
        for k in sorted(found)
        if all(found[k]["key"].get(name) == value for name, value in wanted.items())
    ]


def _legacy(workspace, kind: str, joined: str) -> dict | None:
    """A document of the namespaces used before this module, in the current form."""
    if kind == "audit":  # the dashboard kept one audit, under "latest"
        if joined != WORKSPACE_SCOPE:
            return None
        old = workspace.get_json(_LEGACY_NAMESPACE[kind], "latest")
        if not isinstance(old, dict) or "report" not in old:
            return None
        data = {k: old.get(k) for k in ("fingerprint", "report", "images")}
        values = [WORKSPACE_SCOPE]
    else:
        old = workspace.get_json(_LEGACY_NAMESPACE[kind], joined)
        values = joined.split("|")
        if not isinstance(old, dict) or len(values) != len(KEY_PARTS[kind]):
            return None
        data = old
    return {
        "kind": kind,
        "version": VERSION,
        "key": dict(zip(KEY_PARTS[kind], values, strict=True)),
        "created": float(old.get("created") or 0.0),
        "data": data,
        "legacy": True,
    }


# -- transfer matrices -----------------------------------------------------------------------


def save_transfer(
    workspace,
    table: pd.DataFrame,
    *,
    backbone_id: str,
    head_type: str,
    pairing: str,
    train: str,
    test: str,
    options: dict | None = None,
) -> dict:
    """Keep a transfer matrix (``detector.train.workspace_transfer_matrix``'s table); returns
    its data: created, n_images (images of the workspace), head_type, pairing, train, test,
    options and the table as records."""
    data = {
        "created": time.time(),
        "n_images": len(workspace.images(with_errors=False)),
        "backbone_id": backbone_id,
        "head_type": head_type,
        "pairing": pairing,
        "train": train,
        "test": test,
        "options": dict(options or {}),
        "table": table_records(table),
    }
    save_result(
        workspace, "transfer", data, backbone=backbone_id, head_type=head_type, pairing=pairing
    )
    return data


def stored_transfer(workspace, backbone_id: str, head_type: str, pairing: str) -> dict | None:
    """The data of the last transfer matrix kept for this backbone, head type and pairing."""
    doc = load_result(
        workspace, "transfer", backbone=backbone_id, head_type=head_type, pairing=pairing
    )
    return None if doc is None else doc["data"]


# -- bias audits -----------------------------------------------------------------------------


def audit_fingerprint(images: pd.DataFrame) -> str:
    """What the audit of a workspace depends on: its labelled images (hash, path, label,
    generator, source, split; ``Workspace.images()``) as a short digest. Uploads
    (unlabelled) do not change it."""
    labelled = images[images["label"].notna() & images["error"].isna()]
    columns = ["hash", "path", "label", "generator", "source", "split"]
    rows = pd.util.hash_pandas_object(
        labelled[columns].astype(str).sort_values("hash"), index=False
    )
    return hashlib.sha256(rows.to_numpy().tobytes()).hexdigest()[:16]


@dataclass
class StoredAudit:
    """The audit kept in a workspace: its report and what it was computed on."""

    report: AuditReport
    fingerprint: str
    created: float


def save_audit(workspace, report: AuditReport, fingerprint: str | None = None) -> dict:
    """Keep the audit of ``workspace``'s own images; ``fingerprint`` defaults to that of its
    images now. Returns the data written (fingerprint, created, report, images)."""
    if fingerprint is None:
        fingerprint = audit_fingerprint(workspace.images())
    data = {
        "fingerprint": fingerprint,
        "created": time.time(),
        "report": report.as_dict(),
        "images": table_records(report.images),
    }
    save_result(workspace, "audit", data, scope=WORKSPACE_SCOPE)
    return data


def stored_audit(workspace) -> StoredAudit | None:
    """The last audit kept in the workspace (by the CLI or the dashboard), or None."""
    doc = load_result(workspace, "audit", scope=WORKSPACE_SCOPE)
    if doc is None:
        return None
    data = doc["data"]
    try:
        report = AuditReport.from_dict(data["report"], data.get("images"))
    except (KeyError, TypeError, ValueError):  # a damaged document: as if absent
        return None
    return StoredAudit(
        report,
        str(data.get("fingerprint") or ""),
        float(data.get("created") or doc.get("created") or 0.0),
    )
