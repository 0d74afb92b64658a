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
    out = options.results()
    out.print(f"run {manifest.get('run_id', run_dir.name)}: {manifest.get('status', '?')}",
              highlight=False)  # fmt: skip
    for key, value in overview(manifest).items():
        out.print(f"  {key}: {value}", highlight=False, markup=False)
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


def overview(manifest: dict[str, Any]) -> dict[str, str]:
    """The lines a reader checks first: which suite, when, on what code and machine."""
    env = manifest.get("environment", {})
    git = env.get("git", {})
    software = env.get("software", {})
    gpu = env.get("gpu", {})
    suite = manifest.get("suite", {})
    commit = git.get("commit")
    code = f"{commit[:12]}{' (dirty)' if git.get('dirty') else ''}" if commit else git.get("reason")
    gpus = gpu.get("name") or ", ".join(g.get("name", "?") for g in gpu.get("devices", []))
    return {
        "suite": f"{suite.get('name', '?')} ({suite.get('path', '?')})",
        "started": f"{manifest.get('started', '?')}, ended {manifest.get('ended', '—')}",
        "code": f"{code}; bench {software.get('bench', '?')}",
        "software": f"python {env.get('python', '?')}, "
        + ", ".join(f"{k} {v}" for k, v in software.items() if k not in ("bench", "bench_source")),
        "cuda": str(env.get("cuda") or "none"),
        "gpu": gpus or gpu.get("reason", "none"),
        "cpu": f"{env.get('cpu_model', '?')}, {env.get('cpu_count', '?')} cores, "
        f"{env.get('torch_threads', '?')} torch threads",
        "host": str(env.get("host", "?")),
        **({"history": manifest["history"]} if manifest.get("history") else {}),
    }


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
