"""Two jobs sharing the CPU: OpenMP threads that sleep when idle (PASSIVE) against spinning.

Run: ``.venv/bin/python benchmarks/bench_concurrent.py [--repeats 3]``

``detector`` sets ``OMP_WAIT_POLICY=PASSIVE`` unless the user set it. Claims checked (printed
with the measured figures, each job in its own process, the policy set before torch loads):

1. two ``embed`` runs at once on one workspace (tiny-clip, 200 small PNGs, batch 2) finish
   much sooner with PASSIVE than with ACTIVE (spinning) threads;
2. two ViT-B-16 forward loops at once (random weights, batch 32) get more images/s in total;
3. one ViT-B-16 forward loop alone is not slower with PASSIVE (ratio about 1.0).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

FORWARD = """
import time, torch, detector
from detector.backbone import load_backbone
x = torch.randn(32, 3, 224, 224)
bb = load_backbone("ViT-B-16", "random", device="cpu", precision="fp32", allow_random=True)
bb.encode_images(x)
t = time.perf_counter()
for _ in range(3):
    bb.encode_images(x)
print(96 / (time.perf_counter() - t))
"""


def run_together(commands: list[list[str]], policy: str) -> list[str]:
    env = {**os.environ, "OMP_WAIT_POLICY": policy, "PYTHONWARNINGS": "ignore"}
    procs = [
        subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        for cmd in commands
    ]
    outs = [p.communicate()[0].decode() for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"a job failed under {policy}")
    return outs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; figures are per repeat, {args.repeats} repeats per policy")

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        rng = np.random.default_rng(0)
        for i in range(200):
            folder = data / ("real" if i % 2 == 0 else "gan")
            folder.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:04d}.png")
        embed_seconds = {}
        for policy in ("PASSIVE", "ACTIVE"):
            runs = []
            for r in range(args.repeats):
                ws = Path(tmp) / f"ws-{policy}-{r}"
                cmd = [sys.executable, "-m", "detector", "embed", str(data), "-w", str(ws)]
                cmd += ["--model", "tiny-clip", "--batch-size", "2", "--workers", "0", "--json"]
                outs = run_together([cmd, cmd], policy)
                runs.append(max(json.loads(o)["seconds"] for o in outs))
            embed_seconds[policy] = runs
            print(f"two embeds at once, {policy}: slower run took " + _fmt(runs, "s"))
        ratio = np.median(embed_seconds["ACTIVE"]) / np.median(embed_seconds["PASSIVE"])
        print(f"-> ACTIVE / PASSIVE time (medians): {ratio:.1f}x (claim: PASSIVE much faster)")

    forward = [sys.executable, "-c", FORWARD]
    totals, alone = {}, {}
    for policy in ("PASSIVE", "ACTIVE"):
        totals[policy] = [
            sum(float(o) for o in run_together([forward, forward], policy))
            for _ in range(args.repeats)
        ]
        alone[policy] = [float(run_together([forward], policy)[0]) for _ in range(args.repeats)]
        print(f"two ViT-B-16 forwards at once, {policy}: total " + _fmt(totals[policy], "img/s"))
        print(f"one ViT-B-16 forward alone, {policy}: " + _fmt(alone[policy], "img/s"))
    both = np.median(totals["PASSIVE"]) / np.median(totals["ACTIVE"])
    one = np.median(alone["PASSIVE"]) / np.median(alone["ACTIVE"])
    print(f"-> two at once, PASSIVE / ACTIVE throughput (medians): {both:.2f} (claim > 1)")
    print(f"-> one alone, PASSIVE / ACTIVE throughput (medians): {one:.2f} (claim about 1.0)")


def _fmt(values: list[float], unit: str) -> str:
    return ", ".join(f"{v:.2f}" for v in values) + f" {unit}"


if __name__ == "__main__":
    main()
