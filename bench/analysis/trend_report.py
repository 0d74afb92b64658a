"""What ``bench history`` shows: a table of open alarms and recent change points, and trend
figures per case and metric (nights over time, each night's interval as a band, change
points marked, environment changes shaded) as ``index.html`` with a page per series."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import atomic
from bench.analysis import changepoints as cp
from bench.analysis.document import Link, render
from bench.analysis.units import human, scale
from bench.results.metric_info import label

HEADER = ["", "case", "metric", "night", "commit", "change", "nights after", "verdict"]
RECENT = 20  # change points the console shows besides the alarms; the pages show all
KIND = {"REGRESSION": "bad", "IMPROVED": "good", "INCONCLUSIVE": "unsure", "OK": ""}


def _when(night: cp.Night) -> str:
    return night.started.strftime("%Y-%m-%d %H:%M")


def _summary(series, points, alarms) -> str:
    runs = {n.run_id for s in series for n in s.nights}
    beyond = sum(p.change.verdict != "OK" for p in points)
    return (
        f"{len(runs)} runs, {len(series)} series, {beyond} change points beyond tolerance or "
        f"undecided, {len(alarms)} open alarm{'s' if len(alarms) != 1 else ''}"
    )


def row(point: cp.ChangePoint, is_alarm: bool) -> list[str]:
    s, ch = point.series, point.change
    if ch.exact or ch.scale == "linear":
        change = f"{human(ch.base, s.unit)} → {human(ch.cand, s.unit)}"
    else:
        change = ch.describe()
    return [
        "ALARM" if is_alarm else "",
        s.case_id,
        label(s.metric),
        _when(point.night),
        (point.night.commit or "?")[:10],
        change,
        str(point.nights_after),
        str(ch.verdict),
    ]


def rows(points: Sequence[cp.ChangePoint], alarms: Sequence[cp.ChangePoint]) -> list[list[str]]:
    """Open alarms first, then every other change point beyond its tolerance or undecided
    (within tolerance: not a change worth a row), newest first."""
    rest = [p for p in points if p not in alarms and p.change.verdict != "OK"]
    rest.sort(key=lambda p: p.night.started, reverse=True)
    return [row(p, True) for p in alarms] + [row(p, False) for p in rest]


def print_summary(
    name: str,
    series: Sequence[cp.Series],
    points: Sequence[cp.ChangePoint],
    alarms: Sequence[cp.ChangePoint],
    console,
) -> None:
    from rich.markup import escape
    from rich.table import Table

    # Names come from the database: "[/]" in a case or history name is text, not markup.
    summary = escape(f"{_summary(series, points, alarms)}")
    console.print(f"history [bold]{escape(name)}[/]: {summary}", highlight=False)
    if not rows(points, alarms):
        return
    table = Table(title="Change points (alarms first, then newest first)")
    for h in HEADER:
        table.add_column(h, overflow="fold")
    style = {"REGRESSION": "red", "IMPROVED": "green", "INCONCLUSIVE": "yellow"}
    every = rows(points, alarms)
    for r in every[: len(alarms) + RECENT]:
        table.add_row(*map(escape, map(str, r)), style="bold red" if r[0] else style.get(r[-1]))
    console.print(table)
    if len(every) > len(alarms) + RECENT:
        console.print(
            f"... and {len(every) - len(alarms) - RECENT} older change points (--since, --plot)",
            highlight=False,
        )


# --- figures and pages ---------------------------------------------------------------


def figure(group: Sequence[cp.Series], points: Sequence[cp.ChangePoint], alarms) -> Any:
    """One case x metric over time: a line per environment, shaded apart."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.4), layout="constrained")
    ax = fig.add_subplot()
    s0 = group[0]
    divisor, unit = scale([n.value for s in group for n in s.nights], s0.unit)
    shades = ["#ffffff", "#eef2f7"]
    for k, s in enumerate(sorted(group, key=lambda s: s.nights[0].started)):
        t = [n.started.to_pydatetime() for n in s.nights]
        y = [n.value / divisor for n in s.nights]
        if len(group) > 1:
            ax.axvspan(t[0], t[-1], color=shades[k % 2], zorder=0, lw=0)
            ax.annotate(
                f"env {s.env_key[:6]}",
                (t[0], 1),
                xycoords=("data", "axes fraction"),
                va="top",
                fontsize=7,
                color="#6b7280",
            )
        lows = [(n.low if n.low is not None else n.value) / divisor for n in s.nights]
        highs = [(n.high if n.high is not None else n.value) / divisor for n in s.nights]
        ax.fill_between(t, lows, highs, color="#0072B2", alpha=0.18, lw=0, step=None)
        ax.plot(t, y, "o-", color="#0072B2", ms=3, lw=1)
        for p in (p for p in points if p.series is s):
            colour = "#D55E00" if p in alarms else cp_colour(str(p.change.verdict))
            ax.axvline(p.night.started.to_pydatetime(), color=colour, lw=1.5, ls="--")
    ax.set_ylabel(f"{label(s0.metric)} ({unit})" if unit and unit != "1" else label(s0.metric))
    ax.set_title(f"{s0.case_id}: {label(s0.metric)}", fontsize=10)
    ax.grid(color="#f0f0f0")
    fig.autofmt_xdate()
    return fig


def cp_colour(verdict: str) -> str:
    return {"REGRESSION": "#E69F00", "IMPROVED": "#009E73"}.get(verdict, "#9ca3af")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:150]


def write_pages(
    name: str,
    series: Sequence[cp.Series],
    points: Sequence[cp.ChangePoint],
    alarms: Sequence[cp.ChangePoint],
    out: Path,
    notes: Sequence[str] = (),
) -> Path:
    """``out/index.html`` (alarms, change points, the series with their trend figures)
    and one page per case x metric (templates ``history_index.html.j2`` and
    ``history_series.html.j2``); returns the index."""
    out.mkdir(parents=True, exist_ok=True)
    groups: dict[tuple[str, str], list[cp.Series]] = {}
    for s in series:
        groups.setdefault((s.case_id, s.metric), []).append(s)
    links: dict[tuple[str, str], tuple[str, bool]] = {}  # (case, metric) -> (page, alarm)
    for (case_id, metric), group in groups.items():
        slug = _slug(f"{case_id}__{metric}")
        fig = figure(group, points, alarms)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        atomic.write_bytes(out / f"{slug}.png", buf.getvalue())
        mine = [p for p in points if p.series in group]
        html = render(
            "history_series.html.j2",
            title=f"{case_id}: {label(metric)}",
            name=name,
            slug=slug,
            metric=metric,
            changes=_changes(mine, alarms),
            nights={"header": NIGHTS_HEADER, "rows": _nights(group)},
        )
        atomic.write_bytes(out / f"{slug}.html", html.encode())
        links[(case_id, metric)] = (slug, any(p in alarms for p in mine))
    envs = {s.env_key: s.env for s in series}
    html = render(
        "history_index.html.j2",
        title=f"Nightly history: {name}",
        summary=_summary(series, points, alarms),
        notes=list(notes),
        changes=_changes(points, alarms),
        alarmed=list(dict.fromkeys(links[(a.series.case_id, a.series.metric)][0] for a in alarms)),
        grid=_grid(links),
        environments=[
            [k[:6], ", ".join(f"{a}={b}" for a, b in v.items())] for k, v in envs.items()
        ],
        rule=RULE,
    )
    index = out / "index.html"
    atomic.write_bytes(index, html.encode())
    return index


NIGHTS_HEADER = ["night", "run", "commit", "median", "95% interval", "process runs", "env"]


def _nights(group: Sequence[cp.Series]) -> list[list[str]]:
    """A series' nights, newest first: one table row each."""
    return [
        [
            _when(n),
            n.run_id,
            (n.commit or "?")[:10],
            human(n.value, s.unit),
            "—" if n.low is None else f"{human(n.low, s.unit)} – {human(n.high, s.unit)}",
            str(len(n.values)),
            s.env_key[:6],
        ]
        for s in group
        for n in reversed(s.nights)
    ]


RULE = (
    f"Change points per series (case × metric × environment) from {cp.DETECTOR} on the log "
    f"of each night's run center, penalty {cp.PENALTY:g}·σ²·log n, segments of "
    f"{cp.MIN_SIZE}+ nights. Each is judged on the nights after it against the nights before "
    "it, the night as the unit (Student's t, the two segments' variance pooled), as one "
    "test per night the detector could have picked; the candidates are decided together, "
    "Bonferroni at a family-wise 0.01, with the gates of the night before each; the interval "
    "shown is the one that decided. REGRESSION/IMPROVED: significant and beyond the "
    "metric's tolerance. An "
    f"alarm is a regression with {cp.MIN_SIZE}+ nights after it (sizes and quality of fixed "
    "weights: at once) that stays open until the newest nights are back within the "
    "tolerance of the level before it. A new host, CPU, GPU driver, torch or CUDA starts a "
    "new series (shaded) instead of alarming."
)


def _changes(points: Sequence[cp.ChangePoint], alarms: Sequence[cp.ChangePoint]) -> dict:
    """The change-point table: rows, their colours (red: an open alarm)."""
    body = rows(points, alarms)
    classes = [[("bad" if r[0] else KIND.get(r[-1], ""))] * len(r) for r in body]
    return {"header": HEADER, "rows": body, "classes": classes}


def _grid(links: dict[tuple[str, str], tuple[str, bool]]) -> dict:
    """Cases down, metrics across; a cell links to the trend page (red: an open alarm)."""
    cases = list(dict.fromkeys(c for c, _ in links))
    metrics = list(dict.fromkeys(m for _, m in links))
    rows, classes = [], []
    for c in cases:
        row: list = [c]
        cls = [""]
        for m in metrics:
            slug, alarm = links.get((c, m), ("", False))
            row.append(Link("ALARM" if alarm else "trend", slug + ".html") if slug else "")
            cls.append("bad" if alarm else "")
        rows.append(row)
        classes.append(cls)
    return {"header": ["case", *map(label, metrics)], "rows": rows, "classes": classes}
