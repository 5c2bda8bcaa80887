"""Cue Lens ``embed`` against the paper's own inference pipeline, same images, same batch.

Run: ``.venv/bin/python benchmarks/bench_reference.py [--model ViT-L-14-336] [--images 32]``
(the reference needs ``transformers``: ``pip install -r requirements-bench.txt``, or point
``--transformers-path`` at a folder holding it).

The two sides, each in its own subprocess (so each has its own peak RSS), with random weights
(speed and memory do not depend on the values):

- **reference**: what ``clip_cues``' ``predict_batch`` does: a ``transformers``
  ``CLIPVisionModel`` (ViT-L/14-336 shapes) in fp32, torchvision ``Resize``, ``CenterCrop``,
  ``ToTensor``, ``Normalize`` with CLIP's mean and std, every image opened and converted to RGB
  up front, then batches under ``torch.no_grad`` through the tower and a linear head;
- **embed**: ``python -m detector embed`` with default settings (precision ``auto``, default
  decode workers) on a local checkpoint file of the same architecture, into a new workspace.

Times exclude model loading: the reference is timed from opening the images to the last
batch; ``embed`` reports its own seconds (hashing, decoding, forward and storing). The first
``embed`` on a machine also measures its precision (``detector.precision``); that is part of
loading, reported separately. Peak RSS is ``ru_maxrss`` of the side's process (DataLoader
workers are separate processes; their peak is printed too), and ``pss`` the largest
proportional set size of the whole process tree, sampled every second (shared pages counted
once).

``--raw`` adds a third subprocess: Cue Lens' forward pass alone on preprocessed tensors, to
show end-to-end over raw forward (the figure that matters on a GPU).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SAMPLES = REPO.parent / "shared" / "samples"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SEED = 20260212


# -- the images -------------------------------------------------------------------------------


def pick_images(samples: Path, n: int) -> list[tuple[str, str, str]]:
    """The first n/2 real and n/2 synthetic sample images: (path, label, generator)."""
    with open(samples / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    real = [r for r in rows if r["label"] == "real"][: n // 2]
    fake = [r for r in rows if r["label"] == "synthetic"][: n - n // 2]
    return [(str(samples / r["path"]), r["label"], r["generator"] or "") for r in real + fake]


def copy_with_manifest(images, folder: Path) -> Path:
    """Copy the images into ``folder`` with a manifest (a manifest may only name files below
    its own folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (path, label, generator) in enumerate(images):
        name = f"{i:03d}_{Path(path).name}"
        shutil.copyfile(path, folder / name)
        rows.append((name, label, generator))
    manifest = folder / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "generator"])
        w.writerows(rows)
    return manifest


# -- the sides (each runs in its own process) --------------------------------------------------


def reference_config(model: str) -> dict:
    """``CLIPVisionConfig`` arguments for the open_clip architecture ``model``.

    ViT-L-14-336 gives width 1024, 24 layers, 16 heads, patch 14, 336 px: the shapes of
    ``openai/clip-vit-large-patch14-336``, which the paper's code loads."""
    import open_clip

    from detector.backbone import _register_local_configs

    _register_local_configs()
    cfg = open_clip.get_model_config(model)
    vision = cfg["vision_cfg"]
    width = int(vision["width"])
    return {
        "hidden_size": width,
        "intermediate_size": int(width * vision.get("mlp_ratio", 4.0)),
        "num_hidden_layers": int(vision["layers"]),
        "num_attention_heads": width // int(vision.get("head_width", 64)),
        "image_size": int(vision["image_size"]),
        "patch_size": int(vision["patch_size"]),
        "projection_dim": int(cfg["embed_dim"]),
        "hidden_act": "quick_gelu",
    }


def run_reference(model_name: str, paths: list[str], batch: int) -> dict:
    import numpy as np
    import torch
    from PIL import Image
    from torchvision.transforms import CenterCrop, Compose, Normalize, Resize, ToTensor
    from transformers import CLIPVisionConfig, CLIPVisionModel

    t_load = time.perf_counter()
    config = CLIPVisionConfig(**reference_config(model_name))
    size = config.image_size
    torch.manual_seed(SEED)
    model = CLIPVisionModel(config).eval()
    head = torch.nn.Linear(config.hidden_size, 1).eval()
    for p in list(model.parameters()) + list(head.parameters()):
        p.requires_grad = False
    transforms = Compose(
        [Resize(size), CenterCrop(size), ToTensor(), Normalize(CLIP_MEAN, CLIP_STD)]
    )
    load_s = time.perf_counter() - t_load

    t0 = time.perf_counter()
    images = [Image.open(p).convert("RGB") for p in paths]  # all decoded up front
    probs = []
    for i in range(0, len(images), batch):
        pixels = torch.stack([transforms(im) for im in images[i : i + batch]])
        with torch.no_grad():
            pooled = model(pixel_values=pixels).pooler_output
            probs.append(torch.sigmoid(head(pooled)).numpy())
    seconds = time.perf_counter() - t0
    assert np.concatenate(probs).shape[0] == len(paths)
    return {"images": len(paths), "seconds": seconds, "load_seconds": load_s}


def run_raw(model: str, checkpoint: str, paths: list[str], batch: int, device: str) -> dict:
    """Cue Lens' forward alone on tensors prepared beforehand (same precision choice)."""
    import torch

    from detector.backbone import load_backbone
    from detector.images import decode_image

    backbone = load_backbone(model, checkpoint, device=device)
    tensors = torch.stack(
        [backbone.preprocess(decode_image(p, min_side=backbone.image_size).image) for p in paths]
    )
    if backbone.device.type == "cuda":
        tensors = tensors.pin_memory()
    backbone.encode_images(tensors[:batch])  # warm-up (kernels, autotuning)
    if backbone.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(0, len(tensors), batch):
        backbone.encode_images(tensors[i : i + batch])
    if backbone.device.type == "cuda":
        torch.cuda.synchronize()
    return {"images": len(paths), "seconds": time.perf_counter() - t0}


# -- the parent: one subprocess per side, with its memory -----------------------------------


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            children = []
        todo.extend(int(c) for c in children)
    return out


def _pss_kb(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            pass
    return total


def measure(cmd: list[str], env: dict) -> tuple[str, str, dict]:
    """Run ``cmd`` to its end; (stdout, stderr, memory of its process tree while it ran)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=REPO)
        peak_pss, worker_rss = 0, 0
        while proc.poll() is None:
            pids = _tree(proc.pid)
            peak_pss = max(peak_pss, _pss_kb(pids))
            for p in pids[1:]:
                try:
                    status = Path(f"/proc/{p}/status").read_text()
                    worker_rss = max(worker_rss, int(status.split("VmHWM:")[1].split()[0]))
                except (OSError, IndexError, ValueError):
                    pass
            time.sleep(1.0)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed:\n{stderr[-3000:]}")
    return stdout, stderr, {"peak_pss_gb": peak_pss / 1e6, "worker_peak_rss_gb": worker_rss / 1e6}


def run_side(cmd: list[str], env: dict) -> dict:
    stdout, _, mem = measure(cmd, env)
    return {**json.loads(stdout.strip().splitlines()[-1]), **mem}


def run_embed(manifest: Path, ws: Path, args, ckpt: Path, env: dict) -> dict:
    cmd = _peak_rss_wrapper(
        [
            *("detector", "embed", str(manifest), "-w", str(ws), "--json"),
            *("--model", args.model, "--pretrained", str(ckpt), "--device", args.device),
            *("--batch-size", str(args.batch_size)),
        ]
    )
    t0 = time.perf_counter()
    stdout, stderr, mem = measure(cmd, env)
    wall = time.perf_counter() - t0
    summary = json.loads(stdout)
    peak = [json.loads(line) for line in stderr.splitlines() if "__peak_rss_kb" in line]
    return {
        "images": summary["embedded"],
        "seconds": summary["seconds"],
        "load_seconds": wall - summary["seconds"],
        "peak_rss_gb": peak[-1]["__peak_rss_kb"] / 1e6 if peak else float("nan"),
        "precision": summary.get("precision"),
        **mem,
    }


def _peak_rss_wrapper(argv: list[str]) -> list[str]:
    """Run argv in a tiny Python wrapper that prints the process's own peak RSS at exit."""
    code = (
        "import atexit, json, resource, runpy, sys\n"
        "def report():\n"
        "    print(json.dumps({'__peak_rss_kb': "
        "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}), file=sys.stderr)\n"
        "atexit.register(report)\n"
        "sys.argv = sys.argv[1:]\n"
        "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
    )
    return [sys.executable, "-c", code, *argv]


def make_checkpoint(model: str, folder: Path) -> Path:
    """A local checkpoint with random weights (seeded), made once and reused."""
    import torch

    from detector.backbone import _register_local_configs

    path = folder / f"{model}-random-{SEED}.pt"
    if path.is_file():
        return path
    import open_clip

    _register_local_configs()
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    net = open_clip.create_model(model, pretrained=None)
    tmp = path.with_suffix(".tmp")
    torch.save(net.state_dict(), tmp)
    os.replace(tmp, path)
    return path


def speed_ratio(row: dict, other: dict) -> float:
    """Images per second of ``row`` over those of ``other`` (both measured rows)."""
    return (other["seconds"] / other["images"]) / (row["seconds"] / row["images"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-L-14-336")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--samples", default=str(SAMPLES))
    parser.add_argument("--device", default="auto", help="for embed and --raw (reference: CPU)")
    parser.add_argument("--checkpoint-dir", default=str(Path(tempfile.gettempdir()) / "cue-bench"))
    parser.add_argument("--transformers-path", default=None, help="extra sys.path entry")
    parser.add_argument("--raw", action="store_true", help="also time the forward alone")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--side", choices=["reference", "raw"], help=argparse.SUPPRESS)
    parser.add_argument("--manifest", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.side:  # inside a subprocess
        if args.transformers_path:
            sys.path.append(args.transformers_path)
        with open(args.manifest, newline="") as fh:
            folder = Path(args.manifest).parent
            paths = [str(folder / r["path"]) for r in csv.DictReader(fh)]
        if args.side == "reference":
            result = run_reference(args.model, paths, args.batch_size)
        else:
            result = run_raw(args.model, args.checkpoint, paths, args.batch_size, args.device)
        result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print(json.dumps(result))
        return

    import torch

    from detector.precision import cpu_model_name

    samples = Path(args.samples)
    if not (samples / "manifest.csv").is_file():
        raise SystemExit(f"{samples}: sample images not found (needs ../shared/samples)")
    images = pick_images(samples, args.images)
    print(
        f"machine: {cpu_model_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{platform.python_implementation()} {platform.python_version()}"
    )
    print(
        f"images: {len(images)} sample images ({sum(1 for i in images if i[1] == 'real')} real), "
        f"batch {args.batch_size}, model {args.model} with random weights"
    )
    t0 = time.perf_counter()
    ckpt = make_checkpoint(args.model, Path(args.checkpoint_dir))
    print(
        f"checkpoint: {ckpt} ({ckpt.stat().st_size / 1e9:.2f} GB, {time.perf_counter() - t0:.0f} s)"
    )

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # a fresh Cue Lens home: the first embed measures its precision, the second reuses it
        env = {**os.environ, "CUE_LENS_HOME": str(tmp / "home")}
        manifest = copy_with_manifest(images, tmp / "images")
        common = ["--manifest", str(manifest), "--batch-size", str(args.batch_size)]
        common += ["--model", args.model, "--checkpoint", str(ckpt), "--device", args.device]
        if args.transformers_path:
            common += ["--transformers-path", args.transformers_path]
        me = [sys.executable, str(Path(__file__).resolve())]
        if not args.skip_reference:
            rows["reference"] = run_side([*me, "--side", "reference", *common], env)
        rows["embed (first run: measures precision)"] = run_embed(
            manifest, tmp / "ws1", args, ckpt, env
        )
        rows["embed"] = run_embed(manifest, tmp / "ws2", args, ckpt, env)
        if args.raw:
            rows["raw"] = run_side([*me, "--side", "raw", *common], env)

    labels = {
        "reference": "the paper's pipeline (HF CLIPVisionModel fp32, images decoded first)",
        "embed (first run: measures precision)": "`detector embed`, default settings, first run",
        "embed": "`detector embed`, default settings (precision decided)",
        "raw": "Cue Lens forward alone on preprocessed tensors",
    }
    print()
    print("| pipeline | images/s | peak RSS (main process) | peak PSS (process tree) |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        print(
            f"| {labels[name]} | {r['images'] / r['seconds']:.3f} | {r['peak_rss_gb']:.2f} GB "
            f"| {r['peak_pss_gb']:.2f} GB |"
        )
    e = rows["embed"]
    first = rows["embed (first run: measures precision)"]
    print()
    print(f"precision decided by the first embed: {json.dumps(first['precision'])}")
    print(
        f"loading (weights, precision): first embed {first['load_seconds']:.1f} s, second "
        f"{e['load_seconds']:.1f} s; decode-worker peak RSS {e['worker_peak_rss_gb']:.2f} GB"
    )

    if "reference" in rows:
        print(
            f"embed / reference throughput: {speed_ratio(e, rows['reference']):.2f}x (aim >= 1.0 "
            f"everywhere, >= 2.5 where bf16 pays); reference load "
            f"{rows['reference']['load_seconds']:.1f} s"
        )
    if "raw" in rows:
        ratio = speed_ratio(e, rows["raw"])
        print(f"end-to-end / raw forward: {ratio:.3f} (aim >= 0.8 on a GPU)")
    print(json.dumps(rows, default=str))


if __name__ == "__main__":
    main()
