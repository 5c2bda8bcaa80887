"""Extraction benchmark: pipeline vs raw forward, bf16 vs fp32, and the cached second run.

Run: ``.venv/bin/python benchmarks/bench_embed.py [--model ViT-B-16] [--images 96]``

Claims checked (printed with the measured figures):

1. pipeline throughput (decode + preprocess in DataLoader workers + forward + store) over a
   folder of mixed real-size JPEG/PNG files, divided by the raw forward throughput on already
   preprocessed tensors (same model, batch and precision), at bf16 and at fp32, with the
   bounds that decoding on the same cores puts on it: aim >= 0.9;
2. bf16 (weights cast once) vs fp32 CPU forward throughput: aim >= 1.6x; cosine similarity
   of bf16 and fp32 embeddings of the same images: aim >= 0.99;
3. a second ``embed`` of the same data computes nothing: aim >= 300 images/s;
4. what the opt-in reduced-scale JPEG decoding (``--draft-decode``) changes: decode time per
   JPEG, model-input difference in 8-bit levels, and the cosine of the embeddings it gives
   against full decoding (the default, the paper's pixels). No aim: it is reported so a user
   can judge the trade.

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

from detector.backbone import load_backbone, resolve_precision
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


def preprocess_all(backbone, records) -> tuple[torch.Tensor, dict[str, list[float]]]:
    """The model inputs of every file, and the seconds each file's decode + preprocess took."""
    from detector.images import decode_image, read_bytes

    tensors, cost = [], {}
    for record in records:
        data = read_bytes(record.path)
        t0 = time.perf_counter()
        image = decode_image(data, min_side=backbone.decode_min_side).image
        tensors.append(backbone.preprocess(image))
        kind = Path(record.path).suffix.lower().lstrip(".")
        cost.setdefault(kind, []).append(time.perf_counter() - t0)
    return torch.stack(tensors), cost


def draft_effect(backbone, records) -> None:
    """Full vs reduced-scale decoding of the JPEGs that draft decoding would shrink."""
    from detector.images import decode_image, read_bytes

    full_t, draft_t, levels_mean, levels_max, full_x, draft_x = [], [], [], [], [], []
    for record in records:
        data = read_bytes(record.path)
        t0 = time.perf_counter()
        full = decode_image(data).image
        t1 = time.perf_counter()
        draft = decode_image(data, min_side=backbone.image_size).image
        t2 = time.perf_counter()
        if draft.size == full.size:
            continue  # not a JPEG, or too small for reduced-scale decoding
        full_t.append(t1 - t0)
        draft_t.append(t2 - t1)
        a, b = backbone.preprocess(full), backbone.preprocess(draft)
        std = torch.tensor(backbone.preprocess.transforms[-1].std).view(3, 1, 1)
        diff = ((a - b) * std * 255).abs()  # back to 8-bit levels
        levels_mean.append(float(diff.mean()))
        levels_max.append(float(diff.max()))
        full_x.append(a)
        draft_x.append(b)
    if not full_x:
        print("draft decoding: no JPEG here is large enough to be decoded at reduced scale")
        return
    ea = backbone.encode_images(torch.stack(full_x))["pooled"].numpy()
    eb = backbone.encode_images(torch.stack(draft_x))["pooled"].numpy()
    cos = (ea * eb).sum(1) / (np.linalg.norm(ea, axis=1) * np.linalg.norm(eb, axis=1))
    print(
        f"draft decoding ({len(full_x)} JPEGs it shrinks): decode {1000 * np.mean(full_t):.1f} "
        f"-> {1000 * np.mean(draft_t):.1f} ms per file; model input differs by mean "
        f"{np.mean(levels_mean):.2f}, max {np.max(levels_max):.0f} levels of 255; cosine of "
        f"pooled embeddings to full decoding: min {cos.min():.5f}, mean {cos.mean():.5f} "
        f"(random weights: real CLIP weights may react differently)"
    )


def print_ceiling(cost: dict[str, list[float]], raw: float) -> None:
    """Two bounds on pipeline/raw when decoding and the forward share this CPU's cores.

    An image costs ``1 / raw`` seconds of forward on all cores and ``d`` seconds of decode +
    preprocess on one. If decoding only used spare core time, no schedule could beat
    1 / (1 + d * raw / cores). But the forward's threads meet at a barrier after every
    operation, so a core lent to the decoder for ``d`` stalls all of them for about ``d``:
    1 / (1 + d * raw). Measurements here fall near the second. On a GPU the forward leaves
    the CPU free and neither bound applies.
    """
    cores = torch.get_num_threads()
    for kind, seconds in sorted(cost.items()):
        print(f"decode + preprocess, one core: {kind} {1000 * np.mean(seconds):.1f} ms per file")
    d = float(np.mean([s for seconds in cost.values() for s in seconds]))
    print(
        f"bounds on pipeline/raw for this mix (d = {1000 * d:.1f} ms, raw = {raw:.2f}/s): "
        f"spare-core sharing {1 / (1 + d * raw / cores):.3f}, "
        f"forward stalls while decoding {1 / (1 + d * raw):.3f}"
    )


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
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"precision auto -> {resolve_precision('auto', torch.device('cpu'), args.model)}"
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

            tensors, cost = preprocess_all(backbone, dataset.records)
            raw, emb = raw_throughput(backbone, tensors, args.batch_size)
            results[precision] = (raw, emb)
            print(f"[{precision}] raw forward: {raw:.2f} images/s (batch {args.batch_size})")
            print_ceiling(cost, raw)
            with Workspace(tmp / f"ws-{precision}") as ws:
                summary = embed_dataset(
                    dataset, ws, backbone, batch_size=args.batch_size, workers=workers
                )
                pipe = summary.images / summary.seconds
                print(
                    f"[{precision}] pipeline ({workers} decode workers): {pipe:.2f} images/s "
                    f"-> ratio pipeline/raw = {pipe / raw:.3f} (aim >= 0.9)"
                )
                if precision == "bf16":
                    again = embed_dataset(load_dataset(data), ws, backbone, workers=workers)
                    assert again.embedded == 0 and again.cached == args.images
                    print(
                        f"[{precision}] second embed: {again.cached} cached, "
                        f"{again.images_per_second:.0f} images/s (aim >= 300)"
                    )

        draft_effect(backbone, load_dataset(data).records)  # the fp32 backbone
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
