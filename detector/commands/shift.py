"""``python -m detector concepts --released``: the concept shift between the paper's four
released concept models (``concepts.shift``), as text tables or one JSON object.

Not a command of its own: ``detector.commands.concepts`` calls ``print_shift``.
"""

from __future__ import annotations

import argparse

from detector.cli import print_json


def _fmt(v, spec: str = ".2f") -> str:
    return "-" if v is None or v != v else format(v, spec)


def print_shift(args: argparse.Namespace) -> int:
    """Compare the released concept models; text or ``--json``. Returns the exit code."""
    from concepts.shift import SOURCE_NOTE, released_shift  # pandas, scipy: not for `--help`

    shift = released_shift()
    top = max(1, int(args.top))
    if args.json:
        print_json(shift.to_dict(top=top))
        return 0
    print(f"Concept shift between training domains: {SOURCE_NOTE}.")
    print(
        f"{len(shift.table)} concepts; importance = |w| / max |w| within the domain; sign + "
        f"= an image nearer the positive pole is pushed towards synthetic."
    )
    for note in shift.notes:
        print(f"  note: {note}")
    doms = shift.domains
    print("\nSpearman rank correlation of |w| between domains:")
    print(f"  {'':<13}" + "".join(f"{d:>13}" for d in doms))
    for a in doms:
        print(f"  {a:<13}" + "".join(f"{_fmt(shift.correlation.loc[a, b]):>13}" for b in doms))
    print(f"\ntop {top} concepts whose role shifts most (SD of importance over domains):")
    print(f"  {'concept':<30}{'spread':>8}" + "".join(f"{d[:11]:>12}" for d in doms) + "  signs")
    for r in shift.table.head(top).to_dict(orient="records"):
        print(
            f"  {r['concept'][:29]:<30}{_fmt(r['spread']):>8}"
            + "".join(f"{_fmt(r[f'importance_{d}']):>12}" for d in doms)
            + f"  {r['signs']}"
        )
    for d in doms:
        print(f"\ntop {top} concepts of {d} (sign, importance, positive pole <-> negative pole):")
        for r in shift.top(d, top).to_dict(orient="records"):
            sign = "+" if r["weight"] > 0 else "-"
            print(
                f"  {sign} {r['concept'][:29]:<30}{_fmt(r['importance']):>6}  "
                f"{r['positive']} <-> {r['negative']}"
            )
    return 0
