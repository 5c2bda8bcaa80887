"""``python -m detector audit DATA_OR_WORKSPACE``: properties that alone separate the classes."""

from __future__ import annotations

import argparse
from pathlib import Path

from detector.cli import print_json
from detector.commands.common import add_json_option
from detector.errors import CueLensError


def register(sub) -> None:
    p = sub.add_parser(
        "audit",
        help="bias audit: format, JPEG quality, size, EXIF, colour mode per class and generator",
        description="Read every labelled image's header (format, JPEG quality, width, height, "
        "aspect ratio, file size, EXIF, colour mode), summarise per class and generator, and "
        "warn about every property that alone separates real from synthetic images (AUC >= "
        "the threshold, or a format used by one class only): a detector can score well by "
        "learning it. The audit of a workspace is also kept there, where the dashboard's "
        "Data page shows it.",
    )
    p.add_argument("source", help="dataset folder, CSV manifest, or workspace directory")
    p.add_argument(
        "--threshold",
        type=float,
        default=0.8,
        help="flag a property whose AUC alone reaches this (0.5..1, default 0.8)",
    )
    p.add_argument(
        "--min-per-class",
        type=int,
        default=3,
        help="test a scope only with at least this many real and synthetic images (3)",
    )
    p.add_argument("--workers", type=int, default=4, help="threads reading headers (4)")
    p.add_argument("--out", default=None, help="write the per-image property table to this CSV")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit with code 1 when a property is flagged (for CI checks of a dataset)",
    )
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported on use: the CLI imports every command module to build its parser, and these
    # load pandas, scipy or torch, which `--help` does not need
    from detector.audit import audit, is_workspace_dir
    from detector.results import save_audit
    from detector.store import Workspace

    if not 0.5 <= args.threshold <= 1.0:
        raise CueLensError(f"--threshold must be between 0.5 and 1, got {args.threshold}")
    options = {
        "threshold": args.threshold,
        "min_per_class": max(1, args.min_per_class),
        "workers": args.workers,
    }
    kept = False
    if is_workspace_dir(args.source):
        # a workspace's audit is kept there, where the dashboard's Data page shows it
        with Workspace(Path(args.source).expanduser(), create=False) as ws:
            report = audit(ws, **options)
            save_audit(ws, report)
            kept = True
    else:
        report = audit(args.source, **options)
    if args.out:
        report.images.to_csv(args.out, index=False)
    code = 1 if args.strict and report.flagged else 0
    if args.json:
        print_json({**report.as_dict(), "kept_in_workspace": kept})
        return code
    counts = report.images["class"].value_counts()
    print(
        f"audit of {report.source}: {len(report.images)} images "
        f"({counts.get('real', 0)} real, {counts.get('synthetic', 0)} synthetic), "
        f"{len(report.errors)} unreadable"
    )
    columns = [
        "class", "generator", "n", "formats", "jpeg_quality_median", "width_median",
        "height_median", "aspect_ratio_median", "file_size_median", "exif_share", "modes",
    ]  # fmt: skip
    if not report.summary.empty:
        print(report.summary[columns].round(2).to_string(index=False))
    if report.warnings:
        print(f"\n{len(report.warnings)} warning(s):")
        for w in report.warnings:
            print(f"- {w['message']}")
    else:
        print(
            f"\nno single property separates real from synthetic images "
            f"(AUC < {report.threshold:g} in every scope with >= {report.min_per_class} "
            f"images per class)"
        )
    for err in report.errors:
        print(f"  unreadable: {err['path']}: {err['reason']}")
    if args.out:
        print(f"per-image table written to {args.out}")
    if kept:
        print(f"kept in {report.source} (the dashboard's Data page shows it)")
    return code
