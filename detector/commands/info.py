"""``python -m detector info --workspace WS``: what a workspace holds."""

from __future__ import annotations

import argparse

from detector.cli import print_json
from detector.commands.common import add_json_option, add_workspace_option


def register(sub) -> None:
    p = sub.add_parser(
        "info",
        help="counts of a workspace by label, generator, split and backbone; precision decisions",
    )
    add_workspace_option(p)
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from detector.backbone import stale_reason
    from detector.precision import cached_decisions
    from detector.store import Workspace

    with Workspace(args.workspace, create=False) as ws:
        info = ws.summary()
    for b in info["backbones"]:
        b["stale"] = stale_reason(b["backbone"])
    info["precision_decisions"] = cached_decisions()
    if args.json:
        print_json(info)
        return 0
    print(f"workspace {info['workspace']}")
    print(f"  {info['images']} unique images at {info['paths']} paths, {info['failed']} failed")
    for title, key in (("label", "by_label"), ("generator", "by_generator"), ("split", "by_split")):
        counts = ", ".join(f"{k} {v}" for k, v in info[key].items()) or "none"
        print(f"  by {title}: {counts}")
    for b in info["backbones"] or [{"backbone": "none", "tap": "-", "embeddings": 0}]:
        print(f"  embeddings: {b['backbone']} {b['tap']}: {b['embeddings']}")
        if b.get("stale"):
            print(f"    STALE: {b['stale']}")
    for d in info["precision_decisions"]:
        speed = f"bf16 {d['speedup']:.2f}x fp32" if d.get("speedup") else "not measured"
        agree = f", cosine {d['cosine']:.5f}" if d.get("cosine") is not None else ""
        print(
            f"  precision on this machine for {d['model']}: {d['precision']} ({speed}{agree}; "
            f"{d['cpu']}, {d['threads']} threads, torch {d['torch']})"
        )
    return 0
