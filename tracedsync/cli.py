"""The ``tracedsync`` command line: one small function per subcommand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .analysis.reader import Problem, SchemaError, read_all
from .analysis.summary import render_text, summarise


def _cmd_summary(args: argparse.Namespace) -> int:
    problems: list[Problem] = []
    try:
        summary = summarise(read_all(args.paths, problems))
    except FileNotFoundError as exc:
        print(f"tracedsync: no such file or directory: {exc}", file=sys.stderr)
        return 2
    except SchemaError as exc:
        print(f"tracedsync: {exc}", file=sys.stderr)
        return 2
    for p in problems:
        print(f"tracedsync: skipped {p}", file=sys.stderr)
    if not summary:
        print("no traced primitives in these logs")
        return 0
    print(render_text(summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracedsync",
        description="Instrumented synchronization primitives: read and analyse their logs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("summary", help="per-primitive totals read back from logs")
    p.add_argument("paths", nargs="+", help="log files or directories of them")
    p.set_defaults(func=_cmd_summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args))
