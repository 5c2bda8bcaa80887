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
