"""Perturbations before the backbone, and how much a detector's verdicts survive them.

Forensic images are rarely pristine: they were re-compressed, resized, blurred or cropped
on their way to an analyst. This module applies such changes to the decoded RGB image
before CLIP's preprocessing, and measures per-generator AP, mAP and the share of verdicts
that flip, for every perturbation and strength.

Names are stable strings (they become workspace tap suffixes, ``pooled@jpeg:75``):

- ``jpeg:Q``: re-save as baseline JPEG at IJG quality Q (1..100), 4:2:0 chroma subsampling;
- ``resize:S``: scale both sides by S (> 0), bilinear with antialiasing;
- ``blur:SIGMA``: Gaussian blur, standard deviation SIGMA in pixels;
- ``crop:F``: centre crop keeping the fraction F (0 < F <= 1) of each side;
- ``noise:SIGMA``: additive Gaussian noise, standard deviation SIGMA in 0..255 pixel units,
  drawn from a generator seeded by the image hash (and ``seed:N`` when given);
- chains joined by ``+`` apply left to right: ``jpeg:75+resize:0.5``.

Every perturbation is deterministic: the same image bytes give the same output in every
process. The sweep embeds each perturbation once into the workspace (taps
``pooled@NAME``/``projected@NAME`` through ``detector.extract.embed_dataset``); a second
sweep only reads the stored embeddings.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter

from detector.errors import CueLensError
from detector.groups import fake_generators, pairing_groups
from detector.identity import BackboneRef, is_demo_id
from detector.results import list_results, save_result

if TYPE_CHECKING:
    from detector.backbone import Backbone
    from detector.store import Workspace

__all__ = [
    "DEFAULT_SWEEP",
    "FAMILIES",
    "PERTURB_MAX_PIXELS",
    "Perturbation",
    "PerturbationError",
    "RobustnessReport",
    "apply_perturbation",
    "parse_perturbation",
    "parse_perturbations",
    "robustness_curves",
    "robustness_figure",
    "robustness_sweep",
    "stored_robustness",
]

# family -> (identity strength: the value at which the image is unchanged, allowed range test,
# what the strength means). The identity is where the clean baseline sits on a curve.
FAMILIES: dict[str, dict] = {
    "jpeg": {"identity": 100.0, "unit": "quality (1..100, lower is stronger)"},
    "resize": {"identity": 1.0, "unit": "scale factor of each side"},
    "blur": {"identity": 0.0, "unit": "Gaussian sigma in pixels"},
    "crop": {"identity": 1.0, "unit": "fraction of each side kept (centre crop)"},
    "noise": {"identity": 0.0, "unit": "Gaussian noise sigma in 0..255 pixel units"},
}
RANDOM_FAMILIES = frozenset({"noise"})

DEFAULT_SWEEP: tuple[str, ...] = (
    "jpeg:95",
    "jpeg:75",
    "jpeg:50",
    "jpeg:30",
    "resize:0.5",
    "resize:0.75",
    "resize:1.5",
    "blur:0.5",
    "blur:1",
    "blur:2",
    "crop:0.5",
    "crop:0.75",
)
"""The issue's sweep: JPEG re-compression, resize, Gaussian blur and centre crop."""

PERTURB_MAX_PIXELS = 64_000_000
"""A perturbation never produces more pixels than this; a larger upscale is reduced to fit."""

CLEAN = "none"
_STEP = re.compile(r"^([a-z]+):([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)$")


class PerturbationError(CueLensError):
    """A perturbation name that cannot be parsed or a strength out of range."""


def _format_number(value: float) -> str:
    """Shortest stable text for a strength: ``75``, ``0.5``, ``1.5``."""
    text = f"{value:.6g}"
    return text if "e" not in text else repr(float(value))


@dataclass(frozen=True)
class Perturbation:
    """A chain of perturbation steps ``((family, strength), ...)`` with an optional seed.

    Build one with :func:`parse_perturbation`; ``name`` is the canonical string (the tap
    suffix), ``family`` the step families joined by ``+`` and ``strength`` the single step's
    strength (``None`` for a chain). Calling it applies it: ``p(image, image_hash)``.
    """

    steps: tuple[tuple[str, float], ...]
    seed: int = 0

    @property
    def name(self) -> str:
        text = "+".join(f"{fam}:{_format_number(s)}" for fam, s in self.steps)
        if self.seed and self.is_random:
            text += f"+seed:{self.seed}"
        return text

    @property
    def family(self) -> str:
        return "+".join(fam for fam, _ in self.steps)

    @property
    def strength(self) -> float | None:
        return self.steps[0][1] if len(self.steps) == 1 else None

    @property
    def is_random(self) -> bool:
        return any(fam in RANDOM_FAMILIES for fam, _ in self.steps)

    def __str__(self) -> str:
        return self.name

    def __call__(self, image: Image.Image, image_hash: str = "") -> Image.Image:
        return apply_perturbation(image, self, image_hash)


def _check_strength(family: str, value: float, text: str) -> float:
    if not math.isfinite(value):
        raise PerturbationError(f"{text}: strength must be a finite number")
    if family == "jpeg":
        if value != int(value) or not 1 <= value <= 100:
            raise PerturbationError(f"{text}: JPEG quality must be a whole number in 1..100")
    elif family == "resize":
        if not 0.01 <= value <= 8:
            raise PerturbationError(f"{text}: resize factor must be in 0.01..8")
    elif family == "blur":
        if not 0 <= value <= 50:
            raise PerturbationError(f"{text}: blur sigma must be in 0..50 pixels")
    elif family == "crop":
        if not 0.01 <= value <= 1:
            raise PerturbationError(f"{text}: crop fraction must be in 0.01..1")
    elif family == "noise" and not 0 <= value <= 255:
        raise PerturbationError(f"{text}: noise sigma must be in 0..255")
    return float(value)


def parse_perturbation(text: str | Perturbation, *, seed: int = 0) -> Perturbation:
    """Parse ``"jpeg:75"``, ``"resize:0.5"`` or a chain ``"jpeg:75+resize:0.5"``.

    A ``seed:N`` step sets the seed of random steps (``noise``); ``seed`` is the default.
    Raises ``PerturbationError`` with the accepted forms when the text is not one.
    """
    if isinstance(text, Perturbation):
        return text
    raw = str(text).strip().lower().replace(" ", "")
    if not raw or raw == CLEAN:
        raise PerturbationError(
            f"{text!r}: empty perturbation; use e.g. jpeg:75, resize:0.5, blur:1, crop:0.5"
        )
    steps: list[tuple[str, float]] = []
    for part in raw.split("+"):
        match = _STEP.match(part)
        if match is None:
            raise PerturbationError(
                f"{text!r}: cannot read {part!r}; write FAMILY:STRENGTH (families: "
                f"{', '.join(FAMILIES)}), chained with '+', e.g. jpeg:75+resize:0.5"
            )
        family, value = match.group(1), float(match.group(2))
        if family == "seed":
            if value != int(value):
                raise PerturbationError(f"{text!r}: seed must be a whole number")
            seed = int(value)
            continue
        if family not in FAMILIES:
            raise PerturbationError(
                f"{text!r}: unknown perturbation {family!r} (known: {', '.join(FAMILIES)})"
            )
        steps.append((family, _check_strength(family, value, part)))
    if not steps:
        raise PerturbationError(f"{text!r}: a seed alone is no perturbation")
    if not any(family in RANDOM_FAMILIES for family, _ in steps):
        seed = 0  # deterministic steps do not depend on it; one name, one object
    return Perturbation(tuple(steps), seed=seed)


def parse_perturbations(
    items: str | Iterable[str | Perturbation] | None, *, seed: int = 0
) -> list[Perturbation]:
    """A list of perturbations from a comma-separated string or an iterable of names.

    ``None`` or ``"default"`` gives :data:`DEFAULT_SWEEP`; a family alone (``"jpeg"``) gives
    that family's strengths of the default sweep. Duplicates are dropped, order kept.
    """
    if items is None:
        items = ["default"]
    if isinstance(items, str):
        items = [p for p in items.split(",") if p.strip()]
    out: dict[str, Perturbation] = {}
    for item in items:
        if isinstance(item, str) and item.strip().lower() == "default":
            parsed = [parse_perturbation(p, seed=seed) for p in DEFAULT_SWEEP]
        elif isinstance(item, str) and item.strip().lower() in FAMILIES:
            family = item.strip().lower()
            parsed = [
                parse_perturbation(p, seed=seed)
                for p in DEFAULT_SWEEP
                if p.startswith(family + ":")
            ]
            if not parsed:
                raise PerturbationError(
                    f"{family!r} has no default strengths; give them, e.g. {family}:2"
                )
        else:
            parsed = [parse_perturbation(item, seed=seed)]
        for p in parsed:
            out.setdefault(p.name, p)
    if not out:
        raise PerturbationError("no perturbations given")
    return list(out.values())


# -- applying ------------------------------------------------------------------------------


def _rng_for(image_hash: str, seed: int, step: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{step}:{image_hash}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _jpeg(image: Image.Image, quality: float) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(quality), subsampling=2, optimize=False)
    buffer.seek(0)
    with Image.open(buffer, formats=["JPEG"]) as reread:
        return reread.convert("RGB")


def _resize(image: Image.Image, scale: float, max_pixels: int) -> Image.Image:
    width, height = image.size
    pixels = width * height * scale * scale
    if pixels > max_pixels:  # keep memory bounded: the largest scale that fits
        scale = math.sqrt(max_pixels / (width * height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == image.size:
        return image.copy()
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=None)


def _blur(image: Image.Image, sigma: float) -> Image.Image:
    if sigma <= 0:
        return image.copy()
    return image.filter(ImageFilter.GaussianBlur(radius=sigma))


def _crop(image: Image.Image, fraction: float) -> Image.Image:
    width, height = image.size
    new_w, new_h = max(1, round(width * fraction)), max(1, round(height * fraction))
    left, top = (width - new_w) // 2, (height - new_h) // 2
    return image.crop((left, top, left + new_w, top + new_h))


def _noise(image: Image.Image, sigma: float, rng: np.random.Generator) -> Image.Image:
    if sigma <= 0:
        return image.copy()
    pixels = np.asarray(image, dtype=np.float32)
    noisy = pixels + rng.normal(0.0, sigma, size=pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8), "RGB")


def apply_perturbation(
    image: Image.Image,
    perturbation: str | Perturbation,
    image_hash: str = "",
    *,
    max_pixels: int = PERTURB_MAX_PIXELS,
) -> Image.Image:
    """Apply a perturbation (name or :class:`Perturbation`) to an image; returns new RGB.

    ``image_hash`` (the SHA-256 of the file) seeds random steps, so each image gets its own
    but reproducible noise. The input image is not modified.
    """
    p = parse_perturbation(perturbation)
    out = image if image.mode == "RGB" else image.convert("RGB")
    for index, (family, strength) in enumerate(p.steps):
        if family == "jpeg":
            out = _jpeg(out, strength)
        elif family == "resize":
            out = _resize(out, strength, max_pixels)
        elif family == "blur":
            out = _blur(out, strength)
        elif family == "crop":
            out = _crop(out, strength)
        elif family == "noise":
            out = _noise(out, strength, _rng_for(image_hash, p.seed, index))
    return out if out is not image else image.copy()


# -- the sweep -----------------------------------------------------------------------------


Progress = Callable[[str, int, int], None]


@dataclass
class RobustnessReport:
    """The result of a sweep: per-generator AP and flips for every perturbation.

    - ``table``: tidy, one row per (perturbation, generator): perturbation, family, strength,
      generator, ap, n_fake, n_real, map, flip_rate (share of that generator's synthetic
      images whose verdict differs from the unperturbed one). The unperturbed baseline is
      the perturbation ``none`` (family ``none``, strength NaN).
    - ``summary``: one row per perturbation: perturbation, family, strength, map, delta_map
      (vs ``none``), flip_rate (all images), flip_rate_real, flip_rate_synthetic,
      n_images, n_missing (images without an embedding under this perturbation).
    """

    head: str
    backbone: str
    split: str | None
    pairing: str
    threshold: float
    table: pd.DataFrame
    summary: pd.DataFrame
    errors: list[dict] = field(default_factory=list)
    embedded: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def is_demo(self) -> bool:
        return is_demo_id(self.backbone)

    def as_dict(self) -> dict:
        """JSON-ready form (the CLI's ``--json`` output)."""
        return {
            "head": self.head,
            "backbone": self.backbone,
            "demo": self.is_demo,
            "split": self.split,
            "pairing": self.pairing,
            "threshold": self.threshold,
            "seconds": round(self.seconds, 3),
            "embedded": self.embedded,
            "summary": _json_records(self.summary),
            "table": _json_records(self.table),
            "errors": self.errors,
        }

    @classmethod
    def from_dict(cls, doc: dict) -> RobustnessReport:
        """Inverse of :meth:`as_dict` (used for sweeps stored in the workspace)."""
        return cls(
            head=doc["head"],
            backbone=doc["backbone"],
            split=doc.get("split"),
            pairing=doc.get("pairing", "shared"),
            threshold=float(doc.get("threshold", 0.5)),
            table=pd.DataFrame(doc.get("table", []), columns=TABLE_COLUMNS),
            summary=pd.DataFrame(doc.get("summary", []), columns=SUMMARY_COLUMNS),
            errors=list(doc.get("errors", [])),
            embedded=dict(doc.get("embedded", {})),
            seconds=float(doc.get("seconds", 0.0)),
        )


TABLE_COLUMNS = [
    "perturbation", "family", "strength", "generator", "ap", "n_fake", "n_real", "map",
    "flip_rate",
]  # fmt: skip
SUMMARY_COLUMNS = [
    "perturbation", "family", "strength", "map", "delta_map", "flip_rate", "flip_rate_real",
    "flip_rate_synthetic", "n_images", "n_missing",
]  # fmt: skip


def _json_records(df: pd.DataFrame) -> list[dict]:
    clean = df.astype(object).where(df.notna(), None)
    return [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
        for row in clean.to_dict(orient="records")
    ]


def _verdicts(logits: np.ndarray, threshold: float) -> np.ndarray:
    """Synthetic verdicts: probability ``sigmoid(logit) > threshold`` (as ``detector.metrics``)."""
    from detector.metrics import sigmoid

    return sigmoid(logits) > threshold


def _head_name(head) -> str:
    card = getattr(head, "card_", None) or {}
    return str(card.get("name") or getattr(head, "head_type", "head"))


def _head_threshold(head) -> float:
    from detector.inference import head_threshold

    return head_threshold(head)


def _default_split(meta: pd.DataFrame) -> str | None:
    """``test`` when the workspace has a test split, else None (all labelled images)."""
    return "test" if (meta["split"] == "test").any() else None


def _evaluate(
    name: str,
    family: str,
    strength: float | None,
    meta: pd.DataFrame,
    scores: np.ndarray,
    clean_verdict: np.ndarray | None,
    threshold: float,
    pairing: str,
) -> tuple[list[dict], dict]:
    """Per-generator rows and the summary row of one perturbation on aligned (meta, scores)."""
    from detector.metrics import per_generator_ap

    labels = meta["label"].to_numpy(dtype=int)
    generators = fake_generators(labels, meta["generator"])
    verdict = _verdicts(scores, threshold)
    flips = np.zeros(len(meta), dtype=bool) if clean_verdict is None else verdict != clean_verdict
    groups = pairing_groups(meta).to_numpy(dtype=object)
    per_gen = per_generator_ap(labels, scores, generators, pairing=pairing, group=groups, n_boot=0)
    mean = float(per_gen.loc[per_gen["metric"] == "mAP", "value"].iloc[0])
    rows = []
    for gen in per_gen[per_gen["metric"] == "ap"].itertuples(index=False):
        fakes = (labels == 1) & (generators == gen.generator)
        rows.append(
            {
                "perturbation": name,
                "family": family,
                "strength": strength,
                "generator": gen.generator,
                "ap": float(gen.value),
                "n_fake": int(gen.n_fake),
                "n_real": int(gen.n_real),
                "map": mean,
                "flip_rate": float(flips[fakes].mean()) if fakes.any() else float("nan"),
            }
        )
    real = labels == 0
    summary = {
        "perturbation": name,
        "family": family,
        "strength": strength,
        "map": mean,
        "delta_map": float("nan"),
        "flip_rate": float(flips.mean()) if len(flips) else float("nan"),
        "flip_rate_real": float(flips[real].mean()) if real.any() else float("nan"),
        "flip_rate_synthetic": float(flips[~real].mean()) if (~real).any() else float("nan"),
        "n_images": len(meta),
        "n_missing": 0,
    }
    return rows, summary


def robustness_sweep(
    workspace: Workspace,
    head,
    perturbations: str | Iterable[str | Perturbation] | None = None,
    *,
    backbone: Backbone | Callable[[], Backbone] | None = None,
    split: str | None = "auto",
    pairing: str = "shared",
    threshold: float | None = None,
    seed: int = 0,
    batch_size: int = 32,
    workers: int | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    store: bool = True,
    engine: Callable | None = None,
) -> RobustnessReport:
    """Evaluate ``head`` on the workspace's labelled images under every perturbation.

    The images are those with an unperturbed embedding of the head's backbone and tap
    (``split="auto"``: the ``test`` split when there is one, else all; ``None``: all).
    Images not yet embedded under a perturbation are read again from their paths, perturbed
    and embedded with ``backbone`` (a loaded ``Backbone`` or a function returning one,
    called only when something is missing); embeddings already stored are reused, so a
    second sweep computes nothing. Verdicts use ``threshold`` (a probability; default the
    head card's threshold, else 0.5). ``progress(perturbation, done, total)`` follows the
    embedding. With ``store``, the report is also kept in the workspace (``detector.results``;
    :func:`stored_robustness`).

    ``engine`` embeds elsewhere, e.g. ``detector.distributed.ray_engine(...)``: it is called
    once with every missing ``(record, perturbation)`` pair, the workspace, the backbone and
    ``batch_size``/``progress``/``should_stop``, and returns a summary with ``errors`` and
    ``by_perturbation``. Scoring and metrics stay here.
    """
    import time

    from detector.datasets import Dataset, records_from_images
    from detector.extract import embed_dataset

    start = time.perf_counter()
    items = parse_perturbations(perturbations, seed=seed)
    backbone_id = getattr(head, "backbone_id", None) or (getattr(head, "card_", {}) or {}).get(
        "backbone_id"
    )
    if not backbone_id:
        raise PerturbationError("the head does not say which backbone it was trained on")
    if BackboneRef.parse(backbone_id).draft:
        # Perturbed images are decoded in full (a perturbation acts on the stored pixels); a
        # baseline from reduced-scale decoding would mix two decoders into every delta.
        raise PerturbationError(
            f"the head's backbone {backbone_id!r} decodes JPEGs at reduced scale (draft); the "
            f"robustness sweep decodes baseline and perturbed images in full, so use a head "
            f"trained on embeddings made without --draft"
        )
    tap = getattr(head, "tap", "pooled")
    threshold = _head_threshold(head) if threshold is None else float(threshold)
    all_meta = workspace.images(with_errors=False)
    all_meta = all_meta[all_meta["label"].notna()]
    if split == "auto":
        split = _default_split(all_meta)
    meta, clean = workspace.dataset(backbone_id, tap, split=split)
    if meta.empty:
        where = f" in split {split!r}" if split else ""
        raise PerturbationError(
            f"{workspace.path}: no labelled images with {tap} embeddings of {backbone_id!r}"
            f"{where}; run `python -m detector embed DATA --workspace {workspace.path}` first"
        )
    if hasattr(head, "check_compatible"):
        head.check_compatible(backbone_id, clean.shape[1])
    meta["label"] = meta["label"].astype(int)
    clean_scores = np.asarray(head.decision_function(clean), dtype=np.float64)
    clean_verdict = _verdicts(clean_scores, threshold)
    rows, clean_summary = _evaluate(
        CLEAN, CLEAN, None, meta, clean_scores, None, threshold, pairing
    )
    summaries = [clean_summary]
    errors: list[dict] = []
    embedded: dict[str, int] = {}
    loaded: Backbone | None = None
    index = {h: i for i, h in enumerate(meta["hash"])}
    if engine is not None:
        pairs = []
        for p in items:
            have = workspace.embedded_hashes(backbone_id, f"{tap}@{p.name}")
            pairs += [(r, p) for r in records_from_images(meta[~meta["hash"].isin(have)])]
        if pairs and not (should_stop is not None and should_stop()):
            loaded = backbone() if callable(backbone) else backbone
            if loaded is None or loaded.id != backbone_id:
                raise PerturbationError(
                    f"the head was trained on {backbone_id!r}; a backbone of that id is "
                    f"needed to embed {len(pairs)} perturbed image(s)"
                )
            result = engine(
                pairs,
                workspace,
                loaded,
                batch_size=batch_size,
                progress=(lambda d, t: progress("all perturbations", d, t)) if progress else None,
                should_stop=should_stop,
            )
            embedded.update({k: v for k, v in result.by_perturbation.items() if k})
            errors.extend(result.errors)
    for p in items:
        perturbed_tap = f"{tap}@{p.name}"
        have = workspace.embedded_hashes(backbone_id, perturbed_tap)
        missing = meta[~meta["hash"].isin(have)]
        if len(missing) and engine is None:
            if should_stop is not None and should_stop():
                break
            if loaded is None:
                # a Backbone is a plain dataclass; anything callable is a loader
                loaded = backbone() if callable(backbone) else backbone
                if loaded is None:
                    raise PerturbationError(
                        f"{len(missing)} image(s) are not yet embedded under {p.name}; "
                        f"a backbone ({backbone_id}) is needed to embed them"
                    )
                if loaded.id != backbone_id:
                    raise PerturbationError(
                        f"the head was trained on {backbone_id!r} but the backbone given is "
                        f"{loaded.id!r}"
                    )
            records = records_from_images(missing)
            dataset = Dataset(root=workspace.path, kind="files", records=records)
            result = embed_dataset(
                dataset,
                workspace,
                loaded,
                batch_size=batch_size,
                workers=workers,
                progress=(lambda d, t, n=p.name: progress(n, d, t)) if progress else None,
                perturb=p,
                perturbation=p.name,
            )
            embedded[p.name] = result.embedded
            errors.extend({**e, "perturbation": p.name} for e in result.errors)
            have = workspace.embedded_hashes(backbone_id, perturbed_tap)
        elif progress is not None:
            progress(p.name, 0, 0)
        present = meta[meta["hash"].isin(have)]
        hashes, x = workspace.load_embeddings(backbone_id, perturbed_tap, present["hash"].tolist())
        scores = np.asarray(head.decision_function(x), dtype=np.float64)
        rows_p, summary = _evaluate(
            p.name,
            p.family,
            p.strength,
            present.reset_index(drop=True),
            scores,
            clean_verdict[[index[h] for h in hashes]],
            threshold,
            pairing,
        )
        summary["n_missing"] = len(meta) - len(present)
        summary["delta_map"] = summary["map"] - clean_summary["map"]
        rows.extend(rows_p)
        summaries.append(summary)
    clean_summary["delta_map"] = 0.0
    report = RobustnessReport(
        head=_head_name(head),
        backbone=backbone_id,
        split=split,
        pairing=pairing,
        threshold=threshold,
        table=pd.DataFrame(rows, columns=TABLE_COLUMNS),
        summary=pd.DataFrame(summaries, columns=SUMMARY_COLUMNS),
        errors=errors,
        embedded=embedded,
        seconds=time.perf_counter() - start,
    )
    if store:
        save_result(
            workspace,
            "robustness",
            report.as_dict(),
            head=report.head,
            backbone=report.backbone,
            split=report.split,
            pairing=report.pairing,
        )
    return report


def stored_robustness(workspace: Workspace, head: str | None = None) -> list[RobustnessReport]:
    """Sweeps kept in the workspace (newest settings per head, backbone, split, pairing).

    ``head`` keeps the reports of one head name. For the dashboard: draw the last sweep
    without recomputing it.
    """
    where = {} if head is None else {"head": head}
    return [
        RobustnessReport.from_dict(doc["data"])
        for doc in list_results(workspace, "robustness", **where)
    ]


# -- for plotting --------------------------------------------------------------------------


def robustness_curves(table: pd.DataFrame, *, with_map: bool = True) -> pd.DataFrame:
    """AP-versus-strength points per family and generator, ready to draw as lines.

    Input: ``RobustnessReport.table``. Output columns: family, strength, generator, ap,
    perturbation, sorted by family, generator, strength. Only single-step perturbations
    make curves (chains have no single strength); each family's curve starts at the
    unperturbed baseline placed at the family's identity strength (JPEG 100, resize 1,
    blur 0, crop 1, noise 0), where its ``perturbation`` is ``none``. ``with_map`` adds
    the generator ``mAP`` (mean over generators) per point.
    """
    columns = ["family", "strength", "generator", "ap", "perturbation"]
    if table.empty:
        return pd.DataFrame(columns=columns)
    singles = table[table["family"].isin(list(FAMILIES))]
    clean = table[table["perturbation"] == CLEAN]
    parts = [singles[columns]]
    for family in sorted(singles["family"].unique()):
        base = clean[columns].copy()
        base["family"] = family
        base["strength"] = FAMILIES[family]["identity"]
        parts.append(base)
    curves = pd.concat(parts, ignore_index=True)
    if with_map:
        maps = (
            pd.concat([singles, *[clean.assign(family=f) for f in singles["family"].unique()]])
            .drop_duplicates(["perturbation", "family", "generator"])
            .groupby(["family", "perturbation"], as_index=False)
            .agg(ap=("map", "first"), strength=("strength", "first"))
        )
        maps.loc[maps["perturbation"] == CLEAN, "strength"] = maps.loc[
            maps["perturbation"] == CLEAN, "family"
        ].map(lambda f: FAMILIES[f]["identity"])
        maps["generator"] = "mAP"
        curves = pd.concat([curves, maps[columns]], ignore_index=True)
    curves["strength"] = curves["strength"].astype(float)
    return curves.sort_values(["family", "generator", "strength"], kind="stable").reset_index(
        drop=True
    )


def robustness_figure(table: pd.DataFrame, family: str, *, title: str | None = None):
    """A plotly figure: AP versus strength for one family, one line per generator.

    The mAP line is drawn thicker and dashed; the JPEG axis runs from quality 100 down, so
    that on every figure the perturbation grows stronger to the right except for resize,
    where 1 is the centre.
    """
    import plotly.graph_objects as go

    curves = robustness_curves(table)
    curves = curves[curves["family"] == family]
    fig = go.Figure()
    for generator, part in curves.groupby("generator", sort=True):
        is_map = generator == "mAP"
        fig.add_trace(
            go.Scatter(
                x=part["strength"],
                y=part["ap"],
                mode="lines+markers",
                name=str(generator),
                line={"width": 4 if is_map else 2, "dash": "dash" if is_map else "solid"},
            )
        )
    fig.update_layout(
        title=title or f"AP under {family}",
        xaxis_title=f"{family}: {FAMILIES[family]['unit']}" if family in FAMILIES else family,
        yaxis_title="average precision",
        yaxis_range=[0, 1.02],
        legend_title="generator",
    )
    if family == "jpeg":
        fig.update_xaxes(autorange="reversed")
    return fig
