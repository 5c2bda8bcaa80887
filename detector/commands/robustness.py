"""``python -m detector robustness --workspace WS --head H``: AP under perturbations."""

from __future__ import annotations

import argparse
import math
import sys

from detector.cli import print_json
from detector.commands.common import add_embedding_options, add_engine_options, add_json_option
from detector.identity import BackboneSpec


def register(sub) -> None:
    p = sub.add_parser(
        "robustness",
        help="per-generator AP, mAP and flipped verdicts under JPEG, resize, blur, crop",
        description="Perturb the workspace's labelled images (JPEG re-compression, resize, "
        "Gaussian blur, centre crop, chains of them), embed them once (cached in the "
        "workspace under the perturbation's name) and report per-generator AP, mAP and the "
        "share of verdicts that flip, against the unperturbed images. The sweep is also kept "
        "in the workspace (detector.results), where the dashboard's Generators page shows it.",
    )
    p.add_argument(
        "--workspace", "-w", required=True, help="workspace directory (embedded with `embed`)"
    )
    p.add_argument(
        "--head",
        required=True,
        help="head: a name saved in WS/heads, a .safetensors file, or a released head name",
    )
    p.add_argument(
        "--perturbations",
        default="default",
        help="comma-separated list: names (jpeg:75, resize:0.5, blur:1, crop:0.5, noise:5), "
        "chains (jpeg:75+resize:0.5), a family (jpeg: its default strengths) or 'default' "
        "(jpeg 95,75,50,30; resize 0.5,0.75,1.5; blur 0.5,1,2; crop 0.5,0.75)",
    )
    p.add_argument(
        "--split",
        default="auto",
        help="images to evaluate: a split name, 'all', or 'auto' (test when the workspace "
        "has a test split, else all; default)",
    )
    p.add_argument(
        "--pairing",
        choices=["shared", "matched"],
        default="shared",
        help="reals each generator is scored against: all (shared, default) or the same "
        "source / pair group (matched)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="probability above which a verdict is 'synthetic' (default: the head's own "
        "threshold, else 0.5)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of random perturbations (0)")
    add_embedding_options(p)
    group = p.add_argument_group(
        "backbone (only needed to embed perturbed images; default: the head's backbone)"
    )
    group.add_argument("--model", default=None, help="open_clip model name or tiny-clip")
    group.add_argument("--pretrained", default=None, help="pretrained tag or checkpoint file")
    group.add_argument("--device", default="auto", help="auto, cpu, cuda[:N], mps")
    group.add_argument(
        "--precision", default="auto", choices=["auto", "bf16", "fp32"], help="(auto)"
    )
    p.add_argument("--out", default=None, help="write the tidy per-generator table to this CSV")
    add_engine_options(p)
    add_json_option(p)
    p.set_defaults(func=run)


def backbone_spec(backbone_id: str) -> tuple[str, str | None, str]:
    """``(model, pretrained, interpolation)`` to rebuild a backbone from its id.

    ``tiny-clip/random`` and ``MODEL/TAG`` can be rebuilt; ids of local files or folders
    (``file:``, ``dir:``) cannot, and raise ``CueLensError`` asking for --model/--pretrained.
    """
    from detector.errors import CueLensError
    from detector.identity import BackboneRef

    ref = BackboneRef.parse(backbone_id)
    if ref.is_local:
        raise CueLensError(
            f"the head's backbone {backbone_id!r} was loaded from a local file or folder; "
            f"give it with --model MODEL --pretrained FILE (or --model local-dir:FOLDER)"
        )
    args = ref.load_args()
    return args["model"], args["pretrained"], ref.interpolation


def _model_args(args: argparse.Namespace, backbone_id: str) -> tuple[str, str | None, str]:
    """``(model, pretrained, interpolation)``: from --model/--pretrained, else the head's id."""
    from detector.backbone import DEFAULT_MODEL, DEFAULT_PRETRAINED
    from detector.identity import BackboneRef

    if args.model is not None:
        model, pretrained = args.model, args.pretrained
        interpolation = BackboneRef.parse(backbone_id).interpolation
        if pretrained is None and model == DEFAULT_MODEL:
            pretrained = DEFAULT_PRETRAINED
        return model, pretrained, interpolation
    return backbone_spec(backbone_id)


def _loader(args: argparse.Namespace, backbone_id: str, device: str | None = None):
    def load():
        from detector.backbone import load_backbone

        model, pretrained, interpolation = _model_args(args, backbone_id)
        return load_backbone(
            model,
            pretrained,
            device=device or args.device,
            precision=args.precision,
            interpolation=interpolation,
        )

    return load


def _ray_engine(args: argparse.Namespace, backbone_id: str):
    """The sweep's ``engine`` for ``--engine ray``: actors rebuild the head's backbone."""
    from detector.commands.common import ray_options_from_args
    from detector.distributed import ray_engine, require_ray

    require_ray()
    model, pretrained, interpolation = _model_args(args, backbone_id)
    spec = BackboneSpec(
        model,
        pretrained,
        device=args.device,
        precision=args.precision,
        interpolation=interpolation,
    )
    return ray_engine(spec, ray_options_from_args(args))


def _fmt(value: float, digits: int = 3) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (f"{value:.{digits}f}")
    )


def run(args: argparse.Namespace) -> int:
    # imported on use (pandas, scipy, torch): the CLI imports every command module to build
    # its parser, and `--help` needs none of them
    from detector.catalog import resolve_head
    from detector.perturb import robustness_sweep
    from detector.store import Workspace

    workspace = Workspace(args.workspace, create=False)
    try:
        head = resolve_head(args.head, workspace=workspace)
        backbone_id = getattr(head, "backbone_id", None) or head.card_.get("backbone_id")
        bar = None
        if not args.json and sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=0, unit="img")

        def progress(name: str, done: int, total: int) -> None:
            if bar is not None:
                bar.set_description(name)
                bar.total = total
                bar.n = done
                bar.refresh()

        engine = None
        if args.engine == "ray":
            engine = _ray_engine(args, backbone_id or "")
        try:
            report = robustness_sweep(
                workspace,
                head,
                args.perturbations,
                # with Ray the driver's copy only fixes the id and preprocessing: on the CPU
                backbone=_loader(args, backbone_id or "", "cpu" if engine else None),
                engine=engine,
                split=None if args.split == "all" else args.split,
                pairing=args.pairing,
                threshold=args.threshold,
                seed=args.seed,
                batch_size=args.batch_size,
                workers=args.workers,
                progress=progress,
            )
        finally:
            if bar is not None:
                bar.close()
    finally:
        workspace.close()
    if args.out:
        report.table.to_csv(args.out, index=False)
    if args.json:
        print_json(report.as_dict())
        return 0
    if report.is_demo:
        print("DEMO backbone tiny-clip: random weights, scores are not meaningful")
    split = report.split or "all images"
    print(
        f"head {report.head} on {report.backbone}, {split}, {report.pairing} reals, "
        f"threshold {report.threshold:g}; {sum(report.embedded.values())} perturbed images "
        f"embedded in {report.seconds:.1f} s"
    )
    print(f"{'perturbation':<24} {'mAP':>6} {'dmAP':>7} {'flipped':>8} {'images':>7}")
    for row in report.summary.itertuples(index=False):
        print(
            f"{row.perturbation:<24} {_fmt(row.map):>6} {_fmt(row.delta_map):>7} "
            f"{_fmt(row.flip_rate * 100, 1) + '%':>8} {row.n_images:>7}"
        )
    pivot = report.table.pivot_table(
        index="generator", columns="perturbation", values="ap", sort=False
    )
    print("\nAP per generator:")
    print(pivot.round(3).to_string())
    for err in report.errors:
        print(f"  failed ({err['perturbation']}): {err['path']}: {err['reason']}")
    if args.out:
        print(f"table written to {args.out}")
    print(f"kept in {args.workspace} (the dashboard's Generators page shows it)")
    return 0
