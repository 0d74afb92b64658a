"""Scaling of parallel cases (technique ``parallel``): speed-up and efficiency against one
rank, against one process with the same total threads, and the speed-up curve.

A case's degree is its ranks (ddp, fsdp, tp) or its threads (mode threads). Its speed-up is
the ratio of its throughput to that of the same mode at degree 1, over process runs (the
interval is stats.ratio's); ``scaling_efficiency`` is that speed-up over the degree (1: the
ideal, linear scaling). The comparison that decides whether to launch ranks at all is the
second one: N ranks x t threads against one process with N x t threads.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from bench.analysis import stats
from bench.analysis.plots import PALETTE
from bench.analysis.tables import ok_rows, run_values

METRIC = "throughput_tokens"
PEAK = re.compile(r"^memory_(?!load_).*_peak_(rss|allocated)$")
CAPTIONS = {
    "scaling": "Speed-up of throughput (tokens/s) against the same mode at one rank (one "
    "thread for mode threads), by degree (ranks, or threads); bar: 95% interval over process "
    "runs; dashed: ideal, linear scaling.",
}


def _degree(parameters: str) -> dict[str, Any] | None:
    p = json.loads(parameters)
    for name, params in zip(p["technique_names"], p["techniques"], strict=True):
        if name != "parallel":
            continue
        mode = params["mode"]
        if mode == "threads":
            return {"mode": mode, "degree": params["threads"], "threads": params["threads"]}
        world, per = params.get("world_size", 1), params.get("threads_per_rank", 1)
        return {"mode": mode, "degree": world, "per": per, "threads": world * per}
    return None


def scaling_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per parallel case that has a throughput."""
    rows = ok_rows(df)
    if rows.empty:
        return pd.DataFrame()
    values = run_values(rows)
    cases = rows.drop_duplicates(["run_id", "case_id"])
    placed = [(c, _degree(c.parameters)) for c in cases.itertuples()]
    placed = [
        (c, d) for c, d in placed if d is not None and (c.run_id, c.case_id, METRIC) in values
    ]
    out = []
    for c, d in placed:
        peers = [
            (p, e)
            for p, e in placed
            if (p.run_id, p.model, p.workload) == (c.run_id, c.model, c.workload)
        ]
        mine = values[(c.run_id, c.case_id, METRIC)]
        one = _find(peers, mode=d["mode"], degree=1, per=d.get("per"))
        same = _find(peers, mode="threads", threads=d["threads"])
        row = {
            "model": c.model,
            "workload": c.workload,
            "case_id": c.case_id,
            "mode": d["mode"],
            "degree": d["degree"],
            "threads": d["threads"],
            "throughput": stats.center(mine),
            "runs": len(mine),
        }
        if one is not None and d["degree"] > 1:
            r = stats.ratio(mine, values[(c.run_id, one.case_id, METRIC)])
            row["speedup"] = r
            row["scaling_efficiency"] = _scaled(r, 1 / d["degree"])
        if same is not None and d["mode"] != "threads":
            row["vs_one_process"] = stats.ratio(mine, values[(c.run_id, same.case_id, METRIC)])
        row["peak_memory_per_rank"] = _peak(values, c.run_id, c.case_id)
        startup = values.get((c.run_id, c.case_id, "launch_startup"))
        row["launch_startup"] = stats.center(startup) if startup is not None else math.nan
        out.append(row)
    return pd.DataFrame(out)


def _find(peers, **wanted):
    """The first peer case whose degree facts have the ``wanted`` values."""
    return next((p for p, e in peers if all(e.get(k) == v for k, v in wanted.items())), None)


def _scaled(r: stats.Ratio, k: float) -> stats.Ratio:
    return stats.Ratio(r.value * k, r.low * k, r.high * k, r.n_case, r.n_base, r.method, r.why)


def _peak(values: pd.Series, run_id: str, case_id: str) -> float:
    found = [
        stats.center(v)
        for (run, case, metric), v in values.items()
        if run == run_id and case == case_id and PEAK.match(metric)
    ]
    return max(found) if found else math.nan


def figures(df: pd.DataFrame, results) -> dict[str, Figure]:
    table = scaling_table(df)
    if table.empty or "speedup" not in table:
        return {}
    return {"scaling": speedup_curve(table)}


def speedup_curve(table: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(7.6, 4.2), layout="constrained")
    ax = fig.add_subplot()
    top = 1
    series = list(table.groupby(["model", "workload", "mode"], sort=False))
    several = table.groupby("model").workload.nunique().max() > 1
    for i, ((model, workload, mode), g) in enumerate(series):
        points = [(1, 1.0, 0.0, 0.0)]
        for row in g.sort_values("degree").itertuples():
            r = getattr(row, "speedup", None)
            if isinstance(r, stats.Ratio):
                low, high = (r.value - r.low, r.high - r.value) if r.has_interval else (0, 0)
                points.append((row.degree, r.value, low, high))
        if len(points) < 2:
            continue
        xs, ys, lows, highs = zip(*points, strict=True)
        top = max(top, *xs)
        dodge = (i - (len(series) - 1) / 2) * 0.025  # side by side: intervals stay legible
        label = f"{mode} · {model}" + (f" · {workload}" if several else "")
        label = label if len(label) <= 48 else label[:47] + "…"  # the plot keeps its width
        ax.errorbar([x + dodge for x in xs], ys, yerr=[lows, highs], marker="o", capsize=3,
                    color=PALETTE[i % len(PALETTE)], label=label)  # fmt: skip
    ax.plot([1, top], [1, top], "--", color="grey", label="ideal (linear)")
    ax.set_xlabel("degree (ranks; threads for mode threads)")
    ax.set_ylabel("speed-up of tokens/s vs degree 1")
    ax.set_xticks(range(1, int(top) + 1))
    fig.legend(fontsize=8, loc="outside right upper", frameon=False)
    ax.grid(alpha=0.3)
    return fig


def describe(r: Any, unit: str = "×") -> str:
    """A ratio with its interval; an efficiency (a fraction of linear) without the ×."""
    return r.describe().replace("×", unit) if isinstance(r, stats.Ratio) else "—"


def section(df: pd.DataFrame, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The report's scaling table (title, header, rows, note), or None without one."""
    from bench.analysis.units import human

    table = scaling_table(df)
    if table.empty:
        return None
    header = ["case", "runs", "degree", "tokens/s", "speed-up vs degree 1",
              "scaling efficiency", "vs one process, same threads", "peak memory per rank",
              "launch start-up"]  # fmt: skip
    rows = [
        [r.case_id, str(r.runs), str(r.degree), human(r.throughput, "tokens/s"),
         describe(getattr(r, "speedup", None)),
         describe(getattr(r, "scaling_efficiency", None), ""),
         describe(getattr(r, "vs_one_process", None)), human(r.peak_memory_per_rank, "bytes"),
         human(r.launch_startup, "s")]
        for r in table.itertuples()
    ]  # fmt: skip
    note = (
        "Throughput over process runs (median); ratios are stats.ratio's (Welch t on log "
        "runs, 95%; no interval below 3 runs a side). Degree: ranks (ddp, fsdp, tp) or "
        "threads (mode threads). Scaling efficiency: the speed-up over the degree (1 is "
        "linear). 'vs one process, same threads': N ranks x t threads against one process "
        "with N x t threads (mode threads), which decides whether ranks pay at all. Data "
        "parallel throughput is the ranks' sum; tensor parallel, the group's. Peak memory: "
        "the largest rank's workload-phase peak. Launch start-up: launcher call to the last "
        "rank ready (rank processes, rendezvous, process group), not in any timing."
    )
    return {"title": "Scaling of parallel cases", "header": header, "rows": rows, "note": note}
