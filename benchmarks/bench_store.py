"""Workspace read speed: 100,000 embeddings back into one float32 matrix.

Run: ``.venv/bin/python benchmarks/bench_store.py [--n 100000]``. Claim: well under a second
for each tap (the page cache warm, as after the first read of a session).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detector.store import EMBEDDING_DTYPE, Workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(tmp)
        rng = np.random.default_rng(0)
        for tap, dim in (("pooled", 1024), ("projected", 768)):
            vectors = rng.normal(size=(args.n, dim)).astype(np.float32)
            con = sqlite3.connect(ws.db_path)  # bulk fill; the read path is what is timed
            con.executemany(
                "INSERT INTO embeddings(backbone, tap, hash, vector) VALUES ('bench', ?, ?, ?)",
                (
                    (tap, f"{i:064x}", vectors[i].astype(EMBEDDING_DTYPE).tobytes())
                    for i in range(args.n)
                ),
            )
            con.commit()
            con.close()
            ws.load_embeddings("bench", tap)  # warm the page cache
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                _, x = ws.load_embeddings("bench", tap)
                times.append(time.perf_counter() - t0)
            print(
                f"{tap}: {x.shape[0]:,} x {x.shape[1]} float16 -> float32 in "
                f"{min(times):.3f} s (best of 3, median {sorted(times)[1]:.3f} s; aim < 1 s)"
            )
        ws.close()


if __name__ == "__main__":
    main()
