"""The environment fingerprint stored with every run: what produced these numbers."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.telemetry.machine import cpu_model, gpu_info


def git_state(cwd: str | Path | None = None, pathspec: str | None = None) -> dict[str, Any]:
    """HEAD and whether the tree is dirty; with ``pathspec``, dirty counts untracked files
    under it too (a new module changes what runs)."""

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
    if pathspec is None:
        status = git("status", "--porcelain", "--untracked-files=no")
    else:
        status = git("status", "--porcelain", "--untracked-files=all", "--", pathspec)
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def software() -> dict[str, Any]:
    """What a resumed run must share with the run it continues: bench itself (its version,
    and the git state of its own source, untracked modules counted as dirty) and the
    versions of the libraries that shape the measurements."""
    from importlib.metadata import PackageNotFoundError, version

    import bench

    source = Path(bench.__file__).resolve().parent
    state = git_state(source, pathspec=str(source))
    libs = {}
    for name in ("torch", "torchao", "transformers"):
        try:
            libs[name] = version(name)
        except PackageNotFoundError:
            libs[name] = None
    return {"bench": bench.__version__, "bench_source": state, **libs}


def fingerprint(cwd: str | Path | None = None) -> dict[str, Any]:
    import torch

    import bench
    from bench.telemetry.machine import default_cpu_threads

    return {
        "git": git_state(cwd),
        "software": software(),
        "bench_path": str(Path(bench.__file__).resolve().parent),  # which bench measured
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": gpu_info(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),  # torch's own default
        "cpu_threads_default": default_cpu_threads(),  # a CPU case's without run.threads
        "host": socket.gethostname(),
    }
