"""``bench tune --executor local|slurm``: jobs through submitit, each adding trials to the
one study (Optuna's storage is the coordination)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from bench.errors import UserError
from bench.run.tune import TuneOptions, Tuner
from bench.spec.suite import load_suite


def tune_job(suite_path: str, results: str, storage: str, trials, minutes, overrides=()) -> int:
    """One job of ``bench tune --executor``: this node's trials of the shared study (no
    front: the submitting process re-measures it once every job has ended). The suite's
    --set overrides travel with it: the same effective suite, the same study."""
    from bench.run.suite_driver import make_console
    from bench.spec.tune import parse_tune

    suite = load_suite(Path(suite_path), overrides)
    data = tomllib.loads(suite.text)
    spec = parse_tune(data.get("tune"), data["workloads"][0]["name"], suite.path)
    opts = TuneOptions(Path(results), storage, trials, minutes)
    return Tuner(suite, spec, opts, make_console()).run()


def run_jobs(tuner: Tuner, suite_path: Path, kind: str, jobs: int, extra: list[str]) -> int:
    """``jobs`` processes of this machine (``local``) or Slurm jobs (``slurm``), each adding
    trials to the one study until its budget is spent; the trials they measured."""
    import submitit

    from bench.run.executors import check_executor, job_parameters

    check_executor(kind)
    if kind == "slurm" and tuner.opts.storage.startswith("sqlite"):
        tuner.console.print(
            "[yellow]note[/]: Slurm jobs share a SQLite study only on a disk "
            "every node sees; --history-url postgresql://… is safer"
        )
    o, spec = tuner.opts, tuner.spec
    per_trial = 3 * spec.repeats * tuner.suite.run.timeout_s  # case and baseline, at timeout
    per_job = 60 * o.budget_minutes if o.budget_minutes else per_trial * (o.budget_trials or 1)
    root = tuner.folder / "submitit"
    executor = submitit.AutoExecutor(folder=root, cluster=kind)
    try:
        executor.update_parameters(**job_parameters(kind, per_job, jobs, extra))
    except (NameError, TypeError, ValueError) as e:  # submitit names what it does not know
        raise UserError(f"--slurm: {str(e).splitlines()[0]}") from None
    args = (
        str(suite_path.resolve()),
        str(o.results.resolve()),
        o.storage,
        o.budget_trials,
        o.budget_minutes,
        tuner.suite.overrides,
    )
    submitted = executor.map_array(tune_job, *([a] * jobs for a in args))
    tuner.console.print(f"submitted {jobs} {kind} jobs to study {tuner.name}; logs: {root}")
    total = 0
    for job in submitted:
        try:
            total += job.result()
        except Exception as e:  # submitit re-raises the job's error (or its death) here
            lines = str(e).strip().splitlines()
            tuner.console.print(f"job {job.job_id} failed: {lines[-1] if lines else e!r}")
    return total
