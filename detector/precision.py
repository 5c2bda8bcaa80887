"""Which precision a CPU should run the backbone in, decided by measuring, once per machine.

CPU flags do not say whether bf16 pays. On a 2-core AMD EPYC with AVX512-BF16 and no AMX,
bf16 weights ran ViT-L-14-336 about 3x faster than fp32; on an Intel CPU with the same flags
they ran slower. So ``auto`` on a CPU measures:

1. **speed**: one transformer block of the model's own image tower (its width, heads and MLP
   size) at the token count of one image, timed in fp32 and in bf16 (alternating, best of a
   few runs after a warm-up; a few seconds for ViT-L on two busy cores);
2. **agreement**, only when bf16 won on speed: the pooled embedding of a fixed probe image
   through the whole tower in fp32 and in bf16 must keep cosine >= ``MIN_COSINE`` (the
   longer part: two whole forwards of one image).

bf16 is chosen only when it is faster by ``MARGIN`` or more *and* agrees. The decision is kept
in ``HOME/precision.json`` (``HOME`` is ``detector.paths.cue_lens_home()``), keyed by CPU model,
core count, torch version and model, so the probe runs once per machine and model; a new torch
or another CPU measures again. ``--precision fp32|bf16`` bypasses all of this.

The library keeps this free of any UI; ``decide`` is a pure function so the rule is tested with
injected timings.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from detector.paths import cue_lens_home

MARGIN = 1.2  # bf16 must be at least this many times faster than fp32
MIN_COSINE = 0.999  # bf16 and fp32 pooled embeddings of the probe image must agree this well
PROBE_REPEATS = 4
CACHE_NAME = "precision.json"
PROBE_SEED = 20260212


@dataclass
class PrecisionDecision:
    """The precision chosen for one (machine, model), and why.

    ``source``: ``measured`` (probe ran now), ``cache`` (an earlier probe on this machine),
    ``override`` (``--precision`` given), ``device`` (CUDA/MPS rules, no probe).
    ``speedup`` is fp32 time / bf16 time of the probe block (above 1: bf16 faster).
    """

    precision: str
    source: str
    reason: str
    fp32_ms: float | None = None
    bf16_ms: float | None = None
    speedup: float | None = None
    cosine: float | None = None
    probe_seconds: float | None = None
    key: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line for the command line, the dashboard and the benchmark."""
        parts = [f"{self.precision} ({self.source})"]
        if self.speedup is not None:
            parts.append(
                f"probe fp32 {self.fp32_ms:.1f} ms, bf16 {self.bf16_ms:.1f} ms, "
                f"bf16 {self.speedup:.2f}x"
            )
        if self.cosine is not None:
            parts.append(f"cosine {self.cosine:.5f}")
        return "; ".join(parts)


# -- the rule -----------------------------------------------------------------------------------


def decide(
    fp32_seconds: float,
    bf16_seconds: float,
    cosine: float | None,
    *,
    margin: float = MARGIN,
    min_cosine: float = MIN_COSINE,
) -> tuple[str, str]:
    """``(precision, reason)`` from measured probe times and the probe image's cosine.

    bf16 only when ``fp32_seconds / bf16_seconds >= margin`` and ``cosine >= min_cosine``;
    ``cosine`` None means it was not measured (bf16 lost on speed), which never yields bf16.
    """
    if fp32_seconds <= 0 or bf16_seconds <= 0:
        raise ValueError(f"probe times must be positive (fp32 {fp32_seconds}, bf16 {bf16_seconds})")
    speedup = fp32_seconds / bf16_seconds
    if speedup < margin:
        return "fp32", f"bf16 ran {speedup:.2f}x the speed of fp32 (needs {margin:.2f}x)"
    if cosine is None:
        return "fp32", "bf16 agreement with fp32 was not measured"
    if cosine < min_cosine:
        return "fp32", f"bf16 embedding cosine {cosine:.5f} to fp32 is below {min_cosine}"
    return "bf16", f"bf16 ran {speedup:.2f}x the speed of fp32 with cosine {cosine:.5f}"


# -- the cache ----------------------------------------------------------------------------------


def cpu_model_name(cpuinfo: str | None = None) -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    for line in cpuinfo.splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def machine_key(model: str) -> dict:
    """What a decision depends on: CPU model, cores (and the threads torch uses), torch, model."""
    return {
        "cpu": cpu_model_name(),
        "cores": os.cpu_count() or 0,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "model": model,
    }


def _key_string(key: dict) -> str:
    return json.dumps(key, sort_keys=True)


def cache_path() -> Path:
    """``HOME/precision.json`` (``CUE_LENS_HOME``, default ``~/.cache/cue-lens``)."""
    return cue_lens_home() / CACHE_NAME


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def cached_decision(key: dict, path: Path | None = None) -> PrecisionDecision | None:
    """The stored decision for ``key``, or None (absent, unreadable or malformed)."""
    entry = _read_cache(path or cache_path()).get(_key_string(key))
    if not isinstance(entry, dict) or entry.get("precision") not in ("bf16", "fp32"):
        return None
    fields = set(PrecisionDecision.__dataclass_fields__)
    values = {k: v for k, v in entry.items() if k in fields}
    values.update(source="cache", key=key)
    try:
        return PrecisionDecision(**values)
    except TypeError:
        return None


def store_decision(decision: PrecisionDecision, path: Path | None = None) -> None:
    """Add ``decision`` to the cache (atomic replace; a read-only home is not an error)."""
    path = path or cache_path()
    data = _read_cache(path)
    entry = decision.as_dict()
    entry["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    data[_key_string(decision.key)] = entry
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)


def cached_decisions(path: Path | None = None) -> list[dict]:
    """Every stored decision (for ``info``): key fields, precision, speedup, cosine."""
    rows = []
    for key_text, entry in sorted(_read_cache(path or cache_path()).items()):
        try:
            key = json.loads(key_text)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(key, dict):
            rows.append({**key, **{k: entry.get(k) for k in ("precision", "speedup", "cosine")}})
    return rows


# -- the probe ----------------------------------------------------------------------------------


def probe_speed(
    visual: torch.nn.Module,
    *,
    batch: int = 1,
    repeats: int = PROBE_REPEATS,
    timer: Callable[[], float] = time.perf_counter,
) -> tuple[float, float]:
    """Seconds for one transformer block of ``visual`` at fp32 and at bf16 weights.

    The block is a copy of the tower's first one (so the real shapes), run on ``batch`` images'
    worth of tokens (class token + patches). After one warm-up call each (oneDNN builds its
    kernels then), fp32 and bf16 alternate ``repeats`` times and the best time of each counts,
    so that other work on the machine disturbs both alike.
    """
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if not blocks:
        raise ValueError("the image tower has no transformer blocks to probe")
    tokens, width = visual.positional_embedding.shape[-2:]
    block32 = copy.deepcopy(blocks[0]).float().eval()
    block16 = copy.deepcopy(blocks[0]).to(torch.bfloat16).eval()
    gen = torch.Generator().manual_seed(PROBE_SEED)
    x32 = torch.randn(batch, int(tokens), int(width), generator=gen)
    x16 = x32.to(torch.bfloat16)
    best = {"fp32": float("inf"), "bf16": float("inf")}
    with torch.inference_mode():
        block32(x32)
        block16(x16)
        for _ in range(repeats):
            for name, block, x in (("fp32", block32, x32), ("bf16", block16, x16)):
                t0 = timer()
                block(x)
                best[name] = min(best[name], timer() - t0)
    return best["fp32"], best["bf16"]


def probe_pixels(image_size: int) -> torch.Tensor:
    """A fixed, photo-like probe input (1, 3, S, S): smooth colour fields plus fine noise,
    normalised like CLIP inputs."""
    gen = torch.Generator().manual_seed(PROBE_SEED)
    coarse = torch.rand(1, 3, 8, 8, generator=gen)
    smooth = torch.nn.functional.interpolate(
        coarse, size=(image_size, image_size), mode="bicubic", align_corners=False
    )
    noisy = smooth + 0.05 * torch.randn(1, 3, image_size, image_size, generator=gen)
    return (noisy.clamp(0, 1) - 0.45) / 0.27


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Smallest row-wise cosine similarity of two (N, D) float tensors."""
    return float(torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1).min())


def choose_cpu_precision(
    model: str,
    visual: torch.nn.Module,
    pooled: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor],
    *,
    cache: Path | None = None,
    speed: Callable[[torch.nn.Module], tuple[float, float]] | None = None,
) -> tuple[PrecisionDecision, torch.nn.Module | None]:
    """The precision for ``visual`` (an fp32 image tower) on this CPU, and its bf16 copy.

    Reads the cache first; otherwise runs the probe (``speed``, ``probe_speed`` by default)
    and, when bf16 wins on speed, compares ``pooled(tower, pixels)`` of the probe image for
    the fp32 tower and a bf16 copy. Returns ``(decision, bf16 tower or None)``: the caller
    swaps the bf16 copy in (and drops the fp32 tower) so no second copy of the weights stays.
    The decision is stored unless it came from the cache.
    """
    key = machine_key(model)
    hit = cached_decision(key, cache)
    if hit is not None:
        return hit, None
    start = time.perf_counter()
    fp32_s, bf16_s = (speed or probe_speed)(visual)
    agreement = None
    bf16_tower = None
    if fp32_s / bf16_s >= MARGIN:
        size = visual.image_size
        pixels = probe_pixels(int(size[0] if isinstance(size, (tuple, list)) else size))
        reference = pooled(visual, pixels)
        bf16_tower = copy.deepcopy(visual).to(torch.bfloat16)
        agreement = cosine(pooled(bf16_tower, pixels.to(torch.bfloat16)), reference)
    precision, reason = decide(fp32_s, bf16_s, agreement)
    decision = PrecisionDecision(
        precision=precision,
        source="measured",
        reason=reason,
        fp32_ms=round(1000 * fp32_s, 3),
        bf16_ms=round(1000 * bf16_s, 3),
        speedup=round(fp32_s / bf16_s, 3),
        cosine=None if agreement is None else round(agreement, 6),
        probe_seconds=round(time.perf_counter() - start, 3),
        key=key,
    )
    store_decision(decision, cache)
    return decision, bf16_tower if precision == "bf16" else None
