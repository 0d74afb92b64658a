"""A deterministic stand-in for pynvml: power and energy are known functions of time."""

from __future__ import annotations

import time
from types import SimpleNamespace


class FakeNVMLError(Exception):
    pass


class FakeNVML:
    NVMLError = FakeNVMLError
    NVML_FI_DEV_POWER_INSTANT = 186
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0
    nvmlMemory_v2 = "v2"

    def __init__(
        self,
        watts: float = 200.0,
        *,
        counter: bool = True,
        counter_hz: float | None = None,
        power_bias: float = 1.0,
        init_error: str | None = None,
        gpus: int = 1,
    ):
        self.watts = watts  # true board power, constant
        self.counter = counter  # False: the energy counter is "not supported"
        self.counter_hz = counter_hz  # None: exact; else the counter only advances this often
        self.power_bias = power_bias  # instant power readings are off by this factor
        self.init_error = init_error
        self.gpus = gpus
        self.t0 = time.perf_counter()
        self.memory_used = 1 << 30
        self.calls: list[str] = []

    def _t(self) -> float:
        return time.perf_counter() - self.t0

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
        return f"GPU-0000000{i}-aaaa-bbbb-cccc-dddddddddddd"

    def nvmlDeviceGetHandleByUUID(self, uuid):
        for i in range(self.gpus):
            if self.uuid(i) == uuid:
                return f"gpu{i}"
        raise FakeNVMLError("Not Found")

    def nvmlDeviceGetIndex(self, h):
        return int(h.removeprefix("gpu"))

    def nvmlSystemGetDriverVersion(self):
        return "999.99"

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        if not self.counter:
            raise FakeNVMLError("Not Supported")
        t = self._t()
        if self.counter_hz:
            t = int(t * self.counter_hz) / self.counter_hz
        return int(self.watts * t * 1000)  # mJ

    def nvmlDeviceGetFieldValues(self, h, ids):
        mw = int(self.watts * self.power_bias * 1000)
        return [SimpleNamespace(nvmlReturn=0, value=SimpleNamespace(uiVal=mw))]

    def nvmlDeviceGetPowerUsage(self, h):
        return int(self.watts * self.power_bias * 1000)

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=97, memory=40)

    def nvmlDeviceGetMemoryInfo(self, h, version=None):
        return SimpleNamespace(used=self.memory_used, total=141 << 30)

    def nvmlDeviceGetClockInfo(self, h, kind):
        return 1980

    def nvmlDeviceGetMaxClockInfo(self, h, kind):
        return 1980 if kind == self.NVML_CLOCK_SM else 3201

    def nvmlDeviceGetTemperature(self, h, kind):
        return 45

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return 0

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA H200"

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return 700_000
