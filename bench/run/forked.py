"""Run a function in a forked child and bring back its JSON result: a process-level repeat
of code that lives in the caller's memory (a test's function), where a fresh interpreter
could not rebuild it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import traceback
from collections.abc import Callable
from typing import Any


class ForkedError(RuntimeError):
    """The child raised, or died without a result; the message carries its traceback or
    how it ended."""


def in_fork(fn: Callable[[], Any], timeout_s: float = 600.0) -> Any:
    """``fn()`` in a child forked from this process; its return value must be JSON.

    The child leaves with ``os._exit``: no atexit handlers, no pytest teardown, no
    flushing of the parent's buffers twice. A child still running after ``timeout_s`` is
    killed (SIGKILL) and reported."""
    if not hasattr(os, "fork"):
        raise ForkedError("process-level repeats of a function need os.fork (Linux, macOS)")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        code = 0
        try:
            payload = {"ok": fn()}
        except BaseException:
            payload, code = {"error": traceback.format_exc()}, 1
        try:
            with os.fdopen(write_fd, "wb") as w:
                w.write(json.dumps(payload).encode())
        finally:
            os._exit(code)
    os.close(write_fd)
    killer = threading.Timer(timeout_s, _kill, (pid,))
    killer.start()
    try:
        with os.fdopen(read_fd, "rb") as r:
            data = r.read()
        _, status = os.waitpid(pid, 0)
    finally:
        killer.cancel()
    if not data:
        how = (
            f"killed by signal {os.WTERMSIG(status)}"
            if os.WIFSIGNALED(status)
            else f"exit code {os.WEXITSTATUS(status)}"
        )
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            how += f" (timeout {timeout_s:g} s, or out of memory)"
        raise ForkedError(f"the forked repeat died without a result: {how}")
    payload = json.loads(data)
    if "error" in payload:
        raise ForkedError(payload["error"])
    return payload["ok"]


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
