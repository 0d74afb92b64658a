"""A case's profiled pass: one extra process per case, never a timed repeat.

The model is built and optimized as in a timed run; the workload runs once unprofiled (its
warm-up and iterations: the yardstick of the profiler's overhead), then again under
``torch.profiler`` (already warm: no warm-up) over ``calls`` timed calls, each inside a
``bench/call#k`` range (``bench.telemetry.profiler``). What it writes, under the run's
``profiles/`` folder: ``<case>.trace.json.gz`` (Chrome/Perfetto trace); the operator table
is the pass's result, ``<case>.json``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.results import store
from bench.results.schema import CaseResult
from bench.run.context import CaseContext
from bench.spec import registry
from bench.spec.suite import Case
from bench.telemetry import profiler
from bench.telemetry.timer import PerfCounterClock

PASS = "profile"
FLAME_S = 1.0  # seconds of the workload py-spy samples (200 Hz: ~200 stacks)


def profile_case(case: Case, result: CaseResult, ctx: CaseContext, settings: dict[str, Any]):
    """Fill ``result`` with the profile of ``case``'s calls; raises on failure (the case
    runner turns it into the status)."""
    from bench.run.case import build_and_apply

    result.info["pass"] = PASS
    ctx.quality = False  # a workload's own quality checks are not the calls profiled
    built = build_and_apply(case, ctx)
    wl = registry.workloads.get(case.workload.name)
    params = wl.params.model_validate(case.workload.params)
    # the case's own warm-up and iterations, on the clock the profiled calls use (host
    # time, synchronized on a GPU), so that the two compare
    ctx.clock = PerfCounterClock(ctx.sync)
    plain = wl.fn(built.model, params, ctx)

    def run(clock):
        ctx.clock, ctx.warmup, ctx.iterations = clock, 0, settings["calls"]
        return wl.fn(built.model, params, ctx)

    profiled, prof, clock = profiler.profiled(run, ctx.device, settings["stack"])
    table = profiler.summary(prof, clock, settings["stack"])
    trace = Path(settings["dir"]) / f"{store.case_name(case.id)}.trace.json.gz"
    events = profiler.export_trace(prof, trace)
    result.info["profile"] = {
        **table,
        "memory": profiler.call_memory(events, clock.calls),
        "overhead": _overhead(plain.samples, profiled.samples, clock.method),
        "trace": trace.name,
        "trace_bytes": trace.stat().st_size,
        "settings": {k: settings[k] for k in ("calls", "stack", "python")},
        "techniques": built.steps,
    }
    if settings["python"]:
        result.info["profile"]["python"] = _flame_graph(case, ctx, wl, built.model, params,
                                                        Path(settings["dir"]))  # fmt: skip


def _flame_graph(case, ctx, wl, model, params, out: Path) -> dict[str, Any]:
    """The workload's calls once more, unprofiled, while py-spy samples the Python stacks;
    what was not sampled is absent with why."""
    from bench.telemetry import pyspy

    ctx.clock = PerfCounterClock(ctx.sync)
    path = out / f"{store.case_name(case.id)}.flame.svg"

    def work():  # at least FLAME_S of calls: a few calls give too few samples to read
        started = time.perf_counter()
        while True:
            wl.fn(model, params, ctx)
            if time.perf_counter() - started >= FLAME_S:
                return

    try:
        return pyspy.flame_graph(path, work)
    except pyspy.Unavailable as e:
        return {"absent": str(e)}


def _overhead(plain: dict, profiled: dict, method: str) -> dict[str, Any]:
    """Per timed series of the workload: the profiler's overhead on its median call."""
    out = {}
    for series, s in plain.items():
        p = profiled.get(series) or {}
        if s.get("method") == method and s.get("values") and p.get("values"):
            out[series] = profiler.overhead(s["values"], p["values"])
    return out
