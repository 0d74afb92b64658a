"""Verdicts: did a candidate change a metric beyond its tolerance? REGRESSION, IMPROVED,
OK or INCONCLUSIVE. One rule for ``bench compare``, ``bench ab``, the pytest gates and the
nightly history; what differs between them is only the unit of evidence:

- ``between_runs``: separate invocations (``bench compare``, a saved pytest baseline). The
  invocation is the unit; its error comes from the two-level model of ``levels``;
- ``paired``: the ABBA blocks of adjacent A/B process pairs of one ``bench ab`` job, whose
  log ratios cancel any drift slower than a pair;
- the nights of a history's segments (``changepoints``), which build their own ``Change``.

``decide`` turns the estimates of one comparison into verdicts with one interval per row:
the interval at the level the verdict is taken at (Bonferroni over the comparison's tests at
a family-wise ``ALPHA``; a detector's scanned positions count as tests), so the reader sees
the very interval that decided:

- REGRESSION / IMPROVED (rule ``significant``, the default): the interval excludes "no
  change" on that side *and* the estimate lies beyond the tolerance; (rule ``beyond``,
  ``--beyond-tolerance``): the whole interval lies beyond the tolerance;
- OK: the whole interval lies inside the tolerance;
- INCONCLUSIVE: anything else, with roughly how many more units per side would decide.
Deterministic figures whose units agree on each side are compared exactly. Near-deterministic
figures (instruction counts: ``metric_info.RESOLUTION``) whose units agree within their
resolution on each side are compared within a bound of that resolution, at one run a side:
they do not drift between runs. Where a side has several runs their spread is checked
against the resolution; at one run a side the bound rests on the measured jitter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

import numpy as np

from bench.analysis.levels import Spread, pool, run_center, spread_of_groups
from bench.analysis.stats import MIN_RUNS, finite
from bench.results.metric_info import Tolerance

ALPHA = 0.01  # family-wise chance of any false verdict in one comparison
SIGNIFICANT = "significant"
BEYOND = "beyond"
RULES = {
    SIGNIFICANT: "REGRESSION/IMPROVED: the interval excludes no change on that side and the "
    "estimate lies beyond the tolerance",
    BEYOND: "REGRESSION/IMPROVED: the whole interval lies beyond the tolerance",
}
RUNS_METHOD = "t_on_run_centers_two_level"
BOUND_METHOD = "within_resolution_bound"
PAIRED_METHOD = "paired_t_on_abba_blocks_of_log_ratios"
MAX_MORE = 1000  # more units than this: said as "over 1000"
NO_DRIFT_ESTIMATE = (
    "one run a side and no estimate of how this case drifts between runs "
    "(bench calibrate SUITE, more runs a side, or bench ab)"
)


class Verdict(StrEnum):
    REGRESSION = "REGRESSION"
    IMPROVED = "IMPROVED"
    OK = "OK"
    INCONCLUSIVE = "INCONCLUSIVE"


@dataclass(frozen=True)
class Change:
    """A candidate against its base on one metric: the estimate, its error, and (after
    ``decide``) the interval, p and verdict.

    The estimate is candidate minus base on ``scale``: of mean log values ("log", for a
    relative tolerance: shown as a ratio) or of mean values ("linear", for an absolute
    tolerance). ``base`` and ``cand`` are the two sides' centers in the metric's unit, so
    that ``cand / base`` (or ``cand - base``) is the estimate a reader sees."""

    metric: str
    higher_is_better: bool
    tolerance: Tolerance
    n_base: int  # units on each side (``unit``)
    n_cand: int
    base: float
    cand: float
    scale: str  # "log" or "linear"
    evidence: str = "run"  # what one unit of evidence is: "run", "pair", "night"
    estimate: float = math.nan
    se: float = math.nan  # standard error of the estimate (0: exact or bounded)
    df: float = math.nan  # degrees of freedom of the t distribution it follows
    looks: int = 1  # places a detector could have picked this change: its tests in the family
    basis: str = ""  # how the error was estimated, in words
    method: str = RUNS_METHOD
    # set by ``decide``:
    level: float = math.nan  # two-sided error rate of the interval and the test
    low: float = math.nan
    high: float = math.nan
    p: float = math.nan  # two-sided p of "no change" (not scaled for the family)
    verdict: Verdict = Verdict.INCONCLUSIVE
    why: str = ""
    more: int | None = None  # units per side likely to decide an INCONCLUSIVE
    bound: float = 0.0  # with se 0: the estimate is certain to within ± this (resolution)

    @property
    def exact(self) -> bool:
        return self.se == 0 and self.bound == 0

    @property
    def certain(self) -> bool:
        """Decided without sampling error: exact, or within a resolution's bound."""
        return self.se == 0

    @property
    def tested(self) -> bool:
        return math.isfinite(self.se) and self.se > 0 and math.isfinite(self.df)

    @property
    def band(self) -> float:
        """The tolerance on this change's scale."""
        t = self.tolerance
        return math.log1p(t.value) if t.kind == "relative" else t.value

    @property
    def confidence(self) -> float:
        return 1 - self.level

    def describe(self, digits: int = 3) -> str:
        """'1.12× [1.05, 1.19]' (log scale) or '+0.0031 [-0.0012, +0.0074]' (linear)."""
        if math.isnan(self.estimate):
            return "n/a"
        log = self.scale == "log"
        if self.certain and not self.exact:
            digits += 1  # a bound of 0.1% needs a digit more to be seen

        def f(x: float, alt: str = "") -> str:
            if not log:
                return f"{x:+.{digits}g}"
            # ``alt`` ('#') keeps trailing zeros: a bound just above 1 reads 1.00, not 1
            return f"{math.exp(x):{alt}.{digits}g}".rstrip(".")

        # a bounded ratio keeps its digits: 1.000× [0.9990, 1.001], not 1× [...]
        point = f(self.estimate, "#" if self.certain and not self.exact else "") + (
            "×" if log else ""
        )
        if self.exact:
            return f"{point} (exact)"
        if self.certain:
            lo, hi = f(self.estimate - self.bound, "#"), f(self.estimate + self.bound, "#")
            return f"{point} [{lo}, {hi}] (bound)"
        if math.isnan(self.low):
            return point
        return f"{point} [{f(self.low, '#')}, {f(self.high, '#')}]"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["tolerance"] = self.tolerance.to_json()
        d["verdict"] = str(self.verdict)
        d["change"] = self.describe()
        d["confidence"] = None if math.isnan(self.level) else self.confidence
        d["method"] = "exact" if self.exact else BOUND_METHOD if self.certain else self.method
        return d


def confidence_text(level: float) -> str:
    """'99.83%': the confidence of an interval at two-sided error ``level``, with two
    significant digits of what it leaves out ('99%', '99.83%', '99.99%')."""
    err = 100 * level
    digits = max(0, 1 - math.floor(math.log10(err))) if err > 0 else 0
    return f"{100 - err:.{digits}f}".rstrip("0").rstrip(".") + "%"


def _scale(tolerance: Tolerance) -> str:
    return "linear" if tolerance.kind == "absolute" else "log"


def _exact_or_none(
    out: Change, base: np.ndarray, cand: np.ndarray, deterministic: bool
) -> Change | None:
    """The exact change of a deterministic figure whose units agree on each side."""
    if not (deterministic and base.size and cand.size and np.ptp(base) == 0 and np.ptp(cand) == 0):
        return None
    b, c = float(base[0]), float(cand[0])
    if out.scale == "log":
        if b <= 0 or c <= 0:  # sizes of zero (no optimizer state) compare by difference
            est = 0.0 if b == c else math.copysign(math.inf, c - b)
        else:
            est = math.log(c) - math.log(b)
    else:
        est = c - b
    return replace(out, base=b, cand=c, estimate=est, se=0.0, df=math.inf, method="exact")


def _bounded_or_none(
    out: Change, base: np.ndarray, cand: np.ndarray, resolution: float
) -> Change | None:
    """The change of a near-deterministic figure (its relative ``resolution`` > 0) whose
    units agree within that resolution on each side: the ratio of the sides' geometric
    means, certain to within ± the resolution. None when a side spreads wider: the figure
    is not behaving deterministically here, and is judged as a noisy one."""
    if not (resolution > 0 and out.scale == "log" and base.size and cand.size):
        return None
    if (base <= 0).any() or (cand <= 0).any():
        return None
    lb, lc = np.log(base), np.log(cand)
    spread = max(float(np.ptp(lb)), float(np.ptp(lc)))
    if spread > math.log1p(resolution):
        return None
    est = float(lc.mean() - lb.mean())
    agree = (
        "once a side"
        if base.size == cand.size == 1
        else f"each side's values within {100 * math.expm1(spread):.2g}%"
    )
    basis = f"counted ({agree}): certain to ±{100 * resolution:g}%, the counter's resolution"
    return replace(out, base=math.exp(lb.mean()), cand=math.exp(lc.mean()), estimate=est,
                   se=0.0, df=math.inf, bound=math.log1p(resolution), basis=basis,
                   method=BOUND_METHOD)  # fmt: skip


def _spread_note(out: Change, base: np.ndarray, cand: np.ndarray, resolution: float) -> str:
    """Why a near-deterministic figure is judged as a noisy one."""
    if out.scale != "log":
        return "counts gated by an absolute tolerance: judged as a noisy figure"
    if (base <= 0).any() or (cand <= 0).any():
        return "a count of zero or less: judged as a noisy figure"
    worst = max(float(np.ptp(np.log(base))), float(np.ptp(np.log(cand))))
    return (
        f"counts vary by {100 * math.expm1(worst):.3g}% within a side, beyond the "
        f"{100 * resolution:g}% they are judged exactly at: judged as a noisy figure"
    )


def between_runs(
    base: Sequence[Sequence[float]],
    cand: Sequence[Sequence[float]],
    metric: str,
    higher_is_better: bool,
    tolerance: Tolerance,
    deterministic: bool = False,
    known: Sequence[Spread] = (),
    resolution: float = 0.0,
) -> Change:
    """``cand`` against ``base``, each a list of invocations (each the values of its process
    runs): the difference of the sides' mean run centers, its error from the two-level model
    (the sides' own run-to-run spread where a side has two runs or more, pooled with the
    ``known`` estimates for this case, metric and environment)."""
    scale = _scale(tolerance)
    log = scale == "log"
    flat_b = finite([v for r in base for v in r])
    flat_c = finite([v for r in cand for v in r])
    out = Change(metric, higher_is_better, tolerance, len(base), len(cand), math.nan,
                 math.nan, scale)  # fmt: skip
    exact = _exact_or_none(out, flat_b, flat_c, deterministic)
    if exact is not None:
        return exact
    bounded = _bounded_or_none(out, flat_b, flat_c, resolution)
    if bounded is not None:
        return bounded
    if resolution > 0 and flat_b.size and flat_c.size:
        out = replace(out, why=_spread_note(out, flat_b, flat_c, resolution))
    yb = np.array([run_center(r, log) for r in base])
    yc = np.array([run_center(r, log) for r in cand])
    kb, kc = int(np.isfinite(yb).sum()), int(np.isfinite(yc).sum())
    out = replace(out, n_base=kb, n_cand=kc)
    if kb == 0 or kc == 0:
        why = "no runs on one side"
        if (flat_b.size and not np.isfinite(yb).any()) or (
            flat_c.size and not np.isfinite(yc).any()
        ):
            why = "a value is zero or negative: no ratio on the log scale"
        return replace(out, why=why)
    yb, yc = yb[np.isfinite(yb)], yc[np.isfinite(yc)]
    centre = (lambda y: math.exp(y.mean())) if log else (lambda y: float(y.mean()))
    out = replace(out, base=centre(yb), cand=centre(yc), estimate=float(yc.mean() - yb.mean()))
    own = spread_of_groups([base, cand], log, "the sides")
    mb = [sum(math.isfinite(v) for v in r) for r in base if math.isfinite(run_center(r, log))]
    mc = [sum(math.isfinite(v) for v in r) for r in cand if math.isfinite(run_center(r, log))]
    pooled = pool([own, *known], float(np.median(mb + mc)))
    if pooled is None:
        return replace(out, why=out.why or NO_DRIFT_ESTIMATE)
    # each invocation's center at its own number of process runs: a side whose invocations
    # have fewer process runs has the noisier centers
    var = sum(pooled.at(m) for m in mb) / kb**2 + sum(pooled.at(m) for m in mc) / kc**2
    return _with_error(out, math.sqrt(var), pooled.df, pooled.describe(log))


def _with_error(out: Change, se: float, df: float, basis: str) -> Change:
    if se == 0:  # every unit agrees: nothing varies, the difference is exact
        return replace(out, se=0.0, df=math.inf, basis=basis, method="exact")
    return replace(out, se=se, df=df, basis=basis)


def paired(
    base: Sequence[float],
    cand: Sequence[float],
    metric: str,
    higher_is_better: bool,
    tolerance: Tolerance,
    deterministic: bool = False,
    blocks: Sequence[int] | None = None,
) -> Change:
    """``cand[i]`` against ``base[i]``, adjacent process runs of one A/B job, pair ``i`` in
    ABBA block ``blocks[i]``: a t interval on the mean over blocks of their pairs' mean log
    ratio (difference on the linear scale), blocks - 1 df. Drift slower than a pair is in
    both members and cancels; the block, not the pair, is the unit, because the two pairs of
    one block share its minutes (their ratios correlate) and its A B B A order cancels a
    drift that is linear across it. Without ``blocks`` each pair is its own block."""
    scale = _scale(tolerance)
    b, c = np.asarray(base, dtype=float), np.asarray(cand, dtype=float)
    k = np.arange(b.size) if blocks is None else np.asarray(blocks)
    keep = np.isfinite(b) & np.isfinite(c)
    b, c, k = b[keep], c[keep], k[keep]
    n = int(b.size)
    out = Change(metric, higher_is_better, tolerance, n, n, math.nan, math.nan, scale, "pair",
                 method=PAIRED_METHOD)  # fmt: skip
    exact = _exact_or_none(out, b, c, deterministic)
    if exact is not None:
        return replace(exact, evidence="pair")
    log = scale == "log"
    if log and ((b <= 0).any() or (c <= 0).any()):
        return replace(out, why="a value is zero or negative: no ratio on the log scale")
    if n == 0:
        return replace(out, why="no pairs")
    yb, yc = (np.log(b), np.log(c)) if log else (b, c)
    ids = np.unique(k)
    mb = np.array([yb[k == i].mean() for i in ids])  # each block's mean, per side
    mc = np.array([yc[k == i].mean() for i in ids])
    d = mc - mb
    centre = (lambda y: math.exp(y.mean())) if log else (lambda y: float(y.mean()))
    out = replace(out, base=centre(mb), cand=centre(mc), estimate=float(d.mean()))
    if ids.size < MIN_RUNS:
        return replace(out, why=f"{ids.size} block{'s' if ids.size != 1 else ''}; an interval "
                       f"needs {MIN_RUNS}")  # fmt: skip
    se = float(d.std(ddof=1) / math.sqrt(ids.size))
    what = f"{n} adjacent A/B pairs in {ids.size} blocks" if blocks is not None else f"{n} pairs"
    return _with_error(out, se, ids.size - 1, what)


def decide(
    changes: Sequence[Change], alpha: float = ALPHA, rule: str = SIGNIFICANT
) -> list[Change]:
    """Verdicts for one comparison. Each tested change gets the interval at
    ``alpha / (tests x its looks)``: Bonferroni, so that the chance of any false verdict in
    the comparison stays below ``alpha`` whatever the tests' dependence, and the interval
    shown is the one that decided."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}")
    tests = sum(1 for ch in changes if ch.tested)
    return [_verdict(ch, alpha / max(1, tests) / ch.looks, rule) for ch in changes]


def _verdict(ch: Change, level: float, rule: str) -> Change:
    from scipy import stats

    worse_sign = -1.0 if ch.higher_is_better else 1.0  # > 0 after multiplying: the bad side
    band = ch.band
    if math.isnan(ch.estimate):
        return replace(ch, verdict=Verdict.INCONCLUSIVE)
    if ch.certain and not ch.exact:  # bounded: the bound is the interval, and certain
        low, high = ch.estimate - ch.bound, ch.estimate + ch.bound
        out = replace(ch, low=low, high=high, level=0.0, p=1.0 if low <= 0 <= high else 0.0)
        verdict = _by_interval(out, rule)
        why = ""
        if verdict == Verdict.INCONCLUSIVE:  # the bound does not shrink with more runs
            why = (f"within the counter's ±{100 * math.expm1(ch.bound):.2g}% of the tolerance's "
                   "edge: more runs do not decide it")  # fmt: skip
        return replace(out, verdict=verdict, more=None, why=why)
    if ch.exact:
        worse = worse_sign * ch.estimate
        slack = 1e-12 * max(1.0, abs(ch.estimate)) if math.isfinite(ch.estimate) else 0.0
        p = 1.0 if ch.estimate == 0 else 0.0  # an exact difference is certain, no change too
        out = replace(ch, low=ch.estimate, high=ch.estimate, p=p, level=0.0)
        if abs(worse) <= band + slack:
            return replace(out, verdict=Verdict.OK)
        return replace(out, verdict=Verdict.REGRESSION if worse > 0 else Verdict.IMPROVED)
    if not ch.tested:
        return replace(ch, verdict=Verdict.INCONCLUSIVE, more=None)
    half = float(stats.t.ppf(1 - level / 2, ch.df)) * ch.se
    low, high = ch.estimate - half, ch.estimate + half
    p = float(2 * stats.t.sf(abs(ch.estimate) / ch.se, ch.df))
    out = replace(ch, level=level, low=low, high=high, p=p)
    verdict = _by_interval(out, rule)
    more = _more(out, band, rule) if verdict == Verdict.INCONCLUSIVE else None
    return replace(out, verdict=verdict, more=more)


def _by_interval(ch: Change, rule: str) -> Verdict:
    """The verdict of a change's interval [low, high] and estimate under ``rule``."""
    band = ch.band
    worse_sign = -1.0 if ch.higher_is_better else 1.0
    # the interval and estimate oriented so that larger is worse
    w_est = worse_sign * ch.estimate
    w_low, w_high = sorted((worse_sign * ch.low, worse_sign * ch.high))
    if rule == SIGNIFICANT:
        worse, better = w_low > 0 and w_est > band, w_high < 0 and w_est < -band
    else:
        worse, better = w_low > band, w_high < -band
    if worse or better:
        return Verdict.REGRESSION if worse else Verdict.IMPROVED
    if -band <= ch.low and ch.high <= band:
        return Verdict.OK
    return Verdict.INCONCLUSIVE


def _more(ch: Change, band: float, rule: str) -> int | None:
    """Units per side to add so that, if the estimate and spread held, the interval at this
    level would decide: inside the tolerance (estimate inside it), or clear of no change
    (``beyond``: clear of the tolerance) on the estimate's side. The standard error shrinks
    as 1/sqrt(n); None when no number of units would decide (the estimate sits on the
    tolerance)."""
    from scipy import stats

    if not ch.level > 0:
        return None
    est = abs(ch.estimate)
    if est <= band:
        distance = band - est  # to show that it fits
    elif rule == BEYOND:
        distance = est - band  # to clear the tolerance
    else:
        distance = est  # to clear no change
    if distance <= 0:
        return None
    z = float(stats.norm.ppf(1 - ch.level / 2))
    n = min(ch.n_base, ch.n_cand)
    need = math.ceil(n * (z * ch.se / distance) ** 2)
    return max(1, need - n)


__all__ = [
    "ALPHA",
    "BEYOND",
    "RULES",
    "SIGNIFICANT",
    "Change",
    "Verdict",
    "between_runs",
    "decide",
    "paired",
]
