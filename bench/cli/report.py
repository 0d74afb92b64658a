"""``bench report RUN...``: Markdown + HTML reports of run folders; ``--best`` answers
"which case is best under these constraints" from them."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli import options


def add_parser(sub) -> None:
    p = options.command(
        sub, "report", main, help="write Markdown + HTML reports for result folders"
    )
    p.add_argument(
        "runs",
        type=Path,
        nargs="*",
        metavar="RUN",
        help="run folders, or folders of runs (default: every run under --results)",
    )
    options.add_results(p)
    options.add_reports(p)
    p.add_argument(
        "--best",
        metavar="EXPR",
        help="'CONSTRAINTS; max|min METRIC', e.g. 'kl_to_baseline <= 0.05; max throughput_tokens'",
    )
    p.add_argument(
        "--pool",
        action="store_true",
        help="with --best: pool the repeats of several runs (default: each run on its own)",
    )
    options.add_json(p)


def main(args: argparse.Namespace) -> int:
    from bench.analysis.report import run_dirs, write_reports

    dirs = run_dirs(args.runs or [args.results])
    best = None
    if args.best:
        from bench.analysis.best import answer
        from bench.results.store import load_results

        best = answer(load_results(*dirs), args.best, pool=args.pool)
    written = write_reports(dirs, args.reports)
    if args.json:
        doc = {"reports": [str(p) for p in written]}
        if best is not None:
            doc["best"] = best.to_dict(orient="records")
        options.print_json(doc)
        return 0
    if best is not None:
        import pandas as pd

        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(best.to_string(index=False))
    for path in written:
        print(path)
    return 0
