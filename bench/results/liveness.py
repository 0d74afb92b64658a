"""Runs that died without saying so: a manifest that reads ``running`` after a SIGKILL, a
power cut or a disk too full to write the last word.

A run records who writes it (process id, that process's start time, host, machine id, boot
and pid namespace) in each attempt; a reader that finds ``running`` checks them: on this
machine, a boot that differs, or (in the same pid namespace) a process that is gone or is
another process with the same id, means the run is dead and is read as ``interrupted``.
Where nothing can be checked (another machine, another pid namespace, no /proc) the run
stays ``running``. And so that the last word can be written on a full disk, a run keeps
space reserved beside its manifest and gives it up just before its final write.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any

RESERVE = ".manifest-reserve"
# Room for the final manifest: the manifest holds the suite's text and the environment, a
# few tens of KiB; the atomic write needs a whole new copy beside the old one.
RESERVE_MIN_BYTES = 1 << 20


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat):
    with the pid, it names one process, not whichever later reuses the id."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: split after it
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


def _pid_namespace() -> int | None:
    """The pid namespace's inode: a container's pids are not the host's."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def owner() -> dict[str, Any]:
    """This process, as a reader on the same machine can find it again."""
    pid = os.getpid()
    return {
        "pid": pid,
        "pid_start_ticks": _start_ticks(pid),
        "host": socket.gethostname(),
        "machine_id": _read("/etc/machine-id"),  # host names repeat (containers, clones)
        "boot_id": _boot_id(),
        "pid_namespace": _pid_namespace(),
    }


def gone(process: Any) -> str | None:
    """Why the recorded process cannot be running any more; None when it may be (it is, or
    it runs on another host, or the record says too little to tell)."""
    if not isinstance(process, dict) or process.get("host") != socket.gethostname():
        return None
    machine = _read("/etc/machine-id")
    if process.get("machine_id") and machine and process["machine_id"] != machine:
        return None  # another machine of the same name
    boot = _boot_id()
    if process.get("boot_id") and boot and process["boot_id"] != boot:
        return "the machine has restarted since (a power cut or a reboot)"
    pid, recorded = process.get("pid"), process.get("pid_start_ticks")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    if not isinstance(recorded, int) or process.get("pid_namespace") != _pid_namespace():
        return None  # no /proc when it started, or a container's pids: nothing to check
    ticks = _start_ticks(pid)
    if ticks is None:
        return f"its process (pid {pid}) is gone: killed, or lost its disk"
    if recorded != ticks:
        return f"its process (pid {pid}) is gone; another process has that id now"
    return None


def live_here(process: Any) -> bool:
    """Whether the recorded process is running on this host now (the very process)."""
    return (
        isinstance(process, dict)
        and process.get("host") == socket.gethostname()
        and gone(process) is None
        and isinstance(process.get("pid"), int)
        and _start_ticks(process["pid"]) is not None
    )


def last_process(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The process of the manifest's last attempt, as recorded (None: not recorded)."""
    attempts = manifest.get("attempts")
    last = attempts[-1] if isinstance(attempts, list) and attempts else None
    process = last.get("process") if isinstance(last, dict) else None
    return process if isinstance(process, dict) else None


def effective(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest as a reader should believe it: a ``running`` run whose writer is gone
    reads ``interrupted``, with why (``status_reason``), and so does its open attempt."""
    if manifest.get("status") != "running":
        return manifest
    why = gone(last_process(manifest))
    if why is None:
        return manifest
    *earlier, last = manifest["attempts"]
    out = {**manifest, "status": "interrupted", "status_reason": why}
    out["attempts"] = [*earlier, {**last, "status": "interrupted", "reason": why}]
    return out


def reserve(run_dir: Path, manifest_bytes: int = 0) -> None:
    """Set space aside for the final manifest (allocated, not a sparse hole): 1 MiB, or
    four times the manifest as it starts (a long suite text, a selection of many cases)."""
    path = Path(run_dir) / RESERVE
    with contextlib.suppress(OSError):  # no room even for this: the run fails soon anyway
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.posix_fallocate(fd, 0, max(RESERVE_MIN_BYTES, 4 * manifest_bytes))
        finally:
            os.close(fd)


def release(run_dir: Path) -> None:
    """Give the reserved space back, just before the write that needs it."""
    with contextlib.suppress(OSError):
        (Path(run_dir) / RESERVE).unlink()
