"""``bench calibrate SUITE``: back-to-back A/A runs of a suite, appended to the history
'calibration', where ``bench compare`` finds how far one run drifts from another here."""

from __future__ import annotations

import argparse

from bench.cli import options


def add_parser(sub) -> None:
    p = options.command(
        sub,
        "calibrate",
        main,
        help="back-to-back A/A runs of a suite: how far runs drift apart on this machine",
        description="Runs SUITE --runs times back to back and appends each run to the history "
        "'calibration' (in --results or --history-url), where `bench compare` finds how far "
        "one run of each case drifts from another on this machine: what a comparison of one "
        "run a side needs to be decided at all.",
    )
    options.add_suite(p)
    p.add_argument("--runs", type=int, default=10, metavar="N", help="invocations (default 10)")
    options.add_results(p, history=True)
    options.add_json(p)


def main(args: argparse.Namespace) -> int:
    from bench.analysis.drift import CALIBRATION_HEADER, calibration_rows, known_drift
    from bench.analysis.sides import load_side
    from bench.run.calibrate import calibrate

    options.load(args)
    console = options.progress()
    runs = calibrate(
        args.suite, args.runs, args.results, args.history_url, console, overrides=args.set or ()
    )
    side = load_side(runs)
    rows = calibration_rows(side, known_drift(options.database_url(args), side.env_keys))
    console.print(
        f"calibration: {len(runs)} runs appended to the history 'calibration' "
        f"({options.where(args)})",
        highlight=False,
    )
    if args.json:
        options.print_json(
            {
                "runs": [str(r) for r in runs],
                "rows": [dict(zip(CALIBRATION_HEADER, row, strict=True)) for row in rows],
            }
        )
        return 0
    from rich.table import Table

    table = Table(title="How far one run drifts from another here (what compare will use)")
    for col in CALIBRATION_HEADER:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row)
    options.results().print(table)
    return 0
