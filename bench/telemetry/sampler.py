"""A background thread that samples the GPU through NVML at a fixed rate.

Each row is timestamped with ``time.perf_counter`` (the clock the energy windows use),
so power can be integrated over exactly a window, and the series is kept with the case
for plots. The thread sleeps between samples on an Event: it never spins.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

from bench.telemetry.nvml import Gpu


class Sampler:
    def __init__(self, gpu: Gpu, hz: float = 10.0):
        if hz <= 0:
            raise ValueError("sampling rate must be positive")
        self.gpu = gpu
        self.period = 1.0 / hz
        self.rows: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()  # a closing row, so a window ending now is covered
        return self.rows

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def sample(self) -> None:
        t = time.perf_counter()
        try:
            row = {"t": t, **self.gpu.snapshot()}
        except Exception as e:  # a thread that died here would leave the window unsampled
            row = {"t": t, "error": f"{type(e).__name__}: {e}"}
        self.rows.append(row)

    def _loop(self) -> None:
        next_t = time.perf_counter()
        while not self._stop.is_set():
            self.sample()
            next_t += self.period
            self._stop.wait(max(0.0, next_t - time.perf_counter()))

    def power_series(self, t0: float, t1: float) -> list[tuple[float, float]]:
        """(time, watts) rows in [t0, t1], plus the nearest row on each side for the edges."""
        pts = sorted((r["t"], r["power_w"]) for r in self.rows if r.get("power_w") is not None)
        before = [p for p in pts if p[0] < t0][-1:]
        after = [p for p in pts if p[0] > t1][:1]
        return before + [p for p in pts if t0 <= p[0] <= t1] + after

    def to_json(self) -> dict[str, Any]:
        return {"hz": 1.0 / self.period, "clock": "perf_counter", "rows": self.rows}


def integrate_power(series: list[tuple[float, float]], t0: float, t1: float) -> float | None:
    """Joules over [t0, t1] by the trapezoid rule on the power samples, linearly
    interpolated at the window edges. None without samples on both sides of the window."""
    if len(series) < 2 or series[0][0] > t0 or series[-1][0] < t1:
        return None

    def at(t: float) -> float:
        for (ta, pa), (tb, pb) in itertools.pairwise(series):
            if ta <= t <= tb:
                return pa if tb == ta else pa + (pb - pa) * (t - ta) / (tb - ta)
        raise ValueError(t)

    pts = [(t0, at(t0)), *[p for p in series if t0 < p[0] < t1], (t1, at(t1))]
    return sum((tb - ta) * (pa + pb) / 2 for (ta, pa), (tb, pb) in itertools.pairwise(pts))
