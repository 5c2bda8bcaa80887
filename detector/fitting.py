"""The one training loop of every detector head: mini-batch epochs, early stopping on a
validation score with the best weights restored, and the per-epoch callback of the head
protocol (``detector.heads``).

A head's ``fit`` builds its parameters, its optimiser and two closures, then calls
:func:`fit_epochs`:

- ``train_step(idx) -> (loss, penalty)``: the training loss (a scalar tensor) of the batch of
  row indices ``idx``, and the value of any regulariser inside it (a float, for the record);
- ``validate() -> (val_loss, score)``: the validation loss reported for the epoch and the
  score early stopping minimises (the loss itself, or minus an AUROC).

Everything random is drawn from the head's own ``torch.Generator`` (seeded by
``random_state``) in the same order on every run, so a seed gives the same weights on one
machine and thread count; :func:`single_thread` fixes the thread count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

EpochCallback = Callable[[dict], None]


@dataclass
class FitHistory:
    """What a run of :func:`fit_epochs` did: epochs run, the epoch whose weights were kept,
    per-epoch training loss, validation loss and penalty, and the kept epoch's validation
    loss (NaN without validation)."""

    epochs: int = 0
    best_epoch: int = 0
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    penalty: list[float] = field(default_factory=list)
    best_val_loss: float = math.nan


def fit_epochs(
    params: Sequence[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    train_step: Callable[[torch.Tensor], tuple[torch.Tensor, float]],
    *,
    n: int,
    batch_size: int,
    max_epochs: int,
    generator: torch.Generator,
    validate: Callable[[], tuple[float, float]] | None = None,
    early_stopping: bool = True,
    patience: int = 5,
    tol: float = 0.0,
    epoch_callback: EpochCallback | None = None,
) -> FitHistory:
    """Train ``params`` for up to ``max_epochs`` epochs over ``n`` rows in shuffled batches.

    Each epoch draws a permutation from ``generator`` and steps ``optimizer`` on the loss of
    every batch. After the epoch, ``validate`` (when given) scores it; with ``early_stopping``
    the epoch whose score beats the best so far by more than ``tol`` is kept (its weights
    copied), training stops after ``patience`` epochs without such a gain, and the kept
    weights are written back into ``params`` at the end. Without ``validate``, or with
    ``early_stopping=False`` (the validation loss is then only recorded), the last epoch is
    kept. ``epoch_callback(record)`` follows every epoch with ``{"epoch", "train_loss",
    "val_loss", "best_epoch"}`` (``val_loss`` None without ``validate``); an exception it
    raises propagates and stops training.
    """
    history = FitHistory()
    selecting = validate is not None and early_stopping
    best = [p.detach().clone() for p in params] if selecting else None
    best_score = math.inf
    bad_epochs = 0
    for epoch in range(1, int(max_epochs) + 1):
        order = torch.randperm(n, generator=generator)
        total, total_penalty, seen = 0.0, 0.0, 0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            loss, penalty = train_step(idx)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
            total_penalty += penalty * len(idx)
            seen += len(idx)
        history.train_loss.append(total / max(seen, 1))
        history.penalty.append(total_penalty / max(seen, 1))
        history.epochs = epoch
        val_loss, stop = None, False
        if validate is None:
            history.best_epoch = epoch
        else:
            val_loss, score = validate()
            history.val_loss.append(val_loss)
            if not early_stopping:
                history.best_epoch, history.best_val_loss = epoch, val_loss
            elif score < best_score - float(tol):
                best_score, bad_epochs = score, 0
                history.best_epoch, history.best_val_loss = epoch, val_loss
                best = [p.detach().clone() for p in params]
            else:
                bad_epochs += 1
                stop = bad_epochs >= int(patience)
        if epoch_callback is not None:
            epoch_callback(
                {
                    "epoch": epoch,
                    "train_loss": history.train_loss[-1],
                    "val_loss": val_loss,
                    "best_epoch": history.best_epoch,
                }
            )
        if stop:
            break
    if selecting:
        with torch.no_grad():
            for p, kept in zip(params, best, strict=True):
                p.copy_(kept)
    return history


def stratified_holdout(y_idx: np.ndarray, fraction: float, seed: int):
    """Stratified hold-out indices ``(train, val)`` for early stopping when ``fit`` gets no
    validation set: ``fraction`` of each class (at least one, never all), drawn with
    ``numpy.random.default_rng(seed)``.

    Returns ``(all, None)`` when the data are too small for a hold-out (fewer than 20 samples or
    fewer than 2 per class) or ``fraction`` is 0.
    """
    n = len(y_idx)
    counts = np.bincount(y_idx, minlength=2)
    if fraction <= 0 or n < 20 or counts.min() < 2:
        return np.arange(n), None
    rng = np.random.default_rng(seed)
    val = []
    for c in (0, 1):
        members = np.flatnonzero(y_idx == c)
        rng.shuffle(members)
        take = min(len(members) - 1, max(1, round(fraction * len(members))))
        val.append(members[:take])
    val = np.sort(np.concatenate(val))
    train = np.setdiff1d(np.arange(n), val)
    return train, val


def smoothed_targets(target: torch.Tensor, smoothing: float) -> torch.Tensor:
    """The authors' label smoothing: ``y (1 - s) + (1 - y) s``, so s = 0.1 gives 0.1 / 0.9
    (``clip_cues/model.py`` ``SyntheticImageClassifier.compute_loss``)."""
    return target * (1.0 - smoothing) + (1.0 - target) * smoothing


def bce_smoothed(logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Binary cross-entropy of logits against label-smoothed 0/1 targets (mean over rows)."""
    soft = smoothed_targets(target, smoothing)
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, soft)


@contextmanager
def single_thread():
    """Run torch on one thread: the heads' small matrices gain nothing from more, and results
    then match across machines with different core counts."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def uniform_init(gen: torch.Generator, shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
    """``torch.nn.Linear``'s default initialisation: uniform in +-1/sqrt(fan_in)."""
    bound = 1.0 / np.sqrt(max(fan_in, 1))
    return (torch.rand(shape, generator=gen) * 2 - 1) * bound
