"""``bench tune SUITE``: search the suite's ``[tune]`` space with Optuna, re-measure the
front in one run, and write the front as a report and as a suite ``bench run`` reproduces."""

from __future__ import annotations

import argparse
import math
import signal

from bench.cli import options
from bench.errors import UserError


def add_parser(sub) -> None:
    p = options.command(
        sub,
        "tune",
        main,
        help="search the suite's [tune] space (Optuna), re-measure the front, write it out",
        description="Each trial is a run of its own (the trial's techniques and the "
        "baseline, as `bench run` runs them); the study lives in the history database, so "
        "a killed tune resumes and several processes or machines share one study. The front "
        "is measured again, all in one run, and judged with intervals. Exit 1 when no trial "
        "met the constraints or the front failed to re-measure; interrupted (130), run it "
        "again: the study resumes.",
    )
    options.add_suite(p)
    options.add_results(p, history=True)  # --history-url: where the study lives
    p.add_argument("--budget", metavar="N|30m", help="trials in the study, or minutes here")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="no new trials: re-measure and report the study's front",
    )
    options.add_reports(p, what="where the front's report is written (REPORTS/tune/STUDY)")
    p.add_argument("--inline", action="store_true", help="run cases in this process (debugging)")
    options.add_executor(
        p, "add trials from --jobs processes (local) or Slurm jobs instead", jobs=2
    )
    options.add_json(p)


def main(args: argparse.Namespace) -> int:
    import tomllib

    from bench.analysis.tune_front import judge, write_report
    from bench.run import tune, tune_jobs, tune_remeasure
    from bench.run.suite_driver import Interrupted
    from bench.spec.tune import Budget, parse_tune

    suite = options.load(args)
    data = tomllib.loads(suite.text)
    workload = data["workloads"][0].get("name", "") if data.get("workloads") else ""
    spec = parse_tune(data.get("tune"), workload, suite.path)
    budget = Budget.parse(args.budget, key="--budget") if args.budget else spec.budget
    opts = tune.TuneOptions(
        results=args.results,
        storage=options.database_url(args),
        budget_trials=budget.trials,
        budget_minutes=budget.minutes,
        inline=args.inline,
    )
    console = options.progress()
    tuner = tune.Tuner(suite, spec, opts, console)
    # SIGTERM between runs as Ctrl-C (inside a run, bench run's own handler answers it)
    previous = signal.signal(signal.SIGTERM, _stop)
    console.print(f"study [bold]{tuner.name}[/] in {options.where(args)}")
    try:
        if args.executor and not args.report_only:
            if not 1 <= args.jobs <= 1000:
                raise UserError(f"--jobs {args.jobs}: between 1 and 1000")
            tune_jobs.run_jobs(tuner, args.suite, args.executor, args.jobs, args.slurm)
        elif not args.report_only:
            tuner.run()
        trials = tune.completed(tuner.study)
        front = tune_remeasure.search_front(trials, spec)
        if not front:
            console.print("[red]no trial met the constraints[/]: nothing to re-measure")
            return 1
        points = tune_remeasure.remeasure(tuner, front)
    except (Interrupted, KeyboardInterrupt) as e:
        # between runs (asking Optuna, writing a trial's suite) a stop is a KeyboardInterrupt:
        # the trial in hand is failed and queued again either way (Tuner.run)
        reason, code = (e.reason, e.code) if isinstance(e, Interrupted) else ("stopped", 130)
        console.print(f"[yellow]{reason}[/]: run the same command again to resume the study")
        return code
    finally:
        signal.signal(signal.SIGTERM, previous)
    judged = judge(points, spec.objectives, spec.constraints)
    on_front = [r["point"] for r in judged if r["front"]]
    tuned = tune_remeasure.write_tuned(tuner, on_front) if on_front else None
    page = write_report(
        args.reports / "tune" / tuner.name,
        suite,
        tuner.study,
        trials,
        judged,
        spec.objectives,
        spec.constraints,
        tuned,
    )
    if args.json:
        options.print_json(_as_json(judged, spec, page, tuned))
        return 0 if on_front else 1
    out = options.results()
    _print_front(out, judged, spec)
    out.print(f"report: {page}", highlight=False)
    if tuned is not None:
        out.print(f"tuned suite: {tuned}  (bench run {tuned})", highlight=False)
    return 0 if on_front else 1


def _as_json(judged, spec, page, tuned) -> dict:
    """The judged front as data: each re-measured point, its figures with their intervals."""
    metrics = [o.metric for o in spec.objectives]
    points = []
    for r in judged:
        p = r["point"]
        values = {m: dict(zip(("value", "low", "high"), p.value(m), strict=True)) for m in metrics}
        points.append(
            {
                "trial": p.trial,
                "label": p.label,
                "chain": p.chain,
                "run_id": p.run_id,
                "error": p.error,
                "feasible": r["feasible"],
                "front": r["front"],
                "dominated_by": r["dominated_by"],
                "objectives": values,
                "searched": p.search,
            }
        )
    return {
        "report": str(page),
        "tuned_suite": None if tuned is None else str(tuned),
        "points": points,
    }


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt


def _print_front(console, judged, spec) -> None:
    from bench.analysis.tune_front import fell, format_value

    metrics = [o.metric for o in spec.objectives]
    for r in judged:
        p = r["point"]
        mark = (
            "[green]front[/]"
            if r["front"]
            else "[dim]dominated[/]"
            if r["feasible"]
            else ("[red]breaks a constraint[/]")
        )
        values = ", ".join(f"{m} {format_value(p, m)}" for m in metrics)
        falls = [f"{fell(p, m):.3g}×" for m in metrics if not math.isnan(fell(p, m))]
        fall = f"; re-measured/searched {', '.join(falls)}" if falls else ""
        console.print(f"{mark} trial {p.trial}: {p.label}: {values}{fall}", highlight=False)
