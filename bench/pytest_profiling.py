"""``perf.profile``'s work inside its forked process: a warmed call profiled as a suite
case's calls are (``bench.telemetry.profiler``), its table and trace written under the
perf folder, and the line the terminal summary prints for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def profile_call(call, clock, cuda: bool, calls: int, stack: bool, out: Path, key: str) -> dict:
    """``calls`` unprofiled calls of a warmed ``call`` on ``clock``, then ``calls`` under
    torch.profiler; writes ``out``.json (the table) and ``out``.trace.json.gz."""
    from bench.results.store import write_json_atomic
    from bench.telemetry import profiler
    from bench.telemetry.timer import time_calls

    plain = time_calls(call, warmup=0, iterations=calls, clock=clock)
    samples, prof, marks = profiler.profiled(
        lambda c: time_calls(call, warmup=0, iterations=calls, clock=c),
        "cuda" if cuda else "cpu",
        stack,
    )
    table = profiler.summary(prof, marks, stack)
    trace = out.with_name(out.name + ".trace.json.gz")
    events = profiler.export_trace(prof, trace)
    table.update(test=key, trace=str(trace),
                 memory=profiler.call_memory(events, marks.calls),
                 overhead=profiler.overhead(plain.values, samples.values))  # fmt: skip
    write_json_atomic(out.with_name(out.name + ".json"), table)
    return table


def summary_line(key: str, table: dict[str, Any]) -> str:
    top = ", ".join(f"{o['operator']} {o['self_share']:.0%}" for o in table["operators"][:3])
    per_call = f"{table['wall_us_per_call'] / 1e3:.3f} ms/call"
    return (f"{key}: profiled, operators explain {table['explained_share']:.0%} of {per_call} "
            f"({top}); {table['trace']}")  # fmt: skip
