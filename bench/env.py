"""The environment fingerprint stored with every run: what produced these numbers."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any


def git_state(cwd: str | Path | None = None) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "reason": "not a git checkout or git missing"}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def gpu_info() -> dict[str, Any]:
    """GPU facts through NVML (clocks, power limit, driver), without creating a CUDA context."""
    from bench.telemetry.nvml import Nvml, NvmlUnavailable

    try:
        with Nvml() as nvml:
            gpus = [nvml.gpu(i).facts() for i in range(nvml.count())]
            return {"available": bool(gpus), "driver": nvml.driver(), "devices": gpus}
    except NvmlUnavailable as e:
        return {"available": False, "reason": str(e)}


def fingerprint(cwd: str | Path | None = None) -> dict[str, Any]:
    import torch

    return {
        "git": git_state(cwd),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": gpu_info(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "host": socket.gethostname(),
    }
