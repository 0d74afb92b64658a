"""Machines side by side (a run of ``bench merge --across-machines``): for each case, every
machine's tokens/s, J/token and, priced by the suite's ``[pricing]`` table, cost per million
tokens; which machine serves it fastest and cheapest is named only when the intervals over
process runs separate, else "within noise"."""

from __future__ import annotations

import math
import tomllib
from typing import Any

import pandas as pd

from bench.analysis import stats
from bench.analysis.tables import run_values
from bench.analysis.units import human
from bench.results.metric_info import is_modelled

SEPARATOR = "@"  # bench.run.machines: "<model>@<machine>/<workload>/<technique>"
THROUGHPUT, ENERGY = "throughput_tokens", "energy_per_token"


def pricing(manifest: dict[str, Any]) -> dict[str, float]:
    try:
        return tomllib.loads(manifest["suite"].get("text", "")).get("pricing", {})
    except tomllib.TOMLDecodeError:
        return {}


def split(case_id: str) -> tuple[str, str]:
    """(the case without its machine, the machine) of a machine-tagged case id."""
    model, _, rest = case_id.partition("/")
    base, _, name = model.rpartition(SEPARATOR)
    return f"{base}/{rest}", name


def machine_table(df: pd.DataFrame, prices: dict[str, float]) -> pd.DataFrame:
    values = run_values(df)
    energy_rows = df[df.metric == ENERGY]
    modelled = set(energy_rows[energy_rows.method.map(is_modelled).astype(bool)].case_id)
    rows = []
    for (run_id, case_id, metric), v in values.items():
        if metric != THROUGHPUT:
            continue
        case, name = split(case_id)
        interval = stats.center_interval(v)
        price = prices.get(name)
        energy = values.get((run_id, case_id, ENERGY))

        def cost(tps: float, price=price) -> float:
            return price / 3600 / tps * 1e6 if price else math.nan

        rows.append({
            "case": case, "machine": name, "runs": len(v), "values": v,
            "tps": stats.center(v), "tps_interval": interval,
            "j_per_token": stats.center(energy) if energy is not None else math.nan,
            "modelled": case_id in modelled,
            "cost": cost(stats.center(v)),
            "cost_interval": (cost(interval[1]), cost(interval[0])) if interval else None,
        })  # fmt: skip
    return pd.DataFrame(rows)


def _best(g: pd.DataFrame, column: str, interval: str, lowest: bool) -> str:
    """The machine whose interval clears every other's, or 'within noise'."""
    g = g[g[interval].notna()]
    if len(g) < 2:
        return "—"
    key = g[column].idxmin() if lowest else g[column].idxmax()
    top = g.loc[key]
    others = g.drop(index=key)
    if lowest:
        clear = all(top[interval][1] < low for low, _ in others[interval])
    else:
        clear = all(top[interval][0] > high for _, high in others[interval])
    return str(top.machine) if clear else "within noise"


def section(df: pd.DataFrame, manifest: dict[str, Any]) -> dict[str, Any] | None:
    if "machines" not in manifest:
        return None
    prices = pricing(manifest)
    table = machine_table(df, prices)
    if table.empty:
        return None
    header = ["case", "machine", "runs", "tokens/s [95%]", "vs first machine", "J/token",
              "cost per 1M tokens [95%]", "fastest", "cheapest"]  # fmt: skip
    rows = []
    for case, g in table.groupby("case", sort=False):
        first = g.iloc[0]
        fastest = _best(g, "tps", "tps_interval", lowest=False)
        cheapest = _best(g[g.cost.notna()], "cost", "cost_interval", lowest=True)
        for i, r in enumerate(g.itertuples()):
            rows.append([
                case if i == 0 else "", r.machine, str(r.runs),
                _with(r.tps, r.tps_interval, "tokens/s"),
                "—" if i == 0 else stats.ratio(r.values, first["values"]).describe(),
                human(r.j_per_token, "J/token") + (" (modelled)" if r.modelled else ""),
                _with(r.cost, r.cost_interval, ""),
                fastest if i == 0 else "", cheapest if i == 0 else "",
            ])  # fmt: skip
    priced = ", ".join(f"{k}: {v:g} per hour" for k, v in prices.items()) or "none"
    note = (
        "Machines: "
        + "; ".join(
            f"{name}: {_describe(m['machine'])}" for name, m in manifest["machines"].items()
        )
        + ". "
        "The same suite on each machine, each with its own baseline. tokens/s: geometric mean over "
        "process runs, with the 95% t interval of their geometric mean; 'vs first machine': "
        "stats.ratio over runs. Cost per 1M tokens = price of a machine-hour / 3600 / tokens/s "
        f"x 1e6, from the suite's [pricing] ({priced}); its interval is the throughput's. "
        "Fastest/cheapest are named only when that machine's interval clears every other's. "
        "J/token is marked where codecarbon modelled it (no energy counter on that machine)."
    )
    return {"title": "Machines compared", "header": header, "rows": rows, "note": note}


def _describe(facts: dict[str, Any]) -> str:
    gpus = ", ".join(facts.get("gpus") or []) or "no GPU"
    return f"{facts.get('cpu')}, {facts.get('cores')} cores, {gpus}, torch {facts.get('torch')}"


def _with(value: float, interval, unit: str) -> str:
    """'7k tokens/s [6.75k, 7.4k]': the point with its unit, the bounds in the same steps."""
    if math.isnan(value):
        return "—"
    text = human(value, unit) if unit else f"{value:.3g}"
    if not interval:
        return text
    low, high = (human(b, unit).split()[0] if unit else f"{b:.3g}" for b in interval)
    return f"{text} [{low}, {high}]"
