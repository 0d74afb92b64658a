"""Figures from the long results frame: pure functions DataFrame -> matplotlib Figure.

No pyplot, no global style: each function builds its own Figure, so nothing leaks into a
user's notebook. Colours are the Okabe-Ito palette (safe for colour-blind readers).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bench.analysis.stats import center
from bench.analysis.tables import ok_rows, parameter, series_label
from bench.analysis.units import scale
from bench.results.metric_info import HIGHER_IS_BETTER, label

PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]


def _medians(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Each case's geometric mean over its process repeats, per run: a frame of several runs keeps
    them apart (the label names the run) unless ``tables.scoped(df, pool=True)`` pooled
    them first."""
    rows = ok_rows(df)
    rows = rows[rows.metric == metric]
    if rows.run_id.nunique() > 1:
        rows = rows.assign(techniques=rows.run_id + ": " + rows.techniques)
    keys = ["run_id", "case_id", "model", "workload", "techniques"]
    return (
        rows.groupby(keys, sort=False)
        .agg(
            value=("value", center),
            lo=("value", "min"),
            hi=("value", "max"),
            runs=("value", "size"),
            unit=("unit", "first"),
            method=("method", "first"),
        )
        .reset_index()
        # The geometric mean of equal runs can land an ulp outside them (exp(log(0.1)) is
        # 0.10000000000000002), and a whisker of negative length is an error to matplotlib.
        .pipe(lambda m: m.assign(value=m.value.clip(m.lo, m.hi)))
    )


def _label(metric: str, unit: str | None) -> str:
    return f"{label(metric)} [{unit}]" if unit else label(metric)


def _log_if_wide(ax, axis: str, values) -> None:
    v = np.asarray(list(values), dtype=float)
    v = v[~np.isnan(v)]
    if len(v) > 1 and (v > 0).all() and v.max() / v.min() > 100:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def pareto_front(points: pd.DataFrame, x: str, y: str, x_higher: bool, y_higher: bool) -> pd.Series:
    """True for points no other point beats on both axes."""
    sx = points[x] * (1 if x_higher else -1)
    sy = points[y] * (1 if y_higher else -1)
    front = []
    for i in points.index:
        dominated = ((sx >= sx[i]) & (sy >= sy[i]) & ((sx > sx[i]) | (sy > sy[i]))).any()
        front.append(not dominated)
    return pd.Series(front, index=points.index)


def speed_vs_quality(
    df: pd.DataFrame, speed: str = "throughput_tokens", quality: str = "kl_to_baseline"
) -> Figure:
    """One panel per workload: each case's speed against its quality, the Pareto front
    joined, every point labelled with its techniques."""
    s, q = _medians(df, speed), _medians(df, quality)
    keys = ["run_id", "case_id", "model", "workload", "techniques"]
    both = s.merge(q, on=keys, suffixes=("_s", "_q"))
    groups = list(both.groupby(["model", "workload"], sort=False))
    fig = Figure(figsize=(6.5, 3.6 * max(1, len(groups))), layout="constrained")
    axes = fig.subplots(max(1, len(groups)), 1, squeeze=False)[:, 0]
    for ax, ((model, workload), g) in zip(axes, groups, strict=False):
        g = g.reset_index(drop=True)
        front = pareto_front(
            g,
            "value_q",
            "value_s",
            HIGHER_IS_BETTER.get(quality, False),
            HIGHER_IS_BETTER.get(speed, True),
        )
        ax.scatter(g.value_q, g.value_s, color=PALETTE[0], zorder=3, label="case")
        f = g[front].sort_values("value_q")
        ax.plot(f.value_q, f.value_s, color=PALETTE[3], lw=1.5, marker="D", ms=9, mfc="none",
                zorder=4, label="Pareto front")  # fmt: skip
        for r in g.itertuples():
            ax.annotate(
                r.techniques,
                (r.value_q, r.value_s),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
        ax.set_xlabel(
            _label(quality, g.unit_q.iloc[0])
            + (" (lower is better)" if not HIGHER_IS_BETTER.get(quality, False) else "")
        )
        ax.set_ylabel(_label(speed, g.unit_s.iloc[0]))
        ax.set_title(f"{model} / {workload}: speed vs quality")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    if not groups:
        axes[0].set_title(f"no case has both {speed} and {quality}")
    return fig


def level_curves(
    df: pd.DataFrame,
    technique: str = "prune",
    param: str = "amount",
    metrics: tuple[str, ...] = (
        "heldout_bits_per_byte",
        "kl_to_baseline",
        "latency_median",
        "params_nonzero_fraction",
    ),
) -> Figure:
    """``param`` of ``technique`` (e.g. pruning amount) against each metric; one line per
    method and workload, the unoptimized baseline as a star at 0."""
    levels = parameter(df, technique, param)
    present = [m for m in metrics if m in set(ok_rows(df).metric)]
    fig = Figure(figsize=(5.0 * max(1, len(present)), 3.8), layout="constrained")
    axes = fig.subplots(1, max(1, len(present)), squeeze=False)[0]
    for ax, metric in zip(axes, present, strict=False):
        m = _medians(df, metric)
        divisor, unit = scale(m.value, m.unit.iloc[0] if len(m) else None)
        m["value"] = m.value / divisor
        m["level"] = m.case_id.map(levels)
        m = m.dropna(subset=["level"])
        m["series"] = m.case_id.map(series_label(df, technique, param))
        methods = list(m.series.dropna().unique())
        pairs = [(a, w) for a in methods for w in dict.fromkeys(m.workload)]
        for i, (series, workload) in enumerate(pairs):
            colour = PALETTE[i % len(PALETTE)]
            line = m[(m.series == series) & (m.workload == workload)].sort_values("level")
            if line.empty:
                continue
            ax.plot(line.level, line.value, marker="o", color=colour, label=f"{series}, {workload}")
            base = m[(m.techniques == "baseline") & (m.workload == workload)]
            ax.scatter(base.level, base.value, marker="*", s=120, color=colour, zorder=3)
        ax.set_xlabel(f"{technique} {param}")
        ax.set_ylabel(_label(metric, unit))
        ax.set_title(label(metric))
        _log_if_wide(ax, "y", m.value)
    if present:
        handles, labels = axes[0].get_legend_handles_labels()
        if handles:
            fig.legend(
                handles, labels, loc="outside lower center", ncols=min(4, len(labels)), fontsize=8
            )
    return fig


def metric_bars(df: pd.DataFrame, metric: str = "latency_median") -> Figure:
    """The metric per case (geometric mean over process repeats), grouped by model and workload.
    Error bars: the range over process repeats, the spread a rerun lands in. A case with
    one repeat has no bar, and its label says so: a missing spread is never drawn as zero."""
    m = _medians(df, metric)
    groups = list(m.groupby(["model", "workload"], sort=False))
    fig = Figure(figsize=(7.0, 2.8 * max(1, len(groups))), layout="constrained")
    axes = fig.subplots(max(1, len(groups)), 1, squeeze=False)[:, 0]
    for ax, ((model, workload), g) in zip(axes, groups, strict=False):
        divisor, unit = scale(g.value, g.unit.iloc[0])
        g = g.assign(value=g.value / divisor, lo=g.lo / divisor, hi=g.hi / divisor)
        spread = g.runs > 1
        labels = [t if s else f"{t} (1 run: no spread)" for t, s in zip(g.techniques, spread,
                                                                       strict=True)]  # fmt: skip
        ax.barh(labels, g.value, color=PALETTE[0])
        if spread.any():
            h = g[spread]
            err = np.vstack([h.value - h.lo, h.hi - h.value])
            y = [labels[i] for i in np.flatnonzero(spread.to_numpy())]
            ax.errorbar(h.value, y, xerr=err, fmt="none", ecolor="black", capsize=3)
        ax.invert_yaxis()
        ax.set_xlabel(
            f"{_label(metric, unit)}; bars: geometric mean over process repeats, "
            "whiskers: their range"
        )
        ax.set_title(f"{model} / {workload}")
        _log_if_wide(ax, "x", g.value)
    return fig


def energy_bars(df: pd.DataFrame, metric: str = "energy_per_token") -> Figure:
    """Energy per unit of work per case; hatched and labelled where the figure is modelled
    (codecarbon) rather than measured."""
    m = _medians(df, metric)
    groups = list(m.groupby(["model", "workload"], sort=False))
    fig = Figure(figsize=(7.0, 2.8 * max(1, len(groups))), layout="constrained")
    axes = fig.subplots(max(1, len(groups)), 1, squeeze=False)[:, 0]
    for ax, ((model, workload), g) in zip(axes, groups, strict=False):
        modelled = g.method.str.contains("codecarbon_model", na=False)
        bars = ax.barh(
            g.techniques, g.value, color=[PALETTE[1] if x else PALETTE[2] for x in modelled]
        )
        for bar, mod in zip(bars, modelled, strict=True):
            if mod:
                bar.set_hatch("//")
        ax.invert_yaxis()
        note = " — MODELLED (codecarbon), not measured" if modelled.any() else ""
        ax.set_xlabel(_label(metric, g.unit.iloc[0]))
        ax.set_title(f"{model} / {workload}{note}", fontsize=10)
    return fig


def power_trace(result: dict[str, Any]) -> Figure | None:
    """The GPU sampler's power and utilisation over a case (None without samples)."""
    rows = result.get("samples", {}).get("gpu_sampler", {}).get("rows") or []
    if not rows:
        return None
    t0 = rows[0]["t"]
    t = [r["t"] - t0 for r in rows]
    fig = Figure(figsize=(7.0, 3.2), layout="constrained")
    ax = fig.subplots()
    ax.plot(t, [r.get("power_w") for r in rows], color=PALETTE[3], label="power [W]")
    ax.set_xlabel("time since first sample [s]")
    ax.set_ylabel("board power [W]")
    ax2 = ax.twinx()
    ax2.plot(
        t,
        [r.get("util_gpu_pct") for r in rows],
        color=PALETTE[0],
        ls="--",
        label="GPU utilisation [%]",
    )
    ax2.set_ylabel("utilisation [%]")
    ax.set_title(f"{result['case_id']}: GPU power and utilisation")
    fig.legend(loc="outside lower center", ncols=2, fontsize=8)
    return fig


VERDICT_COLOURS = {"REGRESSION": "#D55E00", "IMPROVED": "#009E73", "OK": "#0072B2",
                   "INCONCLUSIVE": "#E69F00"}  # fmt: skip


def forest(rows: list[tuple[str, Any]]) -> Figure | None:
    """Candidate / base ratios with their 95% intervals, one line per case and metric on
    the log scale, the tolerance band shaded: a forest plot of a comparison (``rows``:
    (label, ``verdicts.Change``)). Absolute-tolerance metrics are not ratios and stay in the
    table."""
    rows = [(label, ch) for label, ch in rows if ch.scale == "log" and not np.isnan(ch.estimate)]
    if not rows:
        return None
    fig = Figure(figsize=(8.5, 0.9 + 0.32 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    for y, (_, ch) in enumerate(reversed(rows)):
        colour = VERDICT_COLOURS[str(ch.verdict)]
        band = ch.band
        ax.fill_between([np.exp(-band), np.exp(band)], y - 0.4, y + 0.4, color="#e5e7eb", lw=0)
        if not np.isnan(ch.low):
            ax.plot([np.exp(ch.low), np.exp(ch.high)], [y, y], color=colour, lw=2)
        ax.plot(np.exp(ch.estimate), y, "o", color=colour, ms=5)
    ax.axvline(1.0, color="#374151", lw=0.8)
    ax.set_yticks(range(len(rows)), [label for label, _ in reversed(rows)], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("candidate / base (log scale; grey: tolerance; colour: verdict)")
    handles = [ax.plot([], [], "o-", color=c, label=v)[0] for v, c in VERDICT_COLOURS.items()]
    ax.legend(handles=handles, fontsize=7, loc="lower right", frameon=False)
    ax.grid(axis="x", color="#f0f0f0")
    return fig
