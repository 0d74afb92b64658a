"""Where a call's time goes: torch.profiler around a workload's calls, an operator table of
those calls only, and how much of their wall time the operators explain.

``ProfilingClock`` wraps the case's clock: it times as usual and wraps each timed call in
a ``record_function`` range named ``bench/call#k``, so the trace shows the calls and the
table counts what ran inside them (not the workload's setup between loops). A range's own
self time is the part of the call that no operator covers: Python, dispatch and launch
overhead, waiting. Pure functions of the profiler's events (``FunctionEvent``), so they
are tested with events of a real profile and with fakes alike.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import statistics
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CALL = "bench/call#"
TOP_KERNELS = 10


class ProfilingClock:
    """The case's clock, each interval between two marks inside a ``bench/call#k`` range.
    Only the ranges whose time the workload reads (``seconds``) are its timed calls:
    ``calls``. A loop's last mark opens a range no call follows; marks whose intervals are
    never read (an untimed pass, the bookkeeping between a training step's marks) are not
    calls either."""

    def __init__(self, inner: Any) -> None:
        from torch.profiler import record_function

        self._range = record_function
        self.inner = inner
        self.method = inner.method
        self._open: Any = None
        self._k = 0
        self.calls: set[int] = set()

    def _close(self) -> None:
        if self._open is not None:
            self._open.__exit__(None, None, None)
            self._open = None

    def mark(self) -> tuple[int, Any]:
        t = self.inner.mark()
        self._close()
        self._open = self._range(f"{CALL}{self._k}")
        self._open.__enter__()
        self._k += 1
        return self._k - 1, t

    def finish(self) -> None:
        self._close()
        self.inner.finish()

    def seconds(self, a: tuple[int, Any], b: tuple[int, Any]) -> float:
        self.calls.update(range(a[0], b[0]))  # the ranges this interval spans
        return self.inner.seconds(a[1], b[1])


@dataclass
class _Op:
    calls: int = 0
    self_us: float = 0.0
    total_us: float = 0.0
    device_us: float = 0.0
    flops: int = 0
    memory_bytes: int = 0
    shapes: Counter = field(default_factory=Counter)


def _call_index(name: str) -> int | None:
    if not name.startswith(CALL):
        return None
    try:
        return int(name[len(CALL) :])
    except ValueError:
        return None


def _is_cpu(e: Any) -> bool:
    return str(getattr(e, "device_type", "CPU")).endswith("CPU")


def _is_call(e: Any, calls: set[int]) -> bool:
    """A timed call's range as the host recorded it (on a GPU kineto records each range
    again on the device's timeline: not a second call, and not a kernel)."""
    return _is_cpu(e) and _call_index(e.name) in calls


def call_events(events: list[Any], calls: set[int]) -> list[Any]:
    """The ``bench/call#k`` ranges of the timed calls, in order."""
    return sorted((e for e in events if _is_call(e, calls)), key=lambda e: e.time_range.start)


def operator_table(events: list[Any], calls: set[int]) -> dict[str, Any]:
    """What ran inside the profiled calls, per operator and per call: self and total CPU
    time (µs), calls, the commonest input shapes, FLOPs where torch estimates them, memory
    its own allocations kept (bytes, allocated minus freed), device self time where a GPU
    ran; and the share of the calls' wall time that the operators explain."""
    ranges = call_events(events, calls)
    inside: dict[int, bool] = {}
    call_ids = {id(c) for c in ranges}

    def in_call(e: Any) -> bool:
        chain = []
        p = e
        while p is not None and id(p) not in inside:
            if id(p) in call_ids:
                break
            chain.append(p)
            p = p.cpu_parent
        verdict = p is not None and (id(p) in call_ids or inside[id(p)])
        for q in chain:
            inside[id(q)] = verdict
        return verdict

    ops: dict[str, _Op] = {}
    for e in events:
        if _call_index(e.name) is not None or not _is_cpu(e) or not in_call(e):
            continue
        if getattr(e, "is_python_function", False):  # with_stack's frames: not operators
            continue
        op = ops.setdefault(e.name, _Op())
        op.calls += 1
        op.self_us += e.self_cpu_time_total
        op.total_us += e.cpu_time_total
        op.device_us += getattr(e, "self_device_time_total", 0) or 0
        op.flops += e.flops or 0
        op.memory_bytes += e.self_cpu_memory_usage or 0
        if e.input_shapes:
            op.shapes[str(e.input_shapes)] += 1
    n = len(ranges)
    wall_us = sum(c.time_range.end - c.time_range.start for c in ranges)
    outside_us = sum(c.self_cpu_time_total for c in ranges)
    rows = [
        {
            "operator": name,
            "calls_per_call": op.calls / n,
            "self_us_per_call": op.self_us / n,
            "total_us_per_call": op.total_us / n,
            "self_share": op.self_us / wall_us if wall_us else None,
            "device_us_per_call": op.device_us / n if op.device_us else None,
            "flops_per_call": op.flops / n if op.flops else None,
            "memory_bytes_per_call": op.memory_bytes / n,
            "input_shapes": op.shapes.most_common(1)[0][0] if op.shapes else "",
        }
        for name, op in sorted(ops.items(), key=lambda kv: -kv[1].self_us)
    ] if n else []  # fmt: skip
    return {
        "calls": n,
        "wall_us_per_call": wall_us / n if n else None,
        "outside_operators_us_per_call": outside_us / n if n else None,
        "explained_share": 1 - outside_us / wall_us if wall_us else None,
        "operators": rows,
    }


def device_summary(events: list[Any], calls: set[int]) -> dict[str, Any] | None:
    """On a GPU: kernel time per call, the share of the calls' wall time with no kernel
    running (idle), and the top kernels, all inside the calls' windows (the calls are
    timed to the end of their GPU work); None where no device event was recorded."""
    kernels = [e for e in events if not _is_cpu(e) and _call_index(e.name) is None
               and not getattr(e, "is_user_annotation", False)]  # fmt: skip
    ranges = call_events(events, calls)
    if not kernels or not ranges:
        return None
    windows = [(c.time_range.start, c.time_range.end) for c in ranges]
    busy = _overlap(_union([(k.time_range.start, k.time_range.end) for k in kernels]), windows)
    wall = sum(b - a for a, b in windows)
    per: Counter = Counter()
    for k in kernels:
        per[k.name] += _overlap([(k.time_range.start, k.time_range.end)], windows)
    n = len(ranges)
    return {
        "kernel_us_per_call": busy / n,
        "idle_share": 1 - busy / wall if wall else None,
        "top_kernels": [
            {"kernel": name, "us_per_call": us / n}
            for name, us in per.most_common(TOP_KERNELS)
            if us > 0
        ],
    }


def _union(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _overlap(spans: list[tuple[float, float]], windows: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(b, d) - max(a, c)) for a, b in spans for c, d in windows)


def profiled(run: Callable[[Any], Any], device: str, stack: bool = False) -> tuple[Any, Any, Any]:
    """``run(clock)`` under torch.profiler (CPU, and CUDA on a GPU; shapes, memory, FLOPs,
    Python stacks by option), its timed calls marked by a ``ProfilingClock``: (what
    ``run`` returned, the profile, the clock)."""
    from torch.profiler import ProfilerActivity, profile

    from bench.telemetry.timer import PerfCounterClock, device_sync

    activities = [ProfilerActivity.CPU]
    if device.startswith("cuda"):
        activities.append(ProfilerActivity.CUDA)
    # Host time, synchronized at each mark: a call's range then spans its GPU work too.
    clock = ProfilingClock(PerfCounterClock(device_sync(device)))
    with profile(activities=activities, record_shapes=True, profile_memory=True,
                 with_flops=True, with_stack=stack) as prof:  # fmt: skip
        out = run(clock)
        clock.finish()  # a range left open by marks without a finish (an untimed pass)
    return out, prof, clock


def summary(prof: Any, clock: ProfilingClock, stack: bool) -> dict[str, Any]:
    """The operator table of the profiled calls, the device summary and the method."""
    events = list(prof.events())
    table = operator_table(events, clock.calls)
    if not table["calls"]:
        raise RuntimeError("no timed call was profiled")
    return {
        **table,
        "device": device_summary(events, clock.calls),
        "method": (
            "torch.profiler (record_shapes, profile_memory, with_flops"
            f"{', with_stack' if stack else ''}) over {table['calls']} timed calls after "
            "unprofiled ones; self times summed per operator inside the calls"
        ),
    }


def overhead(plain: list[float], profiled_s: list[float]) -> dict[str, Any]:
    """The median call unprofiled and profiled (seconds), and their ratio."""
    import statistics

    a, b = statistics.median(plain), statistics.median(profiled_s)
    return {"unprofiled_s": a, "profiled_s": b, "ratio": b / a if a else None}


def export_trace(prof: Any, path: Path) -> list[dict[str, Any]]:
    """The profile as a gzipped Chrome/Perfetto trace at ``path``, written atomically;
    returns its events."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        raw = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(raw))
        packed = Path(tmp) / path.name
        with open(raw, "rb") as src, gzip.open(packed, "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst)
        with open(raw, "rb") as f:
            events = json.load(f).get("traceEvents") or []
        os.replace(packed, path)
    return events


DEVICE_TYPES = {0: "cpu", 1: "cuda"}  # a [memory] event's "Device Type" (c10::DeviceType)


def call_memory(trace_events: list[dict[str, Any]], calls: set[int]) -> dict[str, Any]:
    """The tensor memory each profiled call adds at its peak, per device: the allocator's
    total at its highest inside the call, less its total when the call began, from the
    trace's ``[memory]`` events (torch's allocations only: not the runtime, the weights
    allocated before, or what the heap keeps). Median and largest over the calls, bytes."""
    windows = sorted(
        (e["ts"], e["ts"] + e.get("dur", 0))
        for e in trace_events
        if e.get("ph") == "X" and e.get("cat") == "user_annotation"
        and _call_index(str(e.get("name"))) in calls
    )  # fmt: skip
    memory: dict[str, list[tuple[float, float]]] = {}
    for e in trace_events:
        if e.get("name") == "[memory]":
            args = e.get("args") or {}
            device = DEVICE_TYPES.get(args.get("Device Type"), f"type {args.get('Device Type')}")
            memory.setdefault(device, []).append((e["ts"], float(args.get("Total Allocated", 0))))
    out: dict[str, Any] = {}
    for device, series in memory.items():
        series.sort()
        peaks = []
        for start, end in windows:
            before = [total for ts, total in series if ts < start]
            base = before[-1] if before else 0.0
            inside = [total for ts, total in series if start <= ts <= end]
            peaks.append(max([base, *inside]) - base)
        if peaks:
            out[device] = {"median_peak_bytes": statistics.median(peaks),
                           "max_peak_bytes": max(peaks)}  # fmt: skip
    return out
