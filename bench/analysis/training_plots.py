"""Figures of training runs, from the raw results (the loss curve and the lr actually
applied are samples, not metrics) and from the long frame (the memory split)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bench.analysis.plots import PALETTE
from bench.analysis.stats import center
from bench.analysis.tables import ok_rows
from bench.analysis.units import scale
from bench.results.metric_info import label

MEMORY_PARTS = ("weights_bytes", "gradient_bytes", "optimizer_state_bytes", "activation_bytes")
CAPTIONS = {
    "loss_curves": "Training cross-entropy against optimizer steps and against the time the "
    "steps took, one colour per case (a distilled student beside its scratch baseline), one "
    "line per process run; the dashed line is the target loss.",
    "lr_schedules": "The learning rate applied at each step, as recorded during training.",
    "training_memory": "Bytes training holds per case: weights, gradients, optimizer state "
    "and the activations one micro-batch saves for the backward pass.",
}


def figures(df: pd.DataFrame, results: list[dict[str, Any]]) -> dict[str, Figure]:
    """The training figures a run has data for, by name (keys of CAPTIONS)."""
    made = {
        "loss_curves": loss_curves(results),
        "lr_schedules": lr_schedules(results),
        "training_memory": memory_breakdown(df),
    }
    return {k: v for k, v in made.items() if v is not None}


def _trained(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Group (model / workload) -> its ok results with a loss curve, in case order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        if r.get("status") == "ok" and "loss" in r.get("samples", {}):
            model, workload, _ = r["case_id"].split("/", 2)
            groups.setdefault(f"{model} / {workload}", []).append(r)
    return groups


def _techniques(r: dict[str, Any]) -> str:
    return r["case_id"].split("/", 2)[2]


def _colours(rs: list[dict[str, Any]]) -> dict[str, Any]:
    """One colour per case: the colour-blind-safe palette while it lasts, else tab20."""
    from matplotlib import colormaps

    names = list(dict.fromkeys(_techniques(r) for r in rs))
    if len(names) <= len(PALETTE):
        return {n: PALETTE[i] for i, n in enumerate(names)}
    tab = colormaps["tab20"]
    return {n: tab(i % 20) for i, n in enumerate(names)}


def loss_curves(results: list[dict[str, Any]]) -> Figure | None:
    """Per group, the training cross-entropy against steps (left) and against the
    seconds the steps took (right), one colour per case, one line per process run."""
    groups = _trained(results)
    if not groups:
        return None
    fig = Figure(figsize=(13.0, 3.8 * len(groups)), layout="constrained")
    axes = fig.subplots(len(groups), 2, squeeze=False)
    for (title, rs), (by_step, by_time) in zip(groups.items(), axes, strict=True):
        colours = _colours(rs)
        seen: set[str] = set()
        for r in rs:
            curve, name = r["samples"]["loss"], _techniques(r)
            first = name not in seen
            seen.add(name)
            kw = dict(color=colours[name], lw=1.2, alpha=0.85, label=name if first else None)
            by_step.plot(curve["steps"], curve["values"], **kw)
            by_time.plot(curve["seconds"], curve["values"], **kw)
            target = r["case"]["workload"]["params"].get("target_loss")
        for ax, xlabel in ((by_step, "optimizer step"), (by_time, "training time [s]")):
            if target:
                ax.axhline(target, color="#555555", ls="--", lw=1)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("train cross-entropy [nats/token]")
            ax.grid(alpha=0.3)
        by_step.set_title(title, fontsize=9, loc="left")
        by_time.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def lr_schedules(results: list[dict[str, Any]]) -> Figure | None:
    """The learning rate each case's first process run applied at every step."""
    groups = _trained(results)
    if not groups:
        return None
    fig = Figure(figsize=(10.0, 3.4 * len(groups)), layout="constrained")
    axes = fig.subplots(len(groups), 1, squeeze=False)[:, 0]
    for ax, (title, rs) in zip(axes, groups.items(), strict=True):
        colours = _colours(rs)
        for name in colours:
            r = next(x for x in rs if _techniques(x) == name)
            lr = r["samples"]["lr"]["values"]
            ax.plot(range(len(lr)), lr, color=colours[name], lw=1.2, label=name)
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("learning rate")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def memory_breakdown(df: pd.DataFrame) -> Figure | None:
    """Per case, the bytes training holds: weights, gradients, optimizer state and the
    activations one micro-batch saves for the backward pass, stacked."""
    rows = ok_rows(df)
    rows = rows[rows.metric.isin(MEMORY_PARTS)]
    if rows.empty:
        return None
    med = (
        rows.groupby(["model", "workload", "techniques", "metric"], sort=False)
        .value.agg(center)
        .unstack("metric")
        .reindex(columns=list(MEMORY_PARTS))
    )
    groups = list(med.groupby(level=["model", "workload"], sort=False))
    fig = Figure(figsize=(7.5, 0.9 + 0.35 * len(med) + 0.6 * len(groups)), layout="constrained")
    axes = fig.subplots(len(groups), 1, squeeze=False)[:, 0]
    factor, unit = scale(med.to_numpy().ravel(), "bytes")
    for ax, ((model, workload), g) in zip(axes, groups, strict=True):
        names = [t for _, _, t in g.index]
        left = np.zeros(len(g))
        for i, part in enumerate(MEMORY_PARTS):
            values = g[part].fillna(0).to_numpy() / factor
            ax.barh(names, values, left=left, color=PALETTE[i], label=label(part))
            left += values
        ax.set_title(f"{model} / {workload}", fontsize=9, loc="left")
        ax.set_xlabel(f"bytes held in training [{unit}]")
        ax.invert_yaxis()
        ax.legend(fontsize=7, loc="lower right")
    return fig
