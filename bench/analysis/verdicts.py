"""Verdicts: did a candidate change a metric beyond its tolerance? REGRESSION, IMPROVED,
OK or INCONCLUSIVE, from the intervals and tests of ``stats``, with Holm's correction over
a comparison. One rule for ``bench compare``, ``bench ab``, the pytest gates and the
nightly history.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

import numpy as np

from bench.analysis.stats import (
    CONFIDENCE,
    MIN_RUNS,
    center,
    finite,
    student,
    too_few_runs,
    welch,
)
from bench.results.metric_info import Tolerance

ALPHA = 0.01  # family-wise error of the hard gate (Holm over a comparison's tests)
VERDICT_METHOD = "welch_t_holm"
POOLED_METHOD = "student_t_pooled_holm"
MAX_MORE_RUNS = 1000


class Verdict(StrEnum):
    REGRESSION = "REGRESSION"
    IMPROVED = "IMPROVED"
    OK = "OK"
    INCONCLUSIVE = "INCONCLUSIVE"


@dataclass(frozen=True)
class Change:
    """A candidate against its base on one metric, and the verdict on it.

    The estimate is the difference of mean log values over process runs (``scale`` "log",
    for a relative tolerance: shown as a ratio) or of mean values (``scale`` "linear",
    for an absolute tolerance), with a 95% Welch t interval. The rule (chosen by
    simulation, benchmarks/gate_rules.py, README "Verdicts"):

    - REGRESSION / IMPROVED: the difference from no change is significant after Holm's
      correction over the comparison's tests, *and* the estimate lies beyond the
      tolerance on the bad / good side;
    - OK: the whole interval lies inside the tolerance;
    - INCONCLUSIVE: anything else, with roughly how many more runs per side would decide.
    Deterministic figures whose runs agree on each side are compared exactly.
    """

    metric: str
    higher_is_better: bool
    tolerance: Tolerance
    n_base: int
    n_cand: int
    base: float  # center of each side's runs, in the metric's unit
    cand: float
    scale: str  # "log" or "linear"
    estimate: float = math.nan  # candidate minus base, on ``scale``
    low: float = math.nan
    high: float = math.nan
    se: float = math.nan  # standard error of the estimate
    p: float = math.nan  # two-sided p of "no change"; 0 for an exact difference
    p_adjusted: float = math.nan  # after Holm over the comparison
    verdict: Verdict = Verdict.INCONCLUSIVE
    why: str = ""
    more_runs: int | None = None  # runs per side likely to decide an INCONCLUSIVE
    method: str = VERDICT_METHOD

    @property
    def exact(self) -> bool:
        return self.p == 0 and self.low == self.high

    @property
    def band(self) -> float:
        """The tolerance on this change's scale."""
        t = self.tolerance
        return math.log1p(t.value) if t.kind == "relative" else t.value

    def describe(self, digits: int = 3) -> str:
        """'1.12× [1.05, 1.19]' (log scale) or '+0.0031 [-0.0012, +0.0074]' (linear)."""
        if math.isnan(self.estimate):
            return "n/a"
        log = self.scale == "log"

        def f(x: float) -> str:
            return f"{math.exp(x):.{digits}g}" if log else f"{x:+.{digits}g}"

        point = f(self.estimate) + ("×" if log else "")
        if self.exact:
            return f"{point} (exact)"
        if math.isnan(self.low):
            return point
        return f"{point} [{f(self.low)}, {f(self.high)}]"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["tolerance"] = self.tolerance.to_json()
        d["verdict"] = str(self.verdict)
        d["change"] = self.describe()
        d["method"] = "exact" if self.exact else self.method
        return d


def change(
    base: Sequence[float],
    cand: Sequence[float],
    metric: str,
    higher_is_better: bool,
    tolerance: Tolerance,
    deterministic: bool = False,
    pooled: bool = False,
) -> Change:
    """The estimate and interval of ``cand`` against ``base`` (process-run values); its
    verdict is set by ``decide``, which sees the whole comparison for Holm's correction.

    ``pooled``: Student's t with one pooled variance instead of Welch's, for the segments of
    a history before and after a change point (``changepoints``), where the base has many
    values and the candidate may have as few as one."""
    b, c = finite(base), finite(cand)
    scale = "linear" if tolerance.kind == "absolute" else "log"
    out = Change(metric, higher_is_better, tolerance, len(b), len(c), center(b), center(c), scale)
    if len(b) == 0 or len(c) == 0:
        return replace(out, why="no runs on one side")
    if scale == "log":
        if (b <= 0).any() or (c <= 0).any():
            return replace(out, why="a value is zero or negative: no ratio on the log scale")
        b, c = np.log(b), np.log(c)
    est = float(c.mean() - b.mean())
    if deterministic and np.ptp(b) == 0 and np.ptp(c) == 0:
        return replace(out, estimate=est, low=est, high=est, p=0.0)
    if pooled:
        out = replace(out, method=POOLED_METHOD)
        if len(b) < MIN_RUNS:
            return replace(out, estimate=est, why=too_few_runs(len(b), MIN_RUNS))
    elif len(b) < MIN_RUNS or len(c) < MIN_RUNS:
        return replace(out, estimate=est, why=too_few_runs(len(b), len(c)))
    w = student(c, b) if pooled else welch(c, b)
    if w.se == 0:
        return replace(out, estimate=est, low=est, high=est, p=0.0)
    low, high = w.interval()
    return replace(out, estimate=est, low=low, high=high, se=w.se, p=w.p_value())


def decide(changes: Sequence[Change], alpha: float = ALPHA) -> list[Change]:
    """Verdicts for one comparison: Holm's step-down correction over its tests with an
    interval, so that the chance of any false REGRESSION in the comparison stays below
    ``alpha`` when nothing changed (exact differences need no test)."""
    tested = [i for i, ch in enumerate(changes) if ch.p > 0 and not math.isnan(ch.p)]
    adjusted = dict(zip(tested, holm([changes[i].p for i in tested]), strict=True))
    return [
        _verdict(replace(ch, p_adjusted=adjusted.get(i, ch.p)), alpha)
        for i, ch in enumerate(changes)
    ]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (step-down, monotone), in the order given."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = running
    return out


def _verdict(ch: Change, alpha: float) -> Change:
    if math.isnan(ch.estimate):
        return replace(ch, verdict=Verdict.INCONCLUSIVE)
    worse = -ch.estimate if ch.higher_is_better else ch.estimate  # > 0: the bad side
    band = ch.band
    slack = 1e-12 * max(1.0, abs(ch.estimate))  # float rounding of an exact comparison
    if ch.exact:
        if abs(worse) <= band + slack:
            return replace(ch, verdict=Verdict.OK)
        return replace(ch, verdict=Verdict.REGRESSION if worse > 0 else Verdict.IMPROVED)
    if math.isnan(ch.low):
        return replace(
            ch, verdict=Verdict.INCONCLUSIVE, more_runs=MIN_RUNS - min(ch.n_base, ch.n_cand)
        )
    if ch.p_adjusted < alpha and abs(worse) > band:
        return replace(ch, verdict=Verdict.REGRESSION if worse > 0 else Verdict.IMPROVED)
    if -band <= ch.low and ch.high <= band:
        return replace(ch, verdict=Verdict.OK)
    return replace(ch, verdict=Verdict.INCONCLUSIVE, more_runs=_more_runs(ch, band, alpha))


def _more_runs(ch: Change, band: float, alpha: float) -> int | None:
    """Runs per side to add so that, if the estimate and spread held, the verdict would be
    decided: the interval inside the tolerance (estimate inside it), or no change rejected
    at the Holm-corrected level this test had (estimate beyond it). The standard error
    shrinks as 1/sqrt(n); None when no number of runs would decide."""
    from scipy import stats

    if abs(ch.estimate) <= band:
        distance, z = band - abs(ch.estimate), stats.norm.ppf(0.5 + CONFIDENCE / 2)
    else:
        holm_factor = max(1.0, ch.p_adjusted / ch.p) if ch.p > 0 else 1.0
        distance, z = abs(ch.estimate), stats.norm.ppf(1 - alpha / holm_factor / 2)
    if distance <= 0:
        return None
    n = min(ch.n_base, ch.n_cand)
    need = math.ceil(n * (z * ch.se / distance) ** 2)
    more = max(1, need - n)
    return more if more <= MAX_MORE_RUNS else None
