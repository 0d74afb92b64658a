"""Every telemetry path, on CPU: GPU ones against a fake NVML with known power."""

import itertools
import time

import numpy as np
import pytest
import torch

from bench.telemetry import nvml as nvml_mod
from bench.telemetry.energy import RaplMeter, measure_energy, rapl_zones
from bench.telemetry.idle import idle_power
from bench.telemetry.machine import gpu_info
from bench.telemetry.memory import MemoryMonitor, rss_bytes
from bench.telemetry.nvml import Nvml, NvmlUnavailable
from bench.telemetry.sampler import Sampler, integrate_power
from bench.telemetry.timer import PerfCounterClock, time_calls
from tests.fake_nvml import FakeNVML


@pytest.fixture
def fake(monkeypatch):
    def install(**kw) -> FakeNVML:
        f = FakeNVML(**kw)
        monkeypatch.setattr(nvml_mod, "_module", f)
        return f

    return install


def sleeper(seconds: float):
    return lambda: time.sleep(seconds)


def energy(gpu, sampler=None, **kw):
    args = {
        "units": {"tokens": 10},
        "sync": lambda: None,
        "min_s": 1.0,
        "gpu": gpu,
        "sampler": sampler,
    }
    return measure_energy(sleeper(0.05), **{**args, **kw}, device_domain="gpu")


def metrics(win):
    return {m.name: m for m in win.metrics}


def window(win):
    return win.info["counter_window"]


def test_gpu_window_opens_and_closes_on_counter_steps(fake):
    f = fake(watts=200.0)  # the counter steps 10 times a second, power swings +-10%
    gpu = Nvml().gpu(0)
    win = energy(gpu)
    m, w = metrics(win), window(win)
    # 1 s asked, 2 s used: the counter's steps would make 1 s windows scatter by +-10%
    assert win.info["min_s_raised"]["used"] == 2.0 and win.seconds >= 2.0
    assert w["on_steps"] and 0 < w["tail_s"] <= 0.1 + 0.02
    # no sampler and no idle figure: the tail (the GPU idle until the next step) stays in
    true = f.joules(w["t0"], w["t1"])
    assert m["energy_gpu0"].value * win.calls == pytest.approx(true, rel=0.005)
    assert m["energy_gpu0"].method == "nvml_energy_counter (on its steps; idle tail included)"
    assert m["energy_gpu0"].unit == "J/call"
    per_call = m["energy_gpu0"].value
    assert m["energy_per_token"].value == pytest.approx(per_call / 10)
    assert m["tokens_per_kwh"].value == pytest.approx(10 * 3.6e6 / per_call)
    assert m["co2_per_call"].unit == "g CO2e/call" and m["co2_per_call"].value > 0


def test_a_coarse_counter_read_on_its_steps_is_exact(fake):
    """A counter that steps twice a second, windows of 2 s: read at arbitrary times, each
    edge would be off by up to half a second (25% of the window); read on its steps, the
    counter and the power integral agree and each window is exact."""
    f = fake(watts=300.0, counter_hz=2)
    gpu = Nvml().gpu(0)
    for _ in range(2):
        with Sampler(gpu, hz=50) as sampler:
            win = energy(gpu, sampler, min_s=2.0)
        w = window(win)
        # the idle tail (up to half a second here) is taken out, from the power samples
        got = metrics(win)["energy_gpu0"]
        assert got.method == "nvml_energy_counter (on its steps, less the idle tail)"
        assert got.value * win.calls == pytest.approx(f.joules(w["t0"], w["work_end"]), rel=0.01)
        check = win.info["gpu_cross_check"]
        assert check["disagreement"] < 0.02 and not check["flagged"]


def test_idle_power_is_subtracted(fake):
    f = fake(watts=200.0)
    gpu = Nvml().gpu(0)
    win = energy(gpu, idle={"gpu0": {"watts": 50.0}})
    m, w = metrics(win), window(win)
    # without samples, the idle tail is taken out at the idle power
    true = f.joules(w["t0"], w["t1"]) - 50.0 * w["tail_s"]
    assert m["energy_gpu0"].value * win.calls == pytest.approx(true, rel=0.005)
    assert m["energy_gpu0_over_idle"].value == pytest.approx(
        (true - 50.0 * win.seconds) / win.calls, rel=0.01
    )


def test_idle_baseline_measures_a_quiet_gpu(fake):
    fake(watts=80.0)
    idle = idle_power([Nvml().gpu(0)], seconds=1.0)
    assert idle["gpu0"]["watts"] == pytest.approx(80.0, rel=0.03)
    assert idle["gpu0"]["method"] == "nvml_energy_counter" and idle["gpu0"]["seconds"] >= 1.0


@pytest.mark.parametrize(("bias", "flagged"), [(1.0, False), (1.3, True)])
def test_power_integral_cross_checks_the_counter(fake, bias, flagged):
    fake(watts=200.0, power_bias=bias)
    gpu = Nvml().gpu(0)
    with Sampler(gpu, hz=20) as sampler:
        win = energy(gpu, sampler)
    check = win.info["gpu_cross_check"]
    assert check["flagged"] is flagged
    assert check["disagreement"] == pytest.approx(bias - 1.0, abs=0.03)


def test_counter_missing_falls_back_to_the_power_integral(fake):
    f = fake(watts=150.0, counter=False)
    gpu = Nvml().gpu(0)
    with Sampler(gpu, hz=20) as sampler:
        win = energy(gpu, sampler)
    m, w = metrics(win)["energy_gpu0"], window(win)
    assert m.method == "nvml_power_integral" and not w["on_steps"]
    assert m.value * win.calls == pytest.approx(f.joules(w["t0"], w["work_end"]), rel=0.02)


def test_no_counter_and_no_sampler_is_absent_not_zero(fake):
    fake(counter=False)
    win = energy(Nvml().gpu(0))
    assert "energy_gpu0" not in metrics(win)
    assert "gpu0" in win.info["absent"]


def test_short_work_is_looped_to_the_minimum_window(fake):
    fake()
    win = measure_energy(
        sleeper(0.01),
        units={},
        sync=lambda: None,
        min_s=1.0,
        gpu=Nvml().gpu(0),
        device_domain="gpu",
    )
    assert win.seconds >= 2.0 and win.calls >= 100  # a GPU window lasts 2 s at least
    with pytest.raises(ValueError, match="shorter than 1 s"):
        measure_energy(sleeper(0.01), units={}, sync=lambda: None, min_s=0.5)


def test_an_older_pynvml_without_newer_names_still_reads(fake):
    """pynvml before the instant-power field, the v2 memory struct and the 'clocks event'
    rename: every read falls back or is absent; nothing raises, in the sampler thread or
    in the energy window."""
    fake(
        missing=(
            "NVML_FI_DEV_POWER_INSTANT",
            "nvmlMemory_v2",
            "nvmlDeviceGetCurrentClocksEventReasons",
        ),
        unsupported=("nvmlDeviceGetUtilizationRates",),
    )
    gpu = Nvml().gpu(0)
    row = gpu.snapshot()
    assert row["power_w"] > 0 and gpu.power_w()[1] == "nvml_power_usage"
    assert row["memory_used_bytes"] == 1 << 30 and row["throttle_reasons"] == 0
    assert row["util_gpu_pct"] is None
    with Sampler(gpu, hz=20) as sampler:
        win = energy(gpu, sampler)
    assert "error" not in sampler.rows[0] and metrics(win)["energy_gpu0"].value > 0
    assert gpu.facts()["memory_total_bytes"] == 141 << 30


def test_power_falls_back_when_the_instant_field_is_not_supported(fake):
    f = fake(watts=250.0, instant_power=False)
    time.sleep(0.05)
    watts, method = Nvml().gpu(0).power_w()
    assert method == "nvml_power_usage" and watts == pytest.approx(f.watts, rel=0.15)


def test_a_sampler_survives_a_read_that_raises(fake):
    fake()
    gpu = Nvml().gpu(0)
    real, raised = gpu.snapshot, []

    def flaky():
        if not raised:
            raised.append(1)
            raise OSError("driver went away for a moment")
        return real()

    gpu.snapshot = flaky
    with Sampler(gpu, hz=50) as s:
        time.sleep(0.2)
    assert s.rows[0]["error"] == "OSError: driver went away for a moment"
    assert len(s.rows) >= 5 and all("power_w" in r for r in s.rows[1:])


def test_a_mig_instance_is_found_and_its_energy_is_absent_with_why(fake):
    f = fake(mig=True)
    uuid = f.uuid(0).removeprefix("MIG-")  # torch gives the UUID without its prefix
    with Nvml() as nvml:
        gpu = nvml.gpu_by_uuid(uuid)
        assert gpu.mig and gpu.index == 0
        assert gpu.energy_mj() is None and gpu.power_w() is None
        win = energy(gpu)
    assert "energy_gpu0" not in metrics(win)
    assert "MIG instance" in win.info["absent"]["gpu0"]


def test_nvml_init_failure_is_graceful_absence(fake):
    fake(init_error="Driver Not Loaded")
    with pytest.raises(NvmlUnavailable, match="NVML could not start: Driver Not Loaded"):
        Nvml()
    assert gpu_info() == {"available": False, "reason": "NVML could not start: Driver Not Loaded"}


def test_fingerprint_has_clocks_power_limit_and_driver(fake):
    fake()
    info = gpu_info()
    assert info["driver"] == "999.99"
    (dev,) = info["devices"]
    assert dev["name"] == "NVIDIA H200" and dev["power_limit_w"] == 700.0
    assert dev["sm_clock_max_mhz"] == 1980 and dev["mem_clock_max_mhz"] == 3201


def test_sampler_rows_are_timestamped_at_its_rate(fake):
    f = fake(watts=123.0)
    with Sampler(Nvml().gpu(0), hz=10) as s:
        time.sleep(0.55)
    rows = s.to_json()["rows"]
    assert 6 <= len(rows) <= 9
    assert all(b["t"] > a["t"] for a, b in itertools.pairwise(rows))
    assert rows[0]["power_w"] == pytest.approx(f.power_at(rows[0]["t"]), rel=0.02)
    assert rows[0]["sm_clock_mhz"] == 1980
    assert set(rows[0]) >= {
        "util_gpu_pct",
        "memory_used_bytes",
        "temperature_c",
        "throttle_reasons",
    }


def test_trapezoid_integral_with_interpolated_edges():
    series = [(0.0, 100.0), (1.0, 200.0), (2.0, 200.0)]
    assert integrate_power(series, 0.5, 1.5) == pytest.approx(0.5 * (150 + 200) / 2 + 0.5 * 200)
    assert integrate_power(series, -1.0, 1.0) is None  # no sample before the window


def test_rapl_handles_wrap_around(tmp_path):
    for i, (name, start) in enumerate([("package-0", 900), ("dram", 10)]):
        zone = tmp_path / f"intel-rapl:{i}"
        zone.mkdir()
        (zone / "name").write_text(name)
        (zone / "max_energy_range_uj").write_text("1000")
        (zone / "energy_uj").write_text(str(start))
    zones, why = rapl_zones(tmp_path)
    assert why is None and [z.name for z in zones] == ["package-0", "dram"]
    meter = RaplMeter(zones)
    meter.begin()
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("100")  # wrapped: 900 -> 1000 -> 100
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("60")
    assert meter.end() == {"cpu": pytest.approx(200e-6), "ram": pytest.approx(50e-6)}
    assert rapl_zones(tmp_path / "none")[1].startswith("no ")


def test_cpu_energy_without_rapl_is_modelled_and_labelled():
    from codecarbon.external.ram import RAM

    from bench.telemetry.energy import CodecarbonMeter

    # codecarbon (process mode) models RAM power from the DIMMs the process's memory would
    # fill (10 W for a small process); its own model, read around the window, gives it.
    watts = {RAM(tracking_mode="process").total_power().W}
    # Several windows: a timer reading racing the closing one counted a window twice.
    for _ in range(3):
        win = measure_energy(
            sleeper(0.02),
            units={"samples": 4},
            sync=lambda: None,
            min_s=1.0,
            cpu=CodecarbonMeter("USA"),
            device_domain="cpu",
        )
        m = metrics(win)
        assert any(m["energy_ram"].value == pytest.approx(w * 0.02, rel=0.25) for w in watts)
    assert m["energy_cpu"].method == "codecarbon_model"
    assert m["energy_per_sample"].method == "codecarbon_model"
    assert 0 <= m["energy_cpu"].value < m["energy_ram"].value


def test_modelled_energy_is_mean_modelled_power_times_the_median_call():
    from bench.telemetry.energy import modelled_energy

    # codecarbon modelled 2 J of CPU and 10 J of RAM over a 1 s workload; a call is 0.1 s.
    win = modelled_energy({"cpu": 2.0, "ram": 10.0}, 1.0, 0.1, units={"tokens": 10})
    m = metrics(win)
    assert m["energy_cpu"].value == pytest.approx(0.2)
    assert m["energy_ram"].value == pytest.approx(1.0)
    assert m["energy_per_token"].value == pytest.approx(0.12)
    assert m["energy_per_token"].method.startswith("codecarbon_model (mean power")


def test_peak_rss_of_a_phase_sees_a_known_allocation():
    size = 200 << 20
    mon = MemoryMonitor("cpu")
    before = rss_bytes()
    with mon.phase("alloc"):
        block = np.ones(size, dtype=np.uint8)  # touched: resident
        del block
    got = {m.name: m for m in mon.metrics}
    m = got["memory_alloc_peak_rss"]
    assert m.method == "vmhwm_after_clear_refs"
    assert m.value - before == pytest.approx(size, rel=0.05)
    # the runtime (what the process held when the monitor began) is its own figure, and
    # the phase's peak over it is what the phase's work added
    runtime = got["memory_runtime_rss"].value
    assert runtime == pytest.approx(before, rel=0.05)
    assert got["memory_alloc_peak_over_runtime"].value == m.value - runtime


def test_fixed_warmup_is_discarded_and_recorded():
    s = time_calls(sleeper(0.001), warmup=3, iterations=5, clock=PerfCounterClock())
    assert len(s.warmup) == 3 and len(s.values) == 5 and s.warmup_policy == "fixed"
    assert all(v >= 0.001 for v in s.values)


def test_auto_warmup_runs_until_the_median_settles():
    calls = []

    def slow_then_steady():
        calls.append(1)
        time.sleep(0.02 if len(calls) <= 7 else 0.002)

    s = time_calls(slow_then_steady, warmup="auto", iterations=5, clock=PerfCounterClock())
    assert s.warmup_policy == "auto" and s.settled is True
    assert len(s.warmup) >= 10 and max(s.values) < 0.015


@pytest.mark.gpu
def test_cuda_event_clock_agrees_with_triton_do_bench():
    import torch

    do_bench = pytest.importorskip("triton.testing").do_bench

    from bench.telemetry.timer import CudaEventClock

    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    fn = lambda: a @ a  # noqa: E731
    ours = np.median(time_calls(fn, warmup=10, iterations=50, clock=CudaEventClock()).values)
    theirs = do_bench(fn, return_mode="median") / 1e3
    assert ours == pytest.approx(theirs, rel=0.05)


def test_a_case_opens_its_gpu_through_nvml_or_says_why_not(fake, monkeypatch):
    import torch

    from bench.run.case import open_gpu

    absent: dict[str, str] = {}
    with open_gpu("cpu", absent) as gpu:
        assert gpu is None
    assert absent == {"gpu_telemetry": "CPU case: no GPU sampler, GPU memory or GPU energy"}

    from bench.run import case as case_mod

    f = fake(gpus=2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(case_mod, "cuda_uuid", lambda i: f.uuid(i)[4:])
    absent.clear()
    with open_gpu("cuda", absent) as gpu:
        assert gpu.index == 0 and gpu.energy_mj() is not None
    assert absent == {} and f.calls[-1] == "shutdown"

    # CUDA_VISIBLE_DEVICES=1: CUDA's device 0 is NVML's GPU 1. The case (and so its idle
    # baseline, keyed by NVML index) must read GPU 1, not GPU 0.
    monkeypatch.setattr(case_mod, "cuda_uuid", lambda i: f.uuid(1 - i))
    with open_gpu("cuda", absent) as gpu:
        assert gpu.index == 1 and gpu.handle == "gpu1"

    fake(init_error="Driver Not Loaded")
    with open_gpu("cuda", absent) as gpu:
        assert gpu is None
    assert absent["gpu_telemetry"] == "NVML could not start: Driver Not Loaded"


def test_idle_power_is_measured_once_per_run_for_gpu_suites(fake, monkeypatch, tmp_path):
    from bench.run import preparation
    from bench.spec.suite import parse_suite
    from bench.telemetry import energy as energy_mod

    monkeypatch.setattr(energy_mod, "POWERCAP", tmp_path / "no-powercap")

    class Quiet:
        def print(self, *a, **k):
            pass

    text = 'name = "t"\n[run]\ndevice = "{}"\nidle_s = 0.3\n[[models]]\nname = "tinygpt-s"\n[[workloads]]\nname = "forward"\n'
    fake(watts=90.0)
    gpu_suite = parse_suite(text.format("cuda"))
    cases = list(gpu_suite.cases)
    reason = preparation.measure_idle(gpu_suite, cases, Quiet())["reason"]
    assert (
        reason
        == "nothing to measure: GPU: no CUDA device on this machine; CPU: no "
        + str(tmp_path / "no-powercap")
        + " (RAPL not exposed on this machine)"
    )

    monkeypatch.setattr(preparation, "_cuda_available", lambda: True)
    asked = []

    def gpu_idle(seconds, hz):  # what the child would do, here against the fake
        asked.append((seconds, hz))
        return idle_power([Nvml().gpu(0)], seconds, hz)

    idle = preparation.measure_idle(gpu_suite, cases, Quiet(), gpu_idle=gpu_idle)
    assert idle["domains"]["gpu0"]["watts"] == pytest.approx(90.0, rel=0.05)
    assert asked == [(0.3, gpu_suite.run.sample_hz)]

    cpu_suite = parse_suite(text.format("cpu"))
    reason = preparation.measure_idle(cpu_suite, list(cpu_suite.cases), Quiet())["reason"]
    assert reason.startswith("nothing to measure: GPU: no CUDA case in this run; CPU: no ")


def test_idle_is_measured_holding_a_cuda_context(fake, monkeypatch):
    """A case holds a CUDA context, which idles higher than a GPU with none: the idle
    baseline is taken with one held on every GPU (here, torch's CUDA calls are faked)."""
    from bench.run import preparation
    from bench.telemetry import cuda_probe

    f = fake(watts=110.0, gpus=2)
    events = []
    real_zeros = torch.zeros

    def zeros(*shape, device=None, **kw):
        events.append(("context", device))
        return real_zeros(*shape, **kw)

    def idle(gpus, seconds, hz):
        events.append(("idle", [g.index for g in gpus]))
        return {f"gpu{g.index}": {"watts": 110.0, "method": "nvml_energy_counter"} for g in gpus}

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(torch, "zeros", zeros)
    monkeypatch.setattr(cuda_probe, "cuda_uuid", lambda i: f.uuid(1 - i)[4:])  # reordered
    monkeypatch.setattr("bench.telemetry.idle.idle_power", idle)
    found = preparation.idle_with_context(0.1, 10.0)
    assert events == [("context", "cuda:0"), ("context", "cuda:1"), ("idle", [1, 0])]
    assert found["gpu0"]["method"] == "nvml_energy_counter (CUDA context held)"


def test_copy_bandwidth_is_measured_once_per_machine(monkeypatch, tmp_path):
    from bench.telemetry import bandwidth
    from bench.telemetry.machine import default_cpu_threads

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    before = torch.get_num_threads()
    first = bandwidth.machine_bandwidth("cpu")
    # without a thread count: what a CPU case gets without run.threads
    assert first["torch_threads"] == default_cpu_threads()
    assert first["bytes_per_s"] > 1e8 and first["unit"] == "bytes/s"
    assert first["read_bytes_per_s"] > 1e8 and "bytes read" in first["read_method"]
    assert "bytes read + written" in first["method"] and first["machine"]["device"] == "cpu"

    def no_second_measurement(*a, **k):
        raise AssertionError("measured again")

    monkeypatch.setattr(bandwidth, "measure_copy", no_second_measurement)
    assert bandwidth.machine_bandwidth("cpu") == first
    # Another thread count is another machine: measured at that count, and filed apart.
    monkeypatch.undo()
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    other = default_cpu_threads() + 1
    one = bandwidth.machine_bandwidth("cpu", threads=other)
    assert one["torch_threads"] == other and one["machine"]["threads"] == other
    assert len(list((tmp_path / "machine").glob("*.json"))) == 2
    assert torch.get_num_threads() == before  # restored


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_cuda_copy_bandwidth_without_cuda_is_a_reason_and_not_cached(monkeypatch, tmp_path):
    from bench.telemetry import bandwidth

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    assert bandwidth.machine_bandwidth("cuda") == {"reason": "no CUDA device"}
    assert not (tmp_path / "machine").exists()


def test_without_codecarbon_the_co2_figure_is_absent_not_the_case(fake, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_codecarbon(name, *a, **k):
        if name.startswith("codecarbon"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *a, **k)

    fake()
    monkeypatch.setattr(builtins, "__import__", no_codecarbon)
    win = energy(Nvml().gpu(0))
    assert "energy_gpu0" in metrics(win) and "co2_per_call" not in metrics(win)
    assert "codecarbon" in win.info["absent"]["co2_per_call"]


@pytest.mark.parametrize("frozen_after", [0.0, "opened"])
def test_a_counter_that_stops_stepping_is_not_believed(fake, frozen_after):
    """Frozen from the start (never steps), or frozen once the window opened (its closing
    step never comes): the counter's delta is stale, never negative energy; the power
    samples' integral stands in, and without them the figure is absent with why."""
    f = fake(watts=200.0)
    gpu = Nvml().gpu(0)
    if frozen_after == "opened":
        real, seen = gpu.energy_mj, []

        def freezes():  # moves until the window opens on a step, then never again
            value = real()
            if seen and value != seen[0] and f.frozen_after is None:
                f.frozen_after = f._t()
            seen.append(value)
            return value

        gpu.energy_mj = freezes
    else:
        f.frozen_after = 0.0
    with Sampler(gpu, hz=20) as sampler:
        win = energy(gpu, sampler)
    got = metrics(win)["energy_gpu0"]
    assert got.method == "nvml_power_integral" and got.value > 0
    assert "counter" in win.info["counter_stale"]
    bare = energy(gpu)
    assert "energy_gpu0" not in metrics(bare) and "energy_per_token" not in metrics(bare)
    assert "energy counter" in bare.info["absent"]["gpu0"]


def test_the_cpu_meter_counts_the_calls_time_only(fake):
    """The CPU meter runs from before the wait for the counter's step: its joules are
    scaled to the calls' time, not the waits'."""
    fake()

    class TenWatts:
        method = "rapl"

        def begin(self):
            self.t = time.perf_counter()

        def end(self):
            return {"cpu": 10.0 * (time.perf_counter() - self.t)}

    win = energy(Nvml().gpu(0), cpu=TenWatts())
    assert metrics(win)["energy_cpu"].value * win.calls == pytest.approx(
        10.0 * win.seconds, rel=0.01
    )


def test_without_codecarbon_or_rapl_there_is_no_cpu_meter(monkeypatch, tmp_path):
    import builtins

    from bench.telemetry import energy as energy_mod

    real_import = builtins.__import__

    def no_codecarbon(name, *a, **k):
        if name.startswith("codecarbon"):
            raise ImportError("No module named 'codecarbon'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(energy_mod, "POWERCAP", tmp_path / "none")
    monkeypatch.setattr(builtins, "__import__", no_codecarbon)
    meter, why = energy_mod.cpu_meter("USA")
    assert meter is None and "codecarbon" in why and "RAPL not exposed" in why


def test_a_driver_without_a_versioned_symbol_reads_as_absent(fake):
    f = fake(unsupported=("v3",))
    assert Nvml().gpu(0).process_memory_used(1) is None
    assert "nvmlDeviceGetComputeRunningProcesses" in f.calls
