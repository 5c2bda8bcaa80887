"""Concept benchmark: scoring a large workspace, custom concepts, surrogate and bottleneck.

Run: ``.venv/bin/python benchmarks/bench_concepts.py [--scores 100000] [--custom 20000]``

Claims checked (printed with the measured figures):

1. concept scores for 100,000 projected embeddings (768-d, ViT-L/14) x 150 concepts: one
   blocked matrix product; reported in seconds and embeddings per second;
2. a custom concept on a 20,000-image workspace "in well under a second once the embeddings
   exist": the direction (text encoding, then the cached hit) plus scores, per-generator
   distribution and AUCs; loading the 20,000 projected embeddings from the workspace is timed
   separately (the dashboard keeps them in memory);
3. for scale: the lasso surrogate of a linear head on 20,000 images x 171 concepts, and one
   epoch of concept-bottleneck training on 20,000 images.

Embeddings are random (speed does not depend on their values). The text encoder is tiny-clip's
(random weights; ViT-L/14's text tower is larger and is not available offline), so the
encoding figure is a lower bound.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from concepts.attribution import fit_surrogate
from concepts.bottleneck import ConceptBottleneck
from concepts.directions import phrase_direction
from concepts.importance import custom_concept_report
from concepts.scores import concept_scores
from concepts.synthetic import random_directions
from concepts.vocabulary import load_vocabulary
from detector.store import ImageRow, Workspace

DIM = 768
GENERATORS = ("real", "sd15", "sdxl", "midjourney", "dalle3", "progan")


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    """Median wall time of ``repeat`` calls (after one warm-up) and the last result."""
    fn()
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def random_workspace_data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    groups = np.asarray(GENERATORS)[rng.integers(0, len(GENERATORS), n)]
    meta = pd.DataFrame(
        {
            "hash": [f"{i:064x}" for i in range(n)],
            "label": pd.array((groups != "real").astype(int), dtype="Int64"),
            "generator": np.where(groups == "real", None, groups),
        }
    )
    projected = rng.standard_normal((n, DIM)).astype(np.float32)
    return meta, projected


def bench_scores(n: int, n_concepts: int) -> None:
    """Claim 1: one blocked matrix product over the whole workspace."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    d = random_directions(n_concepts, DIM)
    seconds, s = timed(lambda: concept_scores(x, d))
    assert s.shape == (n, n_concepts)
    print(
        f"1. concept scores {n:,} x {n_concepts} ({DIM}-d): {seconds:.3f} s "
        f"({n / seconds:,.0f} embeddings/s)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scores", type=int, default=100_000, help="embeddings to score")
    parser.add_argument("--concepts", type=int, default=150, help="concepts to score")
    parser.add_argument("--custom", type=int, default=20_000, help="images for custom concepts")
    args = parser.parse_args()

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} (other jobs share these cores)"
    )

    bench_scores(args.scores, args.concepts)

    # 2. custom concept on a workspace
    from detector.backbone import load_backbone

    meta, projected = random_workspace_data(args.custom)
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp) / "ws")
        rows = [
            ImageRow(hash=h, path=f"img/{h[-8:]}.png", label=int(lab), generator=g, split="test")
            for h, lab, g in zip(meta["hash"], meta["label"], meta["generator"], strict=True)
        ]
        ws.add_images(rows)
        ws.put_embeddings("bench/random", "projected", meta["hash"].tolist(), projected)
        load_s, (ws_meta, ws_projected) = timed(
            lambda: ws.dataset("bench/random", "projected"), repeat=1
        )
        encoder = load_backbone("tiny-clip", device="cpu", precision="fp32")
        encoder.id = "bench/random"  # the directions are keyed by the workspace's backbone
        start = time.perf_counter()
        direction = phrase_direction("visible lens flare", encoder=encoder, workspace=ws)
        encode_s = time.perf_counter() - start
        cached_s, _ = timed(
            lambda: phrase_direction("visible lens flare", encoder=encoder, workspace=ws)
        )
        # the tiny text tower is 32-d: embed its direction into 768-d for the timing
        direction = np.resize(direction, DIM).astype(np.float32)
        report_s, result = timed(
            lambda: custom_concept_report(direction, ws_meta, projected=ws_projected), repeat=5
        )
        ws.close()
    assert result["scores"].shape == (args.custom,)
    print(
        f"2. custom concept on {args.custom:,} images: {(cached_s + report_s) * 1000:.0f} ms "
        f"with the direction cached ({cached_s * 1000:.2f} ms direction + "
        f"{report_s * 1000:.0f} ms scores, distribution and {len(GENERATORS) - 1} AUCs)"
    )
    print(
        f"   first use of a phrase: + {encode_s * 1000:.0f} ms text encoding "
        f"(tiny-clip text tower, a lower bound for ViT-L/14)"
    )
    print(
        f"   loading the {args.custom:,} projected embeddings from the workspace: "
        f"{load_s:.2f} s (once per session)"
    )

    # 3. surrogate and bottleneck
    vocab = load_vocabulary()
    dirs = random_directions(len(vocab), DIM, seed=2)
    scores = concept_scores(projected, dirs)
    head_w = np.random.default_rng(3).standard_normal(DIM).astype(np.float32)
    logits = projected @ head_w / np.linalg.norm(projected, axis=1)
    start = time.perf_counter()
    surrogate = fit_surrogate(scores, logits, vocab.ids, dirs)
    surrogate_s = time.perf_counter() - start
    print(
        f"3. lasso surrogate, {args.custom:,} images x {len(vocab)} concepts (5-fold CV): "
        f"{surrogate_s:.1f} s (held-out R^2 {surrogate.fidelity:.3f})"
    )
    y = meta["label"].astype(int).to_numpy()
    start = time.perf_counter()
    model = ConceptBottleneck(dirs, list(vocab.ids), max_epochs=1).fit(projected, y)
    epoch_s = time.perf_counter() - start
    print(
        f"   concept bottleneck, one epoch on {args.custom:,} images x {len(vocab)} "
        f"concepts (batch {model.batch_size}): {epoch_s:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
