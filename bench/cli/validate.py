"""``bench validate SUITE``: check a suite and report the first problem."""

from __future__ import annotations

import argparse
import sys

from bench.cli import options


def add_parser(sub) -> None:
    p = options.command(sub, "validate", main, help="check a suite and report the first problem")
    options.add_suite(p)
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show what libraries logged while the suite was checked (kept off the "
        "console; `bench run` writes it to the run's logs/bench.log)",
    )
    options.add_json(p)


def main(args: argparse.Namespace) -> int:
    try:
        suite = options.load(args)
    finally:
        if args.verbose:  # what was kept off the console
            from bench.models.quiet import kept

            for line in kept:
                print(line, file=sys.stderr)
    if args.json:
        options.print_json(
            {
                "suite": str(args.suite),
                "ok": True,
                "cases": len(suite.cases),
                "repeats": suite.run.repeats,
            }
        )
    else:
        print(f"{args.suite}: ok, {len(suite.cases)} cases x {suite.run.repeats} repeats")
    return 0
