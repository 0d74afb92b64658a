"""Decoding strategies of the built-in model against greedy decoding: what each must
reproduce, whatever the draft or the seed."""

from __future__ import annotations

import pytest
import torch

from bench.models.corpus import as_tensor, corpus_split
from bench.models.tinygpt import GPT, GPTConfig
from bench.telemetry.timer import PerfCounterClock
from bench.workloads.decoding import beam_search, sample, sequence_logprob, speculative
from bench.workloads.generate import greedy_generate


def model(seed: int, **shape) -> GPT:
    torch.manual_seed(seed)
    cfg = GPTConfig(**{"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 96, **shape})
    return GPT(cfg).double().eval()  # float64: no near-tie flips an argmax between paths


@pytest.fixture(scope="module")
def target():
    return model(0)


@pytest.fixture(scope="module")
def prompt():
    return as_tensor(corpus_split()[1][:16]).view(1, -1)


def greedy(m, prompt, n):
    with torch.inference_mode():
        return greedy_generate(m, prompt, n, PerfCounterClock())[0][0]


@torch.inference_mode()
def test_beam_of_one_is_greedy_and_a_wider_beam_is_at_least_as_likely(target, prompt):
    tokens, score = beam_search(target, prompt, 24, num_beams=1)
    assert torch.equal(tokens, greedy(target, prompt, 24))
    assert score == pytest.approx(sequence_logprob(target, prompt, tokens))
    wide, wide_score = beam_search(target, prompt, 24, num_beams=4)
    assert wide_score == pytest.approx(sequence_logprob(target, prompt, wide))
    assert wide_score >= score


@torch.inference_mode()
def test_seeded_sampling_is_reproducible_and_top_k_1_is_greedy(target, prompt):
    a = sample(target, prompt, 20, temperature=0.8, top_p=0.9, seed=3)
    torch.manual_seed(123)  # other random draws do not move a seeded generation
    assert torch.equal(a, sample(target, prompt, 20, temperature=0.8, top_p=0.9, seed=3))
    assert not torch.equal(a, sample(target, prompt, 20, temperature=0.8, top_p=0.9, seed=4))
    assert torch.equal(sample(target, prompt, 20, top_k=1)[0], greedy(target, prompt, 20))


@torch.inference_mode()
@pytest.mark.parametrize("k", [1, 4])
def test_speculative_decoding_is_the_targets_greedy_whatever_the_draft(target, prompt, k):
    want = greedy(target, prompt, 30)
    draft = model(7, n_layer=1, n_embd=16)  # random: mostly wrong guesses
    got = speculative(target, draft, prompt, 30, num_draft_tokens=k)
    assert torch.equal(got.tokens, want)
    assert got.acceptance_rate < 0.5
    itself = speculative(target, target, prompt, 30, num_draft_tokens=k)
    assert torch.equal(itself.tokens, want)
    assert itself.acceptance_rate == 1.0
    assert itself.target_forwards == 1 + -(-29 // (k + 1))  # k + 1 tokens per check
