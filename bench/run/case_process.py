"""Where a case runs: in a fresh child process (default) or inline (debugging).

Children are forked from a fork server that has torch and bench imported already, so
isolation costs a fork rather than an interpreter start and a torch import. The parent
blocks on the child's pipe and exit with a timeout (``multiprocessing.connection.wait``):
it never polls in a loop, which would steal a core from the case being measured.

As with every multiprocessing start method but plain fork, a child first imports the
parent's ``__main__`` module: a script that calls ``run_suite`` itself must keep its
work under ``if __name__ == "__main__":``. The ``bench`` command and pytest already do.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Protocol

from bench.results.schema import CaseResult
from bench.run import case as runner
from bench.spec.suite import Case

LOG_TAIL_CHARS = 4000


class Launcher(Protocol):
    def run(
        self,
        case: Case,
        repeat: int,
        run_id: str | None,
        log: Path | None,
        timeout: float,
        facts: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Run one case; return its result as JSON-ready data. Never raises for the case."""
        ...

    def start(self) -> None:
        """Get ready to run cases now rather than on the first one."""
        ...

    def wait_ready(self) -> None:
        """Return once ready to run a case without loading anything more."""
        ...

    def abort(self) -> None:
        """Stop whatever is running now (Ctrl-C)."""
        ...

    def close(self) -> None:
        """Release what the launcher keeps between cases, at the end of a run."""
        ...


class InlineLauncher:
    """Runs in this process: tracebacks and debuggers work, but a crash ends the run and
    the timeout is not enforced."""

    def run(self, case, repeat, run_id, log, timeout, facts=None) -> dict[str, Any]:
        return runner.execute(case, repeat, run_id, facts).to_json()

    def start(self) -> None:
        pass

    def wait_ready(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


class ProcessLauncher:
    def __init__(
        self,
        preload: tuple[str, ...] = (),
        server_log: Path | None = None,
        method: str = "forkserver",
    ) -> None:
        # ``preload``: heavy modules the run's models need (transformers takes ~3 s to
        # import), imported once by the fork server instead of by every case. ``method``
        # "spawn" (a fresh interpreter per case) is there to measure what the server saves.
        self._ctx = mp.get_context(method)
        if method == "forkserver":
            self._ctx.set_forkserver_preload(["bench.run.child", *preload])
        self._proc: Any = None
        self._server_log = server_log

    def start(self) -> None:
        """Start the fork server (if not yet running) with its output in ``server_log``:
        what libraries print on import (torchao's missing optional kernels, torch deprecation
        warnings) belongs in the run's logs, not on the user's console. ``run`` starts it on
        first use; a caller that times its first case calls this before."""
        from multiprocessing import forkserver

        if self._ctx.get_start_method() != "forkserver":
            return
        if self._server_log is None:
            forkserver.ensure_running()
            return
        self._server_log.parent.mkdir(parents=True, exist_ok=True)
        saved = [os.dup(1), os.dup(2)]
        fd = os.open(self._server_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            for std in (1, 2):
                os.dup2(fd, std)
            forkserver.ensure_running()
        finally:
            for std, old in zip((1, 2), saved, strict=True):
                os.dup2(old, std)
                os.close(old)
            os.close(fd)

    def wait_ready(self) -> None:
        """Block until the fork server has imported its preloads (a no-op child's round
        trip): what must measure a quiet machine (idle power, bandwidth) waits for this."""
        self.start()
        proc = self._ctx.Process(target=_noop, name="bench-ready")
        proc.start()
        proc.join()

    def run(self, case, repeat, run_id, log, timeout, facts=None) -> dict[str, Any]:
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
        self.start()
        oom_before = cgroup_oom_kills()
        started, t0 = runner.now_iso(), time.perf_counter()
        recv, send = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(
            target=_child_main,
            args=(
                case.to_json(),
                repeat,
                run_id,
                str(log) if log else None,
                facts,
                send,
                os.getpid(),
            ),
            name=f"bench-case-{case.hash}",
        )
        self._proc = proc
        proc.start()
        send.close()
        payload, timed_out = self._wait(proc, recv, timeout)
        self._proc = None
        recv.close()
        if payload is not None:
            return payload
        if timed_out:
            status, error = (
                "timeout",
                f"timed out after {timeout:g} s (start-up included); child killed",
            )
        else:
            status, error = self._classify_exit(proc.exitcode, oom_before, proc.pid)
        result = CaseResult(
            case=case.to_json(),
            case_id=case.id,
            case_hash=case.hash,
            repeat=repeat,
            status=status,  # type: ignore[arg-type]
            started=started,
            ended=runner.now_iso(),
            wall_s=time.perf_counter() - t0,
            error=error,
            traceback=_tail(log),
            run_id=run_id,
        )
        return result.to_json()

    def _wait(self, proc, recv, timeout: float) -> tuple[dict[str, Any] | None, bool]:
        deadline = time.monotonic() + timeout
        payload = None
        waiting = [recv, proc.sentinel]
        while proc.sentinel in waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                kill_group(proc)
                return payload, payload is None
            for ready in wait(waiting, timeout=remaining):
                if ready is recv:
                    with contextlib.suppress(EOFError):  # EOF: child died without sending
                        payload = recv.recv()
                    waiting.remove(recv)
                else:
                    waiting.remove(proc.sentinel)
        proc.join()
        if payload is None and recv.poll():
            with contextlib.suppress(EOFError):
                payload = recv.recv()
        return payload, False

    @staticmethod
    def _classify_exit(
        code: int | None, oom_before: int | None, pid: int | None = None
    ) -> tuple[str, str]:
        if code is not None and code < 0:
            sig = signal.Signals(-code).name
            after = cgroup_oom_kills()
            rose = oom_before is not None and after is not None and after > oom_before
            if sig == "SIGKILL" and rose:
                # The count is the cgroup's: another process may have been the victim.
                victim = oom_victim(pid) if pid is not None else None
                if victim:
                    return "oom", f"killed by the kernel's OOM killer (kernel log names pid {pid})"
                why = (
                    "the kernel log names another victim"
                    if victim is False
                    else "the kernel log could not be read to confirm the victim"
                )
                return "killed", (
                    f"child killed by SIGKILL while the cgroup's OOM-kill count rose; {why}"
                )
            return "killed", f"child killed by {sig}"
        return "failed", f"child exited with code {code} before reporting a result"

    def abort(self) -> None:
        proc = self._proc
        if proc is not None and proc.is_alive():
            kill_group(proc)

    def close(self) -> None:
        """Stop the fork server: a run inside a long-lived process (a pytest session, a
        notebook) must not leave a server holding torch and the run's preloads in memory,
        and the next run's preloads only take effect in a fresh server. ``_stop`` is the
        stdlib's own (private) shutdown, used where it exists."""
        if self._ctx.get_start_method() != "forkserver":
            return
        from multiprocessing import forkserver

        server = forkserver._forkserver
        pid = getattr(server, "_forkserver_pid", None)
        if pid is not None:  # its exit would tear torch down for a second: nothing to keep
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stop = getattr(server, "_stop", None)
        if stop is not None:
            stop()


def _noop() -> None:
    pass


def _child_main(*args: Any) -> None:
    """The case process's entry: ``bench.run.child`` is preloaded in the fork server, so
    this import is free there, while the parent never imports it (torch, scipy)."""
    from bench.run import child

    child.main(*args)


def kill_group(proc) -> None:
    """SIGKILL the case process and everything it started (it leads its own process group:
    workers, launcher ranks), then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()  # not a group leader yet (killed before it got there)
    proc.join()


def oom_victim(pid: int) -> bool | None:
    """Whether the kernel log names ``pid`` as an OOM-killer victim: True, False (it names
    others only), or None when the log cannot be read (no privilege, no /dev/kmsg)."""
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    seen_oom = False
    try:
        while True:
            try:
                record = os.read(fd, 8192).decode(errors="replace")
            except BlockingIOError:
                break
            except OSError:  # EPIPE: a record was overwritten while reading; go on
                continue
            if not record:
                break
            if "Killed process" in record or "oom-kill:" in record:
                seen_oom = True
                if f"Killed process {pid} " in record or f"pid={pid}," in record:
                    return True
    finally:
        os.close(fd)
    return False if seen_oom else None


def cgroup_oom_kills() -> int | None:
    """This cgroup's count of OOM kills (cgroup v2), to tell an OOM kill from another SIGKILL."""
    try:
        rel = Path("/proc/self/cgroup").read_text().strip().split("\n")[0].split(":", 2)[2]
        events = Path("/sys/fs/cgroup") / rel.lstrip("/") / "memory.events"
        for line in events.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, IndexError, ValueError):
        pass
    return None


def _tail(log: Path | None) -> str | None:
    if log is None:
        return None
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    return text[-LOG_TAIL_CHARS:] or None


def make_launcher(
    inline: bool, preload: tuple[str, ...] = (), server_log: Path | None = None
) -> Launcher:
    return InlineLauncher() if inline else ProcessLauncher(preload, server_log)
