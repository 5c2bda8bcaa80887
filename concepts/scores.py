"""Concept scores: the cosine of each projected image embedding with each concept direction.

``scores[i, q] = <e_i / |e_i|, d_q>`` with unit directions ``d_q``: one matrix product over
the whole workspace (done in row blocks so memory stays at one block of normalised rows).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from detector.errors import CueLensError

BLOCK_ROWS = 16_384


class ScoresError(CueLensError):
    """Embeddings and directions do not fit together, or the workspace lacks embeddings."""


def concept_scores(projected: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Cosines (N, Q) float32 of N projected embeddings (N, dim) with Q unit directions (Q, dim).

    A single embedding (dim,) gives a (Q,) vector.
    """
    projected = np.asarray(projected, dtype=np.float32)
    directions = np.asarray(directions, dtype=np.float32)
    single = projected.ndim == 1
    if single:
        projected = projected[None, :]
    if projected.ndim != 2 or directions.ndim != 2 or projected.shape[1] != directions.shape[1]:
        raise ScoresError(
            f"embeddings of shape {projected.shape} do not match directions of shape "
            f"{directions.shape}: concepts need the projected tap of the same backbone"
        )
    d_t = np.ascontiguousarray(directions.T)
    out = np.empty((projected.shape[0], directions.shape[0]), dtype=np.float32)
    for start in range(0, projected.shape[0], BLOCK_ROWS):
        block = projected[start : start + BLOCK_ROWS]
        norm = np.linalg.norm(block, axis=1, keepdims=True)
        np.matmul(block, d_t, out=out[start : start + BLOCK_ROWS])
        out[start : start + BLOCK_ROWS] /= np.maximum(norm, 1e-12)
    return out[0] if single else out


def workspace_scores(
    workspace,
    backbone_id: str,
    directions: np.ndarray,
    *,
    split: str | None = None,
    labelled_only: bool = True,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Image metadata (``Workspace.dataset`` rows) and their concept scores (N, Q)."""
    meta, projected = workspace.dataset(
        backbone_id, "projected", split=split, labelled_only=labelled_only
    )
    if meta.empty:
        where = f" in split {split!r}" if split else ""
        raise ScoresError(
            f"{workspace.path}: no projected embeddings for backbone {backbone_id!r}{where}; "
            f"run `python -m detector embed` first"
        )
    return meta, concept_scores(projected, directions)
