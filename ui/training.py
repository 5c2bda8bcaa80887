"""Adapter: train a head from a dashboard job, with live loss curves, progress and cancel.

``detector.train.train_head(..., epoch_callback=fn)`` calls ``fn`` once per epoch with
``{"epoch", "train_loss", "val_loss", "best_epoch"}``. Each record is appended to the job's
records as it comes (the Data page redraws the curves every second), the progress bar follows
the epochs (up to ``max_epochs``; early stopping usually ends sooner), and Cancel is honoured
by raising ``JobCancelled`` from the callback: ``train_head`` lets it propagate and saves
nothing, so a cancelled training leaves no head behind (the page says so).

Within an epoch (a large workspace takes a few hundred optimiser steps per epoch), Cancel is
also honoured between optimiser steps by a torch post-step hook of the job's own thread,
removed afterwards (:func:`cancel_between_steps`, used by the transfer matrix too).
"""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager

from torch.optim.optimizer import register_optimizer_step_post_hook

from detector import train
from detector.heads import get_head_type
from ui.jobs import Job, JobCancelled


@contextmanager
def cancel_between_steps(job: Job, *, report: bool = True):
    """Count optimiser steps made by this thread and raise ``JobCancelled`` on Cancel.

    With ``report``, every 20th step updates the job's message (for work without epochs).
    """
    me = threading.get_ident()
    steps = [0]

    def hook(optimizer, args, kwargs):
        if threading.get_ident() != me:
            return
        steps[0] += 1
        if report and steps[0] % 20 == 0:
            job.update(None, f"training: {steps[0]:,} optimisation steps")
        if job.cancel_requested:
            raise JobCancelled()

    handle = register_optimizer_step_post_hook(hook)
    try:
        yield steps
    finally:
        handle.remove()


def _max_epochs(head_type: str, options: dict) -> int:
    if options.get("max_epochs"):
        return int(options["max_epochs"])
    return int(getattr(get_head_type(head_type)(), "max_epochs", 100))


def epoch_message(record: dict) -> str:
    """One line about an epoch for the progress bar."""
    text = f"training: epoch {record['epoch']}, train loss {record['train_loss']:.4f}"
    val = record.get("val_loss")
    if val is not None and math.isfinite(val):
        text += f", validation loss {val:.4f} (best epoch {record.get('best_epoch')})"
    return text


def train_head(job: Job, workspace, backbone_id: str, options: dict) -> dict:
    """Train, threshold and save a head as ``options`` say; returns ``{"path", "card"}``.

    ``options``: head_type, name, train_split, val_split, plus hyperparameters.
    """
    head_type = options.pop("head_type")
    name = options.pop("name")
    if head_type == "concept":
        # Registers the concept head's directions with detector.train; loads the text side of
        # concepts (vocabularies, text encoder), needed for this head type only.
        import concepts.bottleneck  # noqa: F401
    max_epochs = _max_epochs(head_type, options)
    kwargs = {
        "backbone_id": backbone_id,
        "train_split": options.pop("train_split", "train"),
        "val_split": options.pop("val_split", None) or "val",
        "out": name,
    }
    if options:
        kwargs["params"] = options

    def on_epoch(record: dict) -> None:
        job.add_record(record)
        job.update(0.05 + 0.9 * min(1.0, record["epoch"] / max_epochs), epoch_message(record))
        job.check()

    job.update(0.02, f"training a {head_type} head on {backbone_id}")
    with cancel_between_steps(job, report=False):
        result = train.train_head(workspace, head_type, epoch_callback=on_epoch, **kwargs)
    job.update(1.0, f"saved {result.path.name if result.path else name}")
    return {"path": str(result.path) if result.path else None, "card": result.card}
