"""Greedy decoding with a KV cache: time to first token, per-token decode latency, tokens/s.

Prefill and decode are timed inside the same loop (clock marks after the prefill and
after every step: CUDA events on a GPU, so the queue is never drained mid-generation),
not by subtracting two separate runs.

Three runtimes, because in eager mode a decode step is mostly Python and kernel launches
and a technique's savings drown in them:

- ``eager``: the model's own cache (transformers: a DynamicCache that grows per token);
- ``static``: a preallocated cache of prompt + new tokens, positions passed as tensors;
- ``compiled``: ``static`` with the one-token step under ``torch.compile`` (CUDA graphs,
  ``mode="reduce-overhead"``, on a GPU; the default mode on a CPU), gpt-fast style. Its
  compile time is reported apart as ``compile_time``; a recompile fails the case.

Every case also reports the memory traffic of a decode step (weights + the KV cache it
reads) against the machine's measured copy bandwidth.
"""

from __future__ import annotations

import itertools
import statistics
from contextlib import nullcontext
from typing import Literal

from pydantic import Field

from bench.results.schema import EnergyWork, Metric, Traffic, WorkloadOutput, series_metrics
from bench.spec.registry import Params, register_workload
from bench.telemetry.series import describe_series
from bench.telemetry.timer import Samples, warm_up
from bench.workloads import inference, random_tokens


class GenerateParams(Params):
    batch: int = Field(1, ge=1, le=4096)  # sequences decoded together
    prompt_len: int = Field(32, ge=1, le=1_048_576)  # tokens prefilled before decoding
    new_tokens: int = Field(32, ge=1, le=1_048_576)  # tokens generated per sequence
    runtime: Literal["eager", "static", "compiled"] = "eager"


def _label(p: GenerateParams) -> str:
    label = f"generate-b{p.batch}-p{p.prompt_len}-n{p.new_tokens}"
    return label if p.runtime == "eager" else f"{label}-{p.runtime}"


def _no_phase(name: str):
    return nullcontext()


def greedy_generate(model, prompt, new_tokens: int, clock, phase=_no_phase, decoder=None):
    """Decode ``new_tokens`` greedily. Returns the tokens and the clock marks taken before
    the prefill, after it, and after each decode step; ``phase(name)`` wraps the prefill
    and the decode loop (memory windows). ``decoder`` (a ``StaticDecoder``) replaces the
    model's own growing cache with a static one."""
    import torch

    batch, plen = prompt.shape
    out = torch.empty(batch, new_tokens, dtype=prompt.dtype, device=prompt.device)
    with phase("prefill"):
        marks = [clock.mark()]
        if decoder is None:
            cache = model.new_cache(batch)
            tok = model(prompt, cache, 0)[:, -1].argmax(dim=-1, keepdim=True)
        else:
            tok = decoder.prefill(prompt)
        out[:, :1] = tok
        marks.append(clock.mark())
    with phase("decode"):
        for i in range(1, new_tokens):
            if decoder is None:
                tok = model(tok, cache, plen + i - 1)[:, -1].argmax(dim=-1, keepdim=True)
            else:
                tok = decoder.step(tok, plen + i - 1)
            out[:, i : i + 1] = tok
            marks.append(clock.mark())
    return out, marks


class StaticDecoder:
    """One preallocated KV cache for every generation of the case (its stale tail is
    masked by position, as in gpt-fast), positions as tensors, and optionally the
    one-token step compiled: same shapes and addresses on every step, so a CUDA graph
    can replay it."""

    def __init__(self, model, batch: int, max_len: int, device: str, compiled: bool, run_dir=None):
        import torch

        self.model = model
        self.cache = model.new_cache(batch, max_len)
        self.positions = torch.arange(max_len, device=device)
        self.cuda_graphs = compiled and device.startswith("cuda")
        self.mode = "reduce-overhead" if self.cuda_graphs else "default"
        self._step = self._decode_one
        self.inductor_cache = self.inductor_cache_state = None
        if compiled:
            from bench.techniques.compile import prepare_compile

            self.inductor_cache, self.inductor_cache_state = prepare_compile(run_dir)
            self._step = torch.compile(self._decode_one, mode=self.mode, fullgraph=True)

    def _decode_one(self, tok, pos):
        return self.model(tok, self.cache, pos)[:, -1].argmax(dim=-1, keepdim=True)

    def prefill(self, prompt):
        reset = getattr(self.cache, "reset", None)
        if reset is not None:  # transformers' StaticCache also counts its own length
            reset()
        positions = self.positions[: prompt.shape[1]]
        return self.model(prompt, self.cache, positions)[:, -1].argmax(dim=-1, keepdim=True)

    def step(self, tok, pos: int):
        import torch

        if self.cuda_graphs:
            # A new replay may overwrite the last one's outputs: mark the step, copy out.
            torch.compiler.cudagraph_mark_step_begin()
            return self._step(tok, self.positions[pos : pos + 1]).clone()
        return self._step(tok, self.positions[pos : pos + 1])


@register_workload(
    "generate",
    params=GenerateParams,
    label=_label,
    headline="throughput_tokens",
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
    max_len = params.prompt_len + params.new_tokens
    decoder = None
    if params.runtime != "eager":
        decoder = StaticDecoder(
            model,
            params.batch,
            max_len,
            ctx.device,
            compiled=params.runtime == "compiled",
            run_dir=ctx.run_dir,
        )
    generate = inference(
        lambda: greedy_generate(model, prompt, params.new_tokens, clock, decoder=decoder)
    )
    discarded, settled = warm_up(generate, ctx.warmup, clock)
    totals, ttfts, steps, all_steps = [], [], [], []
    for _ in range(ctx.iterations):
        _, marks = generate()
        clock.finish()
        secs = [clock.seconds(a, b) for a, b in itertools.pairwise(marks)]
        totals.append(sum(secs))
        ttfts.append(secs[0])
        if len(secs) > 1:
            # The generation is the unit: the steps of one generation share its cache
            # state and timing, so they are one sample (their median), not many.
            steps.append(statistics.median(secs[1:]))
            all_steps.extend(secs[1:])
    # One more generation, untimed, with memory windows around prefill and decode.
    inference(
        lambda: greedy_generate(
            model,
            prompt,
            params.new_tokens,
            clock,
            lambda n: ctx.memory.phase(n, ctx.sync),
            decoder,
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
        described = describe_series(s.values)
        medians[name] = described["median"]
        metrics += series_metrics(name, described, "s", s.method)
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
    if all_steps:
        samples["decode_step_all"] = series(all_steps, []).to_json()
    info = {"runtime": params.runtime}
    if params.runtime == "compiled":
        info.update(
            compile_mode=decoder.mode,
            inductor_cache=decoder.inductor_cache,
            inductor_cache_state=decoder.inductor_cache_state,
        )
    return WorkloadOutput(
        metrics,
        samples=samples,
        info=info,
        energy=EnergyWork(generate, {"tokens": generated}),
        traffic=decode_traffic(model, params) if steps else None,
        lazy_costs=("compile_time",) if params.runtime == "compiled" else (),
    )


def decode_traffic(model, params: GenerateParams) -> Traffic:
    """The KV cache one decode step reads, on average over the steps: a growing cache is
    read up to the current position; a static one whole, masked or not."""
    plen, n = params.prompt_len, params.new_tokens
    if params.runtime == "eager":
        # Steps at positions plen .. plen+n-2 read plen+1 .. plen+n-1 positions.
        positions, how = plen + n / 2, "mean over steps"
    else:
        positions, how = plen + n, "whole static cache"
    kv = params.batch * model.kv_bytes_per_token() * positions
    return Traffic(
        "decode_step_median",
        params.batch,
        kv,
        f"kv_cache_bytes ({how}, {positions:g} positions)",
    )
