"""``python -m detector heads [--workspace WS]``: released heads and the workspace's heads."""

from __future__ import annotations

import argparse

from detector.commands.common import add_json_option


def register(sub) -> None:
    p = sub.add_parser(
        "heads",
        help="list the paper's released heads and the heads saved in a workspace",
        description="Released heads are downloaded (and verified by SHA-256) on first use; "
        "'available' says whether a copy is already here (cache or CUE_LENS_RELEASED_DIR).",
    )
    p.add_argument(
        "--workspace", "-w", default=None, help="also list the heads saved in this workspace"
    )
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from detector.cli import print_json
    from detector.heads import list_heads
    from detector.metrics import table_records
    from detector.released import heads_cache_dir
    from detector.store import Workspace

    ws = Workspace(args.workspace, create=False) if args.workspace else None
    try:
        table = list_heads(ws)
    finally:
        if ws is not None:
            ws.close()
    if args.json:
        print_json({"cache": str(heads_cache_dir()), "heads": table_records(table)})
        return 0
    print(f"released heads (cache: {heads_cache_dir()}):")
    for row in table[table["kind"] == "released"].itertuples(index=False):
        here = "available" if row.available else "download on first use"
        default = "  [default]" if getattr(row, "default", False) is True else ""
        print(f"  {row.name:<28} {row.head_type:<10} {row.training_data}  ({here}){default}")
    if ws is not None:
        local = table[table["kind"] == "workspace"]
        print(f"workspace heads ({args.workspace}):" if len(local) else "workspace heads: none")
        for row in local.itertuples(index=False):
            demo = "  DEMO (tiny-clip: not meaningful)" if row.demo else ""
            if row.error:
                print(f"  {row.name:<28} unreadable: {row.error}")
                continue
            print(
                f"  {row.name:<28} {row.head_type:<10} {row.backbone_id}  threshold "
                f"{row.threshold:.3f}  {row.created}{demo}"
            )
    return 0
