"""Image groups: the one rule that sorts images into ``real`` / generator / ``unknown``, and
the pair groups that matched evaluation and the seeded splits keep together.

- :func:`image_groups`: ``real`` for label 0; for label 1 the generator's name, or
  ``unknown`` when it is missing or blank; unlabelled images get the caller's marker. Per-
  generator AP, the split strata, concept importances and the dashboard's tables all group
  images by it.
- :func:`fake_generators`: the same rule seen from the metrics' side (reals get None).
- :func:`pairing_groups`: the group of ``matched`` pairing: the pair id, else the source.
- :func:`split_units`: what a split never separates: the pair id, else the image itself.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

REAL = "real"
UNKNOWN_GENERATOR = "unknown"  # fakes without a generator name
UNLABELLED = "unlabelled"  # the dashboard's group of images without a label


def generator_names(generator: Iterable | None, n: int) -> np.ndarray:
    """Generator names as ``str`` (object array of length ``n``); missing or blank: None."""
    if generator is None:
        return np.full(n, None, dtype=object)
    gens = pd.Series(list(generator), dtype=object)
    gens = gens.where(gens.notna(), None)
    gens = gens.map(lambda g: None if g is None or str(g).strip() == "" else str(g))
    return gens.to_numpy(dtype=object)


def fake_generators(y, generator: Iterable | None) -> np.ndarray:
    """Per image: None for reals (``y`` 0), the generator's name or ``unknown`` for fakes."""
    y = np.asarray(y)
    gens = generator_names(generator, len(y))
    out = np.where(y == 1, np.where(pd.isna(gens), UNKNOWN_GENERATOR, gens), None)
    return out.astype(object)


def image_groups(meta: pd.DataFrame, unlabelled: str | None = None) -> np.ndarray:
    """Group of each image (object array): ``real`` for label 0, the generator (or
    ``unknown``) for label 1, ``unlabelled`` (default None) for images without a label.

    ``meta`` needs ``label``; ``generator`` is optional (all fakes are ``unknown`` without it).
    """
    labels = pd.to_numeric(meta["label"], errors="coerce")
    labels = labels.to_numpy(dtype="float64", na_value=np.nan)
    gens = generator_names(meta.get("generator"), len(meta))
    out = np.where(labels == 0, REAL, np.where(pd.isna(gens), UNKNOWN_GENERATOR, gens))
    out = out.astype(object)
    out[np.isnan(labels)] = unlabelled
    return out


def pairing_groups(meta: pd.DataFrame) -> pd.Series:
    """Per image the group for ``matched`` pairing: its pair id, else its source (missing,
    NaN or None, when it has neither)."""
    pair = meta["pair_id"] if "pair_id" in meta else pd.Series(None, index=meta.index)
    source = meta["source"] if "source" in meta else pd.Series(None, index=meta.index)
    return pair.where(pair.notna(), source).astype(object)


def split_units(meta: pd.DataFrame) -> pd.Series:
    """Per image what a split keeps together: ``pair:<pair_id>`` when it has a (non-empty)
    pair id, else ``hash:<hash>`` (the image alone). These strings seed the stored split, so
    they must not change."""
    own = "hash:" + meta["hash"].astype(str)
    pair = meta.get("pair_id")
    if pair is None:
        return own
    pair = pair.astype(object)
    return pd.Series(
        np.where(pair.notna() & (pair.astype(str) != ""), "pair:" + pair.astype(str), own),
        index=meta.index,
    )
