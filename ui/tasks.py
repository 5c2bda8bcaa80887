"""The functions background jobs run (see ``ui.jobs``): each opens its own workspace, calls
the library with progress and cancel callbacks, and returns a plain summary.

No Streamlit import: the jobs run outside any script run.
"""

from __future__ import annotations

from ui.jobs import Job

SMALL_DATASET = 400  # below this many files, decode in the job's own thread (no worker forks)


def extract_job(job: Job, workspace_path: str, dataset_path: str, backbone) -> dict:
    """Embed a dataset (folder or manifest) into a workspace; returns the embed summary.

    Finished batches are committed as they come, so a cancelled job keeps them. Labelled
    images without a split of their own get the workspace's seeded split afterwards.
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
        summary = embed_dataset(
            dataset, ws, backbone, workers=workers, progress=progress, should_stop=job.should_stop
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
    from ui.training import _step_counter

    return _step_counter(job)
