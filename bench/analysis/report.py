"""Reports: Markdown and self-contained HTML per run, and an index across runs.

``bench report RESULTS... [--out DIR]`` writes reports/<suite>/<run_id>/report.md and
report.html (plots as PNG beside them, and embedded in the HTML), plus reports/index.html.
Every string that came from a user (suite names, descriptions, case ids, errors) is
escaped in HTML.
"""

from __future__ import annotations

import base64
import html
import json
import tomllib
from pathlib import Path
from typing import Any

import pandas as pd

from bench import atomic
from bench.analysis import plots, stats, tables
from bench.errors import UserError
from bench.filenames import path_component
from bench.results import store
from bench.results.metric_info import MODELLED_NOTE, is_modelled

AXES = [  # (metric, label) of what a reader asks "who won?" about
    ("latency_median", "fastest (latency)"),
    ("throughput_tokens", "highest throughput"),
    ("heldout_bits_per_byte", "best held-out quality"),
    ("state_dict_bytes", "smallest"),
    ("params_nonzero_fraction", "sparsest"),
    ("bandwidth_utilization", "closest to the memory roofline"),
    ("energy_per_token", "least energy per token"),
]
HEADLINE_METRICS = [
    "latency_median", "throughput_tokens", "ttft_median", "heldout_bits_per_byte",
    "kl_to_baseline", "top1_agreement", "params_total", "params_nonzero_fraction",
    "state_dict_bytes", "bandwidth_utilization", "memory_prefill_peak_rss", "energy_per_token",
]  # fmt: skip


RATIO_TITLE = "Ratio to the baseline case (95% interval over process repeats)"
RATIO_NOTE = (
    "Each case's metric over its baseline's (as measured: for a time, below 1 is faster), "
    "from the per-process figures of each side: the ratio of geometric means with a Welch "
    "t interval on log values (valid from 3 repeats a side; fewer give no interval). An "
    "interval that contains 1 means the difference is within noise. Deterministic figures "
    "(sizes, quality of fixed weights on fixed text) are exact when their runs agree."
)
OUTLIER_TITLE = "Outlying process repeats (kept in every figure)"


def run_dirs(paths: list[Path]) -> list[Path]:
    """Run folders (those holding a manifest) named by ``paths`` or found below them."""
    out: list[Path] = []
    for p in paths:
        if (p / store.MANIFEST).is_file():
            out.append(p)
        elif p.is_dir():
            out.extend(sorted(d for d in p.iterdir() if (d / store.MANIFEST).is_file()))
        else:
            raise UserError(f"{p}: no such results folder")
    if not out:
        raise UserError(
            f"no runs (folders with {store.MANIFEST}) under {', '.join(map(str, paths))}"
        )
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if pd.isna(value) else f"{value:.4g}"
    return "" if value is None else str(value)


def what_won(df: pd.DataFrame) -> list[str]:
    """One sentence per run, model and workload: who won on each axis, named only where
    the winner's interval over process repeats clears the runner-up's; energy that was
    modelled rather than measured names no winner."""
    rows = tables.ok_rows(df)
    groups: dict[tuple[str, str, str], list[str]] = {}
    for metric, label in AXES:
        here = rows[rows.metric == metric]
        if here.empty:
            continue
        if here.method.map(is_modelled).any():
            for key in here.groupby(["run_id", "model", "workload"], sort=False).groups:
                groups.setdefault(key, []).append(f"{label}: not ranked ({MODELLED_NOTE})")
            continue
        unit = here.unit.iloc[0]
        for key, w in tables.winners(df, metric).items():
            if w.runner_up is None:
                continue  # nothing to choose between
            text = w.describe()
            if w.best is not None:
                best = stats.center(here[(here.run_id == key[0]) & (here.model == key[1])
                                         & (here.workload == key[2])
                                         & (here.techniques == w.best)].value)  # fmt: skip
                shown = f"{best:.4g} {unit}" if unit != "1" else f"{best:.4g}"
                text = f"{w.best} ({shown}; {w.margin.describe()} vs {w.runner_up})"
            groups.setdefault(key, []).append(f"{label}: {text}")
    several = df.run_id.nunique() > 1
    return [
        f"{f'{run} — ' if several else ''}{model} / {workload} — " + "; ".join(parts) + "."
        for (run, model, workload), parts in groups.items()
    ]


def _figures(df: pd.DataFrame, results: list[dict[str, Any]]) -> dict[str, Any]:
    metrics = set(tables.ok_rows(df).metric)
    figs: dict[str, Any] = {}
    if {"throughput_tokens", "kl_to_baseline"} <= metrics:
        figs["speed_vs_quality"] = plots.speed_vs_quality(df)
    if df.techniques.str.startswith("prune").any():
        figs["pruning_levels"] = plots.level_curves(df)
    for metric in ("latency_median", "throughput_tokens"):
        if metric in metrics:
            figs[metric] = plots.metric_bars(df, metric)
    if "energy_per_token" in metrics:
        figs["energy_per_token"] = plots.energy_bars(df)
    for r in results[:3]:
        fig = plots.power_trace(r)
        if fig is not None:
            figs[f"power_{store.case_file_stem(r['case_id'], r['repeat'])}"] = fig
    return figs


def write_run_report(run_dir: Path, out_root: Path) -> Path:
    manifest = store.read_json(run_dir / store.MANIFEST)
    df = store.load_results(run_dir)
    results = [store.read_json(p) for p in sorted((run_dir / store.CASES).glob("*.json"))]
    suite = dict(manifest["suite"])
    try:
        suite["description"] = tomllib.loads(suite.get("text", "")).get("description", "")
    except tomllib.TOMLDecodeError:
        suite["description"] = ""
    # The manifest is a file anyone may have edited: its names never choose a path.
    out = out_root / path_component(str(suite["name"])) / path_component(str(manifest["run_id"]))
    out.mkdir(parents=True, exist_ok=True)
    env = manifest.get("environment", {})
    cases = tables.case_table(df, HEADLINE_METRICS)
    ratios = tables.ratio_table(df)
    problems = tables.problems_table(df)
    won = what_won(df)
    images = {}
    for name, fig in _figures(df, results).items():
        path = out / f"{name}.png"
        with atomic.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        images[name] = path
    facts = {
        "suite": f"{suite['name']} ({suite.get('path')})",
        "run": manifest["run_id"],
        "started": manifest.get("started"),
        "status": manifest.get("status"),
        "commit": f"{env.get('git', {}).get('commit')} (dirty: {env.get('git', {}).get('dirty')})",
        "hardware": f"{env.get('cpu_model')}, {env.get('cpu_count')} CPUs; GPU: "
        + (
            ", ".join(d.get("name") or "?" for d in env.get("gpu", {}).get("devices", [])) or "none"
        ),
        "software": f"Python {env.get('python')}, torch {env.get('torch')}, CUDA {env.get('cuda')}",
        "idle power": json.dumps(manifest.get("idle_power", {})),
    }
    ratio_view = _ratio_view(ratios)
    outliers = tables.outlier_table(df)[["case_id", "metric", "repeat", "value", "vs_median"]]
    _write_markdown(
        out / "report.md", suite, facts, won, cases, ratio_view, outliers, problems, images
    )
    _write_html(
        out / "report.html", suite, facts, won, cases, ratio_view, outliers, problems, images
    )
    return out / "report.html"


def _ratio_view(ratios: pd.DataFrame) -> pd.DataFrame:
    """Cases x metrics, each cell the ratio with its interval (or why there is none), and
    the number of runs on each side: one line per case."""
    if ratios.empty:
        return pd.DataFrame()
    cells = ratios.assign(cell=[tables.describe_ratio(r) for r in ratios.itertuples()])
    view = cells.pivot_table(index="case_id", columns="metric", values="cell", aggfunc="first")
    view = view[[m for m in dict.fromkeys(ratios.metric) if m in view.columns]]
    runs = cells.groupby("case_id").apply(
        lambda g: f"{g.n_case.max()} vs {g.n_base.max()}", include_groups=False
    )
    view.insert(0, "runs (case vs baseline)", runs)
    return view.reindex([c for c in dict.fromkeys(ratios.case_id)])


def _md_cell(value: Any) -> str:
    """A value as one Markdown table cell: a '|' or a line break would end the row."""
    text = _fmt(value).replace("\\", "\\\\").replace("|", "\\|")
    return " ".join(text.splitlines())


def _md_table(df: pd.DataFrame, index: bool = True) -> str:
    if df.empty:
        return "_none_\n"
    frame = df.reset_index() if index else df
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    sep = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = [
        "| " + " | ".join(_md_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join([head, sep, *body]) + "\n"


def _write_markdown(path, suite, facts, won, cases, ratios, outliers, problems, images) -> None:
    lines = [
        f"# {suite['name']}: {facts['run']}",
        "",
        suite.get("description") or "",
        "",
        "## Environment",
        "",
    ]
    lines += [f"- **{k}**: {v}" for k, v in facts.items()]
    lines += ["", "## What won", "", *(won or ["No group has two cases to compare."]), ""]
    lines += ["## Cases (median over repeats)", "", _md_table(cases)]
    lines += [
        f"## {RATIO_TITLE}",
        "",
        RATIO_NOTE,
        "",
        _md_table(ratios),
    ]
    lines += [f"## {OUTLIER_TITLE}", "", _md_table(outliers, index=False)]
    lines += ["## Failed or skipped", "", _md_table(problems, index=False)]
    lines += ["## Figures", ""] + [f"![{n}]({p.name})" for n, p in images.items()]
    atomic.write_text(path, "\n".join(lines) + "\n")


def _write_html(path, suite, facts, won, cases, ratios, outliers, problems, images) -> None:
    e = html.escape

    def table(df: pd.DataFrame, index: bool = True) -> str:
        if df.empty:
            return "<p><em>none</em></p>"
        return df.to_html(index=index, escape=True, float_format=lambda v: f"{v:.4g}", na_rep="n/a")

    imgs = "".join(
        f'<figure><img alt="{e(n)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{e(n)}</figcaption></figure>'
        for n, p in images.items()
    )
    env_items = "".join(f"<li><b>{e(k)}</b>: {e(str(v))}</li>" for k, v in facts.items())
    won_html = "".join(f"<p>{e(s)}</p>" for s in won) or "<p>No group has two cases to compare.</p>"
    title = f"{e(suite['name'])}: {e(facts['run'])}"
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px}"
        "img{max-width:100%}"
    )
    sections = [
        f"<h1>{title}</h1><p>{e(suite.get('description') or '')}</p>",
        f"<h2>Environment</h2><ul>{env_items}</ul>",
        f"<h2>What won</h2>{won_html}",
        f"<h2>Cases (median over repeats)</h2>{table(cases)}",
        f"<h2>{RATIO_TITLE}</h2><p>{e(RATIO_NOTE)}</p>" + table(ratios),
        f"<h2>{OUTLIER_TITLE}</h2>" + table(outliers, index=False),
        f"<h2>Failed or skipped</h2>{table(problems, index=False)}",
        f"<h2>Figures</h2>{imgs}",
    ]
    doc = (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(sections) + "\n</body></html>\n"
    )
    atomic.write_text(path, doc)


def write_index(out_root: Path) -> Path:
    rows = []
    for report in sorted(out_root.glob("*/*/report.html")):
        rows.append((report.parent.parent.name, report.parent.name, report.relative_to(out_root)))
    items = "".join(
        f'<li><a href="{html.escape(str(rel))}">{html.escape(s)} / {html.escape(r)}</a></li>'
        for s, r, rel in rows
    )
    path = out_root / "index.html"
    head = "<!doctype html><html><head><meta charset='utf-8'><title>reports</title></head>"
    atomic.write_text(path, f"{head}<body><h1>Reports</h1><ul>{items}</ul></body></html>\n")
    return path


def write_reports(paths: list[Path], out_root: Path = Path("reports")) -> list[Path]:
    written = [write_run_report(d, out_root) for d in run_dirs(paths)]
    write_index(out_root)
    return written
