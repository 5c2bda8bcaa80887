"""Shared fixtures: the repo's paths, the shared test data, a tiny CLIP backbone."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLES = SHARED / "samples"
CLIP_CUES = SHARED / "clip-cues"


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """../shared/samples (41 real and synthetic images with manifest.csv)."""
    if not (SAMPLES / "manifest.csv").is_file():
        pytest.skip(f"shared sample images not found at {SAMPLES} (clone without ../shared)")
    return SAMPLES


@pytest.fixture(scope="session")
def clip_cues_dir() -> Path:
    """../shared/clip-cues (the paper's released heads and vocabulary)."""
    if not (CLIP_CUES / "README.md").is_file():
        pytest.skip(f"released clip-cues heads not found at {CLIP_CUES} (clone without ../shared)")
    return CLIP_CUES


@pytest.fixture(scope="session")
def tiny_backbone():
    """The built-in tiny-clip backbone on CPU in fp32 (deterministic)."""
    from detector.backbone import load_backbone

    return load_backbone("tiny-clip", device="cpu", precision="fp32")


TINY_CPU = ["--model", "tiny-clip", "--device", "cpu", "--precision", "fp32"]  # CLI options


def embed_samples_with_probe(samples_dir: Path, ws_dir: Path, backbone) -> Path:
    """The 41 sample images embedded into ``ws_dir`` by ``python -m detector embed`` (tiny-clip,
    in-process), and a linear probe fitted on their pooled features saved as ``probe``."""
    from detector.cli import main
    from detector.heads import LinearProbe, make_card, save_head
    from detector.store import Workspace

    manifest = str(samples_dir / "manifest.csv")
    code = main(["embed", manifest, "-w", str(ws_dir), *TINY_CPU, "--workers", "0", "--json"])
    assert code == 0
    with Workspace(ws_dir) as ws:
        meta, x = ws.dataset(backbone.id, "pooled")
        head = LinearProbe(backbone_id=backbone.id, max_epochs=20)
        head.fit(x, meta["label"].astype(int).to_numpy())
        save_head(head, ws.heads_dir / "probe", make_card(head))
    return ws_dir
