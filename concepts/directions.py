"""Concept directions in CLIP's image-text space, and their workspace cache.

For each concept, each pole (positive, negative) is written into a small ensemble of prompt
templates; the text embeddings are L2-normalised and averaged per pole, and the direction is

    d = normalize(normalize(mean T(positive prompts)) - normalize(mean T(negative prompts)))

A pole with an explicit prompt in the vocabulary (the paper's ``positive_prompt`` column, or
the neutral "a photograph" of a single-phrase custom concept) uses that prompt alone.

Directions are cached in the workspace under ``concept_directions`` with the key
``"{backbone id}|{vocabulary hash}|{templates hash}"``: asking twice encodes no text.

An *encoder* is anything with ``id`` (the backbone id) and ``encode_text(list[str]) ->
(N, dim)`` L2-normalised float32 array: a ``detector.backbone.Backbone`` or a test double.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from concepts.vocabulary import Vocabulary, VocabularyError, load_vocabulary
from detector.errors import CueLensError
from detector.identity import BackboneRef

DEFAULT_TEMPLATES = (
    "a photograph with {}.",
    "a photo showing {}.",
    "an image with {}.",
    "a picture that has {}.",
    "a camera shot with {}.",
)
NEUTRAL_PROMPT = "a photograph"
CACHE_NAMESPACE = "concept_directions"


class TextEncoder(Protocol):
    """What direction building needs from a backbone."""

    id: str

    def encode_text(self, texts: Sequence[str]) -> np.ndarray: ...


class DirectionsUnavailableError(CueLensError):
    """Directions are not cached and no text encoder was given to compute them."""


def templates_hash(templates: Sequence[str]) -> str:
    """Stable hash (16 hex digits) of an ordered template ensemble."""
    if not templates or any("{}" not in t for t in templates):
        raise ValueError("every prompt template must contain '{}' (where the phrase goes)")
    return hashlib.sha256("\x1e".join(templates).encode("utf-8")).hexdigest()[:16]


def cache_key(backbone_id: str, vocabulary: Vocabulary, templates: Sequence[str]) -> str:
    """``"{backbone id}|{vocabulary hash}|{templates hash}"``, the directions' cache key."""
    return f"{backbone_id}|{vocabulary.hash}|{templates_hash(templates)}"


def pole_prompts(
    vocabulary: Vocabulary, templates: Sequence[str] = DEFAULT_TEMPLATES
) -> tuple[list[str], np.ndarray]:
    """All prompts to encode, and the pole of each (``2 * row + 0`` positive, ``+ 1`` negative)."""
    prompts: list[str] = []
    owner: list[int] = []
    for q in range(len(vocabulary)):
        poles = (
            (vocabulary.positive[q], vocabulary.positive_prompt[q]),
            (vocabulary.negative[q], vocabulary.negative_prompt[q]),
        )
        for p, (phrase, explicit) in enumerate(poles):
            texts = [explicit] if explicit else [t.format(phrase) for t in templates]
            prompts.extend(texts)
            owner.extend([2 * q + p] * len(texts))
    return prompts, np.asarray(owner, dtype=np.int64)


def _normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def compute_directions(
    encoder: TextEncoder,
    vocabulary: Vocabulary,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
) -> np.ndarray:
    """Unit concept directions, shape (len(vocabulary), dim) float32, in one text-encoder call."""
    templates_hash(templates)  # validates the templates
    prompts, owner = pole_prompts(vocabulary, templates)
    text = _normalize(np.asarray(encoder.encode_text(prompts), dtype=np.float64))
    if text.shape[0] != len(prompts):
        raise ValueError(f"encoder returned {text.shape[0]} embeddings for {len(prompts)} prompts")
    n_poles = 2 * len(vocabulary)
    sums = np.zeros((n_poles, text.shape[1]))
    np.add.at(sums, owner, text)
    counts = np.bincount(owner, minlength=n_poles)[:, None]
    poles = _normalize(sums / counts).reshape(len(vocabulary), 2, -1)
    diff = poles[:, 0] - poles[:, 1]
    norms = np.linalg.norm(diff, axis=1)
    if np.any(norms < 1e-6):
        q = int(np.argmin(norms))
        raise VocabularyError(
            f"vocabulary {vocabulary.name!r}: concept {vocabulary.ids[q]!r} has the same text "
            f"embedding for both poles; make its phrases differ in meaning"
        )
    return (diff / norms[:, None]).astype(np.float32)


def cached_directions(
    workspace,
    backbone_id: str,
    vocabulary: Vocabulary,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
) -> np.ndarray | None:
    """The cached directions for (backbone, vocabulary, templates), or None."""
    arr = workspace.get_array(CACHE_NAMESPACE, cache_key(backbone_id, vocabulary, templates))
    if arr is None or arr.ndim != 2 or arr.shape[0] != len(vocabulary):
        return None
    return arr.astype(np.float32, copy=False)


def concept_directions(
    vocabulary: Vocabulary | str,
    encoder: TextEncoder | None = None,
    *,
    backbone_id: str | None = None,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    workspace=None,
) -> np.ndarray:
    """Unit directions (Q, dim) float32 for a vocabulary, through the workspace cache.

    ``backbone_id`` defaults to ``encoder.id``. With a ``workspace`` the result is read from,
    or written to, its ``concept_directions`` cache; a hit calls the encoder zero times. Raises
    ``DirectionsUnavailableError`` when there is no cached entry and no encoder.
    """
    vocabulary = load_vocabulary(vocabulary)
    backbone_id = backbone_id or getattr(encoder, "id", None)
    if backbone_id is None:
        raise ValueError("concept_directions needs an encoder or a backbone_id")
    if workspace is not None:
        hit = cached_directions(workspace, backbone_id, vocabulary, templates)
        if hit is not None:
            return hit
    if encoder is None:
        raise DirectionsUnavailableError(
            f"no cached directions for vocabulary {vocabulary.name!r} and backbone "
            f"{backbone_id!r}; they need the backbone's text encoder once "
            f"(pass --model/--pretrained for that backbone)"
        )
    if getattr(encoder, "id", backbone_id) != backbone_id:
        raise ValueError(f"encoder {encoder.id!r} is not backbone {backbone_id!r}")
    directions = compute_directions(encoder, vocabulary, templates)
    if workspace is not None:
        workspace.put_array(
            CACHE_NAMESPACE,
            cache_key(backbone_id, vocabulary, templates),
            directions,
            doc={
                "vocabulary": vocabulary.name,
                "n_concepts": len(vocabulary),
                "templates": list(templates),
            },
        )
    return directions


def custom_vocabulary(positive: str, negative: str | None = None) -> Vocabulary:
    """A one-concept vocabulary: ``positive`` vs ``negative`` (or vs the neutral "a photograph")."""
    positive = positive.strip()
    if not positive:
        raise VocabularyError("a custom concept needs a non-empty phrase")
    if negative is not None and negative.strip():
        return Vocabulary.from_pairs([("custom", positive, negative.strip())])
    return Vocabulary(
        name="custom",
        ids=("custom",),
        positive=(positive,),
        negative=(NEUTRAL_PROMPT,),
        category=("custom",),
        explanation=(f"{positive} vs a neutral photograph",),
        positive_prompt=("",),
        negative_prompt=(NEUTRAL_PROMPT,),
    )


def phrase_direction(
    positive: str,
    negative: str | None = None,
    encoder: TextEncoder | None = None,
    *,
    backbone_id: str | None = None,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    workspace=None,
) -> np.ndarray:
    """The unit direction (dim,) of a custom concept (cached like any vocabulary)."""
    vocab = custom_vocabulary(positive, negative)
    return concept_directions(
        vocab, encoder, backbone_id=backbone_id, templates=templates, workspace=workspace
    )[0]


def load_text_encoder(backbone_id: str, *, device: str = "auto", precision: str = "auto"):
    """Load the backbone named by an id (``tiny-clip/random``, ``MODEL/TAG``) for its text tower.

    Ids of local files or folders cannot be reloaded from the id alone: pass the model and
    weights explicitly (``detector.backbone.load_backbone``) instead.
    """
    from detector.backbone import load_backbone  # torch and the model code: only when asked

    ref = BackboneRef.parse(backbone_id)
    if ref.is_local:
        raise DirectionsUnavailableError(
            f"backbone {backbone_id!r} uses local weights; pass --model and --pretrained "
            f"naming them to compute concept directions"
        )
    # loaded for its text tower: keep it from the start
    return load_backbone(**ref.load_args(), device=device, precision=precision, text_tower=True)
