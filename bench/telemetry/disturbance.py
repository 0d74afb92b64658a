"""What disturbed a process while it was measured: the machine's CPU stolen by the
hypervisor, other processes' CPU time, this process's involuntary context switches, and the
CPU clock where the kernel shows it. Read from /proc (Linux); elsewhere absent with why.

A timed window shares the machine with whatever else runs: on a 2-core VM another process
keeping one core busy takes half the machine, and a case measured then can be many times
slower than its median. The figures say so beside the timing instead of leaving a reader to
guess why one repeat is an outlier. Processes the case itself starts (compile workers)
are not in its own CPU time, so they count as others.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.results.disturbance import OTHERS_CORES_LIMIT, STEAL_LIMIT

METHOD = "proc_stat_and_getrusage"


def _proc_stat() -> tuple[list[int], float] | None:
    """(the aggregate CPU line's fields in clock ticks, seconds of one tick)."""
    try:
        line = Path("/proc/stat").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    fields = line.split()
    if fields[0] != "cpu":
        return None
    return [int(x) for x in fields[1:]], 1.0 / os.sysconf("SC_CLK_TCK")


def cpu_mhz() -> float | None:
    """The mean current clock of the CPUs, in MHz, where the kernel reports it."""
    freqs = []
    for f in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_cur_freq"):
        with contextlib.suppress(OSError, ValueError):
            freqs.append(int(f.read_text()) / 1000)
    if not freqs:
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("cpu MHz"):
                    freqs.append(float(line.split(":", 1)[1]))
        except (OSError, ValueError):
            pass
    return sum(freqs) / len(freqs) if freqs else None


@dataclass
class _Mark:
    wall: float
    stat: tuple[list[int], float] | None
    own_cpu: float  # this process's user + system seconds, all its threads
    nivcsw: int


def _mark() -> _Mark:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return _Mark(time.perf_counter(), _proc_stat(), own.ru_utime + own.ru_stime, own.ru_nivcsw)


class Window:
    """``begin()`` before the measured calls, ``end()`` after: the disturbance between."""

    def __init__(self) -> None:
        self._start: _Mark | None = None

    def begin(self) -> Window:
        self._start = _mark()
        return self

    def end(self) -> dict[str, Any]:
        """The window's figures (each with its unit), whether it was disturbed, and what
        could not be read."""
        a, b = self._start, _mark()
        assert a is not None, "end() before begin()"
        wall = b.wall - a.wall
        out: dict[str, Any] = {
            "seconds": wall,
            "method": METHOD,
            "units": UNITS,
            "involuntary_switches": b.nivcsw - a.nivcsw,
            "absent": {},
        }
        mhz = cpu_mhz()
        if mhz is None:
            out["absent"]["cpu_mhz"] = "the kernel shows no CPU clock here"
        else:
            out["cpu_mhz"] = mhz
        if a.stat is None or b.stat is None or wall <= 0:
            out["absent"]["others_cores"] = "no /proc/stat here"
            out["disturbed"] = None
            return out
        (ta, tick), (tb, _) = a.stat, b.stat
        d = [y - x for x, y in zip(ta, tb, strict=False)]
        # user nice system idle iowait irq softirq steal [guest guest_nice: inside user]
        busy = (d[0] + d[1] + d[2] + d[5] + d[6]) * tick
        steal = d[7] * tick if len(d) > 7 else 0.0
        total = sum(d[:8]) * tick
        others = max(0.0, busy - (b.own_cpu - a.own_cpu))
        out["others_cores"] = others / wall
        out["steal_fraction"] = steal / total if total > 0 else 0.0
        # /proc/stat counts in ticks (10 ms) per CPU: one tick in a 60 ms window on 2 cores
        # reads as 8% stolen. A window is called disturbed only when the figure minus what
        # rounding alone can add still reaches the limit: a tick per CPU for steal, and for
        # the others' time a tick per CPU plus one per busy counter summed (5).
        cpus = os.cpu_count() or 1
        out["tick_s"] = tick
        out["disturbed"] = bool(
            (others - (5 + cpus) * tick) / wall >= OTHERS_CORES_LIMIT
            or (total > 0 and (steal - cpus * tick) / total >= STEAL_LIMIT)
        )
        return out


UNITS = {
    "seconds": "s",
    "others_cores": "cores (other processes' CPU seconds per second)",
    "steal_fraction": "1 (share of the machine's CPU time)",
    "involuntary_switches": "count",
    "cpu_mhz": "MHz",
    "tick_s": "s (the resolution of /proc/stat's counts)",
}
