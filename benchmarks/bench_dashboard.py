"""Dashboard timings: upload-to-verdict against the backbone's forward pass, and page renders on
a 20,000-image workspace.

    .venv/bin/python benchmarks/bench_dashboard.py [--images 20000] [--json]

What runs: the real app (``app.py`` and its pages) under Streamlit's AppTest, in this process.
The workspace holds ``--images`` synthetic labelled embeddings at ViT-L sizes (pooled 1024-d,
projected 768-d) under the backbone id ``bench-clip/synthetic``, with a linear probe trained
on them through ``detector.train`` and concept directions from a deterministic fake text
encoder. The backbone is tiny-clip's real forward pass followed by a fixed random projection
to those sizes, so every upload really decodes, preprocesses, runs a transformer and is
stored; the figures compare the dashboard's overhead with that forward pass.

Aims (issue "The dashboard"): a verdict within the backbone's forward time + 0.5 s; each page
under 1 s after its first load. AppTest excludes the browser's drawing and the websocket, so
the render figures are the server's share.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BACKBONE_ID = "bench-clip/synthetic"
POOLED, PROJECTED = 1024, 768
GENERATORS = ("gan-a", "gan-b", "diffusion-a", "diffusion-b")
PAGES = ("pages/detect.py", "pages/concepts.py", "pages/generators.py", "pages/data.py")


class BenchBackbone:
    """tiny-clip's forward pass, then a fixed projection to ViT-L's tap sizes (1024 / 768)."""

    def __init__(self):
        from concepts.synthetic import FakeTextEncoder
        from detector.backbone import load_backbone

        self.inner = load_backbone("tiny-clip", device="cpu", precision="fp32")
        rng = np.random.default_rng(7)
        self.up_pooled = rng.standard_normal((self.inner.pooled_dim, POOLED)).astype(np.float32)
        self.up_proj = rng.standard_normal((self.inner.projected_dim, PROJECTED)).astype(np.float32)
        self.text = FakeTextEncoder(dim=PROJECTED, id=BACKBONE_ID)
        self.id = BACKBONE_ID
        self.is_demo = False
        self.preprocess = self.inner.preprocess
        self.image_size = self.inner.image_size
        self.device = self.inner.device
        self.precision = self.inner.precision
        self.pooled_dim, self.projected_dim = POOLED, PROJECTED

    def encode_images(self, pixels):
        import torch

        out = self.inner.encode_images(pixels)
        return {
            "pooled": out["pooled"] @ torch.from_numpy(self.up_pooled),
            "projected": out["projected"] @ torch.from_numpy(self.up_proj),
        }

    def encode_text(self, texts):
        return self.text.encode_text(texts)


def build_workspace(path: Path, n: int, seed: int = 0) -> None:
    """``n`` labelled images (half real, the rest over four generators), split 60/20/20, with
    embeddings carrying a weak per-generator cue, and a linear probe trained on them."""
    from detector.store import ImageRow, Workspace
    from detector.train import train_head

    rng = np.random.default_rng(seed)
    n_real = n // 2
    groups = ["real"] * n_real + [GENERATORS[i % len(GENERATORS)] for i in range(n - n_real)]
    cue_pooled = {g: rng.standard_normal(POOLED) * 0.08 for g in GENERATORS}
    cue_proj = {g: rng.standard_normal(PROJECTED) * 0.08 for g in GENERATORS}
    with Workspace(path) as ws:
        for start in range(0, n, 2000):
            chunk = range(start, min(n, start + 2000))
            rows, hashes, pooled, projected = [], [], [], []
            for i in chunk:
                g = groups[i]
                h = f"{i:064x}"
                split = ("train", "train", "train", "val", "test")[i % 5]
                rows.append(
                    ImageRow(
                        hash=h,
                        path=str(path / "images" / f"{g}_{i:06d}.png"),
                        label=0 if g == "real" else 1,
                        generator=None if g == "real" else g,
                        source="bench",
                        split=split,
                        width=512,
                        height=512,
                        format="PNG",
                        mode="RGB",
                        n_bytes=100_000,
                    )
                )
                p = rng.standard_normal(POOLED) + (cue_pooled[g] if g != "real" else 0)
                q = rng.standard_normal(PROJECTED) + (cue_proj[g] if g != "real" else 0)
                hashes.append(h)
                pooled.append(p)
                projected.append(q)
            with ws.transaction():
                ws.add_images(rows)
                ws.put_embeddings(BACKBONE_ID, "pooled", hashes, np.asarray(pooled))
                ws.put_embeddings(BACKBONE_ID, "projected", hashes, np.asarray(projected))
        train_head(ws, "linear", backbone_id=BACKBONE_ID, out="bench_probe")


def patch_app(bench_backbone: BenchBackbone) -> None:
    """Point the app at the bench backbone (its weights "available", loaded once)."""
    from ui import resources

    resources.weights_status = lambda *args, **kwargs: (True, "")
    resources._backbone = lambda *args, **kwargs: bench_backbone


def patch_apptest_pages() -> None:
    """Every AppTest run through app.py, as a server does after its first run (see
    tests/test_app.py: AppTest re-reads the pages/ folder flag before every run)."""
    from streamlit.runtime.scriptrunner import script_runner

    def run_entrypoint(main_script_path: str) -> None:
        code = compile(Path(main_script_path).read_text(), main_script_path, "exec")
        exec(code, {"__name__": "__main__", "__file__": main_script_path})

    script_runner._mpa_v1 = run_entrypoint


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def check(at, where: str) -> None:
    from ui.views import INTERNAL_ERROR

    problems = [e.value for e in at.exception] + [
        e.value for e in at.error if INTERNAL_ERROR in e.value
    ]
    if problems:
        raise SystemExit(f"{where}: {problems}")


def forward_time(backbone: BenchBackbone, image_bytes: bytes, repeats: int = 20) -> float:
    """Median seconds of the backbone alone for one image: decode, preprocess, forward."""
    import torch

    from detector.images import decode_image

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        image = decode_image(image_bytes, min_side=backbone.decode_min_side).image
        backbone.encode_images(torch.stack([backbone.preprocess(image)]))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def distinct_images(n: int) -> list[bytes]:
    """``n`` distinct 640 x 480 PNG photos-to-be (never seen by the workspace)."""
    import io

    from PIL import Image

    rng = np.random.default_rng(123)
    out = []
    for _ in range(n):
        pixels = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--uploads", type=int, default=5, help="warm uploads to time")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import logging

    logging.getLogger("streamlit").setLevel(logging.ERROR)
    from streamlit.testing.v1 import AppTest

    tmp = Path(tempfile.mkdtemp(prefix="cue_lens_bench_"))
    ws_path = tmp / "workspace"
    t_build = timed(lambda: build_workspace(ws_path, args.images))
    os.environ.update(
        CUE_LENS_HOME=str(tmp / "home"),
        CUE_LENS_OFFLINE="1",
        CUE_LENS_MODEL="bench-clip",
        CUE_LENS_PRETRAINED="synthetic",
        CUE_LENS_WORKSPACE=str(ws_path),
        CUE_LENS_DATA_ROOT=str(tmp),
    )
    backbone = BenchBackbone()
    patch_app(backbone)
    patch_apptest_pages()
    images = distinct_images(args.uploads + 2)
    t_forward = forward_time(backbone, images[0])

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=600)
    t_start = timed(at.run)
    check(at, "start")

    def upload(i: int, name: str) -> float:
        files = [(name, images[i], "image/png")]
        seconds = timed(lambda: at.file_uploader(key="detect_upload").set_value(files).run())
        check(at, f"upload {name}")
        if not any("P(synthetic)" in m.value for m in at.markdown):
            raise SystemExit(f"upload {name}: no verdict on the page")
        return seconds

    t_first_upload = upload(0, "first.png")  # fits the concept surrogate, loads caches
    warm = [upload(1 + i, f"warm{i}.png") for i in range(args.uploads)]
    again = AppTest.from_file(str(REPO / "app.py"), default_timeout=600)
    again.run()
    t_seen = timed(
        lambda: (
            again.file_uploader(key="detect_upload")
            .set_value([("again.png", images[1], "image/png")])
            .run()
        )
    )
    check(again, "same bytes")

    renders = {}
    for page in PAGES:
        first = timed(lambda p=page: at.switch_page(p).run())
        check(at, page)
        rerun = [timed(at.run) for _ in range(3)]
        renders[page] = {"first": first, "after": statistics.median(rerun)}
    back = {}
    for page in PAGES:  # coming back to a page later in the session
        back[page] = timed(lambda p=page: at.switch_page(p).run())

    t_warm = statistics.median(warm)
    result = {
        "images": args.images,
        "build_workspace_s": t_build,
        "app_start_s": t_start,
        "backbone_forward_s": t_forward,
        "upload_first_s": t_first_upload,
        "upload_warm_s": t_warm,
        "upload_warm_overhead_s": t_warm - t_forward,
        "upload_warm_ratio": t_warm / t_forward,
        "upload_same_bytes_s": t_seen,
        "pages": {
            p: {"first_s": renders[p]["first"], "rerun_s": renders[p]["after"], "back_s": back[p]}
            for p in PAGES
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return result
    print(
        f"workspace: {args.images:,} labelled images, pooled {POOLED}-d, projected "
        f"{PROJECTED}-d ({t_build:.1f} s to build, probe included)"
    )
    print(f"app start (first run, empty Detect page): {t_start:.2f} s")
    print()
    print("| upload of one new image (640x480 PNG) | seconds | vs backbone forward |")
    print("|---|---|---|")
    print(f"| backbone alone: decode + preprocess + forward | {t_forward:.3f} | 1.0x |")
    print(
        f"| first upload of the process (fits surrogate, loads workspace) | "
        f"{t_first_upload:.2f} | {t_first_upload / t_forward:.0f}x |"
    )
    print(
        f"| later uploads, median of {args.uploads} | {t_warm:.3f} | {t_warm / t_forward:.1f}x "
        f"(+{t_warm - t_forward:.3f} s) |"
    )
    print(
        f"| same bytes again, new session (embedding from the workspace) | {t_seen:.3f} | "
        f"{t_seen / t_forward:.1f}x |"
    )
    print()
    print(f"| page ({args.images:,} images) | first load | rerun (median of 3) | back later |")
    print("|---|---|---|---|")
    for p in PAGES:
        r = result["pages"][p]
        print(
            f"| {Path(p).stem} | {r['first_s']:.2f} s | {r['rerun_s']:.2f} s | "
            f"{r['back_s']:.2f} s |"
        )
    aim_upload = t_warm <= t_forward + 0.5
    aim_pages = all(r["rerun_s"] < 1.0 and r["back_s"] < 1.0 for r in result["pages"].values())
    print()
    print(
        f"aim: verdict within forward + 0.5 s: {'met' if aim_upload else 'NOT met'}; "
        f"every page under 1 s after its first load: {'met' if aim_pages else 'NOT met'}"
    )
    return result


if __name__ == "__main__":
    main()
