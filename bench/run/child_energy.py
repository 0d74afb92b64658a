"""Preloaded by the fork server when a case of the run measures energy: codecarbon, its
CPU and RAM model, imported and warmed once for all cases (about a second otherwise paid by
every case, and by runs that never measure energy)."""

from __future__ import annotations

import codecarbon  # noqa: F401


def _warm_codecarbon() -> None:
    """codecarbon detects the hardware once per process (0.5 s here) and caches it; doing
    that once in the fork server spares every case. Its timer threads end before any fork."""
    import threading
    import time

    from bench.telemetry.energy import CodecarbonMeter

    meter = CodecarbonMeter("USA")
    meter.begin()
    meter.end()
    deadline = time.monotonic() + 5
    while threading.active_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.01)


_warm_codecarbon()
