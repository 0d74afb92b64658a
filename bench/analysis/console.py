"""The end-of-run table on the console: each case's status, its workload's headline metric
(geometric mean over process repeats) and its ratio to the baseline, with the interval."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from bench.analysis import stats, tables
from bench.analysis.units import human
from bench.results import store
from bench.results.metric_info import higher_is_better


@dataclass
class Row:
    case_id: str
    status: str  # "ok", or e.g. "2 ok, 1 timeout" across repeats
    metric: str | None
    value: float | None  # geometric mean over ok repeats
    unit: str | None
    vs_baseline: stats.Ratio | None  # oriented: > 1 means better than the baseline
    outliers: list[int]  # repeats far from the others (kept in the figures)
    note: str = ""
    disturbed: list[int] = field(default_factory=list)  # repeats other work disturbed


def _headline(workload: str) -> str | None:
    from bench.spec import registry

    try:
        return registry.workloads.get(workload).meta.get("headline")
    except KeyError:
        return None


def console_rows(df: pd.DataFrame) -> list[Row]:
    """One row per case of a single run's frame (``bench.load_results(run_dir)``)."""
    values = tables.run_values(df)
    base = tables.baseline_of(df)
    out = []
    for (run_id, case_id), g in df.groupby(["run_id", "case_id"], sort=False):
        first = g[g["pass"] != store.COUNT].drop_duplicates("repeat")
        if first.empty:  # only counted (its timed runs not yet run)
            first = g.drop_duplicates("repeat")
        counts = first.status.value_counts(sort=False)
        status = (
            counts.index[0]
            if len(counts) == 1
            else ", ".join(f"{n} {s}" for s, n in counts.items())
        )
        errors = [e for e in first.error if isinstance(e, str) and e]
        metric = _headline(_workload_name(g))
        runs = values.get((run_id, case_id, metric))
        unit = g[g.metric == metric].unit.dropna()
        ratio = None
        b = base.get((run_id, case_id))
        if runs is not None and b is not None and b != case_id:
            theirs = values.get((run_id, b, metric))
            if theirs is not None:
                mine = runs if higher_is_better(metric) else theirs
                other = theirs if higher_is_better(metric) else runs
                ratio = stats.ratio(mine, other)
        out.append(
            Row(
                case_id,
                status,
                metric,
                stats.center(runs) if runs is not None else None,
                unit.iloc[0] if len(unit) else None,
                ratio,
                [int(first.repeat.iloc[i]) for i in stats.outlying_runs(runs)]
                if runs is not None and len(runs) == len(first)
                else [],
                note=errors[0].splitlines()[0][:120] if errors else "",
                disturbed=[int(r) for r in first[first.disturbed.eq(True)].repeat],
            )
        )
    return out


def _workload_name(g: pd.DataFrame) -> str:
    return json.loads(g.parameters.iloc[0]).get("workload_name", "")


def print_table(rows: list[Row], console) -> None:
    from rich.table import Table

    table = Table(title="Summary", show_lines=False)
    for col, justify in (
        ("case", "left"),
        ("status", "left"),
        ("headline (geometric mean of runs)", "right"),
        ("vs baseline (95% interval over runs)", "right"),
        ("note", "left"),
    ):
        # Case ids stay whole (users paste them into --case filters); the other columns wrap.
        table.add_column(col, justify=justify, overflow="fold", no_wrap=col == "case")
    for r in rows:
        value = "—" if r.value is None else f"{r.metric} {human(r.value, r.unit)}"
        speed = "—" if r.vs_baseline is None else _verdict(r.vs_baseline)
        note = r.note
        if r.outliers:
            flagged = ", ".join(f"r{i}" for i in r.outliers)
            note = f"outlying run {flagged} (kept); {note}".rstrip("; ")
        if r.disturbed:
            flagged = ", ".join(f"r{i}" for i in r.disturbed)
            note = f"{flagged} disturbed by other work; {note}".rstrip("; ")
        style = None if r.status == "ok" else "red"
        table.add_row(r.case_id, r.status, value, speed, note, style=style)
    console.print(table)


def _verdict(r: stats.Ratio) -> str:
    text = r.describe()
    if r.has_interval and not r.excludes_one():
        return f"{text} within noise"
    return text
