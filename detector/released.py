"""The reference paper's released detector heads: a registry, a verified download cache, and
the import of their weights-only checkpoints into our own head classes.

Willi, Mathys, Graber released twelve heads (MIT licence) in ``marco-willi/clip-cues``; the
registry pins the files at one commit and records each file's SHA-256, so a file is used only
when its bytes are exactly the released ones.

Where a file is looked for, in order (the first hit is verified by hash, a mismatch is an
error, never a silent fallback):

1. an explicit ``local_path`` (a file, or a folder holding the file);
2. ``$CUE_LENS_RELEASED_DIR/<file>`` (a folder of the released files, e.g. an offline copy);
3. the cache: ``$CUE_LENS_CACHE/heads/<file>``, else ``~/.cache/cue-lens/heads/<file>``;
4. a download from the pinned URL into the cache (skipped when ``CUE_LENS_OFFLINE=1``).

Checkpoints are read with ``torch.load(weights_only=True)``: a file that needs anything beyond
tensors and plain containers (e.g. a pickle that would run code) is refused before any of its
payload runs.
"""

from __future__ import annotations

import csv
import os
import pickle
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from detector.errors import CueLensError
from detector.hashing import sha256_file
from detector.heads import (
    HeadError,
    LinearProbe,
    OrthogonalHead,
    default_preprocessing,
    get_head_type,
    make_card,
)

REPOSITORY = "marco-willi/clip-cues"
COMMIT = "ad9eea9a0f287ab8869e7f16aeef4a6878d1059d"
URL_TEMPLATE = "https://raw.githubusercontent.com/{repo}/{commit}/{folder}/{file}"
BACKBONE_ID = "ViT-L-14-336-quickgelu/openai"  # OpenAI weights run with QuickGELU
DEFAULT_RELEASED = "linear_probe_synthclic"
RELEASED_VOCABULARY = "antonyms"  # the concept vocabulary released with the cm_antonyms heads
RELEASED_ID_COLUMN = "attribute_name"  # the column of antonyms.csv naming each concept
LICENCE = "MIT"
PAPER = (
    'Willi, Mathys, Graber, "Synthetic Image Detection with CLIP: Understanding and Assessing '
    'Predictive Cues" (arXiv 2602.12381)'
)


class ReleasedHeadError(HeadError):
    """A released head cannot be found, verified or imported."""


@dataclass(frozen=True)
class ReleasedHead:
    """One released head: where it lives, its checksum, and what it expects as input."""

    name: str
    file: str
    sha256: str
    model_type: str  # as stored in the checkpoint: linear, clip, concept
    head_type: str  # our head type: linear, orthogonal, concept
    training_data: str
    tap: str
    feature_dim: int
    backbone_id: str = BACKBONE_ID
    commit: str = COMMIT
    repository: str = REPOSITORY
    licence: str = LICENCE
    preprocessing: dict = field(default_factory=lambda: released_preprocessing())
    folder: str = "data/checkpoints"

    @property
    def url(self) -> str:
        """The raw file at the authors' pinned commit."""
        return URL_TEMPLATE.format(
            repo=self.repository, commit=self.commit, folder=self.folder, file=self.file
        )


CONCEPT_INTERPOLATION_NOTE = (
    "The cm_antonyms heads read projected embeddings. The authors' script that writes them "
    "(scripts/extract_clip_projected_embeddings.py) preprocesses with the Hugging Face "
    "CLIPImageProcessor of openai/clip-vit-large-patch14-336, whose resize is bicubic by "
    "default (resample=3), so their training features most likely used bicubic resizing; "
    "the authors' inference code and notebook (src/clip_cues/feature_extractor.py) use "
    "torchvision Resize with its default bilinear interpolation. Cue Lens uses bilinear for "
    "every head (the backbone id says @bicubic otherwise)."
)


def released_preprocessing() -> dict:
    """Preprocessing of the authors' code, which the released heads need to reproduce."""
    prep = default_preprocessing(336)
    prep["note"] = (
        "torchvision Resize(336) with its default bilinear interpolation, CenterCrop(336)"
    )
    return prep


_TRAINING_DATA = {
    "cnnspot": "CNNSpot (ProGAN training set of Wang et al.)",
    "synthbuster": "Synthbuster (RAISE reals, diffusion-model fakes)",
    "synthclic": "SynthCLIC (the paper's dataset)",
    "combined": "the authors' combination of their training sets (file suffix 'combined')",
}

# SHA-256 of each released file at the pinned commit (format of `sha256sum`).
_SHA256SUMS = """
5261fc88e2b09fa48c5816193a2b6bb9305049e7f0e757e1f3f65d0542761840  clip_orthogonal_cnnspot.ckpt
3f7e5404b2e7de38719e49edee363fd505956aae4760e6636518f4060efbc568  clip_orthogonal_combined.ckpt
7dbdd5f539f63227a497a18e0a8fe6e44ee08884e82f4eb961f0ce4edbe3cd9d  clip_orthogonal_synthbuster.ckpt
0ddba778343c20186c6d3ab06198a956da3572058806cfbbf287a275f97ca5e4  clip_orthogonal_synthclic.ckpt
e3464eff7b224236bd3d7f264f1c00fe03408feb534c400065d3dc8bccab89a4  cm_antonyms_cnnspot.ckpt
956acb4ba8a6e86dea23d070f2a581747fc82c8bb02554a8a6acde6f9113bc20  cm_antonyms_combined.ckpt
654079042a20a2554ec12da031e1a370a224389ee1c6e68c6955648f7e899534  cm_antonyms_synthbuster.ckpt
35f57de4b02a878a0376f6e0d0cbb175f34fc3acb7f99ff2aa4d6e8a04783c4d  cm_antonyms_synthclic.ckpt
b8201afaaceda70bf0dbfc3ffc2107dddbda49047c73557ae316cd5796c194ee  linear_probe_cnnspot.ckpt
8904774bf2bc8266b55033301215ea8db8bf827f3fbccd61ada164f58778684f  linear_probe_combined.ckpt
86cbb71de789f81a6805a0b2ec479076079199d6d7ffb1441e6a9775853638cd  linear_probe_synthbuster.ckpt
c7a310eb0b14290d6ede87c85505ecc0b8522f9618ec7b21e1a428334c4d749f  linear_probe_synthclic.ckpt
"""
_SHA256 = {
    file: digest for digest, file in (line.split() for line in _SHA256SUMS.strip().splitlines())
}

# checkpoint model_type -> (file prefix, our head type, tap, input dim)
_KINDS = {
    "linear": ("linear_probe", "linear", "pooled", 1024),
    "clip": ("clip_orthogonal", "orthogonal", "pooled", 1024),
    "concept": ("cm_antonyms", "concept", "projected", 768),
}


def _build_registry() -> dict[str, ReleasedHead]:
    registry = {}
    for model_type, (prefix, head_type, tap, dim) in _KINDS.items():
        for data in ("cnnspot", "synthbuster", "synthclic", "combined"):
            name = f"{prefix}_{data}"
            file = f"{name}.ckpt"
            registry[name] = ReleasedHead(
                name=name,
                file=file,
                sha256=_SHA256[file],
                model_type=model_type,
                head_type=head_type,
                training_data=_TRAINING_DATA[data],
                tap=tap,
                feature_dim=dim,
            )
    return registry


RELEASED_HEADS: dict[str, ReleasedHead] = _build_registry()

# The vocabulary whose rows name the 168 concepts of the cm_antonyms heads, pinned like them.
RELEASED_VOCABULARY_FILE = ReleasedHead(
    name=RELEASED_VOCABULARY,
    file="antonyms.csv",
    sha256="62c10a56b9d4f46623cd84564bb380138d9e1a59e6ba3448b928ddedb20be9de",
    model_type="vocabulary",
    head_type="vocabulary",
    training_data="",
    tap="projected",
    feature_dim=768,
    folder="data/vocabularies",
)


def list_released() -> list[str]:
    """Names of the released heads."""
    return list(RELEASED_HEADS)


def get_released(name: str) -> ReleasedHead:
    """The registry record of one released head (or of the released ``antonyms`` vocabulary)."""
    if name == RELEASED_VOCABULARY:
        return RELEASED_VOCABULARY_FILE
    try:
        return RELEASED_HEADS[name]
    except KeyError:
        raise ReleasedHeadError(
            f"unknown released head {name!r} (known: {', '.join(RELEASED_HEADS)})"
        ) from None


# -- finding, downloading and verifying files -----------------------------------------------


def heads_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Cache folder of released heads: ``cache_dir``, ``$CUE_LENS_CACHE/heads`` or
    ``~/.cache/cue-lens/heads``."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    env = os.environ.get("CUE_LENS_CACHE")
    if env:
        return Path(env).expanduser() / "heads"
    return Path("~/.cache/cue-lens/heads").expanduser()


def _verified(path: Path, record: ReleasedHead, origin: str) -> Path:
    digest = sha256_file(path)
    if digest != record.sha256:
        raise ReleasedHeadError(
            f"{path} ({origin}): SHA-256 {digest[:16]}... does not match the released "
            f"{record.file} ({record.sha256[:16]}...); the file is damaged or not the released "
            f"one. Delete it, or fetch {record.url}"
        )
    return path


def cached_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path | None:
    """Where a released head is already available without network (not verified), or None."""
    record = get_released(name)
    env = os.environ.get("CUE_LENS_RELEASED_DIR")
    candidates = [Path(env).expanduser() / record.file] if env else []
    candidates.append(heads_cache_dir(cache_dir) / record.file)
    return next((p for p in candidates if p.is_file()), None)


def _download(record: ReleasedHead, target: Path, timeout: float) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{record.file}.", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(record.url, timeout=timeout) as r:
            shutil.copyfileobj(r, out)
        _verified(tmp, record, f"downloaded from {record.url}")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def fetch_released(
    name: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    local_path: str | os.PathLike | None = None,
    download: bool | None = None,
    timeout: float = 60.0,
) -> Path:
    """The verified local file of a released head, downloading it into the cache if needed.

    ``download=None`` downloads unless ``CUE_LENS_OFFLINE=1``. Raises ``ReleasedHeadError``
    saying where to put the file when it cannot be had.
    """
    record = get_released(name)
    if local_path is not None:
        p = Path(local_path).expanduser()
        p = p / record.file if p.is_dir() else p
        if not p.is_file():
            raise ReleasedHeadError(f"{p}: no such file for released head {name!r}")
        return _verified(p, record, "local path")
    env = os.environ.get("CUE_LENS_RELEASED_DIR")
    if env and (Path(env).expanduser() / record.file).is_file():
        return _verified(Path(env).expanduser() / record.file, record, "CUE_LENS_RELEASED_DIR")
    target = heads_cache_dir(cache_dir) / record.file
    if target.is_file():
        return _verified(target, record, "cache")
    if download is None:
        download = os.environ.get("CUE_LENS_OFFLINE") != "1"
    error = "downloads are switched off (CUE_LENS_OFFLINE=1)"
    if download:
        try:
            return _download(record, target, timeout)
        except ReleasedHeadError:
            raise
        except Exception as exc:  # network errors of every kind end here
            error = f"download failed: {exc}"
    raise ReleasedHeadError(
        f"released head {name!r} is not available offline and {error}.\n"
        f"Get {record.file} (SHA-256 {record.sha256}) from {record.url} and either\n"
        f"  - put it in the cache folder {target.parent}, or\n"
        f"  - set CUE_LENS_RELEASED_DIR to a folder holding it, or\n"
        f"  - pass the file path instead of the name (e.g. --head /path/to/{record.file})."
    )


# -- importing checkpoints -------------------------------------------------------------------


def read_checkpoint(path: str | os.PathLike) -> tuple[str, dict[str, np.ndarray]]:
    """``(model_type, state_dict as float32 numpy)`` of a weights-only checkpoint.

    Anything that is not a plain weights-only checkpoint (a pickle with code, an unexpected
    layout) raises ``ReleasedHeadError``; the file's payload never runs.
    """
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        zipfile.BadZipFile,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        OSError,
        ImportError,
    ) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReleasedHeadError(
            f"{path}: refused: not a weights-only checkpoint (loading it would need to run code "
            f"or it is damaged): {first}"
        ) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise ReleasedHeadError(
            f"{path}: not a released head checkpoint (expected a dict with 'state_dict' and "
            f"'model_type')"
        )
    model_type = obj.get("model_type")
    state = {}
    for key, value in obj["state_dict"].items():
        if not isinstance(value, torch.Tensor):
            raise ReleasedHeadError(f"{path}: state_dict entry {key!r} is not a tensor")
        state[str(key)] = value.detach().to(torch.float32).numpy()
    if model_type not in _KINDS:
        raise ReleasedHeadError(
            f"{path}: unknown model_type {model_type!r} (known: {', '.join(_KINDS)})"
        )
    return model_type, state


def _take(state: dict, key: str, shape: tuple, path) -> np.ndarray:
    if key not in state:
        raise ReleasedHeadError(f"{path}: missing tensor {key!r} (keys: {sorted(state)})")
    value = state[key]
    if len(value.shape) != len(shape) or any(
        want is not None and got != want for got, want in zip(value.shape, shape, strict=True)
    ):
        raise ReleasedHeadError(f"{path}: tensor {key!r} has shape {value.shape}, expected {shape}")
    return value


def tensors_from_state(model_type: str, state: dict[str, np.ndarray], path="checkpoint") -> dict:
    """Map the authors' state-dict keys to our head's tensor names (see ``to_tensors``).

    ``concept`` tensors are passed with the ``model.`` prefix removed: ``text_embeddings``
    (C, 768), ``W_concepts.weight`` (C, 768), ``W_concepts.bias`` (C,),
    ``W_classifier.weight`` (1, C), ``W_classifier.bias`` (1,).
    """
    if model_type == "linear":
        p = "model.classification_head.fc."
        w = _take(state, p + "weight", (1, None), path)
        return {"weight": w, "bias": _take(state, p + "bias", (1,), path)}
    if model_type == "clip":
        p = "model.classification_head."
        w1 = _take(state, p + "layers.0.weight", (None, None), path)
        k = w1.shape[0]
        return {
            "directions.weight": w1,
            "directions.bias": _take(state, p + "layers.0.bias", (k,), path),
            "to_logit.weight": _take(state, p + "to_logits.weight", (1, k), path),
            "to_logit.bias": _take(state, p + "to_logits.bias", (1,), path),
        }
    if model_type == "concept":
        te = _take(state, "model.text_embeddings", (None, None), path)
        c, dim = te.shape
        return {
            "text_embeddings": te,
            "W_concepts.weight": _take(state, "model.W_concepts.weight", (c, dim), path),
            "W_concepts.bias": _take(state, "model.W_concepts.bias", (c,), path),
            "W_classifier.weight": _take(state, "model.W_classifier.weight", (1, c), path),
            "W_classifier.bias": _take(state, "model.W_classifier.bias", (1,), path),
        }
    raise ReleasedHeadError(f"{path}: unknown model_type {model_type!r}")


def import_checkpoint(
    path: str | os.PathLike,
    *,
    record: ReleasedHead | None = None,
    backbone_id: str = BACKBONE_ID,
):
    """A head (ours) from a weights-only checkpoint in the authors' format, with a card.

    ``linear`` -> ``LinearProbe``, ``clip`` -> ``OrthogonalHead``, ``concept`` -> the registered
    ``concept`` head (``concepts.bottleneck.ConceptBottleneck``). The card says where the
    weights came from and which backbone and preprocessing they need.
    """
    path = Path(path)
    model_type, state = read_checkpoint(path)
    tensors = tensors_from_state(model_type, state, path)
    _, head_type, _, _ = _KINDS[model_type]
    cls = {"linear": LinearProbe, "orthogonal": OrthogonalHead}.get(head_type)
    if cls is None:
        cls = get_head_type(head_type)
    params = {"backbone_id": backbone_id}
    names_note = None
    if head_type == "concept":
        names, names_note = _concept_names(tensors["text_embeddings"].shape[0], path.parent)
        params.update(names)
    head = cls.from_tensors(tensors, params)
    if record is None:
        digest = sha256_file(path)
        record = next((r for r in RELEASED_HEADS.values() if r.sha256 == digest), None)
    card = make_card(
        head,
        name=record.name if record else path.stem,
        released=record is not None,
        source=record.url if record else str(path),
        sha256=record.sha256 if record else sha256_file(path),
        training_data=record.training_data if record else None,
        licence=record.licence if record else None,
        paper=PAPER if record else None,
        model_type=model_type,
        threshold=0.5,
        threshold_rule="0.5 (the released heads come without a validation threshold)",
        preprocessing=released_preprocessing(),
        path=str(path),
    )
    card["feature_dim"] = int(getattr(head, "n_features_in_", 0)) or card.get("feature_dim")
    if names_note is not None:
        card["concept_names_source"] = names_note
    if head_type == "concept":
        card["preprocessing"]["training_features_note"] = CONCEPT_INTERPOLATION_NOTE
    head.card_ = card
    return head


def _concept_names(n_concepts: int, beside: Path | None = None) -> tuple[dict, str]:
    """Names of the released concepts (the rows of the released ``antonyms`` vocabulary), and
    a note saying where they came from or why the concepts keep positional names.

    The CSV is looked for beside the checkpoint first, then fetched and verified like the
    heads (cache, ``CUE_LENS_RELEASED_DIR``, or a download); any copy must match the pinned
    SHA-256, and a copy that does not is passed over for the next source. When no source
    gives it, the concepts keep positional names ``concept_<i>`` and the note says why.
    """
    record = get_released(RELEASED_VOCABULARY)
    local = beside / record.file if beside is not None else None
    sources = []
    if local is not None and local.is_file():
        sources.append(lambda: fetch_released(RELEASED_VOCABULARY, local_path=local))
    sources.append(lambda: fetch_released(RELEASED_VOCABULARY))
    problems = []
    for source in sources:
        try:
            csv_path = source()
            ids = released_concept_ids(csv_path)
        except (CueLensError, OSError, UnicodeDecodeError) as exc:
            problems.append(str(exc).splitlines()[0])
            continue
        if len(ids) == n_concepts:
            return {"concept_names": ids}, f"{csv_path} (released vocabulary, SHA-256 verified)"
        problems.append(f"{csv_path}: {len(ids)} concepts, the checkpoint has {n_concepts}")
    return {}, "positional (concept_<i>): " + " | ".join(problems)


def released_concept_ids(path: str | os.PathLike) -> list[str]:
    """The concept ids of the released ``antonyms.csv`` (its ``attribute_name`` column), in
    file order. The file is read as data, pinned by SHA-256 like the heads; the concept
    package's vocabulary loader reads the same file with every check."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        if RELEASED_ID_COLUMN not in (reader.fieldnames or []):
            raise ReleasedHeadError(f"{path}: no {RELEASED_ID_COLUMN!r} column")
        return [
            row[RELEASED_ID_COLUMN].strip()
            for row in reader
            if (row.get(RELEASED_ID_COLUMN) or "").strip()
        ]


def load_released(
    name: str = DEFAULT_RELEASED,
    *,
    cache_dir: str | os.PathLike | None = None,
    local_path: str | os.PathLike | None = None,
    download: bool | None = None,
):
    """Fetch (or find) a released head, verify it and import it as our head class."""
    record = get_released(name)
    path = fetch_released(name, cache_dir=cache_dir, local_path=local_path, download=download)
    head = import_checkpoint(path, record=record, backbone_id=record.backbone_id)
    return head
