"""Scale-out figures: the Ray engine against the local one, and a million embeddings.

Run: ``.venv/bin/python benchmarks/bench_scale.py [--images 96] [--n-load 1000000]
[--n-train 250000] [--skip-ray] [--skip-load] [--skip-train]``

1. **Ray overhead on one machine**: the same folder of generated photo-like JPEGs embedded
   with ViT-B-16 (random weights: speed does not depend on the values) by ``--engine local``
   and by ``--engine ray`` on a local cluster of this machine's CPUs (object store capped at
   300 MB). The Ray figure excludes the cluster's start (once per session) but includes
   everything else: tasks, actor start with its model load, shards, ingest. Claim: Ray keeps
   >= 0.85 of local throughput.
2. **Loading 1M x 1024 float16 embeddings** from a workspace (built in a temporary folder,
   deleted afterwards; ``BENCH_TMP`` picks the folder's parent): SQLite alone, then
   ``load_embeddings`` as float16 and float32 (its first read writes the columnar copy, later
   reads use it), with the peak memory. Claim: < 10 s.
3. **Training a linear head** (the paper's recipe, early stopping) on ``--n-train`` x 1024
   features on ONE CPU thread; the time per epoch is scaled linearly to 1M rows. Claim: minutes.

The machine may be shared: repeat runs and quote ranges.
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detector.store import EMBEDDING_DTYPE, Workspace


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def make_images(folder: Path, n: int) -> None:
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(0)
    (folder / "real").mkdir(parents=True)
    for i in range(n):
        w, h = int(rng.integers(800, 1601)), int(rng.integers(600, 1201))
        base = rng.integers(0, 256, size=(h // 8, w // 8, 3), dtype=np.uint8)
        im = Image.fromarray(base).resize((w, h)).filter(ImageFilter.GaussianBlur(2))
        im.save(folder / "real" / f"{i:04d}.jpg", quality=90)


def bench_ray(n_images: int, batch_size: int) -> None:
    from detector.backbone import load_backbone
    from detector.datasets import load_dataset
    from detector.distributed import RayOptions, connect, embed_dataset_ray
    from detector.extract import embed_dataset
    from detector.identity import BackboneSpec

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        make_images(data, n_images)
        dataset = load_dataset(data)
        backbone = load_backbone("ViT-B-16", "random", device="cpu", precision="fp32",
                                 allow_random=True)  # fmt: skip
        t0 = time.perf_counter()
        local = embed_dataset(dataset, Workspace(Path(tmp) / "local"), backbone,
                              batch_size=batch_size, workers=1)  # fmt: skip
        local_s = time.perf_counter() - t0
        cpus = os.cpu_count() or 2
        options = RayOptions(num_cpus=cpus, object_store_memory=300 * 1024**2, workers=1,
                             cpus_per_worker=max(1, cpus - 1))  # fmt: skip
        t0 = time.perf_counter()
        connect(options)
        start_s = time.perf_counter() - t0
        spec = BackboneSpec("ViT-B-16", "random", precision="fp32", device="cpu",
                            allow_random=True)  # fmt: skip
        t0 = time.perf_counter()
        far = embed_dataset_ray(dataset, Workspace(Path(tmp) / "ray"), backbone, spec, options,
                                batch_size=batch_size)  # fmt: skip
        ray_s = time.perf_counter() - t0
        assert far.embedded == local.embedded == n_images, (far.as_dict(), local.as_dict())
        a, b = Workspace(Path(tmp) / "local"), Workspace(Path(tmp) / "ray")
        same = np.array_equal(a.load_embeddings(backbone.id, "pooled")[1],
                              b.load_embeddings(backbone.id, "pooled")[1])  # fmt: skip
        print(f"ray cluster start: {start_s:.1f} s (once per session, not counted below)")
        print(f"local engine: {n_images} images in {local_s:.1f} s = {n_images / local_s:.2f} /s")
        print(f"ray engine:   {n_images} images in {ray_s:.1f} s = {n_images / ray_s:.2f} /s")
        print(f"ray / local throughput: {local_s / ray_s:.2f} (aim >= 0.85); "
              f"pooled embeddings bitwise equal: {same}")  # fmt: skip


def build_workspace(path: Path, n: int, dim: int) -> None:
    ws = Workspace(path)
    ws.close()
    con = sqlite3.connect(path / "cuelens.sqlite")
    rng = np.random.default_rng(0)
    chunk = 50_000
    for start in range(0, n, chunk):
        vecs = rng.normal(size=(min(chunk, n - start), dim)).astype(EMBEDDING_DTYPE)
        con.executemany(
            "INSERT INTO embeddings(backbone, tap, hash, vector) VALUES ('bench', 'pooled', ?, ?)",
            ((f"{start + i:064x}", v.tobytes()) for i, v in enumerate(vecs)),
        )
        con.commit()
    con.close()


def bench_load(n: int, dim: int) -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        t0 = time.perf_counter()
        build_workspace(Path(tmp), n, dim)
        size = (Path(tmp) / "cuelens.sqlite").stat().st_size / 1024**3
        print(f"built {n:,} x {dim} float16 workspace ({size:.2f} GB) in "
              f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
        with Workspace(tmp) as ws:
            t0 = time.perf_counter()
            hashes, x = ws._scan_sqlite("bench", "pooled", np.float16)
            print(f"SQLite alone (row by row, no columnar copy): {n:,} x {dim} as float16 "
                  f"in {time.perf_counter() - t0:.1f} s")  # fmt: skip
            del hashes, x
            for dtype in (np.float16, np.float32):
                times = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    hashes, x = ws.load_embeddings("bench", "pooled", dtype=dtype)
                    times.append(time.perf_counter() - t0)
                    assert x.shape == (n, dim) and len(hashes) == n
                    del x, hashes
                print(f"load_embeddings {n:,} x {dim} as {np.dtype(dtype).name}: runs "
                      f"{', '.join(f'{t:.1f}' for t in times)} s (the first float16 run reads "
                      f"SQLite and writes the columnar copy, the others read the copy; "
                      f"aim < 10 s); peak RSS so far {peak_rss_gb():.1f} GB")  # fmt: skip


def bench_train(n: int, dim: int) -> None:
    import torch

    from detector.heads import LinearProbe

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=n)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    direction = rng.normal(size=dim).astype(np.float32)
    x += np.outer(y * 0.5, direction / np.linalg.norm(direction)).astype(np.float32)
    head = LinearProbe(backbone_id="bench/random")
    t0 = time.perf_counter()
    head.fit(x, y)
    seconds = time.perf_counter() - t0
    epochs = getattr(head, "n_iter_", None)
    per_epoch = seconds / epochs if epochs else None
    line = f"linear head on {n:,} x {dim}, 1 thread: {seconds:.0f} s"
    if epochs:
        line += f", {epochs} epochs ({per_epoch:.1f} s each)"
        line += f"; scaled to 1,000,000 rows: {per_epoch * 1e6 / n / 60:.1f} min per epoch, "
        line += f"{seconds * 1e6 / n / 60:.1f} min for the same number of epochs"
    print(line + f"; peak RSS {peak_rss_gb():.1f} GB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-load", type=int, default=1_000_000)
    parser.add_argument("--n-train", type=int, default=250_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args()
    if not args.skip_load:
        bench_load(args.n_load, args.dim)
    if not args.skip_train:
        bench_train(args.n_train, args.dim)
    if not args.skip_ray:
        bench_ray(args.images, args.batch_size)


if __name__ == "__main__":
    main()
