"""Cells of the measured tables in docs/findings.md (benchmarks/*_tables.py): every timed figure is
the geometric mean over process repeats with its 95% t interval (bench.analysis.stats),
ratios carry theirs ("~": the interval holds 1, within noise), differences a Welch t
interval over the process runs."""

from __future__ import annotations

import numpy as np

from bench.analysis import stats


def interval(v, scale: float = 1.0, digits: str = ".3g") -> str:
    if v is None or len(v) == 0:
        return "—"
    ci = stats.center_interval(v)
    mid = stats.center(v) * scale
    if ci is None:
        return f"{mid:{digits}}"
    return f"{mid:{digits}} [{ci[0] * scale:{digits}}, {ci[1] * scale:{digits}}]"


def ratio(case, base) -> str:
    if case is None or base is None or len(case) == 0:
        return "—"
    r = stats.ratio(case, base)
    if not r.has_interval:
        return f"{r.value:.2f} (n/a)"
    return f"{r.value:.2f} [{r.low:.2f}, {r.high:.2f}]" + ("" if r.excludes_one() else " ~")


def difference(case, base) -> str:
    if case is None or base is None:
        return "—"
    if np.ptp(case) == 0 and np.ptp(base) == 0:  # one seed's weights, the same in every run
        return f"{case[0] - base[0]:+.3f} (runs agree)"
    w = stats.welch(np.asarray(case), np.asarray(base))
    if not np.isfinite(w.se) or len(case) < stats.MIN_RUNS or len(base) < stats.MIN_RUNS:
        return f"{w.diff:+.3f}"
    lo, hi = w.interval() if w.se > 0 else (w.diff, w.diff)
    return f"{w.diff:+.3f} [{lo:+.3f}, {hi:+.3f}]" + ("" if lo > 0 or hi < 0 else " ~")


def row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def median(v, digits: str = ".3f", scale: float = 1.0) -> str:
    return "—" if v is None else f"{np.median(v) * scale:{digits}}"


def spread(v) -> str:
    if v is None:
        return "—"
    lo, hi = int(min(v)), int(max(v))
    return str(lo) if lo == hi else f"{lo}–{hi}"
