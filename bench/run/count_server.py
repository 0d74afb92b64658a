"""One process that counts every counted case of a run.

Starting torch under valgrind costs tens of seconds, so a run pays it once: ``CountServer``
starts ``python -m bench.run.count_server`` under callgrind with instrumentation and
collection off (or, for hardware counters, as a plain process), the server imports torch,
bench and the run's preloads, then forks one child per case handed to it (isolated as a
timed case is, and counted by its own clock: ``bench.telemetry.counters``).
Requests arrive as JSON lines on the server's stdin; each answer, the case's result as JSON,
comes back on a pipe of its own, so that what libraries print goes to the log, not into the
protocol.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.results import store
from bench.run import offline
from bench.run.case import now_iso
from bench.spec.suite import Case

if TYPE_CHECKING:
    from bench.run.suite_driver import RunSession

SERVER = "bench.run.count_server"
START_TIMEOUT_S = 600.0  # valgrind starting python and torch: ~20 s on the 2-core VM


class CountServer:
    """The parent's handle on the counting process."""

    def __init__(
        self, out_dir: Path, counters: list[str], iterations: int, preload: tuple[str, ...] = ()
    ):
        from bench.telemetry.callgrind import build_helper
        from bench.telemetry.counters import source_of

        self.out_dir = out_dir
        self.counters = counters
        self.source = source_of(counters)
        self.iterations = iterations
        self.preload = preload
        self.lib = build_helper() if self.source.needs_helper else None
        self.proc: subprocess.Popen | None = None
        self.replies: Any = None
        self.started_s: float | None = None  # seconds the server took to be ready
        self.broken: str | None = None  # why the server could not start

    def start(self) -> None:
        from bench.telemetry.callgrind import COUNT_ENV

        self.out_dir.mkdir(parents=True, exist_ok=True)
        r, w = os.pipe()
        config = {
            "preload": list(self.preload),
            "lib": str(self.lib or ""),
            "out": str(self.out_dir),
            "source": self.source.name,
        }
        argv = [
            *self.source.prefix(self.out_dir, self.counters, self.lib),
            sys.executable,
            "-m",
            SERVER,
            str(w),
            json.dumps(config),
        ]
        log = open(self.out_dir / "server.log", "ab")  # noqa: SIM115 - the child's for life
        t = time.perf_counter()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=log, stderr=log, pass_fds=(w,),
            start_new_session=True, text=True, env={**offline.child_env(), **COUNT_ENV},
        )  # fmt: skip
        log.close()
        os.close(w)
        self.replies = os.fdopen(r, "r")
        ready = _readline(self.replies, START_TIMEOUT_S) or ""
        if not ready.startswith("ready"):
            self.close()
            raise RuntimeError(
                f"the counting server did not start (see {self.out_dir / 'server.log'})"
            )
        self.started_s = time.perf_counter() - t

    def count(self, case: Case, run_id: str | None, timeout: float) -> dict[str, Any]:
        """The case's count result as JSON-ready data; a failure or timeout becomes its status."""
        started = now_iso()
        if self.proc is None:
            if self.broken:  # failed to start once: the same reason for every case
                return _failure(case, run_id, started, "failed", self.broken)
            try:
                self.start()
            except RuntimeError as e:
                self.broken = str(e)
                return _failure(case, run_id, started, "failed", self.broken)
        request = {
            "case": case.to_json(),
            "counters": self.counters,
            "iterations": self.iterations,
            "run_id": run_id,
        }
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = _readline(self.replies, timeout)
        if line is None:  # timed out or died: the next case gets a fresh server
            status = "timeout" if self.proc.poll() is None else "failed"
            self.close()
            return _failure(case, run_id, started, status, f"counting {status} after {timeout:g} s")
        return json.loads(line)

    def close(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None
        if self.replies is not None:
            self.replies.close()
            self.replies = None


def count_run(session: RunSession, console, done: set) -> None:
    """Count the instructions of every countable case in one process (under valgrind for
    callgrind's counters), before the timed cases (never beside them: it would take a core
    from them). What cannot be counted is absent from the timed results with the reason."""
    from bench.run.preparation import preload_modules
    from bench.telemetry.counters import source_of

    counters = session.opts.counters
    if counters is None:
        counters = list(session.suite.run.counters)
    if not counters:
        return
    source = source_of(counters)
    why = source.missing(counters)
    absent: dict[str, str] = {}
    todo = []
    for case in session.cases:
        reason = why or countable(case)
        if reason:
            absent[case.id] = reason
        elif (case.id, store.COUNT) not in done:
            todo.append(case)
    session.facts["count_absent"] = {"counters": counters, "cases": absent}
    session.manifest["counters"] = {"counters": counters, "absent": absent}
    for reason in sorted(set(absent.values())):  # asked for, so say why they are missing
        n = sum(r == reason for r in absent.values())
        console.print(f"not counting {', '.join(counters)} of {n} case(s): {reason}",
                      highlight=False)  # fmt: skip
    if not todo:
        return
    out = session.run_dir / store.LOGS / source.name
    iterations = session.suite.run.count_iterations
    server = CountServer(out, counters, iterations, preload_modules(session.cases))
    how = "under callgrind" if source.name == "callgrind" else "with hardware counters"
    console.print(f"counting {', '.join(counters)} of {len(todo)} case(s) {how}")
    try:
        for case in todo:
            result = server.count(case, session.run_id, session.timeout)
            store.write_json_atomic(store.case_path(session.run_dir, case.id, store.COUNT), result)
            _print_count(console, result)
    finally:
        session.manifest["counters"]["server_start_s"] = server.started_s
        server.close()
        store.write_json_atomic(session.run_dir / store.MANIFEST, session.manifest)


def _print_count(console, result: dict[str, Any]) -> None:
    from rich.markup import escape

    if result["status"] != "ok":
        error = (result.get("error") or "").splitlines()[0][:160]
        line = escape(f"{result['case_id']} (count)  {error}")
        console.print(f"[red]{result['status']:>7}[/] {line}", highlight=False)
        return
    figures = "  ".join(f"{m['value'] / 1e6:,.1f} M {m['name']}" for m in result["metrics"][:2])
    line = escape(f"{result['case_id']} (count)  {figures}  {result['wall_s']:.1f}s")
    console.print(f"[green]{'counted':>7}[/] {line}", highlight=False)


def countable(case: Case) -> str | None:
    """Why this case's instructions cannot be counted, or None."""
    from bench.run import ranks

    if case.run["device"] != "cpu":
        return "a GPU case: the counters count CPU instructions only"
    if ranks.placement_of(case, {}) is not None:
        return "a case of several processes (ranks): a count follows one"
    return None


def _readline(f, timeout: float) -> str | None:
    from select import select

    ready, _, _ = select([f], [], [], timeout)
    if not ready:
        return None
    line = f.readline()
    return line or None


def _failure(case: Case, run_id, started: str, status: str, error: str, tb=None) -> dict[str, Any]:
    from bench.results.schema import CaseResult

    return CaseResult(
        case=case.to_json(), case_id=case.id, case_hash=case.hash, repeat=0, status=status,
        started=started, ended=now_iso(), wall_s=0.0, info={"pass": "count"}, error=error,
        traceback=tb, run_id=run_id,
    ).to_json()  # fmt: skip


def serve(reply_fd: int, config: dict[str, Any]) -> None:
    """The server's loop (inside valgrind for callgrind): one forked child per request."""
    import importlib

    import torch  # noqa: F401 - imported once here, inherited by every child

    import bench.run.counting  # noqa: F401
    from bench.spec import registry

    registry.load_plugins()  # what a case may name, as the fork server has it
    for module in config["preload"]:
        importlib.import_module(module)
    replies = os.fdopen(reply_fd, "w")
    replies.write("ready\n")
    replies.flush()
    for line in sys.stdin:
        request = json.loads(line)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the case's own process
            os.close(r)
            _count_child(request, w, config)
        os.close(w)
        with os.fdopen(r) as f:
            payload = f.read()
        _, code = os.waitpid(pid, 0)
        if not payload:
            case = Case.from_json(request["case"])
            why = f"the counting process died (wait status {code})"
            payload = json.dumps(_failure(case, request["run_id"], now_iso(), "failed", why))
        replies.write(payload.replace("\n", " ") + "\n")
        replies.flush()


def _count_child(request: dict[str, Any], w: int, config: dict[str, Any]) -> None:
    from bench.run.counting import count_case
    from bench.telemetry.counters import SOURCES

    started = now_iso()
    case = Case.from_json(request["case"])
    try:
        source = SOURCES[config["source"]]
        prefix = f"{config['out']}/callgrind.{os.getpid()}"  # callgrind's dumps
        helper = Path(config["lib"]) if config["lib"] else None
        result = count_case(
            case, request["counters"], request["iterations"],
            lambda counter: source.clock(prefix, counter, helper), request["run_id"],
            source.units,
        )  # fmt: skip
        result = result.to_json()
    except Exception as e:
        result = _failure(case, request["run_id"], started, "failed",
                          f"{type(e).__name__}: {e}", traceback.format_exc())  # fmt: skip
    with os.fdopen(w, "w") as f:
        f.write(json.dumps(result))
    os._exit(0)


if __name__ == "__main__":
    serve(int(sys.argv[1]), json.loads(sys.argv[2]))
