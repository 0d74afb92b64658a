"""Figures in units a person reads: 12.3 ms, 334 MB, 14.2k tokens/s, 71.3%."""

from __future__ import annotations

import math

_SI = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))
_TIME = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns"))


def human(value: float | None, unit: str | None, digits: int = 3) -> str:
    """``value`` in ``unit`` scaled for reading: seconds to ms/µs, bytes to kB/MB/GB
    (decimal, as sizes on disk are quoted), rates with k/M/G, fractions ("1") as they are."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    unit = unit or ""
    if unit == "s":
        for scale, name in _TIME:
            if abs(value) >= scale or scale == _TIME[-1][0]:
                return f"{value / scale:.{digits}g} {name}"
    if unit in ("bytes", "bytes/s"):
        number, prefix = _si(value, digits)
        return f"{number} {prefix}{'B' if unit == 'bytes' else 'B/s'}"
    if unit in ("1", ""):
        return f"{value:.{digits}g}"
    if unit == "count":
        number, prefix = _si(value, digits)
        return f"{number}{prefix}"
    number, prefix = _si(value, digits)
    return f"{number}{prefix} {unit}"


def _si(value: float, digits: int) -> tuple[str, str]:
    for scale, prefix in _SI:
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g}", prefix
    return f"{value:.{digits}g}", ""
