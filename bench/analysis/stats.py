"""Statistics inside one invocation: the one place that turns a run's process repeats into
figures, intervals and winners (a technique against the baseline of the same run). Tables,
plots, reports and the console summary call it; comparisons of *separate* invocations
(``bench compare``, ``bench ab``, the pytest gates, the history) go through ``verdicts``
and the two-level model of ``levels`` instead, because an invocation's process runs share
its drift.

Inside one invocation the unit of evidence is one process-level run: each repeat of a case
is a fresh process whose figure (e.g. the median of its timed calls) is one observation.
Samples inside a process share the machine state of that process and never stand in for
runs. A case's center is the geometric mean of its runs.

Ratios are compared on the log scale, where timing noise is close to symmetric: the
interval of ``case / baseline`` is a Welch t interval on the difference of the mean log
values (unequal variances, Welch-Satterthwaite degrees of freedom), exponentiated. It is
valid at small n under log-normal noise, which a coverage simulation in the tests checks
(3 and 10 runs per side). Below ``MIN_RUNS`` runs on either side no interval is given:
a percentile bootstrap over 2 runs is the min/max range, which covers ~67%, not 95%.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MIN_RUNS = 3  # fewer process runs on either side: no interval
CONFIDENCE = 0.95
# A run is flagged as outlying when its log value sits further from the median of the
# case's runs than both of: OUTLIER_Z modified z-scores (Iglewicz and Hoaglin's 3.5, on
# the log scale) and OUTLIER_MIN_REL relative distance (this VM's run-to-run noise).
OUTLIER_Z = 3.5
OUTLIER_MIN_REL = 0.20
RATIO_METHOD = "welch_t_on_log_runs"


def center(values: Sequence[float]) -> float:
    """The figure of a case over its process runs: their geometric mean when every value is
    positive (the center the log-scale ratios and intervals are built around, so a reader can
    recompute a ratio from the two centers shown), else their mean."""
    x = finite(values)
    if not x.size:
        return math.nan
    return float(np.exp(np.log(x).mean())) if (x > 0).all() else float(x.mean())


def center_interval(values: Sequence[float]) -> tuple[float, float] | None:
    """A 95% t interval of the runs' typical value: of their geometric mean when all are
    positive, else of their mean. None below MIN_RUNS runs, where no interval is valid."""
    x = finite(values)
    if len(x) < MIN_RUNS:
        return None
    log = bool((x > 0).all())
    y = np.log(x) if log else x
    w = Welch(float(y.mean()), float(y.std(ddof=1) / math.sqrt(len(y))), len(y) - 1)
    low, high = w.interval() if w.se > 0 else (w.diff, w.diff)
    return (math.exp(low), math.exp(high)) if log else (low, high)


@dataclass(frozen=True)
class Ratio:
    """``case / baseline`` over process runs, with its interval when there is one.

    ``value`` is the ratio of geometric means (the point estimate the interval is built
    around). ``low``/``high`` are NaN when no valid interval exists, and ``why`` says why.
    """

    value: float
    low: float
    high: float
    n_case: int
    n_base: int
    method: str
    why: str = ""

    @property
    def has_interval(self) -> bool:
        return not math.isnan(self.low)

    def excludes_one(self) -> bool:
        return self.has_interval and (self.low > 1 or self.high < 1)

    def describe(self, digits: int = 3) -> str:
        """'1.42× [1.21, 1.66]', '1.42× (no interval: 2 runs)' or '0.5× (exact)'."""
        if math.isnan(self.value):
            return f"n/a ({self.why})"
        if self.value != 1 and abs(self.value - 1) < 0.005:
            digits += 1  # 1.002× is not 1×: a real, small difference must not read as none
        point = f"{self.value:.{digits}g}×"
        if self.method.startswith("exact"):
            return f"{point} (exact)"
        if not self.has_interval:
            return f"{point} (no interval: {self.why})"
        return f"{point} [{self.low:.{digits}g}, {self.high:.{digits}g}]"


def ratio(
    case: Sequence[float],
    base: Sequence[float],
    confidence: float = CONFIDENCE,
    deterministic: bool = False,
) -> Ratio:
    """The ratio of a case's runs to its baseline's runs, with a Welch t interval on logs.

    ``deterministic``: the figure does not vary from run to run by nature (bytes,
    parameter counts, quality on fixed text with fixed weights), so when each side's runs
    agree the ratio is exact at any n, one run included."""
    c = finite(case)
    b = finite(base)
    nc, nb = len(c), len(b)
    if nc == 0 or nb == 0:
        return Ratio(math.nan, math.nan, math.nan, nc, nb, RATIO_METHOD, "no runs")
    if deterministic and np.ptp(c) == 0 and np.ptp(b) == 0 and c[0] >= 0 and b[0] >= 0:
        # Exact, zeros included (no optimizer state: 0 bytes against some is a clear win).
        point = 1.0 if c[0] == b[0] else (c[0] / b[0] if b[0] else math.inf)
        return Ratio(point, point, point, nc, nb, "exact (deterministic figure)")
    if (c <= 0).any() or (b <= 0).any():
        why = "a value is zero or negative: no ratio on the log scale"
        return Ratio(math.nan, math.nan, math.nan, nc, nb, RATIO_METHOD, why)
    point = math.exp(np.log(c).mean() - np.log(b).mean())
    if nc < MIN_RUNS or nb < MIN_RUNS:
        return Ratio(point, math.nan, math.nan, nc, nb, RATIO_METHOD, too_few_runs(nc, nb))
    w = welch(np.log(c), np.log(b))
    if w.se == 0:  # deterministic figures (bytes, parameter counts): the ratio is exact
        return Ratio(point, point, point, nc, nb, "exact (no spread across runs)")
    low, high = w.interval(confidence)
    return Ratio(point, math.exp(low), math.exp(high), nc, nb, RATIO_METHOD)


def too_few_runs(n_a: int, n_b: int) -> str:
    n = min(n_a, n_b)
    return f"{n} run{'s' if n != 1 else ''}; an interval needs {MIN_RUNS}"


@dataclass(frozen=True)
class Welch:
    """Welch's two-sample t on the difference of means ``a - b`` (unequal variances,
    Welch-Satterthwaite degrees of freedom): the core of every interval and test here."""

    diff: float
    se: float
    df: float

    def interval(self, confidence: float = CONFIDENCE) -> tuple[float, float]:
        from scipy import stats

        t = stats.t.ppf(0.5 + confidence / 2, self.df)
        return self.diff - t * self.se, self.diff + t * self.se

    def p_value(self) -> float:
        """Two-sided p-value of "no difference"."""
        from scipy import stats

        return float(2 * stats.t.sf(abs(self.diff) / self.se, self.df))


def welch(a: np.ndarray, b: np.ndarray) -> Welch:
    """``a`` and ``b`` need 2 values or more each."""
    na, nb = len(a), len(b)
    va, vb = a.var(ddof=1) / na, b.var(ddof=1) / nb
    se = math.sqrt(va + vb)
    if se == 0:
        return Welch(float(a.mean() - b.mean()), 0.0, math.inf)
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    return Welch(float(a.mean() - b.mean()), se, df)


def student(a: np.ndarray, b: np.ndarray) -> Welch:
    """Student's two-sample t on ``a - b`` with one pooled variance (``b`` needs 2 values or
    more): for two segments of one history, whose noise is the machine's, not the change's."""
    na, nb = len(a), len(b)
    pooled = (((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum()) / (na + nb - 2)
    se = math.sqrt(pooled * (1 / na + 1 / nb))
    return Welch(float(a.mean() - b.mean()), se, na + nb - 2 if se > 0 else math.inf)


def outlying_runs(values: Sequence[float]) -> list[int]:
    """Indices of runs far from the others (see OUTLIER_Z); none below 3 runs.

    They are kept in every figure: flagged for a reader, never silently dropped."""
    x = np.asarray(values, dtype=float)
    if x.size < 3 or (x <= 0).any() or np.isnan(x).any():
        return []
    logs = np.log(x)
    med = np.median(logs)
    dev = np.abs(logs - med)
    mad = np.median(dev)
    limit = max(OUTLIER_Z * 1.4826 * mad, math.log1p(OUTLIER_MIN_REL))
    return [int(i) for i in np.flatnonzero(dev > limit)]


@dataclass(frozen=True)
class Winner:
    """The best of several alternatives, named only when the evidence supports it."""

    best: str | None  # None: no clear winner (within noise), or nothing to compare
    leader: str | None  # the best by center, clear or not
    runner_up: str | None
    margin: Ratio | None  # leader over runner-up, oriented so > 1 means the leader is better

    def describe(self) -> str:
        if self.leader is None:
            return "nothing to compare"
        if self.margin is None:
            return f"{self.leader} (nothing to compare it with)"
        if self.best is not None:
            return f"{self.best} ({self.margin.describe()} better than {self.runner_up})"
        if self.margin.method.startswith("exact"):
            return f"no difference ({self.leader} and {self.runner_up} are equal)"
        why = (
            self.margin.why
            if not self.margin.has_interval
            else f"{self.margin.describe()} over {self.runner_up}"
        )
        return f"no clear winner (within noise: {self.leader} leads, {why})"


def winner(
    runs: Mapping[str, Sequence[float]], higher_is_better: bool, deterministic: bool = False
) -> Winner:
    """The alternative whose interval against the runner-up clears 1; else none.

    ``runs`` maps each alternative to its process-run values. A leader by center whose
    ratio to the runner-up has no interval (too few runs) or an interval containing 1 is
    reported as within noise; a tie between deterministic figures names no winner.
    """
    scored = {k: center(v) for k, v in runs.items() if not math.isnan(center(v))}
    if len(scored) < 2:
        return Winner(None, next(iter(scored), None), None, None)
    order = sorted(scored, key=scored.get, reverse=higher_is_better)
    leader, second = order[0], order[1]
    # Oriented so that > 1 means the leader is better.
    num, den = (leader, second) if higher_is_better else (second, leader)
    r = ratio(runs[num], runs[den], deterministic=deterministic)
    return Winner(leader if r.has_interval and r.low > 1 else None, leader, second, r)


def finite(values: Sequence[float]) -> np.ndarray:
    """The finite values, as an array (a failed run's NaN is not a figure)."""
    x = np.asarray(values, dtype=float)
    return x[np.isfinite(x)]
