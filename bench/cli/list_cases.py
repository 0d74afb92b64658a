"""``bench list SUITE``: the cases a suite expands to (ids and hashes)."""

from __future__ import annotations

import argparse

from bench.cli import options


def add_parser(sub) -> None:
    p = options.command(sub, "list", main, help="list the cases a suite expands to")
    options.add_suite(p)
    p.add_argument("--filter", metavar="GLOB", help="only case ids matching this glob")
    p.add_argument("--shard", metavar="K/N", help="only the K-th of N shards (1-based)")
    options.add_json(p)


def main(args: argparse.Namespace) -> int:
    from bench.run.suite_driver import select_cases

    cases = select_cases(options.load(args).cases, args.filter, args.shard)
    if args.json:
        options.print_json(
            [
                {"id": c.id, "hash": c.hash, "group": c.group, "baseline": c.is_baseline}
                for c in cases
            ]
        )
    else:
        for case in cases:
            print(f"{case.id}  [{case.hash}]")
    return 0
