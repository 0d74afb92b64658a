"""Change points in a history, and which of them are alarms.

A series is one case x metric on one environment (``history_rows.environment_key``): a new CPU,
GPU driver, torch or CUDA starts a new series instead of raising an alarm. A night is one
invocation, the unit across runs: its figure is its run center (the geometric mean of its
process runs). Over a series' nights:

1. **Candidates** come from ``ruptures``' PELT (the optimal partition under a penalty, on
   log values for relative tolerances), with at least ``MIN_SIZE`` nights a segment and a
   penalty of ``PENALTY`` x sigma^2 x log(n), sigma from the median absolute night-to-night
   difference (robust to the steps it is looking for).
2. **Verdicts**: each candidate's nights after it against the nights before it (back to the
   previous candidate), the night as the unit: Student's t with the two segments' variance
   pooled, on the nights' magnitudes (a rank test throws them away: 4 + 4 nights can never
   reach the level by ranks, whatever the step). Yuen's trimmed t, tried on the same real
   nights in order, raised as many false alarms and found fewer steps. The detector chose
   the night as the most different of the nights it scanned, so
   the candidate counts as that many tests (``Change.looks``: the nights of its two
   segments it could have split at); candidates not significant even so are dropped one at
   a time, weakest first, their segments merged (Hunter's merge step); ``verdicts.decide``
   judges the rest together (Bonferroni over them at ``ALPHA``). The family is the candidates
   the data put forward, not every night of every series: the level holds for the changes
   tested, and the false alarms on real nights are measured, not promised
   (benchmarks/nightly.py). Each candidate is judged by the gates of the night before it: the
   base side sets the bar, as in ``bench compare``.
3. **Alarms**: a REGRESSION whose series has not come back. It needs ``MIN_SIZE`` nights
   after the change (PELT's shortest segment: a one-night blip is never a segment, only a
   suspect for ``--confirm``); deterministic metrics (sizes, quality of fixed weights) alarm
   at once. An alarm closes only when the newest segment is back within the tolerance of the
   level before the regression: a later improvement that undoes part of it leaves it open.
   Modelled figures never alarm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from bench.analysis import verdicts
from bench.analysis.levels import run_center
from bench.analysis.stats import MIN_RUNS, student
from bench.results.metric_info import (
    DETERMINISTIC,
    HIGHER_IS_BETTER,
    RESOLUTION,
    Tolerance,
    is_modelled,
)

PENALTY = 3.0  # x sigma^2 x log(n): BIC's 2 plus margin, checked on real nights (benchmark)
MIN_SIZE = 2  # nights in a segment: a one-night blip is never a segment of its own
METHOD = "student_t_pooled_on_nights"
DETECTOR = "ruptures' PELT (KernelCPD, linear kernel: the l2 cost, in C)"
LOCATION_CHI2 = 3.84  # chi-square(1) at 95%: the nights a change could have started on


@dataclass(frozen=True)
class Night:
    run_id: str
    started: Any  # pandas Timestamp (UTC)
    commit: str | None
    value: float  # the run's center (geometric mean of its process runs)
    low: float | None  # 95% interval of that center; None below 3 process runs
    high: float | None
    values: tuple[float, ...]  # the run's process-run values
    tolerance: Tolerance | None = None  # this night's gate for the series' metric (None: off)


@dataclass(frozen=True, eq=False)  # one series is one object: compared by identity
class Series:
    case_id: str
    metric: str
    unit: str
    env_key: str
    env: dict[str, Any]
    nights: tuple[Night, ...]
    modelled: bool = False

    @property
    def deterministic(self) -> bool:
        """Exact (sizes) or near-deterministic (counts): nights agree to a resolution."""
        return self.metric in DETERMINISTIC or self.metric in RESOLUTION

    @property
    def resolution(self) -> float:
        """The relative difference between nights that is no change (0: exact figures)."""
        return RESOLUTION.get(self.metric, 0.0)

    @property
    def tolerance(self) -> Tolerance:
        """The newest night's gate (what the series is judged with from now on)."""
        return next(n.tolerance for n in reversed(self.nights) if n.tolerance is not None)

    @property
    def log(self) -> bool:
        return self.tolerance.kind != "absolute"

    @property
    def key(self) -> str:
        return f"{self.case_id} · {self.metric} · {self.env_key}"

    def signal(self, log: bool | None = None) -> np.ndarray:
        """Each night's run center on the log scale (``log``; default: where the newest
        gate is relative) when every night is positive, else on the metric's own."""
        log = (self.log if log is None else log) and all(n.value > 0 for n in self.nights)
        return np.array(
            [
                run_center(n.values, log) if n.values else (math.log(n.value) if log else n.value)
                for n in self.nights
            ]
        )


@dataclass(frozen=True, eq=False)
class ChangePoint:
    series: Series
    index: int  # the first night after the change
    end: int  # one past the last night of the segment after it
    change: verdicts.Change
    start: int = 0  # the first night of the segment before it
    first: int | None = None  # the earliest night the change could have started on
    last: int | None = None  # ... and the latest

    @property
    def night(self) -> Night:
        return self.series.nights[self.index]

    @property
    def before(self) -> Night:
        return self.series.nights[self.index - 1]

    @property
    def nights_after(self) -> int:
        return self.end - self.index

    @property
    def regression(self) -> bool:
        return self.change.verdict == verdicts.Verdict.REGRESSION

    @property
    def persisted(self) -> bool:
        return self.change.certain or self.nights_after >= MIN_SIZE


def series_of(frame: Any, pinned: dict[str, Tolerance] | None = None) -> list[Series]:
    """The gated series of a history frame (``History.frame``), in case order. Each night
    keeps its own run's gates (``pinned``: one gates table for every night instead); a metric
    is a series where some night gates it."""
    if frame.empty:
        return []
    out = []
    for (case_id, metric, env_key), g in frame.groupby(
        ["case_id", "metric", "env_key"], sort=False
    ):
        tolerances = [_gate(gates, metric, pinned) for gates in g["gates"]]
        if all(t is None for t in tolerances):
            continue
        nights = tuple(
            Night(
                r.run_id,
                r.started,
                r.git_commit if isinstance(r.git_commit, str) else None,
                float(r.value),
                _or_none(r.low),
                _or_none(r.high),
                tuple(r.run_values),
                tol,
            )
            for r, tol in zip(g.itertuples(), tolerances, strict=True)
        )
        out.append(
            Series(
                case_id,
                metric,
                g["unit"].iloc[-1],
                env_key,
                g["env"].iloc[-1],
                nights,
                modelled=any(is_modelled(m) for m in g["method"]),
            )
        )
    return out


def _gate(gates: dict[str, Any], metric: str, pinned: dict[str, Tolerance] | None):
    if pinned is not None:
        return pinned.get(metric)
    t = gates.get(metric)
    return None if t is None else Tolerance(t["kind"], t["value"])


def candidates(series: Series, penalty: float = PENALTY) -> list[int]:
    """Indices of the first night after each change PELT finds (noisy metrics), or after
    each change at all (deterministic metrics, whose nights should agree exactly)."""
    y = series.signal()
    n = len(y)
    if series.deterministic:
        # A cut where the figure has moved beyond its gate (or, for counts, its resolution)
        # from the level its segment began at, not from the night before: a creep of less
        # than the gate a night still adds up to a change.
        log = series.log and all(nt.value > 0 for nt in series.nights)
        band = series.tolerance.value if series.tolerance.kind != "exact" else 0.0
        step = max(math.log1p(series.resolution), math.log1p(band)) if log else band
        cuts, level = [], y[0] if n else 0.0
        for i in range(1, n):
            if abs(y[i] - level) > step:
                cuts.append(i)
                level = y[i]
        return cuts
    if n < 2 * MIN_SIZE:
        return []
    sigma = noise(y)
    if sigma == 0:
        return [i for i in range(1, n) if y[i] != y[i - 1]]
    import ruptures

    # KernelCPD's linear kernel is PELT on the l2 cost, in C: ~700x faster than
    # ruptures.Pelt(model="l2") on 60 nights, with the same breakpoints.
    algo = ruptures.KernelCPD(kernel="linear", min_size=MIN_SIZE, jump=1).fit(y.reshape(-1, 1))
    return [int(i) for i in algo.predict(pen=penalty * sigma**2 * math.log(n))[:-1]]


def noise(y: np.ndarray) -> float:
    """The night-to-night standard deviation, from the median absolute difference of
    consecutive nights (a step moves one difference, not the median)."""
    if len(y) < 2:
        return 0.0
    return float(1.4826 * np.median(np.abs(np.diff(y))) / math.sqrt(2))


def analyse(all_series: list[Series], penalty: float = PENALTY) -> list[ChangePoint]:
    """Every change point of every series with its verdict, decided together (Bonferroni
    over the analysis). Modelled series are skipped: their figures are time in disguise."""
    found = []
    for s in all_series:
        if not s.modelled:
            found += _merged(s, candidates(s, penalty))
    decided = verdicts.decide([cp.change for cp in found])
    return [replace(cp, change=ch) for cp, ch in zip(found, decided, strict=True)]


def significant_changes(s: Series) -> list[ChangePoint]:
    """The change points of one series that survive the merge step (significant before the
    family's correction): where its level really moved, undecided on tolerance."""
    return _merged(s, candidates(s))


def _merged(s: Series, cuts: list[int]) -> list[ChangePoint]:
    """The candidates judged against their neighbours, the weakest dropped (its two
    segments merged) while it is not significant even before the family's correction: a
    spurious cut would shorten the segments its neighbours are judged on. Hunter's merge
    step. Candidates whose night before is not gated are not judged."""
    n = len(s.nights)
    y = s.signal()
    while True:
        bounds = [0, *cuts, n]
        points = []
        for k in range(1, len(bounds) - 1):
            lo, at, hi = bounds[k - 1], bounds[k], bounds[k + 1]
            ch = _change(s, lo, at, hi)
            if ch is not None:
                first, last = (at, at) if s.deterministic else location(y, lo, at, hi)
                points.append(ChangePoint(s, at, hi, ch, lo, first, last))
        if s.deterministic or not points:
            return points
        weakest = max(points, key=lambda p: _scaled_p(p.change))
        if _scaled_p(weakest.change) < verdicts.ALPHA:
            return points
        cuts = [c for c in cuts if c != weakest.index]


def _scaled_p(ch: verdicts.Change) -> float:
    """A change's p as a test of the largest of ``looks`` differences (Bonferroni)."""
    p = _p(ch)
    return math.inf if math.isnan(p) else min(1.0, p * ch.looks)


def _p(ch: verdicts.Change) -> float:
    from scipy import stats

    if ch.certain:
        return 0.0
    if not ch.tested:
        return math.nan
    return float(2 * stats.t.sf(abs(ch.estimate) / ch.se, ch.df))


def _change(s: Series, lo: int, at: int, hi: int) -> verdicts.Change | None:
    """The nights ``[at, hi)`` against ``[lo, at)``, judged with the gate of night
    ``at - 1`` and on its scale; None when that night does not gate the metric."""
    tol = s.nights[at - 1].tolerance
    if tol is None:
        return None
    hib = HIGHER_IS_BETTER.get(s.metric, False)
    if s.deterministic:
        # The night the segment began at against the night of the change: an exact figure
        # differs or it does not, and a creep inside the segment is part of the change.
        before, after = s.nights[lo].values, s.nights[at].values
        return verdicts.between_runs([before], [after], s.metric, hib, tol,
                                     deterministic=s.metric in DETERMINISTIC,
                                     resolution=s.resolution)  # fmt: skip
    log = tol.kind != "absolute" and all(n.value > 0 for n in s.nights)
    y = s.signal(log)
    before, after = y[lo:at], y[at:hi]
    centre = (lambda v: math.exp(v)) if log else (lambda v: v)
    est, se, df = _segments(before, after)
    return verdicts.Change(
        s.metric, hib, tol, len(before), len(after), centre(before.mean()),
        centre(after.mean()), "log" if log else "linear", "night", est, se, df,
        looks=max(1, hi - lo - 2 * MIN_SIZE + 1), basis=f"{len(before) + len(after)} nights",
        method=METHOD,
    )  # fmt: skip


def _segments(before: np.ndarray, after: np.ndarray) -> tuple[float, float, float]:
    """Estimate, standard error and degrees of freedom of ``after`` minus ``before``:
    Student's t with the two segments' variance pooled (the noise is the machine's, common
    to both; a segment of 2 nights has no variance of its own worth trusting)."""
    if len(before) + len(after) < 3 or min(len(before), len(after)) < 1:
        return float(after.mean() - before.mean()), math.nan, math.nan
    w = student(after, before)
    return w.diff, w.se, w.df


def location(y: np.ndarray, lo: int, at: int, hi: int) -> tuple[int, int]:
    """The earliest and latest night the change found at ``at`` could have started on: the
    splits of ``[lo, hi)`` whose two-segment squared error is within a chi-square(1) 95%
    quantile (in units of the segments' variance) of the best split's, an approximate
    likelihood-ratio confidence set for the change's position."""
    seg = y[lo:hi]
    splits = range(MIN_SIZE, len(seg) - MIN_SIZE + 1)  # segments of MIN_SIZE nights, as PELT's

    def sse(k: int) -> float:
        a, b = seg[:k], seg[k:]
        return float(((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum())

    costs = {k: sse(k) for k in splits}
    best = costs.get(at - lo, min(costs.values()))
    var = best / max(1, len(seg) - 2)
    if var == 0:
        return at, at
    near = [k for k, c in costs.items() if c - best <= LOCATION_CHI2 * var]
    return lo + min(near, default=at - lo), lo + max(near, default=at - lo)


def alarms(points: list[ChangePoint]) -> list[ChangePoint]:
    """The open alarms: persisted regressions whose series has not come back within the
    tolerance of the level before them (the newest segment's level against the segment
    before the regression)."""
    out = []
    for cp in points:
        if not (cp.regression and cp.persisted):
            continue
        if not back(cp, points):
            out.append(cp)
    return out


def back(cp: ChangePoint, points: list[ChangePoint]) -> bool:
    """Has the series returned to within the tolerance of where it was before ``cp``? The
    newest segment (after the series' last change point) against the segment before it."""
    s = cp.series
    last = max((p.index for p in points if p.series is s), default=cp.index)
    if last == cp.index:
        return False
    y = s.signal(cp.change.scale == "log")  # on the change's own scale, as its band is
    if cp.change.certain:  # the level its segment began at, as the change was judged
        before, now = y[cp.start], y[-1]
    else:
        before, now = y[cp.start : cp.index].mean(), y[last:].mean()
    worse = (before - now) if cp.change.higher_is_better else (now - before)
    return worse <= cp.change.band * (1 + 1e-9)


def _or_none(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def suspects(all_series: list[Series]) -> list[ChangePoint]:
    """One-night regressions: the newest night of a noisy series significantly worse than
    the segment before it (beyond tolerance, Bonferroni over the series tested). Too young
    to alarm on their own; ``bench history --confirm`` re-runs them."""
    found = []
    for s in all_series:
        n = len(s.nights)
        if s.modelled or s.deterministic or n < MIN_RUNS + 1:
            continue
        # the newest segment of 3+ nights before the last one (PELT may have cut the
        # newest night off with the one before it)
        lo = max((c for c in candidates(s) if c <= n - 1 - MIN_RUNS), default=0)
        ch = _change(s, lo, n - 1, n)
        if ch is not None:
            found.append(ChangePoint(s, n - 1, n, replace(ch, looks=1), lo, n - 1, n - 1))
    decided = verdicts.decide([p.change for p in found])
    return [
        replace(p, change=ch)
        for p, ch in zip(found, decided, strict=True)
        if ch.verdict == verdicts.Verdict.REGRESSION
    ]
