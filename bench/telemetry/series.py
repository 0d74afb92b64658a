"""Summaries of raw samples. One place computes them, so every table agrees."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def median_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Percentile-bootstrap interval of the median (scipy, seeded so reruns agree).

    NaN bounds below three samples, where a bootstrap says nothing."""
    from scipy.stats import bootstrap

    x = np.asarray(values, dtype=float)
    if x.size < 3 or np.all(x == x[0]):
        return (math.nan, math.nan) if x.size < 3 else (float(x[0]), float(x[0]))
    res = bootstrap(
        (x,),
        np.median,
        confidence_level=confidence,
        n_resamples=2000,
        method="percentile",
        rng=np.random.default_rng(0),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def describe_series(values: Sequence[float]) -> dict[str, float]:
    """Median (with its 95% bootstrap interval), mean, spread and tails of one series of
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
