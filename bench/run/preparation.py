"""What a run measures or readies once, before its first case: the idle power of the
devices it uses, the machine's memory bandwidth, and the models (trained and cached)."""

from __future__ import annotations

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
    import torch

    return torch.cuda.is_available()


def measure_idle(suite: Suite, cases: list[Case], console, quiet=lambda: None) -> dict[str, Any]:
    """Idle power of the GPUs the run uses (NVML, no CUDA context) and of RAPL's domains,
    measured once before the first case; the reason when there is nothing to measure."""
    from bench.telemetry.energy import idle_power, rapl_zones
    from bench.telemetry.nvml import Nvml, NvmlUnavailable

    seconds = suite.run.idle_s
    if seconds <= 0 or not suite.run.energy:
        return {"reason": "turned off in the suite (run.idle_s = 0 or run.energy = false)"}
    wants_gpu = any(c.run["device"] == "cuda" for c in cases)
    zones, rapl_why = rapl_zones()
    try:
        nvml = Nvml() if wants_gpu else None
    except NvmlUnavailable as e:
        nvml, gpu_why = None, str(e)
    else:
        gpu_why = None if wants_gpu else "no CUDA case in this run"
    if nvml is None and not zones:
        return {"reason": f"nothing to measure: GPU: {gpu_why}; CPU: {rapl_why}"}
    try:
        gpus = [nvml.gpu(i) for i in range(nvml.count())] if nvml else []
        quiet()
        console.print(f"measuring idle power for {seconds:g} s …")
        return {"domains": idle_power(gpus, seconds, suite.run.sample_hz)}
    finally:
        if nvml:
            nvml.close()
