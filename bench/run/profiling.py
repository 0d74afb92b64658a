"""A case's profiled pass: one extra process per case, never a timed repeat.

The model is built and optimized as in a timed run; the workload runs once unprofiled (its
warm-up, then ``calls`` timed calls: the yardstick of the profiler's overhead), then again
under ``torch.profiler`` (already warm: no warm-up) with each timed call inside a
``bench/call#k`` range (``bench.telemetry.profiler``). What it writes, under the run's
``profiles/`` folder: ``<case>.trace.json.gz`` (Chrome/Perfetto trace) and the operator
table in the pass's result, ``<case>.json``.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench.results import store
from bench.results.schema import CaseResult
from bench.run.context import CaseContext
from bench.spec import registry
from bench.spec.suite import Case
from bench.telemetry import profiler
from bench.telemetry.timer import clock_for

PASS = "profile"


def profile_case(case: Case, result: CaseResult, ctx: CaseContext, settings: dict[str, Any]):
    """Fill ``result`` with the profile of ``case``'s calls; raises on failure (the case
    runner turns it into the status)."""
    from torch.profiler import ProfilerActivity, profile

    from bench.run.case import build_and_apply

    result.info["pass"] = PASS
    built = build_and_apply(case, ctx)
    wl = registry.workloads.get(case.workload.name)
    params = wl.params.model_validate(case.workload.params)
    plain = wl.fn(built.model, params, ctx)  # the case's own warm-up and iterations
    activities = [ProfilerActivity.CPU]
    if ctx.device.startswith("cuda"):
        activities.append(ProfilerActivity.CUDA)
    clock = profiler.ProfilingClock(clock_for(ctx.device))
    ctx.clock, ctx.warmup, ctx.iterations = clock, 0, settings["calls"]
    with profile(
        activities=activities,
        record_shapes=True,
        profile_memory=True,
        with_flops=True,
        with_stack=settings["stack"],
    ) as prof:
        profiled = wl.fn(built.model, params, ctx)
    events = list(prof.events())
    table = profiler.operator_table(events, clock.trailing)
    if not table["calls"]:
        raise RuntimeError(f"workload {case.workload.name!r} timed no call to profile")
    trace = Path(settings["dir"]) / f"{store.case_name(case.id)}.trace.json.gz"
    size = profiler.export_trace(prof, trace)
    result.info["profile"] = {
        **table,
        "device": profiler.device_summary(events, clock.trailing),
        "overhead": _overhead(plain.samples, profiled.samples, clock.method),
        "trace": trace.name,
        "trace_bytes": size,
        "settings": {k: settings[k] for k in ("calls", "stack")},
        "activities": [a.name for a in activities],
        "techniques": built.steps,
        "method": (
            "torch.profiler (record_shapes, profile_memory, with_flops"
            f"{', with_stack' if settings['stack'] else ''}) over {table['calls']} timed calls "
            "after the unprofiled ones; self times summed per operator inside the calls"
        ),
    }


def _overhead(plain: dict, profiled: dict, method: str) -> dict[str, Any]:
    """Per timed series: the median call unprofiled and profiled (seconds), and their ratio."""
    out = {}
    for series, s in plain.items():
        p = profiled.get(series) or {}
        if s.get("method") != method or not s.get("values") or not p.get("values"):
            continue
        a, b = statistics.median(s["values"]), statistics.median(p["values"])
        out[series] = {"unprofiled_s": a, "profiled_s": b, "ratio": b / a if a else None}
    return out
