"""The workspace store: keys, round trips, splits, blobs, and fast reads."""

from __future__ import annotations

import sqlite3
import threading
import time

import numpy as np
import pytest

from detector.store import DB_NAME, ImageRow, Workspace, WorkspaceError


def _rows(n: int, label: int = 0, generator: str | None = None) -> list[ImageRow]:
    return [
        ImageRow(
            hash=f"{label}{i:063d}", path=f"/data/{label}/{i}.png", label=label, generator=generator
        )
        for i in range(n)
    ]


def test_workspace_is_one_database_file_in_wal_mode(tmp_path):
    ws = Workspace(tmp_path / "ws")
    assert (tmp_path / "ws" / DB_NAME).is_file()
    mode = ws._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert ws.integrity_check() == "ok"


def test_many_openers_of_a_brand_new_workspace_all_succeed(tmp_path):
    # Switching a new database to WAL needs an exclusive lock that SQLite does not wait for;
    # before the retry, about one trial in twenty failed with "database is locked".
    for trial in range(40):
        folder = tmp_path / f"ws{trial}"
        errors: list[BaseException] = []
        barrier = threading.Barrier(6)

        def open_it(folder=folder, errors=errors, barrier=barrier):
            barrier.wait()
            try:
                with Workspace(folder) as ws:
                    ws.add_images(_rows(1))
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == [], f"trial {trial}: {errors[0]}"
        with Workspace(folder) as ws:
            assert ws.integrity_check() == "ok"
            assert ws._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_locked_workspace_is_a_clear_error_after_the_timeout(tmp_path):
    Workspace(tmp_path).close()
    holder = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        start = time.monotonic()
        with pytest.raises(WorkspaceError, match=r"cannot open workspace database.*locked"):
            Workspace(tmp_path, timeout=0.3)
        # Generous on a shared machine; without the time-out SQLite would wait for the holder
        # until the test run's own limit.
        assert time.monotonic() - start < 5
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_open_missing_workspace_without_create_is_a_clear_error(tmp_path):
    with pytest.raises(WorkspaceError, match="no Cue Lens workspace"):
        Workspace(tmp_path / "nothing", create=False)


def test_embeddings_round_trip_as_float16_in_requested_order(tmp_path):
    ws = Workspace(tmp_path)
    rows = _rows(5)
    ws.add_images(rows)
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(5, 16)).astype(np.float32)
    hashes = [r.hash for r in rows]
    assert ws.put_embeddings("bb/1", "pooled", hashes, vecs) == 5
    # a second put of the same keys inserts nothing and keeps the first values
    assert ws.put_embeddings("bb/1", "pooled", hashes, vecs + 1) == 0
    order = hashes[::-1]
    got_hashes, got = ws.load_embeddings("bb/1", "pooled", order)
    assert got_hashes == order and got.dtype == np.float32
    np.testing.assert_allclose(got, vecs[::-1], rtol=1e-3, atol=1e-3)
    with pytest.raises(KeyError, match="embed"):
        ws.load_embeddings("bb/1", "pooled", ["f" * 64])
    assert ws.embedded_hashes("bb/2", "pooled") == set()


def test_same_content_at_two_paths_is_one_image_with_both_paths(tmp_path):
    ws = Workspace(tmp_path)
    ws.add_images([ImageRow(hash="a" * 64, path="/x/1.png", label=1, generator="SD")])
    ws.add_images([ImageRow(hash="a" * 64, path="/y/copy.png")])
    df = ws.images()
    assert len(df) == 1 and df.loc[0, "n_paths"] == 2
    assert df.loc[0, "label"] == 1 and df.loc[0, "generator"] == "SD"  # metadata kept
    assert ws.paths_of("a" * 64) == ["/x/1.png", "/y/copy.png"]


def test_dataset_aligns_metadata_with_embeddings_and_filters_splits(tmp_path):
    ws = Workspace(tmp_path)
    rows = _rows(4, 0) + _rows(4, 1, "GAN")
    ws.add_images(rows)
    hashes = [r.hash for r in rows]
    ws.put_embeddings("bb", "pooled", hashes, np.arange(8 * 3, dtype=np.float32).reshape(8, 3))
    ws.set_splits({h: ("test" if i % 2 else "train") for i, h in enumerate(hashes)})
    meta, x = ws.dataset("bb", "pooled")
    assert len(meta) == 8 and x.shape == (8, 3)
    for i, h in enumerate(meta["hash"]):
        np.testing.assert_allclose(x[i], np.arange(3) + 3 * hashes.index(h))
    test_meta, test_x = ws.dataset("bb", "pooled", split="test")
    assert len(test_meta) == 4 and set(test_meta["split"]) == {"test"}
    assert test_x.shape == (4, 3)
    assert ws.get_splits() and set(ws.get_splits().values()) == {"train", "test"}


def test_blobs_keep_arrays_and_json(tmp_path):
    ws = Workspace(tmp_path)
    arr = np.random.default_rng(1).normal(size=(3, 7)).astype(np.float32)
    ws.put_array("dirs", "k", arr, doc={"n": 3})
    np.testing.assert_array_equal(ws.get_array("dirs", "k"), arr)
    assert ws.get_array("dirs", "other") is None
    ws.put_json("cards", "head", {"a": [1, 2]})
    assert ws.get_json("cards", "head") == {"a": [1, 2]}
    assert ws.blob_keys("dirs") == ["k"]


def test_failed_transaction_leaves_nothing_behind(tmp_path):
    ws = Workspace(tmp_path)
    with pytest.raises(RuntimeError), ws.transaction():
        ws.add_images(_rows(3))
        raise RuntimeError("killed mid-batch")
    assert len(ws.images()) == 0


def test_summary_counts(tmp_path):
    ws = Workspace(tmp_path)
    ws.add_images(_rows(3, 0) + _rows(2, 1, "GAN"))
    ws.add_images([ImageRow(hash="e" * 64, path="/bad.png", error="truncated")])
    s = ws.summary()
    assert s["images"] == 6 and s["failed"] == 1
    assert s["by_label"] == {"real": 3, "synthetic": 2}
    assert s["by_generator"] == {"GAN": 2, "real": 3}


def test_reading_100k_embeddings_returns_every_vector(tmp_path):
    # Speed is measured by benchmarks/bench_store.py, not asserted here.
    ws = Workspace(tmp_path)
    n, dim = 100_000, 768
    hashes = [f"{i:064x}" for i in range(n)]
    vecs = np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)
    con = sqlite3.connect(ws.db_path)  # bulk fill directly: the read path is under test
    con.executemany(
        "INSERT INTO embeddings(backbone, tap, hash, vector) VALUES ('bb', 'projected', ?, ?)",
        ((h, vecs[i].astype("<f2").tobytes()) for i, h in enumerate(hashes)),
    )
    con.commit()
    con.close()
    got_hashes, x = ws.load_embeddings("bb", "projected")
    assert x.shape == (n, dim) and len(got_hashes) == n
    order = np.array([int(h, 16) for h in got_hashes])
    np.testing.assert_array_equal(x, vecs[order].astype(np.float16).astype(x.dtype))


def test_version_moves_with_every_committed_write_from_any_process(tmp_path):
    ws, other = Workspace(tmp_path), Workspace(tmp_path)
    v0 = ws.version()
    other.add_images(_rows(2))
    v1 = ws.version()
    assert v1 > v0
    with pytest.raises(RuntimeError), other.transaction():
        other.add_images(_rows(1, 1))
        raise RuntimeError("rolled back")
    assert ws.version() == v1  # nothing committed, nothing changed


def test_keyed_lookups_match_the_full_scan(tmp_path):
    ws = Workspace(tmp_path)
    rows = _rows(30)
    hashes = [r.hash for r in rows]
    vecs = np.random.default_rng(2).normal(size=(30, 8)).astype(np.float32)
    ws.put_embeddings("bb", "pooled", hashes[:20], vecs[:20])
    assert ws.embedded_among("bb", "pooled", hashes) == set(hashes[:20])
    few = [hashes[7], hashes[3], hashes[7]]
    _, keyed = ws.load_embeddings("bb", "pooled", few)
    _, full = ws.load_embeddings("bb", "pooled")
    order = sorted(hashes[:20])
    np.testing.assert_array_equal(keyed, full[[order.index(h) for h in few]])


def test_large_taps_get_a_columnar_copy_that_follows_writes(tmp_path, monkeypatch):
    import detector.store as store

    monkeypatch.setattr(store, "COLUMNS_MIN_ROWS", 10)
    ws = Workspace(tmp_path)
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(30, 8)).astype(np.float32)
    hashes = [f"{i:064x}" for i in range(30)]
    ws.put_embeddings("bb", "pooled", hashes[:20], vecs[:20])
    ws.put_embeddings("bb", "projected", hashes[:5], vecs[:5])  # below the threshold
    h1, _ = ws.load_embeddings("bb", "pooled")
    copies = sorted(p.name for p in (tmp_path / store.COLUMNS_DIR).glob("*.npy"))
    assert len(copies) == 2 and all("-v1." in name for name in copies)  # vectors + hashes
    ws.load_embeddings("bb", "projected")
    assert len(list((tmp_path / store.COLUMNS_DIR).glob("*.npy"))) == 2  # small: no copy

    # the second read comes from the copy, with the same result; poison SQLite to prove it
    ws._conn.execute("UPDATE embeddings SET vector = zeroblob(16) WHERE tap = 'pooled'")
    h2, x2 = ws.load_embeddings("bb", "pooled")
    assert h2 == h1 == hashes[:20]
    np.testing.assert_array_equal(x2, vecs[:20].astype(np.float16).astype(np.float32))
    assert ws.load_embeddings("bb", "pooled", dtype=np.float16)[1].dtype == np.float16

    # a write makes the copy stale: the next read sees the new rows and replaces the copy
    ws.put_embeddings("bb", "pooled", hashes[20:], vecs[20:])
    h3, x3 = ws.load_embeddings("bb", "pooled")
    assert h3 == hashes and x3.shape == (30, 8)
    np.testing.assert_array_equal(x3[20:], vecs[20:].astype(np.float16).astype(np.float32))
    copies = sorted(p.name for p in (tmp_path / store.COLUMNS_DIR).glob("*.npy"))
    assert len(copies) == 2 and all("-v2." in name for name in copies)

    # a damaged copy is ignored (SQLite is the truth), never an error
    for path in (tmp_path / store.COLUMNS_DIR).glob("*.vectors.npy"):
        path.write_bytes(b"garbage")
    h4, x4 = ws.load_embeddings("bb", "pooled")
    assert h4 == hashes and np.array_equal(x4[20:], x3[20:])
    ws.close()
