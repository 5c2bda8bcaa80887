"""``python -m detector survival --workspace WS --head H``: per generator, whether the head's
concept explanations survive where its detection does or does not (``concepts.survival``)."""

from __future__ import annotations

import argparse

from detector.cli import print_json
from detector.commands.common import (
    add_json_option,
    add_workspace_option,
    evaluated_split,
    workspace_and_head,
)
from detector.commands.concepts import card_vocabulary


def register(sub) -> None:
    p = sub.add_parser(
        "survival",
        help="per generator: AP next to how well the head's concept explanation survives",
        description="Per generator: the diagnostic importance of each concept on its images "
        "(mean contribution of its fakes minus the reals'), compared with the head's "
        "importance on its source images (its training split) by Spearman of |importance| "
        "(diagnostic agreement) and top-K overlap (selection survival), next to the head's "
        "AP on that generator.",
    )
    add_workspace_option(p)
    p.add_argument(
        "--head", required=True, help="head file, workspace head name or released head name"
    )
    p.add_argument("--split", default="test", help="evaluated split (test; 'all' = every image)")
    p.add_argument(
        "--source-split",
        default=None,
        help="split of the reference importance (default: the head's training split)",
    )
    p.add_argument("--top", type=int, default=10, help="K of the top-K overlap (10)")
    p.add_argument("--pairing", default="shared", choices=["shared", "matched"], help="(shared)")
    p.add_argument("--backbone", default=None, help="backbone id (default: the head's)")
    p.add_argument(
        "--vocabulary", default=None, help="vocabulary name or CSV (default: photography)"
    )
    p.add_argument(
        "--compare",
        default=None,
        metavar="GEN_A,GEN_B",
        help="two generators side by side: which of the source's top concepts survive",
    )
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from concepts.survival import workspace_survival  # pandas, scipy: not for `--help`

    with workspace_and_head(args) as (ws, head):
        result = workspace_survival(
            ws,
            head,
            split=evaluated_split(args),
            source_split=args.source_split,
            top=args.top,
            backbone_id=args.backbone,
            vocabulary=args.vocabulary or card_vocabulary(head),
            pairing=args.pairing,
        )
    pair = [g.strip() for g in args.compare.split(",")] if args.compare else None
    if args.json:
        out = result.to_dict()
        if pair:
            out["compare"] = result.compare(pair).to_dict(orient="records")
        print_json(out)
        return 0
    if result.demo:
        from concepts.report import DEMO_BANNER

        print(DEMO_BANNER)
    fid = "" if result.fidelity is None else f", fidelity {result.fidelity:.3f}"
    print(
        f"head {result.head.get('name') or result.head.get('head_type')} ({result.method}{fid}) "
        f"on {result.split}; source importance from {result.source}; top-{result.top_k}"
    )
    for note in result.notes:
        print(f"  note: {note}")
    print(
        f"\n  {'generator':<24}{'AP':>7}{'agreement':>11}{'survival':>10}{'fakes':>7}{'reals':>7}"
    )
    for r in result.table.to_dict(orient="records"):
        print(
            f"  {str(r['generator'])[:23]:<24}{_f(r['ap']):>7}{_f(r['diagnostic_agreement']):>11}"
            f"{_f(r['selection_survival']):>10}{r['n_fake']:>7}{r['n_real']:>7}"
        )
    print(
        "\n  agreement: Spearman of |importance| with the source; survival: Jaccard of the "
        "top-K concepts"
    )
    if pair:
        cmp = result.compare(pair)
        print(f"\nsource top-{result.top_k} on {pair[0]} and {pair[1]} (yes = still in its top-K):")
        print(f"  {'concept':<30}{'source':>9}" + "".join(f"{g[:14]:>16}" for g in pair))
        for r in cmp.to_dict(orient="records"):
            cells = "".join(
                f"{_f(r[g], '+.3f') + (' yes' if r[f'{g} survives'] else ' --'):>16}" for g in pair
            )
            print(f"  {r['concept'][:29]:<30}{r['source']:>+9.3f}{cells}")
    return 0


def _f(v, spec: str = ".3f") -> str:
    return "-" if v is None or v != v else format(v, spec)
