"""Peak memory per phase (load, prefill, decode, ...).

CPU: the process's peak RSS over the phase, read from VmHWM after resetting it through
``/proc/self/clear_refs`` ("5" resets the high-water mark, Linux >= 4.0). Where that
reset is refused, ``ru_maxrss`` is reported instead and labelled as the lifetime peak.
The whole process's RSS is mostly the runtime (python, torch and its libraries: 200-400 MB
against a few MB of a small model), so the RSS before the model is built is recorded too
(``memory_runtime_rss``), and each phase's peak over it (``..._peak_over_runtime``): what
the case itself holds (weights, activations, caches, and what the heap keeps of them).
CUDA: the caching allocator's peaks, each phase its own: the allocator's cache is emptied
and its peaks reset as the phase begins (else every phase would report the reservation the
first one left). And NVML's memory charged to this process (not the device's, which
counts other processes): at the phase's end, when the allocator, which never gives back
memory on its own, still holds the phase's peak reservation; and over what the process
held as the first phase began (its CUDA context, made by that phase's first sync, and its
libraries). Where NVML does not list this pid (a container's pid namespace hides it),
the device's figures instead, labelled so.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.results.schema import Metric

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(key: str) -> int | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_bytes() -> int | None:
    kb = _status_kb("VmRSS")
    return None if kb is None else kb * 1024


def reset_peak_rss() -> bool:
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


class MemoryMonitor:
    def __init__(self, device: str, gpu=None):
        self.device = device
        self.gpu = gpu  # bench.telemetry.nvml.Gpu or None
        self.pid = os.getpid()
        # What NVML charges before the first phase's work: this process's CUDA context
        # (made by the first phase's sync) and libraries; the device's, where NVML does not
        # list this pid. Read as the first phase begins: no context exists before.
        self.nvml_baseline: dict[str, int | None] | None = None
        self.runtime_rss = rss_bytes()  # before the model is built: the runtime alone
        self.metrics: list[Metric] = []
        self.absent: dict[str, str] = {}
        if self.runtime_rss is not None:
            method = "vmrss_before_model_build (shared pages included)"
            self.metrics.append(
                Metric("memory_runtime_rss", float(self.runtime_rss), "bytes", method)
            )

    @contextmanager
    def phase(self, name: str, sync=lambda: None) -> Iterator[None]:
        cuda = self.device.startswith("cuda")
        if cuda:
            import torch

            sync()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        if self.gpu is not None and self.nvml_baseline is None:
            sync()  # the context exists once the device has been synchronised
            self.nvml_baseline = self._nvml_used()
        reset = reset_peak_rss()
        yield
        sync()
        prefix = f"memory_{name}"
        if reset and (peak_kb := _status_kb("VmHWM")) is not None:
            peak, method = peak_kb * 1024, "vmhwm_after_clear_refs"
            self.metrics.append(Metric(f"{prefix}_peak_rss", float(peak), "bytes", method))
            if self.runtime_rss is not None:
                self.metrics.append(Metric(f"{prefix}_peak_over_runtime",
                                           float(peak - self.runtime_rss), "bytes",
                                           f"{method} minus vmrss_before_model_build"))  # fmt: skip
        else:
            lifetime = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            self.metrics.append(
                Metric(f"{prefix}_peak_rss", float(lifetime), "bytes", "ru_maxrss_lifetime_peak")
            )
        if cuda:
            import torch

            for what, fn in (
                ("cuda_max_allocated", torch.cuda.max_memory_allocated),
                ("cuda_max_reserved", torch.cuda.max_memory_reserved),
            ):
                self.metrics.append(
                    Metric(f"{prefix}_{what}", float(fn()), "bytes", "torch_cuda_allocator")
                )
        if self.gpu is not None:
            self._process_memory(prefix)

    def _nvml_used(self) -> dict[str, int | None]:
        return {"process": self.gpu.process_memory_used(self.pid), "device": self.gpu.memory_used()}

    def _process_memory(self, prefix: str) -> None:
        """NVML's memory of this process at the phase's end, and over the first phase's
        start; where NVML does not list this pid (a container's pid namespace hides it),
        the device's, labelled so: other processes' memory is in it."""
        used, base = self._nvml_used(), self.nvml_baseline or {}
        if used["process"] is not None:
            kind, method = "process", "nvml_compute_process_used_at_phase_end"
        elif used["device"] is not None:
            kind, method = "device", f"nvml_device_used_at_phase_end (pid {self.pid} not listed)"
            self.absent[f"{prefix}_gpu_process"] = (
                f"NVML lists no GPU memory for pid {self.pid} (a container's pid namespace "
                "hides it, or the driver does not report it): the device's figures instead"
            )
        else:
            self.absent[f"{prefix}_gpu_process"] = "NVML reads no memory in use on this GPU"
            return
        value = float(used[kind])
        self.metrics.append(Metric(f"{prefix}_gpu_{kind}", value, "bytes", method))
        if base.get(kind) is not None:
            self.metrics.append(
                Metric(
                    f"{prefix}_gpu_{kind}_over_start",
                    value - base[kind],
                    "bytes",
                    f"{method} minus the same as the first phase began (CUDA context made)",
                )
            )
