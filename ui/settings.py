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
from pathlib import Path

from detector.backbone import DEFAULT_MODEL, DEFAULT_PRETRAINED, LOCAL_DIR_PREFIX, TINY_CLIP
from detector.errors import CueLensError
from detector.identity import BackboneSpec
from detector.images import DEFAULT_MAX_PIXELS
from detector.paths import check_data_path

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
    "heic",
    "heif",
    "jp2",
    "j2k",
    "ppm",
    "pgm",
    "pbm",
    "qoi",
    "mpo",
)


DEMO_SPEC = BackboneSpec(TINY_CLIP, None, "cpu", "fp32")

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def _looks_like_path(text: str) -> bool:
    return (
        "/" in text
        or "\\" in text
        or text.startswith(("~", "."))
        or text.lower().endswith(WEIGHT_SUFFIXES)
    )


def check_browser_backbone(
    model: str, pretrained: str | None, roots: list[Path], trusted: BackboneSpec | None = None
) -> None:
    """Refuse a backbone typed in the browser that names a file or folder outside ``roots``.

    The sidebar's backbone form takes a model name and a weights tag or file; a file (or a
    ``local-dir:`` folder) is read by the server (hashed for the backbone id, then loaded), so
    it must lie inside an allowed folder, like every other path a browser names. Raises
    ``PathNotAllowedError`` outside the roots and ``CueLensError`` for a missing path or a model
    name that is a path. Backbones set by the server's environment
    (``CUE_LENS_MODEL`` / ``CUE_LENS_PRETRAINED``) are trusted: pass that spec as ``trusted``
    and its own model and weights are accepted as they are.
    """
    model, weights = model.strip(), (pretrained or "").strip()
    trusted_model = trusted.model if trusted is not None else None
    trusted_weights = (trusted.pretrained or "") if trusted is not None else None
    if model != trusted_model:
        if model.startswith(LOCAL_DIR_PREFIX):
            check_data_path(model[len(LOCAL_DIR_PREFIX) :], roots)
        elif _looks_like_path(model) and not model.startswith("hf-hub:"):
            raise CueLensError(
                f"{model}: a model is an open_clip name (e.g. ViT-L-14-336) or "
                f"{LOCAL_DIR_PREFIX}/folder; put a checkpoint file under Weights"
            )
    names_a_file = _looks_like_path(weights) or Path(weights).expanduser().exists()
    if weights and weights != trusted_weights and names_a_file:
        check_data_path(weights, roots)


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
        draft=os.environ.get("CUE_LENS_DRAFT_DECODE") == "1",
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


ENV_RAY_ADDRESS = "CUE_LENS_RAY_ADDRESS"


def ray_address() -> str | None:
    """The Ray cluster the Data page may extract on (``auto``, ``ray://HOST:PORT``,
    ``HOST:PORT``), from ``CUE_LENS_RAY_ADDRESS``; None: extraction stays in this process."""
    return os.environ.get(ENV_RAY_ADDRESS) or None
