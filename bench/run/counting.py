"""Count one case's instructions: its model built and optimized as in a timed run, its
workload run with a counting clock in place of the timer (``bench.telemetry.counters``:
callgrind's or the hardware's).

Runs inside the counting server (``count_server``: under valgrind for callgrind), in a
child forked for the case. One intra-op thread: valgrind runs threads one at a time, a
hardware counter follows the calling thread, and a thread pool's spinning would be counted
as work. The count measures the work a call does, not how it spreads over cores; the method
says so.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.results.metric_info import COUNTS
from bench.results.schema import CaseResult, Metric
from bench.run.case import build_and_apply, now_iso
from bench.run.context import CaseContext
from bench.spec import registry
from bench.spec.suite import Case
from bench.telemetry.callgrind import COUNT_ENV

THREADS = 1
WARMUP = 1  # counts do not settle like timings; one call pays for first-use allocations


def metric_name(series: str, counter: str) -> str:
    """'instructions' for a workload's headline series ("latency": one whole call),
    'decode_step_instructions' for another."""
    return counter if series == "latency" else f"{series}_{counter}"


def count_case(
    case: Case,
    counters: list[str],
    iterations: int,
    clock_for: Callable[[str], Any],
    run_id: str | None,
    units: dict[str, str],
) -> CaseResult:
    """The case's counts per call, one figure per counter and timed series: the median of
    ``iterations`` counted calls after one discarded (it pays one-off allocations);
    ``clock_for(counter)`` gives the clock that counts them. Raises on any failure: the
    server turns it into the result's status."""
    import torch

    started, t0 = now_iso(), time.perf_counter()
    torch.set_num_threads(THREADS)
    torch.manual_seed(case.run["seed"])
    run = case.run
    ctx = CaseContext(run["device"], run["dtype"], run["seed"], WARMUP, iterations,
                      model=case.model)  # fmt: skip
    built = build_and_apply(case, ctx)
    wl = registry.workloads.get(case.workload.name)
    params = wl.params.model_validate(case.workload.params)
    metrics: list[Metric] = []
    samples: dict[str, dict[str, Any]] = {}
    for counter in counters:
        # The workload runs once per counter: each of its series is made of the values its
        # clock returns, and a clock reads one counter.
        clock = clock_for(counter)
        ctx.clock = clock
        out = wl.fn(built.model, params, ctx)
        clock.finish()
        clock.discard()
        for series, s in out.samples.items():
            if s.get("method") != clock.method or not s.get("values"):
                continue  # a series the clock did not count (e.g. a wall-clock total)
            name = metric_name(series, counter)
            if name not in COUNTS:  # e.g. every decode step pooled: decode_step_* has them
                continue
            values = s["values"]
            method = (f"{clock.method} (median of {len(values)} calls; {THREADS} intra-op "
                      f"thread; MKL_CBWR={COUNT_ENV['MKL_CBWR']})")  # fmt: skip
            unit = units[counter]
            metrics.append(Metric(name, statistics.median(values), unit, method))
            samples[name] = {**s, "unit": unit}
    return CaseResult(
        case=case.to_json(),
        case_id=case.id,
        case_hash=case.hash,
        repeat=0,
        status="ok",
        started=started,
        ended=now_iso(),
        wall_s=time.perf_counter() - t0,
        metrics=metrics,
        samples=samples,
        info={
            "pass": "count",
            "counters": counters,
            "torch_threads": THREADS,
            "techniques": built.steps,
            "model": built.info,
            "pid": os.getpid(),
        },
        run_id=run_id,
    )


__all__ = ["count_case", "metric_name"]
