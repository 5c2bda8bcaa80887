"""``python -m detector explain IMAGE --head HEAD``: why a head calls an image real or
synthetic, concept by concept, with the part the concepts do not explain. The images go
through ``detector.analysis.analyse_bytes`` (the flow of ``predict`` and the Detect page), so
the probability shown is the one ``predict`` gives."""

from __future__ import annotations

import argparse

from detector.cli import print_json
from detector.commands.common import (
    add_backbone_options,
    add_json_option,
    backbone_from_args,
)
from detector.commands.concepts import card_vocabulary


def register(sub) -> None:
    p = sub.add_parser(
        "explain",
        help="per-image concept attribution of a head's verdict",
        description="Embed images and split the head's logit into concept contributions. A "
        "concept model is explained exactly (bias + contributions = logit). Linear and "
        "orthogonal heads are explained by a lasso surrogate fitted once on a fixed "
        "reference set of the workspace (its labelled images; needs --workspace); its "
        "held-out R^2 (fidelity) and the residual that concepts do not explain are always "
        "printed.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image file(s)")
    p.add_argument(
        "--head",
        default=None,
        help="head file, workspace head name or released head name "
        "(default: the released linear_probe_synthclic)",
    )
    p.add_argument(
        "--workspace",
        "-w",
        default=None,
        help="workspace with embeddings of the same backbone (needed for non-concept heads)",
    )
    p.add_argument(
        "--vocabulary",
        default=None,
        help="vocabulary for non-concept heads: registered name or CSV (default: photography)",
    )
    p.add_argument("--top", type=int, default=10, help="concepts shown per image (10)")
    add_backbone_options(p)
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported on use (pandas, scipy, torch): the CLI imports every command module to build
    # its parser, and `--help` needs none of them
    from concepts.attribution import surrogate_caption
    from concepts.report import DEMO_BANNER, EXACT_NOTE, explain_embeddings
    from concepts.vocabulary import DEFAULT_VOCABULARY
    from detector.analysis import analyse_bytes, read_files
    from detector.catalog import resolve_head
    from detector.provenance import provenance_record
    from detector.store import Workspace

    ws = Workspace(args.workspace, create=False) if args.workspace else None
    try:
        head = resolve_head(args.head, workspace=ws)
        backbone = backbone_from_args(args)
        head.check_compatible(backbone.id)
        vocabulary = args.vocabulary or card_vocabulary(head) or DEFAULT_VOCABULARY

        def attribute(projected, pooled, names):
            return explain_embeddings(
                head,
                projected=projected,
                pooled=pooled,
                workspace=ws,
                backbone_id=backbone.id,
                vocabulary=vocabulary,
                encoder=backbone,
                names=names,
            )

        items, read_errors = read_files(args.images)
        # the workspace serves the explanation only: explained images are not stored in it
        found = analyse_bytes(
            items, backbone, head, None, attribute=attribute, keep_attribution_errors=False
        )
    finally:
        if ws is not None:
            ws.close()
    failed = [
        {"path": r.name, "error": read_errors.get(i) or r.error}
        for i, r in enumerate(found)
        if i in read_errors or r.error is not None
    ]
    done = [r for i, r in enumerate(found) if i not in read_errors and r.error is None]
    results = [r.attribution for r in done]
    card = getattr(head, "card_", None) or {}
    head_info = {
        "name": card.get("name"),
        "head_type": head.head_type,
        "backbone_id": backbone.id,
    }
    provenance = [provenance_record(r.name, r.verdict) for r in done]
    if args.json:
        out = {
            "head": head_info,
            "demo": backbone.is_demo,
            "images": [
                {**r.to_dict(top=args.top), "provenance": block}
                for r, block in zip(results, provenance, strict=True)
            ],
            "failed": failed,
        }
        if backbone.is_demo:
            out["banner"] = DEMO_BANNER
        print_json(out)
        return 0
    if backbone.is_demo:
        print(DEMO_BANNER)
    label = head_info["name"] or head.head_type
    for r, block in zip(results, provenance, strict=True):
        print(f"{r.name}: P(synthetic) = {r.probability:.3f} (logit {r.logit:+.3f}), head {label}")
        if block["declares"] != "nothing":
            print(f"  {block['sentence']}")
        if r.method == "exact":
            print(f"  {EXACT_NOTE}")
        else:
            print(
                f"  explained by a lasso surrogate on concept scores, fidelity (held-out R^2) "
                f"{r.fidelity:.3f}: concept bars cover that share of the head's behaviour"
            )
            source = surrogate_caption(getattr(r, "source", None) or {})
            if source:
                print(f"  {source}")
        print(
            f"  {'baseline (bias)' if r.method == 'exact' else 'baseline (average image)':<40}"
            f"{r.baseline:+9.3f}"
        )
        rows = r.table.head(args.top)
        for c in rows.to_dict(orient="records"):
            if r.method == "exact":
                extra = f"  gate {c['gate']:.2f}"
            else:
                extra = f"  (average {c['reference']:+.3f})"
            print(
                f"  {c['concept'][:39]:<40}{c['contribution']:+9.3f}"
                f"   score {c['score']:+.3f}  weight {c['weight']:+.2f}{extra}"
            )
        rest = r.table["contribution"].iloc[args.top :].sum()
        if len(r.table) > args.top:
            print(f"  {f'{len(r.table) - args.top} other concepts':<40}{rest:+9.3f}")
        print(f"  {'not explained by concepts':<40}{r.residual:+9.3f}")
    for f in failed:
        print(f"{f['path']}: failed: {f['error']}")
    return 0
