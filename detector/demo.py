"""The offline demo: a procedural dataset, embedded with ``tiny-clip``, and a head trained on it.

When the default backbone's weights cannot be had, the dashboard starts on this demo instead
of stopping (docs/architecture.md, "Offline demo"). Everything here is deterministic (fixed
seed) and idempotent: ``ensure_demo`` builds what is missing and, on a second call, only
checks a small state record in the workspace (milliseconds).

The dataset imitates the structure of a real benchmark, with a difference a model can learn:

- ``real`` "photographs": smooth low-frequency scenes with sensor-like pixel noise and a
  vignette, with camera EXIF (make ``Cue Lens``, model ``DemoCam``);
- three pseudo-generators, with a ``Software`` tag naming them:
  ``checkerboard-gan`` (nearest-neighbour upsampling with a period-2 checkerboard, the
  classic transposed-convolution artefact), ``tiling-synth`` (a small texture tile repeated
  over a gradient: periodic structure) and ``smooth-diffusion`` (over-smoothed, saturated
  colour fields without any noise).

Every class is saved half as JPEG (quality 90) and half as PNG, so the file format carries
no label. A demo built by an older version of this module is removed and rebuilt.

Layout: ``DEMO/data/{train,val,test}/{real,GENERATOR}/NNNN.{jpg,png}``, a folder dataset with
its own split (see ``detector.datasets``), embedded into the workspace ``DEMO`` itself.

Nothing here imports Streamlit; the CLI, the tests and the dashboard call the same function.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from detector.errors import CueLensError
from detector.identity import RANDOM_WEIGHTS, TINY_CLIP, BackboneRef
from detector.paths import cue_lens_home

DEMO_VERSION = 2  # bump when the dataset changes: an older demo is rebuilt
DEMO_SEED = 20260212
DEMO_BANNER = "DEMO: random weights, scores are not meaningful"
GENERATORS = ("checkerboard-gan", "tiling-synth", "smooth-diffusion")
SPLITS = (("train", 0.5), ("val", 0.25), ("test", 0.25))
IMAGE_SIZE = (160, 128)  # width, height; tiny-clip resizes to 64 px
STATE_NAMESPACE = "demo"
STATE_KEY = "state"
DEMO_HEAD_NAME = "demo_linear_probe"

Progress = Callable[[str, float], None]


class DemoError(CueLensError):
    """The demo could not be prepared."""


@dataclass
class DemoInfo:
    """Where the demo lives and what ``ensure_demo`` did.

    ``head_path`` is None when no head could be trained (the training module missing).
    ``built`` lists the steps done by this call (empty when everything was reused).
    """

    workspace: Path
    data_dir: Path
    backbone_id: str
    head_path: Path | None
    n_images: int
    built: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["workspace"], d["data_dir"] = str(self.workspace), str(self.data_dir)
        d["head_path"] = str(self.head_path) if self.head_path else None
        return d


def demo_dir(home: str | os.PathLike | None = None) -> Path:
    """The demo folder: ``HOME/demo`` with HOME from ``CUE_LENS_HOME`` (``~/.cache/cue-lens``)."""
    return (Path(home).expanduser() if home else cue_lens_home()) / "demo"


# -- the procedural images -------------------------------------------------------------------


def _smooth_field(rng: np.random.Generator, h: int, w: int, n_waves: int = 4) -> np.ndarray:
    """A smooth random field in [0, 1] of shape (h, w): a few low-frequency waves."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros((h, w), np.float32)
    for _ in range(n_waves):
        fx, fy = rng.uniform(0.2, 1.6, 2) * 2 * np.pi / np.array([w, h])
        phase = rng.uniform(0, 2 * np.pi)
        out += rng.uniform(0.4, 1.0) * np.sin(fx * x + fy * y + phase)
    out -= out.min()
    return out / max(float(out.max()), 1e-6)


def _colourise(rng: np.random.Generator, field: np.ndarray, saturation: float) -> np.ndarray:
    """Map a [0, 1] field to RGB floats in [0, 255] between two random colours."""
    base = rng.uniform(40, 200, 3)
    other = np.clip(base + rng.normal(0, 80 * saturation, 3), 0, 255)
    rgb = base[None, None, :] * (1 - field[..., None]) + other[None, None, :] * field[..., None]
    return rgb.astype(np.float32)


def _scene(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A simple landscape in RGB floats (h, w, 3): sky, ground, a horizon and a few discs."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    horizon = h * rng.uniform(0.35, 0.7) + h * 0.08 * np.sin(
        2 * np.pi * x / w * rng.uniform(0.5, 2.0) + rng.uniform(0, 2 * np.pi)
    )
    sky = _colourise(rng, np.clip(y / max(h, 1), 0, 1), saturation=0.5)
    ground = _colourise(rng, _smooth_field(rng, h, w, 4), saturation=0.5)
    edge = 1.0 / (1.0 + np.exp(-(y - horizon) / 1.5))
    scene = sky * (1 - edge[..., None]) + ground * edge[..., None]
    for _ in range(int(rng.integers(1, 4))):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(6, h / 4)
        disc = np.clip(r - np.hypot(x - cx, y - cy), 0, 1.5) / 1.5
        colour = rng.uniform(20, 235, 3)
        scene = scene * (1 - disc[..., None]) + colour[None, None, :] * disc[..., None]
    return scene


def _real(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    scene = _scene(rng, w, h)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((x - w / 2) / (w / 2)) ** 2 + ((y - h / 2) / (h / 2)) ** 2
    scene *= (1.0 - 0.2 * r2)[..., None]  # lens vignette
    grain = rng.normal(0, 12.0, (h // 2 + 1, w // 2 + 1, 3)).repeat(2, 0).repeat(2, 1)
    return scene + grain[:h, :w]  # sensor noise (2-pixel grain: survives the 64 px resize)


def _checkerboard_gan(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    small = _scene(rng, w // 4 + 1, h // 4 + 1)
    up = small.repeat(4, axis=0).repeat(4, axis=1)[:h, :w]
    y, x = np.mgrid[0:h, 0:w]
    checker = np.where((x // 4 + y // 4) % 2 == 0, 1.0, -1.0).astype(np.float32)
    return up + rng.uniform(10, 16) * checker[..., None]


def _tiling_synth(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    size = int(rng.integers(12, 25))
    tile = rng.uniform(-1, 1, (size, size)).astype(np.float32)
    tile = (tile + np.roll(tile, 1, 0) + np.roll(tile, 1, 1)) / 3.0
    reps = (h // size + 1, w // size + 1)
    texture = np.tile(tile, reps)[:h, :w]
    return _scene(rng, w, h) + rng.uniform(60, 80) * texture[..., None]


def _box_blur(img: np.ndarray, radius: int) -> np.ndarray:
    out = img.copy()
    for axis in (0, 1):
        acc = np.zeros_like(out)
        for shift in range(-radius, radius + 1):
            acc += np.roll(out, shift, axis=axis)
        out = acc / (2 * radius + 1)
    return out


def _smooth_diffusion(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    scene = _box_blur(_scene(rng, w, h), 4)
    mean = scene.mean(axis=2, keepdims=True)
    # over-saturated, brighter, and no noise at all: the glossy look of a diffusion render
    return 0.5 * mean + 90 + 2.0 * (scene - mean)


_MAKERS = {
    "real": _real,
    "checkerboard-gan": _checkerboard_gan,
    "tiling-synth": _tiling_synth,
    "smooth-diffusion": _smooth_diffusion,
}


def render_demo_image(kind: str, index: int, seed: int = DEMO_SEED) -> Image.Image:
    """One procedural image of ``kind`` (``real`` or a generator), deterministic per index."""
    if kind not in _MAKERS:
        raise DemoError(f"unknown demo image kind {kind!r} (known: {', '.join(_MAKERS)})")
    rng = np.random.default_rng([seed, list(_MAKERS).index(kind), index])
    w, h = IMAGE_SIZE
    pixels = np.clip(_MAKERS[kind](rng, w, h), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def _split_of(index: int, n: int) -> str:
    edge = 0.0
    for name, share in SPLITS:
        edge += share
        if index < round(edge * n):
            return name
    return SPLITS[-1][0]


def generate_demo_dataset(
    data_dir: str | os.PathLike,
    *,
    n_real: int = 96,
    per_generator: int = 32,
    seed: int = DEMO_SEED,
) -> int:
    """Write the procedural dataset below ``data_dir`` (see module docstring); returns files.

    Files that already exist are left alone, so an interrupted run just continues.
    """
    root = Path(data_dir)
    written = 0
    plan = [("real", n_real)] + [(g, per_generator) for g in GENERATORS]
    for kind, n in plan:
        for i in range(n):
            folder = root / _split_of(i, n) / kind
            # Every class gets the same mix of formats, so the file format is no shortcut
            # (the bias audit would rightly flag a dataset whose classes differ by format).
            as_jpeg = i % 2 == 0
            suffix = ".jpg" if as_jpeg else ".png"
            target = folder / f"{kind}_{i:04d}{suffix}"
            if target.exists():
                continue
            folder.mkdir(parents=True, exist_ok=True)
            image = render_demo_image(kind, i, seed)
            exif = Image.Exif()
            tmp = target.with_suffix(target.suffix + ".part")
            if kind == "real":
                exif[0x010F] = "Cue Lens"  # Make
                exif[0x0110] = "DemoCam"  # Model
            else:
                exif[0x0131] = f"Cue Lens demo generator ({kind})"  # Software
            if as_jpeg:
                image.save(tmp, "JPEG", quality=90, exif=exif.tobytes())
            else:
                image.save(tmp, "PNG", exif=exif.tobytes())
            tmp.replace(target)  # atomic: a killed run never leaves half a file
            written += 1
    return written


# -- the demo workspace ------------------------------------------------------------------------


@contextlib.contextmanager
def _lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on the demo folder, so two processes never build it twice at once."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: best effort without a lock
        yield
        return
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def demo_state(workspace) -> dict | None:
    """The demo's state record in a workspace (None when the demo was never completed)."""
    return workspace.get_json(STATE_NAMESPACE, STATE_KEY)


DEMO_AUDIT_NOTE = (
    "Expected here: this is Cue Lens' built-in demo data. Its procedural 'real' images carry "
    "sensor-like grain, which compresses worse than the smooth synthetic ones, so file size "
    "separates the classes by construction (formats and sizes are balanced). On your own data "
    "the same warning means a shortcut a detector could learn."
)


def audit_note(workspace) -> str | None:
    """What to say above a bias audit of ``workspace``: ``DEMO_AUDIT_NOTE`` for the demo's own
    workspace (its warnings are expected), None for any other."""
    return DEMO_AUDIT_NOTE if demo_state(workspace) is not None else None


def _state_is_current(state: dict | None, folder: Path) -> bool:
    if not state or state.get("version") != DEMO_VERSION:
        return False
    head = state.get("head")
    if head is None:  # built before the training module was there: train the head now
        import importlib.util

        return importlib.util.find_spec("detector.train") is None
    return (folder / head).is_file()


def ensure_demo(
    home: str | os.PathLike | None = None,
    *,
    backbone=None,
    progress: Progress | None = None,
) -> DemoInfo:
    """Build (or reuse) the demo: images, tiny-clip embeddings, and a trained demo head.

    ``backbone`` is a loaded ``tiny-clip`` backbone to reuse (loaded here when needed).
    ``progress(step, fraction)`` reports the step being done. A second call finds the state
    record and returns at once without loading anything.
    """
    # pandas (store), and torch further on, are loaded here, not at import: every dashboard
    # page imports this module for DEMO_BANNER before anything needs a model
    from detector.store import Workspace

    start = time.perf_counter()
    folder = demo_dir(home)
    data_dir = folder / "data"
    tiny_id = BackboneRef(TINY_CLIP, RANDOM_WEIGHTS).id
    with Workspace(folder) as ws:
        state = demo_state(ws)
        if _state_is_current(state, folder):
            return _info(folder, state, [], start)
    with _lock(folder):
        with Workspace(folder) as ws:
            state = demo_state(ws)  # another process may have finished while we waited
            if _state_is_current(state, folder):
                return _info(folder, state, [], start)
        if state and state.get("version") != DEMO_VERSION:
            _remove_old_demo(folder)
        return _build(folder, data_dir, tiny_id, backbone, progress, start)


def _remove_old_demo(folder: Path) -> None:
    """Delete a demo built by another version (its images, database and heads)."""
    import shutil

    for name in ("data", "heads"):
        shutil.rmtree(folder / name, ignore_errors=True)
    for db in folder.glob("cuelens.sqlite*"):
        db.unlink()


def _build(folder, data_dir, tiny_id, backbone, progress, start) -> DemoInfo:
    # heavy (pandas here, torch below): loaded on a build only, as in ensure_demo
    from detector.store import Workspace

    with Workspace(folder) as ws:
        built: list[str] = []

        def report(step: str, fraction: float) -> None:
            if progress is not None:
                progress(step, fraction)

        report("generating demo images", 0.0)
        if generate_demo_dataset(data_dir):
            built.append("images")
        from detector.datasets import load_dataset
        from detector.extract import embed_dataset

        if backbone is None:
            from detector.backbone import load_backbone

            report("loading tiny-clip", 0.2)
            backbone = load_backbone(TINY_CLIP, device="cpu", precision="fp32")
        if backbone.id != tiny_id:
            raise DemoError(f"the demo is embedded with {tiny_id}, not {backbone.id}")
        dataset = load_dataset(data_dir)
        report("embedding demo images", 0.3)
        summary = embed_dataset(
            dataset,
            ws,
            backbone,
            workers=0,
            progress=lambda done, total: report(
                "embedding demo images", 0.3 + 0.5 * done / max(total, 1)
            ),
        )
        if summary.failed:
            raise DemoError(f"demo images failed to embed: {summary.errors[:3]}")
        if summary.embedded:
            built.append("embeddings")
        report("training the demo head", 0.85)
        head_path = train_demo_head(ws, backbone.id)
        if head_path is not None:
            built.append("head")
        state = {
            "version": DEMO_VERSION,
            "backbone": backbone.id,
            "data": "data",
            "head": head_path.relative_to(folder).as_posix() if head_path else None,
            "n_images": len(dataset),
            "created": time.time(),
        }
        ws.put_json(STATE_NAMESPACE, STATE_KEY, state)
        report("demo ready", 1.0)
        return _info(folder, state, built, start)


def _info(folder: Path, state: dict, built: list[str], start: float) -> DemoInfo:
    head = state.get("head")
    return DemoInfo(
        workspace=folder,
        data_dir=folder / state.get("data", "data"),
        backbone_id=state["backbone"],
        head_path=(folder / head) if head else None,
        n_images=int(state.get("n_images", 0)),
        built=built,
        seconds=time.perf_counter() - start,
    )


def train_demo_head(workspace, backbone_id: str) -> Path | None:
    """Train the demo's linear probe (train split, early stopping and threshold on val) and
    save it as ``WS/heads/demo_linear_probe.safetensors``; its card is marked ``demo``.

    Returns the saved file, or None when the training module is not installed.
    """
    try:
        from detector.train import train_head
    except ImportError:
        return None
    result = train_head(
        workspace,
        "linear",
        backbone_id=backbone_id,
        train_split="train",
        val_split="val",
        seed=DEMO_SEED,
        out=DEMO_HEAD_NAME,
    )
    return result.path


def describe(info: DemoInfo) -> str:
    """One JSON line about the demo (for logs and the CLI)."""
    return json.dumps(info.as_dict())
