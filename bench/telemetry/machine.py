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


def gpu_info() -> dict[str, Any]:
    """GPU facts through NVML (clocks, power limit, driver), without creating a CUDA context."""
    from bench.telemetry.nvml import Nvml, NvmlUnavailable

    try:
        with Nvml() as nvml:
            gpus = [nvml.gpu(i).facts() for i in range(nvml.count())]
            return {"available": bool(gpus), "driver": nvml.driver(), "devices": gpus}
    except NvmlUnavailable as e:
        return {"available": False, "reason": str(e)}
