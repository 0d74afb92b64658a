"""Two levels of noise, and what one invocation's figure is worth across invocations.

Process runs inside one ``bench run`` share that invocation's drift (the machine's state
over its minutes: other load, heat, memory layout); whole invocations move against each
other by more than their process runs spread. So across invocations the invocation is the
unit: its figure is its *run center* (the mean of its process runs' log values, i.e. their
geometric mean, on the log scale; their mean on the linear scale), and what a comparison of
separate invocations needs is the variance of a run center, ``tau^2``.

In a two-level model a run center of ``m`` process runs has variance
``tau^2(m) = sigma_b^2 + sigma_w^2 / m`` (between-invocation plus within-invocation over
``m``). ``tau^2`` is estimated from what is known, each estimate a ``Spread`` with its
degrees of freedom and the ``m`` it was made at:

- the sides themselves, when a side has two runs or more (its run centers' sample variance);
- a history of the same case, metric and environment (``bench calibrate``'s A/A runs, or the
  nightly runs): the run centers' variance within the history's segments between change
  points.

Estimates are pooled by their degrees of freedom, each first moved to the ``m`` of the runs
being compared with its own within-run variance. Without any estimate a comparison of one
run a side has no valid interval at all: it is INCONCLUSIVE, never decided on the process
runs as if they were independent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def run_center(values: Sequence[float], log: bool) -> float:
    """An invocation's figure on the comparison's scale: the mean of its process runs' log
    values (``log``), else of their values; NaN when it has none or (on the log scale) a
    value that is not positive."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0 or (log and (x <= 0).any()):
        return math.nan
    return float(np.log(x).mean() if log else x.mean())


def within_variance(runs: Sequence[Sequence[float]], log: bool) -> tuple[float, int]:
    """The pooled variance of one process run's value around its invocation's center, and
    its degrees of freedom (0 when no invocation has two process runs)."""
    ss, df = 0.0, 0
    for values in runs:
        x = np.asarray(values, dtype=float)
        x = x[np.isfinite(x)]
        if x.size < 2 or (log and (x <= 0).any()):
            continue
        y = np.log(x) if log else x
        ss += float(((y - y.mean()) ** 2).sum())
        df += y.size - 1
    return (ss / df if df else math.nan), df


@dataclass(frozen=True)
class Spread:
    """An estimate of ``tau^2``, the variance of one invocation's center, from one source."""

    var: float  # tau^2 at ``m`` process runs per invocation, on the comparison's scale
    df: float  # its degrees of freedom
    m: float  # process runs per invocation where it was measured
    within: float  # sigma_w^2 there (NaN if unknown): moves the estimate to another m
    source: str  # where it comes from, for the reader: "the sides", "history 'nightly'"

    def at(self, m: float) -> float:
        """``tau^2`` for invocations of ``m`` process runs: the between part unchanged, the
        within part divided by ``m`` instead (never below the within part alone)."""
        if not math.isfinite(self.within):
            return self.var
        return max(self.var + self.within * (1 / m - 1 / self.m), self.within / m)


def spread_of_groups(
    groups: Sequence[Sequence[Sequence[float]]], log: bool, source: str
) -> Spread | None:
    """``tau^2`` from groups of invocations that share their true level (the two sides of a
    comparison, or the segments of a history): the run centers' variance around their
    group's mean, pooled; ``df`` = invocations - groups. None when no group has two. With
    invocations of different numbers of process runs it is their average ``tau^2``, said to
    be at their median ``m``."""
    ss, df, ms, all_runs = 0.0, 0, [], []
    for runs in groups:
        centers = np.array([run_center(r, log) for r in runs])
        keep = [r for r, c in zip(runs, centers, strict=True) if math.isfinite(c)]
        centers = centers[np.isfinite(centers)]
        all_runs += keep
        ms += [sum(math.isfinite(v) for v in r) for r in keep]
        if centers.size >= 2:
            ss += float(((centers - centers.mean()) ** 2).sum())
            df += centers.size - 1
    if df == 0:
        return None
    within, _ = within_variance(all_runs, log)
    return Spread(ss / df, df, float(np.median(ms)), within, source)


@dataclass(frozen=True)
class Pooled:
    """``tau^2`` pooled over every source that knows it, at ``m`` process runs per
    invocation, with the within-run variance that moves it to another ``m``."""

    var: float
    df: float
    sources: tuple[Spread, ...]
    m: float = math.nan
    within: float = math.nan

    def at(self, m: float) -> float:
        """``tau^2`` for an invocation of ``m`` process runs."""
        return Spread(self.var, self.df, self.m, self.within, "").at(m)

    def describe(self, log: bool) -> str:
        """'run sd 4.1% (the sides 2 df, history 'calibration' 7 df)': the spread of one
        invocation's center and where it was learnt."""
        sd = math.sqrt(self.var)
        shown = f"{100 * math.expm1(sd):.2g}%" if log else f"{sd:.3g}"
        parts = ", ".join(f"{s.source} {s.df:g} df" for s in self.sources)
        return f"run sd {shown} ({parts})"


def pool(spreads: Sequence[Spread | None], m: float) -> Pooled | None:
    """The df-weighted mean of the estimates, each moved to ``m`` process runs per
    invocation; their within-run variances pooled the same way (where known)."""
    have = [s for s in spreads if s is not None and s.df > 0 and math.isfinite(s.var)]
    if not have:
        return None
    df = sum(s.df for s in have)
    known = [s for s in have if math.isfinite(s.within)]
    within = sum(s.df * s.within for s in known) / sum(s.df for s in known) if known else math.nan
    return Pooled(sum(s.df * s.at(m) for s in have) / df, df, tuple(have), m, within)
