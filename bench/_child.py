"""Code that runs inside an isolated case process.

The fork server imports this module once (with torch and every registered plugin), so
each case starts as a fork of a warm interpreter instead of paying for imports again.
Nothing here touches CUDA: a CUDA context must never exist in the process that forks.
"""

from __future__ import annotations

import ctypes
import os
import signal

import torch  # noqa: F401  - imported here so that forked children find it loaded

from bench import registry, runner
from bench.suite import Case

registry.load_plugins()

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process if its parent (the fork server) dies, so a
    ``kill -9`` of ``bench run`` leaves no case running behind a resumed run."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def main(case_json: dict, repeat: int, run_id: str | None, log_path: str | None, conn) -> None:
    # Ctrl-C reaches the whole process group; the parent decides what happens to us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    if log_path:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    result = runner.execute(Case.from_json(case_json), repeat, run_id)
    conn.send(result.to_json())
    conn.close()
