"""How much isolation costs, and whether an isolated case reports what the model really does.

1. Fixed cost per isolated case: wall time of a trivial case run through the fork-server
   launcher, minus the same case run inline; compared with a fresh interpreter per case
   (multiprocessing "spawn", which imports torch again each time).
2. Fidelity: the latency an isolated case reports for the smoke suite's forward and
   generate shapes against a plain in-process loop over the same model, interleaved
   round by round so machine drift hits both sides alike.

Run: ``nox -s isolation`` or ``python benchmarks/isolation.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench.models import TinyGPTOverrides, tinygpt_config
from bench.models.tinygpt import GPT
from bench.run import child as _child
from bench.run.case_process import InlineLauncher, ProcessLauncher
from bench.spec.suite import parse_suite
from bench.telemetry.timer import PerfCounterClock
from bench.workloads.generate import greedy_generate

THREADS = 2
# Energy windows (seconds of extra work after the timed calls) do not change latency.
RUN = (
    f"[run]\nthreads = {THREADS}\nenergy = false\n"
    "warmup = {warmup}\niterations = {iterations}\n"
)
TRIVIAL = (
    'name = "iso"\n'
    + RUN.format(warmup=0, iterations=1)
    + """
[[models]]
name = "tinygpt-s"
weights = "random"
n_layer = 1
n_embd = 16
n_head = 1
[[workloads]]
name = "selftest"
"""
)
SMOKE_SHAPES = (
    'name = "iso"\n'
    + RUN.format(warmup=3, iterations=20)
    + """
[[models]]
name = "tinygpt-s"
[[workloads]]
name = "forward"
batch = 8
seq_len = 128
[[workloads]]
name = "generate"
batch = 1
prompt_len = 32
new_tokens = 32
"""
)


def SpawnLauncher() -> ProcessLauncher:
    """A fresh interpreter per case: what isolation costs without a fork server."""
    return ProcessLauncher(method="spawn")


def per_case_seconds(launcher, case, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        result = launcher.run(case, 0, None, None, 120)
        out.append(time.perf_counter() - t0)
        assert result["status"] == "ok", result.get("error")
    return out


def plain_loop(case, warmup: int, iterations: int) -> float:
    """The reference: the same model and inputs timed by hand, no harness involved."""
    torch.manual_seed(case.run["seed"])
    model = GPT(tinygpt_config("s", TinyGPTOverrides())).eval()
    w = case.workload.params
    gen = torch.Generator().manual_seed(case.run["seed"])
    times = []
    with torch.inference_mode():
        if case.workload.name == "forward":
            x = torch.randint(0, 256, (w["batch"], w["seq_len"]), generator=gen)
            call = lambda: model(x)  # noqa: E731
        else:
            p = torch.randint(0, 256, (w["batch"], w["prompt_len"]), generator=gen)
            clock = PerfCounterClock()
            call = lambda: greedy_generate(model, p, w["new_tokens"], clock)  # noqa: E731
        for i in range(warmup + iterations):
            t0 = time.perf_counter()
            call()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds for fidelity")
    ap.add_argument("--cases", type=int, default=20, help="trivial cases per launcher")
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    # The reference loop gets the allocator settings every isolated case runs with, so
    # the comparison isolates the cost of isolation itself (see _child.steady_malloc).
    _child.steady_malloc()

    trivial = parse_suite(TRIVIAL).cases[0]
    fork = ProcessLauncher()
    t0 = time.perf_counter()
    per_case_seconds(fork, trivial, 1)
    first = time.perf_counter() - t0
    fork_s = per_case_seconds(fork, trivial, args.cases)
    inline_s = per_case_seconds(InlineLauncher(), trivial, args.cases)
    spawn_s = per_case_seconds(SpawnLauncher(), trivial, max(3, args.cases // 4))
    base = statistics.median(inline_s)
    print("## Fixed cost per isolated case (trivial case, median)")
    print(f"fork-server start, once per run:   {first:.3f} s (includes the first case)")
    print(f"fork server, per case:            {statistics.median(fork_s) - base:.3f} s")
    print(f"fresh interpreter (spawn), per case: {statistics.median(spawn_s) - base:.3f} s")

    print(
        f"\n## Fidelity: isolated case vs plain in-process loop ({args.rounds} interleaved rounds)"
    )
    for case in parse_suite(SMOKE_SHAPES).cases:
        iso, plain = [], []
        for _ in range(args.rounds):
            r = fork.run(case, 0, None, None, 120)
            iso.append(next(m["value"] for m in r["metrics"] if m["name"] == "latency_median"))
            plain.append(plain_loop(case, case.run["warmup"], case.run["iterations"]))
        ratio = statistics.median(iso) / statistics.median(plain)
        print(
            f"{case.workload.label:26s} isolated {statistics.median(iso) * 1e3:7.2f} ms   "
            f"in-process {statistics.median(plain) * 1e3:7.2f} ms   ratio {ratio:.3f}"
        )


if __name__ == "__main__":
    main()
