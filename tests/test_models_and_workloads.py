import itertools

import pytest
import torch

from bench.models import TinyGPTOverrides, tinygpt_config
from bench.models.tinygpt import GPT
from bench.run.case import execute
from bench.run.context import CaseContext
from bench.spec import registry
from bench.spec.suite import parse_suite
from bench.telemetry.size import model_size_metrics
from bench.telemetry.timer import PerfCounterClock
from bench.workloads.generate import greedy_generate
from tests.conftest import TINY_MODEL


@pytest.fixture
def model():
    torch.manual_seed(0)
    cfg = tinygpt_config("s", TinyGPTOverrides(n_layer=2, n_embd=32, n_head=2, block_size=64))
    return GPT(cfg).eval()


def ctx(**kw):
    return CaseContext(
        **{"device": "cpu", "dtype": "float32", "seed": 0, "warmup": 1, "iterations": 2, **kw}
    )


def test_named_sizes_have_the_documented_parameter_counts():
    counts = {}
    for size in ("s", "m"):
        m = GPT(tinygpt_config(size, TinyGPTOverrides()))
        counts[size] = sum(p.numel() for p in m.parameters())
    assert 0.7e6 < counts["s"] < 1.0e6
    assert 10e6 < counts["m"] < 12e6


def test_kv_cache_decoding_matches_the_full_forward(model):
    x = torch.randint(0, 256, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(x)
        cache = model.new_cache(2)
        parts = [model(x[:, :8], cache, 0), model(x[:, 8:13], cache, 8)]
        parts += [model(x[:, i : i + 1], cache, i) for i in range(13, 20)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-4, atol=1e-5)


def test_greedy_generate_matches_argmax_without_cache(model):
    prompt = torch.randint(0, 256, (1, 5), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out, marks = greedy_generate(model, prompt, 6, PerfCounterClock())
        seq = prompt
        for _ in range(6):
            seq = torch.cat([seq, model(seq)[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(out, seq[:, 5:])
    assert len(marks) == 7 and all(b > a for a, b in itertools.pairwise(marks))


@pytest.mark.parametrize("method", ["l1_unstructured", "random_unstructured"])
@pytest.mark.parametrize("amount", [0.0, 0.5, 0.9])
def test_prune_reaches_the_requested_sparsity(model, method, amount):
    tech = registry.techniques.get("prune")
    model, info = tech.fn(model, tech.params(method=method, amount=amount), ctx())
    assert info["modules_touched"] == 8 and info["modules_candidates"] == 9
    assert info["modules_skipped"] == {"lm_head": "weight tied to an embedding"}
    for sparsity in info["sparsity_per_layer"].values():
        assert sparsity == pytest.approx(amount, abs=1e-3)
    # Permanent: no masks or hooks left to slow the forward pass.
    assert not any(name.endswith("_mask") for name, _ in model.named_buffers())
    assert not any(m._forward_pre_hooks for m in model.modules())


def test_l1_prunes_the_smallest_weights(model):
    lin = model.blocks[0].mlp.fc
    before = lin.weight.detach().abs().clone()
    tech = registry.techniques.get("prune")
    tech.fn(model, tech.params(amount=0.5), ctx())
    zeroed = lin.weight.detach() == 0
    assert before[zeroed].max() <= before[~zeroed].min()


def test_size_metrics_count_tied_weights_once(model):
    m = {x.name: x for x in model_size_metrics(model)}
    unique = sum(p.numel() for p in model.parameters())  # parameters() already dedups
    assert m["params_total"].value == unique
    assert m["state_dict_bytes"].value == unique * 4
    assert m["params_nonzero_fraction"].value == pytest.approx(1.0, abs=1e-3)


def suite_case(workload: str, device: str = "cpu"):
    text = (
        f'name = "t"\n[run]\nwarmup = 1\niterations = 3\ndevice = "{device}"\n'
        + TINY_MODEL
        + workload
    )
    return parse_suite(text).cases[0]


def test_forward_case_reports_metrics_with_units_and_methods():
    r = execute(suite_case('[[workloads]]\nname = "forward"\nbatch = 2\nseq_len = 16\n'))
    assert r.status == "ok", r.traceback
    m = {x.name: x for x in r.metrics}
    assert m["latency_median"].unit == "s" and m["latency_median"].method == "perf_counter"
    assert m["throughput_tokens"].value == pytest.approx(32 / m["latency_median"].value)
    assert len(r.samples["latency"]["values"]) == 3 and len(r.samples["latency"]["warmup"]) == 1
    assert all(x.unit and x.method for x in r.metrics)


def test_generate_case_splits_prefill_and_decode():
    r = execute(suite_case('[[workloads]]\nname = "generate"\nprompt_len = 4\nnew_tokens = 5\n'))
    assert r.status == "ok", r.traceback
    m = {x.name: x for x in r.metrics}
    # The generation is the unit of a decode step's interval: one value per generation
    # (the median of its steps); every step is still kept, apart.
    assert len(r.samples["decode_step"]["values"]) == 3  # iterations
    assert len(r.samples["decode_step_all"]["values"]) == 3 * 4  # x (new_tokens - 1)
    assert m["decode_step_median_ci_low"].method.endswith("+in_process_order_statistics95")
    assert m["ttft_median"].value < m["latency_median"].value
    assert m["throughput_tokens"].value == pytest.approx(5 / m["latency_median"].value)


def test_generate_longer_than_the_model_fails_clearly():
    r = execute(suite_case('[[workloads]]\nname = "generate"\nprompt_len = 60\nnew_tokens = 10\n'))
    assert r.status == "failed"
    assert r.error == "ValueError: prompt_len + new_tokens = 70 exceeds the model's block_size 64"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only path")
def test_cuda_case_is_skipped_without_a_gpu():
    r = execute(suite_case('[[workloads]]\nname = "forward"\n', device="cuda"))
    assert r.status == "skipped"
    assert r.error == "device 'cuda' requested but no CUDA device is available"


def test_auto_warmup_applies_to_whole_generations():
    text = 'name = "t"\n[run]\nwarmup = "auto"\niterations = 2\nenergy = false\n' + TINY_MODEL
    case = parse_suite(
        text + '[[workloads]]\nname = "generate"\nprompt_len = 4\nnew_tokens = 3\n'
    ).cases[0]
    r = execute(case)
    assert r.status == "ok", r.traceback
    lat = r.samples["latency"]
    assert lat["warmup_policy"] == "auto" and lat["settled"] in (True, False)
    assert len(lat["warmup"]) >= 10 and len(lat["values"]) == 2
    assert r.info["absent"]["energy"] == "turned off in the suite (run.energy = false)"


def _prune(model, **params):
    tech = registry.techniques.get("prune")
    return tech.fn(model, tech.params(**params), ctx())


def test_global_l1_reaches_the_amount_across_layers(model):
    model, info = _prune(model, method="global_l1", amount=0.6)
    assert info["sparsity_targeted"] == pytest.approx(0.6, abs=1e-3)
    assert len({round(s, 2) for s in info["sparsity_per_layer"].values()}) > 1  # layers differ


@pytest.mark.parametrize("n", [1, 2])
def test_ln_structured_zeroes_whole_output_channels(model, n):
    model, info = _prune(model, method="ln_structured", amount=0.5, n=n)
    w = model.blocks[0].mlp.fc.weight.detach()
    zero_rows = (w == 0).all(dim=1)
    assert zero_rows.float().mean().item() == pytest.approx(0.5, abs=0.01)
    assert info["sparsity_targeted"] == pytest.approx(0.5, abs=0.01)


def test_semi_structured_keeps_two_of_every_four(model):
    model, info = _prune(model, method="semi_structured_2_4")
    w = model.blocks[0].attn.qkv.weight.detach()
    assert ((w.reshape(w.shape[0], -1, 4) != 0).sum(-1) == 2).all()
    assert info["sparsity_targeted"] == pytest.approx(0.5)


def test_semi_structured_takes_no_other_amount():
    from bench.errors import UserError

    text = 'name = "t"\n[[models]]\nname = "tinygpt-s"\n[[workloads]]\nname = "forward"\n'
    text += "baseline = false\n"  # one case, no ratios
    with pytest.raises(UserError, match=r"semi_structured_2_4 prunes exactly 0\.5"):
        parse_suite(
            text + "[[techniques]]\nname = 'prune'\nmethod = 'semi_structured_2_4'\namount = 0.7\n"
        )
    case = parse_suite(
        text + "[[techniques]]\nname = 'prune'\nmethod = 'semi_structured_2_4'\n"
    ).cases[0]
    assert case.id.endswith("/prune-2:4")


@pytest.mark.parametrize("runtime", ["static", "compiled"])
def test_static_and_compiled_decoding_generate_what_eager_does(model, runtime):
    from bench.workloads.generate import StaticDecoder

    prompt = torch.randint(0, 256, (2, 6), generator=torch.Generator().manual_seed(3))
    decoder = StaticDecoder(model, 2, 6 + 9, "cpu", compiled=runtime == "compiled")
    with torch.inference_mode():
        eager, _ = greedy_generate(model, prompt, 9, PerfCounterClock())
        # Twice: the one static cache is reused, its stale tail masked by position.
        for _ in range(2):
            out, _ = greedy_generate(model, prompt, 9, PerfCounterClock(), decoder=decoder)
            assert torch.equal(out, eager)


def test_weight_bytes_read_counts_embedding_rows_looked_up_by_hand():
    from torch import nn

    from bench.telemetry.traffic import weight_bytes_read

    untied = nn.ModuleDict({"emb": nn.Embedding(100, 8), "head": nn.Linear(8, 10)})
    # 3 rows of 8 fp32 values, plus the whole head: 8 x 10 weights and 10 biases.
    assert weight_bytes_read(untied, 3)[0] == 3 * 8 * 4 + (8 * 10 + 10) * 4
    assert weight_bytes_read(untied, 1000)[0] == (100 * 8 + 8 * 10 + 10) * 4  # every row
    tied = nn.ModuleDict({"emb": nn.Embedding(10, 8), "head": nn.Linear(8, 10, bias=False)})
    tied["head"].weight = tied["emb"].weight  # the head reads the whole table anyway
    assert weight_bytes_read(tied, 1) == (10 * 8 * 4, "state_dict_bytes")


def test_forward_and_decode_report_memory_traffic_against_the_read_bandwidth():
    bw = {"read_bytes_per_s": 1e10, "read_method": "fake read", "bytes_per_s": 2e10}
    facts = {"copy_bandwidth": {"cpu@default-threads": bw}}
    forward = '[[workloads]]\nname = "forward"\nseq_len = 16\nbatch = 2\n'
    fwd = execute(suite_case(forward), facts=facts)
    gen = execute(
        suite_case('[[workloads]]\nname = "generate"\nprompt_len = 4\nnew_tokens = 5\n'),
        facts=facts,
    )
    for r in (fwd, gen):
        assert r.status == "ok", r.traceback
    f = {x.name: x for x in fwd.metrics}
    weights = f["state_dict_bytes"].value
    # TINY_MODEL: the token table is tied to the LM head (read whole); the 64 x 32 fp32
    # position table is read one row per token: 32 of its 64 rows in a 2 x 16 call.
    row = 32 * 4
    assert f["memory_traffic_per_call"].value == weights - 32 * row
    assert f["memory_traffic"].value == pytest.approx(
        (weights - 32 * row) / f["latency_median"].value
    )
    assert f["bandwidth_utilization"].value == pytest.approx(f["memory_traffic"].value / 1e8)
    assert "fake read" in f["bandwidth_utilization"].method

    g = {x.name: x for x in gen.metrics}
    # A decode step looks up 1 position row; the KV cache: 1 layer x 32 channels x (K, V)
    # x 4 bytes per position; the steps read 5..8 positions, 6.5 on average.
    kv = 1 * 32 * 2 * 4 * 6.5
    assert g["memory_traffic_per_call"].value == pytest.approx(weights - 63 * row + kv)
    assert g["memory_traffic"].value == pytest.approx(
        (weights - 63 * row + kv) / g["decode_step_median"].value
    )
    no_bw = execute(suite_case(forward))
    assert "bandwidth_utilization" not in {x.name for x in no_bw.metrics}
    assert no_bw.info["absent"]["bandwidth_utilization"].startswith("no read bandwidth")


def test_compiled_decoding_reports_its_compile_time_apart():
    r = execute(
        suite_case(
            '[[workloads]]\nname = "generate"\nprompt_len = 4\nnew_tokens = 4\n'
            'runtime = "compiled"\n'
        )
    )
    assert r.status == "ok", r.traceback
    m = {x.name: x for x in r.metrics}
    assert m["compile_time"].value > 10 * m["latency_median"].value
    assert r.info["runtime"] == "compiled" and r.info["compile_mode"] == "default"
    assert "whole static cache" in m["memory_traffic"].method


def test_compile_time_is_never_negative_and_says_if_the_cache_was_warm():
    from types import SimpleNamespace

    from bench.run.case import _lazy_costs

    case = suite_case('[[workloads]]\nname = "forward"\n')
    slow_first = SimpleNamespace(
        lazy_costs=("compile_time",),
        samples={"latency": {"warmup": [5.0, 1.0], "values": [1.0, 1.1, 0.9]}},
        info={"inductor_cache_state": "empty"},
    )
    absent: dict = {}
    (m,) = _lazy_costs(case, slow_first, [], absent)
    assert m.value == pytest.approx(4.0) and "inductor cache empty" in m.method
    warm = SimpleNamespace(
        lazy_costs=("compile_time",),
        samples={"latency": {"warmup": [0.95], "values": [1.0, 1.1, 0.9]}},
        info={"inductor_cache_state": "non-empty"},
    )
    assert _lazy_costs(case, warm, [], absent) == []
    assert "no slower than the steady median" in absent["compile_time"]
    assert "inductor cache non-empty" in absent["compile_time"]
