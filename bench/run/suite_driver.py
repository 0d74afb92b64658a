"""Run a whole suite: pick the cases, launch each (and each repeat), store every result
the moment it exists, show progress, and leave a run that ``--resume`` can finish."""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.filenames import path_component
from bench.results import liveness, store
from bench.run.case import now_iso
from bench.run.case_process import make_launcher
from bench.run.preparation import preload_modules, prepare_run
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
    history: str | None = None  # the history this run is part of (``bench history``)
    launch: dict[str, Any] | None = None  # nodes of parallel cases: nnodes, node_rank, rdzv
    counters: list[str] | None = None  # overrides the suite's run.counters
    profile: bool | None = None  # overrides the suite's run.profile
    with_baselines: bool = False  # --filter also takes the chosen cases' baselines
    timed: bool = True  # False: only the passes asked for (``bench profile``)
    # After each process run: a reason to stop the run here, or None (``bench tune`` stops a
    # trial whose first run already breaks a constraint no further run can change).
    stop_when: Callable[[dict[str, Any]], str | None] | None = None


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


def select_cases(
    cases: tuple[Case, ...], pattern: str | None, shard: str | None, with_baselines: bool = False
) -> list[Case]:
    """The cases a run takes: those matching ``pattern`` (and, ``with_baselines``, their
    groups' baselines), then the K-th of N shards.

    Shards deal whole groups (a model x workload with its baseline), never single cases,
    so every shard holds each of its cases' baseline and its ratios stand on their own."""
    chosen = [c for c in cases if pattern is None or fnmatch.fnmatchcase(c.id, pattern)]
    if pattern is not None and not chosen:
        raise UserError(f"--filter {pattern!r} matches no case; see `bench list`")
    if with_baselines:
        groups = {c.group for c in chosen}
        chosen = [c for c in cases if c in chosen or (c.is_baseline and c.group in groups)]
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
    from bench.run.environment import software

    if opts.resume:
        run_dir = opts.results / path_component(opts.resume)
        if not (run_dir / store.MANIFEST).is_file():
            raise UserError(
                f"--resume {opts.resume}: no readable run at {run_dir / store.MANIFEST}"
            )
        store.believed_manifest(run_dir)
        # Written back as it was (not as the check reads it), with a dead run's last attempt
        # marked interrupted: this attempt's story starts afresh.
        manifest = liveness.effective(store.read_json(run_dir / store.MANIFEST))
        manifest.pop("status_reason", None)
        process = liveness.last_process(manifest)
        if manifest.get("status") == "running" and liveness.live_here(process):
            raise UserError(
                f"--resume {opts.resume}: that run is still running here (pid "
                f"{process['pid']}); wait for it, or stop it first"
            )
        if manifest.get("suite", {}).get("sha256") != suite.sha256:
            sets = " ".join(f"--set {o}" for o in manifest["suite"].get("overrides") or [])
            raise UserError(
                f"--resume {opts.resume}: the suite file changed since that run started "
                "(hash differs); resume needs the same suite"
                + (f" and the same overrides ({sets})" if sets else ""),
                where=suite.path,
            )
        changed = _changes((manifest.get("environment") or {}).get("software"), software())
        if changed and not opts.force:
            raise UserError(
                f"--resume {opts.resume}: {'; '.join(changed)} since that run started, so its "
                "numbers would mix two setups; rerun it, or pass --allow-version-change to "
                "resume anyway"
            )
        if changed:
            manifest.setdefault("resumed_across", []).append(changed)
        if opts.history:
            manifest["history"] = opts.history
        return opts.resume, run_dir, manifest
    run_id, run_dir = store.create_run_dir(opts.results, suite.name)
    manifest = {
        "schema_version": 1,
        "run_id": run_id,
        "suite": {
            "name": suite.name,
            "path": suite.path,
            "sha256": suite.sha256,
            "text": suite.text,  # the effective suite: extends, defaults, overrides applied
            "overrides": list(suite.overrides),  # the --set KEY=VALUE the text has applied
        },
        "environment": None,  # the caller's fingerprint, once the fork server is starting
        "started": now_iso(),
        "attempts": [],
    }
    if opts.history:
        manifest["history"] = opts.history
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


class RunSession:
    """A run folder being filled: its manifest, what the run prepared once (idle power,
    bandwidth, models), the launcher of its case processes. ``run_suite`` drives one through
    its schedule; ``bench ab``'s side server (``side_server``) drives one case at a time."""

    def __init__(
        self, suite: Suite, cases: list[Case], opts: RunOptions, planned: int | None
    ) -> None:
        from bench.run.environment import fingerprint

        self.suite, self.cases, self.opts = suite, cases, opts
        self.run_id, self.run_dir, self.manifest = _open_run(suite, opts)
        self.launcher = None
        if planned != 0:  # None: as many as asked for (bench ab's side)
            # Started first: the fork server imports torch and the run's preloads on the
            # other core while this process takes the environment's fingerprint.
            server_log = self.run_dir / store.LOGS / "fork-server.log"
            self.launcher = make_launcher(opts.inline, preload_modules(cases), server_log)
            self.launcher.start()
        if self.manifest.get("environment") is None:
            self.manifest["environment"] = fingerprint()
        self.timeout = opts.timeout or suite.run.timeout_s
        self.selection = _selection(suite, cases, opts)
        if self.selection is not None:
            self.manifest["selection"] = self.selection
        self.attempt = {
            "started": now_iso(),
            "argv": opts.argv,
            "mode": "inline" if opts.inline else "process",
            "planned": planned,
            "status": "running",
            "process": liveness.owner(),  # so that a reader can tell a dead run
        }
        self.manifest["attempts"].append(self.attempt)
        self.manifest["status"] = "running"
        # room for the last word on a full disk
        liveness.reserve(self.run_dir, len(json.dumps(self.manifest, default=str)))
        store.write_json_atomic(self.run_dir / store.MANIFEST, self.manifest)
        self.executed = 0
        self.facts: dict[str, Any] = {}

    def prepare(self, console) -> None:
        """Measure and ready what every case shares; what needs a quiet machine waits for
        the fork server's imports."""
        quiet = self.launcher.wait_ready if self.launcher is not None else lambda: None
        self.facts = prepare_run(self.suite, self.cases, self.manifest, self.run_dir, console,
                                 quiet)  # fmt: skip
        if self.opts.launch:
            self.facts["launch"] = self.opts.launch
            self.manifest["launch"] = self.opts.launch

    def count(self, console, done: set) -> None:
        """Count the run's countable cases in one valgrind process (``count_server``)."""
        from bench.run.count_server import count_run

        count_run(self, console, done)

    def profile(self, console) -> None:
        """Profile the run's cases, one more process each, after the timed ones."""
        from bench.run.profile_pass import profile_run

        profile_run(self, console)

    def run(self, case: Case, repeat: int) -> dict[str, Any]:
        """One case process; its result is stored the moment it exists."""
        log = store.log_path(self.run_dir, case.id, repeat)
        result = self.launcher.run(case, repeat, self.run_id, log, self.timeout, self.facts)
        store.write_json_atomic(store.case_path(self.run_dir, case.id, repeat), result)
        self.executed += 1
        return result

    def stop(self, reason: str, code: int) -> Interrupted:
        """Mark the run interrupted (the finished cases stay) and say how it ended."""
        if self.launcher is not None:
            self.launcher.abort()
        self.attempt.update(
            status="interrupted", reason=reason, ended=now_iso(), executed=self.executed
        )
        self.manifest["status"] = "interrupted"
        liveness.release(self.run_dir)
        with contextlib.suppress(OSError):  # the reserve was too small, or is not ours
            store.write_json_atomic(self.run_dir / store.MANIFEST, self.manifest)
        return Interrupted(self.run_id, self.run_dir, reason, code)

    def finish(self) -> None:
        status = "complete" if self.selection is None else "partial"
        self.attempt.update(status=status, ended=now_iso(), executed=self.executed)
        self.manifest["status"] = status
        self.manifest["ended"] = now_iso()
        liveness.release(self.run_dir)
        store.write_json_atomic(self.run_dir / store.MANIFEST, self.manifest)

    def close(self) -> None:
        if self.launcher is not None:
            self.launcher.close()


def run_suite(suite: Suite, opts: RunOptions, console=None) -> RunOutcome:
    console = console or make_console()
    cases = select_cases(suite.cases, opts.filter, opts.shard, opts.with_baselines)
    done = store.finished_ok(opts.results / path_component(opts.resume)) if opts.resume else set()
    todo = [(c, r) for c, r in schedule(cases, suite.run.repeats) if (c.id, r) not in done]
    todo = todo if opts.timed else []
    profiling = suite.run.profile if opts.profile is None else opts.profile
    session = RunSession(suite, cases, opts, len(todo) + (len(cases) if profiling else 0))
    plan = f"{len(todo)} to run, {len(done)} already done" if opts.timed else "profiles only"
    console.print(f"run [bold]{session.run_id}[/] → {session.run_dir}  ({plan})")
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        if todo or profiling:
            session.prepare(console)
        if todo:
            session.count(console, done)
        for _, _, result in _progress(todo, console, session):
            _print_line(console, result, suite.run.repeats)
            if opts.stop_when is not None and (why := opts.stop_when(result)):
                console.print(f"[yellow]stopping early[/]: {why}", highlight=False)
                break
        session.profile(console)
    except KeyboardInterrupt:
        raise session.stop("interrupted (Ctrl-C)", 130) from None
    except _Terminated:
        raise session.stop("terminated (SIGTERM)", 143) from None
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        where = e.filename or session.run_dir
        raise session.stop(f"cannot write results: {e.strerror} ({where})", 74) from None
    finally:
        session.close()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)

    session.finish()
    order = {c.id: i for i, c in enumerate(cases)}
    results = store.run_results(session.run_dir)
    results = sorted(
        (r for r in results if r["case_id"] in order),
        key=lambda r: (order[r["case_id"]], r["repeat"]),
    )
    return RunOutcome(session.run_id, session.run_dir, results, session.executed)


def _raise_terminated(signum, frame) -> None:
    raise _Terminated


def _progress(todo, console, session: RunSession):
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
            result = session.run(case, repeat)
            bar.advance(task)
            yield case, repeat, result


def _print_line(console, result: dict[str, Any], repeats: int) -> None:
    from rich.markup import escape

    status = result["status"]
    colour = "green" if status == "ok" else "yellow" if status in OUTCOMES else "red"
    rep = f" r{result['repeat']}" if repeats > 1 else ""
    detail = (
        f"{result['wall_s']:.1f}s"
        if status == "ok"
        else (result.get("error") or "").splitlines()[0][:160]
    )
    # An error's text is not markup: "[/path/pair.cc:553]" in a gloo error is no closing tag.
    line = f"{result['case_id']}{rep}  {detail}"
    console.print(f"[{colour}]{status:>7}[/] {escape(line)}", highlight=False)
    graphs = (result.get("info") or {}).get("cuda_graphs") or {}
    if graphs.get("skipped"):  # promised by the case, silently dropped by inductor
        why = (graphs.get("reasons") or ["no reason logged"])[0]
        console.print(f"        [yellow]no CUDA graphs[/]: {escape(why)}", highlight=False)


# Statuses that are what the case measured, not a fault of the run: skipped here with a
# reason, a training that diverged (a learning rate too high is a finding).
OUTCOMES = ("skipped", "diverged")


def exit_code(results: list[dict[str, Any]]) -> int:
    """0 when every case ran, was cleanly skipped or diverged; 1 when any failed, timed
    out or died."""
    return 0 if all(r["status"] in ("ok", *OUTCOMES) for r in results) else 1


__all__ = [
    "Interrupted",
    "RunOptions",
    "RunOutcome",
    "RunSession",
    "exit_code",
    "run_suite",
    "select_cases",
]
