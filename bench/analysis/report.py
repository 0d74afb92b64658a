"""Reports: Markdown and self-contained HTML per run, and an index across runs.

``bench report [RUN...] [--reports DIR]`` writes reports/<suite>/<run_id>/report.md and
report.html (plots as PNG beside them, and embedded in the HTML), plus reports/index.html.
The HTML pages are the templates ``report.html.j2`` and ``reports_index.html.j2``, rendered
with autoescaping (``document.render``): every string that came from a user, a plugin or a
file (suite names, descriptions, case ids, errors, units, the environment) is escaped.
"""

from __future__ import annotations

import base64
import tomllib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench import atomic
from bench.analysis import (
    decoding_plots,
    machines,
    plots,
    profiles,
    run_facts,
    scaling,
    stats,
    tables,
    training_plots,
)
from bench.analysis.document import md_table, render
from bench.analysis.units import human
from bench.errors import UserError
from bench.filenames import path_component
from bench.results import store
from bench.results.files import BadFile
from bench.results.metric_info import HIGHER_IS_BETTER, MODELLED_NOTE, is_modelled, label

AXES = [  # (metric, label) of what a reader asks "who won?" about
    ("latency_median", "fastest (latency)"),
    ("throughput_tokens", "highest throughput"),
    ("heldout_bits_per_byte", "best held-out quality"),
    ("state_dict_bytes", "smallest"),
    ("params_nonzero_fraction", "sparsest"),
    ("bandwidth_utilization", "closest to the memory roofline"),
    ("energy_per_token", "least energy per token"),
    ("time_to_target_loss", "fastest to target loss"),
    ("optimizer_state_bytes", "least optimizer state"),
    ("memory_train_peak_rss", "least memory (training, peak RSS)"),
    ("energy_to_target_loss", "least energy to target loss"),
]
HEADLINE_METRICS = [
    "latency_median", "instructions", "hw_instructions", "throughput_tokens", "ttft_median",
    "heldout_bits_per_byte", "kl_to_baseline", "top1_agreement", "params_total",
    "params_nonzero_fraction", "state_dict_bytes", "bandwidth_utilization",
    "memory_prefill_peak_over_runtime", "kv_cache_bytes", "memory_prefill_peak_rss",
    "energy_per_token",
    "step_median", "time_to_target_loss", "steps_to_target_loss", "loss_final",
    "optimizer_state_bytes", "memory_train_peak_rss", "kl_to_teacher", "speedup_vs_teacher",
    "sequence_logprob", "greedy_agreement", "continuation_bits_per_byte",
    "draft_acceptance_rate", "tokens_per_target_forward",
]  # fmt: skip


RATIO_TITLE = "Ratio to the baseline case (95% interval over process repeats)"
RATIO_NOTE = (
    "Each case's metric over its baseline's (as measured: for a time, below 1 is faster), "
    "from the per-process figures of each side: the ratio of geometric means with a Welch "
    "t interval on log values (valid from 3 repeats a side; fewer give no interval). An "
    "interval that contains 1 means the difference is within noise (uncoloured); green: "
    "better than the baseline beyond noise, red: worse. Deterministic figures (sizes, "
    "quality of fixed weights on fixed text) are exact when their runs agree."
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


def what_won(df: pd.DataFrame) -> list[str]:
    """One sentence per run, model and workload: who won on each axis, named only where
    the winner's interval over process repeats clears the runner-up's; energy that was
    modelled rather than measured names no winner."""
    return [f"{group} — " + "; ".join(parts) + "." for group, parts in won_by_group(df)]


def won_by_group(df: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """(run, model and workload) -> one statement per axis, as ``what_won`` says them."""
    rows = tables.ok_rows(df)
    groups: dict[tuple[str, str, str], list[str]] = {}
    for metric, axis in AXES:
        here = rows[rows.metric == metric]
        if here.empty:
            continue
        if here.method.map(is_modelled).any():
            for key in here.groupby(["run_id", "model", "workload"], sort=False).groups:
                groups.setdefault(key, []).append(f"{axis}: not ranked ({MODELLED_NOTE})")
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
                text = f"{w.best} ({human(best, unit)}; {w.margin.describe()} vs {w.runner_up})"
            groups.setdefault(key, []).append(f"{axis}: {text}")
    several = df.run_id.nunique() > 1
    return [
        (f"{f'{run} — ' if several else ''}{model} / {workload}", parts)
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
    for family in (training_plots, decoding_plots, scaling):
        figs.update(family.figures(df, results))
    for r in results[:3]:
        fig = plots.power_trace(r)
        if fig is not None:
            figs[f"power_{store.case_file_stem(r['case_id'], r['repeat'])}"] = fig
    return figs


FIGURE_CAPTIONS = {
    "speed_vs_quality": "Speed against quality: throughput (up is faster) against KL "
    "divergence from the baseline (left is closer); the line joins the cases no other "
    "case beats on both.",
    "pruning_levels": "Each metric across pruning levels, one line per pruning method; "
    "whiskers span the process runs.",
    "latency_median": "Latency per case: the geometric mean over process runs, whiskers from the "
    "fastest to the slowest run.",
    "throughput_tokens": "Throughput per case: the geometric mean over process runs, whiskers from "
    "the slowest to the fastest run.",
    "energy_per_token": "Energy per token per case.",
    **training_plots.CAPTIONS,
    **decoding_plots.CAPTIONS,
    **scaling.CAPTIONS,
    "where_the_time_went": profiles.CAPTION,
}


@dataclass
class Table:
    """A table of formatted text, rendered the same way to Markdown and HTML."""

    title: str
    header: list[str]
    rows: list[list[str]]
    classes: list[list[str]] | None = None
    note: str = ""


def write_run_report(run_dir: Path, out_root: Path) -> Path:
    manifest = store.read_manifest(run_dir)
    results = store.run_results(run_dir)
    df = store.results_frame(results)
    suite = dict(manifest["suite"])
    try:
        suite["description"] = str(tomllib.loads(suite["text"]).get("description", ""))
    except tomllib.TOMLDecodeError:
        suite["description"] = ""
    # The manifest is a file anyone may have edited: its names never choose a path.
    out = out_root / path_component(str(suite["name"])) / path_component(str(manifest["run_id"]))
    out.mkdir(parents=True, exist_ok=True)
    images = {}
    figs = _figures(df, results)
    if (fig := profiles.figure(run_dir)) is not None:
        figs["where_the_time_went"] = fig
    for name, fig in figs.items():
        path = out / f"{name}.png"
        with atomic.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        images[name] = (path, _caption(name, results))
    title = f"{suite['name']} — run {manifest['run_id']}"
    facts = run_facts.facts(manifest, results)
    won = won_by_group(df)
    sections = [
        ratio_section(tables.ratio_table(df)),
        *[Table(**s) for part in (scaling, machines) if (s := part.section(df, manifest))],
        *[Table(**s) for s in profiles.sections(run_dir, out)],
        cases_section(df),
        outlier_section(df),
        problems_section(df),
    ]
    write_markdown(out / "report.md", title, suite, facts, won, sections, images)
    write_html(out / "report.html", title, suite, facts, won, sections, images)
    return out / "report.html"


def _caption(name: str, results: list[dict[str, Any]]) -> str:
    if name in FIGURE_CAPTIONS:
        return FIGURE_CAPTIONS[name]
    for r in results:
        if name == f"power_{store.case_file_stem(r['case_id'], r['repeat'])}":
            return f"Power drawn over time by {r['case_id']} (run {r['repeat']}), as sampled."
    return name.replace("_", " ")


KEY_RATIOS = [
    "latency_median", "throughput_tokens", "ttft_median", "decode_step_median",
    "state_dict_bytes", "params_nonzero_fraction", "heldout_bits_per_byte",
    "bandwidth_utilization", "energy_per_token",
]  # fmt: skip


def ratio_section(ratios: pd.DataFrame) -> Table:
    """Cases x key metrics: each cell the ratio to the baseline with its interval, coloured
    where the interval clears 1 (green: better, red: worse); uncoloured is within noise."""
    ratios = ratios[ratios.metric.isin(KEY_RATIOS)]
    metrics = [m for m in KEY_RATIOS if m in set(ratios.metric)]
    header = ["case", "runs (case vs baseline)"] + [
        f"{label(m)} {'↑' if HIGHER_IS_BETTER[m] else '↓'}" for m in metrics
    ]
    rows, classes = [], []
    for case_id, g in ratios.groupby("case_id", sort=False):
        cells = {r.metric: r for r in g.itertuples()}
        row = [case_id, f"{g.n_case.max()} vs {g.n_base.max()}"]
        cls = ["", ""]
        for m in metrics:
            r = cells.get(m)
            row.append("—" if r is None else tables.describe_ratio(r))
            cls.append("" if r is None else _ratio_class(r, HIGHER_IS_BETTER[m]))
        rows.append(row)
        classes.append(cls)
    return Table(RATIO_TITLE, header, rows, classes, RATIO_NOTE)


def _ratio_class(r: Any, higher_is_better: bool) -> str:
    if pd.isna(r.ratio) or pd.isna(r.ci_low):
        return "muted"
    if r.ci_low > 1 or r.ci_high < 1:
        return "good" if (r.ci_low > 1) == higher_is_better else "bad"
    return ""


def cases_section(df: pd.DataFrame) -> Table:
    rows_ok = tables.ok_rows(df)
    metrics = [m for m in HEADLINE_METRICS if m in set(rows_ok.metric)]
    units = rows_ok.groupby("metric").unit.first()
    values = tables.run_values(df)
    header = ["case", "runs"] + [label(m) for m in metrics]
    rows = []
    for (run_id, case_id), _ in rows_ok.groupby(["run_id", "case_id"], sort=False):
        runs = [
            len(values[(run_id, case_id, m)]) for m in metrics if (run_id, case_id, m) in values
        ]
        row = [case_id, str(max(runs, default=0))]
        for m in metrics:
            v = values.get((run_id, case_id, m))
            row.append("—" if v is None else human(stats.center(v), units[m]))
        rows.append(row)
    note = "Each figure is the geometric mean over the case's process runs (repeats)."
    return Table("Cases", header, rows, note=note)


def outlier_section(df: pd.DataFrame) -> Table:
    o = tables.outlier_table(df)
    units = tables.ok_rows(df).groupby("metric").unit.first()
    rows = [[r.case_id, label(r.metric), f"r{r.repeat}", human(r.value, units.get(r.metric)),
             f"{r.vs_median:.2f}× the median", _disturbed_text(df, r.run_id, r.case_id, r.repeat)]
            for r in o.itertuples()]  # fmt: skip
    header = ["case", "metric", "run", "value", "vs the case's median", "disturbed"]
    return Table(OUTLIER_TITLE, header, rows)


def _disturbed_text(df: pd.DataFrame, run_id: str, case_id: str, repeat: int) -> str:
    rows = df[(df.run_id == run_id) & (df.case_id == case_id) & (df.repeat == repeat)
              & (df["pass"] != store.COUNT)]  # fmt: skip
    flag = rows.disturbed.iloc[0] if len(rows) else None
    return "not recorded" if flag is None or pd.isna(flag) else "yes" if flag else "no"


def problems_section(df: pd.DataFrame) -> Table:
    p = tables.problems_table(df)
    rows = [[r.case_id, f"r{r.repeat}", str(r.status),
             (r.error or "").splitlines()[0][:200] if isinstance(r.error, str) else ""]
            for r in p.itertuples()]  # fmt: skip
    return Table("Failed or skipped", ["case", "run", "status", "reason"], rows)


def write_markdown(path, title, suite, facts, won, sections, images) -> None:
    lines = [f"# {title}", "", suite.get("description") or "", "", "## Environment", ""]
    lines += [f"- **{k}**: {v}" for k, v in facts]
    lines += ["", "## What won", ""]
    for group, parts in won:
        lines += [f"**{group}**", "", *(f"- {p}" for p in parts), ""]
    if not won:
        lines += ["No group has two cases to compare.", ""]
    for t in sections:
        lines += [f"## {t.title}", ""]
        if t.note:
            lines += [t.note, ""]
        lines += [md_table(t.header, t.rows)]
    lines += ["## Figures", ""]
    for name, (p, caption) in images.items():
        lines += [caption, "", f"![{name}]({p.name})", ""]
    atomic.write_text(path, "\n".join(lines) + "\n")


def write_html(path, title, suite, facts, won, sections, images) -> None:
    figures = [
        {"caption": caption, "png_base64": base64.b64encode(p.read_bytes()).decode()}
        for p, caption in images.values()
    ]
    html = render(
        "report.html.j2",
        title=title,
        description=suite.get("description") or "",
        facts=facts,
        won=won,
        sections=sections,
        figures=figures,
    )
    atomic.write_text(path, html)


def write_index(out_root: Path) -> Path:
    reports = [
        (report.parent.parent.name, report.parent.name, report.relative_to(out_root).as_posix())
        for report in sorted(out_root.glob("*/*/report.html"))
    ]
    path = out_root / "index.html"
    atomic.write_text(path, render("reports_index.html.j2", title="reports", reports=reports))
    return path


def write_reports(paths: list[Path], out_root: Path = Path("reports")) -> list[Path]:
    written, unread = [], []
    for d in run_dirs(paths):
        try:
            written.append(write_run_report(d, out_root))
        except BadFile as e:  # the other runs' reports are still worth writing
            unread.append(e)
    if not written:
        first = unread[0]
        more = f" (and {len(unread) - 1} more runs)" if len(unread) > 1 else ""
        raise UserError(f"{first.why}{more}", where=first.path)
    for e in unread:
        warnings.warn(f"{e}; no report for this run", stacklevel=2)
    write_index(out_root)
    return written
