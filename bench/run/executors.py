"""``bench run --executor slurm|local``: a suite's shards as a job array through submitit,
collected into one run folder.

Each job runs ``bench run --shard K/N`` of the suite (a shard keeps every case with its
group's baseline, so its ratios stand alone) into a folder of its own under the results
root's ``.shards/``; when every job has ended, ``bench merge`` makes the one run folder a
plain run would have made (its manifest names the shard runs it holds). ``slurm`` submits
a Slurm job array (``sbatch``; the results root must be on a disk the nodes share);
``local`` runs the same jobs as processes of this machine through submitit's local
executor (what the tests exercise). A job that fails leaves its shard's cases out, and the
merged run says ``partial``.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.spec.suite import Suite

SHARDS = ".shards"  # under the results root: one run folder per job


def shard_job(suite_path: str, shard: str, results: str, opts: dict[str, Any], overrides=()) -> str:
    """One job of the array: the shard's run, its run folder returned. Runs on a node; the
    suite's --set overrides travel with it, so every shard runs the same effective suite."""
    from bench.run import offline
    from bench.run.suite_driver import RunOptions, run_suite
    from bench.spec.suite import load_suite

    offline.enter()  # a job process of the harness's own (submitit), never the user's
    outcome = run_suite(
        load_suite(Path(suite_path), overrides),
        RunOptions(results=Path(results), shard=shard, **opts),
    )
    return str(outcome.run_dir)


def job_parameters(kind: str, per_job_s: float, jobs: int, extra: list[str]) -> dict[str, Any]:
    """submitit parameters: a time limit of ``per_job_s`` (and 5 minutes' slack), then the
    user's ``--slurm KEY=VALUE`` (e.g. slurm_partition=gpu)."""
    params: dict[str, Any] = {"timeout_min": math.ceil(per_job_s / 60) + 5}
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--slurm {item!r}: expected KEY=VALUE, e.g. slurm_partition=gpu")
        params[key] = int(value) if value.isdigit() else value
    if kind == "slurm":
        params.setdefault("slurm_array_parallelism", jobs)
    return params


def check_executor(kind: str) -> None:
    if kind == "slurm" and shutil.which("sbatch") is None:
        raise UserError(
            "--executor slurm: no `sbatch` on this machine's PATH (run it on a Slurm login node)"
        )


def run_on_executor(
    suite: Suite, suite_path: Path, opts, kind: str, jobs: int, extra: list[str], console
) -> Path:
    """Submit the shards, wait for them, merge them; the merged run's folder."""
    import submitit

    from bench.run.merge import merge_runs
    from bench.run.suite_driver import select_cases

    check_executor(kind)
    cases = select_cases(suite.cases, opts.filter, None)
    groups = {c.group for c in cases}  # what --shard deals out
    jobs = max(1, min(jobs, len(groups)))
    root = opts.results / SHARDS / time.strftime("%Y%m%d-%H%M%S")
    executor = submitit.AutoExecutor(folder=root / "submitit", cluster=kind)
    try:
        largest = max(len(select_cases(cases, None, f"{k}/{jobs}")) for k in range(1, jobs + 1))
        per_job = largest * suite.run.repeats * suite.run.timeout_s  # the largest shard's
        executor.update_parameters(**job_parameters(kind, per_job, jobs, extra))
    except (NameError, TypeError, ValueError) as e:  # submitit names what it does not know
        raise UserError(f"--slurm: {str(e).splitlines()[0]}") from None
    shared = {"filter": opts.filter, "timeout": opts.timeout, "argv": opts.argv}
    args = [
        (str(suite_path.resolve()), f"{k}/{jobs}", str(root), shared, suite.overrides)
        for k in range(1, jobs + 1)
    ]
    submitted = executor.map_array(shard_job, *zip(*args, strict=True))
    console.print(f"submitted {len(submitted)} {kind} jobs ({submitted[0].job_id.split('_')[0]}); "
                  f"logs: {root / 'submitit'}")  # fmt: skip
    done = []
    for job in submitted:
        try:
            done.append(Path(job.result()))
        except Exception as e:  # submitit re-raises the job's error (or its death) here
            first = str(e).strip().splitlines()
            console.print(f"job {job.job_id} failed: {first[-1] if first else type(e).__name__}")
    if not done:
        raise UserError(f"every {kind} job failed; their logs are in {root / 'submitit'}")
    return merge_runs(done, opts.results)
