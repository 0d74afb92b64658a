"""Decoding strategies of the built-in model against greedy decoding: what each must
reproduce, whatever the draft or the seed."""

from __future__ import annotations

import json

import pytest
import torch

from bench.models.corpus import as_tensor, corpus_split
from bench.models.tinygpt import GPT, GPTConfig
from bench.telemetry.timer import PerfCounterClock
from bench.workloads.decoding import (
    EagerDecoder,
    PromptLookup,
    Sampler,
    beam_search,
    greedy_generate,
    sequence_logprob,
    speculative,
)


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


def greedy(m, prompt, n, kv_cache=True):
    with torch.inference_mode():
        decoder = EagerDecoder(m, prompt.shape[0], kv_cache)
        return greedy_generate(m, prompt, n, PerfCounterClock(), decoder=decoder)[0][0]


def sample(m, prompt, n, **how):
    decoder = EagerDecoder(m, prompt.shape[0], pick=Sampler(**how))
    return greedy_generate(m, prompt, n, PerfCounterClock(), decoder=decoder)[0]


@torch.inference_mode()
def test_beam_of_one_is_greedy_and_a_wider_beam_is_at_least_as_likely(target, prompt):
    tokens, score, _ = beam_search(target, prompt, 24, num_beams=1)
    assert torch.equal(tokens[0], greedy(target, prompt, 24))
    assert score == pytest.approx(sequence_logprob(target, prompt, tokens[0]))
    wide, wide_score, marks = beam_search(target, prompt, 24, num_beams=4)
    assert wide_score == pytest.approx(sequence_logprob(target, prompt, wide[0]))
    assert wide_score >= score
    assert len(marks) == 25
    uncached, uncached_score, _ = beam_search(target, prompt, 24, num_beams=4, kv_cache=False)
    assert torch.equal(uncached, wide) and uncached_score == pytest.approx(wide_score)


@torch.inference_mode()
def test_decoding_without_the_cache_gives_the_same_tokens(target, prompt):
    assert torch.equal(greedy(target, prompt, 20, kv_cache=False), greedy(target, prompt, 20))


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
    assert torch.equal(got.tokens[0], want)
    assert got.acceptance_rate < 0.5
    itself = speculative(target, target, prompt, 30, num_draft_tokens=k)
    assert torch.equal(itself.tokens[0], want)
    assert itself.acceptance_rate == 1.0
    assert itself.target_forwards == 1 + -(-29 // (k + 1))  # k + 1 tokens per check


@torch.inference_mode()
def test_prompt_lookup_proposes_what_followed_the_last_match_and_keeps_greedy(target):
    history = [5, 6, 7, 8, 1, 5, 6]
    proposed = PromptLookup(max_ngram=2).propose(torch.tensor(6), 7, 3, history)
    assert [int(t) for t in proposed] == [7, 8, 1]
    assert PromptLookup().propose(torch.tensor(9), 3, 3, [1, 2, 9]) == []
    text = as_tensor(b"the cat sat. the cat sat. the ").view(1, -1)
    got = speculative(target, PromptLookup(), text, 20, num_draft_tokens=4)
    assert torch.equal(got.tokens[0], greedy(target, text, 20))
    assert got.proposed > 0 and got.target_forwards <= 20


# --- the same weights in transformers -------------------------------------------------------


def as_gpt2(m: GPT):
    """The built-in model's weights in a transformers GPT-2 (no biases, exact GELU)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    c = m.config
    cfg = GPT2Config(
        n_layer=c.n_layer,
        n_head=c.n_head,
        n_embd=c.n_embd,
        n_positions=c.block_size,
        vocab_size=c.vocab_size,
        activation_function="gelu",
        layer_norm_epsilon=1e-5,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=0,
    )
    hf = GPT2LMHeadModel(cfg).to(m.wte.weight.dtype)
    src = m.state_dict()
    sd = {k: torch.zeros_like(v) for k, v in hf.state_dict().items()}  # biases stay 0
    for ours, theirs in (("wte", "wte"), ("wpe", "wpe"), ("ln_f", "ln_f")):
        sd[f"transformer.{theirs}.weight"] = src[f"{ours}.weight"]
    sd["lm_head.weight"] = src["wte.weight"]
    for i in range(c.n_layer):
        a, b = f"blocks.{i}.", f"transformer.h.{i}."
        for ln in ("ln_1", "ln_2"):
            sd[f"{b}{ln}.weight"] = src[f"{a}{ln}.weight"]
        for ours, theirs in (
            ("attn.qkv", "attn.c_attn"),
            ("attn.proj", "attn.c_proj"),
            ("mlp.fc", "mlp.c_fc"),
            ("mlp.proj", "mlp.c_proj"),
        ):
            sd[f"{b}{theirs}.weight"] = src[f"{a}{ours}.weight"].T  # Conv1D: [in, out]
    hf.load_state_dict(sd)
    return hf.eval()


@pytest.fixture(scope="module")
def hf_target(target):
    from bench.models.causal_lm import CausalLM

    return CausalLM(as_gpt2(target)).eval()


def hf_run(model, prompt, n, draft=None, **keys):
    from bench.workloads.generate import GenerateParams
    from bench.workloads.hf_decoding import hf_generate

    p = GenerateParams(prompt_len=prompt.shape[1], new_tokens=n, **keys)
    with torch.inference_mode():
        return hf_generate(model, prompt, p, n, PerfCounterClock(), draft)


@torch.inference_mode()
def test_transformers_generate_and_the_built_in_decoders_agree_on_the_same_weights(
    target, hf_target, prompt
):
    with torch.inference_mode():
        assert (target(prompt) - hf_target(prompt)).abs().max() < 1e-12
    assert torch.equal(hf_run(hf_target, prompt, 24).tokens[0], greedy(target, prompt, 24))
    theirs = hf_run(hf_target, prompt, 24, strategy="beam", num_beams=4)
    ours, score, _ = beam_search(target, prompt, 24, num_beams=4)
    assert torch.equal(theirs.tokens, ours)
    assert theirs.score == pytest.approx(score)
    assert not theirs.first_token_mark and len(theirs.marks) == 2


def test_transformers_assisted_decoding_is_greedy_and_its_counts_give_the_acceptance(
    target, hf_target, prompt
):
    from bench.models.causal_lm import CausalLM
    from bench.workloads.hf_decoding import speculation_counts

    want = greedy(target, prompt, 21)
    itself = hf_run(hf_target, prompt, 21, CausalLM(as_gpt2(target)), strategy="speculative")
    assert torch.equal(itself.tokens[0], want)
    assert itself.target_forwards == 1 + 20 // 5  # 4 proposals + 1 token per check
    assert speculation_counts(itself, 21) == (16, 16)
    other = CausalLM(as_gpt2(model(7, n_layer=1))).eval()
    got = hf_run(hf_target, prompt, 21, other, strategy="speculative")
    assert torch.equal(got.tokens[0], want)
    proposed, accepted = speculation_counts(got, 21)
    assert accepted < proposed
    lookup = hf_run(hf_target, prompt, 21, strategy="prompt_lookup")
    assert torch.equal(lookup.tokens[0], want)


# --- the generate workload: strategies end to end -------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A small built-in model's weights: the case's model and, loaded again, its own draft."""
    from safetensors.torch import save_model

    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_model(model(3, block_size=64).float(), str(path))
    return path


def decode_suite(ckpt, workloads: str) -> str:
    return f"""
name = "d"
[run]
warmup = 1
iterations = 2
idle_s = 0
energy = false
quality = true
[[models]]
name = "tinygpt-s"
weights = "random"
n_layer = 2
n_head = 2
n_embd = 32
block_size = 64
checkpoint = "{ckpt}"
{workloads}
"""


def test_each_strategy_reports_its_cost_and_what_its_output_is_worth(checkpoint, tmp_path):
    from bench import load_results
    from bench.analysis import tables
    from bench.analysis.report import write_reports
    from bench.results import store
    from bench.run.case import execute
    from bench.spec.suite import parse_suite
    from tests.conftest import write_manifest

    draft = f'{{ name = "tinygpt-s", n_layer = 2, n_head = 2, n_embd = 32, block_size = 64, checkpoint = "{checkpoint}" }}'
    common = 'name = "generate"\nprompt_len = 16\nnew_tokens = 12\nprompt = "heldout"\nquality_prompts = 3'
    workloads = "".join(
        f"[[workloads]]\n{common}\n{extra}\n"
        for extra in (
            'strategy = "greedy"',
            'strategy = "beam"\nnum_beams = 3',
            f'strategy = "speculative"\nnum_draft_tokens = 3\ndraft = {draft}',
            'strategy = "prompt_lookup"',
            'strategy = "sample"\ntop_k = 1\nruntime = "static"',
            "kv_cache = false",
            'strategy = "beam"\nruntime = "compiled"',
        )
    )
    # The greedy case again on a pruned model: judged by the unoptimized one.
    pruned = (
        f"[[matrix.include]]\nmodel = {draft}\nworkload = {{ {common.replace(chr(10), ', ')} }}\n"
        'technique = { name = "prune", amount = 0.5 }\n'
    )
    text = decode_suite(checkpoint, workloads + pruned)
    run = tmp_path / "results" / "run1"
    write_manifest(run, "d", text)
    results = []
    for case in parse_suite(text).cases:
        results.append(execute(case, run_id="run1", facts={"run_dir": str(run)}))
        store.write_json_atomic(store.case_path(run, case.id, 0), results[-1].to_json())
    greedy_, beam, spec, lookup, top1, uncached, _, pruned = (
        {m.name: m.value for m in r.metrics} for r in results
    )
    assert [r.status for r in results] == ["ok"] * 6 + ["skipped", "ok"]
    assert "eager runtime only" in results[-2].error
    for m in (greedy_, beam, spec, lookup, top1, uncached):
        assert m["throughput_tokens"] > 0 and m["latency_median"] > 0
        assert 0 <= m["continuation_byte_match"] <= 1 and m["continuation_bits_per_byte"] > 0
    # Greedy of the unoptimized model is its own yardstick; sampling with top-k 1, the
    # uncached loop and speculation reproduce it token for token.
    for m in (greedy_, spec, lookup, top1, uncached):
        assert m["greedy_agreement"] == 1.0
        assert m["sequence_logprob"] == pytest.approx(greedy_["sequence_logprob"])
    assert beam["ttft_median"] > 0 and "decode_step_median" in beam
    assert spec["draft_acceptance_rate"] == 1.0  # the draft is the target's own weights
    assert spec["tokens_per_target_forward"] == 12 / (1 + 3)  # 3 checks of 3 + 1 tokens
    assert "decode_step_median" not in spec and spec["decode_throughput_tokens"] > 0
    assert 0 <= lookup["draft_acceptance_rate"] <= 1
    assert results[2].info["draft_source"] == "named in the suite"
    assert len(results[0].info["quality_outputs"]) == 3
    # The unoptimized model's greedy tokens are decoded once per run and prompt set.
    assert len(list((run / "refs").glob("greedy-*.safetensors"))) == 1
    assert pruned["greedy_agreement"] < 1 and pruned["sequence_logprob"] < 0
    # A log-probability is compared by difference: a ratio of two would invert "better".
    ratios = tables.ratio_table(load_results(run))
    assert "throughput_tokens" in set(ratios.metric)
    assert not {"sequence_logprob", "greedy_agreement"} & set(ratios.metric)
    html = write_reports([run], tmp_path / "reports")[0]
    assert (html.parent / "decoding_tradeoff.png").stat().st_size > 10_000


def test_the_default_draft_is_the_newest_student_distilled_from_the_target(tmp_path):
    from safetensors.torch import save_model

    from bench.run.context import CaseContext
    from bench.spec.registry import model_entry
    from bench.workloads.drafts import DEFAULT_DRAFT, resolve_draft

    run = tmp_path / "results" / "this-run"
    assert resolve_draft(None, "tinygpt-m-pydoc", str(run))[0] == DEFAULT_DRAFT
    for name, teacher in (("other", "tinygpt-l-pydoc"), ("student", "tinygpt-m-pydoc")):
        path = tmp_path / "results" / "distill-run" / "checkpoints" / f"{name}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"name": "tinygpt-s", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 96}
        meta = {"model": json.dumps({**entry, "checkpoint": None}), "teacher": teacher}
        save_model(model(0), str(path), metadata=meta)
    spec, why = resolve_draft(None, "tinygpt-m-pydoc", str(run))
    assert spec == {**entry, "weights": "random", "checkpoint": str(path)}
    built, params, _ = model_entry(spec)
    built.fn(params, CaseContext("cpu", "float32", 0, 1, 1))  # loads strictly: same shape
    assert "distilled from tinygpt-m-pydoc" in why


@pytest.mark.parametrize(
    ("workload", "model", "message"),
    [
        ("top_k = 5", "", "'top_k' belongs to strategy 'sample', not 'greedy'"),
        ('strategy = "contrastive"', "", "needs trust_remote_code"),
        ('strategy = "beam"\nbatch = 2', "", "batch must be 1"),
        ('prompt = "heldout"', "llama-tiny", "needs the built-in byte-level model"),
        ('strategy = "speculative"', "llama-tiny", "needs a draft model"),
        ('strategy = "speculative"\ndraft = { name = "tinygpt-xl" }', "", "unknown model"),
        ("prompt_len = 100\nnew_tokens = 64", "tinygpt-s", "trained on 128-token windows"),
    ],
)
def test_bad_decoding_input_names_the_key(workload, model, message):
    from bench.errors import UserError
    from bench.spec.suite import parse_suite

    name = model or "tinygpt-s"
    weights = 'weights = "pydoc"' if model == "tinygpt-s" else ""
    text = f'name = "d"\n[[models]]\nname = "{name}"\n{weights}\n'
    text += f'[[workloads]]\nname = "generate"\n{workload}\n'
    with pytest.raises(UserError) as info:
        parse_suite(text, where="s.toml")
    assert "s.toml: workloads[0]" in str(info.value) and message in str(info.value)


def test_transformers_prompt_lookup_says_why_it_has_no_acceptance_rate():
    from bench.run.case import execute
    from bench.spec.suite import parse_suite

    text = (
        'name = "d"\n[run]\nwarmup = 1\niterations = 2\nidle_s = 0\nenergy = false\n'
        '[[models]]\nname = "gpt2-tiny"\n[[workloads]]\nname = "generate"\n'
        'prompt_len = 8\nnew_tokens = 8\nstrategy = "prompt_lookup"\n'
    )
    r = execute(parse_suite(text).cases[0])
    assert r.status == "ok", r.error
    names = {m.name for m in r.metrics}
    assert "tokens_per_target_forward" in names and "draft_acceptance_rate" not in names
    assert "does not count its proposals" in r.info["absent"]["draft_acceptance_rate"]
