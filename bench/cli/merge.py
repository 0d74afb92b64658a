"""``bench merge RUN...``: the shards of one suite into one run folder, or the same suite
run on several machines, compared case by case."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli import options


def add_parser(sub) -> None:
    p = options.command(
        sub, "merge", main, help="merge the shards of one suite into one run folder"
    )
    p.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="run folders (one per shard), or NAME=RUN per machine",
    )
    p.add_argument(
        "--across-machines",
        action="store_true",
        help="the same suite on several machines: compare them case by case (cost: [pricing])",
    )
    options.add_allow_mixed(p, "merge runs from different environments")
    options.add_results(p)


def main(args: argparse.Namespace) -> int:
    from bench.run.machines import merge_machines
    from bench.run.merge import merge_runs

    if args.across_machines:
        print(merge_machines(args.runs, args.results))
    else:
        print(merge_runs([Path(r) for r in args.runs], args.results, args.allow_mixed))
    return 0
