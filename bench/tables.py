"""Tables from the long results frame (bench.load_results): what a report shows and what a
notebook user gets back, as DataFrames."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from bench.suite import BASELINE

# Headline metrics and whether more is better; used for ratios and "what won".
DIRECTION = {
    "latency_median": False,
    "ttft_median": False,
    "decode_step_median": False,
    "throughput_tokens": True,
    "throughput_samples": True,
    "decode_throughput_tokens": True,
    "heldout_bits_per_byte": False,
    "kl_to_baseline": False,
    "top1_agreement": True,
    "state_dict_bytes": False,
    "params_total": False,
    "params_nonzero_fraction": False,
    "bandwidth_utilization": True,
    "energy_per_token": False,
    "memory_prefill_peak_rss": False,
}


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df.status == "ok") & df.metric.notna()]


def case_table(df: pd.DataFrame, metrics: list[str] | None = None) -> pd.DataFrame:
    """Cases x metrics, the median over process repeats; columns say their unit."""
    rows = ok_rows(df)
    if metrics is not None:
        rows = rows[rows.metric.isin(metrics)]
    units = rows.groupby("metric").unit.first()
    table = rows.pivot_table(index="case_id", columns="metric", values="value", aggfunc="median")
    table.columns = [f"{m} [{units[m]}]" for m in table.columns]
    order = list(dict.fromkeys(df.case_id))
    return table.reindex([c for c in order if c in table.index])


def baseline_of(df: pd.DataFrame) -> dict[str, str]:
    """case_id -> the case_id of its group's baseline (same model and workload)."""
    cases = df.drop_duplicates("case_id")
    base = cases[cases.techniques == BASELINE].set_index(["model", "workload"]).case_id
    out = {}
    for row in cases.itertuples():
        key = (row.model, row.workload)
        if key in base.index:
            out[row.case_id] = base[key]
    return out


def _ratio_ci(case: np.ndarray, base: np.ndarray, rng: np.random.Generator, n: int = 2000):
    """95% percentile-bootstrap interval of median(case) / median(base) over repeats."""
    if len(case) < 2 or len(base) < 2:
        return math.nan, math.nan
    c = rng.choice(case, (n, len(case))).astype(float)
    b = rng.choice(base, (n, len(base))).astype(float)
    ratios = np.median(c, axis=1) / np.median(b, axis=1)
    return float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def ratio_table(df: pd.DataFrame, metrics: list[str] | None = None) -> pd.DataFrame:
    """Each case's metric over its baseline's (same model and workload): the ratio of
    medians over process repeats, with a 95% bootstrap interval when both sides have at
    least two repeats (NaN otherwise: one repeat gives no interval)."""
    rows = ok_rows(df)
    metrics = metrics or [m for m in DIRECTION if m in set(rows.metric)]
    base = baseline_of(df)
    rng = np.random.default_rng(0)
    values = rows.groupby(["case_id", "metric"]).value.apply(lambda s: s.to_numpy())
    out: list[dict[str, Any]] = []
    for case_id in dict.fromkeys(rows.case_id):
        b = base.get(case_id)
        for metric in metrics:
            if b is None or (case_id, metric) not in values or (b, metric) not in values:
                continue
            c, bv = values[(case_id, metric)], values[(b, metric)]
            med_b = float(np.median(bv))
            ratio = float(np.median(c)) / med_b if med_b else math.nan
            lo, hi = _ratio_ci(c, bv, rng) if med_b else (math.nan, math.nan)
            out.append(
                {
                    "case_id": case_id,
                    "baseline": b,
                    "metric": metric,
                    "ratio": ratio,
                    "ci_low": lo,
                    "ci_high": hi,
                    "repeats": len(c),
                }
            )
    return pd.DataFrame(
        out, columns=["case_id", "baseline", "metric", "ratio", "ci_low", "ci_high", "repeats"]
    )


def problems_table(df: pd.DataFrame) -> pd.DataFrame:
    """Every case repeat that did not end ok, with its status and reason."""
    bad = df[df.status != "ok"].drop_duplicates(["case_id", "repeat"])
    return bad[["case_id", "repeat", "status", "error"]].reset_index(drop=True)


def parameter(df: pd.DataFrame, technique: str, key: str) -> pd.Series:
    """case_id -> the value of ``key`` in the first ``technique`` step (e.g. prune amount);
    NaN for cases without that technique, 0 for the baseline."""
    out = {}
    for row in df.drop_duplicates("case_id").itertuples():
        names = row.techniques.split("+")
        params = json.loads(row.parameters)["techniques"]
        if row.techniques == BASELINE:
            out[row.case_id] = 0.0
            continue
        for name, p in zip(names, params, strict=False):
            if name.startswith(technique) and key in p:
                out[row.case_id] = p[key]
                break
    return pd.Series(out, dtype=float)
