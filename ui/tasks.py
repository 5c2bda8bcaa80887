"""The functions background jobs run (see ``ui.jobs``): each opens its own workspace, calls
the library with progress and cancel callbacks, and returns a plain summary.

No Streamlit import: the jobs run outside any script run.
"""

from __future__ import annotations

from dataclasses import replace

from concepts.stability import run_stability
from detector.audit import audit
from detector.datasets import load_dataset
from detector.errors import CueLensError
from detector.extract import default_workers, embed_dataset
from detector.perturb import parse_perturbations, robustness_sweep
from detector.results import save_audit, save_transfer
from detector.splits import ensure_splits
from detector.store import Workspace
from detector.train import generators_in, workspace_transfer_matrix
from ui.jobs import Job
from ui.training import cancel_between_steps, train_head

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
    job.update(0.0, "reading the dataset")
    dataset = load_dataset(dataset_path)
    workers = 0 if len(dataset) < SMALL_DATASET else default_workers()

    def progress(done: int, total: int) -> None:
        job.update(done / total if total else 1.0, f"{done:,} of {total:,} new images embedded")

    with Workspace(workspace_path) as ws:
        if ray_address:
            # lazy: the Ray path is rarely used and pulls in the distributed engine
            from detector.distributed import RayOptions, embed_dataset_ray

            job.update(0.0, f"connecting to the Ray cluster at {ray_address}")
            summary = embed_dataset_ray(
                dataset,
                ws,
                backbone,
                replace(spec, draft=False),  # the Ray engine always decodes in full
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
        job.update(None, "assigning the seeded split to images without one")
        result["splits"] = ensure_splits(ws)
    return result


def train_job(job: Job, workspace_path: str, backbone_id: str, options: dict) -> dict:
    """Train a head on the workspace through the library and save it; returns its card.

    ``options``: head_type, name, train_split, val_split, plus hyperparameters. Each epoch's
    losses are appended to ``job.records`` for the live curves.
    """
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
    matrix of ``detector.train.workspace_transfer_matrix``, kept in the workspace
    (``detector.results``, where ``python -m detector matrix`` keeps its matrices too)."""
    with Workspace(workspace_path) as ws:
        meta = ws.images(with_errors=False)
        gens = generators_in(meta[meta["label"].notna()])
        if not gens:
            raise CueLensError("the transfer matrix needs synthetic images with named generators")
        job.update(0.1, f"training {len(gens) + 1} heads (one per generator, one on all)")
        train = ",".join([*gens, "all"])
        with cancel_between_steps(job):
            table = workspace_transfer_matrix(
                ws,
                train,
                "each",
                head_type=head_type,
                backbone_id=backbone_id,
                pairing=pairing,
            )
        return save_transfer(
            ws,
            table,
            backbone_id=backbone_id,
            head_type=head_type,
            pairing=pairing,
            train=train,
            test="each",
        )


# -- robustness ------------------------------------------------------------------------------


def robustness_job(
    job: Job, workspace_path: str, head, backbone, perturbations: list[str], pairing: str
) -> dict:
    """``detector.perturb.robustness_sweep`` on the workspace (split ``auto``), kept there.

    Every perturbed image is embedded once and committed batch by batch, so a cancelled
    sweep keeps what it embedded and a second sweep only reads it. ``head`` and ``backbone``
    are the shared, read-only objects of the session that started the job.
    """
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

INLINE_AUDIT_FILES = 500  # up to this many labelled files the page audits at once (~1-2 s)


def run_audit(ws, fingerprint: str, *, progress=None) -> dict:
    """Audit the workspace's labelled files (``detector.audit.audit``) and keep the result in
    the workspace (``detector.results``, where ``python -m detector audit WS`` keeps it too)
    under ``fingerprint``; returns the stored data."""
    return save_audit(ws, audit(ws, progress=progress), fingerprint)


def audit_job(job: Job, workspace_path: str, fingerprint: str) -> dict:
    """``run_audit`` in the background: progress per 100 files, Cancel between them (a
    cancelled audit stores nothing; the previous one stays)."""

    def progress(done: int, total: int) -> None:
        job.update(done / total if total else 1.0, f"{done:,} of {total:,} file headers read")
        job.check()

    with Workspace(workspace_path) as ws:
        doc = run_audit(ws, fingerprint, progress=progress)
    return {"fingerprint": fingerprint, "images": doc["report"]["images"]}


# -- interpretation stability ----------------------------------------------------------------


def stability_job(job: Job, workspace_path: str, backbone_id: str, head_type: str, seeds: int):
    """Retrain ``head_type`` ``seeds`` times and store its stability
    (``concepts.stability.run_stability``); Cancel stops between fits and stores nothing."""

    def progress(message: str, fraction: float) -> None:
        job.check()
        job.update(fraction, message)

    with Workspace(workspace_path) as ws:
        result = run_stability(
            ws, head_type, seeds=seeds, backbone_id=backbone_id, progress=progress
        )
    return {"summary": result["summary"], "seconds": result["seconds"]}
