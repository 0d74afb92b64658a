"""Summaries of raw samples. One place computes them, so every table agrees."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def median_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval of the median from order statistics: the widest-inward
    pair (x_(j), x_(n+1-j)) of the sorted samples whose coverage, 1 - 2 P(B <= j - 1) for
    B ~ Binomial(n, 1/2), is still at least ``confidence`` (exact for any continuous
    distribution; no resampling, no scipy in the case process).

    NaN bounds where no pair reaches that coverage (fewer than 6 samples at 95%: min and
    max cover only 94% at 5), rather than a narrower interval than it claims."""
    x = np.sort(np.asarray(values, dtype=float))
    n = x.size
    log_half_n = n * math.log(0.5)
    j, below = 0, 0.0  # below: P(B <= j - 1), the chance the median lies left of x_(j)
    while j < n // 2:
        # P(B = j) in logs: 2**n overflows a float from n = 1024 on
        p = math.exp(math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) + log_half_n)
        if 1 - 2 * (below + p) < confidence:
            break
        j, below = j + 1, below + p
    if j == 0:
        return math.nan, math.nan
    return float(x[j - 1]), float(x[n - j])


def describe_series(values: Sequence[float]) -> dict[str, float]:
    """Median (with its 95% order-statistic interval), mean, spread and tails of one series of
    samples, warm-up already removed.

    Percentiles use linear interpolation; ``cv`` is the sample standard deviation over the
    mean (ddof=1), absent (NaN) below two samples rather than a misleading zero.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("no samples to describe_series")
    p10, p25, p50, p75, p90, p99 = np.percentile(x, [10, 25, 50, 75, 90, 99])
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else math.nan
    lo, hi = median_ci(x)
    return {
        "n": float(x.size),
        "median": float(p50),
        "median_ci_low": lo,
        "median_ci_high": hi,
        "mean": mean,
        "min": float(x.min()),
        "p10": float(p10),
        "p90": float(p90),
        "p99": float(p99),
        "iqr": float(p75 - p25),
        "std": std,
        "cv": std / mean if mean and not math.isnan(std) else math.nan,
    }
