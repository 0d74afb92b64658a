"""Do the verdicts hold on real runs? False alarms (A/A) and power (a real +10%), for bench's
rule beside pytest-benchmark's ``--benchmark-compare-fail=min:5%`` and asv's rule.

1. Calibrate: one run of the forward case (tinygpt-s, batch 8 x 128 tokens) gives its
   median latency; the ``delay`` technique then sleeps 10% of it before each forward call.
2. Measure: ``--invocations`` separate ``bench run`` invocations of a two-case suite (the
   baseline and baseline+delay, ``--repeats`` each; the baseline brackets the delayed case),
   so that drift between invocations is in the data as it is in real use.
3. Resample ``--draws`` comparisons from the pooled process runs, disjoint on each side:
   - A/A: both sides from the baseline's runs; any flag is a false alarm;
   - power: the base from the baseline's runs, the candidate from the delayed case's.
   Rules, on ``latency_median``:
   - bench: ``verdicts.change`` + ``verdicts.decide`` (5% tolerance) with n process runs a side;
   - pytest-benchmark ``min:5%``: one run a side (a saved run vs a new one); flags when the
     candidate's fastest call is more than 5% slower than the base's fastest call;
   - asv (``asv continuous``/``compare`` defaults): two processes a side, their in-process
     samples pooled; flags when the ratio of medians passes 1.1 and a Mann-Whitney U
     test on the samples gives p < 0.002 (asv's ``_stats.is_different``).

Run: ``python benchmarks/gates.py [--invocations 24] [--out DIR]`` (about 5 minutes).
Prints the table the README shows and writes gates.json under --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.analysis import verdicts
from bench.results import store
from bench.results.metric_info import Tolerance

SUITE = """
name = "gates"
description = "A/A and power of the gates: tinygpt-s forward, with and without a calibrated delay"

[run]
threads = {threads}
warmup = 3
iterations = 20
repeats = {repeats}
energy = false
idle_s = 0
timeout_s = 120

[[models]]
name = "tinygpt-s"
weights = "pydoc"

[[workloads]]
name = "forward"
batch = 8
seq_len = 128

[[techniques]]
name = "baseline"
{delay}
"""
DELAY = '\n[[techniques]]\nname = "delay"\nseconds = {seconds:.6g}\n'
METRIC = "latency_median"
BENCH_N = (5, 10, 20)  # process runs per side for bench's rule
TOL = Tolerance("relative", 0.05)


def bench_run(suite_text: str, results: Path, work: Path) -> Path:
    suite = work / "gates.toml"
    suite.write_text(suite_text)
    before = set(results.glob("*"))
    cmd = [sys.executable, "-m", "bench", "run", str(suite), "--results", str(results),
           "--no-report"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    (run,) = set(results.glob("*")) - before
    return run


def runs_of(run_dir: Path) -> dict[str, list[dict]]:
    """technique label -> that case's process runs: the metric and the in-process samples."""
    out: dict[str, list[dict]] = {}
    for f in sorted((run_dir / store.CASES).glob("*.json")):
        r = store.read_json(f)
        if r["status"] != "ok":
            continue
        value = next(m["value"] for m in r["metrics"] if m["name"] == METRIC)
        label = r["case"]["techniques"][0]["label"]
        out.setdefault(label, []).append(
            {"value": value, "samples": r["samples"]["latency"]["values"]}
        )
    return out


def bench_rule(base: list[dict], cand: list[dict]) -> bool:
    ch = verdicts.change([r["value"] for r in base], [r["value"] for r in cand], METRIC, False, TOL)
    return verdicts.decide([ch])[0].verdict == verdicts.Verdict.REGRESSION


def pytest_benchmark_rule(base: dict, cand: dict) -> bool:
    return min(cand["samples"]) > 1.05 * min(base["samples"])


def asv_rule(base: list[dict], cand: list[dict]) -> bool:
    from scipy.stats import mannwhitneyu

    a = [x for r in base for x in r["samples"]]
    b = [x for r in cand for x in r["samples"]]
    ratio = float(np.median(b) / np.median(a))
    return ratio > 1.1 and mannwhitneyu(a, b, alternative="two-sided").pvalue < 0.002


def rates(base_pool, cand_pool, draws, rng, aa: bool) -> dict[str, float]:
    """Share of comparisons each rule flags; ``aa``: both sides drawn from ``base_pool``."""
    hits = {f"bench n={n}": 0 for n in BENCH_N}
    hits.update({"pytest-benchmark min:5%": 0, "asv": 0})
    for _ in range(draws):
        for n in BENCH_N:
            name = f"bench n={n}"
            base, cand = _draw(base_pool, cand_pool, n, rng, aa)
            hits[name] += bench_rule(base, cand)
        base, cand = _draw(base_pool, cand_pool, 1, rng, aa)
        hits["pytest-benchmark min:5%"] += pytest_benchmark_rule(base[0], cand[0])
        base, cand = _draw(base_pool, cand_pool, 2, rng, aa)
        hits["asv"] += asv_rule(base, cand)
    return {k: v / draws for k, v in hits.items()}


def _draw(base_pool, cand_pool, n, rng, aa):
    if aa:
        idx = rng.choice(len(base_pool), 2 * n, replace=False)
        return [base_pool[i] for i in idx[:n]], [base_pool[i] for i in idx[n:]]
    b = rng.choice(len(base_pool), n, replace=False)
    c = rng.choice(len(cand_pool), n, replace=False)
    return [base_pool[i] for i in b], [cand_pool[i] for i in c]


def measure(args, results: Path) -> None:
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        text = SUITE.format(repeats=3, delay="", threads=args.threads)
        calib = runs_of(bench_run(text, results, work))["baseline"]
        median = float(np.median([r["value"] for r in calib]))
        seconds = args.slowdown * median
        print(f"calibration: forward latency {median * 1e3:.2f} ms; delay {seconds * 1e3:.3f} ms")
        text = SUITE.format(
            repeats=args.repeats, delay=DELAY.format(seconds=seconds), threads=args.threads
        )
        for i in range(args.invocations):
            bench_run(text, results, work)
            print(f"invocation {i + 1}/{args.invocations}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--invocations", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=2, help="repeats per invocation")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--slowdown", type=float, default=0.10)
    ap.add_argument("--threads", type=int, default=2, help="torch threads per case process")
    ap.add_argument(
        "--reuse", action="store_true", help="analyse the runs already under --out/runs again"
    )
    ap.add_argument("--out", type=Path, default=Path("results/gates-benchmark"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    results = args.out / "runs"
    results.mkdir(parents=True, exist_ok=True)
    if not args.reuse:
        measure(args, results)
    base_pool: list[dict] = []
    cand_pool: list[dict] = []
    for run in sorted(results.iterdir()):
        got = runs_of(run)
        delayed = next((v for k, v in got.items() if k.startswith("delay")), [])
        if delayed:  # the calibration run has no delayed case: not part of the pools
            base_pool += got.get("baseline", [])
            cand_pool += delayed
    invocations = len(list(results.iterdir())) - 1  # less the calibration run
    base_values = np.array([r["value"] for r in base_pool])
    cand_values = np.array([r["value"] for r in cand_pool])
    realised = float(np.exp(np.log(cand_values).mean() - np.log(base_values).mean()) - 1)
    cv = float(np.std(np.log(base_values), ddof=1))
    aa = rates(base_pool, cand_pool, args.draws, rng, aa=True)
    power = rates(base_pool, cand_pool, args.draws, rng, aa=False)
    print(f"\nprocess runs: {len(base_pool)} baseline, {len(cand_pool)} delayed, from "
          f"{invocations} invocations; spread of the baseline's runs (sd of log) "
          f"{100 * cv:.1f}%; realised slowdown {100 * realised:+.1f}%")  # fmt: skip
    print(f"\n{'rule':<26} {'runs a side':>11} {'false alarms (A/A)':>19} {'power':>7}")
    sizes = {**{f"bench n={n}": n for n in BENCH_N}, "pytest-benchmark min:5%": 1, "asv": 2}
    for name in aa:
        print(f"{name:<26} {sizes[name]:>11} {100 * aa[name]:>18.1f}% {100 * power[name]:>6.1f}%")
    summary = {
        "invocations": invocations,
        "baseline_runs": len(base_pool),
        "delayed_runs": len(cand_pool),
        "baseline_spread_log_sd": cv,
        "realised_slowdown": realised,
        "draws": args.draws,
        "false_alarms": aa,
        "power": power,
        "runs_per_side": sizes,
    }
    (args.out / "gates.json").write_text(json.dumps(summary, indent=1))
    print(f"\nwrote {args.out / 'gates.json'}")


if __name__ == "__main__":
    main()
