"""``python -m detector predict IMAGE... [--head FILE_OR_NAME]``: verdicts for image files,
through ``detector.analysis`` (the flow the dashboard's Detect page uses)."""

from __future__ import annotations

import argparse

from detector.cli import print_json
from detector.commands.common import add_json_option


def register(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="score image files: probability of synthetic and a verdict",
        description="Verdicts: 'likely real' below the band, 'likely synthetic' above it, "
        "'inconclusive' inside it; the band is the head's validation threshold +- --band in "
        "logit units. Without --head: the released linear_probe_synthclic on "
        "ViT-L-14-336-quickgelu/openai "
        "(with another --model: the newest head of --workspace trained on that backbone).",
    )
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument(
        "--head",
        default=None,
        help="head file, workspace head name, or released head name",
    )
    p.add_argument(
        "--workspace",
        "-w",
        default=None,
        help="workspace: reuses and stores embeddings, holds named heads",
    )
    group = p.add_argument_group("backbone (default: the one the head was trained on)")
    group.add_argument("--model", default=None, help="open_clip model, local-dir:FOLDER, tiny-clip")
    group.add_argument("--pretrained", default=None, help="pretrained tag or checkpoint file")
    group.add_argument("--device", default="auto", help="auto, cpu, cuda[:N], mps")
    group.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument(
        "--threshold", type=float, default=None, help="probability threshold (default: head card's)"
    )
    p.add_argument("--band", type=float, default=1.0, help="inconclusive margin in logits (1.0)")
    add_json_option(p)
    p.set_defaults(func=run)


def _choose_head(args, ws):
    from detector.backbone import backbone_id_for
    from detector.catalog import find_workspace_head, resolve_head
    from detector.errors import CueLensError

    if args.head:
        return resolve_head(args.head, workspace=ws)
    if args.model and args.model != "ViT-L-14-336":
        if ws is None:
            raise CueLensError(
                f"--model {args.model} needs a head trained on it: pass --head FILE, or "
                f"--workspace WS holding one (the released heads need "
                f"ViT-L-14-336-quickgelu/openai)"
            )
        backbone_id = backbone_id_for(args.model, args.pretrained)
        head = find_workspace_head(ws, backbone_id)
        if head is None:
            raise CueLensError(
                f"no head for {backbone_id} (--model {args.model}) in {ws.path}; train one "
                f"with `python -m detector train --workspace {ws.path}` or pass --head"
            )
        return head
    return resolve_head(None, workspace=ws)


def _load_backbone(args, head):
    from detector.backbone import DEFAULT_MODEL, DEFAULT_PRETRAINED, load_backbone
    from detector.inference import backbone_spec, head_backbone_id

    if args.model:
        pretrained = args.pretrained
        if pretrained is None and args.model == DEFAULT_MODEL:
            pretrained = DEFAULT_PRETRAINED
        spec = {"model": args.model, "pretrained": pretrained}
    else:
        spec = backbone_spec(head_backbone_id(head) or f"{DEFAULT_MODEL}/{DEFAULT_PRETRAINED}")
    if getattr(args, "draft_decode", False):
        spec["draft"] = True
    return load_backbone(**spec, device=args.device, precision=args.precision)


def run(args: argparse.Namespace) -> int:
    # imported on use (pandas, scipy, torch): the CLI imports every command module to build
    # its parser, and `--help` needs none of them
    from detector.analysis import predict_images
    from detector.heads import head_card
    from detector.inference import head_threshold, verdict_edges
    from detector.metrics import table_records
    from detector.provenance import provenance_record
    from detector.store import Workspace

    ws = Workspace(args.workspace) if args.workspace else None
    try:
        head = _choose_head(args, ws)
        backbone = _load_backbone(args, head)
        table = predict_images(
            args.images, backbone, head, ws, threshold=args.threshold, band=args.band
        )
    finally:
        if ws is not None:
            ws.close()
    card = head_card(head)
    threshold = head_threshold(head) if args.threshold is None else args.threshold
    low, high = verdict_edges(threshold, args.band)
    demo = bool(card.get("demo")) or backbone.is_demo
    # what each file declares about its origin, beside the verdict (read offline)
    provenance = [
        provenance_record(p, v) for p, v in zip(table["path"], table["verdict"], strict=True)
    ]
    if args.json:
        images = table_records(table)
        for record, block in zip(images, provenance, strict=True):
            record["provenance"] = block
        print_json(
            {
                "head": card.get("name"),
                "head_type": head.head_type,
                "backbone_id": backbone.id,
                "demo": demo,
                "threshold": threshold,
                "band": {"logit_margin": args.band, "low": low, "high": high},
                "images": images,
                "failed": int(table["error"].notna().sum()),
            }
        )
        return 0
    if demo:
        print("DEMO: random weights (tiny-clip), scores are not meaningful")
    print(
        f"{card.get('name')} ({head.head_type}, {backbone.id}); threshold {threshold:.3f}, "
        f"inconclusive between {low:.3f} and {high:.3f}"
    )
    for row, block in zip(table.itertuples(index=False), provenance, strict=True):
        if isinstance(row.error, str):
            print(f"  {row.path}: failed: {row.error}")
        elif isinstance(row.warning, str):
            print(f"  {row.path}: p(synthetic) {row.probability:.3f}  {row.warning}")
        else:
            print(f"  {row.path}: p(synthetic) {row.probability:.3f}  {row.verdict}")
        if block["declares"] != "nothing":
            print(f"    {block['sentence']}")
    return 0
