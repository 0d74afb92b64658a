"""Decoding strategies for models with the built-in positional KV cache (tinygpt):
seeded sampling, batched beam search and greedy speculative decoding.

The cache is written at absolute positions and attention reads it only up to the current
one, so entries past it (a rejected draft's, a beam that lost) are simply overwritten
later: reordering beams is one ``index_select`` per layer, and rolling back a rejected
speculation costs nothing. The ``generate`` workload does not call these yet (issue 14).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def _check_room(model, prompt_len: int, new_tokens: int) -> None:
    if prompt_len + new_tokens > model.config.block_size:
        raise ValueError(
            f"{prompt_len} prompt + {new_tokens} new tokens exceed block_size "
            f"{model.config.block_size}"
        )


def sample(model, prompt, new_tokens: int, *, temperature=1.0, top_k=None, top_p=None, seed=0):
    """Ancestral sampling from ``prompt`` ([batch, P]) with its own seeded generator, so a
    generation is reproducible whatever else drew random numbers; ``top_k = 1`` is greedy."""
    import torch

    _check_room(model, prompt.shape[1], new_tokens)
    gen = torch.Generator(device=prompt.device).manual_seed(seed)
    cache = model.new_cache(prompt.shape[0])
    logits = model(prompt, cache, 0)[:, -1]
    out = []
    for i in range(new_tokens):
        scores = logits.float() / temperature
        if top_k is not None:
            kth = scores.topk(top_k, dim=-1).values[:, -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if top_p is not None:
            ordered, order = scores.sort(dim=-1, descending=True)
            mass = ordered.softmax(-1).cumsum(-1)
            drop = mass - ordered.softmax(-1) >= top_p  # keep the smallest set reaching top_p
            scores = scores.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
        tok = torch.multinomial(scores.softmax(-1), 1, generator=gen)
        out.append(tok)
        if i + 1 < new_tokens:
            logits = model(tok, cache, prompt.shape[1] + i)[:, -1]
    return torch.cat(out, dim=1)


def beam_search(model, prompt, new_tokens: int, num_beams: int):
    """The most likely continuation of ``prompt`` ([1, P]) that a beam of ``num_beams``
    finds: all beams advance together as one batch over one KV cache, reordered after
    each step. Returns (tokens [new_tokens], summed log-probability). The byte-level model
    has no end-of-sequence token, so every beam has the same length and a length penalty
    or early stopping would change nothing."""
    import torch

    _check_room(model, prompt.shape[1], new_tokens)
    plen = prompt.shape[1]
    cache = model.new_cache(num_beams)
    logp = model(prompt.expand(num_beams, -1), cache, 0)[:, -1].float().log_softmax(-1)
    vocab = logp.shape[-1]
    scores = torch.full((num_beams,), float("-inf"), device=prompt.device)
    scores[0] = 0.0  # identical beams at the start: expand only the first
    seqs = torch.empty(num_beams, 0, dtype=prompt.dtype, device=prompt.device)
    for i in range(new_tokens):
        top, flat = (scores[:, None] + logp).view(-1).topk(num_beams)
        src, tok = flat // vocab, flat % vocab
        scores, seqs = top, torch.cat([seqs[src], tok[:, None]], dim=1)
        for layer in cache:
            layer.k.copy_(layer.k.index_select(0, src))
            layer.v.copy_(layer.v.index_select(0, src))
        if i + 1 < new_tokens:
            logp = model(tok[:, None], cache, plen + i)[:, -1].float().log_softmax(-1)
    best = int(scores.argmax())
    return seqs[best], float(scores[best])


def sequence_logprob(model, prompt, tokens) -> float:
    """Summed log-probability of ``tokens`` ([n]) after ``prompt`` ([1, P]) under ``model``:
    the yardstick every strategy's output is judged by."""
    import torch

    x = torch.cat([prompt[0], tokens]).unsqueeze(0)
    with torch.inference_mode():
        logp = model(x[:, :-1]).float().log_softmax(-1)[0, prompt.shape[1] - 1 :]
    return float(logp.gather(-1, tokens[:, None]).sum())


@dataclass
class Speculation:
    tokens: Any  # [new_tokens]
    proposed: int  # draft tokens offered for verification
    accepted: int  # of those, the ones the target agreed with
    target_forwards: int  # prefill included

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.proposed if self.proposed else float("nan")


def speculative(target, draft, prompt, new_tokens: int, num_draft_tokens: int) -> Speculation:
    """Greedy speculative decoding of ``prompt`` ([1, P]): the draft proposes up to
    ``num_draft_tokens`` tokens, the target checks them all in one forward pass and keeps
    the longest prefix it agrees with plus its own next token. The output is exactly the
    target's greedy decoding, whatever the draft."""
    import torch

    _check_room(target, prompt.shape[1], new_tokens + num_draft_tokens)
    _check_room(draft, prompt.shape[1], new_tokens + num_draft_tokens)
    tc, dc = target.new_cache(1), draft.new_cache(1)
    out = [target(prompt, tc, 0)[0, -1].argmax()]
    draft(prompt, dc, 0)
    pos, proposed, accepted, forwards = prompt.shape[1], 0, 0, 1
    while len(out) < new_tokens:
        n = min(num_draft_tokens, new_tokens - len(out))
        guesses, tok = [], out[-1]
        for j in range(n):
            tok = draft(tok.view(1, 1), dc, pos + j)[0, -1].argmax()
            guesses.append(tok)
        checked = target(torch.stack([out[-1], *guesses]).view(1, -1), tc, pos)[0].argmax(-1)
        forwards += 1
        m = 0
        while m < n and bool(guesses[m] == checked[m]):
            m += 1
        if m == n:  # the draft never saw its own last guess: give it to its cache
            draft(guesses[-1].view(1, 1), dc, pos + n)
        proposed, accepted = proposed + n, accepted + m
        out += [*guesses[:m], checked[m]]
        pos += m + 1
    return Speculation(torch.stack(out[:new_tokens]), proposed, accepted, forwards)
