"""One analysis flow for image bytes, shared by ``predict``, ``explain`` and the Detect page.

:func:`analyse_bytes` takes ``(name, bytes)`` pairs and, for each, embeds the bytes (or
reuses the workspace's stored embedding, rounded as stored, so a first upload and a re-upload
score the same), scores them with a head, gives the verdict (``detector.inference``'s band,
withheld for images too small to judge), and on request describes the file (header
metadata, provenance), explains the score and lists the nearest labelled images.

Concept attribution lives in ``concepts``, above this package: the caller passes it in as a
callable (``attribute``), so ``detector`` never imports ``concepts``. The nearest-neighbour
search (:class:`NeighbourIndex`, :func:`nearest`) is here too; the dashboard only caches it.

:func:`predict_images` is the table form used by ``python -m detector predict``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from detector.errors import CueLensError
from detector.extract import embed_bytes
from detector.images import ImageDecodeError, image_metadata
from detector.inference import (
    DEFAULT_BAND,
    TOO_SMALL,
    check_backbone,
    head_threshold,
    image_dimensions,
    score_embeddings,
    too_small_reason,
    verdict,
)
from detector.provenance import safe_read_provenance

NEIGHBOURS = 6  # nearest labelled images listed per analysed image
NEIGHBOUR_COLUMNS = ("hash", "path", "label", "generator", "split", "group")

# (projected (n, d), pooled (n, d'), names) -> one attribution per row, e.g. a closure over
# ``concepts.report.explain_embeddings``
Attribute = Callable[[np.ndarray, np.ndarray, list[str]], Sequence]


# -- nearest neighbours ----------------------------------------------------------------------


@dataclass
class NeighbourIndex:
    """Labelled images (``meta``: hash, path, label, generator, split, ...) with their
    embeddings of one tap, rows L2-normalised (``unit``), for cosine nearest neighbours."""

    meta: pd.DataFrame
    unit: np.ndarray

    @classmethod
    def build(cls, meta: pd.DataFrame, x: np.ndarray) -> NeighbourIndex:
        """The index of embeddings ``x`` (n, dim) whose rows ``meta`` describes."""
        x = np.asarray(x, dtype=np.float32)
        if len(x) == 0:
            return cls(meta.reset_index(drop=True), x.reshape(0, x.shape[-1] if x.ndim else 0))
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        return cls(meta.reset_index(drop=True), x / np.maximum(norms, 1e-12))


def nearest(index: NeighbourIndex, query, k: int = NEIGHBOURS, exclude: str | None = None):
    """The ``k`` images of ``index`` most similar (cosine) to ``query`` (dim,), best first,
    leaving out the image whose hash is ``exclude`` (the query itself): the columns of
    :data:`NEIGHBOUR_COLUMNS` that ``index.meta`` has, and ``similarity``."""
    columns = [c for c in NEIGHBOUR_COLUMNS if c in index.meta]
    if index.unit.shape[0] == 0 or k <= 0:
        return index.meta.head(0)[columns].assign(similarity=[])
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    sims = index.unit @ q
    if exclude is not None:
        sims = np.where(index.meta["hash"].to_numpy() == exclude, -np.inf, sims)
    k = min(k, len(sims))
    top = np.argpartition(-sims, k - 1)[:k]
    top = top[np.argsort(-sims[top])]
    top = top[np.isfinite(sims[top])]
    out = index.meta.iloc[top][columns].copy()
    out["similarity"] = sims[top]
    return out.reset_index(drop=True)


# -- the flow ----------------------------------------------------------------------------------


@dataclass
class ImageAnalysis:
    """What the analysis of one image found (``None`` where a step did not run or failed)."""

    name: str
    hash: str | None
    n_bytes: int
    error: str | None = None  # the image could not be read or decoded: nothing else is set
    cached: bool = False  # its embedding came from the workspace
    logit: float | None = None
    probability: float | None = None
    verdict: str | None = None
    warning: str | None = None  # e.g. too small to judge: the verdict is withheld
    metadata: dict = field(default_factory=dict)  # ``detector.images.image_metadata``
    provenance: object | None = None  # ``detector.provenance.Provenance``
    attribution: object | None = None  # what ``attribute`` returned for this image
    attribution_error: str | None = None
    neighbours: pd.DataFrame | None = None  # ``nearest``
    pooled: np.ndarray | None = None
    projected: np.ndarray | None = None
    seconds: float = 0.0  # the batch's time, shared out evenly


def analyse_bytes(
    items: Sequence[tuple[str, bytes]],
    backbone,
    head=None,
    workspace=None,
    *,
    threshold: float | None = None,
    band: float = DEFAULT_BAND,
    describe: bool = False,
    attribute: Attribute | None = None,
    keep_attribution_errors: bool = True,
    neighbours: Callable[[str], NeighbourIndex] | None = None,
    k: int = NEIGHBOURS,
    batch_size: int = 16,
) -> list[ImageAnalysis]:
    """Analyse ``(name, bytes)`` images; one :class:`ImageAnalysis` per item, in order.

    - embedding: ``detector.extract.embed_bytes`` (bytes the workspace has seen reuse its
      stored embeddings; new ones are stored there, unlabelled);
    - score and verdict with ``head`` (none without a head): ``threshold`` defaults to the
      head's, ``band`` is the inconclusive margin; an image too small to judge gets
      ``TOO_SMALL`` and the reason as ``warning``;
    - ``describe``: header metadata and provenance of each readable file;
    - ``attribute(projected, pooled, names)``: one attribution per scored image. Its error
      is kept in ``attribution_error`` (the verdict stands) unless
      ``keep_attribution_errors`` is False, when it propagates;
    - ``neighbours(tap)``: the index to search for the ``k`` nearest labelled images, on the
      head's tap (``pooled`` without a head).

    A failed image keeps its row with ``error`` set; the rest of the batch continues.
    """
    start = time.perf_counter()
    if head is not None:
        check_backbone(head, backbone)
    embedded = embed_bytes(items, backbone, workspace, batch_size=batch_size)
    results = [
        ImageAnalysis(name=e.name, hash=e.hash, n_bytes=len(data), error=e.error, cached=e.cached)
        for e, (_, data) in zip(embedded, items, strict=True)
    ]
    ok = [i for i, e in enumerate(embedded) if e.error is None]
    for i in ok:
        results[i].pooled, results[i].projected = embedded[i].pooled, embedded[i].projected
    if ok and head is not None:
        _score(results, ok, head, backbone.id, threshold, band)
    for i, res in enumerate(results):
        data = items[i][1]
        if describe and data:
            try:
                res.metadata = image_metadata(data, path=res.name)
            except ImageDecodeError:
                res.metadata = {}
            res.provenance = safe_read_provenance(data, path=res.name)
        if res.error is None:  # tiny images get no verdict (the score is still given)
            res.warning = too_small_reason(*_size(embedded[i].meta, res.metadata, data))
            if res.warning and res.verdict is not None:
                res.verdict = TOO_SMALL
    if ok and head is not None and attribute is not None:
        _attribute(results, ok, attribute, keep_attribution_errors)
    if ok and neighbours is not None:
        tap = head.tap if head is not None else "pooled"
        index = neighbours(tap)
        for i in ok:
            res = results[i]
            res.neighbours = nearest(index, getattr(embedded[i], tap), k=k, exclude=res.hash)
    share = (time.perf_counter() - start) / max(len(results), 1)
    for res in results:
        res.seconds = share
    return results


def _score(results, ok, head, backbone_id, threshold, band) -> None:
    features = np.stack([getattr(results[i], head.tap) for i in ok])  # rounded as stored
    logits, probs = score_embeddings(head, features, backbone_id=backbone_id)
    threshold = head_threshold(head) if threshold is None else float(threshold)
    verdicts = np.atleast_1d(verdict(probs, threshold, band))
    for j, i in enumerate(ok):
        results[i].logit = float(logits[j])
        results[i].probability = float(probs[j])
        results[i].verdict = str(verdicts[j])


def _size(embedded_meta: dict, metadata: dict, data: bytes) -> tuple:
    """(width, height): from the decode, else the header metadata, else the file header."""
    for source in (embedded_meta or {}, metadata or {}):
        size = (source.get("width"), source.get("height"))
        if None not in size:
            return size
    return image_dimensions(data) or (None, None)


def _attribute(results, ok, attribute: Attribute, keep_errors: bool) -> None:
    try:
        found = attribute(
            np.stack([results[i].projected for i in ok]),
            np.stack([results[i].pooled for i in ok]),
            [results[i].name for i in ok],
        )
    except Exception as exc:  # the verdict stands even when it cannot be explained
        if not keep_errors:
            raise
        message = str(exc) if isinstance(exc, CueLensError) else f"{type(exc).__name__}: {exc}"
        for i in ok:
            results[i].attribution_error = message
        return
    for j, i in enumerate(ok):
        results[i].attribution = found[j]


# -- files ---------------------------------------------------------------------------------


def read_files(paths: Sequence[str | os.PathLike]) -> tuple[list[tuple[str, bytes]], dict]:
    """``(name, bytes)`` pairs of files and ``{position: reason}`` for those that cannot be
    read (their bytes are empty)."""
    items, errors = [], {}
    for i, path in enumerate(paths):
        try:
            items.append((str(path), Path(path).read_bytes()))
        except OSError as exc:
            errors[i] = f"cannot read file ({exc.strerror or exc})"
            items.append((str(path), b""))
    return items, errors


PREDICTION_COLUMNS = [
    "path", "hash", "score", "probability", "verdict", "error", "warning", "cached",
]  # fmt: skip


def predict_images(
    items: Sequence[str | os.PathLike | tuple[str, bytes]],
    backbone,
    head,
    workspace=None,
    *,
    threshold: float | None = None,
    band: float = DEFAULT_BAND,
    batch_size: int = 16,
) -> pd.DataFrame:
    """Score image files (paths, or ``(name, bytes)`` uploads) with ``backbone`` + ``head``
    through :func:`analyse_bytes`.

    Returns one row per item: path, hash (SHA-256 of the bytes), score (logit), probability,
    verdict, error (None when fine), warning (e.g. why the verdict is ``TOO_SMALL``), cached
    (embedding taken from the workspace). Failed images keep their row with the error.
    """
    payload, errors = [], {}
    for i, item in enumerate(items):
        if isinstance(item, tuple):
            payload.append((str(item[0]), bytes(item[1])))
            continue
        (read,), failed = read_files([item])
        payload.append(read)
        if failed:
            errors[i] = failed[0]
    results = analyse_bytes(
        payload, backbone, head, workspace, threshold=threshold, band=band, batch_size=batch_size
    )
    rows = []
    for i, r in enumerate(results):
        error = errors.get(i) or r.error
        rows.append(
            {
                "path": r.name,
                "hash": r.hash,
                "score": None if error else r.logit,
                "probability": None if error else r.probability,
                "verdict": None if error else r.verdict,
                "error": error,
                "warning": None if error else r.warning,
                "cached": bool(r.cached),
            }
        )
    return pd.DataFrame(rows, columns=PREDICTION_COLUMNS)
