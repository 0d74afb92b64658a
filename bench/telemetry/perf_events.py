"""Hardware instruction and cycle counts from Linux's ``perf_event_open``: a clock that
reads the CPU's own counters instead of timing.

Where a machine exposes its performance counters (bare metal, some cloud instances; most
virtual machines hide them, and a container's seccomp profile may block the call), the
counts of a call come at native speed, without valgrind. They count the calling thread's
user-space work only (``exclude_kernel``: what an unprivileged process may count at
``perf_event_paranoid`` 2), so a count pass runs its calls on one intra-op thread, as under
callgrind. Instructions retired are near-deterministic; cycles move with the clock
frequency, the caches and the neighbours, like time.

No well-kept Python library wraps the system call, so this module is the thin layer over
it: the 64-byte first version of ``struct perf_event_attr`` (which every kernel accepts),
the enable/disable ``ioctl`` requests and a ``read`` of the value with its enabled and
running times. ``Kernel`` is that layer, replaced by a fake in tests.
"""

from __future__ import annotations

import errno
import os
import platform
import struct
from dataclasses import dataclass

PERF_TYPE_HARDWARE = 0
PERF_TYPE_SOFTWARE = 1
PERF_COUNT_HW_CPU_CYCLES = 0
PERF_COUNT_HW_INSTRUCTIONS = 1

# counter -> (type, config, the event's name in perf's words)
EVENTS = {
    "hw_instructions": (PERF_TYPE_HARDWARE, PERF_COUNT_HW_INSTRUCTIONS, "instructions"),
    "hw_cycles": (PERF_TYPE_HARDWARE, PERF_COUNT_HW_CPU_CYCLES, "cycles"),
}
UNITS = {"hw_instructions": "instructions", "hw_cycles": "cycles"}
COUNTERS = {
    name: f"perf_event_open {event} (hardware counter, user space, the calling thread)"
    for name, (_, _, event) in EVENTS.items()
}

# Where the generic ioctl numbers and a little-endian bitfield hold (ppc64 and s390x
# differ in both: refused there rather than mis-set).
_SYSCALL = {"x86_64": 298, "aarch64": 241, "riscv64": 241}
_ATTR = struct.Struct("=IIQQQQQIIQ")  # PERF_ATTR_SIZE_VER0: every field up to config1
_DISABLED, _EXCLUDE_KERNEL, _EXCLUDE_HV = 1 << 0, 1 << 5, 1 << 6
_TIMES = 1 | 2  # read_format: TOTAL_TIME_ENABLED | TOTAL_TIME_RUNNING
_READING = struct.Struct("=QQQ")  # value, time enabled, time running (ns)
_IOC_ENABLE, _IOC_DISABLE = 0x2400, 0x2401  # _IO('$', 0), _IO('$', 1)
_FD_CLOEXEC = 8


@dataclass(frozen=True)
class Reading:
    value: int
    enabled_ns: int
    running_ns: int


class Kernel:
    """The system calls, for a counter of the calling thread on whichever CPU it runs."""

    def open(self, type_: int, config: int) -> int:
        import ctypes

        number = _SYSCALL.get(platform.machine())
        if number is None or not hasattr(os, "sched_getaffinity"):
            raise OSError(errno.ENOSYS, f"perf_event_open is not known on {platform.machine()}")
        flags = _DISABLED | _EXCLUDE_KERNEL | _EXCLUDE_HV
        attr = ctypes.create_string_buffer(
            _ATTR.pack(type_, _ATTR.size, config, 0, 0, _TIMES, flags, 0, 0, 0), _ATTR.size
        )
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        # pid 0 (this thread), cpu -1 (any), no group
        fd = libc.syscall(ctypes.c_long(number), attr, ctypes.c_int(0), ctypes.c_int(-1),
                          ctypes.c_int(-1), ctypes.c_ulong(_FD_CLOEXEC))  # fmt: skip
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        return fd

    def enable(self, fd: int) -> None:
        import fcntl

        fcntl.ioctl(fd, _IOC_ENABLE, 0)

    def disable(self, fd: int) -> None:
        import fcntl

        fcntl.ioctl(fd, _IOC_DISABLE, 0)

    def read(self, fd: int) -> Reading:
        return Reading(*_READING.unpack(os.read(fd, _READING.size)))

    def close(self, fd: int) -> None:
        os.close(fd)


KERNEL = Kernel()


class CounterUnavailable(RuntimeError):
    """The kernel would not open a counter; the message says why in a reader's words."""


def open_counter(kernel: Kernel, type_: int, config: int, event: str) -> int:
    try:
        return kernel.open(type_, config)
    except OSError as e:
        raise CounterUnavailable(f"perf_event_open({event}) failed: {_why(e)}") from None


def hardware_missing(counters: list[str], kernel: Kernel = KERNEL) -> str | None:
    """Why these hardware counters cannot be read here, or None when they can: each is
    opened once and closed."""
    for name in counters:
        try:
            kernel.close(open_counter(kernel, *EVENTS[name]))
        except CounterUnavailable as e:
            return str(e)
    return None


def _why(e: OSError) -> str:
    if e.errno == errno.ENOENT:
        return "this machine exposes no such hardware counter (virtual machines often hide them)"
    if e.errno in (errno.EACCES, errno.EPERM):
        try:
            with open("/proc/sys/kernel/perf_event_paranoid") as f:
                level = f.read().strip()
        except OSError:
            level = "unknown"
        return (f"not permitted (kernel.perf_event_paranoid = {level}; a container's seccomp "
                "profile may block the call)")  # fmt: skip
    return f"{os.strerror(e.errno) if e.errno else e}"


class Multiplexed(RuntimeError):
    """The kernel shared the counter with other events: its count is an estimate."""


class PerfEventClock:
    """A clock whose "seconds" between two marks are the counter's events between them.

    The counter runs from the first mark to ``finish`` (so what runs between timed loops is
    not counted); a mark reads it. The read's own few instructions count in every call
    alike. A count the kernel had to scale (the counter ran for part of the interval only,
    shared with other events) is refused: ``seconds`` raises ``Multiplexed``."""

    def __init__(
        self, counter: str, kernel: Kernel = KERNEL, event: tuple[int, int] | None = None
    ) -> None:
        self.counter = counter
        self.method = COUNTERS.get(counter, counter)
        self.kernel = kernel
        type_, config, name = (*event, counter) if event else EVENTS[counter]
        self.fd: int | None = open_counter(kernel, type_, config, name)
        self._on = False
        self._readings: list[Reading] = []

    def mark(self) -> int:
        assert self.fd is not None, "the clock was discarded"
        if not self._on:
            self.kernel.enable(self.fd)
            self._on = True
        self._readings.append(self.kernel.read(self.fd))
        return len(self._readings) - 1

    def finish(self) -> None:
        if self._on and self.fd is not None:
            self.kernel.disable(self.fd)
            self._on = False

    def seconds(self, a: int, b: int) -> float:
        """The counter's events from mark ``a`` to mark ``b``."""
        ra, rb = self._readings[a], self._readings[b]
        enabled, running = rb.enabled_ns - ra.enabled_ns, rb.running_ns - ra.running_ns
        if running < enabled:
            raise Multiplexed(
                f"{self.counter}: the counter ran {running / max(enabled, 1):.0%} of the "
                "interval (shared with other events); its count would be an estimate"
            )
        return float(rb.value - ra.value)

    def discard(self) -> None:
        if self.fd is not None:
            self.finish()
            self.kernel.close(self.fd)
            self.fd = None
