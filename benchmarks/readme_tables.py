"""The compression tables of docs/findings.md, from a run folder: each speed figure is the
geometric mean over process repeats (the centre of the ratio's interval) with its ratio to
the baseline and that ratio's 95% interval (Welch t on log values over process runs,
bench.analysis.stats), so a rerun can be checked against it. "~" marks an interval that
holds 1: within noise.

    python benchmarks/readme_tables.py results/<compression run>
"""

from __future__ import annotations

import math
import sys

import pandas as pd

from bench import load_results
from bench.analysis import stats, tables


def _ms(runs) -> str:
    if runs is None or len(runs) == 0:
        return "—"
    return f"{math.exp(sum(math.log(v) for v in runs) / len(runs)) * 1e3:.3g}"


def _fmt(metric: str, v: float) -> str:
    if metric == "state_dict_bytes":
        return f"{v / 1e6:.2f}"
    if metric in ("kl_to_baseline",):
        return f"{v:.3f}"
    if metric == "bandwidth_utilization":
        return f"{v:.1f}"
    return f"{v:.3f}"


def _ratio(runs_case, runs_base, lower_is_better: bool = True) -> str:
    """Speed-up (> 1 is faster) with its interval: baseline / case for a time."""
    if runs_case is None or runs_base is None:
        return "—"
    r = stats.ratio(runs_base, runs_case) if lower_is_better else stats.ratio(runs_case, runs_base)
    if not r.has_interval:
        return f"{r.value:.2f} (n/a)"
    mark = "" if r.excludes_one() else " ~"
    return f"{r.value:.2f} [{r.low:.2f}, {r.high:.2f}]{mark}"


HEADS = {
    "state_dict_bytes": "state MB",
    "heldout_bits_per_byte": "bits/byte",
    "kl_to_baseline": "KL",
    "bandwidth_utilization": "% read bw",
}


def table(df: pd.DataFrame, model: str, workload: str, time_metric: str, extra: list[str]) -> str:
    values = tables.run_values(df)
    rows = tables.ok_rows(df)
    rows = rows[(rows.model == model) & (rows.workload == workload)]
    if rows.empty:
        return f"_no ok cases for {model} / {workload}_\n"
    (run,) = rows.run_id.unique()
    base = rows[rows.is_baseline].case_id.iloc[0]
    head = ["technique", "ms", "× [95%]", "runs", *(HEADS.get(m, m) for m in extra)]
    out = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for case_id, g in rows.groupby("case_id", sort=False):
        mine = values.get((run, case_id, time_metric))
        theirs = values.get((run, base, time_metric))
        cells = [
            g.techniques.iloc[0],
            _ms(mine),
            "1" if case_id == base else _ratio(mine, theirs),
            str(len(mine)) if mine is not None else "0",
        ]
        for metric in extra:
            v = values.get((run, case_id, metric))
            cells.append("—" if v is None else _fmt(metric, stats.center(v)))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main(run_dir: str) -> None:
    df = load_results(run_dir)
    quality = ["state_dict_bytes", "heldout_bits_per_byte", "kl_to_baseline"]
    groups = df[["model", "workload"]].drop_duplicates().itertuples(index=False)
    for model, workload in groups:
        metric = "decode_step_median" if workload.startswith("generate") else "latency_median"
        extra = [*quality, "bandwidth_utilization"]
        print(f"### {model} / {workload}\n")
        print(table(df, model, workload, metric, extra))
    outliers = tables.outlier_table(df, ["latency_median", "decode_step_median"])
    if len(outliers):
        print("Outlying process repeats (kept):\n")
        print(outliers.to_string(index=False))


if __name__ == "__main__":
    main(sys.argv[1])
