"""The fixed cost of ``bench run``: a one-case suite (tinygpt-s forward, 5 calls, no
energy) against ``python -c "import torch"``, alternated ``--pairs`` times; prints each
pair and the medians. docs/telemetry.md quotes the figures."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE = """name = "one"
[run]
warmup = 1
iterations = 5
energy = false
idle_s = 0
[[models]]
name = "tinygpt-s"
[[workloads]]
name = "forward"
"""


def seconds(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-start-"))
    suite = tmp / "one.toml"
    suite.write_text(SUITE)
    torch_s, bench_s = [], []
    for i in range(args.pairs):
        torch_s.append(seconds([sys.executable, "-c", "import torch"]))
        bench_s.append(seconds([sys.executable, "-m", "bench", "run", str(suite), "--results",
                                str(tmp / "results"), "--no-report"]))  # fmt: skip
        print(f"pair {i + 1}: import torch {torch_s[-1]:.2f} s, bench run {bench_s[-1]:.2f} s")
    t, b = statistics.median(torch_s), statistics.median(bench_s)
    beyond = sorted(y - x for x, y in zip(torch_s, bench_s, strict=True))
    print(f"median: import torch {t:.2f} s, bench run {b:.2f} s; bench run beyond import torch, "
          f"pair by pair: median {statistics.median(beyond):.2f} s, "
          f"range {beyond[0]:.2f}-{beyond[-1]:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
