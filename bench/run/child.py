"""Code that runs inside an isolated case process.

The fork server imports this module once (with torch and every registered plugin), so
each case starts as a fork of a warm interpreter instead of paying for imports again;
``child_energy`` too when a case measures energy.
Nothing here touches CUDA: a CUDA context must never exist in the process that forks.
"""

from __future__ import annotations

import ctypes
import os
import signal

from bench.run import offline

# Before torch, transformers or any case imports huggingface_hub, which reads it once: this
# module is the first thing the fork server (and a spawned case process) imports.
offline.enter()

import torch  # noqa: E402, F401  - imported here so that forked children find it loaded

from bench.run import case as runner  # noqa: E402
from bench.spec import registry  # noqa: E402
from bench.spec.suite import Case  # noqa: E402

registry.load_plugins()


_PR_SET_PDEATHSIG = 1
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's ceiling for this setting on 64-bit
TRIM_THRESHOLD = 1 << 30


def steady_malloc() -> dict:
    """Give a fresh process the allocator behaviour of a long-running one.

    With glibc's defaults, a young process serves each large activation with mmap and
    hands freed memory straight back, so every forward pass page-faults its buffers
    anew: measured on the smoke suite's forward shape, ~80k minor faults per 23 calls
    and ~25% more latency than with these settings (~6k faults). A serving process
    reaches a steady state instead; fixed thresholds give an isolated case that state
    from its first call, and make its numbers independent of what ran before.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(
            _M_TRIM_THRESHOLD, TRIM_THRESHOLD
        )
    except (OSError, AttributeError):
        ok = 0
    if not ok:
        return {"allocator": "system default", "reason": "glibc mallopt unavailable"}
    return {
        "allocator": "glibc",
        "mmap_threshold_bytes": MMAP_THRESHOLD,
        "trim_threshold_bytes": TRIM_THRESHOLD,
    }


def _die_with_parent(launcher_pid: int | None) -> None:
    """Ask Linux to SIGKILL this process if its parent (the fork server) dies, so a
    ``kill -9`` of ``bench run`` leaves no case running behind a resumed run.

    The request only covers a death after it is made: if the fork server or ``bench run``
    died between our fork and here, we have been re-parented already and exit now."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    orphaned = os.getppid() == 1
    if launcher_pid is not None and not orphaned:
        try:
            os.kill(launcher_pid, 0)
        except ProcessLookupError:
            orphaned = True
        except PermissionError:
            pass
    if orphaned:
        os._exit(1)


def main(
    case_json: dict,
    repeat: int,
    run_id: str | None,
    log_path: str | None,
    facts,
    conn,
    launcher_pid: int | None = None,
) -> None:
    # Ctrl-C reaches the whole process group; the parent decides what happens to us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Lead a process group of our own, so a timeout kills whatever the case started too.
    os.setpgid(0, 0)
    _die_with_parent(launcher_pid)
    if log_path:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    malloc = steady_malloc()
    result = runner.execute(Case.from_json(case_json), repeat, run_id, facts)
    result.info["malloc"] = malloc
    conn.send(result.to_json())
    conn.close()
