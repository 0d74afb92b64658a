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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import registry
from bench.context import CaseContext
from bench.errors import UnsupportedHere
from bench.result import CaseResult, Metric
from bench.suite import Case
from bench.telemetry.energy import cpu_meter, measure_energy
from bench.telemetry.nvml import Nvml, NvmlUnavailable
from bench.telemetry.sampler import Sampler


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
        _run(case, result, facts or {})
    except UnsupportedHere as e:
        result.status, result.error = "skipped", str(e)
    except Exception as e:  # Ctrl-C and SystemExit still stop an inline run
        result.status = "oom" if _is_oom(e) else "failed"
        result.error = f"{type(e).__name__}: {e}"
        result.traceback = traceback.format_exc()
        result.metrics = []
    result.ended = now_iso()
    result.wall_s = time.perf_counter() - t0
    return result


def _run(case: Case, result: CaseResult, facts: dict[str, Any]) -> None:
    import torch

    run = case.run
    if run["device"] == "cuda" and not torch.cuda.is_available():
        raise UnsupportedHere("device 'cuda' requested but no CUDA device is available")
    if run["threads"] is not None:
        torch.set_num_threads(run["threads"])
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
        )
        sampler = Sampler(gpu, run["sample_hz"]).start() if gpu is not None else None
        try:
            _measure(case, result, ctx, sampler, facts, absent)
        finally:
            if sampler is not None:
                sampler.stop()
                result.samples["gpu_sampler"] = sampler.to_json()
    result.info["absent"] = absent


def _measure(case, result, ctx, sampler, facts, absent) -> None:
    import torch

    run = case.run

    def build():
        entry = registry.models.get(case.model.name)
        model = entry.fn(entry.params.model_validate(case.model.params), ctx)
        return model.to(device=ctx.device, dtype=ctx.torch_dtype).eval()

    with ctx.memory.phase("load", ctx.sync):
        t = time.perf_counter()
        model = build()
        ctx.sync()
        build_s = time.perf_counter() - t
        result.info["model"] = getattr(model, "bench_info", {})
        steps: list[dict[str, Any]] = []
        for step in case.techniques:
            tech = registry.techniques.get(step.name)
            t = time.perf_counter()
            model, info = tech.fn(model, tech.params.model_validate(step.params), ctx)
            ctx.sync()
            seconds = time.perf_counter() - t
            steps.append({"name": step.name, "label": step.label, "seconds": seconds, **info})

    wl = registry.workloads.get(case.workload.name)
    out = wl.fn(model, wl.params.model_validate(case.workload.params), ctx)

    energy_metrics: list[Metric] = []
    if not run["energy"]:
        absent["energy"] = "turned off in the suite (run.energy = false)"
    elif out.energy is None:
        absent["energy"] = f"workload {case.workload.name!r} does no work to attribute energy to"
    else:
        cpu, why = cpu_meter(run["country"])
        if why:
            absent["energy_rapl"] = f"{why}; CPU and RAM energy are modelled by codecarbon"
        win = measure_energy(
            out.energy.call,
            units=out.energy.units,
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

    lazy = _lazy_costs(case, out, absent)
    size = model_size_metrics(model, absent)
    traffic = traffic_metrics(out, size, facts.get("copy_bandwidth", {}).get(run["device"]), absent)
    quality: list[Metric] = []
    if run["quality"]:
        from bench.quality import quality_metrics

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


def _lazy_costs(case: Case, out, absent: dict[str, str]) -> list[Metric]:
    """One-off costs a technique pays on the model's first call (compilation): the first
    warm-up call minus the steady-state median, reported apart from latency."""
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
    return [
        Metric(n, warm[0] - median(values), "s", "first_warmup_call-steady_median") for n in names
    ]


def traffic_metrics(out, size: list[Metric], bandwidth, absent: dict[str, str]) -> list[Metric]:
    """Achieved memory traffic of the workload's timed call, and its share of the machine's
    measured copy bandwidth: how close the case runs to the memory roofline.

    The bytes are a floor: the weights read once per call plus what the workload declares
    (a decode step's KV cache); activations and re-reads are not counted.
    """
    if out.traffic is None:
        absent["memory_traffic"] = "this workload declares no memory traffic"
        return []
    t = out.traffic
    seconds = next((m.value for m in out.metrics if m.name == t.per), None)
    weights = next(m.value for m in size if m.name == "state_dict_bytes")
    if not seconds:
        absent["memory_traffic"] = f"no {t.per} to divide by"
        return []
    extra = f" + {t.extra_what}" if t.extra_bytes else ""
    achieved = (weights + t.extra_bytes) / seconds
    out_metrics = [
        Metric(
            "memory_traffic_per_call", weights + t.extra_bytes, "bytes", f"state_dict_bytes{extra}"
        ),
        Metric("memory_traffic", achieved, "bytes/s", f"(state_dict_bytes{extra})/{t.per}"),
    ]
    if bandwidth and bandwidth.get("bytes_per_s"):
        out_metrics.append(
            Metric(
                "bandwidth_utilization",
                100 * achieved / bandwidth["bytes_per_s"],
                "%",
                f"memory_traffic/copy_bandwidth ({bandwidth['method']})",
            )
        )
    else:
        reason = (bandwidth or {}).get("reason", "not measured for this run")
        absent["bandwidth_utilization"] = f"no copy bandwidth of this device: {reason}"
    return out_metrics


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
        # NVML indexes GPUs as the driver does; with CUDA_VISIBLE_DEVICES unset this
        # is torch's index too.
        gpu = nvml.gpu(torch.cuda.current_device())
    except NvmlUnavailable as e:
        absent["gpu_telemetry"] = str(e)
        gpu = None
    try:
        yield gpu
    finally:
        nvml.close()


def _storages(t, out: dict) -> None:
    """Every storage behind ``t``: quantized tensor subclasses (torchao) keep several inner
    tensors (data, scales, zero points), packed ones (torch.ao) their own buffers."""
    import torch

    if isinstance(t, tuple | list):  # torch.ao's packed params: (weight, bias)
        for x in t:
            _storages(x, out)
        return
    if hasattr(t, "__tensor_flatten__"):
        names, _ = t.__tensor_flatten__()
        for n in names:
            _storages(getattr(t, n), out)
        return
    if isinstance(t, torch.Tensor):
        if t.layout == torch.sparse_csr:
            for part in (t.crow_indices(), t.col_indices(), t.values()):
                out[part.untyped_storage().data_ptr()] = part.untyped_storage().nbytes()
            return
        if t.is_quantized:
            n = t.int_repr().nbytes
            if t.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                n += t.q_per_channel_scales().nbytes + t.q_per_channel_zero_points().nbytes
            out[("q", id(t))] = n
            return
        out[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()


def model_bytes(model) -> int:
    """Bytes of the model's state: shared tensors (tied embeddings) counted once."""
    out: dict = {}
    for t in model.state_dict().values():
        _storages(t, out)
    return sum(out.values())


def _weights(model) -> list:
    """Every weight tensor by its logical shape, each once: parameters (tied ones once),
    CSR buffers (sparse execution), and torch.ao's packed quantized weights, which are
    not parameters at all."""
    import torch

    found = {id(p): p for p in model.parameters()}
    found.update({id(b): b for b in model.buffers() if b.layout == torch.sparse_csr})
    for m in model.modules():
        # torch.ao's dynamic quantized Linear: weight() unpacks; its holder has no weight.
        if hasattr(m, "_packed_params") and callable(getattr(m, "weight", None)):
            for t in (m.weight(), m.bias()):
                if t is not None:
                    found[id(t)] = t
    return list(found.values())


def _nonzero(t) -> int:
    import torch

    if t.layout == torch.sparse_csr:
        t = t.values()
    elif t.is_quantized:
        t = t.int_repr()  # symmetric int8: a zero weight is a zero integer
    return int(torch.count_nonzero(t.detach()))


def model_size_metrics(model, absent: dict[str, str] | None = None) -> list[Metric]:
    """Parameter count, fraction of non-zero parameters, bytes of the state dict.

    Weights count by their logical shape whatever their storage (quantized, packed,
    sparse); tensors shared between names (tied embeddings) count once.
    """
    weights = _weights(model)
    total = sum(t.numel() for t in weights)
    out = [Metric("params_total", float(total), "count", "numel")]
    try:
        fraction = sum(_nonzero(t) for t in weights) / total
        out.append(Metric("params_nonzero_fraction", fraction, "1", "count_nonzero"))
    except (RuntimeError, NotImplementedError, TypeError) as e:
        if absent is not None:  # torchao's quantized tensor subclasses do not count zeros
            absent["params_nonzero_fraction"] = f"count_nonzero failed: {type(e).__name__}"
    out.append(
        Metric("state_dict_bytes", float(model_bytes(model)), "bytes", "tensor_storage_nbytes")
    )
    return out


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
