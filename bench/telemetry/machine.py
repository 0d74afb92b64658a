"""Facts about this machine's hardware: CPU model, and GPUs through NVML (no CUDA context)."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def default_cpu_threads() -> int:
    """Intra-op threads of a CPU case whose suite does not set ``run.threads``: all usable
    cores but one, which the harness, the sampler and the OS share. Measured on the 2-core
    VM (benchmarks/threads.py, 12 rounds): process-to-process sd of latency 9.5% at 1
    thread against 15.2% at 2 (run-to-run 9.6% against 10.7%), at 1.65x the latency."""
    import os

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (usable or 1) - 1)


def gpu_info() -> dict[str, Any]:
    """GPU facts through NVML (clocks, power limit, driver), without creating a CUDA context."""
    from bench.telemetry.nvml import Nvml, NvmlUnavailable

    try:
        with Nvml() as nvml:
            gpus = [nvml.gpu(i).facts() for i in range(nvml.count())]
            return {"available": bool(gpus), "driver": nvml.driver(), "devices": gpus}
    except NvmlUnavailable as e:
        return {"available": False, "reason": str(e)}
