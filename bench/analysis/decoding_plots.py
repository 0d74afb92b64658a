"""The figure of decoding strategies: what each costs in tokens/s against how likely the
unoptimized model finds its output."""

from __future__ import annotations

import json
from itertools import takewhile

import pandas as pd
from matplotlib.figure import Figure

from bench.analysis.plots import PALETTE
from bench.analysis.stats import center, center_interval
from bench.analysis.tables import ok_rows

CAPTIONS = {
    "decoding_tradeoff": "Tokens/s of each decoding case (geometric mean over process runs, "
    "bar: its 95% interval) against the log-probability the unoptimized model "
    "gives its output (nats per sequence, mean over the quality prompts; further right: more "
    "likely text). Colour: strategy; marker: technique.",
}
STRATEGY_ORDER = ("greedy", "beam", "sample", "speculative", "prompt_lookup")
MARKERS = "os^Dv<>pP*"


def figures(df: pd.DataFrame, results) -> dict[str, Figure]:
    fig = tradeoff(df)
    return {} if fig is None else {"decoding_tradeoff": fig}


def _strategy(parameters: str) -> str:
    return json.loads(parameters).get("workload", {}).get("strategy", "greedy")


def short_labels(labels: list[str]) -> dict[str, str]:
    """Workload labels without the dash-separated parts they all share at either end."""

    def shared(parts: list[list[str]]) -> int:
        columns = zip(*parts, strict=False)  # up to the shortest label
        return sum(1 for _ in takewhile(lambda c: len(set(c)) == 1, columns))

    split = [label.split("-") for label in labels]
    head = shared(split)
    tail = shared([s[head:][::-1] for s in split])
    return {
        label: "-".join(s[head : len(s) - tail]) or "greedy"
        for label, s in zip(labels, split, strict=True)
    }


def _place_labels(ax, labels: list[tuple[float, float, str]]) -> None:
    """Labels of points at about the same log-probability (speculation reproduces greedy
    tokens exactly) stacked in a column beside them, each joined to its point."""
    if not labels:
        return
    xs = [x for x, _, _ in labels]
    span = (max(xs) - min(xs)) or 1.0
    gap = 0.05 * ax.get_ylim()[1]
    clusters: list[list[tuple[float, float, str]]] = []
    for item in sorted(labels):
        if clusters and item[0] - clusters[-1][0][0] < 0.03 * span:
            clusters[-1].append(item)
        else:
            clusters.append([item])
    for cluster in clusters:
        right = max(x for x, _, _ in cluster) + 0.02 * span
        floor = -float("inf")
        for x, y, text in sorted(cluster, key=lambda item: item[1]):
            floor = max(y, floor + gap)
            ax.annotate(text, (x, y), xytext=(right, floor), fontsize=7, va="center",
                        arrowprops=dict(arrowstyle="-", lw=0.4, color="0.6"))  # fmt: skip


def tradeoff(df: pd.DataFrame) -> Figure | None:
    """Per model decoded with more than one strategy: tokens/s against the output's
    log-probability under the unoptimized model, one point per case."""
    rows = ok_rows(df)
    rows = rows[rows.metric.isin(["throughput_tokens", "sequence_logprob"])]
    if rows.empty or "sequence_logprob" not in set(rows.metric):
        return None
    keys = ["model", "workload", "techniques"]
    per = rows.groupby([*keys, "metric"], sort=False).value.agg(list).unstack("metric").dropna()
    params = rows.groupby(keys, sort=False).parameters.first()
    strategies = {k: _strategy(v) for k, v in params.items()}
    models = [
        m
        for m in dict.fromkeys(per.index.get_level_values("model"))
        if len({s for k, s in strategies.items() if k[0] == m and k in per.index}) > 1
    ]
    if not models:
        return None
    fig = Figure(figsize=(8.5, 4.6 * len(models)), layout="constrained")
    axes = fig.subplots(len(models), 1, squeeze=False)[:, 0]
    for ax, model in zip(axes, models, strict=True):
        g = per.xs(model, level="model")
        names = short_labels(list(dict.fromkeys(g.index.get_level_values("workload"))))
        techniques = list(dict.fromkeys(g.index.get_level_values("techniques")))
        seen: set[str] = set()
        labels = []
        for (workload, technique), r in g.iterrows():
            strategy = strategies[(model, workload, technique)]
            colour = PALETTE[STRATEGY_ORDER.index(strategy) % len(PALETTE)]
            x, y = center(r.sequence_logprob), center(r.throughput_tokens)
            ci = center_interval(r.throughput_tokens)
            yerr = None if ci is None else [[max(y - ci[0], 0)], [max(ci[1] - y, 0)]]
            marker = MARKERS[techniques.index(technique) % len(MARKERS)]
            legend = f"{strategy} · {technique}"
            ax.errorbar([x], [y], yerr=yerr, fmt=marker, color=colour, ms=7, capsize=3,
                        label=None if legend in seen else legend)  # fmt: skip
            seen.add(legend)
            if technique == techniques[0]:
                labels.append((x, y, names[workload]))
        ax.set_xlabel("log-probability of the output under the unoptimized model [nats]")
        ax.set_ylabel("throughput [tokens/s]")
        ax.set_title(f"{model}: decoding strategies ({techniques[0]} labelled)", fontsize=10,
                     loc="left")  # fmt: skip
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.margins(x=0.15)
        _place_labels(ax, labels)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig
