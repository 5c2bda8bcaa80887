"""``python -m detector train --workspace WS --head linear|orthogonal|concept --out NAME``."""

from __future__ import annotations

import argparse
import json

from detector.cli import print_json
from detector.commands.common import add_json_option
from detector.errors import CueLensError


def parse_params(items: list[str] | None) -> dict:
    """``["lr=3e-4", "k=16"]`` -> ``{"lr": 0.0003, "k": 16}`` (JSON values where possible)."""
    params = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CueLensError(f"--param {item!r}: expected KEY=VALUE (e.g. --param lr=3e-4)")
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return params


def add_param_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="override a hyperparameter, repeatable: lr, weight_decay, batch_size, max_epochs, "
        "patience, tol, label_smoothing, validation_fraction; orthogonal also k, lambda_ortho",
    )


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a detector head on a workspace's embeddings",
        description="Train a head on the train split with early stopping on the validation split, "
        "choose the decision threshold on validation reals, and save the head with its model "
        "card. Datasets without splits first get a seeded split stored in the workspace.",
    )
    p.add_argument(
        "--workspace", "-w", required=True, help="workspace directory (filled by `embed`)"
    )
    p.add_argument(
        "--head",
        default="linear",
        choices=["linear", "orthogonal", "concept"],
        help="head type (default linear; orthogonal = the de-correlated k=8 head)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="a bare NAME saves WS/heads/NAME.safetensors; a path saves there "
        "(default: the head type's name)",
    )
    p.add_argument("--backbone", default=None, help="backbone id (when the workspace has several)")
    p.add_argument("--train-split", default="train", help="split to train on (train)")
    p.add_argument(
        "--val-split", default="val", help="split for early stopping and threshold (val)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of training and of a new split (0)")
    p.add_argument(
        "--target-fpr",
        type=float,
        default=0.05,
        help="false-positive rate on validation reals that sets the threshold (0.05)",
    )
    p.add_argument(
        "--vocabulary",
        default=None,
        help="concept head only: vocabulary name or CSV (default: the built-in photography one)",
    )
    add_param_option(p)
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # torch and pyarrow behind these: imported when the command runs, not for `--help`
    from detector.store import Workspace
    from detector.train import train_head

    params = parse_params(args.param)
    if args.vocabulary is not None and args.head != "concept":
        raise CueLensError("--vocabulary applies to --head concept only")
    if args.head == "concept":
        # Registers the concept head's directions with detector.train (the text side of the
        # concept head lives in concepts/); loaded only for this head type.
        import concepts.bottleneck  # noqa: F401

        if args.vocabulary is not None:
            params["vocabulary"] = args.vocabulary
    with Workspace(args.workspace, create=False) as ws:
        result = train_head(
            ws,
            args.head,
            backbone_id=args.backbone,
            train_split=args.train_split,
            val_split=args.val_split,
            seed=args.seed,
            params=params,
            target_fpr=args.target_fpr,
            out=args.out,
        )
    card = result.card
    if args.json:
        print_json(result.to_json())
        return 0
    if card.get("demo"):
        print("DEMO: random weights (tiny-clip), scores are not meaningful")
    training = card["training"]
    counts = training["train_counts"]
    print(
        f"trained the {card['head_type']} head on {counts['n_real']} real + {counts['n_fake']} "
        f"synthetic images ({card['backbone_id']}, {card['tap']}, {card['feature_dim']}-d), "
        f"{training['epochs']} epochs (best {training['best_epoch']})"
    )
    print(f"saved {result.path}")
    val = card.get("validation", {})
    metrics = val.get("metrics") or {}
    if metrics:
        shown = ", ".join(
            f"{k} {metrics[k]['value']:.3f}"
            for k in ("mAP", "pooled_ap", "auroc")
            if k in metrics and metrics[k]["value"] is not None
        )
        print(f"validation ({val.get('source')}, {val.get('n')} images): {shown}")
    elif val.get("note"):
        print(f"validation: {val['note']}")
    print(f"threshold {card['threshold']:.4f}: {card['threshold_rule']}")
    return 0
