"""Where the time went: the profiled passes of runs as pandas tables, each technique's
operators against its baseline's, and the report's section and figure.

A profiled pass (``bench.run.profiling``) measured a few calls under torch.profiler, in
its own process: its times carry the profiler's overhead (shown) and the noise of one
process, so the diff says which operators appeared, vanished or moved, and by how much
in that pass; whether the technique is faster is the timed verdicts' business.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from bench.analysis.units import human
from bench.results import store

TOP_OPERATORS = 6  # per case in the figure; the rest are grouped
DIFF_ROWS = 8  # operators per technique in the report's diff table
OUTSIDE = "outside operators (Python, dispatch, waiting)"
OP_COLUMNS = [
    "run_id", "case_id", "group", "operator", "calls_per_call", "self_us_per_call",
    "total_us_per_call", "self_share", "device_us_per_call", "flops_per_call",
    "memory_bytes_per_call", "input_shapes",
]  # fmt: skip


def _ok(runs: Iterable[Path]) -> list[tuple[Path, dict[str, Any]]]:
    return [(d, r) for d in runs for r in store.profiles(d) if r.get("status") == "ok"]


def load_operators(*runs: str | Path) -> pd.DataFrame:
    """One row per (run, case, operator) of every ok profiled pass under ``runs``."""
    rows = []
    for _, r in _ok(map(Path, runs)):
        for op in r["info"]["profile"]["operators"]:
            rows.append({"run_id": r.get("run_id"), "case_id": r["case_id"],
                         "group": _group(r), **op})  # fmt: skip
    return pd.DataFrame(rows, columns=OP_COLUMNS)


def load_profiles(*runs: str | Path) -> pd.DataFrame:
    """One row per profiled pass: its calls, wall time per call, the share operators
    explain, the profiler's overhead on the headline series, the trace's path; failed
    passes with their status and error."""
    rows = []
    for d in map(Path, runs):
        for r in store.profiles(d):
            p = (r.get("info") or {}).get("profile") or {}
            over = next(iter((p.get("overhead") or {}).values()), {})
            rows.append({
                "run_id": r.get("run_id"), "case_id": r["case_id"], "group": _group(r),
                "baseline": _is_baseline(r), "status": r.get("status"), "error": r.get("error"),
                "calls": p.get("calls"), "wall_us_per_call": p.get("wall_us_per_call"),
                "outside_us_per_call": p.get("outside_operators_us_per_call"),
                "explained_share": p.get("explained_share"),
                "overhead_ratio": over.get("ratio"),
                "gpu_idle_share": (p.get("device") or {}).get("idle_share"),
                "call_peak_bytes": _peak(p, "cpu"), "call_peak_device_bytes": _peak(p, "cuda"),
                "trace": str(d / store.PROFILES / p["trace"]) if p.get("trace") else None,
                "python": _flame(d, p.get("python")),
            })  # fmt: skip
    return pd.DataFrame(rows)


def _flame(run_dir: Path, python: dict[str, Any] | None) -> str | None:
    """The flame graph's path, or why there is none ("absent: ..."); None if not asked."""
    if not python:
        return None
    if python.get("flame_graph"):
        return str(run_dir / store.PROFILES / python["flame_graph"])
    return f"absent: {python.get('absent')}"


def _peak(profile: dict[str, Any], device: str) -> float | None:
    return ((profile.get("memory") or {}).get(device) or {}).get("median_peak_bytes")


def _group(r: dict[str, Any]) -> str:
    return r["case_id"].rsplit("/", 1)[0]  # model/workload: the group of bench.spec.suite


def _is_baseline(r: dict[str, Any]) -> bool:
    from bench.spec.suite import is_baseline

    return is_baseline([t["name"] for t in (r.get("case") or {}).get("techniques") or []])


def diff(base: pd.DataFrame, cand: pd.DataFrame) -> pd.DataFrame:
    """Operators of a candidate against a base (rows of ``load_operators`` for one case
    each): self time per call on each side, the change, and what happened to the operator
    (added, removed, slower, faster, same: within 5% or 1 µs), largest change first."""
    b = base.set_index("operator")["self_us_per_call"]
    c = cand.set_index("operator")["self_us_per_call"]
    out = pd.DataFrame({"base_us": b, "candidate_us": c})
    added, removed = out["base_us"].isna(), out["candidate_us"].isna()
    out = out.fillna(0.0)
    out["change_us"] = out["candidate_us"] - out["base_us"]

    def what(name, row) -> str:
        if added[name]:
            return "added"
        if removed[name]:
            return "removed"
        if abs(row.change_us) <= max(0.05 * row.base_us, 1.0):
            return "same"
        return "slower" if row.change_us > 0 else "faster"

    out["what"] = [what(name, r) for name, r in zip(out.index, out.itertuples(), strict=True)]
    out = out.reindex(out["change_us"].abs().sort_values(ascending=False).index)
    return out.reset_index().rename(columns={"index": "operator"})


def technique_diffs(ops: pd.DataFrame, passes: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(case, its baseline, diff) for every profiled technique case whose group's baseline
    was profiled in the same run."""
    out = []
    ok = passes[passes["status"] == "ok"]
    for (run, _), members in ok.groupby(["run_id", "group"], sort=False):
        bases = members[members["baseline"]]
        if bases.empty:
            continue
        base_id = bases["case_id"].iloc[0]
        base_ops = ops[(ops["run_id"] == run) & (ops["case_id"] == base_id)]
        for case_id in members.loc[~members["baseline"], "case_id"]:
            cand = ops[(ops["run_id"] == run) & (ops["case_id"] == case_id)]
            out.append((case_id, base_id, diff(base_ops, cand)))
    return out


def regression_notes(
    base_runs: list[Path], cand_runs: list[Path], case_ids: list[str], top: int = 5
) -> list[str]:
    """For each case slower beyond noise: both sides' profiles (the first run of each side
    that has one) and the operators whose self time changed most between them."""
    notes = []
    for case_id in case_ids:
        sides = [_first_profile(runs, case_id) for runs in (base_runs, cand_runs)]
        if None in sides:
            continue
        (bdir, bprof), (cdir, cprof) = sides
        d = diff(*(pd.DataFrame(p["info"]["profile"]["operators"],
                                columns=["operator", "self_us_per_call"])
                   for p in (bprof, cprof)))  # fmt: skip
        moved = ", ".join(f"{r.operator} {r.change_us / 1e3:+.3f} ms ({r.what})"
                          for r in d[d["what"] != "same"].head(top).itertuples())  # fmt: skip
        paths = [str(d_ / store.PROFILES / p["info"]["profile"]["trace"])
                 for d_, p in ((bdir, bprof), (cdir, cprof))]  # fmt: skip
        notes.append(f"{case_id}: operators that moved most per call (profiled passes): "
                     f"{moved or 'none beyond 5%'}; traces: base {paths[0]}, "
                     f"candidate {paths[1]}")  # fmt: skip
    return notes


def _first_profile(runs: list[Path], case_id: str) -> tuple[Path, dict[str, Any]] | None:
    for run in runs:
        path = store.profile_path(run, case_id)
        try:
            r = store.read_json(path)
        except (OSError, ValueError):
            continue
        if isinstance(r, dict) and r.get("status") == "ok":
            return run, r
    return None


def _ms(us: float | None) -> str:
    return "—" if us is None or pd.isna(us) else f"{us / 1e3:.3f}"


def _pct(x: float | None) -> str:
    return "—" if x is None or pd.isna(x) else f"{x:.0%}"


def sections(run_dir: Path, out_dir: Path) -> list[dict[str, Any]]:
    """The report's "Where the time went" tables (as ``document.Table`` keyword sets):
    what each case's operators explain, with a link to its trace, then each technique's
    operators against its baseline's."""
    from bench.analysis.document import Link

    passes = load_profiles(run_dir)
    if passes.empty:
        return []
    ops = load_operators(run_dir)
    rows = []
    for p in passes.itertuples():
        if p.status != "ok":
            rows.append([p.case_id, str(p.status), "—", "—", "—", "—", "—", "—",
                         (str(p.error or "") or "—").splitlines()[0][:120]])  # fmt: skip
            continue
        mine = ops[ops["case_id"] == p.case_id].head(3)
        top = ", ".join(f"{o.operator} {_pct(o.self_share)}" for o in mine.itertuples())
        link = Link("trace", os.path.relpath(p.trace, out_dir)) if p.trace else "—"
        if isinstance(p.python, str) and not p.python.startswith("absent"):
            link = [link, Link("flame graph", os.path.relpath(p.python, out_dir))]
        over = "—" if pd.isna(p.overhead_ratio) else f"{p.overhead_ratio:.2f}×"
        explained, outside = _pct(p.explained_share), _ms(p.outside_us_per_call)
        peak = p.call_peak_device_bytes if pd.notna(p.call_peak_device_bytes) else p.call_peak_bytes
        memory = "—" if pd.isna(peak) else human(peak, "bytes")
        rows.append([p.case_id, str(int(p.calls)), _ms(p.wall_us_per_call), explained, outside,
                     over, memory, link, top])  # fmt: skip
    out = [{
        "title": "Where the time went",
        "header": ["case", "calls", "ms/call (profiled)", "operators explain",
                   "outside operators ms", "profiler overhead", "tensor memory a call adds",
                   "trace", "top operators (self)"],
        "rows": rows,
        "note": (
            "One extra process per case under torch.profiler, after its timed runs: the "
            "operators' self times inside each timed call (of a generation, each prefill and "
            "decode step), per call. 'Operators explain' is "
            "the share of the profiled calls' wall time spent inside an operator; the rest "
            "is Python, dispatch and waiting. Profiler overhead: the profiled calls' median "
            "over the same process's unprofiled median. Tensor memory a call adds: the "
            "allocator's peak inside a call over its total when the call began (torch's own "
            "allocations: activations and temporaries; on a GPU, the device's), median over "
            "the calls. Traces open in ui.perfetto.dev or chrome://tracing."
        ),
    }]  # fmt: skip
    diffs = technique_diffs(ops, passes)
    if diffs:
        drows = []
        for case_id, _, d in diffs:
            for r in d[d["what"] != "same"].head(DIFF_ROWS).itertuples():
                drows.append([case_id, r.operator, r.what, _ms(r.base_us), _ms(r.candidate_us),
                              f"{r.change_us / 1e3:+.3f}"])  # fmt: skip
        out.append({
            "title": "Operators: each technique against its baseline",
            "header": ["case", "operator", "what", "baseline ms/call", "technique ms/call",
                       "change ms/call"],
            "rows": drows,
            "note": (
                f"Per technique, the {DIFF_ROWS} operators whose self time per call changed "
                "most against its group's baseline in the profiled pass (one process a side, "
                "profiler overhead included; 'same' rows, within 5% or 1 µs, left out). "
                "Which operators appear or vanish is exact; their times are one pass's."
            ),
        })  # fmt: skip
    return out


def figure(run_dir: Path):
    """A stacked bar per profiled case: its top operators' self time per call, the rest
    grouped, and the time outside operators; None without profiles."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    passes = load_profiles(run_dir)
    if passes.empty or not (passes["status"] == "ok").any():
        return None
    ops = load_operators(run_dir)
    ok = passes[passes["status"] == "ok"]
    totals = ops.groupby("operator")["self_us_per_call"].sum().sort_values(ascending=False)
    top = list(totals.index[:TOP_OPERATORS])
    cases = list(ok["case_id"])
    fig = Figure(figsize=(9, 0.5 * len(cases) + 2.2), layout="constrained")
    ax = fig.subplots()
    left = [0.0] * len(cases)
    colours = colormaps["tab10"]
    parts = [*top, "other operators", OUTSIDE]
    for i, name in enumerate(parts):
        widths = []
        for case_id, p in zip(cases, ok.itertuples(), strict=True):
            mine = ops[ops["case_id"] == case_id]
            if name == OUTSIDE:
                us = p.outside_us_per_call
            elif name == "other operators":
                us = mine.loc[~mine["operator"].isin(top), "self_us_per_call"].sum()
            else:
                us = mine.loc[mine["operator"] == name, "self_us_per_call"].sum()
            widths.append((us or 0.0) / 1e3)
        colour = "#bbbbbb" if name == OUTSIDE else "#dddddd" if i == len(top) else colours(i)
        ax.barh(cases, widths, left=left, label=name, color=colour)
        left = [a + w for a, w in zip(left, widths, strict=True)]
    ax.set_xlabel("ms per call (profiled pass)")
    ax.invert_yaxis()
    fig.legend(loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return fig


CAPTION = (
    "Where the time went: each case's profiled calls split by operator (self time per call; "
    "the top operators of the run, the rest grouped) and the time outside any operator."
)
