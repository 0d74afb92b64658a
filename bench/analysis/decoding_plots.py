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
    "decoding_tradeoff": "Tokens/s of each decoding case (median over process runs, bar: 95% "
    "interval of the runs' geometric mean) against the log-probability the unoptimized model "
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


def tradeoff(df: pd.DataFrame) -> Figure | None:
    rows = ok_rows(df)
    rows = rows[rows.metric.isin(["throughput_tokens", "sequence_logprob"])]
    if rows.empty or "sequence_logprob" not in set(rows.metric):
        return None
    keys = ["model", "workload", "techniques"]
    per = rows.groupby([*keys, "metric"], sort=False).value.agg(list).unstack("metric").dropna()
    if per.empty:
        return None
    params = rows.groupby(keys, sort=False).parameters.first()
    models = list(dict.fromkeys(per.index.get_level_values("model")))
    fig = Figure(figsize=(8, 4.2 * len(models)), layout="constrained")
    axes = fig.subplots(len(models), 1, squeeze=False)[:, 0]
    for ax, model in zip(axes, models, strict=True):
        g = per.xs(model, level="model")
        names = short_labels(list(dict.fromkeys(g.index.get_level_values("workload"))))
        techniques = list(dict.fromkeys(g.index.get_level_values("techniques")))
        seen: set[str] = set()
        for (workload, technique), r in g.iterrows():
            strategy = _strategy(params[(model, workload, technique)])
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
                ax.annotate(names[workload], (x, y), textcoords="offset points",
                            xytext=(5, 4), fontsize=7)  # fmt: skip
        ax.set_xlabel("log-probability of the output under the unoptimized model [nats]")
        ax.set_ylabel("throughput [tokens/s]")
        ax.set_title(f"{model}: decoding strategies", fontsize=10, loc="left")
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig
