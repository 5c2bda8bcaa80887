"""``python -m detector stability --workspace WS --head TYPE --seeds N``: retrain a head type
N times on the workspace's split and report how stable its explanations are
(``concepts.stability``); the result is stored in the workspace for the dashboard."""

from __future__ import annotations

import argparse

from detector.cli import print_json
from detector.commands.common import add_json_option, add_workspace_option
from detector.commands.train import parse_params
from detector.errors import CueLensError


def register(sub) -> None:
    p = sub.add_parser(
        "stability",
        help="how stable a head's concept explanations are across seeds (and beta)",
        description="Retrain a head type N times (seeds 0..N-1) on the workspace's stored "
        "split and compare the fits: top-K Jaccard and Spearman of |concept importance|, "
        "per-concept sign agreement, and for the orthogonal head the matched |cosine| of its "
        "directions (Hungarian matching, signs aligned) and the chordal distance of their "
        "subspaces. Concept importance = mean contribution on synthetic minus real validation "
        "images. The result is stored in the workspace (shown on the Concepts page).",
    )
    add_workspace_option(p)
    p.add_argument(
        "--head",
        default="linear",
        choices=["linear", "orthogonal", "concept"],
        help="head type to retrain (linear)",
    )
    p.add_argument("--seeds", type=int, default=5, help="number of fits, seeds 0..N-1 (5)")
    p.add_argument(
        "--betas",
        default=None,
        help="comma-separated KL weights of the concept model, e.g. 1e-4,1e-3,1e-2: N fits "
        "per beta, plus a comparison across betas at the first seed (concept head only)",
    )
    p.add_argument("--top", type=int, default=10, help="K of the top-K overlap (10)")
    p.add_argument("--backbone", default=None, help="backbone id (default: the only one stored)")
    p.add_argument(
        "--vocabulary", default=None, help="vocabulary name or CSV (default: photography)"
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="hyperparameter override for every fit (repeatable), as for train",
    )
    p.add_argument(
        "--no-store", action="store_true", help="do not store the result in the workspace"
    )
    add_json_option(p)
    p.set_defaults(func=run)


def _betas(text: str | None) -> list[float] | None:
    if not text:
        return None
    try:
        return [float(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise CueLensError(f"--betas: not a comma-separated list of numbers: {text!r}") from None


def _params(items: list[str]) -> dict:
    return parse_params(items)


def run(args: argparse.Namespace) -> int:
    from concepts.stability import badge, run_stability
    from detector.store import Workspace

    def progress(message: str, fraction: float) -> None:
        if not args.json:
            print(f"  {message}", flush=True)

    with Workspace(args.workspace, create=False) as ws:
        result = run_stability(
            ws,
            args.head,
            seeds=args.seeds,
            betas=_betas(args.betas),
            top=args.top,
            backbone_id=args.backbone,
            vocabulary=args.vocabulary,
            params=_params(args.param),
            store=not args.no_store,
            progress=progress,
        )
    if args.json:
        print_json(result)
        return 0
    if result["demo"]:
        from concepts.report import DEMO_BANNER

        print(DEMO_BANNER)
    print(
        f"{result['head_type']} head on {result['backbone_id']}, {len(result['seeds'])} seeds, "
        f"importance on {result['importance_split']} ({result['importance_definition']})"
    )
    for group in result["groups"]:
        imp = group["importance"]
        print(f"\n{group['label']}:")
        for name, key in (
            (f"top-{imp['top_k']} Jaccard", "top_k_jaccard"),
            ("Spearman |importance|", "spearman_abs"),
        ):
            s = imp[key]
            print(f"  {name:<24} mean {_f(s['mean'])}  min {_f(s['min'])}  ({s['pairs']} pairs)")
        d = group.get("directions")
        if d:
            for name, key in (
                ("matched |cos|", "matched_abs_cosine"),
                ("subspace distance", "chordal_distance"),
            ):
                s = d[key]
                print(f"  {name:<24} mean {_f(s['mean'])}  min {_f(s['min'])}  max {_f(s['max'])}")
            print(
                f"  (subspace distance 0 = same subspace, at most {d['max_chordal_distance']:.2f})"
            )
        maps = [f["validation_map"] for f in group["fits"]]
        print("  validation mAP per fit: " + ", ".join(_f(m) for m in maps))
        print(f"  top {args.top} concepts by mean importance:")
        for c in imp["concepts"][: args.top]:
            print(
                f"    {c['concept'][:32]:<33}{c['mean_importance']:+.4f}  "
                f"{badge({**c, 'top_k': imp['top_k']})}"
            )
    print(f"\n{result['summary']}")
    if not args.no_store:
        print("stored in the workspace (namespace 'stability'); the Concepts page shows it")
    return 0


def _f(v) -> str:
    return "-" if v is None else f"{v:.3f}"
