"""Summaries of raw samples. One place computes them, so every table agrees."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Median, mean, spread and tails of one series of samples (warm-up already removed).

    Percentiles use linear interpolation; ``cv`` is the sample standard deviation over the
    mean (ddof=1), absent (NaN) below two samples rather than a misleading zero.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("no samples to summarize")
    p10, p25, p50, p75, p90, p99 = np.percentile(x, [10, 25, 50, 75, 90, 99])
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else math.nan
    return {
        "n": float(x.size),
        "median": float(p50),
        "mean": mean,
        "min": float(x.min()),
        "p10": float(p10),
        "p90": float(p90),
        "p99": float(p99),
        "iqr": float(p75 - p25),
        "std": std,
        "cv": std / mean if mean and not math.isnan(std) else math.nan,
    }
