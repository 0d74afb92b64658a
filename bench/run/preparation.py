"""What a run measures or readies once, before its first case: the idle power of the
devices it uses, the machine's memory bandwidth, and the models (trained and cached)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from bench.results import store
from bench.spec.suite import Case, Suite


def prepare_run(suite, cases, manifest, run_dir, console, quiet=lambda: None) -> dict[str, Any]:
    """What every case of the run shares, measured once before the first: idle power, the
    machine's copy bandwidth, the models made ready (trained, cached). ``quiet()`` is called
    before anything is measured that needs the machine to itself (it waits for the fork
    server's imports)."""
    if "idle_power" not in manifest:
        manifest["idle_power"] = measure_idle(suite, cases, console, quiet)
        store.write_json_atomic(run_dir / store.MANIFEST, manifest)
    facts: dict[str, Any] = {"run_dir": str(run_dir)}
    idle = manifest["idle_power"].get("domains")
    if idle:
        facts["idle_power"] = idle
    facts["copy_bandwidth"] = copy_bandwidth(manifest, cases, console, quiet)
    store.write_json_atomic(run_dir / store.MANIFEST, manifest)
    prepare_models(cases, console)
    return facts


def preload_modules(cases: list[Case]) -> tuple[str, ...]:
    from bench.spec import registry

    preload = set()
    for c in cases:
        entries = [
            registry.models.get(c.model.name),
            *(registry.techniques.get(t.name) for t in c.techniques),
        ]
        preload.update(m for e in entries for m in e.meta.get("preload", ()))
        if c.run["energy"]:
            preload.add("bench.run.child_energy")
    return tuple(sorted(preload))


def models_of(case: Case):
    """(registry entry, validated params, label) of every model a case builds: its own,
    and those its workload and techniques build (a draft model, a distillation teacher)."""
    from bench.spec import registry

    entry = registry.models.get(case.model.name)
    yield entry, entry.params.model_validate(case.model.params), case.model.label
    steps = [(registry.workloads, case.workload)]
    steps += [(registry.techniques, step) for step in case.techniques]
    for reg, step in steps:
        entry = reg.get(step.name)
        more = entry.meta.get("models")
        if more is not None:
            yield from more(entry.params.model_validate(step.params))


def prepare_models(cases: list[Case], console) -> None:
    """Give each model a chance to get ready once, here, before any case is timed (the
    built-in GPT trains and caches its weights), with a progress bar."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    seen: set[str] = set()
    for case in cases:
        if case.run["device"] == "cuda" and not _cuda_available():
            continue  # its cases are skipped as unsupported here; nothing to get ready
        for entry, params, label in models_of(case):
            prepare = entry.meta.get("prepare")
            if prepare is None or label in seen:
                continue
            seen.add(label)
            columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
            live = console.is_terminal
            with Progress(*columns, console=console, transient=True, disable=not live) as bar:
                task = bar.add_task(f"preparing {label}", total=None)

                def progress(step: int, total: int, bits: float, task=task, label=label) -> None:
                    text = f"training {label}: step {step}/{total}, {bits:.2f} bits/byte"
                    bar.update(task, completed=step, total=total, description=text)

                record = prepare(params, progress, case.run["device"])
            if record and record.get("cached") is False:
                console.print(
                    f"trained {label} in {record['train_seconds']:.1f} s: held-out "
                    f"{record['held_out_bits_per_byte']:.3f} bits/byte (cached at {record['path']})"
                )


def copy_bandwidth(
    manifest: dict[str, Any], cases: list[Case], console, quiet=lambda: None
) -> dict[str, Any]:
    """The machine's memory bandwidth per device and CPU thread count the cases use (cached
    per machine), kept in the run's environment; a resumed run reuses what it started with."""
    from bench.telemetry.bandwidth import bandwidth_key, machine_bandwidth

    known = manifest["environment"].setdefault("copy_bandwidth", {})
    wanted = {bandwidth_key(c.run["device"], c.run["threads"]): c for c in cases}
    for key in sorted(set(wanted) - set(known)):
        device, threads = wanted[key].run["device"], wanted[key].run["threads"]
        if device == "cuda" and not _cuda_available():
            known[key] = {"reason": "no CUDA device on this machine"}
            continue
        known[key] = found = machine_bandwidth(device, threads, quiet)
        if "bytes_per_s" in found:
            console.print(
                f"memory bandwidth of {key}: read {found['read_bytes_per_s'] / 1e9:.1f} GB/s, "
                f"copy {found['bytes_per_s'] / 1e9:.1f} GB/s"
            )
    return known


def _cuda_available() -> bool:
    from bench.telemetry.cuda_probe import cuda_available

    return cuda_available()


def measure_idle(
    suite: Suite, cases: list[Case], console, quiet=lambda: None, gpu_idle=None
) -> dict[str, Any]:
    """Idle power of the GPUs the run uses (NVML, with a CUDA context held, as a case holds
    one) and of RAPL's domains, measured once before the first case; the reason when there
    is nothing to measure. ``gpu_idle(seconds, hz)`` measures it (default: in a child)."""
    from bench.telemetry.energy import rapl_zones
    from bench.telemetry.idle import idle_power
    from bench.telemetry.nvml import Nvml, NvmlUnavailable

    seconds = suite.run.idle_s
    if seconds <= 0 or not suite.run.energy:
        return {"reason": "turned off in the suite (run.idle_s = 0 or run.energy = false)"}
    wants_gpu = any(c.run["device"] == "cuda" for c in cases)
    zones, rapl_why = rapl_zones()
    gpu_why = None if wants_gpu else "no CUDA case in this run"
    if wants_gpu:
        try:
            Nvml().close()
        except NvmlUnavailable as e:
            wants_gpu, gpu_why = False, str(e)
        else:
            if not _cuda_available():
                wants_gpu, gpu_why = False, "no CUDA device on this machine"
    if not wants_gpu and not zones:
        return {"reason": f"nothing to measure: GPU: {gpu_why}; CPU: {rapl_why}"}
    quiet()
    console.print(f"measuring idle power for {seconds:g} s …")
    if not wants_gpu:
        return {"domains": idle_power([], seconds, suite.run.sample_hz)}
    found = (gpu_idle or _idle_in_child)(seconds, suite.run.sample_hz)
    return {"domains": found} if "reason" not in found else found


def idle_with_context(seconds: float, sampler_hz: float) -> dict[str, Any]:
    """Idle power as a case sees it: this process holds a CUDA context on every GPU it can
    use (an H200 idles near 79 W with none and higher with one; "energy over idle" taken
    against the lower figure reads high by the difference times the window)."""
    import torch

    from bench.telemetry import cuda_probe
    from bench.telemetry.idle import idle_power
    from bench.telemetry.nvml import Nvml

    with Nvml() as nvml:
        gpus = []
        for i in range(torch.cuda.device_count()):
            torch.zeros(1, device=f"cuda:{i}")  # the context, and the allocator's first block
            gpus.append(nvml.gpu_by_uuid(cuda_probe.cuda_uuid(i)))
        torch.cuda.synchronize()
        found = idle_power(gpus, seconds, sampler_hz)
    for name, domain in found.items():
        if name.startswith("gpu"):
            domain["method"] += " (CUDA context held)"
    return found


def _idle_in_child(seconds: float, sampler_hz: float) -> dict[str, Any]:
    """``idle_with_context`` in a fresh interpreter: the context it makes must not exist in
    this process, whose children are forked."""
    code = (
        "import json\n"
        "from bench.run.preparation import idle_with_context\n"
        f"print(json.dumps(idle_with_context({seconds!r}, {sampler_hz!r})))\n"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=seconds + 300,
            check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as e:
        return {"reason": f"idle power measurement failed: {type(e).__name__}: {e}"}
