"""Decoding strategies over the harness's model protocol (``model(ids, cache, pos)``):
greedy and seeded sampling through one decode loop, batched beam search and speculative
decoding (a draft model or prompt lookup proposes, the target checks every proposal in one
forward pass), with or without the KV cache.

The built-in model's cache is written at absolute positions and attention reads it only up
to the current one, so entries past it (a rejected draft's, a beam that lost) are simply
overwritten later: reordering beams is one ``index_select`` per layer, and rolling back a
rejected speculation costs nothing. Transformers models run their own ``generate``
(bench.workloads.hf_decoding) except for greedy and sampling, which this loop drives.

Every function takes a ``clock`` and returns the marks it took: before the prefill, after
it (the first token) and after each later step, so time to first token and per-step times
come from the same generation as the tokens.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from bench.workloads.kv_cache import check_cache_filled


class NoClock:
    def mark(self) -> None:
        return None


def _no_phase(name: str):
    return nullcontext()


def check_room(model, prompt_len: int, new_tokens: int) -> None:
    if prompt_len + new_tokens > model.config.block_size:
        raise ValueError(
            f"{prompt_len} prompt + {new_tokens} new tokens exceed the model's block_size "
            f"{model.config.block_size}"
        )


# --- choosing the next token -------------------------------------------------------------


def argmax(logits):
    return logits.argmax(dim=-1, keepdim=True)


class Sampler:
    """Ancestral sampling with temperature, top-k and top-p, from a generator of its own
    reseeded at every prefill: each generation is reproducible whatever else drew random
    numbers, and ``top_k = 1`` is greedy."""

    def __init__(self, temperature=1.0, top_k=None, top_p=None, seed=0):
        self.temperature, self.top_k, self.top_p, self.seed = temperature, top_k, top_p, seed
        self.gen = None

    def reset(self, device) -> None:
        import torch

        self.gen = torch.Generator(device=device).manual_seed(self.seed)

    def __call__(self, logits):
        import torch

        scores = logits.float() / self.temperature
        if self.top_k is not None:
            kth = scores.topk(min(self.top_k, scores.shape[-1]), dim=-1).values[:, -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if self.top_p is not None:
            ordered, order = scores.sort(dim=-1, descending=True)
            probs = ordered.softmax(-1)
            drop = probs.cumsum(-1) - probs >= self.top_p  # keep the smallest set reaching p
            scores = scores.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
        return torch.multinomial(scores.softmax(-1), 1, generator=self.gen)


# --- next-token logits, with or without a cache ------------------------------------------


class CachedSteps:
    """Logits of the next token from the model's own KV cache (one per batch row)."""

    def __init__(self, model, batch: int):
        self.model, self.cache, self.pos = model, model.new_cache(batch), 0

    def prefill(self, prompt):
        self.pos = prompt.shape[1]
        logits = self.model(prompt, self.cache, 0)[:, -1]
        check_cache_filled(self.model, self.cache)
        return logits

    def step(self, tok):
        logits = self.model(tok, self.cache, self.pos)[:, -1]
        self.pos += tok.shape[1]
        return logits

    def reorder(self, src) -> None:
        """Row i of the cache becomes row ``src[i]`` (beams that survived, duplicated): the
        positions written so far only, not the whole preallocated length."""
        for layer in self.cache:
            for t in (layer.k, layer.v):
                t[:, :, : self.pos] = t[:, :, : self.pos].index_select(0, src)


class UncachedSteps:
    """The same logits recomputed from the whole sequence at every step: what the KV cache
    saves."""

    def __init__(self, model, batch: int):
        self.model, self.seq = model, None

    def prefill(self, prompt):
        self.seq = prompt
        return self.model(prompt)[:, -1]

    def step(self, tok):
        import torch

        self.seq = torch.cat([self.seq, tok], dim=1)
        return self.model(self.seq)[:, -1]

    def reorder(self, src) -> None:
        self.seq = self.seq.index_select(0, src)


def steps_for(model, batch: int, kv_cache: bool):
    return (CachedSteps if kv_cache else UncachedSteps)(model, batch)


class EagerDecoder:
    """The eager runtime: the model's own cache (or none), any token choice."""

    def __init__(self, model, batch: int, kv_cache: bool = True, pick=argmax):
        self.steps, self.pick = steps_for(model, batch, kv_cache), pick

    def prefill(self, prompt):
        if hasattr(self.pick, "reset"):
            self.pick.reset(prompt.device)
        return self.pick(self.steps.prefill(prompt))

    def step(self, tok, pos: int):
        return self.pick(self.steps.step(tok))


class StaticDecoder:
    """One preallocated KV cache for every generation of the case (its stale tail is
    masked by position, as in gpt-fast), positions as tensors, and optionally the
    one-token step compiled: same shapes and addresses on every step, so a CUDA graph
    can replay it. Greedy choice is compiled into the step; a sampler runs after it (its
    generator is state a graph cannot hold)."""

    def __init__(
        self, model, batch: int, max_len: int, device: str, compiled: bool, run_dir=None, pick=None
    ):
        import torch

        self.model, self.pick = model, pick
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
        logits = self.model(tok, self.cache, pos)[:, -1]
        return argmax(logits) if self.pick is None else logits

    def _choose(self, out):
        return out if self.pick is None else self.pick(out)

    def prefill(self, prompt):
        reset = getattr(self.cache, "reset", None)
        if reset is not None:  # transformers' StaticCache also counts its own length
            reset()
        if hasattr(self.pick, "reset"):
            self.pick.reset(prompt.device)
        positions = self.positions[: prompt.shape[1]]
        logits = self.model(prompt, self.cache, positions)[:, -1]
        check_cache_filled(self.model, self.cache)
        return (self.pick or argmax)(logits)

    def step(self, tok, pos: int):
        import torch

        if self.cuda_graphs:
            # A new replay may overwrite the last one's outputs: mark the step, copy out.
            torch.compiler.cudagraph_mark_step_begin()
            return self._choose(self._step(tok, self.positions[pos : pos + 1]).clone())
        return self._choose(self._step(tok, self.positions[pos : pos + 1]))


def greedy_generate(model, prompt, new_tokens: int, clock, phase=_no_phase, decoder=None):
    """Decode ``new_tokens`` one step at a time (greedily unless ``decoder`` chooses
    otherwise). Returns the tokens and the clock marks taken before the prefill, after it,
    and after each decode step; ``phase(name)`` wraps the prefill and the decode loop
    (memory windows). ``decoder`` defaults to an ``EagerDecoder`` with the model's cache."""
    import torch

    batch, plen = prompt.shape
    decoder = decoder or EagerDecoder(model, batch)
    out = torch.empty(batch, new_tokens, dtype=prompt.dtype, device=prompt.device)
    with phase("prefill"):
        marks = [clock.mark()]
        tok = decoder.prefill(prompt)
        out[:, :1] = tok
        marks.append(clock.mark())
    with phase("decode"):
        for i in range(1, new_tokens):
            tok = decoder.step(tok, plen + i - 1)
            out[:, i : i + 1] = tok
            marks.append(clock.mark())
    return out, marks


# --- beam search ----------------------------------------------------------------------------


def beam_search(model, prompt, new_tokens: int, num_beams: int, clock=None, kv_cache=True):
    """The most likely continuation of ``prompt`` ([1, P]) that a beam of ``num_beams``
    finds: all beams advance together as one batch over one KV cache, reordered after
    each step. Returns (tokens [1, new_tokens], summed log-probability, marks). The
    byte-level model has no end-of-sequence token, so every beam has the same length and
    a length penalty or early stopping would change nothing."""
    import torch

    check_room(model, prompt.shape[1], new_tokens)
    clock = clock or NoClock()
    marks = [clock.mark()]
    steps = steps_for(model, num_beams, kv_cache)
    logp = steps.prefill(prompt.expand(num_beams, -1)).float().log_softmax(-1)
    vocab = logp.shape[-1]
    scores = torch.full((num_beams,), float("-inf"), device=prompt.device)
    scores[0] = 0.0  # identical beams at the start: expand only the first
    seqs = torch.empty(num_beams, 0, dtype=prompt.dtype, device=prompt.device)
    for i in range(new_tokens):
        top, flat = (scores[:, None] + logp).view(-1).topk(num_beams)
        src, tok = flat // vocab, flat % vocab
        scores, seqs = top, torch.cat([seqs[src], tok[:, None]], dim=1)
        steps.reorder(src)
        if i + 1 < new_tokens:
            logp = steps.step(tok[:, None]).float().log_softmax(-1)
        marks.append(clock.mark())
    best = int(scores.argmax())
    return seqs[best : best + 1], float(scores[best]), marks


def sequence_logprob(model, prompt, tokens) -> float:
    """Summed log-probability of ``tokens`` ([n]) after ``prompt`` ([1, P]) under ``model``:
    the yardstick every strategy's output is judged by."""
    import torch

    x = torch.cat([prompt[0], tokens]).unsqueeze(0)
    with torch.inference_mode():
        logp = model(x[:, :-1]).float().log_softmax(-1)[0, prompt.shape[1] - 1 :]
    return float(logp.gather(-1, tokens[:, None]).sum())


# --- speculative decoding -------------------------------------------------------------------


class DraftModel:
    """Proposals from a smaller model with its own cache, greedy."""

    def __init__(self, draft):
        self.draft = draft

    def start(self, prompt) -> None:
        self.cache = self.draft.new_cache(1)
        self.draft(prompt, self.cache, 0)

    def propose(self, last, pos: int, n: int, history: list[int]) -> list:
        guesses, tok = [], last
        for j in range(n):
            tok = self.draft(tok.view(1, 1), self.cache, pos + j)[0, -1].argmax()
            guesses.append(tok)
        return guesses

    def all_accepted(self, guesses, pos: int) -> None:
        # The draft never saw its own last guess: give it to its cache.
        self.draft(guesses[-1].view(1, 1), self.cache, pos + len(guesses))


@dataclass
class PromptLookup:
    """Proposals copied from the text so far: the tokens that followed the latest earlier
    occurrence of its last ``max_ngram`` (down to 1) tokens (transformers' prompt lookup
    takes the earliest; the latest is the nearer context). No model: proposals cost a
    search."""

    max_ngram: int = 2

    def start(self, prompt) -> None:
        return None

    def propose(self, last, pos: int, n: int, history: list[int]) -> list:
        import torch

        for size in range(min(self.max_ngram, len(history) - 1), 0, -1):
            tail = history[-size:]
            for start in range(len(history) - size - 1, -1, -1):
                if history[start : start + size] == tail:
                    follow = history[start + size : start + size + n]
                    return list(torch.tensor(follow, device=last.device))
        return []

    def all_accepted(self, guesses, pos: int) -> None:
        return None


@dataclass
class Speculation:
    tokens: Any  # [1, new_tokens]
    marks: list = field(repr=False)  # before the prefill, after it, after each check
    proposed: int  # draft tokens offered for verification
    accepted: int  # of those, the ones the target agreed with
    target_forwards: int  # prefill included

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.proposed if self.proposed else float("nan")


def speculative(target, proposer, prompt, new_tokens: int, num_draft_tokens: int, clock=None):
    """Greedy speculative decoding of ``prompt`` ([1, P]): the proposer offers up to
    ``num_draft_tokens`` tokens, the target checks them all in one forward pass and keeps
    the longest prefix it agrees with plus its own next token. The output is exactly the
    target's greedy decoding, whatever the proposals. ``proposer`` is a ``DraftModel``, a
    ``PromptLookup`` or a bare model (taken as the draft)."""
    import torch

    if not hasattr(proposer, "propose"):
        proposer = DraftModel(proposer)
    check_room(target, prompt.shape[1], new_tokens + num_draft_tokens)
    if isinstance(proposer, DraftModel):
        check_room(proposer.draft, prompt.shape[1], new_tokens + num_draft_tokens)
    clock = clock or NoClock()
    marks = [clock.mark()]
    tc = target.new_cache(1)
    out = [target(prompt, tc, 0)[0, -1].argmax()]
    proposer.start(prompt)
    marks.append(clock.mark())
    history = [*prompt[0].tolist(), int(out[0])]
    pos, proposed, accepted, forwards = prompt.shape[1], 0, 0, 1
    while len(out) < new_tokens:
        n = min(num_draft_tokens, new_tokens - len(out))
        guesses = proposer.propose(out[-1], pos, n, history)[:n]
        checked = target(torch.stack([out[-1], *guesses]).view(1, -1), tc, pos)[0].argmax(-1)
        forwards += 1
        m = 0
        while m < len(guesses) and bool(guesses[m] == checked[m]):
            m += 1
        if guesses and m == len(guesses):
            proposer.all_accepted(guesses, pos)
        proposed, accepted = proposed + len(guesses), accepted + m
        new = [*guesses[:m], checked[m]]
        out += new
        history += [int(t) for t in new]
        pos += m + 1
        marks.append(clock.mark())
    tokens = torch.stack(out[:new_tokens]).view(1, -1)
    return Speculation(tokens, marks, proposed, accepted, forwards)
