"""The workspace: one directory, one embedded SQLite database, every embedding computed once.

Why SQLite (in WAL mode): it ships with Python, a single file is easy to copy and back up,
transactions make every batch all-or-nothing (a process killed mid-batch loses only that
batch), WAL lets readers (the dashboard) work while a writer (``embed``) appends, and
``busy_timeout`` plus ``BEGIN IMMEDIATE`` let two writers take turns without corrupting
anything or losing rows.

Layout of ``WS/cuelens.sqlite``:

- ``images``: one row per unique file content, keyed by the SHA-256 of its bytes, with label
  (0 real, 1 synthetic), generator, source, split, pair id, size, format and decode error.
- ``paths``: every path at which a content was seen (identical files are embedded once).
- ``embeddings``: keyed by (backbone id, tap, image hash); vectors stored as little-endian
  float16 (half the size of float32; CLIP features survive the rounding with cosine > 0.9999)
  and returned as float32.
- ``splits``: named split assignments (e.g. the seeded split made for datasets without one).
- ``blobs``: small named arrays and JSON documents (caches: concept directions, perturbation
  results, model cards), keyed by (namespace, key).

Large taps (``COLUMNS_MIN_ROWS`` embeddings or more) also get a columnar copy in
``WS/columns/`` (float16 ``.npy`` matrix + hashes, named by the tap's version counter in
``meta``, which ``put_embeddings`` bumps in the same transaction). Why: SQLite keeps each
2 KB vector (1024-d float16) in an overflow page of its own, so reading a million of them
took 32-48 s here (4.4 GB on disk for 2 GB of vectors); one contiguous file reads at disk
speed. SQLite stays the truth: a stale, missing or damaged copy is ignored and rebuilt.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from detector.errors import CueLensError

DB_NAME = "cuelens.sqlite"
SCHEMA_VERSION = 1
EMBEDDING_DTYPE = np.dtype("<f2")
TAPS = ("pooled", "projected")
KEYED_LOOKUP_LIMIT = 2000  # up to this many hashes are read by key, more in one table scan
SCAN_CHUNK = 20_000  # rows per fetch when a whole (backbone, tap) is read
COLUMNS_DIR = "columns"  # columnar copies of large taps (see Workspace._scan)
COLUMNS_MIN_ROWS = 50_000  # taps with at least this many embeddings get a columnar copy
COLUMNS_READ_ROWS = 32_768  # rows per read when widening the copy to float32

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    hash TEXT PRIMARY KEY,
    label INTEGER,
    generator TEXT,
    source TEXT,
    split TEXT,
    pair_id TEXT,
    width INTEGER,
    height INTEGER,
    format TEXT,
    mode TEXT,
    n_bytes INTEGER,
    error TEXT,
    added REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS paths (
    path TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    dataset TEXT,
    seen REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS paths_by_hash ON paths(hash);
CREATE TABLE IF NOT EXISTS embeddings (
    backbone TEXT NOT NULL,
    tap TEXT NOT NULL,
    hash TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (backbone, tap, hash)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS splits (
    name TEXT NOT NULL,
    hash TEXT NOT NULL,
    split TEXT NOT NULL,
    PRIMARY KEY (name, hash)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blobs (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    dtype TEXT,
    shape TEXT,
    data BLOB,
    doc TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
"""


def _version_key(backbone: str, tap: str) -> str:
    return f"embeddings_version:{backbone}:{tap}"


class WorkspaceError(CueLensError):
    """The workspace cannot be opened or does not hold what was asked for."""


@dataclass
class ImageRow:
    """What the workspace knows about one unique image content."""

    hash: str
    path: str
    label: int | None = None
    generator: str | None = None
    source: str | None = None
    split: str | None = None
    pair_id: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    mode: str | None = None
    n_bytes: int | None = None
    error: str | None = None
    dataset: str | None = None


class Workspace:
    """A directory holding one SQLite database of images, embeddings and caches.

    Open it with ``Workspace(path)``; it is created when missing. Safe to use from several
    processes at once; one ``Workspace`` object is meant for one thread.
    """

    def __init__(self, path: str | os.PathLike, *, create: bool = True, timeout: float = 60.0):
        self.path = Path(path).expanduser().resolve()
        self.db_path = self.path / DB_NAME
        if not self.db_path.exists():
            if not create:
                raise WorkspaceError(f"{self.path}: no Cue Lens workspace here ({DB_NAME} missing)")
            if self.path.exists() and not self.path.is_dir():
                raise WorkspaceError(f"{self.path}: exists and is not a directory")
            self.path.mkdir(parents=True, exist_ok=True)
        self._conn = self._connect(timeout)

    def _connect(self, timeout: float) -> sqlite3.Connection:
        """Open the database, switch it to WAL and create the schema.

        Several processes or threads may open a brand-new workspace at the same moment; the
        switch to WAL needs an exclusive lock and SQLite answers "database is locked" at once
        (without waiting on the busy timeout) when another opener holds it, so that step is
        retried until ``timeout``.
        """
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            conn = None
            try:
                conn = sqlite3.connect(
                    self.db_path, timeout=timeout, isolation_level=None, check_same_thread=False
                )
                conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                # executescript commits by itself, so the script carries its own transaction.
                conn.executescript(
                    "BEGIN IMMEDIATE;\n" + _SCHEMA + "\nINSERT OR IGNORE INTO meta(key, value) "
                    f"VALUES ('schema_version', '{SCHEMA_VERSION}');\nCOMMIT;"
                )
                return conn
            except sqlite3.OperationalError as exc:
                if conn is not None:
                    conn.close()
                transient = "locked" in str(exc) or "busy" in str(exc)
                if not transient or time.monotonic() + delay > deadline:
                    raise WorkspaceError(
                        f"{self.db_path}: cannot open workspace database ({exc})"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.25)
            except sqlite3.DatabaseError as exc:
                if conn is not None:
                    conn.close()
                raise WorkspaceError(
                    f"{self.db_path}: cannot open workspace database ({exc})"
                ) from exc

    # -- plumbing -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database connection."""
        self._conn.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workspace({str(self.path)!r})"

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken eagerly (``BEGIN IMMEDIATE``) so writers queue cleanly."""
        conn = self._conn
        if conn.in_transaction:  # nested use joins the outer transaction
            yield conn
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('generation', '1') ON CONFLICT(key) "
                "DO UPDATE SET value = CAST(value AS INTEGER) + 1"
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def version(self) -> int:
        """A counter bumped by every committed write, from any process: compare two readings
        to know whether anything changed (cheap: one indexed row)."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check``: ``'ok'`` for a sound database."""
        return self._conn.execute("PRAGMA integrity_check").fetchone()[0]

    @property
    def heads_dir(self) -> Path:
        """Directory where heads trained on this workspace are saved."""
        return self.path / "heads"

    # -- images ---------------------------------------------------------------------------

    def add_images(self, rows: Iterable[ImageRow]) -> int:
        """Insert or update image rows and remember their paths, in one transaction.

        A known content keeps its row; non-empty new metadata (label, generator, ...) replaces
        the stored values. Returns the number of rows written.
        """
        now = time.time()
        rows = list(rows)
        with self.transaction() as conn:
            for r in rows:
                conn.execute(
                    """INSERT INTO images(hash, label, generator, source, split, pair_id, width,
                           height, format, mode, n_bytes, error, added)
                       VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)
                       ON CONFLICT(hash) DO UPDATE SET
                           label = COALESCE(excluded.label, label),
                           generator = COALESCE(excluded.generator, generator),
                           source = COALESCE(excluded.source, source),
                           split = COALESCE(excluded.split, split),
                           pair_id = COALESCE(excluded.pair_id, pair_id),
                           width = COALESCE(excluded.width, width),
                           height = COALESCE(excluded.height, height),
                           format = COALESCE(excluded.format, format),
                           mode = COALESCE(excluded.mode, mode),
                           n_bytes = COALESCE(excluded.n_bytes, n_bytes),
                           error = excluded.error""",
                    (
                        r.hash,
                        r.label,
                        r.generator,
                        r.source,
                        r.split,
                        r.pair_id,
                        r.width,
                        r.height,
                        r.format,
                        r.mode,
                        r.n_bytes,
                        r.error,
                        now,
                    ),
                )
                conn.execute(
                    """INSERT INTO paths(path, hash, dataset, seen) VALUES (?,?,?,?)
                       ON CONFLICT(path) DO UPDATE SET hash = excluded.hash,
                           dataset = COALESCE(excluded.dataset, dataset), seen = excluded.seen""",
                    (r.path, r.hash, r.dataset, now),
                )
        return len(rows)

    def images(self, *, with_errors: bool = True) -> pd.DataFrame:
        """All images as a DataFrame, one row per unique content.

        Columns: hash, path (one representative path), n_paths, label, generator, source,
        split (the dataset's own split, else the assigned ``default`` split), pair_id, width,
        height, format, mode, n_bytes, error.
        """
        query = """
            SELECT i.hash, p.path, p.n_paths, i.label, i.generator, i.source,
                   COALESCE(i.split, s.split) AS split, i.pair_id, i.width, i.height,
                   i.format, i.mode, i.n_bytes, i.error
            FROM images i
            LEFT JOIN (SELECT hash, MIN(path) AS path, COUNT(*) AS n_paths
                       FROM paths GROUP BY hash) p ON p.hash = i.hash
            LEFT JOIN splits s ON s.hash = i.hash AND s.name = 'default'
        """
        if not with_errors:
            query += " WHERE i.error IS NULL"
        query += " ORDER BY p.path"
        df = pd.read_sql_query(query, self._conn)
        df["label"] = df["label"].astype("Int64")
        return df

    def paths_of(self, image_hash: str) -> list[str]:
        """Every path at which this content was seen."""
        rows = self._conn.execute(
            "SELECT path FROM paths WHERE hash = ? ORDER BY path", (image_hash,)
        ).fetchall()
        return [r[0] for r in rows]

    # -- embeddings -----------------------------------------------------------------------

    def put_embeddings(
        self, backbone: str, tap: str, hashes: Sequence[str], vectors: np.ndarray
    ) -> int:
        """Store one batch of embeddings in one transaction; existing ones are kept.

        ``vectors`` has shape (len(hashes), dim); stored as float16. Returns rows inserted.
        """
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[0] != len(hashes):
            raise ValueError(f"vectors of shape {vectors.shape} do not match {len(hashes)} hashes")
        packed = vectors.astype(EMBEDDING_DTYPE)
        with self.transaction() as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO embeddings(backbone, tap, hash, vector) VALUES (?,?,?,?)",
                [(backbone, tap, h, packed[i].tobytes()) for i, h in enumerate(hashes)],
            )
            inserted = conn.total_changes - before
            if inserted:  # the columnar copy of this (backbone, tap), if any, is now stale
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES (?, '1') ON CONFLICT(key) "
                    "DO UPDATE SET value = CAST(value AS INTEGER) + 1",
                    (_version_key(backbone, tap),),
                )
            return inserted

    def embedded_hashes(self, backbone: str, tap: str) -> set[str]:
        """Hashes that already have an embedding for (backbone, tap)."""
        rows = self._conn.execute(
            "SELECT hash FROM embeddings WHERE backbone = ? AND tap = ?", (backbone, tap)
        )
        return {r[0] for r in rows}

    def _keyed_rows(self, backbone: str, tap: str, hashes: Sequence[str], columns: str):
        """Rows for a few hashes through the primary key (no table scan)."""
        rows = []
        unique = list(dict.fromkeys(hashes))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows += self._conn.execute(
                f"SELECT {columns} FROM embeddings WHERE backbone = ? AND tap = ? "
                f"AND hash IN ({marks}) ORDER BY hash",
                (backbone, tap, *chunk),
            ).fetchall()
        return rows

    def embedded_among(self, backbone: str, tap: str, hashes: Sequence[str]) -> set[str]:
        """Which of ``hashes`` have an embedding for (backbone, tap); keyed, fast for few."""
        return {r[0] for r in self._keyed_rows(backbone, tap, hashes, "hash")}

    # -- the columnar copy of large taps ---------------------------------------------------

    def _embeddings_version(self, backbone: str, tap: str) -> int:
        row = self._conn.execute(
            "SELECT value FROM meta WHERE key = ?", (_version_key(backbone, tap),)
        ).fetchone()
        return int(row[0]) if row else 0

    def _columns_paths(self, backbone: str, tap: str, version: int) -> tuple[Path, Path]:
        import hashlib

        key = hashlib.sha256(f"{backbone}\x00{tap}".encode()).hexdigest()[:16]
        stem = self.path / COLUMNS_DIR / f"{key}-v{version}"
        return stem.with_suffix(".vectors.npy"), stem.with_suffix(".hashes.npy")

    def _read_columns(self, backbone: str, tap: str, dtype):
        """The columnar copy if it matches the stored embeddings' version, else None."""
        vectors_path, hashes_path = self._columns_paths(
            backbone, tap, self._embeddings_version(backbone, tap)
        )
        try:
            hashes = np.load(hashes_path, allow_pickle=False)
            with open(vectors_path, "rb") as f:
                readers = {
                    (1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0,
                }
                reader = readers.get(np.lib.format.read_magic(f))
                if reader is None:
                    return None
                shape, fortran, stored = reader(f)
                if stored != EMBEDDING_DTYPE or fortran or len(shape) != 2:
                    return None
                if shape[0] != len(hashes):
                    return None
                matrix = np.empty(shape, dtype=dtype)
                # read straight into the result (float16) or through one chunk (other
                # dtypes): memory stays the result plus at most COLUMNS_READ_ROWS rows
                if matrix.dtype == EMBEDDING_DTYPE:
                    if f.readinto(memoryview(matrix).cast("B")) != matrix.nbytes:
                        return None
                else:
                    chunk = np.empty((min(COLUMNS_READ_ROWS, shape[0]), shape[1]), stored)
                    for start in range(0, shape[0], len(chunk)):
                        part = chunk[: min(len(chunk), shape[0] - start)]
                        if f.readinto(memoryview(part).cast("B")) != part.nbytes:
                            return None
                        matrix[start : start + len(part)] = part
        except (OSError, ValueError):  # absent, being replaced, or damaged: read SQLite
            return None
        return hashes.astype(str).tolist(), matrix

    def _write_columns(self, backbone: str, tap: str, version: int, hashes, matrix) -> None:
        """Keep a columnar copy (float16 ``.npy`` + hashes) of a large tap; old copies go."""
        vectors_path, hashes_path = self._columns_paths(backbone, tap, version)
        folder = vectors_path.parent
        try:
            folder.mkdir(exist_ok=True)
            prefix = vectors_path.name.split("-v")[0]
            for old in folder.glob(f"{prefix}-v*.npy"):
                old.unlink(missing_ok=True)
            for path, array in (
                (hashes_path, np.asarray(hashes, dtype="S64")),
                (vectors_path, np.asarray(matrix, dtype=EMBEDDING_DTYPE)),
            ):
                tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
                with open(tmp, "wb") as f:
                    np.save(f, array, allow_pickle=False)
                os.replace(tmp, path)
        except OSError:  # a read-only or full disk: the copy is only an accelerator
            pass

    def _scan(self, backbone: str, tap: str, dtype) -> tuple[list[str], np.ndarray]:
        """Every embedding of (backbone, tap) in hash order: from the columnar copy when it
        is current, else from SQLite (then written as the columnar copy when large)."""
        found = self._read_columns(backbone, tap, dtype)
        if found is not None:
            return found
        version = self._embeddings_version(backbone, tap)
        hashes, matrix = self._scan_sqlite(backbone, tap, dtype)
        if len(hashes) >= COLUMNS_MIN_ROWS and version == self._embeddings_version(backbone, tap):
            self._write_columns(backbone, tap, version, hashes, matrix)
        return hashes, matrix

    def _scan_sqlite(self, backbone: str, tap: str, dtype) -> tuple[list[str], np.ndarray]:
        """Every embedding of (backbone, tap) in hash order, read in chunks straight into one
        preallocated matrix: peak memory is the result plus one chunk (1M x 1024 as float32:
        4 GB, not the 8 GB that collecting all rows first and then converting took)."""
        n = self._conn.execute(
            "SELECT COUNT(*) FROM embeddings WHERE backbone = ? AND tap = ?", (backbone, tap)
        ).fetchone()[0]
        cursor = self._conn.execute(
            "SELECT hash, vector FROM embeddings WHERE backbone = ? AND tap = ? ORDER BY hash",
            (backbone, tap),
        )
        all_hashes: list[str] = []
        matrix = None
        while rows := cursor.fetchmany(SCAN_CHUNK):
            if matrix is None:
                dim = len(rows[0][1]) // EMBEDDING_DTYPE.itemsize
                matrix = np.empty((n, dim), dtype=dtype)
            chunk = np.frombuffer(b"".join(r[1] for r in rows), dtype=EMBEDDING_DTYPE)
            start = len(all_hashes)
            # a writer may have added rows since the count: grow rather than fail
            if start + len(rows) > len(matrix):
                matrix = np.concatenate([matrix, np.empty_like(matrix[: len(rows)])])
            matrix[start : start + len(rows)] = chunk.reshape(len(rows), -1)
            all_hashes += [r[0] for r in rows]
        if matrix is None:
            return [], np.zeros((0, 0), dtype=dtype)
        return all_hashes, matrix[: len(all_hashes)]

    def load_embeddings(
        self, backbone: str, tap: str, hashes: Sequence[str] | None = None, *, dtype=np.float32
    ) -> tuple[list[str], np.ndarray]:
        """Embeddings for (backbone, tap) as ``(hashes, matrix (n, dim))`` of ``dtype``.

        With ``hashes`` given, rows follow that order and a hash without an embedding raises
        ``KeyError``; without, every stored embedding is returned in hash order. A few hashes
        are looked up by key; many are read in one scan. ``dtype=np.float16`` returns the
        stored values without widening them (half the memory, for very large sets).
        """
        if hashes is not None and len(hashes) <= KEYED_LOOKUP_LIMIT:
            rows = self._keyed_rows(backbone, tap, hashes, "hash, vector")
            all_hashes = [r[0] for r in rows]
            matrix = None
            if rows:
                dim = len(rows[0][1]) // EMBEDDING_DTYPE.itemsize
                matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=EMBEDDING_DTYPE)
                matrix = matrix.reshape(len(rows), dim).astype(dtype)
        else:
            all_hashes, matrix = self._scan(backbone, tap, dtype)
        if not all_hashes:
            if hashes:
                raise KeyError(f"no {tap} embeddings for backbone {backbone!r} in {self.path}")
            return [], np.zeros((0, 0), dtype=dtype)
        if hashes is None:
            return all_hashes, matrix
        index = {h: i for i, h in enumerate(all_hashes)}
        missing = [h for h in hashes if h not in index]
        if missing:
            raise KeyError(
                f"{len(missing)} image(s) have no {tap} embedding for backbone {backbone!r} "
                f"(first: {missing[0][:12]}); run `python -m detector embed` first"
            )
        return list(hashes), matrix[[index[h] for h in hashes]]

    def backbones(self) -> pd.DataFrame:
        """Counts of stored embeddings per (backbone, tap)."""
        return pd.read_sql_query(
            "SELECT backbone, tap, COUNT(*) AS n FROM embeddings GROUP BY backbone, tap "
            "ORDER BY backbone, tap",
            self._conn,
        )

    def dataset(
        self, backbone: str, tap: str, *, split: str | None = None, labelled_only: bool = True
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """Image metadata aligned row by row with its embedding matrix.

        Only images that have an embedding for (backbone, tap) are returned; ``split`` keeps
        one split (the dataset's own or the assigned default one); ``labelled_only`` drops
        images without a label.
        """
        meta = self.images(with_errors=False)
        have = self.embedded_hashes(backbone, tap)
        meta = meta[meta["hash"].isin(have)]
        if labelled_only:
            meta = meta[meta["label"].notna()]
        if split is not None:
            meta = meta[meta["split"] == split]
        meta = meta.reset_index(drop=True)
        if meta.empty:
            return meta, np.zeros((0, 0), dtype=np.float32)
        _, x = self.load_embeddings(backbone, tap, meta["hash"].tolist())
        return meta, x

    # -- splits ---------------------------------------------------------------------------

    def set_splits(self, assignment: dict[str, str], name: str = "default") -> None:
        """Replace the named split assignment (image hash -> split name)."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM splits WHERE name = ?", (name,))
            conn.executemany(
                "INSERT INTO splits(name, hash, split) VALUES (?,?,?)",
                [(name, h, s) for h, s in assignment.items()],
            )

    def get_splits(self, name: str = "default") -> dict[str, str]:
        """The named split assignment (image hash -> split name); empty when none."""
        rows = self._conn.execute("SELECT hash, split FROM splits WHERE name = ?", (name,))
        return dict(rows.fetchall())

    # -- blobs: arrays and JSON documents -------------------------------------------------

    def put_array(self, namespace: str, key: str, array: np.ndarray, doc: dict | None = None):
        """Store a named array (kept at its dtype) with an optional JSON document."""
        array = np.ascontiguousarray(array)
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO blobs(namespace, key, dtype, shape, data, doc, created) "
                "VALUES (?,?,?,?,?,?,?)",
                (
                    namespace,
                    key,
                    array.dtype.str,
                    json.dumps(list(array.shape)),
                    array.tobytes(),
                    json.dumps(doc) if doc is not None else None,
                    time.time(),
                ),
            )

    def get_array(self, namespace: str, key: str) -> np.ndarray | None:
        """A named array, or None when absent."""
        row = self._conn.execute(
            "SELECT dtype, shape, data FROM blobs WHERE namespace = ? AND key = ?",
            (namespace, key),
        ).fetchone()
        if row is None or row[2] is None:
            return None
        return np.frombuffer(row[2], dtype=np.dtype(row[0])).reshape(json.loads(row[1])).copy()

    def put_json(self, namespace: str, key: str, doc) -> None:
        """Store a named JSON document."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO blobs(namespace, key, doc, created) VALUES (?,?,?,?)",
                (namespace, key, json.dumps(doc), time.time()),
            )

    def get_json(self, namespace: str, key: str):
        """A named JSON document, or None when absent."""
        row = self._conn.execute(
            "SELECT doc FROM blobs WHERE namespace = ? AND key = ?", (namespace, key)
        ).fetchone()
        return None if row is None or row[0] is None else json.loads(row[0])

    def blob_keys(self, namespace: str) -> list[str]:
        """Keys stored under a namespace."""
        rows = self._conn.execute(
            "SELECT key FROM blobs WHERE namespace = ? ORDER BY key", (namespace,)
        )
        return [r[0] for r in rows]

    # -- summaries ------------------------------------------------------------------------

    def summary(self) -> dict:
        """Counts by label, generator, split and backbone, for ``info`` and the sidebar."""
        df = self.images()
        ok = df[df["error"].isna()]
        label_names = ok["label"].map({0: "real", 1: "synthetic"}).fillna("unlabelled")
        return {
            "workspace": str(self.path),
            "images": len(df),
            "paths": int(self._conn.execute("SELECT COUNT(*) FROM paths").fetchone()[0]),
            "failed": int(df["error"].notna().sum()),
            "by_label": {str(k): int(v) for k, v in label_names.value_counts().items()},
            "by_generator": {
                str(k): int(v)
                for k, v in ok["generator"].fillna("real").value_counts().sort_index().items()
            },
            "by_split": {
                str(k): int(v)
                for k, v in ok["split"].fillna("none").value_counts().sort_index().items()
            },
            "backbones": [
                {"backbone": b, "tap": t, "embeddings": int(n)}
                for b, t, n in self.backbones().itertuples(index=False)
            ],
        }
