"""Greedy decoding with a KV cache: time to first token, per-token decode latency, tokens/s.

Prefill and decode are timed inside the same loop (clock marks after the prefill and
after every step: CUDA events on a GPU, so the queue is never drained mid-generation),
not by subtracting two separate runs.
"""

from __future__ import annotations

import itertools
from contextlib import nullcontext

from pydantic import Field

from bench.registry import Params, register_workload
from bench.result import EnergyWork, Metric, WorkloadOutput, summary_metrics
from bench.stats import summarize
from bench.workloads import inference, random_tokens


class GenerateParams(Params):
    batch: int = Field(1, ge=1, le=4096)  # sequences decoded together
    prompt_len: int = Field(32, ge=1, le=1_048_576)  # tokens prefilled before decoding
    new_tokens: int = Field(32, ge=1, le=1_048_576)  # tokens generated per sequence


def _no_phase(name: str):
    return nullcontext()


def greedy_generate(model, prompt, new_tokens: int, clock, phase=_no_phase):
    """Decode ``new_tokens`` greedily. Returns the tokens and the clock marks taken before
    the prefill, after it, and after each decode step; ``phase(name)`` wraps the prefill
    and the decode loop (memory windows)."""
    import torch

    batch, plen = prompt.shape
    out = torch.empty(batch, new_tokens, dtype=prompt.dtype, device=prompt.device)
    with phase("prefill"):
        marks = [clock.mark()]
        cache = model.new_cache(batch)
        logits = model(prompt, cache, 0)
        tok = logits[:, -1].argmax(dim=-1, keepdim=True)
        out[:, :1] = tok
        marks.append(clock.mark())
    with phase("decode"):
        for i in range(1, new_tokens):
            logits = model(tok, cache, plen + i - 1)
            tok = logits[:, -1].argmax(dim=-1, keepdim=True)
            out[:, i : i + 1] = tok
            marks.append(clock.mark())
    return out, marks


@register_workload(
    "generate",
    params=GenerateParams,
    label=lambda p: f"generate-b{p.batch}-p{p.prompt_len}-n{p.new_tokens}",
    headline="throughput_tokens",
    higher_is_better=True,
)
def run_generate(model, params: GenerateParams, ctx) -> WorkloadOutput:
    """Greedy decode of ``new_tokens`` after a random prompt, using the model's KV cache."""
    if not hasattr(model, "new_cache"):
        raise TypeError(f"{type(model).__name__} has no KV cache (new_cache); generate needs one")
    limit = model.config.block_size
    if params.prompt_len + params.new_tokens > limit:
        raise ValueError(
            f"prompt_len + new_tokens = {params.prompt_len + params.new_tokens} exceeds the "
            f"model's block_size {limit}"
        )
    prompt = random_tokens(model, ctx, params.batch, params.prompt_len)
    clock = ctx.clock
    runs = []
    generate = inference(lambda: greedy_generate(model, prompt, params.new_tokens, clock))
    warm = ctx.warmup if ctx.warmup != "auto" else 3  # whole generations: a few suffice
    for _ in range(warm + ctx.iterations):
        _, marks = generate()
        clock.finish()
        secs = [clock.seconds(a, b) for a, b in itertools.pairwise(marks)]
        runs.append((sum(secs), secs[0], secs[1:]))
    # One more generation, untimed, with memory windows around prefill and decode.
    inference(
        lambda: greedy_generate(
            model, prompt, params.new_tokens, clock, lambda n: ctx.memory.phase(n, ctx.sync)
        )
    )()
    totals, ttfts = [r[0] for r in runs], [r[1] for r in runs]
    steps = [s for r in runs[warm:] for s in r[2]]
    method = clock.method
    total_s, ttft_s = summarize(totals[warm:]), summarize(ttfts[warm:])
    generated = params.batch * params.new_tokens
    metrics = [
        *summary_metrics("latency", total_s, "s", method),
        *summary_metrics("ttft", ttft_s, "s", method),
        Metric(
            "throughput_tokens",
            generated / total_s["median"],
            "tokens/s",
            "batch*new_tokens/latency_median",
        ),
    ]
    policy = (
        "fixed" if ctx.warmup != "auto" else "fixed (3 generations; auto applies to single calls)"
    )
    samples = {
        "latency": {
            "unit": "s",
            "method": method,
            "warmup_policy": policy,
            "warmup": totals[:warm],
            "values": totals[warm:],
        },
        "ttft": {
            "unit": "s",
            "method": method,
            "warmup_policy": policy,
            "warmup": ttfts[:warm],
            "values": ttfts[warm:],
        },
    }
    if steps:
        step_s = summarize(steps)
        metrics += summary_metrics("decode_step", step_s, "s", method)
        metrics.append(
            Metric(
                "decode_throughput_tokens",
                params.batch / step_s["median"],
                "tokens/s",
                "batch/decode_step_median",
            )
        )
        samples["decode_step"] = {"unit": "s", "method": method, "warmup": [], "values": steps}
    return WorkloadOutput(
        metrics, samples=samples, energy=EnergyWork(generate, {"tokens": generated})
    )
