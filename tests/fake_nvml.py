"""A stand-in for pynvml that behaves like the real one where the harness has been caught
out: power that varies (so a power integral is never trivially exact), an energy counter
that advances in steps (10 a second, as measured on an H200), ``nvmlDeviceGetPowerUsage``
a trailing 1 s mean (Hopper), an integer ``nvmlMemory_v2``, names an older pynvml lacks,
fields and functions that answer NOT_SUPPORTED, MIG instances, and a per-process list.
Power and energy are known functions of ``time.perf_counter()``, so tests can compute the
true joules of any interval (``joules``)."""

from __future__ import annotations

import math
import time
from types import SimpleNamespace


class FakeNVMLError(Exception):
    pass


class FakeLibraryMismatch(Exception):
    """pynvml's NVMLLibraryMismatchError: a versioned symbol the driver lacks; not an
    NVMLError."""


NVML_ERROR_NOT_SUPPORTED = 3


class FakeNVML:
    NVMLError = FakeNVMLError
    NVMLLibraryMismatchError = FakeLibraryMismatch
    NVML_FI_DEV_POWER_INSTANT = 186
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0
    nvmlMemory_v2 = 0x02000028  # pynvml's version number, passed to nvmlDeviceGetMemoryInfo

    def __init__(
        self,
        watts: float = 200.0,
        *,
        ripple: float = 0.1,
        ripple_period_s: float = 0.37,
        counter: bool = True,
        counter_hz: float | None = 10.0,
        power_bias: float = 1.0,
        init_error: str | None = None,
        gpus: int = 1,
        missing: tuple[str, ...] = (),
        unsupported: tuple[str, ...] = (),
        instant_power: bool = True,
        mig: bool = False,
        frozen_after: float | None = None,
    ):
        self.watts = watts  # mean board power
        self.ripple = ripple  # power swings by this fraction of ``watts`` ...
        self.period = ripple_period_s  # ... with this period: samples never see it exactly
        self.counter = counter  # False: the energy counter is "not supported"
        self.counter_hz = counter_hz  # None: exact; else it advances this often, in steps
        self.power_bias = power_bias  # power readings are off by this factor
        self.init_error = init_error
        self.gpus = gpus
        self.missing = set(missing)  # names this pynvml lacks: AttributeError
        self.unsupported = set(unsupported)  # functions the device refuses: NVMLError
        self.instant_power = instant_power  # False: the instant field answers NOT_SUPPORTED
        self.mig = mig  # each GPU is seen through one MIG instance
        self.frozen_after = frozen_after  # the counter stops moving this long after start
        self.t0 = time.perf_counter()
        self.step_phase = 0.037  # the counter's steps do not fall on the process's start
        self.memory_used = 1 << 30
        self.processes: dict[int, int | None] = {}  # pid -> bytes (None: not reported)
        self.calls: list[str] = []

    def __getattribute__(self, name: str):
        if not name.startswith("_") and name in object.__getattribute__(self, "missing"):
            raise AttributeError(f"module 'pynvml' has no attribute {name!r}")
        return object.__getattribute__(self, name)

    # --- the physics ---------------------------------------------------------------------

    def _t(self, at: float | None = None) -> float:
        return (time.perf_counter() if at is None else at) - self.t0

    def power_at(self, at: float | None = None) -> float:
        t = self._t(at)
        return self.watts * (1 + self.ripple * math.sin(2 * math.pi * t / self.period))

    def _energy(self, t: float) -> float:
        """Joules since the fake's start, the exact integral of ``power_at``."""
        w = 2 * math.pi / self.period
        return self.watts * (t + self.ripple * (1 - math.cos(w * t)) / w)

    def joules(self, a: float, b: float) -> float:
        """True energy between two ``perf_counter`` readings."""
        return self._energy(self._t(b)) - self._energy(self._t(a))

    def _refuse(self, name: str) -> None:
        self.calls.append(name)
        if name in self.unsupported:
            raise FakeNVMLError("Not Supported")

    # --- the API ------------------------------------------------------------------------

    def nvmlInit(self):
        if self.init_error:
            raise FakeNVMLError(self.init_error)

    def nvmlShutdown(self):
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self):
        return self.gpus

    def nvmlDeviceGetHandleByIndex(self, i):
        return f"gpu{i}"

    def uuid(self, i: int) -> str:
        kind = "MIG" if self.mig else "GPU"
        return f"{kind}-0000000{i}-aaaa-bbbb-cccc-dddddddddddd"

    def nvmlDeviceGetHandleByUUID(self, uuid):
        for i in range(self.gpus):
            if self.uuid(i) == uuid:
                return f"mig{i}" if self.mig else f"gpu{i}"
        raise FakeNVMLError("Not Found")

    def nvmlDeviceIsMigDeviceHandle(self, h):
        return h.startswith("mig")

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, h):
        return h.replace("mig", "gpu")

    def nvmlDeviceGetIndex(self, h):
        if h.startswith("mig"):
            raise FakeNVMLError("Invalid Argument")  # a MIG handle has no device index
        return int(h.removeprefix("gpu"))

    def nvmlSystemGetDriverVersion(self):
        return "999.99"

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        self._refuse("nvmlDeviceGetTotalEnergyConsumption")
        if not self.counter or h.startswith("mig"):
            raise FakeNVMLError("Not Supported")
        t = self._t()
        if self.frozen_after is not None:
            t = min(t, self.frozen_after)
        if self.counter_hz:
            t = self.step_phase + math.floor((t - self.step_phase) * self.counter_hz) / (
                self.counter_hz
            )
        return int(self._energy(max(t, 0.0)) * 1000)  # mJ

    def nvmlDeviceGetFieldValues(self, h, ids):
        self._refuse("nvmlDeviceGetFieldValues")
        if not self.instant_power or h.startswith("mig"):
            return [SimpleNamespace(nvmlReturn=NVML_ERROR_NOT_SUPPORTED, value=None)]
        mw = int(self.power_at() * self.power_bias * 1000)
        return [SimpleNamespace(nvmlReturn=0, value=SimpleNamespace(uiVal=mw))]

    def nvmlDeviceGetPowerUsage(self, h):
        self._refuse("nvmlDeviceGetPowerUsage")
        if h.startswith("mig"):
            raise FakeNVMLError("Not Supported")
        t = self._t()  # Hopper's reading: the mean over the last second
        mean = self._energy(t) - self._energy(max(t - 1.0, 0.0))
        return int(mean / min(max(t, 1e-9), 1.0) * self.power_bias * 1000)

    def nvmlDeviceGetUtilizationRates(self, h):
        self._refuse("nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=97, memory=40)

    def nvmlDeviceGetMemoryInfo(self, h, version=None):
        self._refuse("nvmlDeviceGetMemoryInfo")
        if version is not None and version != self.nvmlMemory_v2:
            raise FakeNVMLError("Argument Version Mismatch")
        return SimpleNamespace(used=self.memory_used, total=141 << 30)

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        self._refuse("nvmlDeviceGetComputeRunningProcesses")
        if "v3" in self.unsupported:  # a driver older than the _v3 symbol pynvml calls
            raise FakeLibraryMismatch(
                "Unversioned function called and the pyNVML version "
                "does not match the NVML lib version."
            )
        return [SimpleNamespace(pid=p, usedGpuMemory=b) for p, b in self.processes.items()]

    def nvmlDeviceGetClockInfo(self, h, kind):
        return 1980

    def nvmlDeviceGetMaxClockInfo(self, h, kind):
        return 1980 if kind == self.NVML_CLOCK_SM else 3201

    def nvmlDeviceGetTemperature(self, h, kind):
        return 45

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return 0

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h):  # its name before 12.x
        return 0

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA H200"

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return 700_000
