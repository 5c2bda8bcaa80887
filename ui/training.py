"""Adapter: train a head from a dashboard job, with progress, cancel and loss curves.

``detector.train.train_head`` trains, picks the threshold on validation and saves the head
with its card; it takes no per-epoch callback. Until it does, this adapter

- counts optimiser steps of the job's own thread (a torch optimiser post-step hook, removed
  afterwards) to show that training advances and to honour Cancel between steps (a cancelled
  head is not saved);
- publishes the loss curves the head records (``loss_curve_``, ``validation_loss_curve_``)
  as the job's records when training ends.

If the library grows an ``epoch_callback`` parameter, it is used instead and the curves are
live (one record per epoch).
"""

from __future__ import annotations

import inspect
import threading
from contextlib import contextmanager

from ui.jobs import Job, JobCancelled


@contextmanager
def _step_counter(job: Job):
    """Count optimiser steps made by this thread; raise JobCancelled on cancel."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    me = threading.get_ident()
    steps = [0]

    def hook(optimizer, args, kwargs):
        if threading.get_ident() != me:
            return
        steps[0] += 1
        if steps[0] % 20 == 0:
            job.update(None, f"training: {steps[0]:,} optimisation steps")
        if job.cancel_requested:
            raise JobCancelled()

    handle = register_optimizer_step_post_hook(hook)
    try:
        yield steps
    finally:
        handle.remove()


def _curves(head) -> list[dict]:
    train = list(getattr(head, "loss_curve_", None) or [])
    val = list(getattr(head, "validation_loss_curve_", None) or [])
    records = []
    for i, loss in enumerate(train):
        records.append(
            {
                "epoch": i + 1,
                "train_loss": float(loss),
                "val_loss": float(val[i]) if i < len(val) else None,
            }
        )
    return records


def train_head(job: Job, workspace, backbone_id: str, options: dict) -> dict:
    """Train, threshold and save a head as ``options`` say; returns ``{"path", "card"}``."""
    from detector import train

    head_type = options.pop("head_type")
    name = options.pop("name")
    kwargs = {
        "backbone_id": backbone_id,
        "train_split": options.pop("train_split", "train"),
        "val_split": options.pop("val_split", None) or "val",
        "out": name,
    }
    if options:
        kwargs["params"] = options
    live = "epoch_callback" in inspect.signature(train.train_head).parameters
    if live:

        def on_epoch(record: dict) -> None:
            job.add_record(record)
            job.check()

        kwargs["epoch_callback"] = on_epoch
    job.update(0.05, f"training a {head_type} head on {backbone_id}")
    with _step_counter(job):
        result = train.train_head(workspace, head_type, **kwargs)
    if not live:
        job.records = _curves(result.head)
    job.update(1.0, f"saved {result.path.name if result.path else name}")
    return {"path": str(result.path) if result.path else None, "card": result.card}
