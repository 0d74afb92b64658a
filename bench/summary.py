"""The end-of-run table: each case's status, headline metric and ratio to its baseline."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from bench import registry
from bench.suite import BASELINE


@dataclass
class Row:
    case_id: str
    status: str  # "ok", or e.g. "2 ok, 1 timeout" across repeats
    metric: str | None
    value: float | None  # median over ok repeats
    unit: str | None
    speedup: float | None  # >1 means better than the baseline case of the same group
    spread: float | None = None  # (max - min) / median over ok repeats; None with one repeat
    note: str = ""


def _headline(workload: str) -> tuple[str | None, bool]:
    try:
        meta = registry.workloads.get(workload).meta
    except KeyError:
        return None, True
    return meta.get("headline"), bool(meta.get("higher_is_better", True))


def summarize_results(results: list[dict[str, Any]]) -> list[Row]:
    by_case: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_case[r["case_id"]].append(r)
    rows: dict[str, Row] = {}
    groups: dict[str, str] = {}
    baselines: dict[str, str] = {}
    higher_better: dict[str, bool] = {}
    for case_id, rs in by_case.items():
        case = rs[0]["case"]
        metric, higher_better[case_id] = _headline(case["workload"]["name"])
        values = [
            m["value"]
            for r in rs
            if r["status"] == "ok"
            for m in r["metrics"]
            if m["name"] == metric
        ]
        values = [v for v in values if v is not None]
        unit = next((m["unit"] for r in rs for m in r["metrics"] if m["name"] == metric), None)
        counts: dict[str, int] = defaultdict(int)
        for r in rs:
            counts[r["status"]] += 1
        status = (
            next(iter(counts))
            if len(counts) == 1
            else ", ".join(f"{n} {s}" for s, n in counts.items())
        )
        errors = [r["error"] for r in rs if r.get("error")]
        median = statistics.median(values) if values else None
        rows[case_id] = Row(
            case_id,
            status,
            metric,
            median,
            unit,
            None,
            spread=(max(values) - min(values)) / median if len(values) > 1 and median else None,
            note=(errors[0].splitlines()[0][:120] if errors else ""),
        )
        group = f"{case['model']['label']}/{case['workload']['label']}"
        groups[case_id] = group
        if all(t["name"] == BASELINE for t in case["techniques"]):
            baselines[group] = case_id
    for case_id, row in rows.items():
        base = rows.get(baselines.get(groups[case_id], ""))
        if base is None or row.value is None or not base.value:
            continue
        better = higher_better[case_id]
        row.speedup = row.value / base.value if better else base.value / row.value
    return list(rows.values())


def print_summary(rows: list[Row], console) -> None:
    from rich.table import Table

    table = Table(title="Summary", show_lines=False)
    for col, justify in (
        ("case", "left"),
        ("status", "left"),
        ("headline (median of repeats)", "right"),
        ("repeat spread", "right"),
        ("vs baseline", "right"),
        ("note", "left"),
    ):
        table.add_column(col, justify=justify, overflow="fold")
    for r in rows:
        value = "—" if r.value is None else f"{r.metric} {_fmt(r.value, r.unit)}"
        speed = "—" if r.speedup is None else f"{r.speedup:.2f}×"
        spread = "—" if r.spread is None else f"{r.spread:.0%}"
        style = None if r.status == "ok" else "red"
        table.add_row(r.case_id, r.status, value, spread, speed, r.note, style=style)
    console.print(table)


def _fmt(value: float, unit: str | None) -> str:
    if unit == "s":
        return f"{value * 1e3:.3g} ms" if value < 1 else f"{value:.3g} s"
    return f"{value:.4g} {unit or ''}".rstrip()
