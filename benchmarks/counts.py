"""Instruction counts: how far counts of unchanged code move between runs, what ~2% more
work does to them, and what counting costs. Runs ``bench run suites/counts.toml`` ``--runs``
times back to back (each run: one valgrind process counting both cases, then the timed
cases) and prints, per case, every run's count, the largest relative difference between two
runs, the ratio of the 131-token case to the 128-token one, and the counting server's start
and each case's counting time. The figures are quoted in docs/small-changes.md and in
bench/results/metric_info.py (RESOLUTION)."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.results import store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--suite", default="suites/counts.toml")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-counts-"))
    counts: dict[str, list[float]] = {}
    starts, seconds = [], []
    for i in range(args.runs):
        subprocess.run([sys.executable, "-m", "bench", "run", args.suite, "--results", str(root),
                        "--no-report"], check=True, capture_output=True)  # fmt: skip
        run = sorted(root.iterdir())[-1]
        starts.append(store.read_json(run / store.MANIFEST)["counters"]["server_start_s"])
        for r in store.run_results(run):
            if store.is_count(r) and r["status"] == "ok":
                value = {m["name"]: m["value"] for m in r["metrics"]}["instructions"]
                counts.setdefault(r["case_id"], []).append(value)
                seconds.append(r["wall_s"])
        print(f"run {i + 1}/{args.runs}: {run.name}", flush=True)
    for case, values in counts.items():
        spread = math.exp(max(map(math.log, values)) - min(map(math.log, values))) - 1
        shown = ", ".join(f"{v:,.0f}" for v in values)
        print(f"{case}: {shown} instructions per call; largest difference {100 * spread:.4f}%")
    small, large = sorted(counts, key=lambda c: min(counts[c]))
    ratio = min(counts[large]) / max(counts[small]), max(counts[large]) / min(counts[small])
    print(f"{large} / {small}: {ratio[0]:.4f}-{ratio[1]:.4f}")
    print(f"counting server start: {', '.join(f'{s:.1f}' for s in starts)} s; "
          f"counting a case: {min(seconds):.1f}-{max(seconds):.1f} s")  # fmt: skip
    print(json.dumps({"counts": counts, "server_start_s": starts, "case_s": seconds}))


if __name__ == "__main__":
    main()
