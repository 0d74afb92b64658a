"""Evaluation on the held-out pydoc bytes: quality (loss, perplexity, bits per byte) at the
workload's own context length, as ``eval_*`` (``heldout_*`` is run.quality's, at 128), and
how fast the model scores text."""

from __future__ import annotations

from pydantic import Field

from bench.results.schema import EnergyWork, Metric, WorkloadOutput, series_metrics
from bench.spec.registry import Params, register_workload
from bench.telemetry.series import describe_series
from bench.telemetry.timer import time_calls
from bench.workloads import inference


class EvalParams(Params):
    seq_len: int = Field(128, ge=8, le=1_048_576)  # window length; windows do not overlap
    batch: int = Field(32, ge=1, le=65536)  # windows per forward pass
    timed_bytes: int = Field(8192, ge=256, le=10_000_000)  # held-out bytes per timed call


@register_workload(
    "eval",
    params=EvalParams,
    label=lambda p: f"eval-s{p.seq_len}",
    headline="eval_bits_per_byte",
)
def run_eval(model, params: EvalParams, ctx) -> WorkloadOutput:
    """Score the held-out split: quality on all of it, speed on its first ``timed_bytes``."""
    from bench.models.train import held_out_nats_per_byte
    from bench.workloads.quality import heldout_metrics

    if model.config.vocab_size != 256:
        raise ValueError(
            "eval scores the pydoc held-out bytes, so it needs a byte-level model (vocab 256); "
            f"this one has {model.config.vocab_size} tokens: use run.quality for agreement"
        )
    seq = min(params.seq_len, model.config.block_size)
    call = inference(lambda: held_out_nats_per_byte(model, seq, params.batch, params.timed_bytes))
    samples = time_calls(call, warmup=ctx.warmup, iterations=ctx.iterations, clock=ctx.clock)
    s = describe_series(samples.values)
    scored = params.timed_bytes // seq * seq
    metrics = [
        *heldout_metrics(model, seq, prefix="eval", windows=None),  # all of the split
        *series_metrics("latency", s, "s", samples.method),
        Metric(
            "throughput_tokens", scored / s["median"], "tokens/s", "scored_bytes/latency_median"
        ),
    ]
    return WorkloadOutput(
        metrics, samples={"latency": samples.to_json()}, energy=EnergyWork(call, {"tokens": scored})
    )
