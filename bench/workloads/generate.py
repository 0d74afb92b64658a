"""Decoding: time to first token, per-token decode latency, tokens/s, for a strategy.

Prefill and decode are timed inside the same loop (clock marks after the prefill and
after every step: CUDA events on a GPU, so the queue is never drained mid-generation),
not by subtracting two separate runs.

Strategies (bench.workloads.strategies): ``greedy``, ``sample``, ``beam``,
``speculative`` (a draft model proposes, the target checks) and ``prompt_lookup``, each
with or without the KV cache (``kv_cache = false`` shows what the cache saves). With
``run.quality`` each case also judges its output (bench.workloads.decode_quality).

Three runtimes, because in eager mode a decode step is mostly Python and kernel launches
and a technique's savings drown in them:

- ``eager``: the model's own cache (transformers: a DynamicCache that grows per token);
- ``static``: a preallocated cache of prompt + new tokens, positions passed as tensors;
- ``compiled``: ``static`` with the one-token step under ``torch.compile`` (CUDA graphs,
  ``mode="reduce-overhead"``, on a GPU; the default mode on a CPU), gpt-fast style. Its
  compile time is reported apart as ``compile_time``; a recompile fails the case.

Greedy and sampling run on all three; the other strategies change shapes step to step
and run eager (``skipped`` with the reason otherwise). Every stepwise case also reports
the memory traffic of a decode step (weights + the KV cache it reads) against the
machine's measured copy bandwidth.
"""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from bench.errors import UnsupportedHere
from bench.results.schema import EnergyWork, Metric, Traffic, WorkloadOutput, series_metrics
from bench.spec.registry import Params, register_workload
from bench.telemetry.series import describe_series
from bench.telemetry.timer import Samples, warm_up
from bench.workloads import inference, random_tokens
from bench.workloads.decoding import StaticDecoder, greedy_generate
from bench.workloads.kv_cache import cache_size
from bench.workloads.strategies import (
    STRATEGIES,
    Generation,
    Setup,
    eager_decoder,
    pick,
    runner,
    unsupported,
)

__all__ = ["GenerateParams", "StaticDecoder", "greedy_generate", "run_generate"]


class GenerateParams(Params):
    batch: int = Field(1, ge=1, le=4096)  # sequences decoded together
    prompt_len: int = Field(32, ge=1, le=1_048_576)  # tokens prefilled before decoding
    new_tokens: int = Field(32, ge=1, le=1_048_576)  # tokens generated per sequence
    runtime: Literal["eager", "static", "compiled"] = "eager"
    strategy: str = "greedy"  # a name of bench.workloads.strategies.STRATEGIES
    kv_cache: bool = True  # false: every step recomputes the whole sequence
    # "heldout": prompts cut from the built-in model's held-out text (the true continuation
    # is then known); "random": random token ids (any model).
    prompt: Literal["random", "heldout"] = "random"
    quality_prompts: int = Field(4, ge=1, le=1024)  # prompts judged per case (run.quality)
    # beam
    num_beams: int = Field(4, ge=1, le=64)
    length_penalty: float = Field(1.0, ge=-10, le=10)  # score / length ** penalty
    early_stopping: bool = False  # stop at num_beams finished beams (needs an end token)
    # sample
    temperature: float = Field(1.0, gt=0, le=100)
    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int = Field(0, ge=0)  # each generation reseeds its own generator with it
    # speculative (draft) and prompt_lookup
    draft: dict[str, Any] | None = None  # a registry model entry; None: see workloads.drafts
    num_draft_tokens: int = Field(4, ge=1, le=64)  # proposals per target forward pass

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, v: str) -> str:
        from bench.workloads.hf_decoding import UNSUPPORTED, UNSUPPORTED_WHY

        if v in UNSUPPORTED:
            raise ValueError(f"{v!r}: " + UNSUPPORTED_WHY.format(what=UNSUPPORTED[v]))
        if v not in STRATEGIES:
            raise ValueError(f"unknown strategy {v!r}; known: {', '.join(STRATEGIES)}")
        return v

    @field_validator("draft")
    @classmethod
    def _draft_model(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        from bench.spec.registry import normal_model_entry

        return None if v is None else normal_model_entry(v)

    @model_validator(mode="after")
    def _keys_of_the_strategy(self):
        strategy = STRATEGIES[self.strategy]
        fields = type(self).model_fields
        for other in STRATEGIES.values():
            for key in set(other.keys) - set(strategy.keys):
                # Against the default, not the keys set: a case's stored params hold all.
                if getattr(self, key) != fields[key].default:
                    raise ValueError(
                        f"{key!r} belongs to strategy {other.name!r}, not {self.strategy!r}"
                    )
        if strategy.batch_one and self.batch != 1:
            raise ValueError(f"strategy {self.strategy!r} decodes one sequence: batch must be 1")
        return self


def _label(p: GenerateParams) -> str:
    parts = [f"generate-b{p.batch}-p{p.prompt_len}-n{p.new_tokens}"]
    if p.runtime != "eager":
        parts.append(p.runtime)
    parts += STRATEGIES[p.strategy].label(p)
    if not p.kv_cache:
        parts.append("nocache")
    if p.prompt != "random":
        parts.append(p.prompt)
    return "-".join(parts)


def _check(p: GenerateParams, case) -> str | None:
    from bench.spec import registry

    entry = registry.models.get(case.model.name)
    trained = entry.meta.get("trained_context", lambda params: None)(
        entry.params.model_validate(case.model.params)
    )
    if trained is not None and p.prompt_len + p.new_tokens > trained:
        return (
            f"{case.model.label} was trained on {trained}-token windows: positions past "
            f"{trained} are untrained, so prompt_len + new_tokens = "
            f"{p.prompt_len + p.new_tokens} would decode noise; keep it within {trained}"
        )
    byte_level = entry.meta.get("byte_level", False)
    if p.prompt == "heldout" and not byte_level:
        return f"prompt = 'heldout' needs the built-in byte-level model, not {case.model.label}"
    if "draft" in STRATEGIES[p.strategy].keys and p.draft is None and not byte_level:
        return (
            f"speculative decoding of {case.model.label} needs a draft model with its "
            "vocabulary: draft = { name = ... }"
        )
    return None


def _draft_models(p: GenerateParams):
    from bench.spec.registry import model_entry
    from bench.workloads.drafts import DEFAULT_DRAFT

    if "draft" not in STRATEGIES[p.strategy].keys:
        return []
    return [model_entry(p.draft or DEFAULT_DRAFT)]


@register_workload(
    "generate",
    params=GenerateParams,
    label=_label,
    headline="throughput_tokens",
    check=_check,
    models=_draft_models,
    cuda_graphs=lambda p: p.runtime == "compiled",
)
def run_generate(model, params: GenerateParams, ctx) -> WorkloadOutput:
    """Decode ``new_tokens`` after a prompt with the strategy of ``params``."""
    p = params
    if not hasattr(model, "new_cache"):
        raise TypeError(f"{type(model).__name__} has no KV cache (new_cache); generate needs one")
    limit = model.config.block_size
    strategy = STRATEGIES[p.strategy]
    extra = p.num_draft_tokens if "num_draft_tokens" in strategy.keys else 0
    if p.prompt_len + p.new_tokens + extra > limit:
        raise ValueError(
            f"prompt_len + new_tokens{' + num_draft_tokens' if extra else ''} = "
            f"{p.prompt_len + p.new_tokens + extra} exceeds the model's block_size {limit}"
        )
    if why := unsupported(strategy, p):
        raise UnsupportedHere(why)
    info: dict[str, Any] = {"runtime": p.runtime, "strategy": p.strategy, "kv_cache": p.kv_cache}
    setup = Setup()
    if "draft" in strategy.keys:
        from bench.workloads.drafts import build_draft, resolve_draft

        label = ctx.model.label if ctx.model is not None else ""
        spec, why_draft = resolve_draft(p.draft, label, ctx.run_dir)
        setup.draft, info["draft"] = build_draft(spec, model, ctx)
        info["draft_source"] = why_draft
    if p.runtime != "eager":
        setup.decoder = StaticDecoder(
            model,
            p.batch,
            p.prompt_len + p.new_tokens,
            ctx.device,
            compiled=p.runtime == "compiled",
            run_dir=ctx.run_dir,
            pick=pick(p),
        )
    if p.prompt == "heldout":
        from bench.workloads.decode_quality import heldout_prompts

        prompts, continuations = heldout_prompts(
            max(p.batch, p.quality_prompts), p.prompt_len, p.new_tokens
        )
        prompts = prompts.to(ctx.device)
        prompt = prompts[: p.batch]
    else:
        prompts = random_tokens(model, ctx, max(p.batch, p.quality_prompts), p.prompt_len)
        continuations, prompt = None, prompts[: p.batch]
    run = runner(strategy, model)
    clock = ctx.clock
    generate = inference(lambda: run(model, prompt, p, clock, setup))
    discarded, settled = warm_up(generate, ctx.warmup, clock)
    runs: list[Generation] = []
    for _ in range(ctx.iterations):
        runs.append(generate())
        clock.finish()
    # One more generation, untimed, with memory windows: around prefill and decode where
    # the loop is one token a step, around the whole generation otherwise.
    stepwise = strategy.stepwise
    absent = {}
    metrics, samples = _timing(runs, discarded, settled, p, ctx)
    metrics += _counts(runs, p)
    if stepwise:
        phase = lambda n: ctx.memory.phase(n, ctx.sync)  # noqa: E731
        d = setup.decoder or eager_decoder(model, p, p.batch)
        inference(lambda: greedy_generate(model, prompt, p.new_tokens, clock, phase, d))()
        metrics += cache_size(d, absent)
    else:
        with ctx.memory.phase("generate", ctx.sync):
            generate()
        absent["kv_cache_bytes"] = f"the {p.strategy} strategy keeps its cache inside its loop"
    if not runs[0].first_token_mark:
        absent["ttft"] = "transformers' beam search takes no streamer: only the total is timed"
    if not runs[0].per_step_marks:
        absent["decode_step"] = (
            "a step yields several tokens (speculation) or is not seen (transformers' beam "
            "search): see decode_throughput_tokens and tokens_per_target_forward"
        )
    if "num_draft_tokens" in strategy.keys and "proposed" not in runs[-1].counts:
        absent["draft_acceptance_rate"] = (
            "transformers' prompt lookup does not count its proposals: see "
            "tokens_per_target_forward"
        )
    if ctx.quality:
        metrics += _quality(model, p, run, setup, prompts, continuations, ctx, info)
    if p.runtime == "compiled":
        d = setup.decoder
        info.update(
            compile_mode=d.mode,
            inductor_cache=d.inductor_cache,
            inductor_cache_state=d.inductor_cache_state,
        )
    return WorkloadOutput(
        metrics,
        samples=samples,
        info=info,
        energy=EnergyWork(generate, {"tokens": p.batch * p.new_tokens}),
        traffic=decode_traffic(model, p) if stepwise and p.kv_cache and p.new_tokens > 1 else None,
        lazy_costs=("compile_time",) if p.runtime == "compiled" else (),
        absent=absent,
    )


def _timing(runs: list[Generation], discarded, settled, p: GenerateParams, ctx):
    clock = ctx.clock
    totals, ttfts, steps, all_steps = [], [], [], []
    for g in runs:
        secs = [clock.seconds(a, b) for a, b in itertools.pairwise(g.marks)]
        totals.append(sum(secs))
        if g.first_token_mark:
            ttfts.append(secs[0])
        if g.per_step_marks and len(secs) > 1:
            # The generation is the unit: the steps of one generation share its cache
            # state and timing, so they are one sample (their median), not many.
            steps.append(statistics.median(secs[1:]))
            all_steps.extend(secs[1:])

    def series(values: list[float], warmup: list[float]) -> Samples:
        policy = "auto" if ctx.warmup == "auto" else "fixed"
        return Samples(values, warmup, policy, settled, method=clock.method)

    series_by_name = {"latency": series(totals, discarded)}
    if ttfts:
        series_by_name["ttft"] = series(ttfts, [])
    if steps:
        series_by_name["decode_step"] = series(steps, [])
    medians, metrics = {}, []
    for name, s in series_by_name.items():
        described = describe_series(s.values)
        medians[name] = described["median"]
        metrics += series_metrics(name, described, "s", s.method)
    metrics.append(
        Metric(
            "throughput_tokens",
            p.batch * p.new_tokens / medians["latency"],
            "tokens/s",
            "batch*new_tokens/latency_median",
        )
    )
    if steps:
        decode = Metric(
            "decode_throughput_tokens",
            p.batch / medians["decode_step"],
            "tokens/s",
            "batch/decode_step_median",
        )
        metrics.append(decode)
    elif ttfts and p.new_tokens > 1:
        after_first = statistics.median(t - f for t, f in zip(totals, ttfts, strict=True))
        decode = Metric(
            "decode_throughput_tokens",
            p.batch * (p.new_tokens - 1) / after_first,
            "tokens/s",
            "batch*(new_tokens-1)/median(latency-ttft): several tokens per step",
        )
        metrics.append(decode)
    samples = {name: s.to_json() for name, s in series_by_name.items()}
    if all_steps:
        samples["decode_step_all"] = series(all_steps, []).to_json()
    return metrics, samples


def _counts(runs: list[Generation], p: GenerateParams) -> list[Metric]:
    """Speculation's counters, from the last timed generation (every one is the same
    decoding of the same prompt)."""
    c = runs[-1].counts
    out = []
    if "target_forwards" in c:
        out.append(
            Metric(
                "tokens_per_target_forward",
                p.new_tokens / c["target_forwards"],
                "tokens",
                "new_tokens/target_forward_passes (prefill included)",
            )
        )
    if c.get("proposed"):
        out.append(
            Metric(
                "draft_acceptance_rate",
                c["accepted"] / c["proposed"],
                "1",
                "accepted/proposed draft tokens",
            )
        )
    return out


def _quality(model, p, run, setup, prompts, continuations, ctx, info) -> list[Metric]:
    """Each quality prompt decoded alone on the eager runtime with the case's strategy
    (and draft), judged by the unoptimized model (bench.workloads.decode_quality)."""
    from bench.workloads.decode_quality import decode_quality, reference_greedy
    from bench.workloads.decoding import NoClock

    one = p.model_copy(update={"batch": 1, "runtime": "eager"})
    shared = Setup(draft=setup.draft)
    q = p.quality_prompts
    reference = ctx.reference() if ctx.reference is not None else model
    refs = Path(ctx.run_dir) / "refs" if ctx.run_dir else None
    label = ctx.model.label if ctx.model is not None else type(model).__name__
    metrics, outputs = decode_quality(
        lambda m, prompt: run(m, prompt, one, NoClock(), shared).tokens,
        model,
        reference,
        prompts[:q],
        None if continuations is None else continuations[:q],
        p.new_tokens,
        reference_greedy(reference, prompts[:q], p.new_tokens, refs, label),
    )
    info["quality_outputs"] = outputs
    return metrics


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
