"""Energy of a window of work: GPU through NVML, CPU and RAM through RAPL or codecarbon.

GPU: the delta of NVML's total-energy counter, read right after synchronising at both
edges of the window. Where the counter is missing, the sampler's power readings are
integrated instead (labelled ``nvml_power_integral``); where both exist, the integral is
kept as a cross-check and a disagreement over 10% is flagged. The counter advances about
10 times a second, so a window is looped until it lasts ``min_s`` (never under 1 s) and
the energy divided by the calls made.

CPU and RAM: RAPL counters (system-wide, wrap-around handled) when readable; otherwise
codecarbon's model from the CPU's TDP and load, labelled ``codecarbon_model``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.results.schema import Metric
from bench.telemetry.nvml import MIG_ENERGY_ABSENT
from bench.telemetry.sampler import Sampler, integrate_power

POWERCAP = Path("/sys/class/powercap")
CROSS_CHECK_LIMIT = 0.10
GPU_MIN_WINDOW_S = 2.0  # the counter steps every ~0.1 s: +-5% at most over 2 s, unaligned
TICK_WAIT_S = 0.5  # longest wait for the counter's next step (5 of Hopper's)
TICK_POLL_S = 0.0005  # how often the counter is read while waiting for its step
J_PER_KWH = 3.6e6


# --- CPU / RAM -------------------------------------------------------------------------


@dataclass
class RaplZone:
    name: str  # "package-0", "dram", ...
    path: Path
    max_uj: int

    def read(self) -> int:
        return int((self.path / "energy_uj").read_text())

    def delta_j(self, start: int, end: int) -> float:
        if end < start:  # the counter wrapped around once during the window
            end += self.max_uj
        return (end - start) / 1e6


def rapl_zones(root: Path | None = None) -> tuple[list[RaplZone], str | None]:
    """Readable package and DRAM zones, or ([], why not)."""
    root = root or POWERCAP
    if not root.is_dir():
        return [], f"no {root} (RAPL not exposed on this machine)"
    zones = []
    for d in sorted(root.glob("intel-rapl:*")):
        try:
            name = (d / "name").read_text().strip()
            zone = RaplZone(name, d, int((d / "max_energy_range_uj").read_text()))
            zone.read()
        except (OSError, ValueError):
            continue
        if name.startswith("package") or name == "dram":
            zones.append(zone)
    if not zones:
        return [], f"no readable RAPL zones under {root} (permissions?)"
    return zones, None


class RaplMeter:
    method = "rapl"

    def __init__(self, zones: list[RaplZone]):
        self.zones = zones
        self._start: list[int] = []

    def begin(self) -> None:
        self._start = [z.read() for z in self.zones]

    def end(self) -> dict[str, float]:
        out = {"cpu": 0.0}
        for z, s in zip(self.zones, self._start, strict=True):
            domain = "ram" if z.name == "dram" else "cpu"
            out[domain] = out.get(domain, 0.0) + z.delta_j(s, z.read())
        return out


class CodecarbonMeter:
    method = "codecarbon_model"

    def __init__(self, country: str, measure_every_s: float = 1e6):
        self.country = country
        # One reading, at the end: no timer thread waking mid-window, and no race. Where
        # codecarbon's timer fires as the tracker stops, both readings take the time since
        # the last one and the window's energy is counted twice (seen with codecarbon 3.3.2:
        # 20 W of RAM for its 10 W model over a 1 s window, one window in four).
        self.measure_every_s = measure_every_s
        self._tracker: Any = None

    def begin(self) -> None:
        from codecarbon import OfflineEmissionsTracker

        # Its constructor logs at INFO before honouring log_level.
        logging.getLogger("codecarbon").setLevel(logging.ERROR)

        self._tracker = OfflineEmissionsTracker(
            country_iso_code=self.country,
            output_methods=[],  # no files, no network: the numbers come back to us
            log_level="error",
            tracking_mode="process",
            allow_multiple_runs=True,
            measure_power_secs=self.measure_every_s,
        )
        self._tracker.start()

    def end(self) -> dict[str, float]:
        self._tracker.stop()
        data = self._tracker.final_emissions_data
        return {"cpu": data.cpu_energy * J_PER_KWH, "ram": data.ram_energy * J_PER_KWH}


def cpu_meter(country: str) -> tuple[RaplMeter | CodecarbonMeter | None, str | None]:
    """RAPL's meter where readable, else codecarbon's model, else None; and why not RAPL."""
    zones, why = rapl_zones()
    if zones:
        return RaplMeter(zones), None
    try:
        import codecarbon  # noqa: F401
    except ImportError as e:  # a GPU machine may lack it: its GPU energy is still measured
        return None, f"{why}, and codecarbon, which would model CPU and RAM, does not import: {e}"
    return CodecarbonMeter(country), why


def co2_kg(joules: float, country: str) -> float:
    """CO2-equivalent of ``joules`` at the country's average grid intensity (codecarbon data)."""
    from codecarbon.core.emissions import Emissions
    from codecarbon.core.units import Energy
    from codecarbon.external.geography import GeoMetadata
    from codecarbon.input import DataSource

    energy = Energy.from_energy(kWh=joules / J_PER_KWH)
    return float(
        Emissions(DataSource()).get_country_emissions(energy, GeoMetadata(country_iso_code=country))
    )


# --- the window ---------------------------------------------------------------------------


@dataclass
class EnergyWindow:
    calls: int = 0
    seconds: float = 0.0
    metrics: list[Metric] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def next_tick(gpu, wait_s: float = TICK_WAIT_S) -> tuple[int | None, float, bool]:
    """Wait for NVML's energy counter to step: (its value, when read, whether read on a
    step). The counter moves in steps (about every 100 ms on Hopper), so a window read at
    arbitrary times is off by up to a step at each edge; read on a step, it is exact to the
    polling interval. A counter that does not move within ``wait_s`` is read as it stands;
    a missing one reads None."""
    first = gpu.energy_mj()
    deadline = time.perf_counter() + wait_s
    while True:
        value, t = gpu.energy_mj(), time.perf_counter()
        if first is None or value is None:
            return None, t, False
        if value != first:
            return value, t, True
        if t > deadline:
            return value, t, False
        time.sleep(TICK_POLL_S)


def measure_energy(
    call: Callable[[], object],
    *,
    units: dict[str, float],
    sync: Callable[[], None],
    min_s: float,
    totals: dict[str, float] | None = None,
    gpu=None,
    sampler: Sampler | None = None,
    cpu=None,
    idle: dict[str, dict[str, Any]] | None = None,
    country: str = "USA",
    device_domain: str = "cpu",
) -> EnergyWindow:
    """Loop ``call`` for at least ``min_s`` seconds and report energy per call and per unit.

    ``units`` is the work one call does, e.g. {"tokens": 256, "samples": 8}. Derived
    figures (J/token, tokens/kWh, CO2) use the energy of ``device_domain``: the GPU for a
    CUDA case, CPU + RAM otherwise.

    With a GPU the window opens on a step of its energy counter and closes on the first step
    after the last call, so the counter and the power integral cover the same interval. The
    GPU idles from the last call to that step (under one step): that tail's energy, from
    the power samples (else the run's idle power), is taken out of the calls' share.
    """
    if min_s < 1.0:
        raise ValueError("energy windows shorter than 1 s are not meaningful")
    win = EnergyWindow()
    if gpu is not None and min_s < GPU_MIN_WINDOW_S:
        win.info["min_s_raised"] = {
            "asked": min_s,
            "used": GPU_MIN_WINDOW_S,
            "why": "NVML's energy counter steps about every 100 ms: shorter windows scatter "
            "by more than the 10% cross-check allows",
        }
        min_s = GPU_MIN_WINDOW_S
    sync()
    cpu_t0 = time.perf_counter()
    if cpu is not None:
        cpu.begin()
    g0, t0, opened = next_tick(gpu) if gpu is not None else (None, time.perf_counter(), False)
    while True:
        call()
        win.calls += 1
        sync()
        if time.perf_counter() - t0 >= min_s:
            break
    work_end = time.perf_counter()
    # The CPU meter runs from before the wait for the counter's step to the last call: its
    # joules are scaled to the calls' time (the wait polls the counter, a light load).
    cpu_joules = cpu.end() if cpu is not None else {}
    cpu_scale = (work_end - t0) / (work_end - cpu_t0)
    g1, t1, closed = None, work_end, False
    if g0 is not None:
        g1, t1, closed = next_tick(gpu) if opened else (gpu.energy_mj(), work_end, False)
    win.seconds = work_end - t0
    domains: dict[str, tuple[float, str]] = {}
    if gpu is not None:
        edges = (g0, g1, opened, closed)
        domains.update(_gpu_energy(win, gpu, sampler, idle, edges, (t0, work_end, t1)))
    for domain, joules in cpu_joules.items():
        domains[domain] = (joules * cpu_scale, cpu.method)

    _energy_metrics(win, domains, units, idle, country, device_domain, totals)
    return win


def _gpu_energy(win, gpu, sampler, idle, edges, times) -> dict[str, tuple[float, str]]:
    """The GPU's joules over the calls of ``win``: the counter's delta over [t0, t1] less
    the idle tail [work_end, t1], cross-checked against the power integral over [t0, t1];
    the integral alone where there is no counter, or where the counter stopped stepping
    (it moved before the window and not after it, or not at all: a stale reading)."""
    (g0, g1, opened, closed), (t0, work_end, t1) = edges, times
    name = f"gpu{gpu.index}"
    counter = (g1 - g0) / 1e3 if g0 is not None and g1 is not None else None
    stale = None
    if opened and not closed:
        stale = "NVML's energy counter stopped stepping during the window"
    elif counter is not None and counter <= 0:
        stale = f"NVML's energy counter did not advance over {t1 - t0:.2f} s"
    if stale:
        counter, t1 = None, work_end
        win.info["counter_stale"] = stale
    integral = tail = None
    if sampler is not None:
        sampler.sample()  # a row just after the window's end, to interpolate the edge
        series = sampler.power_series(t0, t1)
        integral = integrate_power(series, t0, t1)
        if t1 > work_end:
            tail = integrate_power(series, work_end, t1)
    idle_w = (idle or {}).get(name, {}).get("watts")
    if tail is None and t1 > work_end and idle_w is not None:
        tail = idle_w * (t1 - work_end)
    win.info["counter_window"] = {  # perf_counter times, as the sampler's rows
        "on_steps": opened and closed,
        "t0": t0,
        "work_end": work_end,
        "t1": t1,
        "tail_s": t1 - work_end,
    }
    if counter is not None:
        if integral is not None:
            disagreement = abs(integral - counter) / counter
            win.info["gpu_cross_check"] = {
                "counter_j": counter,
                "power_integral_j": integral,
                "disagreement": disagreement,
                "flagged": disagreement > CROSS_CHECK_LIMIT,
            }
        if t1 <= work_end:
            return {name: (counter, "nvml_energy_counter")}
        if tail is None:
            return {name: (counter, "nvml_energy_counter (on its steps; idle tail included)")}
        return {name: (counter - tail, "nvml_energy_counter (on its steps, less the idle tail)")}
    if integral is not None:
        return {name: (integral, "nvml_power_integral")}
    why = (
        MIG_ENERGY_ABSENT if gpu.mig else stale or "neither NVML's energy counter nor power samples"
    )
    win.info.setdefault("absent", {})[name] = why
    return {}


def modelled_energy(
    joules: dict[str, float],
    seconds: float,
    call_s: float,
    *,
    units: dict[str, float],
    totals: dict[str, float] | None = None,
    country: str = "USA",
) -> EnergyWindow:
    """Energy per call where no counter exists (no RAPL, CPU case): codecarbon's model ran
    around the workload's own calls (``seconds`` long); its mean modelled power times the
    median call (``call_s``) is the energy of one call. A separate window would only feed
    the same model (TDP share x load, RAM at a constant), so it would add time, not facts.
    """
    win = EnergyWindow(calls=1, seconds=call_s)
    scale = call_s / seconds
    how = f"{CodecarbonMeter.method} (mean power over the workload x latency_median)"
    domains = {d: (j * scale, how) for d, j in joules.items()}
    win.info["modelled_over_s"] = seconds
    _energy_metrics(win, domains, units, None, country, "cpu", totals)
    return win


def _energy_metrics(win, domains, units, idle, country, device_domain, totals=None) -> None:
    """Per-call energy of each domain, and the derived figures (J/token, J/sample, J/step,
    tokens/kWh, CO2e, ``totals``: energy of a count of calls) from the case device's
    domains, into ``win``."""
    for domain, (joules, method) in domains.items():
        win.metrics.append(Metric(f"energy_{domain}", joules / win.calls, "J/call", method))
        idle_w = (idle or {}).get(domain, {}).get("watts")
        if idle_w is not None:
            net = (joules - idle_w * win.seconds) / win.calls
            win.metrics.append(
                Metric(f"energy_{domain}_over_idle", net, "J/call", f"{method}-idle")
            )

    selected = [
        d
        for d in domains
        if (d.startswith("gpu") if device_domain == "gpu" else d in ("cpu", "ram"))
    ]
    if not selected:
        return
    joules = sum(domains[d][0] for d in selected) / win.calls
    if joules <= 0:  # a counter that went backwards, a tail larger than the work
        win.info.setdefault("absent", {})["energy_per_unit"] = (
            f"the {'+'.join(selected)} energy of a call came out at {joules:.3g} J: no "
            "figure per token, sample or step is derived from it"
        )
        return
    method = "+".join(sorted({domains[d][1] for d in selected}))
    win.info["derived_from"] = selected
    if units.get("tokens"):
        win.metrics.append(Metric("energy_per_token", joules / units["tokens"], "J/token", method))
        win.metrics.append(
            Metric("tokens_per_kwh", units["tokens"] * J_PER_KWH / joules, "tokens/kWh", method)
        )
    if units.get("samples"):
        win.metrics.append(
            Metric("energy_per_sample", joules / units["samples"], "J/sample", method)
        )
    if units.get("steps"):
        win.metrics.append(Metric("energy_per_step", joules / units["steps"], "J/step", method))
    for name, calls in (totals or {}).items():
        win.metrics.append(Metric(name, joules * calls, "J", f"{method} x {calls:g} calls"))
    try:
        co2 = co2_kg(joules, country)
    except ImportError as e:  # codecarbon (or one of its own imports) is not installed
        win.info.setdefault("absent", {})["co2_per_call"] = f"needs codecarbon's data: {e}"
        return
    win.metrics.append(
        Metric("co2_per_call", co2 * 1e3, "g CO2e/call", f"{method}*codecarbon_{country}")
    )
