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
from bench.telemetry.timer import Samples, warm_up
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
    generate = inference(lambda: greedy_generate(model, prompt, params.new_tokens, clock))
    discarded, settled = warm_up(generate, ctx.warmup, clock)
    totals, ttfts, steps = [], [], []
    for _ in range(ctx.iterations):
        _, marks = generate()
        clock.finish()
        secs = [clock.seconds(a, b) for a, b in itertools.pairwise(marks)]
        totals.append(sum(secs))
        ttfts.append(secs[0])
        steps.extend(secs[1:])
    # One more generation, untimed, with memory windows around prefill and decode.
    inference(
        lambda: greedy_generate(
            model, prompt, params.new_tokens, clock, lambda n: ctx.memory.phase(n, ctx.sync)
        )
    )()

    def series(values: list[float], warmup: list[float]) -> Samples:
        policy = "auto" if ctx.warmup == "auto" else "fixed"
        return Samples(values, warmup, policy, settled, method=clock.method)

    series_by_name = {"latency": series(totals, discarded), "ttft": series(ttfts, [])}
    if steps:
        series_by_name["decode_step"] = series(steps, [])
    medians = {}
    metrics = []
    for name, s in series_by_name.items():
        summary = summarize(s.values)
        medians[name] = summary["median"]
        metrics += summary_metrics(name, summary, "s", s.method)
    generated = params.batch * params.new_tokens
    metrics.append(
        Metric(
            "throughput_tokens",
            generated / medians["latency"],
            "tokens/s",
            "batch*new_tokens/latency_median",
        )
    )
    if steps:
        metrics.append(
            Metric(
                "decode_throughput_tokens",
                params.batch / medians["decode_step"],
                "tokens/s",
                "batch/decode_step_median",
            )
        )
    samples = {name: s.to_json() for name, s in series_by_name.items()}
    return WorkloadOutput(
        metrics, samples=samples, energy=EnergyWork(generate, {"tokens": generated})
    )
