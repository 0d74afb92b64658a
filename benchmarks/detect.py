"""The smallest slowdown each rule detects, on one CPU case's real runs.

On the 20 back-to-back A/A runs of ``benchmarks/data/verdicts_runs.json.gz`` (tinygpt-s
prefill b8 x s128, 5 process runs each; see benchmarks/verdicts.py), every ordered pair of
runs (both orders, 380) is judged with the candidate's latency multiplied by a factor (a
known change on real noise), by:

- bench compare, one run a side, its drift known from the 8 calibration runs;
- pytest-benchmark's ``--benchmark-compare-fail=min:5%`` (the sides' fastest process run);
- asv's rule (``asv compare``: slower by its factor 1.1 and different by its test, Mann-
  Whitney U at p < 0.002 or else 99% intervals that do not overlap, from asv_runner's
  ``compute_stats`` of the process runs).

For each factor: the share of pairs called a regression; at 1.0 that is the false-alarm
rate. The smallest factor reaching 95% is what each rule detects with one run a side.
``pip install asv asv_runner`` for the asv column (left out, with why, without them)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from verdicts import known_from, side_of

DATA = Path(__file__).parent / "data" / "verdicts_runs.json.gz"
CASE = "tinygpt-s-pydoc/forward-b8-s128/baseline"
METRIC = "latency_median"
FACTORS = (1.0, 1.05, 1.1, 1.2, 1.3, 1.5, 1.75, 2.0, 2.5, 3.0)


def bench_rule(base_run, cand_run, factor, known) -> bool:
    from bench.analysis.compare import compare
    from bench.results.metric_info import Tolerance

    base, cand = side_of([base_run]), side_of([cand_run], factor)
    gates = {METRIC: Tolerance("relative", 0.05)}
    rows = compare(base, cand, known=known, gates=gates).rows
    return any(c == CASE and str(ch.verdict) == "REGRESSION" for c, ch in rows)


def pytest_benchmark_rule(base: list[float], cand: list[float]) -> bool:
    return (min(cand) - min(base)) / min(base) * 100 > 5


def asv_rule(base: list[float], cand: list[float]) -> bool:
    from asv._stats import is_different
    from asv_runner.statistics import compute_stats

    b, b_stats = compute_stats(base, 1)
    c, c_stats = compute_stats(cand, 1)
    return is_different(base, cand, b_stats, c_stats) and b < c / 1.1


def main() -> None:
    data = json.loads(gzip.decompress(DATA.read_bytes()))
    aa = [r for r in data["runs"] if r["phase"] == "aa"]
    known = known_from([r for r in data["runs"] if r["phase"] == "calibration"])
    key = f"{CASE}|{METRIC}"
    pairs = [(i, j) for i in range(len(aa)) for j in range(len(aa)) if i != j]
    rules = {"bench compare (1 run a side, calibrated)": None, "pytest-benchmark min:5%": None}
    try:
        import asv._stats  # noqa: F401
        import asv_runner.statistics  # noqa: F401

        rules["asv compare (factor 1.1)"] = None
    except ImportError as e:
        print(f"asv left out: {e}")
    table = {}
    for f in FACTORS:
        called = dict.fromkeys(rules, 0)
        for i, j in pairs:
            base, cand = aa[i]["values"][key], [v * f for v in aa[j]["values"][key]]
            called["bench compare (1 run a side, calibrated)"] += bench_rule(aa[i], aa[j], f, known)
            called["pytest-benchmark min:5%"] += pytest_benchmark_rule(base, cand)
            if "asv compare (factor 1.1)" in rules:
                called["asv compare (factor 1.1)"] += asv_rule(base, cand)
        table[f] = {r: n / len(pairs) for r, n in called.items()}
        shown = "  ".join(f"{r}: {100 * v:5.1f}%" for r, v in table[f].items())
        print(f"x{f:<5g} {shown}", flush=True)
    for r in rules:
        hit = next((f for f in FACTORS if f > 1 and table[f][r] >= 0.95), None)
        shown = f"x{hit:g}" if hit else f"beyond x{FACTORS[-1]:g}"
        print(f"{r}: false alarms {100 * table[1.0][r]:.1f}% of {len(pairs)} ordered pairs; "
              f"95% detected from {shown}")  # fmt: skip
    print(json.dumps({"pairs": len(pairs), "called": {str(f): t for f, t in table.items()}}))


if __name__ == "__main__":
    main()
