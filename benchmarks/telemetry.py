"""Are the harness's timings right, and what does its telemetry cost?

1. Timer fidelity: the harness's median (``time_calls``, one clock read per call) vs
   ``torch.utils.benchmark.Timer.blocked_autorange`` on matmuls from ~10 µs to ~100 ms,
   same thread count, interleaved round by round (alternating which goes first).
2. Telemetry overhead: forward-pass throughput of the smoke shape with full telemetry
   running (10 Hz sampler thread, codecarbon's tracker thread) vs none, interleaved.
   Without a GPU the sampler reads a fake NVML, so this measures the thread's cost on
   the CPU that runs the model, not NVML's own latency.

Run: ``nox -s fidelity`` or ``python benchmarks/telemetry.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.utils.benchmark as tb

from bench.models import TinyGPTOverrides, tinygpt_config
from bench.models.tinygpt import GPT
from bench.telemetry import nvml
from bench.telemetry.energy import CodecarbonMeter
from bench.telemetry.nvml import Nvml, NvmlUnavailable
from bench.telemetry.sampler import Sampler
from bench.telemetry.timer import PerfCounterClock, time_calls

THREADS = 2
SIZES = (48, 160, 512, 2048)  # square fp32 matmuls: ~12 µs, ~0.1 ms, ~2 ms, ~0.1 s here


def fidelity(rounds: int) -> None:
    print(f"## Timer fidelity: time_calls vs blocked_autorange ({rounds} interleaved rounds)")
    print(f"{'op':>16} {'harness':>12} {'torch Timer':>12} {'ratio':>7}")
    clock = PerfCounterClock()
    for n in SIZES:
        a = torch.randn(n, n)
        fn = lambda a=a: a @ a  # noqa: E731
        est = statistics.median(time_calls(fn, warmup=3, iterations=5, clock=clock).values)
        # Both sides measure for about the same time, and at least 10 calls.
        iterations = max(10, int(1.0 / est))
        min_run_time = iterations * est
        timer = tb.Timer("fn()", globals={"fn": fn}, num_threads=THREADS)
        results: dict[str, list[float]] = {"harness": [], "torch": []}
        for r in range(rounds):
            for side in ("harness", "torch") if r % 2 == 0 else ("torch", "harness"):
                if side == "harness":
                    s = time_calls(fn, warmup=3, iterations=iterations, clock=clock)
                    results[side].append(statistics.median(s.values))
                else:
                    results[side].append(timer.blocked_autorange(min_run_time=min_run_time).median)
        h, t = statistics.median(results["harness"]), statistics.median(results["torch"])
        print(f"{f'matmul {n}x{n}':>16} {h * 1e3:10.4f}ms {t * 1e3:10.4f}ms {h / t:7.3f}")


def overhead(rounds: int, seconds: float) -> None:
    print(f"\n## Telemetry overhead: forward b8 s128, {seconds:g} s windows, {rounds} rounds")
    try:
        gpu = Nvml().gpu(0)
        source = "NVML"
    except NvmlUnavailable:
        sys.path.insert(0, str(Path(__file__).parents[1]))
        from tests.fake_nvml import FakeNVML

        nvml.use_module(FakeNVML())
        gpu, source = Nvml().gpu(0), "fake NVML (no GPU here)"
    torch.manual_seed(0)
    model = GPT(tinygpt_config("s", TinyGPTOverrides())).eval()
    x = torch.randint(0, 256, (8, 128))

    def throughput() -> float:
        n, t0 = 0, time.perf_counter()
        with torch.inference_mode():
            while time.perf_counter() - t0 < seconds:
                model(x)
                n += 1
        return n / (time.perf_counter() - t0)

    def with_telemetry() -> float:
        meter = CodecarbonMeter("USA")
        meter.begin()
        with Sampler(gpu, hz=10):
            out = throughput()
        meter.end()
        return out

    throughput()  # warm-up
    runs: dict[str, list[float]] = {"bare": [], "full": []}
    for r in range(rounds):
        for side in ("bare", "full") if r % 2 == 0 else ("full", "bare"):
            runs[side].append(throughput() if side == "bare" else with_telemetry())
    b, f = statistics.median(runs["bare"]), statistics.median(runs["full"])
    print(f"sampler source: {source}")
    print(f"bare {b:.2f} calls/s, full telemetry {f:.2f} calls/s, ratio {f / b:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0, help="overhead window length")
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    fidelity(args.rounds)
    overhead(args.rounds * 2, args.seconds)


if __name__ == "__main__":
    main()
