"""Forward pass (prefill) latency and throughput at a fixed batch and sequence length."""

from __future__ import annotations

from pydantic import Field

from bench.results.schema import EnergyWork, Metric, Traffic, WorkloadOutput, series_metrics
from bench.spec.registry import Params, register_workload
from bench.telemetry.series import describe_series
from bench.telemetry.timer import time_calls
from bench.workloads import inference, random_tokens


class ForwardParams(Params):
    batch: int = Field(1, ge=1, le=65536)  # sequences per call
    seq_len: int = Field(128, ge=1, le=1_048_576)  # tokens per sequence


@register_workload(
    "forward",
    params=ForwardParams,
    label=lambda p: f"forward-b{p.batch}-s{p.seq_len}",
    headline="latency_median",
)
def run_forward(model, params: ForwardParams, ctx) -> WorkloadOutput:
    """One forward pass over ``batch`` x ``seq_len`` random tokens, no KV cache."""
    x = random_tokens(model, ctx, params.batch, params.seq_len)
    call = inference(lambda: model(x))
    samples = time_calls(call, warmup=ctx.warmup, iterations=ctx.iterations, clock=ctx.clock)
    with ctx.memory.phase("prefill", ctx.sync):
        call()
    s = describe_series(samples.values)
    tokens = params.batch * params.seq_len
    metrics = [
        *series_metrics("latency", s, "s", samples.method),
        Metric(
            "throughput_tokens", tokens / s["median"], "tokens/s", "batch*seq_len/latency_median"
        ),
        Metric(
            "throughput_samples", params.batch / s["median"], "samples/s", "batch/latency_median"
        ),
    ]
    return WorkloadOutput(
        metrics,
        samples={"latency": samples.to_json()},
        energy=EnergyWork(call, {"tokens": tokens, "samples": params.batch}),
        traffic=Traffic("latency_median", tokens),
    )
