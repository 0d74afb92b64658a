"""Statistics across process-level runs: the one place that turns repeats into figures,
intervals and winners. Tables, plots, reports, the console summary (and compare and the
nightly history) all call it.

The unit of evidence is one process-level run: each repeat of a case is a fresh process
whose figure (e.g. the median of its timed calls) is one observation. Samples inside a
process share the machine state of that process and never stand in for runs.

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
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

import numpy as np

from bench.results.metric_info import Tolerance

MIN_RUNS = 3  # fewer process runs on either side: no interval
CONFIDENCE = 0.95
# A run is flagged as outlying when its log value sits further from the median of the
# case's runs than both of: OUTLIER_Z modified z-scores (Iglewicz and Hoaglin's 3.5, on
# the log scale) and OUTLIER_MIN_REL relative distance (this VM's run-to-run noise).
OUTLIER_Z = 3.5
OUTLIER_MIN_REL = 0.20
RATIO_METHOD = "welch_t_on_log_runs"


def center(values: Sequence[float]) -> float:
    """The figure of a case over its process runs: their median."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    return float(np.median(x)) if x.size else math.nan


def center_interval(values: Sequence[float]) -> tuple[float, float] | None:
    """A 95% t interval of the runs' typical value: of their geometric mean when all are
    positive, else of their mean. None below MIN_RUNS runs, where no interval is valid."""
    x = _finite(values)
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
    c = _finite(case)
    b = _finite(base)
    nc, nb = len(c), len(b)
    if nc == 0 or nb == 0:
        return Ratio(math.nan, math.nan, math.nan, nc, nb, RATIO_METHOD, "no runs")
    if (c <= 0).any() or (b <= 0).any():
        why = "a value is zero or negative: no ratio on the log scale"
        return Ratio(math.nan, math.nan, math.nan, nc, nb, RATIO_METHOD, why)
    point = math.exp(np.log(c).mean() - np.log(b).mean())
    if deterministic and np.ptp(c) == 0 and np.ptp(b) == 0:
        return Ratio(point, point, point, nc, nb, "exact (deterministic figure)")
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


def _finite(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    return x[np.isfinite(x)]


# --- verdicts: did a candidate change a metric beyond its tolerance? -----------------

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
    b, c = _finite(base), _finite(cand)
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
