"""Decoding strategies of transformers models through their own ``generate``: beam search,
assisted (speculative) decoding with a draft model and prompt lookup, with or without the
cache (greedy and sampling run the harness's own loop, which drives any model).

Clock marks come from a streamer, which ``generate`` calls with the prompt and then with
each round's new tokens (beam search takes none: it has only the total). Assisted decoding
reports no counters, so target and draft forward passes are counted with hooks and the
acceptance follows from them (see ``speculation_counts``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# transformers 5 moved these to hub repositories (custom_generate), which need remote code
# and a network; listed so that a suite naming them is refused at load, not late.
UNSUPPORTED = {
    "contrastive": "contrastive search",
    "group_beam": "group beam search",
    "dola": "DoLa decoding",
}
UNSUPPORTED_WHY = (
    "transformers 5 moved {what} to a hub repository (custom_generate) that needs "
    "trust_remote_code and a network; bench runs offline"
)


@dataclass
class HfGeneration:
    tokens: Any  # [batch, new_tokens]
    marks: list = field(repr=False)
    first_token_mark: bool  # marks[1] follows the first token (not with beam search)
    target_forwards: int
    draft_forwards: int = 0
    score: float | None = None  # beam search: the best beam's summed log-probability


class _Marks:
    """A streamer that only takes clock marks: after the prompt arrives nothing happened
    yet, so the first mark is taken by the caller before ``generate``."""

    def __init__(self, clock, marks: list):
        self.clock, self.marks, self.seen_prompt = clock, marks, False

    def put(self, value) -> None:
        if self.seen_prompt:
            self.marks.append(self.clock.mark())
        self.seen_prompt = True

    def end(self) -> None:
        return None


class _Count:
    def __init__(self, module):
        self.n = 0
        self.handle = module.register_forward_hook(self)

    def __call__(self, module, args, out) -> None:
        self.n += 1


def generation_config(p, new_tokens: int, model):
    """``p`` (GenerateParams) as a transformers GenerationConfig: exactly ``new_tokens``
    tokens (no end-of-sequence stop, so strategies are timed on equal work)."""
    from transformers import GenerationConfig

    kw: dict[str, Any] = dict(
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        use_cache=p.kv_cache,
        pad_token_id=getattr(model.hf.config, "pad_token_id", None) or 0,
        eos_token_id=None,
        do_sample=False,
    )
    kw.update(STRATEGY_KEYS.get(p.strategy, lambda p: {})(p))
    return GenerationConfig(**kw)


# The GenerationConfig keys of each strategy (the draft's own are set on the draft).
STRATEGY_KEYS = {
    "beam": lambda p: dict(
        num_beams=p.num_beams,
        length_penalty=p.length_penalty,
        early_stopping=p.early_stopping,
        output_scores=True,
        return_dict_in_generate=True,
    ),
    "prompt_lookup": lambda p: dict(prompt_lookup_num_tokens=p.num_draft_tokens),
}


def hf_generate(model, prompt, p, new_tokens: int, clock, draft=None) -> HfGeneration:
    """One ``generate`` call of a ``CausalLM`` wrapper with the strategy of ``p``."""
    import torch

    hf = model.hf
    config = generation_config(p, new_tokens, model)
    marks = [clock.mark()]
    streamed = p.strategy != "beam"  # generate refuses a streamer with beam search
    kwargs: dict[str, Any] = {"generation_config": config}
    if streamed:
        kwargs["streamer"] = _Marks(clock, marks)
    if draft is not None:
        # transformers reads these from the assistant's own config: a fixed k, and no early
        # stop on low draft confidence (k is what the suite sets and measures).
        draft.hf.generation_config.update(
            num_assistant_tokens=p.num_draft_tokens,
            num_assistant_tokens_schedule="constant",
            assistant_confidence_threshold=0.0,
        )
        kwargs["assistant_model"] = draft.hf
    counts = [_Count(hf)] + ([_Count(draft.hf)] if draft is not None else [])
    try:
        out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), **kwargs)
    finally:
        for c in counts:
            c.handle.remove()
    if not streamed:
        marks.append(clock.mark())
    seqs = out.sequences if hasattr(out, "sequences") else out
    score = None
    if p.strategy == "beam":
        # sequences_scores is the sum divided by length ** length_penalty.
        score = float(out.sequences_scores[0]) * new_tokens**p.length_penalty
    return HfGeneration(
        seqs[:, prompt.shape[1] :],
        marks,
        streamed,
        counts[0].n,
        counts[1].n if draft is not None else 0,
        score,
    )


def speculation_counts(g: HfGeneration, new_tokens: int) -> tuple[int, int]:
    """(proposed, accepted) of assisted decoding, from the forward counts: the prefill
    gives the first token and every later target pass the accepted proposals plus one
    token of its own, so accepted = new_tokens - target passes; a draft pass proposes one
    token. (Prompt lookup proposes without passes: nothing counts its proposals.)"""
    return g.draft_forwards, max(new_tokens - g.target_forwards, 0)
