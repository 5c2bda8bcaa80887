"""Options shared by several commands: workspace, backbone, output format."""

from __future__ import annotations

import argparse
import contextlib

from detector.errors import CueLensError
from detector.identity import DEFAULT_MODEL, DEFAULT_PRETRAINED, BackboneSpec


def add_backbone_options(parser: argparse.ArgumentParser) -> None:
    """``--model --pretrained --device --precision`` (the paper's ViT-L/14-336 by default)."""
    group = parser.add_argument_group("backbone")
    group.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"open_clip model name, 'local-dir:FOLDER', or 'tiny-clip' (default {DEFAULT_MODEL})",
    )
    group.add_argument(
        "--pretrained",
        default=None,
        help=f"pretrained tag or local checkpoint file (default {DEFAULT_PRETRAINED} for "
        f"{DEFAULT_MODEL}; ignored for tiny-clip and local-dir:)",
    )
    group.add_argument(
        "--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda[:N], mps"
    )
    group.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "bf16", "fp32"],
        help="auto: bf16 on CUDA (autocast); on a CPU, bf16 weights when a probe measured on this "
        "machine finds them clearly faster and faithful (cached), else fp32",
    )
    group.add_argument(
        "--draft-decode",
        action="store_true",
        help="decode large JPEGs at reduced DCT scale (faster; not the paper's pixels, so the "
        "backbone id gets @draft and its embeddings are kept apart; default: full decoding)",
    )


def backbone_from_args(args: argparse.Namespace):
    """Load the backbone named by ``add_backbone_options``' arguments."""
    # imported on use: torch and the model code, which building the parser does not need
    from detector.backbone import load_backbone

    pretrained = args.pretrained
    if pretrained is None and args.model == DEFAULT_MODEL:
        pretrained = DEFAULT_PRETRAINED
    return load_backbone(
        args.model,
        pretrained,
        device=args.device,
        precision=args.precision,
        draft=bool(getattr(args, "draft_decode", False)),
    )


def add_embedding_options(parser: argparse.ArgumentParser) -> None:
    """``--batch-size --workers`` of the commands that embed images."""
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass (32)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="decoding processes (default: CPU count - 1); with --engine ray, embedding actors",
    )


def add_workspace_option(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``--workspace WS``: the workspace directory."""
    parser.add_argument(
        "--workspace", "-w", required=required, help="workspace directory (created when missing)"
    )


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """``--json``: print one JSON object instead of text."""
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """``--engine local|ray`` and the Ray options (``docs/scale.md``)."""
    group = parser.add_argument_group("engine (docs/scale.md)")
    group.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this machine (default); ray: a Ray cluster (needs requirements-scale.txt)",
    )
    group.add_argument(
        "--ray-address",
        default=None,
        help="with --engine ray: 'auto' (the cluster of `ray start`), ray://HOST:PORT, or "
        "HOST:PORT; default: RAY_ADDRESS if set, else a local cluster started for this run",
    )
    group.add_argument(
        "--gpus-per-worker",
        type=float,
        default=None,
        help="with --engine ray: GPUs per embedding actor (default 1 when the cluster has "
        "GPUs, else 0)",
    )
    group.add_argument(
        "--shard-size",
        type=int,
        default=None,
        help="with --engine ray: rows per Parquet shard, the most a killed run loses (256)",
    )


def ray_options_from_args(args: argparse.Namespace):
    """``RayOptions`` from ``add_engine_options``' arguments (Ray itself is not imported)."""
    import os

    from detector.distributed import DEFAULT_SHARD_SIZE, RayOptions  # as in backbone_spec_from_args

    address = args.ray_address or os.environ.get("RAY_ADDRESS") or None
    return RayOptions(
        address=address,
        workers=args.workers,  # with --engine ray, --workers is the number of actors
        gpus_per_worker=args.gpus_per_worker,
        shard_size=args.shard_size or DEFAULT_SHARD_SIZE,
    )


def backbone_spec_from_args(args: argparse.Namespace, interpolation: str = "bilinear"):
    """How Ray actors rebuild the backbone named by ``add_backbone_options``' arguments."""
    if getattr(args, "draft_decode", False):
        # The Ray engine's decode tasks always decode in full; an @draft id would then name
        # embeddings that were not made with reduced-scale decoding.
        raise CueLensError("--draft-decode is not available with --engine ray")
    pretrained = args.pretrained
    if pretrained is None and args.model == DEFAULT_MODEL:
        pretrained = DEFAULT_PRETRAINED
    return BackboneSpec(
        model=args.model,
        pretrained=pretrained,
        precision=args.precision,
        interpolation=interpolation,
        device=args.device,
    )


@contextlib.contextmanager
def workspace_and_head(args: argparse.Namespace):
    """``(workspace, head)`` of ``--workspace`` (opened, not created) and ``--head`` (a file,
    workspace head or released head) for the commands that evaluate one head."""
    # pandas, torch and the head models: loaded on use, not when the parser is built
    from detector.catalog import resolve_head
    from detector.store import Workspace

    with Workspace(args.workspace, create=False) as ws:
        yield ws, resolve_head(args.head, workspace=ws)


def evaluated_split(args: argparse.Namespace) -> str | None:
    """``--split``: a split name, or None for ``all`` (every image)."""
    return None if args.split == "all" else args.split
