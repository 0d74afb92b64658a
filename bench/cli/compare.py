"""``bench compare BASE CANDIDATE``: a verdict per case and metric on whether the
candidate changed what the base measured; exit 1 on a REGRESSION. The verdict options and
the printing of a comparison are shared with ``bench ab``."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli import options


def add_parser(sub) -> None:
    p = options.command(
        sub,
        "compare",
        main,
        help="verdicts: did CANDIDATE change what BASE measured? (exit 1 on a REGRESSION)",
        description="Each side: a run folder, a folder of runs, or pytest-benchmark saves "
        "(several give more runs). Verdicts per case and metric: REGRESSION, IMPROVED, OK, "
        "INCONCLUSIVE.",
    )
    p.add_argument("base", type=Path, help="the base side's run(s)")
    p.add_argument("candidate", type=Path, help="the candidate side's run(s)")
    for side in ("base", "candidate"):
        p.add_argument(
            f"--{side}-run",
            dest=f"more_{side}",
            type=Path,
            action="append",
            default=[],
            metavar="RUN",
            help=f"more runs for the {side} side (repeatable)",
        )
    # where known run-to-run drift is (calibration, history)
    options.add_results(p, history=True)
    add_verdict_options(p)


def add_verdict_options(p: argparse.ArgumentParser) -> None:
    """What compare and ab share: the rule, the gates, what fails, what is written."""
    options.add_reports(p, default=None, what="write compare.json, .md and .html here")
    p.add_argument(
        "--gates",
        type=Path,
        metavar="FILE",
        help="judge with this TOML file's [gates] (default: the base's suite's)",
    )
    p.add_argument(
        "--beyond-tolerance",
        action="store_true",
        help="REGRESSION only when the whole interval lies beyond the tolerance (default: "
        "significant and the estimate beyond it)",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 on INCONCLUSIVE too")
    p.add_argument("--all", action="store_true", help="print OK rows too (default: counted)")
    options.add_allow_mixed(
        p, "compare although the setups differ (CPU/GPU model, torch minor, threads)"
    )
    options.add_json(p)


def main(args: argparse.Namespace) -> int:
    from bench.analysis.compare import compare
    from bench.analysis.drift import known_drift
    from bench.analysis.sides import load_side

    base = load_side([args.base, *args.more_base])
    cand = load_side([args.candidate, *args.more_candidate])
    known = known_drift(options.database_url(args), base.env_keys | cand.env_keys)
    comparison = compare(
        base, cand, force=args.allow_mixed, gates=pinned_gates(args), rule=rule(args), known=known
    )
    return report_comparison(comparison, args)


def rule(args: argparse.Namespace) -> str:
    from bench.analysis import verdicts

    return verdicts.BEYOND if args.beyond_tolerance else verdicts.SIGNIFICANT


def pinned_gates(args: argparse.Namespace):
    from bench.spec.gates import gates_of_file

    return None if args.gates is None else gates_of_file(args.gates)


def report_comparison(comparison, args: argparse.Namespace) -> int:
    """The verdict table (or ``--json``) on stdout, the files where --reports says, a
    warning on stderr for INCONCLUSIVE verdicts, and the exit code it earns."""
    from bench.analysis.compare_output import print_comparison, write_outputs

    written = write_outputs(comparison, args.reports) if args.reports is not None else []
    if args.json:
        options.print_json({**comparison.to_json(), "written": [str(p) for p in written]})
    else:
        out = options.results()
        print_comparison(comparison, out, show_all=args.all)
        for path in written:
            out.print(f"wrote {path}", highlight=False)
    counts = comparison.verdicts()
    if counts["INCONCLUSIVE"]:
        options.progress().print(
            f"[yellow]warning[/]: {counts['INCONCLUSIVE']} verdict(s) INCONCLUSIVE: "
            "add runs per side (see the table)" + (" (--strict: failing)" if args.strict else "")
        )
    return comparison.exit_code(args.strict)
