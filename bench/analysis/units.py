"""Figures in units a person reads: 12.3 ms, 334 MB, 14.2k tokens/s. One scale for a single
figure (tables, text) and for a set of them (a plot axis)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

# Units with named steps: (divisor, name), largest first.
_STEPS = {
    "s": ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")),
    "bytes": ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB"), (1.0, "B")),
    "bytes/s": ((1e12, "TB/s"), (1e9, "GB/s"), (1e6, "MB/s"), (1e3, "kB/s"), (1.0, "B/s")),
}
_SI = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def scale(values: Iterable[float], unit: str | None) -> tuple[float, str]:
    """A divisor and a unit name that put the median of ``values`` in a readable range
    (seconds to ms or µs, bytes to MB or GB, decimal as sizes are quoted); units without
    named steps stay as they are."""
    steps = _STEPS.get(unit or "")
    if steps is None:
        return 1.0, unit or ""
    v = np.abs(np.asarray(list(values), dtype=float))
    v = v[np.isfinite(v) & (v > 0)]
    if not v.size:  # nothing but zeros (or nothing): the base unit
        return next(step for step in steps if step[0] == 1.0)
    reference = float(np.median(v))
    return next((step for step in steps if reference >= step[0]), steps[-1])


def human(value: float | None, unit: str | None, digits: int = 3) -> str:
    """``value`` in ``unit`` for reading: named steps (``scale``), k/M/G for other rates
    and counts, fractions ("1") as they are; "—" for a missing figure."""
    if value is None or math.isnan(value):
        return "—"
    unit = unit or ""
    if unit in _STEPS:
        divisor, name = scale([value], unit)
        return f"{value / divisor:.{digits}g} {name}"
    if unit in ("1", ""):
        return f"{value:.{digits}g}"
    divisor, prefix = next(((d, p) for d, p in _SI if abs(value) >= d), (1.0, ""))
    number = f"{value / divisor:.{digits}g}{prefix}"
    return number if unit == "count" else f"{number} {unit}"
