"""Dashboard settings read from the environment: backbone, limits, offline switch.

Plain Python (no Streamlit) so it is testable and the benchmark can use it.

Environment variables (all optional):

- ``CUE_LENS_MODEL`` / ``CUE_LENS_PRETRAINED``: the backbone (default the paper's
  ViT-L-14-336 / openai); ``CUE_LENS_DEVICE`` (auto, cpu, cuda, mps) and
  ``CUE_LENS_PRECISION`` (auto, bf16, fp32);
- ``CUE_LENS_OFFLINE=1``: never probe the network for weights (start in demo mode at once
  when they are not cached);
- ``CUE_LENS_HOME``, ``CUE_LENS_WORKSPACE``, ``CUE_LENS_DATA_ROOT``: see ``detector.paths``;
- ``CUE_LENS_MAX_FILES`` / ``CUE_LENS_MAX_TOTAL_MB``: the most files and megabytes analysed
  from one drop on the Detect page (200 files, 500 MB); the per-file limit is
  ``server.maxUploadSize`` in ``.streamlit/config.toml``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from detector.backbone import DEFAULT_MODEL, DEFAULT_PRETRAINED, TINY_CLIP
from detector.images import DEFAULT_MAX_PIXELS

REPO = Path(__file__).resolve().parent.parent
CONFIG_TOML = REPO / ".streamlit" / "config.toml"
UPLOAD_TYPES = (
    "jpg",
    "jpeg",
    "jpe",
    "jfif",
    "png",
    "webp",
    "gif",
    "bmp",
    "tif",
    "tiff",
    "avif",
    "jp2",
    "j2k",
    "ppm",
    "pgm",
    "pbm",
    "qoi",
    "mpo",
)


@dataclass(frozen=True)
class BackboneSpec:
    """What to load: ``detector.backbone.load_backbone(model, pretrained, device, precision)``."""

    model: str
    pretrained: str | None
    device: str = "auto"
    precision: str = "auto"

    @property
    def is_demo(self) -> bool:
        return self.model == TINY_CLIP

    @property
    def label(self) -> str:
        """``model / weights`` as a user reads it."""
        if self.is_demo:
            return f"{TINY_CLIP} (random weights)"
        return f"{self.model} / {self.pretrained}" if self.pretrained else self.model


DEMO_SPEC = BackboneSpec(TINY_CLIP, None, "cpu", "fp32")


def default_backbone_spec() -> BackboneSpec:
    """The backbone the app tries first (env overrides, else the paper's ViT-L/14-336)."""
    model = os.environ.get("CUE_LENS_MODEL") or DEFAULT_MODEL
    pretrained = os.environ.get("CUE_LENS_PRETRAINED") or (
        DEFAULT_PRETRAINED if model == DEFAULT_MODEL else None
    )
    return BackboneSpec(
        model=model,
        pretrained=None if model == TINY_CLIP else pretrained,
        device=os.environ.get("CUE_LENS_DEVICE") or "auto",
        precision=os.environ.get("CUE_LENS_PRECISION") or "auto",
    )


def offline() -> bool:
    """True when the network must not be probed for weights."""
    return any(os.environ.get(v) == "1" for v in ("CUE_LENS_OFFLINE", "HF_HUB_OFFLINE"))


def _int_env(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


def max_upload_files() -> int:
    """The most files analysed from one drop on the Detect page."""
    return _int_env("CUE_LENS_MAX_FILES", 200)


def max_upload_total_mb() -> int:
    """The most megabytes analysed from one drop (all files together)."""
    return _int_env("CUE_LENS_MAX_TOTAL_MB", 500)


def max_upload_file_mb() -> int:
    """``server.maxUploadSize`` of the running server (MB per file)."""
    try:
        from streamlit import config

        return int(config.get_option("server.maxUploadSize"))
    except Exception:  # outside a Streamlit process
        return 50


def max_pixels() -> int:
    """The pixel limit of the decoder (``detector.images.DEFAULT_MAX_PIXELS``)."""
    return DEFAULT_MAX_PIXELS
