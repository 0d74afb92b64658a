"""Timing: one clock per device, warm-up discarded, every sample kept.

On CUDA the clock is a pair of CUDA events around each call, read after one final
synchronisation (no host sync between calls to distort the queue). Elsewhere it is
``time.perf_counter``. Marks are taken back to back, so call i lasts from mark i to
mark i+1 and nothing between calls goes unmeasured.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

AUTO_WINDOW = 5  # warm-up "auto": compare medians of consecutive windows of this many calls
AUTO_TOLERANCE = 0.02  # ... and stop once they agree within 2%
AUTO_MAX = 200  # ... or after this many calls, recorded as not settled


def _no_sync() -> None:
    return None


def device_sync(device: str) -> Callable[[], None]:
    """The function that waits for ``device`` to drain its queue (a no-op on CPU)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.synchronize
    return _no_sync


class PerfCounterClock:
    method = "perf_counter"

    def __init__(self, sync: Callable[[], None] = _no_sync):
        self.sync = sync
        # With nothing to wait for, a mark is the bare clock read: on a 10 µs call every
        # extra Python call between two marks would show up as ~1% of the result.
        self.mark = time.perf_counter if sync is _no_sync else self._synced_mark

    def _synced_mark(self) -> float:
        self.sync()
        return time.perf_counter()

    def finish(self) -> None:
        self.sync()

    def seconds(self, a: float, b: float) -> float:
        return b - a


class CudaEventClock:
    method = "cuda_event"

    def __init__(self) -> None:
        import torch

        self._torch = torch

    def mark(self) -> Any:
        event = self._torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def finish(self) -> None:
        self._torch.cuda.synchronize()

    def seconds(self, a: Any, b: Any) -> float:
        return a.elapsed_time(b) / 1e3


def clock_for(device: str) -> PerfCounterClock | CudaEventClock:
    return CudaEventClock() if device.startswith("cuda") else PerfCounterClock(device_sync(device))


@dataclass
class Samples:
    """Seconds per call: ``warmup`` were discarded from statistics, ``values`` are measured."""

    values: list[float]
    warmup: list[float] = field(default_factory=list)
    warmup_policy: str = "fixed"
    settled: bool | None = None  # for "auto": did the running median settle before AUTO_MAX
    unit: str = "s"
    method: str = "perf_counter"

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "method": self.method,
            "warmup_policy": self.warmup_policy,
            "settled": self.settled,
            "warmup": self.warmup,
            "values": self.values,
        }


def _timed(fn: Callable[[], object], n: int, clock) -> list[float]:
    mark = clock.mark
    marks = [mark()]
    append = marks.append  # bound once: the loop between two marks stays minimal
    for _ in range(n):
        fn()
        append(mark())
    clock.finish()
    return [clock.seconds(a, b) for a, b in itertools.pairwise(marks)]


def warm_up(fn: Callable[[], object], policy: int | str, clock) -> tuple[list[float], bool | None]:
    """Run ``fn`` until warm: a fixed count, or ("auto") until the median of the last
    AUTO_WINDOW calls is within AUTO_TOLERANCE of the window before it."""
    if policy != "auto":
        return _timed(fn, int(policy), clock), None
    out: list[float] = []
    while len(out) < AUTO_MAX:
        out += _timed(fn, AUTO_WINDOW, clock)
        if len(out) >= 2 * AUTO_WINDOW:
            prev = statistics.median(out[-2 * AUTO_WINDOW : -AUTO_WINDOW])
            last = statistics.median(out[-AUTO_WINDOW:])
            if prev > 0 and abs(last - prev) / prev <= AUTO_TOLERANCE:
                return out, True
    return out, False


def time_calls(fn: Callable[[], object], *, warmup: int | str, iterations: int, clock) -> Samples:
    """Warm ``fn`` up, then time ``iterations`` calls of it, each on its own."""
    discarded, settled = warm_up(fn, warmup, clock)
    values = _timed(fn, iterations, clock)
    return Samples(
        values=values,
        warmup=discarded,
        warmup_policy="auto" if warmup == "auto" else "fixed",
        settled=settled,
        method=clock.method,
    )
