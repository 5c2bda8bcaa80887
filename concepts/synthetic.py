"""Planted structure for tests and benchmarks: a fake text encoder and embeddings built as
known mixtures of known concept directions.

Nothing here is used at run time by the library; it lets tests check that attributions find
what was put in (and only that), without CLIP weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from concepts.vocabulary import Vocabulary
from detector.store import ImageRow


class FakeTextEncoder:
    """Deterministic text "encoder": each text maps to a fixed random unit vector (by its hash).

    ``calls`` counts ``encode_text`` calls and ``texts`` the texts encoded, so tests can check
    that a cache hit encodes nothing.
    """

    def __init__(self, dim: int = 48, id: str = "fake-clip/test"):
        self.dim = dim
        self.id = id
        self.calls = 0
        self.texts = 0

    def vector(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(self.dim)
        return (v / np.linalg.norm(v)).astype(np.float32)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts += len(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.vector(t) for t in texts])


def toy_vocabulary(n: int = 24, name: str = "toy") -> Vocabulary:
    """``n`` concepts ``c00 ... c{n-1}`` with made-up poles (for the fake encoder)."""
    return Vocabulary.from_pairs(
        [(f"c{q:02d}", f"quality {q} present", f"quality {q} absent") for q in range(n)], name=name
    )


def random_directions(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """``n`` random unit directions (n, dim) float32."""
    d = np.random.default_rng(seed).standard_normal((n, dim))
    return (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)


def orthonormal_directions(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """``n <= dim`` random orthonormal directions (n, dim) float32: concepts that do not overlap."""
    if n > dim:
        raise ValueError(f"cannot have {n} orthonormal directions in {dim} dimensions")
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, n)))
    return np.ascontiguousarray(q.T, dtype=np.float32)


@dataclass
class PlantedData:
    """Images made of known concept mixtures.

    ``projected`` (N, dim): ``offset + sum_q a[i, q] d_q + noise``; ``pooled`` (N, dim + extra):
    the unit projected embedding followed by ``extra`` independent noise dimensions (so a head
    can read something no concept carries). ``meta`` has ``hash, label, generator, split``.
    """

    meta: pd.DataFrame
    projected: np.ndarray
    pooled: np.ndarray
    amounts: np.ndarray
    directions: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        return self.meta["label"].to_numpy(dtype=int)


def planted_data(
    directions: np.ndarray,
    n: int = 600,
    *,
    shifts: dict[str, dict[int, float]] | None = None,
    spread: float = 0.3,
    noise: float = 0.05,
    offset: float = 1.0,
    extra: int = 16,
    splits: dict[str, float] | None = None,
    seed: int = 0,
) -> PlantedData:
    """Half reals, half fakes split evenly over the generators in ``shifts``, shuffled.

    ``shifts[generator][q]`` is added to the amount of concept q in that generator's images
    (reals get none). Every image also gets random amounts (SD ``spread``) of every concept, a
    shared ``offset`` vector (CLIP embeddings are not centred) and isotropic ``noise``.
    """
    rng = np.random.default_rng(seed)
    directions = np.asarray(directions, dtype=np.float64)
    q, dim = directions.shape
    shifts = shifts if shifts is not None else {"gen_a": {0: 1.0}}
    gens = list(shifts)
    n_real = n // 2
    groups = ["real"] * n_real + [gens[i % len(gens)] for i in range(n - n_real)]
    groups = [groups[i] for i in rng.permutation(n)]
    amounts = rng.normal(0.0, spread, size=(n, q))
    for i, g in enumerate(groups):
        for concept, shift in shifts.get(g, {}).items():
            amounts[i, concept] += shift
    base = rng.standard_normal(dim)
    base = offset * base / np.linalg.norm(base)
    projected = base + amounts @ directions + rng.normal(0.0, noise, size=(n, dim))
    unit = projected / np.linalg.norm(projected, axis=1, keepdims=True)
    pooled = np.hstack([unit, rng.standard_normal((n, extra))])
    split_col = np.full(n, None, dtype=object)
    if splits:
        names = list(splits)
        p = np.asarray([splits[s] for s in names], dtype=float)
        split_col = rng.choice(names, size=n, p=p / p.sum())
    meta = pd.DataFrame(
        {
            "hash": [hashlib.sha256(f"{seed}-{i}".encode()).hexdigest() for i in range(n)],
            "label": pd.array([0 if g == "real" else 1 for g in groups], dtype="Int64"),
            "generator": [None if g == "real" else g for g in groups],
            "split": split_col,
        }
    )
    return PlantedData(
        meta=meta,
        projected=projected.astype(np.float32),
        pooled=pooled.astype(np.float32),
        amounts=amounts,
        directions=directions.astype(np.float32),
    )


def store_planted(workspace, backbone_id: str, data: PlantedData) -> None:
    """Write planted images (rows and both taps) into a workspace."""
    rows = [
        ImageRow(
            hash=r.hash,
            path=f"planted/{r.hash[:12]}.png",
            label=int(r.label),
            generator=r.generator,
            split=r.split,
        )
        for r in data.meta.itertuples(index=False)
    ]
    hashes = data.meta["hash"].tolist()
    with workspace.transaction():
        workspace.add_images(rows)
        workspace.put_embeddings(backbone_id, "projected", hashes, data.projected)
        workspace.put_embeddings(backbone_id, "pooled", hashes, data.pooled)
