"""The ``bench`` command: validate, list and run suites; report, compare, ab, calibrate,
history.

User errors print one line (file, key, what is allowed) and exit 2; a traceback means a
bug in bench, never in the user's input.
"""

from __future__ import annotations

import argparse
import errno
import sys
import warnings
from pathlib import Path

from bench import cli_history, cli_profile, cli_tune
from bench.errors import UserError


def _prog() -> str:
    # `python -m bench` is the way in where another `bench` command (Frappe's) shadows ours.
    return "python -m bench" if Path(sys.argv[0]).name == "__main__.py" else "bench"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=_prog(), description="Benchmark LLM optimization techniques.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    v = sub.add_parser("validate", help="check a suite and report the first problem")
    v.add_argument("suite", type=Path)
    v.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show what libraries logged while the suite was checked (kept off the "
        "console; `bench run` writes it to the run's logs/bench.log)",
    )

    ls = sub.add_parser("list", help="list the cases a suite expands to")
    ls.add_argument("suite", type=Path)
    ls.add_argument("--filter", metavar="GLOB", help="only case ids matching this glob")
    ls.add_argument("--shard", metavar="K/N", help="only the K-th of N shards (1-based)")

    r = sub.add_parser("run", help="run a suite; each case in a fresh process")
    r.add_argument("suite", type=Path)
    cli_history.add_location(r)  # --results, and --history-url for --history
    r.add_argument(
        "--filter", metavar="GLOB", help="only case ids matching this glob, e.g. '*/forward-*/*'"
    )
    r.add_argument(
        "--shard", metavar="K/N", help="only the K-th of N shards (1-based), for parallel CI jobs"
    )
    r.add_argument(
        "--resume", metavar="RUN_ID", help="finish an earlier run: only cases without an ok result"
    )
    r.add_argument(
        "--force",
        action="store_true",
        help="with --resume: continue even though bench or torch/torchao/transformers changed",
    )
    r.add_argument(
        "--inline",
        action="store_true",
        help="run cases in this process (debugging; no isolation, no timeout)",
    )
    r.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="per-process timeout, overriding the suite's run.timeout_s",
    )
    r.add_argument(
        "--counters",
        metavar="LIST",
        type=_counters,
        help="also count each CPU case: under callgrind instructions[,estimated_cycles], or "
        "from hardware counters hw_instructions[,hw_cycles] (overrides the suite's "
        "run.counters; 'none' turns them off)",
    )
    r.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also profile each case in one more process under torch.profiler, after the "
        "timed ones (overrides the suite's run.profile)",
    )
    r.add_argument(
        "--history",
        metavar="NAME",
        help="append this run to the history NAME (see `bench history`)",
    )
    _cluster_options(r)
    r.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    r.add_argument(
        "--reports", type=Path, default=Path("reports"), metavar="DIR", help="reports root"
    )

    rep = sub.add_parser("report", help="write Markdown + HTML reports for result folders")
    rep.add_argument("results", type=Path, nargs="+", help="run folders or a results root")
    rep.add_argument("--out", type=Path, default=Path("reports"), metavar="DIR")
    rep.add_argument(
        "--best",
        metavar="EXPR",
        help="'CONSTRAINTS; max|min METRIC', e.g. 'kl_to_baseline <= 0.05; max throughput_tokens'",
    )
    rep.add_argument(
        "--pool",
        action="store_true",
        help="with --best: pool the repeats of several runs (default: each run on its own)",
    )

    mg = sub.add_parser("merge", help="merge the shards of one suite into one run folder")
    mg.add_argument("runs", nargs="+", help="run folders (one per shard), or NAME=RUN per machine")
    mg.add_argument(
        "--across-machines",
        action="store_true",
        help="the same suite on several machines: compare them case by case (cost: [pricing])",
    )
    mg.add_argument(
        "--allow-mixed", action="store_true", help="merge runs from different environments"
    )
    mg.add_argument("--results", type=Path, default=Path("results"), metavar="DIR")

    cmp = sub.add_parser(
        "compare",
        help="verdicts: did CANDIDATE change what BASE measured? (exit 1 on a REGRESSION)",
        description="Each side: a run folder, a folder of runs, or pytest-benchmark saves "
        "(several give more runs). Verdicts per case and metric: REGRESSION, IMPROVED, OK, "
        "INCONCLUSIVE.",
    )
    cmp.add_argument("base", type=Path, help="the base side's run(s)")
    cmp.add_argument("candidate", type=Path, help="the candidate side's run(s)")
    _compare_options(cmp)
    cli_history.add_location(cmp)  # where known run-to-run drift is (calibration, history)
    for side in ("base", "candidate"):
        cmp.add_argument(
            f"--{side}",
            dest=f"more_{side}",
            type=Path,
            action="append",
            default=[],
            metavar="PATH",
            help=f"more runs for the {side} side (repeatable)",
        )

    cli_history.add_parser(sub)
    cli_profile.add_parser(sub)
    cli_tune.add_parser(sub)
    cal = sub.add_parser(
        "calibrate",
        help="back-to-back A/A runs of a suite: how far runs drift apart on this machine",
        description="Runs SUITE --runs times back to back and appends each run to the history "
        "'calibration' (in --results or --history-url), where `bench compare` finds how far "
        "one run of each case drifts from another on this machine: what a comparison of one "
        "run a side needs to be decided at all.",
    )
    cal.add_argument("suite", type=Path)
    cal.add_argument("--runs", type=int, default=10, metavar="N", help="invocations (default 10)")
    cli_history.add_location(cal)
    ab = sub.add_parser(
        "ab",
        help="paired A/B processes (A B B A) of a suite on two git refs or two suites",
        description="One server per side, each with its own code, started once; their case "
        "processes alternate A B B A and each case is judged on the log ratios of adjacent "
        "pairs. Stops when every verdict is decided (alpha spent over the planned looks) or "
        "the budget is spent.",
        epilog=EXIT_CODES,
    )
    ab.add_argument("suite", type=Path, nargs="?", help="the suite both sides run")
    ab.add_argument(
        "--base", metavar="REF", help="git ref of the base code (default: this checkout)"
    )
    ab.add_argument("--candidate", metavar="REF", help="git ref of the candidate code")
    ab.add_argument("--base-suite", type=Path, metavar="FILE", help="the base side's own suite")
    ab.add_argument("--candidate-suite", type=Path, metavar="FILE", help="the candidate's suite")
    ab.add_argument(
        "--budget",
        default="10m",
        metavar="N|MINUTES",
        help="stop after N pairs per case, or e.g. 30m of wall time (default 10m)",
    )
    ab.add_argument(
        "--install",
        action="store_true",
        help="install each side's code into a virtualenv of its own (a changed dependency or "
        "plugin is then really compared)",
    )
    ab.add_argument("--results", type=Path, default=Path("results"), metavar="DIR")
    _compare_options(ab)

    sub.add_parser("names", help="list the registered models, workloads and techniques")
    return p


def _cluster_options(r: argparse.ArgumentParser) -> None:
    r.add_argument(
        "--executor",
        choices=["slurm", "local"],
        help="run the suite's shards as a job array through submitit (slurm: sbatch; local: "
        "processes here), then merge them into one run",
    )
    r.add_argument("--jobs", type=int, default=4, metavar="N", help="with --executor: shards")
    r.add_argument(
        "--slurm", action="append", default=[], metavar="KEY=VALUE",
        help="a submitit parameter for the jobs, e.g. slurm_partition=gpu (repeatable)",
    )  # fmt: skip
    node = "a parallel case over several machines: run the same command on each"
    r.add_argument("--nnodes", type=int, default=1, help=f"nodes of {node}")
    r.add_argument("--node-rank", type=int, default=0, help="this node (0 hosts the rendezvous)")
    r.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="node 0's rendezvous address")


EXIT_CODES = "exit status: 0 no REGRESSION; 1 a REGRESSION (--strict: or INCONCLUSIVE); 2 bad input"


def _compare_options(p: argparse.ArgumentParser) -> None:
    p.epilog = EXIT_CODES
    p.add_argument("--out", type=Path, metavar="DIR", help="write compare.json, .md and .html here")
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
    p.add_argument(
        "--force",
        action="store_true",
        help="compare although the setups differ (CPU/GPU model, torch minor, threads)",
    )


def _counters(text: str) -> list[str]:
    from bench.telemetry.counters import COUNTERS, source_of

    names = [] if text == "none" else [n.strip() for n in text.split(",") if n.strip()]
    wrong = [n for n in names if n not in COUNTERS]
    if wrong:
        raise argparse.ArgumentTypeError(
            f"unknown counter {wrong[0]!r}: choose from {', '.join(COUNTERS)} (or none)"
        )
    try:
        names and source_of(names)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return names


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any("\0" in a for a in argv):  # no path can hold one (a shell cannot pass it either)
        print("bench: error: an argument holds a NUL byte", file=sys.stderr)
        return 2
    args = _parser().parse_args(argv)
    with warnings.catch_warnings():  # restored on return: a caller's settings are its own
        warnings.showwarning = _one_line_warning
        warnings.filterwarnings("always", category=UserWarning, module=r"bench(\.|$)")
        try:
            return _dispatch(args, argv)
        except UserError as e:
            print(f"bench: error: {e}", file=sys.stderr)
            return 2
        except OSError as e:
            where = f"{e.filename}: " if e.filename else ""
            if e.errno in FULL_DISK:  # outside a run's own handler (which says the same)
                print(f"bench: error: {where}cannot write: {e.strerror}", file=sys.stderr)
                return 74
            if e.errno not in PATH_ERRORS or not e.filename:
                raise
            # A path the user gave that cannot be used: said like any other user error.
            print(f"bench: error: {where}{e.strerror}", file=sys.stderr)
            return 2


FULL_DISK = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}
# Errors of a path itself (not of the disk or the machine): the user's to fix.
PATH_ERRORS = {errno.ENOENT, errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.EACCES,
               errno.ELOOP, errno.EPERM}  # fmt: skip


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """bench's own warnings (a skipped file, a doubtful figure) in one line like an error:
    the user's to act on, not the code's; a library's keep their origin."""
    if Path(filename).resolve().is_relative_to(Path(__file__).resolve().parent):
        print(f"bench: warning: {message}", file=sys.stderr)
    else:
        print(warnings.formatwarning(message, category, filename, lineno, line), file=sys.stderr,
              end="")  # fmt: skip


def _dispatch(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.spec.suite import load_suite

    if args.command == "report":
        return _report(args)
    if args.command == "merge":
        from bench.run.machines import merge_machines
        from bench.run.merge import merge_runs

        if args.across_machines:
            print(merge_machines(args.runs, args.results))
        else:
            print(merge_runs([Path(r) for r in args.runs], args.results, args.allow_mixed))
        return 0
    if args.command == "compare":
        return _compare(args)
    if args.command == "ab":
        return _ab(args)
    if args.command == "calibrate":
        return _calibrate(args)
    if args.command == "history":
        return cli_history.main(args)
    if args.command == "tune":
        return cli_tune.main(args)
    if args.command == "profile":
        return cli_profile.main(args, load_suite(args.suite), argv)
    if args.command == "names":
        from bench.spec.registry import known_names

        for kind, names in known_names().items():
            print(f"{kind}s: {', '.join(names)}")
        return 0
    try:
        suite = load_suite(args.suite)
    finally:
        if getattr(args, "verbose", False):  # validate --verbose: what was kept off the console
            from bench.models.quiet import kept

            for line in kept:
                print(line, file=sys.stderr)
    if args.command == "validate":
        print(f"{args.suite}: ok, {len(suite.cases)} cases x {suite.run.repeats} repeats")
        return 0
    if args.command == "list":
        from bench.run.suite_driver import select_cases

        for case in select_cases(suite.cases, args.filter, args.shard):
            print(f"{case.id}  [{case.hash}]")
        return 0
    return _run(args, suite, argv)


def _report(args: argparse.Namespace) -> int:
    from bench.analysis.report import run_dirs, write_reports

    dirs = run_dirs(args.results)
    if args.best:
        import pandas as pd

        from bench.analysis.best import answer
        from bench.results.store import load_results

        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(answer(load_results(*dirs), args.best, pool=args.pool).to_string(index=False))
    for path in write_reports(dirs, args.out):
        print(path)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from bench.analysis.compare import compare
    from bench.analysis.drift import known_drift
    from bench.analysis.sides import load_side

    base = load_side([args.base, *args.more_base])
    cand = load_side([args.candidate, *args.more_candidate])
    known = known_drift(cli_history.database_url(args), base.env_keys | cand.env_keys)
    comparison = compare(
        base, cand, force=args.force, gates=_pinned_gates(args), rule=_rule(args), known=known
    )
    return report_comparison(comparison, args)


def _rule(args: argparse.Namespace) -> str:
    from bench.analysis import verdicts

    return verdicts.BEYOND if args.beyond_tolerance else verdicts.SIGNIFICANT


def _pinned_gates(args: argparse.Namespace):
    from bench.spec.gates import gates_of_file

    return None if args.gates is None else gates_of_file(args.gates)


def _ab(args: argparse.Namespace) -> int:
    from bench.results.store import create_run_dir
    from bench.run.ab import Budget, SideSpec, run_ab
    from bench.run.suite_driver import make_console
    from bench.spec.suite import load_suite

    base_suite = args.base_suite or args.suite
    cand_suite = args.candidate_suite or args.suite
    if base_suite is None or cand_suite is None:
        raise UserError("bench ab: name a SUITE, or both --base-suite and --candidate-suite")
    if args.base is None and args.candidate is None and base_suite == cand_suite:
        raise UserError(
            "bench ab: both sides would run the same code and suite; give --candidate REF "
            "(and --base REF) or --base-suite/--candidate-suite"
        )
    for path in {base_suite, cand_suite}:
        load_suite(path)  # a bad suite fails here, before any worktree or run
    budget = Budget.parse(args.budget)
    pinned = _pinned_gates(args)
    _, out = create_run_dir(args.results, "ab")
    console = make_console()
    console.print(f"A/B job in {out}", highlight=False)
    comparison = run_ab(
        SideSpec("base", base_suite, args.base),
        SideSpec("candidate", cand_suite, args.candidate),
        out,
        budget,
        console,
        rule=_rule(args),
        gates=pinned,
        force=args.force,
        install_sides=args.install,
    )
    if args.out is None:
        args.out = out
    return report_comparison(comparison, args)


def _calibrate(args: argparse.Namespace) -> int:
    from bench.analysis.drift import CALIBRATION_HEADER, calibration_rows, known_drift
    from bench.analysis.sides import load_side
    from bench.run.calibrate import calibrate
    from bench.run.suite_driver import make_console
    from bench.spec.suite import load_suite

    load_suite(args.suite)
    console = make_console()
    runs = calibrate(args.suite, args.runs, args.results, args.history_url, console)
    side = load_side(runs)
    known = known_drift(cli_history.database_url(args), side.env_keys)
    from rich.table import Table

    table = Table(title="How far one run drifts from another here (what compare will use)")
    for col in CALIBRATION_HEADER:
        table.add_column(col, overflow="fold")
    for row in calibration_rows(side, known):
        table.add_row(*row)
    console.print(table)
    console.print(
        f"calibration: {len(runs)} runs appended to the history 'calibration' "
        f"({cli_history.where(args)})",
        highlight=False,
    )
    return 0


def report_comparison(comparison, args: argparse.Namespace) -> int:
    """Print the verdict table, write it where --out says, and the exit code it earns."""
    from bench.analysis.compare import print_comparison, write_outputs
    from bench.run.suite_driver import make_console

    console = make_console()
    print_comparison(comparison, console, show_all=args.all)
    if args.out is not None:
        for path in write_outputs(comparison, args.out):
            console.print(f"wrote {path}", highlight=False)
    counts = comparison.verdicts()
    if counts["INCONCLUSIVE"]:
        console.print(
            f"[yellow]warning[/]: {counts['INCONCLUSIVE']} verdict(s) INCONCLUSIVE: "
            "add runs per side (see the table)" + (" (--strict: failing)" if args.strict else "")
        )
    return comparison.exit_code(args.strict)


def _run(args: argparse.Namespace, suite, argv: list[str]) -> int:
    from bench.run.suite_driver import Interrupted, RunOptions, make_console, run_suite

    if args.timeout is not None and args.timeout <= 0:
        raise UserError(f"--timeout {args.timeout:g}: must be a positive number of seconds")
    console = make_console()
    launch = _launch(args)
    opts = RunOptions(
        results=args.results,
        filter=args.filter,
        shard=args.shard,
        resume=args.resume,
        force=args.force,
        inline=args.inline,
        timeout=args.timeout,
        argv=["bench", *argv],
        history=args.history,
        launch=launch,
        counters=args.counters,
        profile=args.profile,
    )
    if args.executor:
        return _run_on_executor(args, suite, opts, console)
    try:
        outcome = run_suite(suite, opts, console)
    except Interrupted as e:
        _keep_log(e.run_dir)
        console.print(
            f"{e.reason}: finished cases are in {e.run_dir}; continue with "
            f"`bench run {args.suite} --resume {e.run_id}`",
            highlight=False,
        )
        return e.code
    return _finish(args, outcome.run_dir, outcome.results, console)


def _finish(args: argparse.Namespace, run_dir: Path, results: list, console) -> int:
    from bench.analysis.console import console_rows, print_table
    from bench.results.store import results_frame
    from bench.run.suite_driver import exit_code

    _keep_log(run_dir)
    print_table(console_rows(results_frame(results)), console)
    console.print(f"results: {run_dir}")
    if args.history:
        console.print(cli_history.append(args, run_dir), highlight=False)
    if not args.no_report:
        from bench.analysis.report import write_reports

        (report,) = write_reports([run_dir], args.reports)
        console.print(f"report: {report}")
    from bench.results.store import profiles

    return exit_code([*results, *profiles(run_dir)])  # a failed profiled pass fails too


def _keep_log(run_dir: Path) -> None:
    """What libraries logged in this process while the suite was checked (torchao's kernels
    that did not load, torch's deprecation notes), in the run's logs/bench.log."""
    from bench.models.quiet import write_kept
    from bench.results.store import LOGS

    write_kept(Path(run_dir) / LOGS / "bench.log")


def _launch(args: argparse.Namespace) -> dict | None:
    """The nodes of parallel cases (``--nnodes`` ...), checked; None on one machine."""
    if args.nnodes < 1 or not 0 <= args.node_rank < args.nnodes:
        raise UserError(
            f"--nnodes {args.nnodes} --node-rank {args.node_rank}: need 0 <= rank < nodes"
        )
    if args.nnodes == 1:
        return None
    if not args.rdzv_endpoint or ":" not in args.rdzv_endpoint:
        raise UserError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (node 0's address)")
    return {"nnodes": args.nnodes, "node_rank": args.node_rank, "rdzv_endpoint": args.rdzv_endpoint}


def _run_on_executor(args: argparse.Namespace, suite, opts, console) -> int:
    from bench.results import store
    from bench.run.executors import run_on_executor

    for flag in ("shard", "resume", "inline"):
        if getattr(args, flag):
            raise UserError(f"--executor shards the suite itself: drop --{flag}")
    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: at least 1")
    run_dir = run_on_executor(
        suite, args.suite, opts, args.executor, args.jobs, args.slurm, console
    )
    return _finish(args, run_dir, store.run_results(run_dir), console)


if __name__ == "__main__":
    sys.exit(main())
