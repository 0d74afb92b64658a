"""The decoding strategies of the ``generate`` workload, by name: which runtimes and batch
sizes each supports, which keys it reads, and how it runs on the built-in model and on a
transformers model. Each run returns a ``Generation``: the tokens, the clock marks and
what the strategy counted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.workloads import decoding as dec


@dataclass
class Generation:
    tokens: Any  # [batch, new_tokens]
    marks: list = field(repr=False)  # before the prefill, after it, after each later step
    per_step_marks: bool  # one mark per generated token
    first_token_mark: bool = True  # marks[1] follows the first token
    counts: dict[str, int] = field(default_factory=dict)  # proposals, forward passes


@dataclass
class Setup:
    """What a strategy's runs share within a case: the decoder of a runtime, the draft."""

    decoder: Any = None  # greedy/sample: an EagerDecoder or StaticDecoder
    draft: Any = None  # speculative: the draft model


@dataclass(frozen=True)
class Strategy:
    name: str
    keys: tuple[str, ...]  # GenerateParams keys only this strategy reads
    builtin: Callable[..., Generation]  # the harness's own implementation
    label: Callable[[Any], list[str]]  # the case label's parts for these settings
    runtimes: tuple[str, ...] = ("eager",)
    without_cache: bool = True  # can run with kv_cache = false
    batch_one: bool = False  # decodes one sequence at a time
    stepwise: bool = False  # one token per step, through the shared decode loop
    transformers: Callable[..., Generation] | None = None  # via transformers' generate
    why_eager: str = ""


def pick(p):
    """The token choice of a stepwise strategy: a sampler, or None for argmax."""
    if p.strategy == "sample":
        return dec.Sampler(p.temperature, p.top_k, p.top_p, p.seed)
    return None


def eager_decoder(model, p, batch: int):
    return dec.EagerDecoder(model, batch, p.kv_cache, pick(p) or dec.argmax)


def _stepwise(model, prompt, p, clock, setup: Setup) -> Generation:
    decoder = setup.decoder or eager_decoder(model, p, prompt.shape[0])
    tokens, marks = dec.greedy_generate(model, prompt, p.new_tokens, clock, decoder=decoder)
    return Generation(tokens, marks, True)


def _beam(model, prompt, p, clock, setup: Setup) -> Generation:
    tokens, _, marks = dec.beam_search(model, prompt, p.new_tokens, p.num_beams, clock, p.kv_cache)
    return Generation(tokens, marks, True)


def _speculate(proposer):
    def run(model, prompt, p, clock, setup: Setup) -> Generation:
        s = dec.speculative(model, proposer(setup), prompt, p.new_tokens, p.num_draft_tokens, clock)
        counts = {"proposed": s.proposed, "accepted": s.accepted}
        counts["target_forwards"] = s.target_forwards
        return Generation(s.tokens, s.marks, False, counts=counts)

    return run


def _hf(model, prompt, p, clock, setup: Setup) -> Generation:
    from bench.workloads.hf_decoding import hf_generate, speculation_counts

    g = hf_generate(model, prompt, p, p.new_tokens, clock, setup.draft)
    counts = {} if p.strategy == "beam" else {"target_forwards": g.target_forwards}
    if p.strategy == "speculative":
        proposed, accepted = speculation_counts(g, p.new_tokens)
        counts.update(proposed=proposed, accepted=accepted)
    return Generation(g.tokens, g.marks, False, g.first_token_mark, counts)


NOT_COMPILED = (
    "{name} runs on the eager runtime only: its steps change shape ({what}), so a static "
    "cache or a captured graph would not hold them"
)


def _beam_label(p) -> list[str]:
    return [f"beam{p.num_beams}"] + ([f"lp{p.length_penalty:g}"] if p.length_penalty != 1 else [])


def _sample_label(p) -> list[str]:
    parts = [f"sample-t{p.temperature:g}"]
    parts += [f"k{p.top_k}"] if p.top_k else []
    parts += [f"p{p.top_p:g}"] if p.top_p else []
    return parts + ([f"s{p.seed}"] if p.seed else [])


def _speculation_label(prefix: str):
    def label(p) -> list[str]:
        if p.draft is None:
            return [f"{prefix}{p.num_draft_tokens}"]
        from bench.spec.registry import model_entry

        return [f"{prefix}{p.num_draft_tokens}", model_entry(p.draft)[2]]

    return label


STRATEGIES = {
    s.name: s
    for s in (
        Strategy(
            "greedy",
            (),
            _stepwise,
            lambda p: [],
            ("eager", "static", "compiled"),
            stepwise=True,
        ),
        Strategy(
            "sample",
            ("temperature", "top_k", "top_p", "seed"),
            _stepwise,
            _sample_label,
            ("eager", "static", "compiled"),
            stepwise=True,
        ),
        Strategy(
            "beam",
            ("num_beams", "length_penalty", "early_stopping"),
            _beam,
            _beam_label,
            batch_one=True,
            transformers=_hf,
            why_eager="beams are reordered in the cache every step",
        ),
        Strategy(
            "speculative",
            ("draft", "num_draft_tokens"),
            _speculate(lambda setup: dec.DraftModel(setup.draft)),
            _speculation_label("spec"),
            without_cache=False,
            batch_one=True,
            transformers=_hf,
            why_eager="a check covers a varying number of tokens",
        ),
        Strategy(
            "prompt_lookup",
            ("num_draft_tokens",),
            _speculate(lambda setup: dec.PromptLookup()),
            _speculation_label("lookup"),
            without_cache=False,
            batch_one=True,
            transformers=_hf,
            why_eager="a check covers a varying number of tokens",
        ),
    )
}


def runner(strategy: Strategy, model) -> Callable[..., Generation]:
    """Transformers models use their own ``generate`` where the strategy has one there;
    greedy and sampling use the harness's loop, which drives both kinds alike."""
    if hasattr(model, "hf") and strategy.transformers is not None:
        return strategy.transformers
    return strategy.builtin


def unsupported(strategy: Strategy, p) -> str | None:
    """Why this strategy cannot run with these settings (the case is skipped), or None."""
    if p.runtime not in strategy.runtimes:
        return NOT_COMPILED.format(name=strategy.name, what=strategy.why_eager)
    if not p.kv_cache and not strategy.without_cache:
        return f"{strategy.name} checks proposals against the KV cache: kv_cache = false is moot"
    if not p.kv_cache and p.runtime != "eager":
        return f"the {p.runtime} runtime is a static KV cache; kv_cache = false runs eager only"
    return None
