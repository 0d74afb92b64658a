"""Greedy decoding with a KV cache: time to first token, per-token decode latency, tokens/s.

Prefill and decode are timed inside the same loop (a clock read after the prefill has
finished on the device), not by subtracting two separate runs.
"""

from __future__ import annotations

import time

from pydantic import Field

from bench.registry import Params, register_workload
from bench.result import Metric, WorkloadOutput, summary_metrics
from bench.stats import summarize
from bench.telemetry.timer import METHOD
from bench.workloads import random_tokens


class GenerateParams(Params):
    batch: int = Field(1, ge=1, le=4096)  # sequences decoded together
    prompt_len: int = Field(32, ge=1, le=1_048_576)  # tokens prefilled before decoding
    new_tokens: int = Field(32, ge=1, le=1_048_576)  # tokens generated per sequence


def greedy_generate(model, prompt, new_tokens: int, sync, clock=time.perf_counter):
    """Decode ``new_tokens`` greedily; return (tokens, seconds to first token, step seconds)."""
    import torch

    batch, plen = prompt.shape
    cache = model.new_cache(batch)
    out = torch.empty(batch, new_tokens, dtype=prompt.dtype, device=prompt.device)
    t0 = clock()
    logits = model(prompt, cache, 0)
    tok = logits[:, -1].argmax(dim=-1, keepdim=True)
    out[:, :1] = tok
    sync()
    t_prev = clock()
    ttft = t_prev - t0
    steps: list[float] = []
    for i in range(1, new_tokens):
        logits = model(tok, cache, plen + i - 1)
        tok = logits[:, -1].argmax(dim=-1, keepdim=True)
        out[:, i : i + 1] = tok
        sync()
        now = clock()
        steps.append(now - t_prev)
        t_prev = now
    return out, ttft, steps


@register_workload(
    "generate",
    params=GenerateParams,
    label=lambda p: f"generate-b{p.batch}-p{p.prompt_len}-n{p.new_tokens}",
    headline="throughput_tokens",
    higher_is_better=True,
)
def run_generate(model, params: GenerateParams, ctx) -> WorkloadOutput:
    """Greedy decode of ``new_tokens`` after a random prompt, using the model's KV cache."""
    import torch

    if not hasattr(model, "new_cache"):
        raise TypeError(f"{type(model).__name__} has no KV cache (new_cache); generate needs one")
    limit = model.config.block_size
    if params.prompt_len + params.new_tokens > limit:
        raise ValueError(
            f"prompt_len + new_tokens = {params.prompt_len + params.new_tokens} exceeds the "
            f"model's block_size {limit}"
        )
    prompt = random_tokens(model, ctx, params.batch, params.prompt_len)
    totals, ttfts, steps = [], [], []
    with torch.inference_mode():
        for i in range(ctx.warmup + ctx.iterations):
            t0 = time.perf_counter()
            _, ttft, step = greedy_generate(model, prompt, params.new_tokens, ctx.sync)
            total = time.perf_counter() - t0
            totals.append(total)
            ttfts.append(ttft)
            if i >= ctx.warmup:
                steps.extend(step)
    w = ctx.warmup
    total_s, ttft_s = summarize(totals[w:]), summarize(ttfts[w:])
    generated = params.batch * params.new_tokens
    metrics = [
        *summary_metrics("latency", total_s, "s", METHOD),
        *summary_metrics("ttft", ttft_s, "s", METHOD),
        Metric(
            "throughput_tokens",
            generated / total_s["median"],
            "tokens/s",
            "batch*new_tokens/latency_median",
        ),
    ]
    samples = {
        "latency": {"unit": "s", "method": METHOD, "warmup": totals[:w], "values": totals[w:]},
        "ttft": {"unit": "s", "method": METHOD, "warmup": ttfts[:w], "values": ttfts[w:]},
    }
    if steps:
        step_s = summarize(steps)
        metrics += summary_metrics("decode_step", step_s, "s", METHOD)
        metrics.append(
            Metric(
                "decode_throughput_tokens",
                params.batch / step_s["median"],
                "tokens/s",
                "batch/decode_step_median",
            )
        )
        samples["decode_step"] = {"unit": "s", "method": METHOD, "warmup": [], "values": steps}
    return WorkloadOutput(metrics, samples=samples)
