"""``python -m detector concepts --workspace WS``: which photographic concepts separate the
generators from the reals, and which ones a detector relies on (with the fidelity of that
explanation)."""

from __future__ import annotations

import argparse
import math

from detector.cli import print_json
from detector.commands.common import add_json_option, add_workspace_option
from detector.commands.shift import print_shift
from detector.errors import CueLensError
from detector.identity import is_demo_id


def register(sub) -> None:
    p = sub.add_parser(
        "concepts",
        help="global concept importances of a workspace (and of a head, with its fidelity)",
        description="Score every embedded image of a workspace on a vocabulary of antonym "
        "concepts. Prints the single-concept AUC per generator and, with --head, the mean "
        "contribution of each concept per class: exact for a concept model, through a lasso "
        "surrogate (with its held-out R^2, the fidelity) for linear and orthogonal heads. "
        "--phrase scores one custom concept instead. --released compares the paper's four "
        "released concept models instead (no workspace or backbone needed).",
    )
    add_workspace_option(p, required=False)
    p.add_argument(
        "--released",
        action="store_true",
        help="compare the classifier weights of the paper's four released concept models "
        "(cm_antonyms_cnnspot, _synthbuster, _synthclic, _combined): per-domain importance, "
        "the most shifted concepts, Spearman correlations; no workspace needed",
    )
    p.add_argument(
        "--vocabulary",
        default=None,
        help="registered vocabulary name or CSV file (default: photography)",
    )
    p.add_argument(
        "--head",
        default=None,
        help="head file, workspace head name or released head name (default: no head)",
    )
    p.add_argument("--top", type=int, default=20, help="rows per table (20)")
    p.add_argument(
        "--backbone",
        default=None,
        help="backbone id of the embeddings (default: the head's, or the only one present)",
    )
    p.add_argument("--split", default=None, help="use only this split (default: all images)")
    p.add_argument(
        "--phrase", default=None, help="score one custom concept: this phrase (positive pole)"
    )
    p.add_argument(
        "--against",
        default=None,
        help="negative pole of --phrase (default: the neutral 'a photograph')",
    )
    p.add_argument(
        "--refit",
        action="store_true",
        help="refit the kept surrogate of a linear or orthogonal head on its reference set "
        "(the labelled images as they are now; its version goes up by one)",
    )
    group = p.add_argument_group("text encoder (only when directions are not cached yet)")
    group.add_argument(
        "--model",
        default=None,
        help="model of the workspace's backbone (default: derived from the backbone id)",
    )
    group.add_argument("--pretrained", default=None, help="its pretrained tag or weights file")
    group.add_argument("--device", default="auto", help="auto, cpu, cuda[:N], mps")
    group.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    add_json_option(p)
    p.set_defaults(func=run)


def card_vocabulary(head) -> str | None:
    """The vocabulary a concept head was trained with, when it can still be found."""
    from pathlib import Path

    from concepts.vocabulary import list_vocabularies  # pandas: not at import (see run)

    info = (getattr(head, "card_", None) or {}).get("vocabulary")
    if not isinstance(info, dict):
        return None
    if info.get("name") in list_vocabularies():
        return info["name"]
    path = info.get("path")
    return path if path and Path(path).is_file() else None


def _encoder(args):
    if args.model is None:
        return None
    from detector.backbone import load_backbone

    return load_backbone(args.model, args.pretrained, device=args.device, precision=args.precision)


def run(args: argparse.Namespace) -> int:
    # imported on use: the CLI imports every command module to build its parser, and these
    # load pandas, torch or the concept code, which `--help` does not need
    from concepts.report import DEMO_BANNER, concept_report, projected_backbone
    from concepts.vocabulary import DEFAULT_VOCABULARY
    from detector.store import Workspace

    if args.released:
        return print_shift(args)
    if not args.workspace:
        raise CueLensError("concepts needs --workspace WS (or --released for the paper's models)")
    with Workspace(args.workspace, create=False) as ws:
        head = None
        if args.head:
            from detector.catalog import resolve_head

            head = resolve_head(args.head, workspace=ws)
        vocabulary = args.vocabulary or card_vocabulary(head) or DEFAULT_VOCABULARY
        if args.phrase:
            backbone_id = projected_backbone(ws, args.backbone, head)
            result = _custom(ws, backbone_id, args)
            if args.json:
                print_json(result)
            else:
                _print_custom(result, DEMO_BANNER)
            return 0
        report = concept_report(
            ws,
            backbone_id=args.backbone,
            vocabulary=vocabulary,
            head=head,
            encoder=_encoder(args),
            split=args.split,
            refit=args.refit,
            device=args.device,
            precision=args.precision,
        )
    if args.json:
        print_json(report.to_dict(top=args.top))
        return 0
    _print_report(report, args.top)
    return 0


def _custom(ws, backbone_id: str, args) -> dict:
    from concepts.directions import (
        cached_directions,
        custom_vocabulary,
        load_text_encoder,
        phrase_direction,
    )
    from concepts.importance import custom_concept_report

    encoder = _encoder(args)
    vocab = custom_vocabulary(args.phrase, args.against)
    if encoder is None and cached_directions(ws, backbone_id, vocab) is None:
        encoder = load_text_encoder(backbone_id, device=args.device, precision=args.precision)
    direction = phrase_direction(
        args.phrase, args.against, encoder, backbone_id=backbone_id, workspace=ws
    )
    meta, projected = ws.dataset(backbone_id, "projected", split=args.split)
    result = custom_concept_report(direction, meta, projected=projected)
    return {
        "backbone_id": backbone_id,
        "demo": is_demo_id(backbone_id),
        "phrase": args.phrase,
        "against": args.against or vocab.negative[0],
        "n_images": len(meta),
        "auc": _num(result["auc"]),
        "auc_by_generator": {k: _num(v) for k, v in result["auc_by_generator"].items()},
        "distribution": [
            {k: _num(v) for k, v in r.items()}
            for r in result["distribution"].to_dict(orient="records")
        ],
    }


def _num(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _fmt(v, spec: str = "+.3f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec)


def _print_custom(result: dict, banner: str) -> None:
    if result["demo"]:
        print(banner)
    print(
        f"custom concept '{result['phrase']}' vs '{result['against']}' on "
        f"{result['n_images']} images of {result['backbone_id']}"
    )
    print(f"  AUC synthetic vs real: {_fmt(result['auc'], '.3f')}")
    for gen, auc in result["auc_by_generator"].items():
        print(f"  AUC {gen} vs real: {_fmt(auc, '.3f')}")
    print(f"  {'group':<24}{'n':>7}{'mean':>9}{'median':>9}{'q05':>9}{'q95':>9}")
    for r in result["distribution"]:
        print(
            f"  {r['group'][:23]:<24}{r['n']:>7}{_fmt(r['mean']):>9}{_fmt(r['median']):>9}"
            f"{_fmt(r['q05']):>9}{_fmt(r['q95']):>9}"
        )


def _print_report(report, top: int) -> None:
    from concepts.report import DEMO_BANNER

    if report.demo:
        print(DEMO_BANNER)
    groups = ", ".join(f"{k} {v}" for k, v in report.groups.items())
    print(
        f"vocabulary {report.vocabulary.name} ({len(report.vocabulary)} concepts), backbone "
        f"{report.backbone_id}, {report.n_images} labelled images ({groups})"
    )
    if report.head is not None:
        name = report.head.get("name") or report.head.get("head_type")
        print(
            f"head {name} ({report.head['head_type']}): {report.method}, fidelity "
            f"{_fmt(report.fidelity, '.3f')}"
        )
        for note in report.notes:
            print(f"  note: {note}")
        usage = "usage_real" in report.importance
        print(f"\ntop {top} concepts by mean contribution to the logit (synthetic minus real):")
        header = f"  {'concept':<34}{'category':<26}{'synth-real':>11}{'real':>9}{'synth':>9}"
        print(header + (f"{'use(r)':>8}{'use(s)':>8}" if usage else ""))
        for r in report.importance.head(top).to_dict(orient="records"):
            line = (
                f"  {r['concept'][:33]:<34}{str(r['category'] or '')[:25]:<26}"
                f"{_fmt(r['difference']):>11}{_fmt(r['mean_real']):>9}"
                f"{_fmt(r['mean_synthetic']):>9}"
            )
            if usage:
                line += f"{_fmt(r['usage_real'], '.2f'):>8}{_fmt(r['usage_synthetic'], '.2f'):>8}"
            print(line)
    auc = report.top_auc(top)
    gens = [c for c in report.auc.columns if c != "all"]
    print(f"\ntop {top} concepts by single-concept AUC (fakes vs all reals; 0.5 = no signal):")
    print(f"  {'concept':<34}{'all':>7}" + "".join(f"{g[:10]:>11}" for g in gens))
    for r in auc.to_dict(orient="records"):
        print(
            f"  {r['concept'][:33]:<34}{_fmt(r['all'], '.3f'):>7}"
            + "".join(f"{_fmt(r[g], '.3f'):>11}" for g in gens)
        )
