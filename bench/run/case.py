"""Run one case: build the model, apply techniques in order, run the workload.

``execute`` never raises: whatever happens inside becomes a CaseResult with a status,
so a launcher can write it and move on.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import Diverged, UnsupportedHere
from bench.results.schema import CaseResult, Metric
from bench.results.store import case_file_stem
from bench.run import ranks
from bench.run.context import CaseContext
from bench.spec import registry
from bench.spec.suite import Case
from bench.telemetry.bandwidth import bandwidth_key
from bench.telemetry.cuda_probe import cuda_available, cuda_uuid
from bench.telemetry.disturbance import Window
from bench.telemetry.energy import CodecarbonMeter, cpu_meter, measure_energy, modelled_energy
from bench.telemetry.machine import default_cpu_threads
from bench.telemetry.nvml import Nvml, NvmlUnavailable
from bench.telemetry.sampler import Sampler
from bench.telemetry.size import model_size_metrics
from bench.telemetry.traffic import traffic_metrics


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def execute(
    case: Case, repeat: int = 0, run_id: str | None = None, facts: dict[str, Any] | None = None
) -> CaseResult:
    """Run ``case``; ``facts`` are what the run measured for all cases (idle power)."""
    started, t0 = now_iso(), time.perf_counter()
    result = CaseResult(
        case=case.to_json(),
        case_id=case.id,
        case_hash=case.hash,
        repeat=repeat,
        status="ok",
        started=started,
        ended=started,
        wall_s=0.0,
        run_id=run_id,
    )
    try:
        _run(case, result, facts or {}, repeat)
    except UnsupportedHere as e:
        result.status, result.error = "skipped", str(e)
    except Diverged as e:  # a training outcome, not a fault: no traceback
        result.status, result.error = "diverged", str(e)
        result.info["diverged_at_step"] = e.step
        result.metrics = []
    except Exception as e:  # Ctrl-C and SystemExit still stop an inline run
        result.status = "oom" if _is_oom(e) else "failed"
        result.error = f"{type(e).__name__}: {e}"
        result.traceback = traceback.format_exc()
        result.metrics = []
    result.ended = now_iso()
    result.wall_s = time.perf_counter() - t0
    return result


def _run(case: Case, result: CaseResult, facts: dict[str, Any], repeat: int) -> None:
    import torch

    run = case.run
    # Asked without initialising CUDA: this process may fork ranks that use it.
    if run["device"] == "cuda" and not cuda_available():
        raise UnsupportedHere("device 'cuda' requested but no CUDA device is available")
    placed = None if facts.get("rank") else ranks.placement_of(case, facts)
    if placed is not None:
        ranks.run_on_ranks(case, result, facts, repeat, *placed)
        return
    if not facts.get("rank"):  # a rank's threads are the launch's
        if run["threads"] is not None:
            torch.set_num_threads(run["threads"])
        elif not run["device"].startswith("cuda"):
            torch.set_num_threads(default_cpu_threads())
    torch.manual_seed(run["seed"])
    absent: dict[str, str] = {}
    with open_gpu(run["device"], absent) as gpu:
        ctx = CaseContext(
            run["device"],
            run["dtype"],
            run["seed"],
            run["warmup"],
            run["iterations"],
            gpu=gpu,
            run_dir=facts.get("run_dir"),
            case_stem=case_file_stem(case.id, repeat),
            model=case.model,
            quality=run["quality"],
        )
        if facts.get("profile"):  # the case's profiled pass, not a timed run
            from bench.run.profiling import profile_case

            profile_case(case, result, ctx, facts["profile"])
            return
        sampler = Sampler(gpu, run["sample_hz"]).start() if gpu is not None else None
        try:
            _measure(case, result, ctx, sampler, facts, absent)
        finally:
            if sampler is not None:
                sampler.stop()
                result.samples["gpu_sampler"] = sampler.to_json()
    counted = facts.get("count_absent")
    if counted and case.id in counted["cases"]:
        for counter in counted["counters"]:
            absent[counter] = counted["cases"][case.id]
    result.info["absent"] = absent


@dataclass
class Built:
    """A case's model with its techniques applied, and how it came to be."""

    model: Any
    build: Any  # builds the unoptimized model afresh
    build_s: float
    info: dict[str, Any]  # the unoptimized model's bench_info
    steps: list[dict[str, Any]]  # what each technique did, in order


def build_and_apply(case: Case, ctx: CaseContext) -> Built:
    """Build the case's model and apply its techniques in order."""
    import torch

    run = case.run

    def build():  # reseeded: the reference of a random-weight model is the same model
        torch.manual_seed(run["seed"])
        entry = registry.models.get(case.model.name)
        model = entry.fn(entry.params.model_validate(case.model.params), ctx)
        return model.to(device=ctx.device, dtype=ctx.torch_dtype).eval()

    t = time.perf_counter()
    model = build()
    ctx.sync()
    build_s = time.perf_counter() - t
    unscanned = getattr(model, "unscanned_weights", None)
    if unscanned:  # weights too large for validation's NaN scan: their outputs must be finite
        from bench.models.finite import check_outputs_finite

        check_outputs_finite(model, ctx.device, unscanned)
    info = getattr(model, "bench_info", {})
    steps: list[dict[str, Any]] = []
    for step in case.techniques:
        tech = registry.techniques.get(step.name)
        t = time.perf_counter()
        model, did = tech.fn(model, tech.params.model_validate(step.params), ctx)
        ctx.sync()
        seconds = time.perf_counter() - t
        steps.append({"name": step.name, "label": step.label, "seconds": seconds, **did})
    ctx.reference = (lambda: model) if case.is_baseline else build
    return Built(model, build, build_s, info, steps)


def _measure(case, result, ctx, sampler, facts, absent) -> None:
    import torch

    run = case.run
    with ctx.memory.phase("load", ctx.sync):
        built = build_and_apply(case, ctx)
    model, build, build_s, steps = built.model, built.build, built.build_s, built.steps
    result.info["model"] = built.info

    wl = registry.workloads.get(case.workload.name)
    energy = run["energy"] and not facts.get("rank")
    cpu, why = cpu_meter(run["country"]) if energy else (None, None)
    # No energy counter for this case's device: codecarbon models CPU and RAM from load
    # and time, so it runs around the workload's own calls instead of a window of its own.
    modelled = isinstance(cpu, CodecarbonMeter) and not ctx.device.startswith("cuda")
    if modelled:
        cpu.begin()
    t = time.perf_counter()
    window = Window().begin()
    graphs = _cuda_graph_watch(case)
    try:
        with graphs:
            out = wl.fn(model, wl.params.model_validate(case.workload.params), ctx)
    finally:  # a failing workload must not leave the tracker's timer behind (inline runs)
        workload_s = time.perf_counter() - t
        modelled_joules = cpu.end() if modelled else None
        result.info["disturbance"] = window.end()

    energy_metrics: list[Metric] = []
    if why and out.energy is not None:
        absent["energy_rapl"] = (
            f"{why}; CPU and RAM energy are modelled by codecarbon" if cpu is not None else why
        )
    if not run["energy"]:
        absent["energy"] = "turned off in the suite (run.energy = false)"
    elif not energy:
        absent["energy"] = ranks.ENERGY_ABSENT
    elif out.energy is None:
        absent["energy"] = f"workload {case.workload.name!r} does no work to attribute energy to"
    elif modelled:
        per = out.energy.per
        call_s = next((m.value for m in out.metrics if m.name == per), None)
        if call_s is None:
            absent["energy"] = f"modelled energy needs the workload's {per}"
        else:
            win = modelled_energy(
                modelled_joules,
                workload_s,
                call_s,
                units=out.energy.units,
                totals=out.energy.totals,
                country=run["country"],
            )
            energy_metrics = win.metrics
            result.info["energy_window"] = {"modelled": True, **win.info}
    else:
        if out.energy.prepare is not None:
            out.energy.prepare()
        win = measure_energy(
            out.energy.call,
            units=out.energy.units,
            totals=out.energy.totals,
            sync=ctx.sync,
            min_s=run["energy_min_s"],
            gpu=ctx.gpu,
            sampler=sampler,
            cpu=cpu,
            idle=facts.get("idle_power"),
            country=run["country"],
            device_domain="gpu" if ctx.device.startswith("cuda") else "cpu",
        )
        energy_metrics = win.metrics
        absent.update(win.info.pop("absent", {}))
        result.info["energy_window"] = {"calls": win.calls, "seconds": win.seconds, **win.info}
        if ctx.device.startswith("cuda") and "idle_power" not in facts:
            absent["energy_over_idle"] = "no idle baseline was measured for this run"

    absent.update(out.absent)
    absent.update(ctx.memory.absent)
    lazy = _lazy_costs(case, out, steps, absent)
    size = model_size_metrics(model, absent)
    bandwidth = facts.get("copy_bandwidth", {}).get(bandwidth_key(run["device"], run["threads"]))
    traffic = traffic_metrics(model, out, bandwidth, absent)
    quality: list[Metric] = []
    if run["quality"] and not wl.meta.get("quality", True):
        absent["quality"] = f"workload {case.workload.name!r} reports its own quality figures"
    elif run["quality"]:
        from bench.workloads.quality import quality_metrics

        refs = Path(facts["run_dir"]) / "refs" if facts.get("run_dir") else None
        quality, result.info["quality"] = quality_metrics(model, case, build, refs)

    result.metrics = [
        Metric("build_time", build_s, "s", "perf_counter"),
        *size,
        *out.metrics,
        *traffic,
        *lazy,
        *ctx.memory.metrics,
        *energy_metrics,
        *quality,
        *_cuda_graph_metrics(graphs, result),
    ]
    result.samples.update(out.samples)
    result.info.update(
        {
            "techniques": steps,
            "torch_threads": torch.get_num_threads(),
            "pid": os.getpid(),
            **out.info,
        }
    )


def _promises_cuda_graphs(case: Case) -> bool:
    """Whether a part of the case promises CUDA graphs on its device (the workload's or a
    technique's registry entry says so for its parameters: ``cuda_graphs(params)``)."""
    if not case.run["device"].startswith("cuda"):
        return False
    parts = [(registry.workloads.get(case.workload.name), case.workload)]
    parts += [(registry.techniques.get(t.name), t) for t in case.techniques]
    return any(
        (promise := entry.meta.get("cuda_graphs"))
        and promise(entry.params.model_validate(step.params))
        for entry, step in parts
    )


def _cuda_graph_watch(case: Case):
    from bench.telemetry.cudagraphs import CudaGraphWatch

    return CudaGraphWatch() if _promises_cuda_graphs(case) else nullcontext()


def _cuda_graph_metrics(watch, result: CaseResult) -> list[Metric]:
    """Graphs promised and skipped: a count beside the case's figures (a table shows it;
    the case's labels stay what the suite says, so it still meets its baseline) and the
    reasons in its info."""
    from bench.telemetry.cudagraphs import CudaGraphWatch

    if not isinstance(watch, CudaGraphWatch):
        return []
    result.info["cuda_graphs"] = watch.to_json()
    method = "torch._dynamo counters['inductor']['cudagraph_skips'] over the workload"
    return [Metric("cuda_graph_skips", float(watch.skips), "graphs", method)]


def _lazy_costs(case: Case, out, steps: list[dict[str, Any]], absent: dict[str, str]):
    """One-off costs a technique pays on the model's first call (compilation): the first
    warm-up call minus the steady-state median, reported apart from latency, with the
    inductor cache's state (empty or non-empty) in its method. Never negative: a first call no
    slower than the steady state (a filled cache, noise) leaves the cost absent, with why."""
    from statistics import median

    names = [registry.techniques.get(t.name).meta.get("lazy_cost") for t in case.techniques]
    names = list(dict.fromkeys([n for n in names if n] + list(out.lazy_costs)))
    if not names:
        return []
    latency = out.samples.get("latency", {})
    warm, values = latency.get("warmup") or [], latency.get("values") or []
    if not warm or not values:
        for n in names:
            absent[n] = "needs at least one warm-up call of a timed workload"
        return []
    cost = warm[0] - median(values)
    states = [s["inductor_cache_state"] for s in steps if "inductor_cache_state" in s]
    state = out.info.get("inductor_cache_state") or (states[0] if states else "unknown")
    if cost <= 0:
        for n in names:
            absent[n] = (
                f"the first call ({warm[0]:.4g} s) was no slower than the steady median "
                f"({median(values):.4g} s; inductor cache {state}): no one-off cost to report"
            )
        return []
    method = f"first_warmup_call-steady_median (inductor cache {state})"
    return [Metric(n, cost, "s", method) for n in names]


@contextmanager
def open_gpu(device: str, absent: dict[str, str]) -> Iterator[Any]:
    """This case's GPU through NVML, or None (with the reason noted) on CPU or without NVML."""
    if not device.startswith("cuda"):
        absent["gpu_telemetry"] = "CPU case: no GPU sampler, GPU memory or GPU energy"
        yield None
        return
    import torch

    try:
        nvml = Nvml()
    except NvmlUnavailable as e:
        absent["gpu_telemetry"] = str(e)
        yield None
        return
    try:
        gpu = nvml.gpu_by_uuid(cuda_uuid(torch.cuda.current_device()))
    except NvmlUnavailable as e:
        absent["gpu_telemetry"] = str(e)
        gpu = None
    try:
        yield gpu
    finally:
        nvml.close()


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, MemoryError):
        return True
    try:
        import torch

        if isinstance(e, torch.OutOfMemoryError):
            return True
    except ImportError:
        pass
    text = str(e).lower()
    return isinstance(e, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text
    )
