"""The front of a ``bench tune`` study, judged with intervals.

The search's figures come from separate runs, one per trial, and the best of many noisy
trials is biased upward; so the points on (or near) the search's Pareto front are measured
again, together, in one run with more repeats. There every point shares one baseline and
one drift, and a point dominates another only where the intervals say so: at least as good
on every objective, and on one at least clearly better (the ratio of the two points' runs
excludes 1 for a time-like figure; a strictly better value for a size or quality figure).
Points neither dominates are both on the front, within noise of each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from bench.analysis import stats
from bench.results.metric_info import DETERMINISTIC


@dataclass
class Point:
    label: str  # "prune(amount=0.42) + quantize(scheme=int8_dynamic)"
    trial: int
    chain: list[dict[str, Any]]
    workload: dict[str, Any]
    search: dict[str, float]  # the trial's figures during the search
    runs: dict[str, list[float]] = field(default_factory=dict)  # re-measured, per metric
    base: dict[str, list[float]] = field(default_factory=dict)  # its baseline's runs
    run_id: str | None = None
    error: str | None = None

    def value(self, metric: str) -> tuple[float, float, float]:
        """(figure, low, high) as re-measured: the ratio to the baseline with its interval
        (time-like), else the center with its interval (NaN ends where there is none)."""
        case = self.runs.get(metric, [])
        if metric not in DETERMINISTIC:
            r = stats.ratio(case, self.base.get(metric, []))
            return r.value, r.low, r.high
        c = stats.center(case)
        ci = stats.center_interval(case)
        if ci is None and case and max(case) == min(case):
            ci = (c, c)  # a size or a quality figure that every run repeats exactly
        return (c, *(ci or (math.nan, math.nan)))


def describe_chain(chain: list[dict[str, Any]]) -> str:
    if not chain:
        return "baseline"
    parts = []
    for step in chain:
        params = ", ".join(f"{k}={_short(v)}" for k, v in step.items() if k != "name")
        parts.append(f"{step['name']}({params})" if params else step["name"])
    return " + ".join(parts)


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def pareto(figures: list[dict[str, float]], objectives) -> list[int]:
    """Indices of the points no other point beats on every objective (point figures)."""

    def better_or_equal(a, b, o):
        return a[o.metric] >= b[o.metric] if o.maximise else a[o.metric] <= b[o.metric]

    out = []
    for i, a in enumerate(figures):
        beaten = any(
            all(better_or_equal(b, a, o) for o in objectives)
            and any(b[o.metric] != a[o.metric] for o in objectives)
            for j, b in enumerate(figures)
            if j != i
        )
        if not beaten:
            out.append(i)
    return out


def clearly_better(a: Point, b: Point, objective) -> bool:
    m = objective.metric
    if m in DETERMINISTIC:
        va, vb = a.value(m)[0], b.value(m)[0]
        return va > vb if objective.maximise else va < vb
    if a.run_id == b.run_id:  # one run: the two points' runs compare directly
        r = stats.ratio(a.runs.get(m, []), b.runs.get(m, []))
        return r.excludes_one() and ((r.low > 1) if objective.maximise else (r.high < 1))
    (_, alo, ahi), (_, blo, bhi) = a.value(m), b.value(m)  # two runs: intervals apart
    return (alo > bhi) if objective.maximise else (ahi < blo)


def dominates(a: Point, b: Point, objectives) -> bool:
    def at_least(o):
        va, vb = a.value(o.metric)[0], b.value(o.metric)[0]
        return va >= vb if o.maximise else va <= vb

    return all(at_least(o) for o in objectives) and any(clearly_better(a, b, o) for o in objectives)


def feasible(p: Point, constraints) -> bool:
    return p.error is None and all(c.excess(p.value(c.metric)[0]) <= 0 for c in constraints)


def judge(points: list[Point], objectives, constraints) -> list[dict[str, Any]]:
    """Each re-measured point: feasible or not, on the front or dominated (by which)."""
    ok = [p for p in points if feasible(p, constraints)]
    out = []
    for p in points:
        row: dict[str, Any] = {"point": p, "feasible": p in ok, "dominated_by": None}
        if p in ok:
            row["dominated_by"] = next(
                (q.label for q in ok if q is not p and dominates(q, p, objectives)), None
            )
        row["front"] = row["feasible"] and row["dominated_by"] is None
        out.append(row)
    return out


def fell(p: Point, metric: str) -> float:
    """The re-measured figure over the search's, for a time-like figure (below 1 for a
    higher-is-better one: the search's figure was a lucky draw)."""
    if metric in DETERMINISTIC:
        return math.nan
    searched = p.search.get(metric, math.nan)
    return p.value(metric)[0] / searched if searched else math.nan


def axis_label(metric: str) -> str:
    from bench.results.metric_info import label

    return label(metric) + ("" if metric in DETERMINISTIC else " (× baseline)")


def format_value(p: Point, metric: str) -> str:
    v, lo, hi = p.value(metric)
    if math.isnan(v):
        return "n/a"
    core = f"{v:.3g}×" if metric not in DETERMINISTIC else f"{v:.4g}"
    if math.isnan(lo) or lo == hi:
        return core if not math.isnan(lo) or metric in DETERMINISTIC else f"{core} (no interval)"
    return f"{core} [{lo:.3g}, {hi:.3g}]"


def figure(trials: list[dict[str, Any]], judged: list[dict[str, Any]], objectives):
    """Left: the objectives' plane (every trial as searched; the re-measured points with
    their intervals, the front filled). Right: the first objective by trial, best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, hist) = plt.subplots(1, 2, figsize=(12, 4.8))
    x, y = objectives[0].metric, objectives[-1].metric
    done = [t for t in trials if t.get("figures") and not t.get("error")]
    met = [t for t in done if max(t["constraints"] or [0]) <= 0]
    broke = [t for t in done if t not in met]
    for group, style in (
        (met, {"marker": "o", "c": "0.6", "label": "trials (as searched)"}),
        (broke, {"marker": "x", "c": "C3", "label": "breaks a constraint"}),
    ):
        if group:
            ax.scatter(
                [t["figures"].get(x) for t in group],
                [t["figures"].get(y) for t in group],
                s=16,
                **style,
            )
    for row in judged:
        p = row["point"]
        (vx, xl, xh), (vy, yl, yh) = p.value(x), p.value(y)
        xerr = None if math.isnan(xl) else [[vx - xl], [xh - vx]]
        yerr = None if math.isnan(yl) else [[vy - yl], [yh - vy]]
        style = {"fmt": "o", "color": "C0" if row["front"] else "C1", "capsize": 3}
        if not row["front"]:
            style["mfc"] = "white"
        ax.errorbar([vx], [vy], xerr=xerr, yerr=yerr, **style)
        ax.annotate(str(p.trial), (vx, vy), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(axis_label(x))
    ax.set_ylabel(axis_label(y))
    ax.set_title("re-measured: front (filled), dominated (hollow), with 95% intervals", fontsize=10)
    ax.legend(fontsize=8)
    o = objectives[0]
    for group, style in ((met, {"marker": "o", "c": "C0"}), (broke, {"marker": "x", "c": "C3"})):
        hist.scatter(
            [t["number"] for t in group], [t["figures"].get(o.metric) for t in group], s=16, **style
        )
    xs, best, run = [], [], None
    for t in sorted(met, key=lambda t: t["number"]):
        v = t["figures"].get(o.metric)
        run = v if run is None else (max(run, v) if o.maximise else min(run, v))
        xs.append(t["number"])
        best.append(run)
    if xs:
        hist.step(xs, best, where="post", color="C1", label="best so far (meeting the constraints)")
        hist.legend(fontsize=8)
    hist.set_xlabel("trial")
    hist.set_ylabel(axis_label(o.metric) + ", as searched")
    fig.tight_layout()
    return fig


def importance_rows(study, objectives) -> tuple[list[str], list[list[str]], str]:
    """Optuna's parameter importances per objective (its default evaluator, which ranks
    what makes a target low: a maximised objective is negated), or why there are none."""
    import warnings

    import optuna

    header, by_objective = ["parameter"], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            for i, o in enumerate(objectives):
                header.append(o.metric)
                sign = -1.0 if o.maximise else 1.0
                target = lambda t, i=i, sign=sign: sign * t.values[i]  # noqa: E731
                by_objective.append(optuna.importance.get_param_importances(study, target=target))
        except (RuntimeError, ValueError, ZeroDivisionError) as e:
            return header, [], f"no importances: {e}"
    names = sorted({n for f in by_objective for n in f})
    rows = [[n, *(f"{f.get(n, 0.0):.2f}" for f in by_objective)] for n in names]
    note = "Importance of each searched parameter (Optuna's default evaluator; shares of 1)."
    few = [str(w.message) for w in caught if "less than 2 trials" in str(w.message)]
    if few:
        note += f" Rough: {len(few)} parameter(s) have choices tried fewer than twice."
    return header, rows, note


def _point_row(r: dict[str, Any], metrics: list[str]) -> list[str]:
    p = r["point"]
    falls = [f"{m}: {fell(p, m):.3g}×" for m in metrics if not math.isnan(fell(p, m))]
    if r["front"]:
        status = "front"
    elif r["feasible"]:
        status = f"dominated by {r['dominated_by']}"
    else:
        status = p.error or "breaks a constraint"
    values = [format_value(p, m) for m in metrics]
    return [str(p.trial), f"{p.label} ({status})", *values, ", ".join(falls) or "-"]


def _trial_row(t: dict[str, Any], metrics: list[str]) -> list[str]:
    config = describe_chain(t["chain"]) + (f" {t['workload']}" if t["workload"] else "")
    met = max(t["constraints"] or [0]) <= 0
    outcome = t.get("error") or t.get("stopped") or ("feasible" if met else "breaks a constraint")
    values = [f"{t['figures'].get(m, math.nan):.4g}" for m in metrics]
    return [str(t["number"]), config, *values, outcome]


def write_report(out_dir, suite, study, trials, judged, objectives, constraints, tuned):
    """``tune.md`` and ``tune.html`` (the front, the re-measured points, the trials,
    the parameters' importance, and the figure) under ``out_dir``; returns the HTML path."""
    from bench import atomic
    from bench.analysis.report import Table, write_html, write_markdown

    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = [o.metric for o in objectives]
    front = [f"trial {r['point'].trial}: {r['point'].label}" for r in judged if r["front"]]
    imp_header, imp_rows, imp_note = importance_rows(study, objectives)
    remeasured_note = (
        "All in one run, with more repeats than the search; intervals at 95%. A point is "
        "dominated only where the intervals say so."
    )
    trials_note = (
        "As searched: each trial's own run, its time-like figures relative to the baseline "
        "of that run."
    )
    sections = [
        Table(
            "Re-measured points",
            ["trial", "configuration", *map(axis_label, metrics), "fell on re-measurement"],
            [_point_row(r, metrics) for r in judged],
            note=remeasured_note,
        ),
        Table(
            "Trials",
            ["trial", "configuration", *metrics, "outcome"],
            [_trial_row(t, metrics) for t in trials],
            note=trials_note,
        ),
        Table("Parameter importance", imp_header, imp_rows, note=imp_note),
    ]
    goals = ", ".join(("max " if o.maximise else "min ") + o.metric for o in objectives)
    limits = ", ".join(f"{c.metric} {c.op} {c.bound:g}" for c in constraints) or "none"
    facts = [
        ("objectives", goals),
        ("constraints", limits),
        ("trials measured", str(len(trials))),
        ("tuned suite", str(tuned)),
    ]
    png = out_dir / "tune.png"
    fig = figure(trials, judged, objectives)
    with atomic.atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    images = {"tune": (png, "The objectives' plane and the search's history")}
    title = f"{suite.name} — tuned"
    doc = {"name": suite.name, "description": suite.description}
    won = [("front", front or ["no feasible point"])]
    write_markdown(out_dir / "tune.md", title, doc, facts, won, sections, images)
    write_html(out_dir / "tune.html", title, doc, facts, won, sections, images)
    return out_dir / "tune.html"
