"""The one door to NVML. Everything GPU-side (energy, sampler, fingerprint) goes through
``open_gpu``, so tests can put a fake NVML behind it (``use_module``)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

_module: Any = None  # a fake NVML set by tests; None means the real pynvml


class NvmlUnavailable(Exception):
    """No NVML here (no driver, no GPU, pynvml missing): GPU figures are absent, not zero."""


def use_module(module: Any) -> None:
    global _module
    _module = module


def _nvml() -> Any:
    if _module is not None:
        return _module
    try:
        import pynvml
    except ImportError as e:
        raise NvmlUnavailable("pynvml (nvidia-ml-py) is not installed") from e
    return pynvml


@dataclass
class Gpu:
    """One GPU's NVML handle, with the reads the harness needs; None where unsupported."""

    nvml: Any
    index: int
    handle: Any

    def _try(self, fn, *args):
        try:
            return fn(self.handle, *args)
        except self.nvml.NVMLError:
            return None

    def energy_mj(self) -> int | None:
        """Total energy since the driver loaded, in millijoules (Volta and newer)."""
        return self._try(self.nvml.nvmlDeviceGetTotalEnergyConsumption)

    def power_w(self) -> tuple[float, str] | None:
        """Instantaneous board power and how it was read; the averaged reading as fallback."""
        values = self._try(
            self.nvml.nvmlDeviceGetFieldValues, [self.nvml.NVML_FI_DEV_POWER_INSTANT]
        )
        if values and values[0].nvmlReturn == 0:
            return values[0].value.uiVal / 1000.0, "nvml_power_instant"
        mw = self._try(self.nvml.nvmlDeviceGetPowerUsage)
        return (mw / 1000.0, "nvml_power_usage") if mw is not None else None

    def memory_used(self) -> int | None:
        info = self._try(self.nvml.nvmlDeviceGetMemoryInfo, self.nvml.nvmlMemory_v2)
        return None if info is None else int(info.used)

    def snapshot(self) -> dict[str, Any]:
        """One sampler row: power, utilisation, memory, SM clock, temperature, throttling."""
        n = self.nvml
        power = self.power_w()
        util = self._try(n.nvmlDeviceGetUtilizationRates)
        return {
            "power_w": None if power is None else power[0],
            "util_gpu_pct": None if util is None else util.gpu,
            "util_mem_pct": None if util is None else util.memory,
            "memory_used_bytes": self.memory_used(),
            "sm_clock_mhz": self._try(n.nvmlDeviceGetClockInfo, n.NVML_CLOCK_SM),
            "temperature_c": self._try(n.nvmlDeviceGetTemperature, n.NVML_TEMPERATURE_GPU),
            "throttle_reasons": self._try(n.nvmlDeviceGetCurrentClocksEventReasons),
        }

    def facts(self) -> dict[str, Any]:
        """Static facts for the environment fingerprint."""
        n = self.nvml
        name = self._try(n.nvmlDeviceGetName)
        mem = self._try(n.nvmlDeviceGetMemoryInfo, n.nvmlMemory_v2)
        limit = self._try(n.nvmlDeviceGetEnforcedPowerLimit)
        return {
            "index": self.index,
            "name": name.decode() if isinstance(name, bytes) else name,
            "memory_total_bytes": None if mem is None else int(mem.total),
            "power_limit_w": None if limit is None else limit / 1000.0,
            "sm_clock_mhz": self._try(n.nvmlDeviceGetClockInfo, n.NVML_CLOCK_SM),
            "sm_clock_max_mhz": self._try(n.nvmlDeviceGetMaxClockInfo, n.NVML_CLOCK_SM),
            "mem_clock_max_mhz": self._try(n.nvmlDeviceGetMaxClockInfo, n.NVML_CLOCK_MEM),
        }


class Nvml:
    """An initialised NVML session; ``close`` (or ``with``) shuts it down."""

    def __init__(self) -> None:
        self.nvml = _nvml()
        try:
            self.nvml.nvmlInit()
        except self.nvml.NVMLError as e:
            raise NvmlUnavailable(f"NVML could not start: {e}") from e

    def count(self) -> int:
        return int(self.nvml.nvmlDeviceGetCount())

    def gpu(self, index: int) -> Gpu:
        if not 0 <= index < self.count():
            raise NvmlUnavailable(f"NVML sees no GPU with index {index}")
        return Gpu(self.nvml, index, self.nvml.nvmlDeviceGetHandleByIndex(index))

    def gpu_by_uuid(self, uuid: str) -> Gpu:
        """The GPU with this UUID, under NVML's own index. CUDA numbers devices after
        CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER, NVML by PCI order: only the UUID (or
        the bus id) names the same device on both sides."""
        if not uuid.startswith(("GPU-", "MIG-")):
            uuid = f"GPU-{uuid}"
        try:
            handle = self.nvml.nvmlDeviceGetHandleByUUID(uuid)
            index = int(self.nvml.nvmlDeviceGetIndex(handle))
        except self.nvml.NVMLError as e:
            raise NvmlUnavailable(f"NVML sees no GPU with UUID {uuid}: {e}") from e
        return Gpu(self.nvml, index, handle)

    def driver(self) -> str:
        v = self.nvml.nvmlSystemGetDriverVersion()
        return v.decode() if isinstance(v, bytes) else v

    def close(self) -> None:
        with contextlib.suppress(self.nvml.NVMLError):
            self.nvml.nvmlShutdown()

    def __enter__(self) -> Nvml:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
