"""``python -m detector matrix --workspace WS --train GROUPS --test GROUPS``: transfer."""

from __future__ import annotations

import argparse

from detector.cli import print_json
from detector.commands.common import add_json_option
from detector.commands.train import add_param_option, parse_params
from detector.identity import is_demo_id

GROUPS_HELP = (
    "comma-separated: GEN (one generator; 'unknown' = unnamed), NAME=GEN1+GEN2 (a named group, "
    "e.g. a family), all (every generator), source:SRC (every image of one source/dataset), "
    "each (test side: one column per generator), loo (train side, alone: leave one generator out)"
)


def register(sub) -> None:
    p = sub.add_parser(
        "matrix",
        help="cross-generator transfer: train on groups, mAP with CI on groups",
        description="Train one head per --train group (train split; early stopping on the val "
        "split) and report mAP with a 95% bootstrap CI on each --test group (test split). "
        "GROUPS: " + GROUPS_HELP + ". The matrix is also kept in the workspace, where the "
        "dashboard's Generators page shows it (the last one per backbone, head type and "
        "pairing).",
    )
    p.add_argument(
        "--workspace", "-w", required=True, help="workspace directory (filled by `embed`)"
    )
    p.add_argument("--train", required=True, metavar="GROUPS", help="training groups, or loo")
    p.add_argument("--test", default="each", metavar="GROUPS", help="test groups (each)")
    p.add_argument("--head", default="linear", choices=["linear", "orthogonal"], help="(linear)")
    p.add_argument("--backbone", default=None, help="backbone id (when the workspace has several)")
    p.add_argument("--pairing", default="shared", choices=["shared", "matched"], help="(shared)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples, 0 = no CIs")
    p.add_argument("--seed", type=int, default=0, help="seed of training, bootstrap, new split")
    p.add_argument("--train-split", default="train", help="(train)")
    p.add_argument("--val-split", default="val", help="(val)")
    p.add_argument("--test-split", default="test", help="(test)")
    p.add_argument(
        "--out", default=None, metavar="CSV", help="write the tidy table (one row per cell)"
    )
    add_param_option(p)
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported on use (pandas, scipy, torch): the CLI imports every command module to build
    # its parser, and `--help` needs none of them
    from detector.metrics import table_records
    from detector.results import result_key, save_transfer
    from detector.store import Workspace
    from detector.train import matrix_table, resolve_backbone_id, workspace_transfer_matrix

    params = parse_params(args.param)
    with Workspace(args.workspace, create=False) as ws:
        backbone_id = resolve_backbone_id(ws, "pooled", args.backbone)
        result = workspace_transfer_matrix(
            ws,
            args.train,
            args.test,
            head_type=args.head,
            backbone_id=backbone_id,
            seed=args.seed,
            pairing=args.pairing,
            n_boot=args.bootstrap,
            params=params,
            train_split=args.train_split,
            val_split=args.val_split,
            test_split=args.test_split,
        )
        # kept where the dashboard's Generators page reads it (``detector.results``)
        save_transfer(
            ws,
            result,
            backbone_id=backbone_id,
            head_type=args.head,
            pairing=args.pairing,
            train=args.train,
            test=args.test,
            options={
                "seed": args.seed,
                "n_boot": args.bootstrap,
                "params": params,
                "train_split": args.train_split,
                "val_split": args.val_split,
                "test_split": args.test_split,
            },
        )
    if args.out:
        result.to_csv(args.out, index=False)
    demo = is_demo_id(backbone_id)
    if args.json:
        print_json(
            {
                "workspace": args.workspace,
                "backbone_id": backbone_id,
                "demo": demo,
                "head_type": args.head,
                "pairing": args.pairing,
                "n_boot": args.bootstrap,
                "csv": args.out,
                "kept_as": result_key(
                    "transfer", backbone=backbone_id, head_type=args.head, pairing=args.pairing
                ),
                "cells": table_records(result),
            }
        )
        return 0
    if demo:
        print("DEMO: random weights (tiny-clip), scores are not meaningful")
    print(
        f"mAP [95% CI] of {args.head} heads ({backbone_id}); rows: trained on, columns: tested on"
    )
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 50):
        print(matrix_table(result).to_string())
    notes = result[result["note"].notna() & result["mAP"].isna()]
    for row in notes.itertuples(index=False):
        print(f"  {row.train_group} -> {row.test_group}: {row.note}")
    if args.out:
        print(f"table written to {args.out}")
    return 0
