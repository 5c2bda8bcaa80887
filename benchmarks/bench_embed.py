"""Extraction benchmark: pipeline vs raw forward, bf16 vs fp32, and the cached second run.

Run: ``.venv/bin/python benchmarks/bench_embed.py [--model ViT-B-16] [--images 96]``

Claims checked (printed with the measured figures):

1. pipeline throughput (decode + preprocess in DataLoader workers + forward + store) over a
   folder of mixed real-size JPEG/PNG files, divided by the raw forward throughput on already
   preprocessed tensors (same model, batch and precision): aim >= 0.9;
2. bf16 autocast vs fp32 CPU forward throughput: aim >= 1.6x; cosine similarity of bf16 and
   fp32 embeddings of the same images: aim >= 0.99;
3. a second ``embed`` of the same data computes nothing: aim >= 300 images/s.

The model has random weights (``pretrained="random"``): speed does not depend on the values.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detector.backbone import load_backbone
from detector.datasets import load_dataset
from detector.extract import default_workers, embed_dataset
from detector.store import Workspace


def make_folder(root: Path, n: int, seed: int = 0, png_every: int = 3) -> Path:
    """Photo-like images (smooth colour fields + noise) at camera-ish sizes, JPEG and PNG."""
    rng = np.random.default_rng(seed)
    sizes = [(1024, 768), (1280, 960), (800, 600), (1600, 1200), (960, 1280)]
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        small = rng.integers(0, 256, (h // 64 + 1, w // 64 + 1, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((w, h), Image.BICUBIC)
        noise = rng.normal(0, 6, (h, w, 3))
        arr = np.clip(np.asarray(im, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
        im = Image.fromarray(arr).filter(ImageFilter.SMOOTH)
        cls = "real" if i % 2 == 0 else "generator_a"
        (root / cls).mkdir(parents=True, exist_ok=True)
        if png_every and i % png_every == png_every - 1:
            im.save(root / cls / f"{i:04d}.png", optimize=False)
        else:
            im.save(root / cls / f"{i:04d}.jpg", quality=90)
    return root


def raw_throughput(backbone, tensors: torch.Tensor, batch: int) -> tuple[float, np.ndarray]:
    """Images per second of the forward pass alone, and the pooled embeddings."""
    for _ in range(2):  # warm-up: oneDNN builds its bf16 kernels on the first full batches
        backbone.encode_images(tensors[:batch])
    out = []
    t0 = time.perf_counter()
    for start in range(0, len(tensors), batch):
        out.append(backbone.encode_images(tensors[start : start + batch])["pooled"].numpy())
    return len(tensors) / (time.perf_counter() - t0), np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument(
        "--png-every", type=int, default=3, help="every Nth file is a PNG (0: JPEG only)"
    )
    args = parser.parse_args()
    workers = default_workers() if args.workers is None else args.workers

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_folder(tmp / "data", args.images, png_every=args.png_every)
        size_mb = sum(p.stat().st_size for p in data.rglob("*.*")) / 1e6
        n_png = sum(1 for _ in data.rglob("*.png"))
        print(
            f"data: {args.images} files ({args.images - n_png} JPEG, {n_png} PNG), "
            f"800x600 to 1600x1200, {size_mb:.1f} MB"
        )

        results = {}
        for precision in ("bf16", "fp32"):
            backbone = load_backbone(
                args.model, "random", device="cpu", precision=precision, allow_random=True
            )
            dataset = load_dataset(data)
            from detector.images import decode_image

            tensors = torch.stack(
                [backbone.preprocess(decode_image(r.path).image) for r in dataset.records]
            )
            raw, emb = raw_throughput(backbone, tensors, args.batch_size)
            results[precision] = (raw, emb)
            print(f"[{precision}] raw forward: {raw:.2f} images/s (batch {args.batch_size})")
            if precision == "bf16":
                ws = Workspace(tmp / "ws")
                summary = embed_dataset(
                    dataset, ws, backbone, batch_size=args.batch_size, workers=workers
                )
                pipe = summary.images / summary.seconds
                print(
                    f"[{precision}] pipeline ({workers} decode workers): {pipe:.2f} images/s "
                    f"-> ratio pipeline/raw = {pipe / raw:.3f} (aim >= 0.9)"
                )
                again = embed_dataset(load_dataset(data), ws, backbone, workers=workers)
                assert again.embedded == 0 and again.cached == args.images
                print(
                    f"[{precision}] second embed: {again.cached} cached, "
                    f"{again.images_per_second:.0f} images/s (aim >= 300)"
                )
                ws.close()

        bf16, fp32 = results["bf16"], results["fp32"]
        a, b = bf16[1], fp32[1]
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        print(f"bf16 / fp32 forward throughput: {bf16[0] / fp32[0]:.2f}x (aim >= 1.6)")
        print(
            f"cosine(bf16, fp32) pooled embeddings: min {cos.min():.4f}, "
            f"mean {cos.mean():.4f} (aim >= 0.99)"
        )


if __name__ == "__main__":
    main()
