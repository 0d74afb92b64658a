"""Change points in a history, and which of them are alarms.

A series is one case x metric on one environment (``history_points.environment_key``): a
new CPU, GPU driver, torch or CUDA starts a new series instead of raising an alarm. Over a
series' nights (one point per run: the median of its process runs):

1. **Candidates** come from ``ruptures``' PELT (the optimal partition under a penalty, on
   log values for relative tolerances), with at least ``MIN_SIZE`` nights a segment and a
   penalty of ``PENALTY`` x sigma^2 x log(n), sigma from the median absolute night-to-night
   difference (robust to the steps it is looking for). The choice of PELT over Apache
   Otava's E-Divisive and of the penalty: benchmarks/nightly.py, README "Nightly".
2. **Verdicts** come from ``verdicts.change`` (its estimate and interval: a pooled t on log
   values; its p: a Mann-Whitney U test of the nights after a candidate against the nights
   before it, back to the previous candidate, multiplied by the number of nights the
   detector could have picked, since it picked this one for being the most different).
   Candidates not significant even so are dropped one at a time, weakest first, their
   segments merged (Hunter's merge step), and ``verdicts.decide`` judges the rest (Holm over
   every candidate of the analysis, family-wise ``ALPHA``): REGRESSION / IMPROVED only
   when significant *and* beyond the metric's tolerance.
3. **Alarms**: a REGRESSION that has persisted ``PERSIST`` nights or more, and that no
   later IMPROVED change undid. Deterministic metrics (sizes, quality of fixed weights)
   alarm at once on any change beyond their tolerance. Modelled figures never alarm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from bench.analysis import stats, verdicts
from bench.results.metric_info import DETERMINISTIC, HIGHER_IS_BETTER, Tolerance, is_modelled

PENALTY = 3.0  # x sigma^2 x log(n): BIC's 2 plus margin, checked on real nights (benchmark)
MIN_SIZE = 2  # nights in a segment: a one-night blip is never a segment of its own
PERSIST = 2  # nights after a noisy change before it may alarm
# The test of a candidate: "ranks" (Mann-Whitney U: a night slowed by other load is one
# rank, not a pull on the mean) or "t" (pooled Student t, as Hunter/Otava); chosen on real
# nights by benchmarks/nightly.py.
TEST = "ranks"
RANKS_METHOD = "mann_whitney_u_holm"
EXACT_RANKS = 5000  # sizes' product up to which the exact U distribution is used
DETECTOR = "ruptures' PELT (KernelCPD, linear kernel: the l2 cost, in C)"


@dataclass(frozen=True)
class Night:
    run_id: str
    started: Any  # pandas Timestamp (UTC)
    commit: str | None
    value: float
    low: float | None
    high: float | None
    values: tuple[float, ...]  # the run's process-run values


@dataclass(frozen=True, eq=False)  # one series is one object: compared by identity
class Series:
    case_id: str
    metric: str
    unit: str
    env_key: str
    env: dict[str, Any]
    tolerance: Tolerance
    nights: tuple[Night, ...]
    modelled: bool = False

    @property
    def deterministic(self) -> bool:
        return self.metric in DETERMINISTIC

    @property
    def key(self) -> str:
        return f"{self.case_id} · {self.metric} · {self.env_key}"

    def signal(self) -> np.ndarray:
        y = np.array([n.value for n in self.nights], dtype=float)
        if self.tolerance.kind != "absolute" and (y > 0).all():
            return np.log(y)
        return y


@dataclass(frozen=True, eq=False)
class ChangePoint:
    series: Series
    index: int  # the first night after the change
    end: int  # one past the last night of the segment after it
    change: verdicts.Change

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
        return self.change.exact or self.nights_after >= PERSIST


def series_of(frame: Any) -> list[Series]:
    """The gated series of a history frame (``History.frame``), in case order. The gates of
    the newest run say which metrics are judged and with what tolerance."""
    if frame.empty:
        return []
    newest = frame.iloc[-1]["gates"]
    gates = {m: Tolerance(t["kind"], t["value"]) for m, t in newest.items()}
    out = []
    judged = frame[frame["metric"].isin(gates.keys())]
    for (case_id, metric, env_key), g in judged.groupby(
        ["case_id", "metric", "env_key"], sort=False
    ):
        nights = tuple(
            Night(
                r.run_id,
                r.started,
                r.git_commit if isinstance(r.git_commit, str) else None,
                float(r.value),
                _or_none(r.low),
                _or_none(r.high),
                tuple(r.run_values),
            )
            for r in g.itertuples()
        )
        out.append(
            Series(
                case_id,
                metric,
                g["unit"].iloc[-1],
                env_key,
                g["env"].iloc[-1],
                gates[metric],
                nights,
                modelled=any(is_modelled(m) for m in g["method"]),
            )
        )
    return out


def candidates(series: Series, penalty: float = PENALTY) -> list[int]:
    """Indices of the first night after each change PELT finds (noisy metrics), or after
    each change at all (deterministic metrics, whose nights should agree exactly)."""
    y = series.signal()
    n = len(y)
    if series.deterministic:
        return [i for i in range(1, n) if y[i] != y[i - 1]]
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


def analyse(
    all_series: list[Series], penalty: float = PENALTY, test: str = TEST
) -> list[ChangePoint]:
    """Every change point of every series with its verdict, decided together (Holm over
    the analysis). Modelled series are skipped: their figures are time in disguise."""
    found = []
    for s in all_series:
        if not s.modelled:
            found += _merged(s, candidates(s, penalty), test)
    decided = verdicts.decide([cp.change for cp in found])
    return [replace(cp, change=ch) for cp, ch in zip(found, decided, strict=True)]


def _merged(s: Series, cuts: list[int], test: str) -> list[ChangePoint]:
    """The candidates judged against their neighbours, the weakest dropped (its two
    segments merged) while it is not significant even before Holm: a spurious cut would
    shorten the segments its neighbours are judged on. Hunter's merge step, on this test."""
    n = len(s.nights)
    while True:
        bounds = [0, *cuts, n]
        points = []
        for k in range(1, len(bounds) - 1):
            lo, at, hi = bounds[k - 1], bounds[k], bounds[k + 1]
            ch = _change(s, lo, at, hi, test)
            points.append(ChangePoint(s, at, hi, ch if s.deterministic else _scanned(ch, hi - lo)))
        if s.deterministic or not points:
            return points
        weakest = max(points, key=lambda p: math.inf if math.isnan(p.change.p) else p.change.p)
        if weakest.change.p < verdicts.ALPHA:
            return points
        cuts = [c for c in cuts if c != weakest.index]


def _change(s: Series, lo: int, at: int, hi: int, test: str = TEST) -> verdicts.Change:
    before = [n.value for n in s.nights[lo:at]]
    after = [n.value for n in s.nights[at:hi]]
    hib = HIGHER_IS_BETTER.get(s.metric, False)
    if s.deterministic:
        # Only the nights next to the change: an exact figure differs or it does not.
        return verdicts.change(before[-1:], after[:1], s.metric, hib, s.tolerance, True)
    ch = verdicts.change(before, after, s.metric, hib, s.tolerance, pooled=True)
    if test == "ranks" and ch.p > 0:  # nan (too few nights) and exact stay as they are
        from scipy.stats import mannwhitneyu

        exact = len(before) * len(after) <= EXACT_RANKS
        p = mannwhitneyu(after, before, method="exact" if exact else "asymptotic").pvalue
        ch = replace(ch, p=float(p), method=RANKS_METHOD)
    return ch


def _scanned(ch: verdicts.Change, nights: int) -> verdicts.Change:
    """The detector chose this night as the most different of the ``nights`` it scanned: a
    t test at the chosen night is a test of the largest of many differences, so its p is
    multiplied by the number of places the change could have been (Bonferroni)."""
    if ch.exact or math.isnan(ch.p):
        return ch
    return replace(ch, p=min(1.0, ch.p * max(1, nights - 2 * MIN_SIZE + 1)))


def alarms(points: list[ChangePoint]) -> list[ChangePoint]:
    """The open alarms: persisted regressions that no later improvement in their series
    undid."""
    out = []
    for cp in points:
        if not (cp.regression and cp.persisted):
            continue
        later = [
            p
            for p in points
            if p.series == cp.series
            and p.index > cp.index
            and p.change.verdict == verdicts.Verdict.IMPROVED
        ]
        if not later:
            out.append(cp)
    return out


def _or_none(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def suspects(all_series: list[Series]) -> list[ChangePoint]:
    """One-night regressions: the newest night of a noisy series significantly worse than
    the segment before it (beyond tolerance, Holm over the series tested). Too young to
    alarm on their own; ``bench history --confirm`` re-runs them."""
    found = []
    for s in all_series:
        n = len(s.nights)
        if s.modelled or s.deterministic or n < stats.MIN_RUNS + 1:
            continue
        # the newest segment of 3+ nights before the last one (PELT may have cut the
        # newest night off with the one before it)
        lo = max((c for c in candidates(s) if c <= n - 1 - stats.MIN_RUNS), default=0)
        # one night has no rank test worth the name: a t test only picks what to re-run
        found.append(ChangePoint(s, n - 1, n, _change(s, lo, n - 1, n, "t")))
    decided = verdicts.decide([p.change for p in found])
    return [
        replace(p, change=ch)
        for p, ch in zip(found, decided, strict=True)
        if ch.verdict == verdicts.Verdict.REGRESSION
    ]
