"""``python -m detector eval --workspace WS --head FILE_OR_NAME``: metrics on a split."""

from __future__ import annotations

import argparse
import math

from detector.cli import print_json
from detector.commands.common import add_json_option, evaluated_split, workspace_and_head


def register(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="per-generator AP, mAP, pooled AP, AUROC and accuracies of a head on a split",
        description="Evaluate a head on a workspace split with stratified bootstrap 95% "
        "confidence intervals. AP per generator = its fakes against the reals; mAP = their "
        "mean; pooled AP (all fakes at once) is reported separately and is not mAP.",
    )
    p.add_argument(
        "--workspace", "-w", required=True, help="workspace directory (filled by `embed`)"
    )
    p.add_argument(
        "--head",
        default=None,
        help="head file, workspace head name, or released head name "
        "(default: the released linear_probe_synthclic)",
    )
    p.add_argument(
        "--split", default="test", help="split to evaluate; 'all' for every image (test)"
    )
    p.add_argument(
        "--pairing",
        default="shared",
        choices=["shared", "matched"],
        help="reals per generator: shared = all reals of the split; matched = reals of the same "
        "pair group (pair_id, else source) (shared)",
    )
    p.add_argument("--predictions", default=None, metavar="OUT.csv", help="write per-image scores")
    p.add_argument(
        "--out", default=None, metavar="METRICS.csv", help="write the tidy metrics table"
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples, 0 = no CIs")
    p.add_argument(
        "--seed", type=int, default=0, help="bootstrap seed, and seed of a new split (0)"
    )
    p.add_argument(
        "--oracle",
        action="store_true",
        help="also report accuracies at the threshold fitted on the evaluated labels (named "
        "'oracle': optimistic, for reference only)",
    )
    p.add_argument(
        "--include-unknown",
        action="store_true",
        help="count fakes without a generator name ('unknown') in mAP (default: reported, "
        "left out of mAP)",
    )
    add_json_option(p)
    p.set_defaults(func=run)


def _fmt(value, lo=None, hi=None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{value:.3f}"
    if lo is not None and not (isinstance(lo, float) and math.isnan(lo)):
        text += f" [{lo:.3f}, {hi:.3f}]"
    return text


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from detector.inference import evaluate_head  # torch: not when the parser is built

    with workspace_and_head(args) as (ws, head):
        result = evaluate_head(
            ws,
            head,
            split=evaluated_split(args),
            pairing=args.pairing,
            n_boot=args.bootstrap,
            seed=args.seed,
            oracle=args.oracle,
            include_unknown=args.include_unknown,
        )
    if args.predictions:
        cols = ["path", "hash", "label", "generator", "split", "score", "probability"]
        result.predictions[cols].to_csv(args.predictions, index=False)
    if args.out:
        result.table.to_csv(args.out, index=False)
    if args.json:
        out = result.to_json()
        out["predictions_csv"] = args.predictions
        out["metrics_csv"] = args.out
        print_json(out)
        return 0
    ctx, table = result.context, result.table
    if ctx["demo"]:
        print("DEMO: random weights (tiny-clip), scores are not meaningful")
    if ctx.get("in_sample"):
        counts = ", ".join(f"{n} {k}" for k, n in ctx["in_sample_counts"].items())
        print(
            f"IN-SAMPLE: {counts} of the {ctx['n_images']} evaluated images are ones this head "
            f"was trained or validated on; these numbers overstate how it does on new images "
            f"(evaluate --split test)"
        )
    ci = (
        f"95% CI, {ctx['n_boot']} bootstrap resamples (pair groups kept together)"
        if ctx["n_boot"]
        else "no CIs"
    )
    print(
        f"{ctx['head']} ({ctx['head_type']}, {ctx['backbone_id']}) on split {ctx['split']!r} of "
        f"{ctx['workspace']}: {ctx['n_images']} images, pairing {ctx['pairing']}, {ci}"
    )
    print("AP per generator (its fakes against the reals):")
    for row in table[table["metric"] == "ap"].itertuples(index=False):
        note = f"  ({row.note})" if isinstance(row.note, str) else ""
        print(
            f"  {row.generator:<24} {_fmt(row.value, row.ci_low, row.ci_high):<24} "
            f"{row.n_fake} fake / {row.n_real} real{note}"
        )
    overall = table[table["generator"].isna()]
    for row in overall.itertuples(index=False):
        if pd.isna(row.threshold_name):
            label = {"mAP": "mAP", "pooled_ap": "pooled AP (not mAP)", "auroc": "AUROC"}[row.metric]
        else:
            label = f"{row.metric} @ {row.threshold_name} ({row.threshold:.3f})"
        note = f"  ({row.note})" if isinstance(row.note, str) else ""
        print(f"{label:<40} {_fmt(row.value, row.ci_low, row.ci_high)}{note}")
    if ctx.get("threshold_rule"):
        print(f"validation threshold: {ctx['threshold_rule']}")
    if args.predictions:
        print(f"per-image scores written to {args.predictions}")
    if args.out:
        print(f"metrics table written to {args.out}")
    return 0
