"""Tables from the long results frame (bench.load_results): what a report shows and what a
notebook user gets back, as DataFrames.

Every figure is per run: a frame that holds several runs keeps them apart (the run id is
part of each row's key) unless ``pool=True`` asks to pool them, and then the rows say which
runs they hold. Figures over process repeats come from ``bench.analysis.stats``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from bench.analysis import stats
from bench.results.metric_info import (
    DETERMINISTIC,
    DIFFERENCE_ONLY,
    HIGHER_IS_BETTER,
    MODELLED_NOTE,
    RELATIVE_TO_BASELINE,
    is_modelled,
)

RATIO_COLUMNS = [
    "run_id", "case_id", "baseline", "metric", "ratio", "ci_low", "ci_high", "n_case",
    "n_base", "method", "note",
]  # fmt: skip


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df.status == "ok") & df.metric.notna()]


def scoped(df: pd.DataFrame, pool: bool = False) -> pd.DataFrame:
    """``df`` with ``run_id`` as the unit figures are computed in: each run on its own,
    or, with ``pool``, one pseudo-run named after every run it pools."""
    if not pool or df.run_id.nunique() < 2:
        return df
    runs = sorted(df.run_id.dropna().unique())
    return df.assign(run_id="pooled: " + ", ".join(runs))


def run_values(df: pd.DataFrame) -> pd.Series:
    """(run_id, case_id, metric) -> the array of per-process values (one per repeat)."""
    rows = ok_rows(df)
    return rows.groupby(["run_id", "case_id", "metric"], sort=False).value.apply(
        lambda s: s.to_numpy(dtype=float)
    )


def _index(df: pd.DataFrame) -> list[str]:
    return ["case_id"] if df.run_id.nunique() <= 1 else ["run_id", "case_id"]


def case_table(
    df: pd.DataFrame, metrics: list[str] | None = None, pool: bool = False
) -> pd.DataFrame:
    """Cases x metrics, each the geometric mean over process repeats; columns say their unit.
    Indexed by case id for one run, by (run id, case id) for several."""
    df = scoped(df, pool)
    rows = ok_rows(df)
    if metrics is not None:
        rows = rows[rows.metric.isin(metrics)]
    units = rows.groupby("metric").unit.first()
    index = _index(df)
    table = rows.pivot_table(index=index, columns="metric", values="value", aggfunc=stats.center)
    table.columns = [f"{m} [{units[m]}]" for m in table.columns]
    order = list(dict.fromkeys(zip(*(df[k] for k in index), strict=True)))
    keys = [k[0] if len(index) == 1 else k for k in order]
    return table.reindex([k for k in keys if k in table.index])


def baseline_of(df: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(run_id, case_id) -> the case id of its baseline: the baseline case of the same
    run, model and workload."""
    cases = df.drop_duplicates(["run_id", "case_id"])
    base = cases[cases.is_baseline].set_index(["run_id", "model", "workload"]).case_id
    base = base[~base.index.duplicated()]  # one baseline a group (an edited file may add one)
    out = {}
    for row in cases.itertuples():
        key = (row.run_id, row.model, row.workload)
        if key in base.index:
            out[(row.run_id, row.case_id)] = base[key]
    return out


def ratio_table(
    df: pd.DataFrame, metrics: list[str] | None = None, pool: bool = False
) -> pd.DataFrame:
    """Each case's metric over its baseline's (same run, model and workload), over process
    repeats: the ratio with its 95% interval from ``stats.ratio`` (NaN bounds, and the
    reason in ``note``, where no valid interval exists). Modelled energy gets no ratio:
    it is time in disguise."""
    df = scoped(df, pool)
    rows = ok_rows(df)
    present = set(rows.metric)
    metrics = metrics or [
        m
        for m in HIGHER_IS_BETTER
        if m in present and m not in RELATIVE_TO_BASELINE | DIFFERENCE_ONLY
    ]
    base = baseline_of(df)
    values = run_values(df)
    methods = rows.groupby(["run_id", "case_id", "metric"]).method.first()
    out: list[dict[str, Any]] = []
    for run_id, case_id in dict.fromkeys(zip(rows.run_id, rows.case_id, strict=True)):
        b = base.get((run_id, case_id))
        if b == case_id:
            continue  # the baseline against itself says nothing
        for metric in metrics:
            here, there = (run_id, case_id, metric), (run_id, b, metric)
            if b is None or here not in values or there not in values:
                continue
            row = {"run_id": run_id, "case_id": case_id, "baseline": b, "metric": metric}
            if is_modelled(methods.get(here)) or is_modelled(methods.get(there)):
                out.append({**row, "ratio": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                            "n_case": len(values[here]), "n_base": len(values[there]),
                            "method": "", "note": MODELLED_NOTE})  # fmt: skip
                continue
            r = stats.ratio(values[here], values[there], deterministic=metric in DETERMINISTIC)
            out.append(
                {
                    **row,
                    "ratio": r.value,
                    "ci_low": r.low,
                    "ci_high": r.high,
                    "n_case": r.n_case,
                    "n_base": r.n_base,
                    "method": r.method,
                    "note": r.why,
                }
            )
    return pd.DataFrame(out, columns=RATIO_COLUMNS)


def describe_ratio(row: Any) -> str:
    """A ratio table row as text: '0.82× [0.71, 0.95]', '1.1× (no interval: 2 runs)'."""
    if pd.isna(row.ratio):
        return f"n/a ({row.note})"
    r = stats.Ratio(row.ratio, row.ci_low, row.ci_high, row.n_case, row.n_base, row.method,
                    row.note)  # fmt: skip
    return r.describe()


def outlier_table(df: pd.DataFrame, metrics: list[str] | None = None) -> pd.DataFrame:
    """Process repeats whose figure sits far from the case's other repeats
    (``stats.outlying_runs``): kept in every figure, listed here for a reader."""
    rows = ok_rows(df)
    metrics = metrics or [m for m in HIGHER_IS_BETTER if m in set(rows.metric)]
    rows = rows[rows.metric.isin(metrics)]
    out = []
    for (run_id, case_id, metric), g in rows.groupby(["run_id", "case_id", "metric"], sort=False):
        values = g.value.to_numpy(dtype=float)
        mid = float(np.median(values))  # the outlier rule's own reference: robust to the outlier
        for i in stats.outlying_runs(values):
            out.append(
                {
                    "run_id": run_id,
                    "case_id": case_id,
                    "metric": metric,
                    "repeat": int(g.repeat.iloc[i]),
                    "value": values[i],
                    "vs_median": values[i] / mid,
                    "repeats": len(values),
                }
            )
    columns = ["run_id", "case_id", "metric", "repeat", "value", "vs_median", "repeats"]
    return pd.DataFrame(out, columns=columns)


def problems_table(df: pd.DataFrame) -> pd.DataFrame:
    """Every case repeat that did not end ok, with its status and reason."""
    bad = df[df.status != "ok"].drop_duplicates(["run_id", "case_id", "repeat"])
    return bad[["case_id", "repeat", "status", "error"]].reset_index(drop=True)


def parameter(df: pd.DataFrame, technique: str, key: str) -> pd.Series:
    """case_id -> the value of ``key`` in the first ``technique`` step (e.g. prune amount);
    NaN for cases without that technique, 0 for the baseline."""
    out = {}
    for row in df.drop_duplicates("case_id").itertuples():
        if row.is_baseline:
            out[row.case_id] = 0.0
            continue
        for name, p in _steps(row):
            if name == technique and key in p:
                out[row.case_id] = p[key]
                break
    return pd.Series(out, dtype=float)


def _steps(row: Any) -> list[tuple[str, dict[str, Any]]]:
    """(technique name, params) of each step of a frame row's case."""
    params = json.loads(row.parameters)
    return list(zip(params["technique_names"], params["techniques"], strict=True))


def series_label(df: pd.DataFrame, technique: str, param: str) -> pd.Series:
    """case_id -> the technique's parameters other than ``param``, as a line label: the
    cases of one curve differ only in ``param`` (e.g. a pruning curve per method, with
    '-csr' or '-shrink' variants and chains kept apart)."""
    out = {}
    for row in df.drop_duplicates("case_id").itertuples():
        if row.is_baseline:
            continue
        steps = _steps(row)
        if not any(name == technique and param in p for name, p in steps):
            continue
        parts = []
        for name, p in steps:
            rest = {k: v for k, v in p.items() if not (name == technique and k == param)}
            parts.append(name + "(" + ", ".join(f"{k}={v}" for k, v in sorted(rest.items())) + ")")
        out[row.case_id] = " + ".join(parts)
    return pd.Series(out, dtype=object)


def winners(df: pd.DataFrame, metric: str) -> dict[tuple[str, str, str], stats.Winner]:
    """(run, model, workload) -> the winner on ``metric`` among that group's cases, named only
    when its interval against the runner-up clears it (``stats.winner``)."""
    rows = ok_rows(df)
    rows = rows[rows.metric == metric]
    out = {}
    for key, g in rows.groupby(["run_id", "model", "workload"], sort=False):
        runs = {t: v.to_numpy(dtype=float) for t, v in g.groupby("techniques", sort=False).value}
        out[key] = stats.winner(runs, HIGHER_IS_BETTER[metric], metric in DETERMINISTIC)
    return out


__all__ = [
    "baseline_of",
    "case_table",
    "describe_ratio",
    "ok_rows",
    "outlier_table",
    "parameter",
    "problems_table",
    "ratio_table",
    "run_values",
    "scoped",
    "series_label",
    "winners",
]
