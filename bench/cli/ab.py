"""``bench ab SUITE --candidate-ref REF``: paired A/B processes (A B B A) of a suite on two
git refs or two suites, judged as ``bench compare`` judges."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli import options
from bench.cli.compare import add_verdict_options, pinned_gates, report_comparison, rule
from bench.errors import UserError


def add_parser(sub) -> None:
    p = options.command(
        sub,
        "ab",
        main,
        help="paired A/B processes (A B B A) of a suite on two git refs or two suites",
        description="One server per side, each with its own code, started once; their case "
        "processes alternate A B B A and each case is judged on the log ratios of adjacent "
        "pairs. Stops when every verdict is decided (alpha spent over the planned looks) or "
        "the budget is spent.",
    )
    options.add_suite(p, nargs="?")
    p.add_argument(
        "--base-ref", metavar="REF", help="git ref of the base code (default: this checkout)"
    )
    p.add_argument("--candidate-ref", metavar="REF", help="git ref of the candidate code")
    p.add_argument("--base-suite", type=Path, metavar="FILE", help="the base side's own suite")
    p.add_argument("--candidate-suite", type=Path, metavar="FILE", help="the candidate's suite")
    p.add_argument(
        "--budget",
        default="10m",
        metavar="N|MINUTES",
        help="stop after N pairs per case, or e.g. 30m of wall time (default 10m)",
    )
    p.add_argument(
        "--install",
        action="store_true",
        help="install each side's code into a virtualenv of its own (a changed dependency or "
        "plugin is then really compared)",
    )
    options.add_results(p)
    add_verdict_options(p)
    p.set_defaults(reports=None)  # default: the A/B job's own folder under --results


def main(args: argparse.Namespace) -> int:
    from bench.results.store import create_run_dir
    from bench.run.ab import Budget, SideSpec, run_ab

    base_suite = args.base_suite or args.suite
    cand_suite = args.candidate_suite or args.suite
    if base_suite is None or cand_suite is None:
        raise UserError("bench ab: name a SUITE, or both --base-suite and --candidate-suite")
    if args.base_ref is None and args.candidate_ref is None and base_suite == cand_suite:
        raise UserError(
            "bench ab: both sides would run the same code and suite; give --candidate-ref REF "
            "(and --base-ref REF) or --base-suite/--candidate-suite"
        )
    for path in {base_suite, cand_suite}:
        options.load(args, path)  # a bad suite fails here, before any worktree or run
    budget = Budget.parse(args.budget)
    sets = tuple(args.set or ())  # each side's server applies them to its own suite
    pinned = pinned_gates(args)
    _, out = create_run_dir(args.results, "ab")
    console = options.progress()
    console.print(f"A/B job in {out}", highlight=False)
    comparison = run_ab(
        SideSpec("base", base_suite, args.base_ref, overrides=sets),
        SideSpec("candidate", cand_suite, args.candidate_ref, overrides=sets),
        out,
        budget,
        console,
        rule=rule(args),
        gates=pinned,
        force=args.allow_mixed,
        install_sides=args.install,
    )
    if args.reports is None:
        args.reports = out
    return report_comparison(comparison, args)
