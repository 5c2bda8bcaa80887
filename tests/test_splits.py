"""Seeded splits for datasets without one: stratified by generator, pairs kept together, stored
in the workspace and reused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detector.splits import assign_splits, ensure_splits, strata_of
from detector.store import ImageRow, Workspace


def frame(n_real=40, fakes=None, pairs=False):
    fakes = fakes or {"ProGAN": 20, "SD": 20}
    rows = [
        {"hash": f"r{i:03d}", "label": 0, "generator": None, "pair_id": None} for i in range(n_real)
    ]
    for gen, n in fakes.items():
        rows += [
            {"hash": f"{gen}{i:03d}", "label": 1, "generator": gen, "pair_id": None}
            for i in range(n)
        ]
    meta = pd.DataFrame(rows)
    if pairs:  # pair each fake with one real
        fake_idx = meta.index[meta["label"] == 1]
        for k, i in enumerate(fake_idx[:n_real]):
            meta.loc[i, "pair_id"] = f"p{k}"
            meta.loc[k, "pair_id"] = f"p{k}"
    return meta


def test_split_is_stratified_in_the_given_proportions():
    meta = frame()
    split = assign_splits(meta, seed=0)
    assert set(split.index) == set(meta["hash"])
    table = pd.crosstab(strata_of(meta), meta["hash"].map(split))
    assert table.loc["real"].to_dict() == {"test": 8, "train": 24, "val": 8}
    assert table.loc["ProGAN"].to_dict() == {"test": 4, "train": 12, "val": 4}


def test_split_is_seeded_and_independent_of_row_order():
    meta = frame()
    a = assign_splits(meta, seed=3)
    b = assign_splits(meta.sample(frac=1.0, random_state=1), seed=3)
    pd.testing.assert_series_equal(a, b)
    assert (assign_splits(meta, seed=4) != a).any()


def test_pair_groups_stay_together():
    meta = frame(n_real=30, fakes={"SD": 30}, pairs=True)
    split = meta["hash"].map(assign_splits(meta, seed=0))
    for _, members in split.groupby(meta["pair_id"]):
        assert members.nunique() == 1


def test_singleton_generators_spread_over_the_splits():
    meta = frame(n_real=40, fakes={f"G{i}": 1 for i in range(15)})
    split = meta["hash"].map(assign_splits(meta, seed=0))
    fakes = split[meta["label"] == 1].value_counts()
    assert fakes.get("test", 0) >= 2 and fakes.get("val", 0) >= 2  # not all in train


def test_custom_fractions_and_tiny_data():
    meta = frame(n_real=3, fakes={"A": 1})
    split = assign_splits(meta, fractions={"train": 0.5, "test": 0.5}, seed=0)
    assert set(split) <= {"train", "test"} and len(split) == 4
    assert assign_splits(meta.iloc[:0], seed=0).empty


def _workspace(path, meta, own_split=None):
    ws = Workspace(path)
    ws.add_images(
        ImageRow(
            hash=r.hash,
            path=f"/d/{r.hash}.png",
            label=int(r.label),
            generator=r.generator,
            pair_id=r.pair_id,
            split=own_split,
        )
        for r in meta.itertuples()
    )
    return ws


def test_ensure_splits_stores_reuses_and_extends(tmp_path):
    meta = frame()
    with _workspace(tmp_path / "ws", meta) as ws:
        first = ensure_splits(ws, seed=5)
        assert first["assigned"] == len(meta) and first["counts"]["test"] == 16
        stored = ws.get_splits()
        again = ensure_splits(ws, seed=99)  # the recorded seed wins; nothing new to assign
        assert again["assigned"] == 0 and again["seed"] == 5
        assert ws.get_splits() == stored
        images = ws.images()
        assert images["split"].notna().all()
        ws.add_images([ImageRow(hash="new", path="/d/new.png", label=1, generator="SD")])
        third = ensure_splits(ws)
        assert third["assigned"] == 1
        after = ws.get_splits()
        assert {h: s for h, s in after.items() if h != "new"} == stored


def test_own_splits_are_kept(tmp_path):
    meta = frame(n_real=6, fakes={"A": 6})
    with _workspace(tmp_path / "ws", meta, own_split="train") as ws:
        info = ensure_splits(ws)
        assert info["assigned"] == 0 and info["counts"] == {"train": 12}
        assert ws.get_splits() == {}


@pytest.mark.parametrize("seed", [0, 1])
def test_every_labelled_image_gets_exactly_one_split(seed):
    rng = np.random.default_rng(seed)
    meta = frame(n_real=int(rng.integers(5, 30)), fakes={"A": int(rng.integers(1, 9)), "B": 2})
    split = assign_splits(meta, seed=seed)
    assert split.index.is_unique and len(split) == len(meta)
