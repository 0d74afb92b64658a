"""``bench show RUN``: one run's environment, its cases with their statuses and headline
figures (the summary table ``bench run`` ends with)."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
from pathlib import Path
from typing import Any

from bench.cli import options
from bench.errors import UserError


def add_parser(sub) -> None:
    p = options.command(
        sub,
        "show",
        main,
        help="a run's environment, cases, statuses and headline figures",
        description="RUN is a run folder, or a run id under --results. Prints the run's "
        "status, its environment (code, software, machine) and the summary table `bench run` "
        "ends with: each case's status, headline metric and ratio to its baseline.",
    )
    p.add_argument("run_ref", metavar="RUN", help="a run folder, or a run id under --results")
    options.add_results(p)
    options.add_json(p)


def main(args: argparse.Namespace) -> int:
    from bench.results import store

    run_dir = find_run(args.run_ref, args.results)
    manifest = store.believed_manifest(run_dir)
    results = store.run_results(run_dir)
    if args.json:
        print_summary(run_dir, results, True, manifest=manifest)
        return 0
    from bench.analysis import run_facts

    out = options.results()
    # the report's Environment section, word for word (its Run line has the status)
    for label, text in run_facts.facts(manifest, results):
        out.print(f"{label}: {text}", highlight=False, markup=False)
    print_summary(run_dir, results, False)
    return 0


def find_run(ref: str, results: Path) -> Path:
    """The run folder ``ref`` names: a folder holding a manifest, or an id under ``results``."""
    from bench.results.store import MANIFEST

    for path in (Path(ref), results / ref):
        if (path / MANIFEST).is_file():
            return path
    known = [p.parent.name for p in sorted(results.glob(f"*/{MANIFEST}"))]
    close = difflib.get_close_matches(ref, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise UserError(f"no run folder or run id {ref!r} under {results}{hint}")


def print_summary(
    run_dir: Path,
    results: list[dict],
    as_json: bool,
    report: Path | None = None,
    manifest: dict | None = None,
) -> None:
    """The summary table of one run (``bench.analysis.console``) on stdout, then where the
    results (and report) are; or all of it as one JSON document."""
    from bench.analysis.console import console_rows, print_table
    from bench.results.store import results_frame

    rows = console_rows(results_frame(results))
    if as_json:
        doc: dict[str, Any] = {"run_dir": str(run_dir)}
        if manifest is not None:
            doc |= {
                "run_id": manifest.get("run_id"),
                "status": manifest.get("status"),
                "suite": {k: v for k, v in manifest.get("suite", {}).items() if k != "text"},
                "environment": manifest.get("environment"),
            }
        if report is not None:
            doc["report"] = str(report)
        doc["cases"] = [dataclasses.asdict(r) for r in rows]
        options.print_json(doc)
        return
    out = options.results()
    print_table(rows, out)
    out.print(f"results: {run_dir}", highlight=False)
    if report is not None:
        out.print(f"report: {report}", highlight=False)
