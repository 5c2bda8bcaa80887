"""``python -m detector heads [--workspace WS]``: released heads and the workspace's heads
(trained and imported), as listed by ``detector.catalog``."""

from __future__ import annotations

import argparse

from detector.commands.common import add_json_option


def register(sub) -> None:
    p = sub.add_parser(
        "heads",
        help="list the paper's released heads and the heads saved in a workspace",
        description="Released heads are downloaded (and verified by SHA-256) on first use; "
        "'available' says whether a copy is already here (cache or CUE_LENS_RELEASED_DIR). "
        "With --workspace: its trained heads (WS/heads) and imported head files "
        "(WS/heads/imported).",
    )
    p.add_argument(
        "--workspace", "-w", default=None, help="also list the heads saved in this workspace"
    )
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: the CLI imports every command module to build its
    # parser, and these pull in torch and pyarrow, which `--help` does not need
    from detector.catalog import list_heads
    from detector.cli import print_json
    from detector.released import heads_cache_dir
    from detector.store import Workspace

    ws = Workspace(args.workspace, create=False) if args.workspace else None
    try:
        entries = list_heads(ws)
    finally:
        if ws is not None:
            ws.close()
    if args.json:
        print_json({"cache": str(heads_cache_dir()), "heads": [e.as_dict() for e in entries]})
        return 0
    print(f"released heads (cache: {heads_cache_dir()}):")
    for e in (e for e in entries if e.kind == "released"):
        here = "available" if e.available else "download on first use"
        default = "  [default]" if e.default else ""
        print(f"  {e.name:<28} {e.head_type:<10} {e.training_data}  ({here}){default}")
    if ws is None:
        return 0
    for kind, folder in (("workspace", "heads"), ("imported", "heads/imported")):
        local = [e for e in entries if e.kind == kind]
        print(f"{kind} heads ({args.workspace}/{folder}):" if local else f"{kind} heads: none")
        for e in local:
            demo = "  DEMO (random weights: not meaningful)" if e.demo else ""
            if e.error:
                print(f"  {e.name:<28} unreadable: {e.error}")
                continue
            threshold = f"{e.threshold:.3f}" if e.threshold is not None else "0.5 (no card)"
            print(
                f"  {e.name:<28} {e.head_type or '?':<10} {e.backbone_id}  threshold "
                f"{threshold}  {e.created or ''}{demo}"
            )
    return 0
