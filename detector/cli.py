"""The command line: ``python -m detector COMMAND ...``.

Each command lives in ``detector/commands/<name>.py`` and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` (called with the parsed arguments; returns the exit
code). Errors derived from ``CueLensError`` are printed as one readable message with exit
code 2; a command that did its job exits 0 even when some images failed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from detector.errors import CueLensError

COMMANDS = (
    "embed",
    "info",
    "train",
    "eval",
    "predict",
    "matrix",
    "heads",
    "concepts",
    "explain",
    "robustness",
    "stability",
    "survival",
    "audit",
    "convert_weights",
)


def _program_name() -> str:
    """``cue-lens`` when run through the installed console command, else ``python -m detector``."""
    invoked = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "cue-lens" if invoked.startswith("cue-lens") else "python -m detector"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available command."""
    parser = argparse.ArgumentParser(
        prog=_program_name(),
        description="Cue Lens: synthetic image detection with frozen CLIP features.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module_name = f"detector.commands.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        module.register(sub)
    return parser


def print_json(obj) -> None:
    """Print one JSON object on stdout (the ``--json`` output of every command)."""
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CueLensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished batches are kept in the workspace", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
