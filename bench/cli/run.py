"""``bench run SUITE``: run a suite, each case in a fresh process; the summary table (or
``--json``) on stdout, progress on stderr."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from bench.cli import options
from bench.errors import UserError


def add_parser(sub) -> None:
    r = options.command(sub, "run", main, help="run a suite; each case in a fresh process")
    options.add_suite(r)
    options.add_results(r, history=True)
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
        "--allow-version-change",
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
        help="append this run to the history NAME (see `bench history show`)",
    )
    options.add_executor(
        r,
        "run the suite's shards as a job array through submitit (slurm: sbatch; local: "
        "processes here), then merge them into one run",
        jobs=4,
    )
    node = "a parallel case over several machines: run the same command on each"
    r.add_argument("--nnodes", type=int, default=1, help=f"nodes of {node}")
    r.add_argument("--node-rank", type=int, default=0, help="this node (0 hosts the rendezvous)")
    r.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="node 0's rendezvous address")
    r.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    options.add_reports(r, what="where the run's report is written")
    options.add_json(r)


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


def main(args: argparse.Namespace) -> int:
    from bench.run.suite_driver import Interrupted, RunOptions, run_suite

    suite = options.load(args)
    if args.timeout is not None and args.timeout <= 0:
        raise UserError(f"--timeout {args.timeout:g}: must be a positive number of seconds")
    console = options.progress()
    opts = RunOptions(
        results=args.results,
        filter=args.filter,
        shard=args.shard,
        resume=args.resume,
        force=args.allow_version_change,
        inline=args.inline,
        timeout=args.timeout,
        argv=args.argv,
        history=args.history,
        launch=_launch(args),
        counters=args.counters,
        profile=args.profile,
    )
    if args.executor:
        return _run_on_executor(args, suite, opts, console)
    try:
        outcome = run_suite(suite, opts, console)
    except Interrupted as e:
        _keep_log(e.run_dir)
        sets = "".join(f" --set {shlex.quote(s)}" for s in args.set or ())
        console.print(
            f"{e.reason}: finished cases are in {e.run_dir}; continue with "
            f"`bench run {args.suite}{sets} --resume {e.run_id}`",
            highlight=False,
        )
        return e.code
    return _finish(args, outcome.run_dir, outcome.results, console)


def _finish(args: argparse.Namespace, run_dir: Path, results: list, console) -> int:
    from bench.cli.show import print_summary
    from bench.results.store import profiles
    from bench.run.suite_driver import exit_code

    _keep_log(run_dir)
    if args.history:
        from bench.cli.history import append

        console.print(append(args, run_dir), highlight=False)
    report = None
    if not args.no_report:
        from bench.analysis.report import write_reports

        (report,) = write_reports([run_dir], args.reports)
    code = exit_code([*results, *profiles(run_dir)])  # a failed profiled pass fails too
    print_summary(run_dir, results, args.json, report=report)
    return code


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
