"""``python -m detector embed DATA --workspace WS``: embed a dataset into a workspace."""

from __future__ import annotations

import argparse
import sys

from detector.cli import print_json
from detector.commands.common import (
    add_backbone_options,
    add_embedding_options,
    add_engine_options,
    add_json_option,
    add_workspace_option,
    backbone_from_args,
    backbone_spec_from_args,
    ray_options_from_args,
)


def register(sub) -> None:
    p = sub.add_parser(
        "embed",
        help="compute CLIP embeddings (both taps) of a dataset into a workspace",
        description="Embed every image of a folder (ROOT/[split/]CLASS/**/image) or CSV "
        "manifest. Images already embedded for this backbone are skipped.",
    )
    p.add_argument("data", help="dataset folder, CSV manifest, or one image file")
    add_workspace_option(p)
    add_backbone_options(p)
    add_embedding_options(p)
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="refuse images above this many pixels (default 64,000,000)",
    )
    add_engine_options(p)
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported on use: the CLI imports every command module to build its parser, and these
    # load pandas, torch or the concept code, which `--help` does not need
    from detector.datasets import load_dataset
    from detector.extract import embed_dataset
    from detector.images import DEFAULT_MAX_PIXELS
    from detector.store import Workspace

    dataset = load_dataset(args.data)
    if args.engine == "ray":
        from detector.distributed import require_ray

        require_ray()  # before loading the backbone: say at once how to install Ray
        args.device, device = "cpu", args.device  # the driver only needs id + preprocessing
        backbone = backbone_from_args(args)
        args.device = device
    else:
        backbone = backbone_from_args(args)
    workspace = Workspace(args.workspace)
    bar = None
    if not args.json and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=0, unit="img", desc="embedding")

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.refresh()

    try:
        if args.engine == "ray":
            from detector.distributed import embed_dataset_ray

            summary = embed_dataset_ray(
                dataset,
                workspace,
                backbone,
                backbone_spec_from_args(args),
                ray_options_from_args(args),
                batch_size=args.batch_size,
                max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS,
                progress=progress,
            )
        else:
            summary = embed_dataset(
                dataset,
                workspace,
                backbone,
                batch_size=args.batch_size,
                workers=args.workers,
                max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS,
                progress=progress,
            )
    finally:
        if bar is not None:
            bar.close()
        workspace.close()
    if args.json:
        print_json(summary.as_dict())
        return 0
    if backbone.is_demo:
        print("DEMO backbone tiny-clip: random weights, embeddings are not meaningful")
    print(
        f"{summary.images} images: {summary.embedded} embedded, {summary.cached} cached, "
        f"{summary.failed} failed in {summary.seconds:.1f} s "
        f"({summary.images_per_second:.1f} images/s) with {summary.backbone}"
    )
    if backbone.precision_decision is not None:
        print(f"precision: {backbone.precision_decision.summary()}")
    for err in summary.errors:
        print(f"  failed: {err['path']}: {err['reason']}")
    return 0
