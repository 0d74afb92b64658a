"""Which intra-op thread count gives steadier timings: all cores, or all but one (leaving
the harness, the sampler and the OS a core)? Alternates ``bench run`` of one case at each
setting ``--rounds`` times (each run: ``--repeats`` processes) and prints, per setting, the
process-to-process spread inside a run (pooled sd of log latency_median), the run-to-run
spread of run centers, and the median latency. docs/small-changes.md quotes the figures."""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.results import store

SUITE = """name = "threads-{threads}"
[run]
threads = {threads}
warmup = 3
iterations = 20
repeats = {repeats}
energy = false
idle_s = 0
[[models]]
name = "tinygpt-s"
[[workloads]]
name = "forward"
batch = 8
seq_len = 128
"""


def latencies(run: Path) -> list[float]:
    out = []
    for r in store.run_results(run):
        if r["status"] == "ok" and not store.is_count(r):
            out += [m["value"] for m in r["metrics"] if m["name"] == "latency_median"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    settings = sorted({cores, max(1, cores - 1)}, reverse=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-threads-"))
    runs: dict[int, list[list[float]]] = {t: [] for t in settings}
    for i in range(args.rounds):
        for t in settings if i % 2 == 0 else settings[::-1]:  # alternate the order
            suite = tmp / f"t{t}.toml"
            suite.write_text(SUITE.format(threads=t, repeats=args.repeats))
            root = tmp / f"results-{t}"
            subprocess.run([sys.executable, "-m", "bench", "run", str(suite), "--results",
                            str(root), "--no-report"], check=True, capture_output=True)  # fmt: skip
            runs[t].append(latencies(sorted(root.iterdir())[-1]))
        print(f"round {i + 1}/{args.rounds} done", flush=True)
    for t, rs in runs.items():
        logs = [np.log(r) for r in rs]
        df_w = sum(len(x) - 1 for x in logs)
        within = math.sqrt(sum(np.var(x, ddof=1) * (len(x) - 1) for x in logs) / df_w)
        centers = np.array([x.mean() for x in logs])
        between = centers.std(ddof=1)
        print(f"{t} thread(s): process sd {sd_text(within, df_w)} (pooled over {len(rs)} runs "
              f"of {args.repeats}), run-to-run sd of run centers "
              f"{sd_text(between, len(rs) - 1)}, median latency "
              f"{1e3 * math.exp(np.median(centers)):.2f} ms")  # fmt: skip


def sd_text(sd: float, df: int) -> str:
    """'7.8% [6.3, 10.2]': an sd of log values with its 95% chi-square interval."""
    from scipy import stats

    lo = sd * math.sqrt(df / stats.chi2.ppf(0.975, df))
    hi = sd * math.sqrt(df / stats.chi2.ppf(0.025, df))
    return f"{100 * sd:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


if __name__ == "__main__":
    main()
