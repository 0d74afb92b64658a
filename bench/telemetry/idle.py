"""Idle power: each GPU's (and RAPL's CPU/RAM) mean power over a stretch of doing nothing,
the baseline that "energy over idle" figures subtract. The caller decides what idle holds:
a case holds a CUDA context, so the run measures it holding one
(``bench.run.preparation.idle_with_context``)."""

from __future__ import annotations

import time
from typing import Any

from bench.telemetry.energy import RaplMeter, next_tick, rapl_zones
from bench.telemetry.sampler import Sampler, integrate_power


def idle_power(gpus: list, seconds: float, sampler_hz: float = 10.0) -> dict[str, dict[str, Any]]:
    """Mean power of each GPU (and of RAPL's CPU/RAM) over ``seconds`` of doing nothing,
    each GPU's counter read on its steps. The caller decides what "idle" holds: a case
    holds a CUDA context, which idles higher than a GPU with none (``idle_with_context``)."""
    out: dict[str, dict[str, Any]] = {}
    zones, _ = rapl_zones()
    rapl = RaplMeter(zones) if zones else None
    samplers = [Sampler(g, sampler_hz).start() for g in gpus]
    starts = [next_tick(g) for g in gpus]
    if rapl:
        rapl.begin()
    t0 = time.perf_counter()
    time.sleep(seconds)
    t1 = time.perf_counter()
    if rapl:
        for domain, joules in rapl.end().items():
            out[domain] = {"watts": joules / (t1 - t0), "method": "rapl", "seconds": t1 - t0}
    for g, (e0, s0, opened), smp in zip(gpus, starts, samplers, strict=True):
        e1, s1, closed = next_tick(g) if e0 is not None else (None, t1, False)
        smp.stop()
        # a counter that did not step at both ends is stale: the samples' integral instead
        if e0 is not None and e1 is not None and opened and closed and e1 > e0:
            watts, method, span = (e1 - e0) / 1e3 / (s1 - s0), "nvml_energy_counter", s1 - s0
        else:
            joules = integrate_power(smp.power_series(t0, t1), t0, t1)
            if joules is None:
                continue
            watts, method, span = joules / (t1 - t0), "nvml_power_integral", t1 - t0
        out[f"gpu{g.index}"] = {"watts": watts, "method": method, "seconds": span}
    return out
