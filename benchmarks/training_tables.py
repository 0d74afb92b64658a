"""The training and distillation tables of docs/findings.md, from run folders: every timed figure is
the geometric mean over process repeats with its 95% t interval (bench.analysis.stats),
ratios to the group's baseline carry theirs ("~": the interval holds 1, within noise), and
differences in held-out bits per byte carry a Welch t interval over the process runs.

    python benchmarks/training_tables.py results/<training run> results/<distill run>
"""

from __future__ import annotations

import sys

import numpy as np
from cells import difference, interval, median, ratio, row, spread

from bench import load_results
from bench.analysis import tables


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
    out = [row(head), row(["---"] * len(head))]
    for case_id, g in df.groupby("case_id", sort=False):

        def get(metric: str, case: str = case_id):
            return values.get((run, case, metric))

        steps = get("steps_to_target_loss")
        to_target = get("time_to_target_loss")
        out.append(row([
            g.techniques.iloc[0],
            f"{0 if steps is None else len(steps)}/{runs[case_id]}",
            spread(steps),
            interval(to_target),
            "1" if case_id == base else ratio(to_target, get("time_to_target_loss", base)),
            interval(get("step_median"), 1e3),
            median(get("optimizer_state_bytes"), ".2f", 1e-6),
            median(get("memory_train_peak_rss"), ".0f", 1e-6),
            median(get("heldout_bits_per_byte")),
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
    out = [row(head), row(["---"] * len(head))]
    for case_id, g in trained.groupby("case_id", sort=False):

        def get(metric: str, case: str = case_id):
            return values.get((run, case, metric))

        bits = get("heldout_bits_per_byte")
        out.append(row([
            g.techniques.iloc[0],
            f"{np.median(bits):.3f} ({min(bits):.3f}–{max(bits):.3f})",
            "0" if case_id == base else difference(bits, get("heldout_bits_per_byte", base)),
            median(get("kl_to_teacher")),
            median(get("top1_agreement_teacher")),
            "—" if get("speedup_vs_teacher") is None else interval(get("speedup_vs_teacher")),
            median(get("size_vs_teacher"), ".4f"),
            interval(get("step_median"), 1e3),
            median(get("teacher_time"), ".1f"),
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
