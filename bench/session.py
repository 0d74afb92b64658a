"""Run a whole suite: pick the cases, launch each (and each repeat), store every result
the moment it exists, show progress, and leave a run that ``--resume`` can finish."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import store
from bench.errors import UserError
from bench.launch import make_launcher
from bench.runner import now_iso
from bench.suite import Case, Suite


class Interrupted(Exception):
    """Ctrl-C: finished cases are stored; the run can be resumed."""

    def __init__(self, run_id: str, run_dir: Path):
        super().__init__(run_id)
        self.run_id = run_id
        self.run_dir = run_dir


@dataclass
class RunOptions:
    results: Path = Path("results")
    filter: str | None = None
    shard: str | None = None  # "K/N", 1-based
    resume: str | None = None
    inline: bool = False
    timeout: float | None = None  # overrides the suite's run.timeout_s
    argv: list[str] = field(default_factory=list)


@dataclass
class RunOutcome:
    run_id: str
    run_dir: Path
    results: list[dict[str, Any]]
    executed: int


def make_console():
    from rich.console import Console

    probe = Console(stderr=True)
    # Logs and CI captures are not terminals: don't fold case ids at rich's 80-column default.
    return probe if probe.is_terminal else Console(stderr=True, width=160)


def select_cases(cases: tuple[Case, ...], pattern: str | None, shard: str | None) -> list[Case]:
    chosen = [c for c in cases if pattern is None or fnmatch.fnmatchcase(c.id, pattern)]
    if pattern is not None and not chosen:
        raise UserError(f"--filter {pattern!r} matches no case; see `bench list`")
    if shard is None:
        return chosen
    try:
        k, n = (int(x) for x in shard.split("/"))
        if not 1 <= k <= n:
            raise ValueError
    except ValueError:
        raise UserError(f"--shard {shard!r}: expected K/N with 1 <= K <= N, e.g. 2/4") from None
    return chosen[k - 1 :: n]


def _open_run(suite: Suite, opts: RunOptions) -> tuple[str, Path, dict[str, Any]]:
    if opts.resume:
        run_dir = opts.results / opts.resume
        try:
            manifest = store.read_json(run_dir / store.MANIFEST)
        except (OSError, ValueError):
            raise UserError(
                f"--resume {opts.resume}: no readable run at {run_dir / store.MANIFEST}"
            ) from None
        if manifest.get("suite", {}).get("sha256") != suite.sha256:
            raise UserError(
                f"--resume {opts.resume}: the suite file changed since that run started "
                "(hash differs); resume needs the same suite",
                where=suite.path,
            )
        return opts.resume, run_dir, manifest
    from bench.env import fingerprint

    run_id = store.new_run_id(suite.name)
    manifest = {
        "schema_version": 1,
        "run_id": run_id,
        "suite": {
            "name": suite.name,
            "path": suite.path,
            "sha256": suite.sha256,
            "text": suite.text,
        },
        "environment": fingerprint(),
        "started": now_iso(),
        "attempts": [],
    }
    return run_id, opts.results / run_id, manifest


def run_suite(suite: Suite, opts: RunOptions, console=None) -> RunOutcome:
    console = console or make_console()
    cases = select_cases(suite.cases, opts.filter, opts.shard)
    run_id, run_dir, manifest = _open_run(suite, opts)
    done = store.finished_ok(run_dir) if opts.resume else set()
    repeats = suite.run.repeats
    # Repeat-major order: slow drift of the machine (heat, other load) spreads over all
    # cases instead of landing on whichever ran last.
    todo = [(c, r) for r in range(repeats) for c in cases if (c.id, r) not in done]
    timeout = opts.timeout or suite.run.timeout_s

    attempt = {
        "started": now_iso(),
        "argv": opts.argv,
        "mode": "inline" if opts.inline else "process",
        "planned": len(todo),
        "status": "running",
    }
    manifest["attempts"].append(attempt)
    manifest["status"] = "running"
    store.write_json_atomic(run_dir / store.MANIFEST, manifest)
    console.print(
        f"run [bold]{run_id}[/] → {run_dir}  ({len(todo)} to run, {len(done)} already done)"
    )

    if todo and "idle_power" not in manifest:
        manifest["idle_power"] = measure_idle(suite, cases, console)
        store.write_json_atomic(run_dir / store.MANIFEST, manifest)
    idle = manifest["idle_power"].get("domains")
    facts: dict[str, Any] = {"run_dir": str(run_dir)}
    if idle:
        facts["idle_power"] = idle
    if todo:
        facts["copy_bandwidth"] = copy_bandwidth(manifest, cases, console)
        store.write_json_atomic(run_dir / store.MANIFEST, manifest)
        prepare_models(cases, console)

    from bench import registry

    preload = set()
    for c in cases:
        entries = [
            registry.models.get(c.model.name),
            *(registry.techniques.get(t.name) for t in c.techniques),
        ]
        preload.update(m for e in entries for m in e.meta.get("preload", ()))
    launcher = make_launcher(opts.inline, tuple(sorted(preload)))
    executed = 0
    try:
        for case, repeat, result in _progress(
            todo, console, launcher, run_id, run_dir, timeout, facts
        ):
            store.write_json_atomic(store.case_path(run_dir, case.id, repeat), result)
            executed += 1
            _print_line(console, result, repeats)
    except KeyboardInterrupt:
        launcher.abort()
        attempt.update(status="interrupted", ended=now_iso(), executed=executed)
        manifest["status"] = "interrupted"
        store.write_json_atomic(run_dir / store.MANIFEST, manifest)
        raise Interrupted(run_id, run_dir) from None

    attempt.update(status="complete", ended=now_iso(), executed=executed)
    manifest["status"] = "complete"
    manifest["ended"] = now_iso()
    store.write_json_atomic(run_dir / store.MANIFEST, manifest)
    order = {c.id: i for i, c in enumerate(cases)}
    results = [store.read_json(p) for p in (run_dir / store.CASES).glob("*.json")]
    results = sorted(
        (r for r in results if r["case_id"] in order),
        key=lambda r: (order[r["case_id"]], r["repeat"]),
    )
    return RunOutcome(run_id, run_dir, results, executed)


def prepare_models(cases: list[Case], console) -> None:
    """Give each model a chance to get ready once, here, before any case is timed (the
    built-in GPT trains and caches its weights), with a progress bar."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from bench import registry

    seen: set[str] = set()
    for case in cases:
        entry = registry.models.get(case.model.name)
        prepare = entry.meta.get("prepare")
        if prepare is None or case.model.label in seen:
            continue
        if case.run["device"] == "cuda" and not _cuda_available():
            continue  # its cases are skipped as unsupported here; nothing to get ready
        seen.add(case.model.label)
        columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
        live = console.is_terminal
        with Progress(*columns, console=console, transient=True, disable=not live) as bar:
            task = bar.add_task(f"preparing {case.model.label}", total=None)

            label = case.model.label

            def progress(step: int, total: int, bits: float, task=task, label=label) -> None:
                text = f"training {label}: step {step}/{total}, {bits:.2f} bits/byte"
                bar.update(task, completed=step, total=total, description=text)

            params = entry.params.model_validate(case.model.params)
            record = prepare(params, progress, case.run["device"])
        if record and record.get("cached") is False:
            console.print(
                f"trained {case.model.label} in {record['train_seconds']:.1f} s: held-out "
                f"{record['held_out_bits_per_byte']:.3f} bits/byte (cached at {record['path']})"
            )


def copy_bandwidth(manifest: dict[str, Any], cases: list[Case], console) -> dict[str, Any]:
    """The machine's copy bandwidth per device the cases use (cached per machine), kept in
    the run's environment fingerprint; a resumed run reuses the figure it started with."""
    from bench.telemetry.bandwidth import machine_bandwidth

    known = manifest["environment"].setdefault("copy_bandwidth", {})
    for device in sorted({c.run["device"] for c in cases} - set(known)):
        if device == "cuda" and not _cuda_available():
            known[device] = {"reason": "no CUDA device on this machine"}
            continue
        known[device] = found = machine_bandwidth(device)
        if "bytes_per_s" in found:
            console.print(f"copy bandwidth of {device}: {found['bytes_per_s'] / 1e9:.1f} GB/s")
    return known


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def measure_idle(suite: Suite, cases: list[Case], console) -> dict[str, Any]:
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
        console.print(f"measuring idle power for {seconds:g} s …")
        return {"domains": idle_power(gpus, seconds, suite.run.sample_hz)}
    finally:
        if nvml:
            nvml.close()


def _progress(todo, console, launcher, run_id, run_dir, timeout, facts):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(
        *columns, console=console, transient=True, disable=not console.is_terminal
    ) as bar:
        task = bar.add_task("starting", total=len(todo))
        for case, repeat in todo:
            bar.update(task, description=case.id)
            log = store.log_path(run_dir, case.id, repeat)
            result = launcher.run(case, repeat, run_id, log, timeout, facts)
            bar.advance(task)
            yield case, repeat, result


def _print_line(console, result: dict[str, Any], repeats: int) -> None:
    status = result["status"]
    colour = "green" if status == "ok" else "yellow" if status == "skipped" else "red"
    rep = f" r{result['repeat']}" if repeats > 1 else ""
    detail = (
        f"{result['wall_s']:.1f}s"
        if status == "ok"
        else (result.get("error") or "").splitlines()[0][:160]
    )
    console.print(f"[{colour}]{status:>7}[/] {result['case_id']}{rep}  {detail}", highlight=False)


def exit_code(results: list[dict[str, Any]]) -> int:
    """0 when every case ran or was cleanly skipped; 1 when any failed, timed out or died."""
    return 0 if all(r["status"] in ("ok", "skipped") for r in results) else 1


__all__ = ["Interrupted", "RunOptions", "RunOutcome", "exit_code", "run_suite", "select_cases"]
