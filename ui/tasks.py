"""The functions background jobs run (see ``ui.jobs``): each opens its own workspace, calls
the library with progress and cancel callbacks, and returns a plain summary.

No Streamlit import: the jobs run outside any script run.
"""

from __future__ import annotations

from ui.jobs import Job

SMALL_DATASET = 400  # below this many files, decode in the job's own thread (no worker forks)


def extract_job(
    job: Job,
    workspace_path: str,
    dataset_path: str,
    backbone,
    ray_address: str | None = None,
    spec=None,
) -> dict:
    """Embed a dataset (folder or manifest) into a workspace; returns the embed summary.

    Finished batches are committed as they come, so a cancelled job keeps them. Labelled
    images without a split of their own get the workspace's seeded split afterwards. With
    ``ray_address`` the work runs on that Ray cluster (``detector.distributed``), the actors
    building the backbone from ``spec`` (``ui.settings.BackboneSpec``); finished shards are
    kept on Cancel the same way.
    """
    from detector.datasets import load_dataset
    from detector.extract import default_workers, embed_dataset
    from detector.store import Workspace

    job.update(0.0, "reading the dataset")
    dataset = load_dataset(dataset_path)
    workers = 0 if len(dataset) < SMALL_DATASET else default_workers()

    def progress(done: int, total: int) -> None:
        job.update(done / total if total else 1.0, f"{done:,} of {total:,} new images embedded")

    with Workspace(workspace_path) as ws:
        if ray_address:
            from detector.distributed import BackboneSpec, RayOptions, embed_dataset_ray

            job.update(0.0, f"connecting to the Ray cluster at {ray_address}")
            summary = embed_dataset_ray(
                dataset,
                ws,
                backbone,
                BackboneSpec(spec.model, spec.pretrained, spec.precision, device=spec.device),
                RayOptions(address=ray_address),
                progress=progress,
                should_stop=job.should_stop,
            )
        else:
            summary = embed_dataset(
                dataset,
                ws,
                backbone,
                workers=workers,
                progress=progress,
                should_stop=job.should_stop,
            )
        result = summary.as_dict()
        result["dataset"] = str(dataset.root)
        result["cancelled"] = job.cancel_requested
        try:
            from detector.splits import ensure_splits

            job.update(None, "assigning the seeded split to images without one")
            result["splits"] = ensure_splits(ws)
        except ImportError:  # splits module not installed: images keep their own split
            result["splits"] = None
    return result


def train_job(job: Job, workspace_path: str, backbone_id: str, options: dict) -> dict:
    """Train a head on the workspace through the library and save it; returns its card.

    ``options``: head_type, name, train_split, val_split, plus hyperparameters. Each epoch's
    losses are appended to ``job.records`` for the live curves.
    """
    from detector.store import Workspace
    from ui.training import train_head

    with Workspace(workspace_path) as ws:
        return train_head(job, ws, backbone_id, dict(options))


def safe_name(text: str) -> str:
    """A head name safe as a file name: letters, digits, ``-`` and ``_``."""
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in text.strip())
    return cleaned.strip("_") or "head"


def transfer_job(
    job: Job, workspace_path: str, backbone_id: str, head_type: str, pairing: str
) -> dict:
    """Train one head per generator (and one on all), test on each generator: the transfer
    matrix of ``detector.train.workspace_transfer_matrix``, stored in the workspace."""
    import time

    from detector.store import Workspace
    from detector.train import generators_in, workspace_transfer_matrix
    from ui.analysis import TRANSFER_NAMESPACE, transfer_key

    with Workspace(workspace_path) as ws:
        meta = ws.images(with_errors=False)
        gens = generators_in(meta[meta["label"].notna()])
        if not gens:
            from detector.errors import CueLensError

            raise CueLensError("the transfer matrix needs synthetic images with named generators")
        job.update(0.1, f"training {len(gens) + 1} heads (one per generator, one on all)")
        with _cancel_between_steps(job):
            table = workspace_transfer_matrix(
                ws,
                ",".join([*gens, "all"]),
                "each",
                head_type=head_type,
                backbone_id=backbone_id,
                pairing=pairing,
            )
        doc = {
            "created": time.time(),
            "n_images": len(meta),
            "head_type": head_type,
            "pairing": pairing,
            "table": json_records(table),
        }
        ws.put_json(TRANSFER_NAMESPACE, transfer_key(backbone_id, head_type, pairing), doc)
    return doc


def json_records(table) -> list[dict]:
    """A DataFrame as JSON-safe records (NaN -> None)."""
    import math

    out = []
    for rec in table.to_dict(orient="records"):
        out.append(
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()}
        )
    return out


def _cancel_between_steps(job: Job):
    from ui.training import cancel_between_steps

    return cancel_between_steps(job)


# -- robustness ------------------------------------------------------------------------------


def robustness_job(
    job: Job, workspace_path: str, head, backbone, perturbations: list[str], pairing: str
) -> dict:
    """``detector.perturb.robustness_sweep`` on the workspace (split ``auto``), kept there.

    Every perturbed image is embedded once and committed batch by batch, so a cancelled
    sweep keeps what it embedded and a second sweep only reads it. ``head`` and ``backbone``
    are the shared, read-only objects of the session that started the job.
    """
    from detector.perturb import parse_perturbations, robustness_sweep
    from detector.store import Workspace

    items = parse_perturbations(perturbations)
    position = {p.name: i for i, p in enumerate(items)}

    def progress(name: str, done: int, total: int) -> None:
        share = done / total if total else 1.0
        job.update(
            (position.get(name, 0) + share) / len(items),
            f"{name}: {done:,} of {total:,} images embedded"
            if total
            else f"{name}: already embedded, scoring",
        )
        job.check()

    with Workspace(workspace_path) as ws:
        meta = ws.images(with_errors=False)
        labelled = meta[meta["label"].notna()]
        evaluated = (
            labelled[labelled["split"] == "test"]
            if (labelled["split"] == "test").any()
            else labelled
        )
        workers = 0 if len(evaluated) < SMALL_DATASET else None
        job.update(0.0, f"{len(items)} perturbations of {len(evaluated):,} images")
        report = robustness_sweep(
            ws,
            head,
            items,
            backbone=backbone,
            split="auto",
            pairing=pairing,
            workers=workers,
            progress=progress,
            should_stop=job.should_stop,
        )
    return {
        "head": report.head,
        "split": report.split,
        "pairing": report.pairing,
        "embedded": report.embedded,
        "errors": report.errors,
        "seconds": report.seconds,
    }


# -- the bias audit ---------------------------------------------------------------------------

AUDIT_NAMESPACE = "dashboard_audit"
AUDIT_KEY = "latest"
INLINE_AUDIT_FILES = 500  # up to this many labelled files the page audits at once (~1-2 s)


def audit_fingerprint(images) -> str:
    """What the audit of a workspace depends on: its labelled images (hash, path, label,
    generator, source, split) as a short digest. Uploads (unlabelled) do not change it."""
    import hashlib

    import pandas as pd

    labelled = images[images["label"].notna() & images["error"].isna()]
    columns = ["hash", "path", "label", "generator", "source", "split"]
    rows = pd.util.hash_pandas_object(
        labelled[columns].astype(str).sort_values("hash"), index=False
    )
    return hashlib.sha256(rows.to_numpy().tobytes()).hexdigest()[:16]


def run_audit(ws, fingerprint: str, *, progress=None) -> dict:
    """Audit the workspace's labelled files (``detector.audit.audit``) and keep the result in
    the workspace under ``fingerprint``; returns the stored document."""
    import time

    from detector.audit import audit

    report = audit(ws, progress=progress)
    doc = {
        "fingerprint": fingerprint,
        "created": time.time(),
        "report": report.as_dict(),
        "images": json_records(report.images),
    }
    ws.put_json(AUDIT_NAMESPACE, AUDIT_KEY, doc)
    return doc


def audit_job(job: Job, workspace_path: str, fingerprint: str) -> dict:
    """``run_audit`` in the background: progress per 100 files, Cancel between them (a
    cancelled audit stores nothing; the previous one stays)."""
    from detector.store import Workspace

    def progress(done: int, total: int) -> None:
        job.update(done / total if total else 1.0, f"{done:,} of {total:,} file headers read")
        job.check()

    with Workspace(workspace_path) as ws:
        doc = run_audit(ws, fingerprint, progress=progress)
    return {"fingerprint": fingerprint, "images": doc["report"]["images"]}


def audit_from_doc(doc: dict):
    """The ``detector.audit.AuditReport`` of a document written by ``run_audit``."""
    import pandas as pd

    from detector.audit import NUMERIC_PROPERTIES, PROPERTIES, AuditReport

    report = doc["report"]
    images = pd.DataFrame(
        doc.get("images") or [],
        columns=[
            "path", "label", "class", "generator", "source", "split", *PROPERTIES, "declared_by",
        ],
    )  # fmt: skip
    for name in NUMERIC_PROPERTIES:
        images[name] = pd.to_numeric(images[name], errors="coerce").astype(float)
    images["label"] = images["label"].astype(int)
    separation_columns = [
        "scope", "group", "property", "auc", "direction", "real_value", "synthetic_value",
        "n_real", "n_synthetic", "one_class_only", "flagged",
    ]  # fmt: skip
    separations = pd.DataFrame(report.get("separations") or [], columns=separation_columns)
    separations["flagged"] = separations["flagged"].astype(bool)
    return AuditReport(
        source=report["source"],
        images=images,
        summary=pd.DataFrame(report.get("summary") or []),
        separations=separations,
        warnings=list(report.get("warnings") or []),
        errors=list(report.get("errors") or []),
        threshold=float(report.get("threshold", 0.8)),
        min_per_class=int(report.get("min_per_class", 3)),
    )


# -- interpretation stability ----------------------------------------------------------------


def stability_job(job: Job, workspace_path: str, backbone_id: str, head_type: str, seeds: int):
    """Retrain ``head_type`` ``seeds`` times and store its stability
    (``concepts.stability.run_stability``); Cancel stops between fits and stores nothing."""
    from concepts.stability import run_stability
    from detector.store import Workspace

    def progress(message: str, fraction: float) -> None:
        job.check()
        job.update(fraction, message)

    with Workspace(workspace_path) as ws:
        result = run_stability(
            ws, head_type, seeds=seeds, backbone_id=backbone_id, progress=progress
        )
    return {"summary": result["summary"], "seconds": result["seconds"]}
