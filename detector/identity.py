"""Backbone identity as a value: :class:`BackboneRef` and the backbone id it stands for.

A backbone id names the frozen model whose features a set of embeddings (or a head) holds:
``MODEL/WEIGHTS`` plus an optional ``@`` suffix of ``+``-joined options, e.g.
``ViT-L-14-336-quickgelu/openai``, ``ViT-B-16/file:1a2b3c4d5e6f@bicubic``,
``local-dir/dir:0a1b2c3d4e5f``, ``tiny-clip/random@draft``. The options are the resize
interpolation (``bicubic``; bilinear is the default and never written) and ``draft``
(reduced-scale JPEG decoding). Ids are stored in workspaces and head cards, so
``BackboneRef.parse(id).id == id`` for every id Cue Lens writes (``detector.backbone``'s
``backbone_id_for`` builds them through this class). docs/architecture.md, "Identity rules".

This module imports nothing heavy: heads, listings and the concept modules read ids
without loading torch's model code.
"""

from __future__ import annotations

from dataclasses import dataclass

from detector.errors import CueLensError

DEFAULT_MODEL = "ViT-L-14-336"  # the paper's backbone (run with QuickGELU for OpenAI weights)
DEFAULT_PRETRAINED = "openai"
TINY_CLIP = "tiny-clip"  # the built-in random-weights demo backbone
RANDOM_WEIGHTS = "random"  # weights of tiny-clip, and of MODEL/random (benchmarks only)
LOCAL_DIR_MODEL = "local-dir"  # the model part of an open_clip model folder's id
DEFAULT_INTERPOLATION = "bilinear"
INTERPOLATIONS = ("bilinear", "bicubic")
DRAFT_OPTION = "draft"
LOCAL_WEIGHT_PREFIXES = ("file:", "dir:")  # weights named by a hash of a local file / folder


class BackboneIdError(CueLensError, ValueError):
    """A backbone id that cannot be parsed."""


@dataclass(frozen=True)
class BackboneRef:
    """One backbone identity: model, weights, interpolation and JPEG decoding.

    ``model`` is the open_clip model name as the id writes it (``ViT-L-14-336-quickgelu``,
    ``tiny-clip``, ``local-dir``); ``weights`` a pretrained tag, ``file:<sha256[:12]>``,
    ``dir:<sha256[:12]>`` or ``random``.
    """

    model: str
    weights: str
    interpolation: str = DEFAULT_INTERPOLATION
    draft: bool = False

    def __post_init__(self) -> None:
        # weights may hold "/" (an ``hf-hub:org/name`` model splits at its first "/")
        for name, forbidden in (("model", "/@+"), ("weights", "@+")):
            value = getattr(self, name)
            if not value or any(c in value for c in forbidden) or value != value.strip():
                raise BackboneIdError(
                    f"backbone {name} {value!r} is empty, holds one of {forbidden!r}, or "
                    f"starts or ends with a space"
                )
        if self.interpolation not in INTERPOLATIONS:
            raise BackboneIdError(
                f"unknown interpolation {self.interpolation!r} (known: {', '.join(INTERPOLATIONS)})"
            )

    @classmethod
    def parse(cls, backbone_id: str) -> BackboneRef:
        """The ref of an id; ``BackboneIdError`` naming the id when it is not one."""
        if not isinstance(backbone_id, str) or not backbone_id:
            raise BackboneIdError(
                f"backbone id {backbone_id!r}: expected 'MODEL/WEIGHTS[@OPTIONS]'"
            )
        base, at, options = backbone_id.partition("@")
        model, slash, weights = base.partition("/")
        opts = options.split("+") if at else []
        interpolations = [o for o in opts if o in INTERPOLATIONS]
        unknown = [o for o in opts if o not in INTERPOLATIONS and o != DRAFT_OPTION]
        if not slash or unknown or len(interpolations) > 1 or opts.count(DRAFT_OPTION) > 1:
            why = (
                f"unknown option(s) {', '.join(map(repr, unknown))}"
                if unknown
                else "expected 'MODEL/WEIGHTS[@OPTIONS]'"
            )
            raise BackboneIdError(f"backbone id {backbone_id!r}: {why}")
        try:
            return cls(
                model,
                weights,
                interpolations[0] if interpolations else DEFAULT_INTERPOLATION,
                DRAFT_OPTION in opts,
            )
        except BackboneIdError as exc:
            raise BackboneIdError(f"backbone id {backbone_id!r}: {exc}") from None

    @classmethod
    def try_parse(cls, backbone_id: str | None) -> BackboneRef | None:
        """The ref of an id, or None for a missing or unparsable one (foreign head cards)."""
        try:
            return cls.parse(backbone_id) if backbone_id else None
        except BackboneIdError:
            return None

    @property
    def id(self) -> str:
        """The canonical id string (as stored in workspaces and head cards)."""
        options = [self.interpolation] if self.interpolation != DEFAULT_INTERPOLATION else []
        if self.draft:
            options.append(DRAFT_OPTION)
        suffix = "@" + "+".join(options) if options else ""
        return f"{self.model}/{self.weights}{suffix}"

    def __str__(self) -> str:
        return self.id

    @property
    def is_demo(self) -> bool:
        """Random weights (``tiny-clip``, or ``MODEL/random``): scores mean nothing."""
        return self.model == TINY_CLIP or self.weights == RANDOM_WEIGHTS

    @property
    def is_local(self) -> bool:
        """Weights from a local file or folder, known only by a hash (not rebuildable)."""
        return self.model == LOCAL_DIR_MODEL or self.weights.startswith(LOCAL_WEIGHT_PREFIXES)

    @property
    def features(self) -> tuple[str, str, str]:
        """What decides the features: model, weights and interpolation (``draft`` is the
        user's opt-in approximation and left out; ``detector.heads.same_features``)."""
        return (self.model, self.weights, self.interpolation)

    def load_args(self) -> dict:
        """``detector.backbone.load_backbone`` arguments that rebuild this backbone:
        ``model``, ``pretrained`` (None for tiny-clip), plus ``interpolation`` and ``draft``
        when not the defaults. ``BackboneIdError`` for local files and folders, which an id
        cannot locate."""
        if self.is_local:
            raise BackboneIdError(
                f"backbone {self.id!r} was loaded from a local file or folder; its id cannot "
                f"locate the weights"
            )
        args: dict = {
            "model": self.model,
            "pretrained": None if self.model == TINY_CLIP else self.weights,
        }
        if self.interpolation != DEFAULT_INTERPOLATION:
            args["interpolation"] = self.interpolation
        if self.draft:
            args["draft"] = True
        return args


def is_demo_id(backbone_id: str | None) -> bool:
    """Whether an id (possibly None or foreign) names a random-weights demo backbone."""
    ref = BackboneRef.try_parse(backbone_id)
    return ref is not None and ref.is_demo


@dataclass(frozen=True)
class BackboneSpec:
    """What to load and how to run it: the one request type of the CLI's Ray engine and the
    dashboard's backbone picker, turned into ``detector.backbone.load_backbone`` arguments by
    :meth:`load_kwargs` (``load_backbone(spec.model, spec.pretrained, **spec.load_kwargs())``).

    Unlike :class:`BackboneRef` it names weights as the user gave them (a tag, a file path), not
    as the id records them, and carries run-time choices (device, precision) that are not part of
    the features' identity. ``allow_random`` (random weights under a real model's name) is for
    benchmarks only."""

    model: str
    pretrained: str | None = None
    device: str = "auto"
    precision: str = "auto"
    draft: bool = False  # reduced-scale JPEG decoding (opt-in; the id gets @draft)
    interpolation: str = DEFAULT_INTERPOLATION
    allow_random: bool = False

    @property
    def is_demo(self) -> bool:
        return self.model == TINY_CLIP

    @property
    def label(self) -> str:
        """``model / weights`` as a user reads it."""
        if self.is_demo:
            return f"{TINY_CLIP} (random weights)"
        return f"{self.model} / {self.pretrained}" if self.pretrained else self.model

    def load_kwargs(self, device: str | None = None) -> dict:
        """Keyword arguments of ``load_backbone`` besides model and weights."""
        return {
            "device": device or self.device,
            "precision": self.precision,
            "interpolation": self.interpolation,
            "allow_random": self.allow_random,
            "draft": self.draft,
        }
