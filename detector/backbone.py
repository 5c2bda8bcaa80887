"""Frozen CLIP backbones: loading, the two feature taps, device and precision.

``load_backbone`` is one factory read top to bottom: resolve the weights source, build the
open_clip model, load the weights (failing loudly, never falling back to random weights under
a real model's name), attach the preprocessing, pick device and precision.

Weights sources:

- a pretrained tag, e.g. ``load_backbone("ViT-L-14-336", "openai")`` (the paper's backbone);
  taken from the local cache, downloaded when the network allows;
- a local checkpoint file: ``load_backbone("ViT-B-16", "/path/to/weights.safetensors")``;
- an open_clip model folder: ``load_backbone("local-dir:/path/to/folder")``;
- ``tiny-clip``: a built-in tiny CLIP with random weights from a fixed seed (identical in every
  process), for tests and the offline demo. Its scores mean nothing.

One forward pass yields both taps: ``pooled`` (CLS token after the final layer norm, before the
projection; 1024-d for ViT-L) and ``projected`` (``pooled @ proj``, the image-text space).

OpenAI's CLIP weights were trained with QuickGELU (``x * sigmoid(1.702 x)``). open_clip's plain
model names (``ViT-L-14-336``) build ``nn.GELU`` and only warn when given OpenAI weights, so
every backbone that carries OpenAI weights (the ``openai`` tag, or a local checkpoint file for
an architecture OpenAI released) is built from open_clip's ``-quickgelu`` variant of the
model, and its id says so: ``ViT-L-14-336-quickgelu/openai``. Ids of earlier Cue Lens versions
(``ViT-L-14-336/openai``: GELU and reduced-scale JPEG decoding) are recognised as stale by
:func:`stale_reason`.
"""

from __future__ import annotations

# open_clip (and torchvision, huggingface_hub) are imported inside the functions that use
# them: their first import takes seconds, and ids, devices and precision are answered without.
import contextlib
import ctypes
import hashlib
import logging
import math
import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from detector import hashing, paths
from detector.convert import hf_cache_hint
from detector.errors import CueLensError
from detector.identity import (
    DEFAULT_INTERPOLATION,
    DEFAULT_MODEL,
    DEFAULT_PRETRAINED,
    LOCAL_DIR_MODEL,
    RANDOM_WEIGHTS,
    TINY_CLIP,
    BackboneRef,
)
from detector.precision import PrecisionDecision, cached_decision, choose_cpu_precision, machine_key

ASSETS = paths.assets_dir()
MODEL_CONFIG_DIR = ASSETS / "models"

TINY_CLIP_SEED = 20260212
LOCAL_DIR_PREFIX = "local-dir:"

# The preprocessing of the reference paper's code: bilinear resize of the shorter side, centre
# crop, CLIP mean/std. The released heads only reproduce with it.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
QUICKGELU_SUFFIX = "-quickgelu"


class WeightsUnavailableError(CueLensError):
    """The requested backbone weights cannot be had (not cached, no network, no local file)."""


class BackboneError(CueLensError):
    """The backbone cannot be built or does not expose the feature taps."""


@dataclass
class Backbone:
    """A loaded, frozen CLIP model with its preprocessing and identity.

    ``id`` names model + weights (e.g. ``ViT-L-14-336-quickgelu/openai``,
    ``ViT-B-16/file:1a2b3c4d5e6f``,
    ``tiny-clip/random``) and travels with every embedding and every head.
    """

    id: str
    model_name: str
    weights: str
    model: torch.nn.Module
    preprocess: Callable
    tokenizer: Callable
    device: torch.device
    precision: str
    image_size: int
    pooled_dim: int
    projected_dim: int
    is_demo: bool = False
    text_calls: int = field(default=0, repr=False)
    draft_decode: bool = False
    has_text: bool = True

    @property
    def decode_min_side(self) -> int | None:
        """``min_side`` for ``detector.images.decode_image``: None (full decode, the default)
        unless reduced-scale JPEG decoding was asked for (``draft_decode``)."""
        return self.image_size if self.draft_decode else None

    # how the precision was chosen (measured on this CPU, cached, --precision, device rule)
    precision_decision: PrecisionDecision | None = None
    # rebuilds the full fp32 model when the text tower is first needed (see ``load_backbone``)
    text_source: Callable[[], torch.nn.Module] | None = field(default=None, repr=False)
    _text_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def text_loaded(self) -> bool:
        """Whether the text tower is in memory (it is loaded on the first ``encode_text``)."""
        return self.text_source is None

    def _ensure_text_tower(self) -> None:
        with self._text_lock:
            if self.text_source is None:
                return
            full = self.text_source()
            for name in _text_parts(full):
                part = getattr(full, name)
                if isinstance(part, torch.nn.Module):
                    part = part.eval().requires_grad_(False)
                elif isinstance(part, torch.Tensor) and name not in full._buffers:
                    part = torch.nn.Parameter(part.detach(), requires_grad=False)
                setattr(self.model, name, part)
            del full
            self.model.to(self.device)
            if self.weights_in_bf16:
                self.model.to(torch.bfloat16)
            self.text_source = None

    @property
    def weights_in_bf16(self) -> bool:
        """bf16 on a CPU: the frozen weights themselves are bf16 (see ``load_backbone``)."""
        return self.precision == "bf16" and self.device.type == "cpu"

    def _autocast(self):
        if self.precision == "bf16" and not self.weights_in_bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def encode_images(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both taps for a batch of preprocessed images (B, 3, S, S).

        Returns ``{"pooled": (B, pooled_dim), "projected": (B, projected_dim)}`` as float32 on
        the CPU.
        """
        visual = self.model.visual
        pixels = pixels.to(self.device, non_blocking=True)
        if self.weights_in_bf16:
            pixels = pixels.to(torch.bfloat16)
        with self._autocast():
            pooled = _pooled(visual, pixels)
            projected = pooled @ visual.proj if visual.proj is not None else pooled
        return {"pooled": pooled.float().cpu(), "projected": projected.float().cpu()}

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """L2-normalised text embeddings (N, projected_dim) in the image-text space."""
        if not self.has_text:
            raise BackboneError(
                f"{self.id}: the weights file holds the image tower only, so there is no text "
                f"encoder for concepts; convert a checkpoint with both towers "
                f"(python -m detector convert-weights)"
            )
        self.text_calls += 1
        self._ensure_text_tower()
        out = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[start : start + batch_size])).to(self.device)
            with self._autocast():
                feats = self.model.encode_text(tokens)
            out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu())
        if not out:
            return np.zeros((0, self.projected_dim), dtype=np.float32)
        return torch.cat(out).numpy()

    def embed_pil(self, images: Sequence) -> dict[str, np.ndarray]:
        """Both taps for RGB PIL images (preprocessed here), as float32 numpy arrays."""
        batch = torch.stack([self.preprocess(im) for im in images])
        return {k: v.numpy() for k, v in self.encode_images(batch).items()}


def _pooled(visual: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """The pooled tap of an open_clip image tower (CLS token after the final layer norm)."""
    x = visual._embeds(pixels)
    x = visual.transformer(x)
    pooled, _ = visual._pool(x)
    return pooled


def _text_parts(net: torch.nn.Module) -> list[str]:
    """Attribute names of an open_clip model's text tower (``text`` for custom-text models)."""
    names = (
        ("text",)
        if hasattr(net, "text") and not hasattr(net, "token_embedding")
        else (
            "transformer",
            "token_embedding",
            "positional_embedding",
            "ln_final",
            "text_projection",
            "attn_mask",
        )
    )
    return [n for n in names if getattr(net, n, None) is not None]


def _release_freed_memory() -> None:
    """Hand memory freed by dropped fp32 weights back to the OS (glibc keeps freed chunks of
    up to 32 MB in its heap, which would keep them in the resident set)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


# -- device and precision --------------------------------------------------------------------


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks cuda > mps > cpu; anything else is passed to ``torch.device``."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise BackboneError(
            f"unknown device {device!r} (use auto, cpu, cuda, cuda:N or mps)"
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackboneError(f"device {device!r} requested but CUDA is not available here")
    return dev


def resolve_precision(precision: str, device: torch.device, model: str | None = None) -> str:
    """``bf16`` or ``fp32`` where known before loading; ``auto`` for a CPU not yet measured.

    CUDA: bf16 when supported (autocast). MPS: fp32. CPU: the decision measured on this
    machine for ``model`` (``detector.precision``) if one is cached, else ``auto``, which
    ``load_backbone`` settles by measuring. bf16 on a CPU means bf16 weights.
    """
    if precision not in ("auto", "bf16", "fp32"):
        raise BackboneError(f"unknown precision {precision!r} (use auto, bf16 or fp32)")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        hit = cached_decision(machine_key(model)) if model else None
        return hit.precision if hit is not None else "auto"
    return "fp32"


def _device_decision(requested: str, precision: str, device: torch.device) -> PrecisionDecision:
    if requested != "auto":
        return PrecisionDecision(precision, "override", f"--precision {requested}")
    return PrecisionDecision(precision, "device", f"{device.type}: {precision} by rule")


# -- weights resolution ---------------------------------------------------------------------


def _register_local_configs() -> None:
    import open_clip

    if TINY_CLIP not in open_clip.list_models():
        open_clip.add_model_config(MODEL_CONFIG_DIR)


def file_digest(path: str | os.PathLike, prefix: int = 12) -> str:
    """SHA-256 of a file's bytes (first ``prefix`` hex digits); read once per file version."""
    return hashing.file_digest(path, prefix)


def default_cache_dir() -> str | None:
    """Where open_clip weights are cached (``CUE_LENS_CACHE`` overrides the usual places)."""
    return os.environ.get("CUE_LENS_CACHE") or None


def cached_weights_path(model: str, pretrained: str, cache_dir: str | None = None) -> str | None:
    """The local file holding (model, tag) weights if already cached, without any network."""
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(model, pretrained)
    if not cfg:
        return None
    if cfg.get("file"):
        return cfg["file"] if os.path.isfile(cfg["file"]) else None
    hub = cfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - huggingface_hub ships with open_clip
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            if hub.endswith("/"):
                repo, names = hub.rstrip("/"), []
            else:
                repo, filename = os.path.split(hub)
                names = [filename]
            names += ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
            for name in names:
                found = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
                if isinstance(found, str) and os.path.isfile(found):
                    return found
    url = cfg.get("url", "")
    if url:
        target = os.path.join(
            cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(url)
        )
        if os.path.isfile(target):
            return target
    return None


def network_reachable(host: str = "huggingface.co", port: int = 443, timeout: float = 3.0) -> bool:
    """A quick check that weights could be downloaded (DNS + TCP connect, no data sent)."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("CUE_LENS_OFFLINE") == "1":
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def weights_available(
    model: str = DEFAULT_MODEL,
    pretrained: str | None = DEFAULT_PRETRAINED,
    cache_dir: str | None = None,
    *,
    probe_network: bool = True,
) -> bool:
    """Whether ``load_backbone(model, pretrained)`` can get its weights right now."""
    if model == TINY_CLIP:
        return True
    if model.startswith(LOCAL_DIR_PREFIX):
        return Path(model[len(LOCAL_DIR_PREFIX) :]).expanduser().is_dir()
    if pretrained and os.path.isfile(os.path.expanduser(pretrained)):
        return True
    if cached_weights_path(model, pretrained or "", cache_dir or default_cache_dir()):
        return True
    return probe_network and network_reachable()


def missing_weights_message(model: str, pretrained: str | None, cache_dir: str | None) -> str:
    """The one message a user sees when weights cannot be had."""
    where = cache_dir or os.environ.get("HF_HUB_CACHE") or "~/.cache/huggingface/hub"
    snapshot = hf_cache_hint()
    hf = (
        f"  - the authors' transformers copy is in the Hugging Face cache ({snapshot}): convert "
        f"it once with `python -m detector convert-weights {snapshot} clip-l14-336.safetensors`, "
        f"then pass --pretrained clip-l14-336.safetensors;\n"
        if snapshot
        else ""
    )
    return (
        f"CLIP weights for {model} / {pretrained} are not available: they are not in the local "
        f"cache ({where}, ~/.cache/clip) and the network cannot be reached to download them.\n"
        f"Provide them in one of these ways:\n"
        f"{hf}"
        f"  - run once with network access to fill the cache;\n"
        f"  - pass a local checkpoint file: --model {model} --pretrained /path/to/weights.pt "
        f"(or .safetensors);\n"
        f"  - pass an open_clip folder: --model local-dir:/path/to/folder;\n"
        f"  - try the offline demo with random weights: --model tiny-clip (scores mean nothing)."
    )


# -- the factory -----------------------------------------------------------------------------


def _build_preprocess(image_size: int, interpolation: str):
    from torchvision import transforms as T

    modes = {
        "bilinear": T.InterpolationMode.BILINEAR,
        "bicubic": T.InterpolationMode.BICUBIC,
    }
    if interpolation not in modes:
        raise BackboneError(f"unknown interpolation {interpolation!r} (bilinear or bicubic)")
    return T.Compose(
        [
            T.Resize(image_size, interpolation=modes[interpolation], antialias=True),
            T.CenterCrop(image_size),
            T.ToTensor(),
            T.Normalize(CLIP_MEAN, CLIP_STD),
        ]
    )


def _make_tiny_clip():
    import open_clip

    _register_local_configs()
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # open_clip warns that a model without weights is random: we know
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TINY_CLIP_SEED)
            model = open_clip.create_model(TINY_CLIP, pretrained=None)
    finally:
        root.setLevel(level)
    return model


def _check_taps(model: torch.nn.Module, name: str) -> None:
    visual = getattr(model, "visual", None)
    if visual is None or not all(hasattr(visual, a) for a in ("_embeds", "_pool", "proj")):
        raise BackboneError(
            f"{name}: only open_clip VisionTransformer image towers expose the pooled and "
            f"projected taps; choose a ViT model (e.g. ViT-L-14-336, ViT-B-16)"
        )


_LEAN_LOCK = threading.Lock()


@contextlib.contextmanager
def _lean_loading(enabled: bool):
    """Build the open_clip model on the meta device and take the checkpoint's tensors as its
    weights (``load_state_dict(assign=True)``) instead of copying them into randomly
    initialised ones: one copy of the weights in memory while loading instead of two, and
    no time spent on random initialisation. Buffers that are not in the checkpoint stay on
    the meta device (the text tower's causal mask); ``load_backbone`` drops the text tower
    and checks that nothing else was left there."""
    if not enabled:
        yield
        return
    import open_clip.factory as factory

    original_load, original_place = factory.load_checkpoint, factory._set_model_device_and_precision

    def load_assigning(model, *args, **kwargs):
        model.load_state_dict = lambda sd, strict=True: type(model).load_state_dict(
            model, sd, strict=strict, assign=True
        )
        try:
            return original_load(model, *args, **kwargs)
        finally:
            del model.load_state_dict

    with _LEAN_LOCK:
        factory.load_checkpoint = load_assigning
        factory._set_model_device_and_precision = lambda *a, **k: None  # stays on meta
        try:
            with torch.device("meta"):
                yield
        finally:
            factory.load_checkpoint = original_load
            factory._set_model_device_and_precision = original_place


def _default_logit_parameters(net: torch.nn.Module) -> None:
    """Give ``logit_scale`` / ``logit_bias`` open_clip's initial values when a lean load left
    them unset: image-text scoring parameters the image tower never uses, absent from a
    vision-only checkpoint (``convert-weights`` of a ``CLIPVisionModelWithProjection``)."""
    initial = {"logit_scale": math.log(1 / 0.07), "logit_bias": -10.0}
    for name, value in initial.items():
        param = getattr(net, name, None)
        if isinstance(param, torch.nn.Parameter) and param.is_meta:
            setattr(net, name, torch.nn.Parameter(torch.full(param.shape, value)))


def _meta_tensors(module: torch.nn.Module) -> list[str]:
    tensors = list(module.named_parameters()) + list(module.named_buffers())
    return [name for name, t in tensors if t is not None and t.is_meta]


def openai_variant(model: str, pretrained: str | None) -> str:
    """The open_clip model name that runs ``pretrained`` with its training-time activation.

    OpenAI weights (the ``openai`` tag, or a local checkpoint file for an architecture OpenAI
    released, e.g. ``ViT-L-14-336``) need QuickGELU: the ``-quickgelu`` variant is returned.
    Anything else is returned unchanged (other tags carry their own activation in open_clip's
    configs).
    """
    import open_clip

    if model == TINY_CLIP or model.startswith(LOCAL_DIR_PREFIX) or not pretrained:
        return model
    if model.endswith(QUICKGELU_SUFFIX):
        return model
    variant = model + QUICKGELU_SUFFIX
    if variant not in open_clip.list_models():
        return model
    if pretrained == "openai" or _is_checkpoint_path(pretrained):
        return variant if "openai" in open_clip.list_pretrained_tags_by_model(variant) else model
    return model


def _read_state_dict(path: Path) -> dict:
    """Tensors of a checkpoint file, never unpickling code (safetensors or weights_only)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"expected a dict of tensors, got {type(state).__name__}")
    return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}


def _load_file_into(net, path: Path, assign: bool = False) -> bool:
    """Load a local checkpoint into ``net``; returns whether it held the text tower.

    ``assign``: adopt the file's tensors as the weights (``net`` built on the meta device)."""
    import open_clip.factory

    state = _read_state_dict(path)
    if state and all(k.startswith("visual.") for k in state):
        visual = {k[len("visual.") :]: v for k, v in state.items()}
        net.visual.load_state_dict(visual, strict=True, assign=assign)
        return False
    del state
    # the factory's name: ``_lean_loading`` makes it adopt the tensors when ``assign``
    open_clip.factory.load_checkpoint(net, str(path), strict=True, weights_only=True)
    return True


def _load_pretrained(
    model: str, pretrained: str, cache_dir: str | None, shown: str | None = None, lean: bool = False
):
    """Build ``model`` with weights from a tag or a local file; (net, weights id, has_text).

    ``shown`` is the model name the user gave (messages name it, not its QuickGELU variant)."""
    import open_clip

    shown = shown or model

    local = Path(pretrained).expanduser()
    if _is_checkpoint_path(pretrained):
        if not local.is_file():
            raise WeightsUnavailableError(f"{local}: checkpoint file not found")
        weights = "file:" + file_digest(local)
        try:
            with _lean_loading(lean):
                net = _quiet_create(model)
                has_text = _load_file_into(net, local, assign=lean)
        except Exception as exc:
            raise WeightsUnavailableError(
                f"{local}: not a usable {model} checkpoint ({exc})"
            ) from exc
        return net, weights, has_text
    tags = open_clip.list_pretrained_tags_by_model(model)
    if pretrained not in tags:
        raise BackboneError(
            f"{model}: unknown pretrained tag {pretrained!r} (known: {', '.join(tags)})"
        )
    if not cached_weights_path(model, pretrained, cache_dir) and not network_reachable():
        raise WeightsUnavailableError(missing_weights_message(shown, pretrained, cache_dir))
    try:
        with _lean_loading(lean):
            net = open_clip.create_model(
                model,
                pretrained=pretrained,
                require_pretrained=True,
                cache_dir=cache_dir,
                weights_only=True,
            )
    except Exception as exc:
        raise WeightsUnavailableError(
            missing_weights_message(shown, pretrained, cache_dir) + f"\n(cause: {exc})"
        ) from exc
    return net, pretrained, True


def _quiet_create(model: str):
    """``open_clip.create_model(model)`` without weights, without its 'random weights' warning
    (the caller loads weights right after)."""
    import open_clip

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        return open_clip.create_model(model, pretrained=None)
    finally:
        root.setLevel(level)


def stale_reason(backbone_id: str | None) -> str | None:
    """Why embeddings (or heads) under ``backbone_id`` must not be used, or None.

    Cue Lens before the QuickGELU fix named OpenAI-weight backbones by the plain open_clip
    model (``ViT-L-14-336/openai``, ``ViT-L-14-336/file:...``): they ran with GELU instead of
    QuickGELU and decoded large JPEGs at reduced scale. The current code never produces such
    an id, so its embeddings are never mixed with current ones; this says why.
    """
    ref = BackboneRef.try_parse(backbone_id)
    if ref is None:
        return None
    model, weights = ref.model, ref.weights
    if model in (TINY_CLIP, LOCAL_DIR_MODEL) or model.endswith(QUICKGELU_SUFFIX):
        return None
    if weights != "openai" and not weights.startswith("file:"):
        return None
    try:
        import open_clip

        _register_local_configs()
        if model + QUICKGELU_SUFFIX not in open_clip.list_models():
            return None
    except ImportError:  # pragma: no cover - open_clip is a requirement
        return None
    return (
        f"made by an earlier Cue Lens that ran OpenAI weights with GELU instead of QuickGELU "
        f"and decoded large JPEGs at reduced scale; the current id for these weights is "
        f"{model + QUICKGELU_SUFFIX}/{weights}: embed again to recompute, retrain heads"
    )


def backbone_id_for(
    model: str = DEFAULT_MODEL,
    pretrained: str | None = DEFAULT_PRETRAINED,
    interpolation: str = DEFAULT_INTERPOLATION,
    draft: bool = False,
) -> str:
    """The id ``load_backbone(model, pretrained)`` gives, without building the model.

    ``MODEL/TAG`` for a pretrained tag, ``MODEL/file:<sha256[:12]>`` for a checkpoint file
    (``missing`` when the file is absent), ``local-dir/dir:<sha256 of the path>[:12]``,
    ``tiny-clip/random``. MODEL is open_clip's ``-quickgelu`` variant for OpenAI weights
    (:func:`openai_variant`). An ``@`` suffix names the non-default options: ``bicubic``
    interpolation and ``draft`` JPEG decoding (``@bicubic+draft``).
    """
    _register_local_configs()
    if model == TINY_CLIP:
        name, weights = TINY_CLIP, RANDOM_WEIGHTS
    elif model.startswith(LOCAL_DIR_PREFIX):
        folder = Path(model[len(LOCAL_DIR_PREFIX) :]).expanduser().resolve()
        name = LOCAL_DIR_MODEL
        weights = "dir:" + hashlib.sha256(str(folder).encode()).hexdigest()[:12]
    elif pretrained and _is_checkpoint_path(pretrained):
        local = Path(pretrained).expanduser()
        name = openai_variant(model, pretrained)
        weights = "file:" + (file_digest(local) if local.is_file() else "missing")
    else:
        name, weights = openai_variant(model, pretrained), pretrained or "none"
    return BackboneRef(name, weights, interpolation, draft).id


def _is_checkpoint_path(pretrained: str) -> bool:
    local = Path(pretrained).expanduser()
    return local.suffix in (".pt", ".pth", ".bin", ".safetensors", ".ckpt") or local.exists()


def load_backbone(
    model: str = DEFAULT_MODEL,
    pretrained: str | None = DEFAULT_PRETRAINED,
    *,
    device: str | torch.device = "auto",
    precision: str = "auto",
    cache_dir: str | None = None,
    interpolation: str = DEFAULT_INTERPOLATION,
    allow_random: bool = False,
    draft: bool = False,
    text_tower: bool = False,
) -> Backbone:
    """Build a frozen CLIP backbone.

    ``model`` is an open_clip model name, ``tiny-clip``, or ``local-dir:/folder``;
    ``pretrained`` a tag (``openai``, ``laion2b_s32b_b82k``, ...) or a local checkpoint path.
    Raises ``WeightsUnavailableError`` (with instructions) when weights cannot be had and
    ``BackboneError`` for other set-up problems. Never returns random weights under a real
    model's name: ``pretrained="random"`` needs ``allow_random=True`` (benchmarks only) and
    yields the id ``MODEL/random``, marked as a demo. OpenAI weights are always run with
    QuickGELU (:func:`openai_variant`). ``draft=True`` lets JPEGs be decoded at reduced DCT
    scale (faster, not the paper's pixels; the id gets ``@draft``).

    Precision ``auto`` on a CPU is measured once per machine and model
    (``detector.precision``); bf16 there means the weights are cast once, and no fp32 copy
    is kept. The text tower is dropped after loading unless ``text_tower``: image-only work
    never holds it, and the first ``encode_text`` loads it again from the same weights.
    """
    import open_clip

    _register_local_configs()
    cache_dir = cache_dir or default_cache_dir()
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    is_demo = False
    has_text = True

    if model == TINY_CLIP:
        net = _make_tiny_clip()
        weights = "random"
        is_demo = True
    elif model.startswith(LOCAL_DIR_PREFIX):
        folder = Path(model[len(LOCAL_DIR_PREFIX) :]).expanduser()
        if not folder.is_dir():
            raise WeightsUnavailableError(f"{folder}: no such folder for {model!r}")
        try:
            net = open_clip.create_model(model, require_pretrained=True, cache_dir=cache_dir)
        except Exception as exc:
            raise WeightsUnavailableError(
                f"{folder}: cannot load an open_clip model ({exc})"
            ) from exc
        weights = "dir:" + hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]
    else:
        if model not in open_clip.list_models():
            raise BackboneError(
                f"unknown model {model!r}; see open_clip.list_models() or use tiny-clip"
            )
        if pretrained == "random" and allow_random:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(TINY_CLIP_SEED)
                net = open_clip.create_model(model, pretrained=None)
            weights, is_demo = "random", True
        elif not pretrained:
            raise BackboneError(
                f"{model}: no weights given; pass a pretrained tag or a checkpoint file "
                f"(random weights are only offered as tiny-clip)"
            )
        else:
            net, weights, has_text = _load_pretrained(
                openai_variant(model, pretrained),
                pretrained,
                cache_dir,
                shown=model,
                lean=not text_tower,
            )

    _check_taps(net, model)
    text_source = None
    if not text_tower and _text_parts(net):
        for name in _text_parts(net):
            setattr(net, name, None)
        text_source = _text_loader(model, pretrained, cache_dir, interpolation, allow_random)
    _default_logit_parameters(net)
    left = _meta_tensors(net)
    if left:  # lean loading left weights unset that the image tower needs: refuse, loudly
        raise BackboneError(f"{model}: weights missing after loading: {', '.join(left[:5])}")
    net.eval().requires_grad_(False).to(dev)
    image_size = net.visual.image_size
    image_size = image_size[0] if isinstance(image_size, (tuple, list)) else int(image_size)
    if prec == "auto":  # a CPU: measured here once per machine and model, then cached
        decision, bf16_visual = choose_cpu_precision(model, net.visual, _pooled)
        prec = decision.precision
        if bf16_visual is not None:
            net.visual = bf16_visual  # the fp32 tower is dropped here
    else:
        decision = _device_decision(precision, prec, dev)
    if prec == "bf16" and dev.type == "cpu":
        # On CPUs, autocast re-casts every weight on every call (measured slower than fp32);
        # frozen weights are cast to bf16 once instead.
        net.to(torch.bfloat16)
    _release_freed_memory()
    visual = net.visual
    pooled_dim = visual.ln_post.normalized_shape[0]
    projected_dim = visual.proj.shape[1] if visual.proj is not None else pooled_dim
    backbone_id = backbone_id_for(model, pretrained, interpolation, draft)
    if weights == RANDOM_WEIGHTS and model != TINY_CLIP:
        backbone_id = BackboneRef(model, RANDOM_WEIGHTS).id
    return Backbone(
        id=backbone_id,
        model_name=model,
        weights=weights,
        model=net,
        preprocess=_build_preprocess(image_size, interpolation),
        tokenizer=open_clip.get_tokenizer(model),
        device=dev,
        precision=prec,
        image_size=image_size,
        pooled_dim=int(pooled_dim),
        projected_dim=int(projected_dim),
        is_demo=is_demo,
        draft_decode=draft,
        has_text=has_text,
        precision_decision=decision,
        text_source=text_source,
    )


def _text_loader(model, pretrained, cache_dir, interpolation, allow_random):
    """Rebuilds the full fp32 model from the same weights, for its text tower."""

    def load() -> torch.nn.Module:
        full = load_backbone(
            model,
            pretrained,
            device="cpu",
            precision="fp32",
            cache_dir=cache_dir,
            interpolation=interpolation,
            allow_random=allow_random,
            text_tower=True,
        )
        return full.model

    return load
