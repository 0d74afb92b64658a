"""Where a counted figure comes from: valgrind's callgrind (anywhere valgrind runs, on a
simulated CPU) or the CPU's hardware counters (``perf_event_open``, where the machine
exposes them). One registry: the counters each source gives, why it cannot give them here,
how its counting process starts and the clock a counted call reads.

The two never share a metric name: callgrind simulates a CPU without AVX-512, so a library
that dispatches on the CPU runs other code there than natively, and a hardware count of the
same call is a different figure. ``instructions`` is callgrind's; ``hw_instructions`` the
hardware's. A run counts from one source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.telemetry import callgrind, perf_events


@dataclass(frozen=True)
class CounterSource:
    name: str
    counters: dict[str, str]  # counter -> its method
    units: dict[str, str]
    missing: Callable[[list[str]], str | None]  # why the counters cannot be read here
    # the command that runs the counting process's python: prefix(out_dir, counters, helper)
    prefix: Callable[[Path, list[str], Path | None], list[str]]
    # a clock for one counter in a counting process: clock(dump prefix, counter, helper)
    clock: Callable[[str, str, Path | None], Any]
    needs_helper: bool  # callgrind's instrumentation switch (callgrind.build_helper)


SOURCES = {
    s.name: s
    for s in (
        CounterSource(
            "callgrind",
            callgrind.COUNTERS,
            {"instructions": "instructions", "estimated_cycles": "estimated_cycles"},
            lambda counters: callgrind.valgrind_missing(),
            callgrind.valgrind_argv,
            callgrind.CallgrindClock,
            True,
        ),
        CounterSource(
            "hardware",
            perf_events.COUNTERS,
            perf_events.UNITS,
            perf_events.hardware_missing,
            lambda out_dir, counters, helper: [],
            lambda prefix, counter, helper: perf_events.PerfEventClock(counter),
            False,
        ),
    )
}
COUNTERS = {name: method for s in SOURCES.values() for name, method in s.counters.items()}


def source_of(counters: list[str] | tuple[str, ...]) -> CounterSource:
    """The one source that gives all these counters (ValueError when they need two)."""
    found = {s.name: s for c in counters for s in SOURCES.values() if c in s.counters}
    if len(found) != 1:
        raise ValueError(
            "counters come from one source a run: "
            + "; ".join(f"{s.name}: {', '.join(s.counters)}" for s in SOURCES.values())
        )
    return next(iter(found.values()))
