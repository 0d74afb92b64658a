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


def _refusals(nvml: Any) -> tuple[type[BaseException], ...]:
    """What a read may raise for "not here": NVMLError; pynvml's NVMLLibraryMismatchError
    (a function's versioned symbol missing from the driver: not an NVMLError); and a
    TypeError from a pynvml whose function takes fewer arguments (nvmlDeviceGetMemoryInfo
    before its version argument)."""
    mismatch = getattr(nvml, "NVMLLibraryMismatchError", None)
    return (nvml.NVMLError, TypeError, *([mismatch] if isinstance(mismatch, type) else []))


@dataclass
class Gpu:
    """One GPU's NVML handle, with the reads the harness needs; None where unsupported,
    where this pynvml lacks the function or constant, or where the device refuses."""

    nvml: Any
    index: int
    handle: Any
    # A MIG instance: NVML reads power and energy for the whole GPU only, so they are not
    # this instance's (memory and processes are).
    mig: bool = False

    def _const(self, *names: str) -> Any:
        """The first of ``names`` this pynvml defines (older ones lack newer names)."""
        return next((v for n in names if (v := getattr(self.nvml, n, None)) is not None), None)

    def _try(self, names: str | tuple[str, ...], *args):
        """``nvml.<name>(handle, *args)`` under the first name this pynvml has, or None."""
        fn = self._const(*((names,) if isinstance(names, str) else names))
        if fn is None or any(a is None for a in args):
            return None
        try:
            return fn(self.handle, *args)
        except _refusals(self.nvml):
            return None

    def energy_mj(self) -> int | None:
        """Total energy since the driver loaded, in millijoules (Volta and newer)."""
        if self.mig:
            return None
        return self._try("nvmlDeviceGetTotalEnergyConsumption")

    def power_w(self) -> tuple[float, str] | None:
        """Instantaneous board power and how it was read; the averaged reading (a trailing
        ~1 s mean on Hopper) as fallback."""
        if self.mig:
            return None
        field_id = self._const("NVML_FI_DEV_POWER_INSTANT")
        values = self._try("nvmlDeviceGetFieldValues", None if field_id is None else [field_id])
        if values and values[0].nvmlReturn == 0:
            return values[0].value.uiVal / 1000.0, "nvml_power_instant"
        mw = self._try("nvmlDeviceGetPowerUsage")
        return (mw / 1000.0, "nvml_power_usage") if mw is not None else None

    def _memory(self) -> Any:
        # v2's `used` excludes memory the driver reserves; v1 (older pynvml) includes it.
        version = self._const("nvmlMemory_v2")
        info = self._try("nvmlDeviceGetMemoryInfo", version) if version is not None else None
        return info if info is not None else self._try("nvmlDeviceGetMemoryInfo")

    def memory_used(self) -> int | None:
        """Device memory in use by every process on this GPU (or MIG instance)."""
        info = self._memory()
        return None if info is None else int(info.used)

    def process_memory_used(self, pid: int) -> int | None:
        """Device memory NVML charges to process ``pid`` (its context, allocator cache and
        library workspaces), or None: not listed (a container's pid namespace hides host
        pids from NVML), or the driver does not say (``usedGpuMemory`` unavailable)."""
        procs = self._try("nvmlDeviceGetComputeRunningProcesses")
        for p in procs or ():
            if p.pid == pid:
                used = getattr(p, "usedGpuMemory", None)
                return None if used is None else int(used)
        return None

    def snapshot(self) -> dict[str, Any]:
        """One sampler row: power, utilisation, memory, SM clock, temperature, throttling."""
        power = self.power_w()
        util = self._try("nvmlDeviceGetUtilizationRates")
        return {
            "power_w": None if power is None else power[0],
            "util_gpu_pct": None if util is None else util.gpu,
            "util_mem_pct": None if util is None else util.memory,
            "memory_used_bytes": self.memory_used(),
            "sm_clock_mhz": self._try("nvmlDeviceGetClockInfo", self._const("NVML_CLOCK_SM")),
            "temperature_c": self._try(
                "nvmlDeviceGetTemperature", self._const("NVML_TEMPERATURE_GPU")
            ),
            "throttle_reasons": self._try(
                (
                    "nvmlDeviceGetCurrentClocksEventReasons",
                    "nvmlDeviceGetCurrentClocksThrottleReasons",
                )
            ),
        }

    def facts(self) -> dict[str, Any]:
        """Static facts for the environment fingerprint."""
        name = self._try("nvmlDeviceGetName")
        mem = self._memory()
        limit = self._try("nvmlDeviceGetEnforcedPowerLimit")
        sm, mem_clock = self._const("NVML_CLOCK_SM"), self._const("NVML_CLOCK_MEM")
        return {
            "index": self.index,
            "name": name.decode() if isinstance(name, bytes) else name,
            "mig": self.mig,
            "memory_total_bytes": None if mem is None else int(mem.total),
            "power_limit_w": None if limit is None else limit / 1000.0,
            "sm_clock_mhz": self._try("nvmlDeviceGetClockInfo", sm),
            "sm_clock_max_mhz": self._try("nvmlDeviceGetMaxClockInfo", sm),
            "mem_clock_max_mhz": self._try("nvmlDeviceGetMaxClockInfo", mem_clock),
        }


MIG_ENERGY_ABSENT = (
    "a MIG instance: NVML reads power and energy for the whole GPU, which other instances "
    "share, so none of it is this case's"
)


def _is_mig(nvml: Any, handle: Any) -> bool:
    check = getattr(nvml, "nvmlDeviceIsMigDeviceHandle", None)
    if check is None:  # a pynvml older than MIG: no instance can be named to it either
        return False
    try:
        return bool(check(handle))
    except nvml.NVMLError:
        return False


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
        """The GPU (or MIG instance) with this UUID, under NVML's own index. CUDA numbers
        devices after CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER, NVML by PCI order: only
        the UUID (or the bus id) names the same device on both sides. torch gives the UUID
        without its prefix, which is "GPU-" for a whole GPU and "MIG-" for an instance."""
        n = self.nvml
        tried = [uuid] if uuid.startswith(("GPU-", "MIG-")) else [f"GPU-{uuid}", f"MIG-{uuid}"]
        errors = []
        for name in tried:
            try:
                handle = n.nvmlDeviceGetHandleByUUID(name)
            except n.NVMLError as e:
                errors.append(f"{name}: {e}")
                continue
            mig = _is_mig(n, handle)
            try:
                parent = n.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle) if mig else handle
                index = int(n.nvmlDeviceGetIndex(parent))
            except n.NVMLError as e:
                raise NvmlUnavailable(f"NVML gives no index for {name}: {e}") from e
            return Gpu(n, index, handle, mig=mig)
        raise NvmlUnavailable(f"NVML sees no GPU with UUID {' or '.join(errors)}")

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
