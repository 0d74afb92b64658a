"""``bench profile SUITE --case ID``: profile cases without timing them, and say where the
time went: the top operators of each, and a technique's operators against its baseline's
(on stdout, or ``--json``; progress on stderr)."""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
from pathlib import Path

from bench.cli import options
from bench.errors import UserError


def add_parser(sub) -> None:
    p = options.command(
        sub,
        "profile",
        main,
        help="profile cases under torch.profiler: operator table, trace, diff to the baseline",
        description="Run each chosen case (and its group's baseline) once more under "
        "torch.profiler, untimed: writes RESULTS/<run>/profiles/<case>.json (the operator "
        "table) and <case>.trace.json.gz (open in ui.perfetto.dev), and prints the top "
        "operators and each technique's operators against its baseline's.",
    )
    options.add_suite(p)
    p.add_argument("--case", required=True, metavar="GLOB", help="case id or glob (`bench list`)")
    options.add_results(p)
    p.add_argument("--calls", type=int, metavar="N", help="profiled calls (suite: profile_calls)")
    p.add_argument("--stack", action="store_true", help="record Python stacks too")
    p.add_argument(
        "--python", action="store_true", help="and a py-spy flame graph of the calls (SVG)"
    )
    p.add_argument("--top", type=int, default=12, metavar="N", help="operators shown per case")
    p.add_argument("--inline", action="store_true", help="profile in this process (debugging)")
    options.add_json(p)


def main(args: argparse.Namespace) -> int:
    from bench.run.suite_driver import Interrupted, RunOptions, run_suite

    suite = options.load(args)
    if not any(fnmatch.fnmatchcase(c.id, args.case) for c in suite.cases):
        raise UserError(f"--case {args.case!r} matches no case; see `bench list`", where=suite.path)
    update = {
        "profile": True,
        "profile_stack": args.stack or suite.run.profile_stack,
        "profile_python": args.python or suite.run.profile_python,
    }
    if args.calls is not None:
        if not 1 <= args.calls <= 1000:
            raise UserError(f"--calls {args.calls}: between 1 and 1000")
        update["profile_calls"] = args.calls
    suite = dataclasses.replace(suite, run=suite.run.model_copy(update=update))
    console = options.progress()
    opts = RunOptions(
        results=args.results, filter=args.case, with_baselines=True, profile=True, timed=False,
        inline=args.inline, argv=args.argv,
    )  # fmt: skip
    try:
        outcome = run_suite(suite, opts, console)
    except Interrupted as e:
        console.print(f"{e.reason}: the finished profiles are in {e.run_dir}", highlight=False)
        return e.code
    if args.json:
        return show_json(outcome.run_dir, args.top)
    return show(outcome.run_dir, options.results(), args.top)


def show_json(run_dir: Path, top: int) -> int:
    """What ``show`` prints, as one JSON document: each pass, its top operators, and each
    technique's operators against its baseline's."""
    from bench.analysis import profiles

    passes = profiles.load_profiles(run_dir)
    ops = profiles.load_operators(run_dir) if not passes.empty else None
    doc = {"run_dir": str(run_dir), "passes": [], "diffs": []}
    for p in passes.to_dict(orient="records"):
        mine = ops[ops["case_id"] == p["case_id"]].head(top) if p["status"] == "ok" else None
        p["operators"] = [] if mine is None else mine.to_dict(orient="records")
        doc["passes"].append(p)
    if ops is not None:
        for case_id, base_id, d in profiles.technique_diffs(ops, passes):
            rows = d[d["what"] != "same"].head(top).to_dict(orient="records")
            doc["diffs"].append({"case_id": case_id, "baseline": base_id, "operators": rows})
    options.print_json(doc)
    return 0 if not passes.empty and (passes["status"] == "ok").all() else 1


def show(run_dir: Path, console, top: int) -> int:
    """Print each profiled case's top operators, and each technique against its baseline."""
    from rich.table import Table

    from bench.analysis import profiles

    passes = profiles.load_profiles(run_dir)
    if passes.empty:
        options.progress().print(f"nothing was profiled: {run_dir}", highlight=False)
        return 1
    ops = profiles.load_operators(run_dir)
    for p in passes.itertuples():
        if p.status != "ok":
            continue
        console.print(f"\n{p.case_id}: operators explain {p.explained_share:.0%} of "
                      f"{p.wall_us_per_call / 1e3:.3f} ms/call ({p.calls} calls)",
                      highlight=False)  # fmt: skip
        t = Table()
        for col in ("operator", "self ms/call", "share", "calls/call", "input shapes"):
            t.add_column(col, justify="left" if col in ("operator", "input shapes") else "right")
        for o in ops[ops["case_id"] == p.case_id].head(top).itertuples():
            t.add_row(o.operator, f"{o.self_us_per_call / 1e3:.3f}", f"{o.self_share:.1%}",
                      f"{o.calls_per_call:g}", str(o.input_shapes)[:60])  # fmt: skip
        console.print(t)
        console.print(f"trace: {p.trace}", highlight=False)
        if p.python:
            console.print(f"Python flame graph: {p.python}", highlight=False)
    for case_id, base_id, d in profiles.technique_diffs(ops, passes):
        console.print(f"\n{case_id} against {base_id} (profiled pass, ms/call):", highlight=False)
        t = Table()
        for col in ("operator", "what", "baseline", "technique", "change"):
            t.add_column(col, justify="left" if col in ("operator", "what") else "right")
        for r in d[d["what"] != "same"].head(top).itertuples():
            t.add_row(r.operator, r.what, f"{r.base_us / 1e3:.3f}", f"{r.candidate_us / 1e3:.3f}",
                      f"{r.change_us / 1e3:+.3f}")  # fmt: skip
        console.print(t)
    console.print(f"profiles: {run_dir}")
    return 0 if (passes["status"] == "ok").all() else 1
