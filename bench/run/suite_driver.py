"""Run a whole suite: pick the cases, launch each (and each repeat), store every result
the moment it exists, show progress, and leave a run that ``--resume`` can finish."""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.filenames import path_component
from bench.results import store
from bench.run.case import now_iso
from bench.run.case_process import make_launcher
from bench.spec.suite import Case, Suite


class Interrupted(Exception):
    """The run was stopped (Ctrl-C, SIGTERM, a full disk): finished cases are stored, the
    manifest says so, and the run can be resumed."""

    def __init__(self, run_id: str, run_dir: Path, reason: str = "interrupted", code: int = 130):
        super().__init__(run_id)
        self.run_id = run_id
        self.run_dir = run_dir
        self.reason = reason
        self.code = code  # the exit code: 130 Ctrl-C, 143 SIGTERM, 74 an I/O error


class _Terminated(BaseException):
    """SIGTERM (what Slurm, CI time-outs and systemd send first), handled as Ctrl-C is."""


@dataclass
class RunOptions:
    results: Path = Path("results")
    filter: str | None = None
    shard: str | None = None  # "K/N", 1-based
    resume: str | None = None
    force: bool = False  # resume even though bench or its libraries changed
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
    """The cases a run takes: those matching ``pattern``, then the K-th of N shards.

    Shards deal whole groups (a model x workload with its baseline), never single cases,
    so every shard holds each of its cases' baseline and its ratios stand on their own."""
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
    groups = list(dict.fromkeys(c.group for c in chosen))
    mine = set(groups[k - 1 :: n])
    return [c for c in chosen if c.group in mine]


def schedule(cases: list[Case], repeats: int) -> list[tuple[Case, int]]:
    """(case, repeat) in the order they run.

    Round-major: round r runs every case once, so slow drift of the machine (heat, other
    load) spreads over all cases instead of landing on whichever ran last. Inside a round
    each group with cases to compare opens and closes with its baseline (repeats 2r and
    2r+1), so the baseline's runs bracket its cases in time and drift within the round does
    not land on the ratios.
    """
    order: list[tuple[Case, int]] = []
    groups: dict[str, list[Case]] = {}
    for c in cases:
        groups.setdefault(c.group, []).append(c)
    for r in range(repeats):
        for members in groups.values():
            base = [c for c in members if c.is_baseline]
            rest = [c for c in members if not c.is_baseline]
            if not rest:  # nothing to compare with: the baseline is a case like any other
                order += [(b, r) for b in base]
                continue
            order += [(b, 2 * r) for b in base]
            order += [(c, r) for c in rest]
            order += [(b, 2 * r + 1) for b in base]
    return order


def _selection(suite: Suite, cases: list[Case], opts: RunOptions) -> dict[str, Any] | None:
    if opts.filter is None and opts.shard is None:
        return None
    return {
        "filter": opts.filter,
        "shard": opts.shard,
        "cases": sorted(c.id for c in cases),
        "of": len(suite.cases),
    }


def _open_run(suite: Suite, opts: RunOptions) -> tuple[str, Path, dict[str, Any]]:
    from bench.run.environment import fingerprint, software

    if opts.resume:
        run_dir = opts.results / path_component(opts.resume)
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
        changed = _changes(manifest.get("environment", {}).get("software"), software())
        if changed and not opts.force:
            raise UserError(
                f"--resume {opts.resume}: {'; '.join(changed)} since that run started, so its "
                "numbers would mix two setups; rerun it, or pass --force to resume anyway"
            )
        if changed:
            manifest.setdefault("resumed_across", []).append(changed)
        return opts.resume, run_dir, manifest
    run_id, run_dir = store.create_run_dir(opts.results, suite.name)
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
    return run_id, run_dir, manifest


def _changes(before: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """What differs between the software a run started with and today's, in words."""
    if before is None:
        return ["the run records no software versions (made by an older bench)"]
    out = []
    for key, value in now.items():
        old = before.get(key)
        if key == "bench_source":
            old = {k: (old or {}).get(k) for k in ("commit", "dirty")}
            value = {k: value.get(k) for k in ("commit", "dirty")}
            if old != value:
                out.append(f"bench's source changed (git {old} -> {value})")
        elif old != value:
            out.append(f"{key} changed ({old} -> {value})")
    return out


def run_suite(suite: Suite, opts: RunOptions, console=None) -> RunOutcome:
    console = console or make_console()
    cases = select_cases(suite.cases, opts.filter, opts.shard)
    run_id, run_dir, manifest = _open_run(suite, opts)
    done = store.finished_ok(run_dir) if opts.resume else set()
    todo = [(c, r) for c, r in schedule(cases, suite.run.repeats) if (c.id, r) not in done]
    timeout = opts.timeout or suite.run.timeout_s
    selection = _selection(suite, cases, opts)
    if selection is not None:
        manifest["selection"] = selection

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
    executed = 0

    def stop(reason: str, code: int) -> Interrupted:
        attempt.update(status="interrupted", reason=reason, ended=now_iso(), executed=executed)
        manifest["status"] = "interrupted"
        with contextlib.suppress(OSError):  # a full disk may refuse this too
            store.write_json_atomic(run_dir / store.MANIFEST, manifest)
        return Interrupted(run_id, run_dir, reason, code)

    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
    launcher = None
    try:
        facts = _prepare(suite, cases, manifest, run_dir, console) if todo else {}
        server_log = run_dir / store.LOGS / "fork-server.log"
        launcher = make_launcher(opts.inline, _preload(cases), server_log)
        for case, repeat, result in _progress(
            todo, console, launcher, run_id, run_dir, timeout, facts
        ):
            store.write_json_atomic(store.case_path(run_dir, case.id, repeat), result)
            executed += 1
            _print_line(console, result, suite.run.repeats)
    except KeyboardInterrupt:
        _abort(launcher)
        raise stop("interrupted (Ctrl-C)", 130) from None
    except _Terminated:
        _abort(launcher)
        raise stop("terminated (SIGTERM)", 143) from None
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        _abort(launcher)
        raise stop(f"cannot write results: {e.strerror} ({e.filename or run_dir})", 74) from None
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)

    status = "complete" if selection is None else "partial"
    attempt.update(status=status, ended=now_iso(), executed=executed)
    manifest["status"] = status
    manifest["ended"] = now_iso()
    store.write_json_atomic(run_dir / store.MANIFEST, manifest)
    order = {c.id: i for i, c in enumerate(cases)}
    results = [store.read_json(p) for p in (run_dir / store.CASES).glob("*.json")]
    results = sorted(
        (r for r in results if r["case_id"] in order),
        key=lambda r: (order[r["case_id"]], r["repeat"]),
    )
    return RunOutcome(run_id, run_dir, results, executed)


def _raise_terminated(signum, frame) -> None:
    raise _Terminated


def _abort(launcher) -> None:
    if launcher is not None:
        launcher.abort()


def _prepare(suite, cases, manifest, run_dir, console) -> dict[str, Any]:
    """What every case of the run shares, measured once before the first: idle power, the
    machine's copy bandwidth, the models made ready (trained, cached)."""
    if "idle_power" not in manifest:
        manifest["idle_power"] = measure_idle(suite, cases, console)
        store.write_json_atomic(run_dir / store.MANIFEST, manifest)
    facts: dict[str, Any] = {"run_dir": str(run_dir)}
    idle = manifest["idle_power"].get("domains")
    if idle:
        facts["idle_power"] = idle
    facts["copy_bandwidth"] = copy_bandwidth(manifest, cases, console)
    store.write_json_atomic(run_dir / store.MANIFEST, manifest)
    prepare_models(cases, console)
    return facts


def _preload(cases: list[Case]) -> tuple[str, ...]:
    from bench.spec import registry

    preload = set()
    for c in cases:
        entries = [
            registry.models.get(c.model.name),
            *(registry.techniques.get(t.name) for t in c.techniques),
        ]
        preload.update(m for e in entries for m in e.meta.get("preload", ()))
    return tuple(sorted(preload))


def prepare_models(cases: list[Case], console) -> None:
    """Give each model a chance to get ready once, here, before any case is timed (the
    built-in GPT trains and caches its weights), with a progress bar."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from bench.spec import registry

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
        known[key] = found = machine_bandwidth(device, threads)
        if "bytes_per_s" in found:
            console.print(
                f"memory bandwidth of {key}: read {found['read_bytes_per_s'] / 1e9:.1f} GB/s, "
                f"copy {found['bytes_per_s'] / 1e9:.1f} GB/s"
            )
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


def merge_runs(run_dirs: list[Path], results: Path) -> Path:
    """One run made of the shards (or partial runs) of one suite: every case file copied
    into a new run folder whose manifest says which runs it holds, ``complete`` when their
    selections cover the suite. A report over it equals the unsharded run's."""
    import shutil

    from bench.spec.suite import parse_suite

    manifests = []
    for d in run_dirs:
        try:
            manifests.append(store.read_json(d / store.MANIFEST))
        except (OSError, ValueError):
            raise UserError(f"{d}: no readable run ({store.MANIFEST})") from None
    hashes = {m["suite"]["sha256"] for m in manifests}
    if len(hashes) != 1:
        raise UserError("bench merge: the runs come from different suite files (hashes differ)")
    first = manifests[0]
    suite = parse_suite(first["suite"]["text"], where=first["suite"].get("path") or "<suite>")
    run_id, run_dir = store.create_run_dir(results, suite.name)
    seen: dict[str, Path] = {}
    covered: set[str] = set()
    for d, m in zip(run_dirs, manifests, strict=True):
        selection = m.get("selection")
        covered |= set(selection["cases"]) if selection else {c.id for c in suite.cases}
        for sub in (store.CASES, store.LOGS):
            for f in sorted((d / sub).glob("*")):
                if f.name in seen and sub == store.CASES:
                    if f.read_bytes() != (run_dir / sub / f.name).read_bytes():
                        raise UserError(
                            f"bench merge: {f.name} is in both {seen[f.name]} and {d}; "
                            "shards of one run never share a case"
                        )
                    continue
                seen.setdefault(f.name, d)
                (run_dir / sub).mkdir(exist_ok=True)
                target = run_dir / sub / (f.name if sub == store.CASES else f"{d.name}.{f.name}")
                shutil.copy2(f, target)
    for f in (run_dir / store.CASES).glob("*.json"):  # the merged run is their run now
        data = store.read_json(f)
        data["run_id"] = run_id
        store.write_json_atomic(f, data)
    done = all(m.get("status") in ("complete", "partial") for m in manifests)
    status = "complete" if done and covered >= {c.id for c in suite.cases} else "partial"
    manifest = {
        "schema_version": 1,
        "run_id": run_id,
        "suite": first["suite"],
        "environment": first["environment"],
        "started": min(m.get("started", "") for m in manifests),
        "ended": now_iso(),
        "status": status,
        "attempts": [a for m in manifests for a in m.get("attempts", [])],
        "merged_from": [
            {
                "run_id": m["run_id"],
                "status": m.get("status"),
                "selection": m.get("selection"),
                "environment": m.get("environment"),
            }
            for m in manifests
        ],
    }
    if status == "partial":
        manifest["selection"] = {"cases": sorted(covered), "of": len(suite.cases)}
    store.write_json_atomic(run_dir / store.MANIFEST, manifest)
    return run_dir
