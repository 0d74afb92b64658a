"""Do the verdicts keep their promise on real runs in their order?

``collect`` makes the data (about 12 minutes on the 2-core VM), back to back, in this order:

1. ``--calibration`` runs (8) of suites/verdicts.toml appended to the history "calibration"
   (what ``bench calibrate`` does): the between-run estimate a one-run-a-side verdict uses;
2. ``--runs`` runs (20) of the same suite, same code: every verdict between two of them is
   about identical code, so any REGRESSION or IMPROVED is false;
3. ``--slowed`` runs (4) of a commit whose built-in model sleeps half its forward time
   (benchmarks/slowed.py): a real +50%.

``analyse`` judges, with ``bench compare``'s rule, every ordered pair of the A/A runs (both
orders; adjacent and distant pairs apart), the same pairs with the candidate's times scaled
by 1 + tolerance/2 and 1 + tolerance (the boundary of item 4), 4 A/A runs against the 4
slowed ones, and the old rule (process runs pooled as if independent) beside them.

Run: ``python benchmarks/verdicts.py collect [--out DIR]`` then
``python benchmarks/verdicts.py analyse [--out DIR]``; writes verdicts.json under --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE = Path(__file__).resolve().parent.parent / "suites" / "verdicts.toml"


def bench_run(results: Path, *extra: str, code: Path | None = None) -> Path:
    """One ``bench run`` invocation of the suite (a fresh interpreter, as a user's is)."""
    import os

    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = str(code)
    before = set(results.glob("*/manifest.json"))
    cmd = [sys.executable, "-m", "bench", "run", str(SUITE), "--results", str(results),
           "--no-report", *extra]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, cwd=code or Path.cwd(), env=env)
    (new,) = set(results.glob("*/manifest.json")) - before
    return new.parent


def collect(args) -> None:
    from slowed import remove_worktree, slowed_worktree

    results = args.out / "runs"
    results.mkdir(parents=True, exist_ok=True)
    order = []

    def one(phase: str, *extra: str, code: Path | None = None) -> None:
        t0 = time.time()
        run = bench_run(results, *extra, code=code)
        order.append({"phase": phase, "run": run.name, "started": t0, "s": time.time() - t0})
        print(f"{phase:<12} {run.name}  {time.time() - t0:.1f} s", flush=True)
        (args.out / "order.json").write_text(json.dumps(order, indent=1))

    for _ in range(args.calibration):
        one("calibration", "--history", "calibration")
    for _ in range(args.runs):
        one("aa")
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "slowed"
        commit = slowed_worktree(0.5, tree)
        try:
            for _ in range(args.slowed):
                one("slowed", code=tree)
        finally:
            remove_worktree(tree)
    print(f"slowed commit {commit[:10]}; runs in {results}")


# --- analysis -------------------------------------------------------------------------

TIME_METRICS = {"latency_median", "ttft_median", "decode_step_median"}
TOLERANCE = 0.05


def extract(out: Path) -> dict:
    """The runs in order: phase, and per case and metric the process runs' values."""
    from bench.analysis.sides import load_side

    order = json.loads((out / "order.json").read_text())
    runs = []
    for entry in order:
        side = load_side([out / "runs" / entry["run"]])
        values = {f"{c}|{m}": next(iter(d.values())) for (c, m), d in side.values.items()}
        gates = {m: t.to_json() for m, t in (side.gates or {}).items()}
        runs.append({**entry, "values": values, "units": side.units,
                     "modelled": sorted(side.modelled), "gates": gates})  # fmt: skip
    return {"suite": SUITE.name, "runs": runs}


def side_of(runs: list[dict], factor: float = 1.0):
    """A ``Side`` of extracted runs as ``load_side`` reads their folders; the time metrics
    multiplied by ``factor`` (a known change on real noise)."""
    from bench.analysis.sides import Side
    from bench.results.metric_info import Tolerance

    first = runs[0]
    side = Side(paths=[r["run"] for r in runs], runs=[r["run"] for r in runs], suites={"v"})
    side.facts = {"machine": {"this VM"}}
    side.gates = {m: Tolerance(t["kind"], t["value"]) for m, t in first["gates"].items()}
    side.modelled = set(first["modelled"])
    for run in runs:
        for key, values in run["values"].items():
            case_id, metric = key.split("|")
            f = factor if metric in TIME_METRICS else 1.0
            for v in values:
                side.add_value(run["run"], case_id, metric, v * f, run["units"].get(metric))
    return side


def known_from(calibration: list[dict]):
    """What ``bench compare`` knows from the calibration runs (``analysis.drift``)."""
    from bench.analysis.drift import CALIBRATION, series_spread

    def known(case_id: str, metric: str, log: bool):
        key = f"{case_id}|{metric}"
        spread = series_spread([r["values"][key] for r in calibration if key in r["values"]],
                               log, CALIBRATION)  # fmt: skip
        return [] if spread is None else [spread]

    return known


def new_rule(base, cand, known) -> dict[tuple[str, str], str]:
    from bench.analysis.compare import compare

    return {(c, ch.metric): str(ch.verdict) for c, ch in compare(base, cand, known=known).rows}


def old_rule(old, base, cand) -> dict[tuple[str, str], str]:
    """``bench compare`` before the two-level model: every process run of a side pooled as
    if independent (Welch t, Holm over the comparison at 0.01, the estimate beyond the
    tolerance), the code of ``old_rules.OLD_REF``."""
    from bench.results.metric_info import DETERMINISTIC, HIGHER_IS_BETTER

    rows = []
    for case_id in base.cases:
        for metric, tol in base.gates.items():
            b, c = base.runs_of(case_id, metric), cand.runs_of(case_id, metric)
            if b is None or c is None or metric in base.modelled:
                continue
            flat_b, flat_c = [v for r in b for v in r], [v for r in c for v in r]
            rows.append((case_id, old.verdicts.change(flat_b, flat_c, metric,
                         HIGHER_IS_BETTER[metric], tol, metric in DETERMINISTIC)))  # fmt: skip
    decided = old.verdicts.decide([ch for _, ch in rows])
    return {(c, ch.metric): str(ch.verdict) for (c, _), ch in zip(rows, decided, strict=True)}


def analyse(data: dict) -> dict:
    """Every ordered pair of the A/A runs, both orders (adjacent and distant apart), blocks
    of 4 runs a side, the boundary (time metrics scaled by 1 + tolerance/2 and
    1 + tolerance), and the slowed runs: the share of comparisons with any REGRESSION (and
    any IMPROVED), new rule and old."""
    import random

    from old_rules import load

    old = load()
    runs = data["runs"]
    calib = [r for r in runs if r["phase"] == "calibration"]
    aa = [r for r in runs if r["phase"] == "aa"]
    slowed = [r for r in runs if r["phase"] == "slowed"]
    known = known_from(calib)

    def rates(pairs, factor=1.0, time_only=False) -> dict:
        counts = {rule: {"REGRESSION": 0, "IMPROVED": 0} for rule in ("new", "old")}
        for base_runs, cand_runs in pairs:
            base, cand = side_of(base_runs), side_of(cand_runs, factor)
            for rule, got in (
                ("new", new_rule(base, cand, known)),
                ("old", old_rule(old, base, cand)),
            ):
                kept = [v for (_, m), v in got.items() if not time_only or m in TIME_METRICS]
                for verdict in counts[rule]:
                    counts[rule][verdict] += verdict in kept
        return {"comparisons": len(pairs), **counts}

    k = len(aa)
    ordered = [(i, j) for i in range(k) for j in range(k) if i != j]
    one = {
        "every ordered pair": ordered,
        "adjacent (both orders)": [(i, j) for i, j in ordered if abs(i - j) == 1],
        "distant, 10+ runs apart (both orders)": [(i, j) for i, j in ordered if abs(i - j) >= 10],
        "100 random ordered pairs (seed 0)": random.Random(0).sample(ordered, 100),
    }
    blocks = [aa[i : i + 4] for i in range(0, k - 3, 4)]
    four = [
        (blocks[i], blocks[j]) for i in range(len(blocks)) for j in range(len(blocks)) if i != j
    ]
    out = {"calibration_runs": len(calib), "aa_runs": k, "slowed_runs": len(slowed),
           "aa": {f"one run a side, {name}": rates([([aa[i]], [aa[j]]) for i, j in pairs])
                  for name, pairs in one.items()}}  # fmt: skip
    out["aa"]["four runs a side, consecutive blocks (both orders)"] = rates(four)
    out["boundary"] = {}
    for change in (0.0, TOLERANCE / 2, TOLERANCE):
        label = f"+{100 * change:g}%"
        out["boundary"][f"one run a side, {label}"] = rates(
            [([aa[i]], [aa[j]]) for i, j in ordered], 1 + change, time_only=True)  # fmt: skip
        out["boundary"][f"four runs a side, {label}"] = rates(four, 1 + change, time_only=True)
    if len(slowed) >= 4:
        out["slowed"] = {
            "four a side (the last 4 A/A runs vs the 4 slowed)": rates([(aa[-4:], slowed[:4])],
                                                                       time_only=True),
            "one a side (every A/A run vs every slowed run)": rates(
                [([a], [s]) for a in aa for s in slowed], time_only=True),
        }  # fmt: skip
    return out


def print_tables(result: dict) -> None:
    print("| comparison | n | new: any REGRESSION | new: any IMPROVED | old: any REGRESSION "
          "| old: any IMPROVED |\n|---|---:|---:|---:|---:|---:|")  # fmt: skip
    for section in ("aa", "boundary", "slowed"):
        for name, r in result.get(section, {}).items():
            n = r["comparisons"]
            cells = [f"{r[rule][v]} ({100 * r[rule][v] / n:.1f}%)" for rule in ("new", "old")
                     for v in ("REGRESSION", "IMPROVED")]  # fmt: skip
            print(f"| {section}: {name} | {n} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["collect", "analyse"])
    ap.add_argument("--out", type=Path, default=Path("results/verdicts-benchmark"))
    ap.add_argument("--calibration", type=int, default=8)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--slowed", type=int, default=4)
    ap.add_argument("--data", type=Path, help="analyse this extract instead of --out's runs")
    ap.add_argument("--save", type=Path, help="write the runs' extract here (.json.gz)")
    args = ap.parse_args()
    if args.step == "collect":
        collect(args)
        return
    import gzip

    if args.data:
        with gzip.open(args.data, "rt") as f:
            data = json.load(f)
    else:
        data = extract(args.out)
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(args.save, "wt") as f:
            json.dump(data, f)
    result = analyse(data)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "verdicts.json").write_text(json.dumps(result, indent=1))
    print_tables(result)


if __name__ == "__main__":
    main()
