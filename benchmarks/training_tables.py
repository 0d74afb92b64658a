"""The README's training and distillation tables, from run folders: every timed figure is
the geometric mean over process repeats with its 95% t interval (bench.analysis.stats),
ratios to the group's baseline carry theirs ("~": the interval holds 1, within noise), and
differences in held-out bits per byte carry a Welch t interval over the process runs.

    python benchmarks/training_tables.py results/<training run> results/<distill run>
"""

from __future__ import annotations

import sys

import numpy as np

from bench import load_results
from bench.analysis import stats, tables


def _interval(v, scale: float = 1.0, digits: str = ".3g") -> str:
    if v is None or len(v) == 0:
        return "—"
    ci = stats.center_interval(v)
    mid = stats.center(v) * scale
    if ci is None:
        return f"{mid:{digits}}"
    return f"{mid:{digits}} [{ci[0] * scale:{digits}}, {ci[1] * scale:{digits}}]"


def _ratio(case, base) -> str:
    if case is None or base is None or len(case) == 0:
        return "—"
    r = stats.ratio(case, base)
    if not r.has_interval:
        return f"{r.value:.2f} (n/a)"
    return f"{r.value:.2f} [{r.low:.2f}, {r.high:.2f}]" + ("" if r.excludes_one() else " ~")


def _difference(case, base) -> str:
    if case is None or base is None:
        return "—"
    if np.ptp(case) == 0 and np.ptp(base) == 0:  # one seed's weights, the same in every run
        return f"{case[0] - base[0]:+.3f} (runs agree)"
    w = stats.welch(np.asarray(case), np.asarray(base))
    if not np.isfinite(w.se) or len(case) < stats.MIN_RUNS or len(base) < stats.MIN_RUNS:
        return f"{w.diff:+.3f}"
    lo, hi = w.interval() if w.se > 0 else (w.diff, w.diff)
    return f"{w.diff:+.3f} [{lo:+.3f}, {hi:+.3f}]" + ("" if lo > 0 or hi < 0 else " ~")


def _row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def _median(v, digits: str = ".3f", scale: float = 1.0) -> str:
    return "—" if v is None else f"{np.median(v) * scale:{digits}}"


def _range(v) -> str:
    if v is None:
        return "—"
    lo, hi = int(min(v)), int(max(v))
    return str(lo) if lo == hi else f"{lo}–{hi}"


def training(run_dir: str) -> str:
    df = load_results(run_dir)
    values = tables.run_values(df)
    rows = tables.ok_rows(df)
    (run,) = rows.run_id.unique()
    base = rows[rows.is_baseline].case_id.iloc[0]
    runs = df.groupby("case_id", sort=False).repeat.nunique()
    head = ["case", "reached", "steps to target", "time to target s [95%]",
            "× baseline [95%]", "step ms [95%]", "state MB", "peak RSS MB",
            "bits/byte"]  # fmt: skip
    out = [_row(head), _row(["---"] * len(head))]
    for case_id, g in df.groupby("case_id", sort=False):

        def get(metric: str, case: str = case_id):
            return values.get((run, case, metric))

        steps = get("steps_to_target_loss")
        to_target = get("time_to_target_loss")
        out.append(_row([
            g.techniques.iloc[0],
            f"{0 if steps is None else len(steps)}/{runs[case_id]}",
            _range(steps),
            _interval(to_target),
            "1" if case_id == base else _ratio(to_target, get("time_to_target_loss", base)),
            _interval(get("step_median"), 1e3),
            _median(get("optimizer_state_bytes"), ".2f", 1e-6),
            _median(get("memory_train_peak_rss"), ".0f", 1e-6),
            _median(get("heldout_bits_per_byte")),
        ]))  # fmt: skip
    return "\n".join(out) + "\n"


def distill(run_dir: str) -> str:
    df = load_results(run_dir)
    values = tables.run_values(df)
    rows = tables.ok_rows(df)
    (run,) = rows.run_id.unique()
    trained = rows[rows.workload.str.startswith("train")]
    base = trained[trained.is_baseline].case_id.iloc[0]
    head = ["student", "held-out bits/byte (range)", "− scratch [95%]", "KL to teacher",
            "top-1 with teacher", "speed-up over teacher [95%]", "size vs teacher",
            "step ms [95%]", "teacher s/run"]  # fmt: skip
    out = [_row(head), _row(["---"] * len(head))]
    for case_id, g in trained.groupby("case_id", sort=False):

        def get(metric: str, case: str = case_id):
            return values.get((run, case, metric))

        bits = get("heldout_bits_per_byte")
        out.append(_row([
            g.techniques.iloc[0],
            f"{np.median(bits):.3f} ({min(bits):.3f}–{max(bits):.3f})",
            "0" if case_id == base else _difference(bits, get("heldout_bits_per_byte", base)),
            _median(get("kl_to_teacher")),
            _median(get("top1_agreement_teacher")),
            "—" if get("speedup_vs_teacher") is None else _interval(get("speedup_vs_teacher")),
            _median(get("size_vs_teacher"), ".4f"),
            _interval(get("step_median"), 1e3),
            _median(get("teacher_time"), ".1f"),
        ]))  # fmt: skip
    for case_id in rows[rows.workload.str.startswith("eval")].case_id.unique():
        bits = values.get((run, case_id, "eval_bits_per_byte"))
        out.append(f"\nTeacher {case_id}: {np.median(bits):.3f} held-out bits/byte.")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    for path in sys.argv[1:]:
        df = load_results(path)
        print(distill(path) if df.case_id.str.contains("distill").any() else training(path))
        print(f"(`{path}`, {df.repeat.nunique()} process runs a case)\n")
