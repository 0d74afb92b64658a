"""Wall-clock timing of repeated calls, with warm-up discarded and every sample kept.

The clock is ``time.perf_counter`` read after the device has finished its queued work
(``sync``), so asynchronous GPU launches are not mistaken for completed work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

METHOD = "perf_counter"


def _no_sync() -> None:
    return None


def device_sync(device: str) -> Callable[[], None]:
    """The function that waits for ``device`` to drain its queue (a no-op on CPU)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.synchronize
    return _no_sync


@dataclass
class Samples:
    """Seconds per call: ``warmup`` were discarded from statistics, ``values`` are measured."""

    values: list[float]
    warmup: list[float] = field(default_factory=list)
    unit: str = "s"
    method: str = METHOD

    def to_json(self) -> dict:
        return {
            "unit": self.unit,
            "method": self.method,
            "warmup": self.warmup,
            "values": self.values,
        }


def time_calls(
    fn: Callable[[], object],
    *,
    warmup: int,
    iterations: int,
    sync: Callable[[], None] = _no_sync,
) -> Samples:
    """Call ``fn`` ``warmup + iterations`` times, timing each call on its own."""
    clock = time.perf_counter
    out: list[float] = []
    sync()
    for _ in range(warmup + iterations):
        t0 = clock()
        fn()
        sync()
        out.append(clock() - t0)
    return Samples(values=out[warmup:], warmup=out[:warmup])
