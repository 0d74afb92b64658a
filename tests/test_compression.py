"""Quantization and precision on the built-in model: bytes, errors, and the quality order."""

import pytest
import torch

from bench.errors import UserError
from bench.run.case import execute
from bench.run.context import CaseContext
from bench.spec import registry
from bench.spec.suite import parse_suite
from bench.telemetry.size import model_bytes
from bench.workloads.quality import agreement_metrics, logits_of, reference_inputs
from tests.conftest import TINY_MODEL

CTX = CaseContext("cpu", "float32", 0, 1, 2)
LINEAR_BYTES_FP32 = 4 * 4 * 196608  # tinygpt-s: 4 blocks x 196,608 linear weights x 4 bytes


def fresh(**params):
    entry = registry.models.get("tinygpt-s")
    torch.manual_seed(0)
    return entry.fn(entry.params.model_validate({"weights": "random", **params}), CTX).eval()


def apply(model, name, **params):
    tech = registry.techniques.get(name)
    return tech.fn(model, tech.params.model_validate(params), CTX)


@pytest.mark.parametrize(
    ("scheme", "factor"),
    [
        ("int8_dynamic", 4),
        ("int8_weight_only", 4),
        ("int8_dynamic_activation_int8_weight", 4),
        ("int4_weight_only", 8),
    ],
)
def test_quantized_linear_weights_shrink_by_the_expected_factor(scheme, factor):
    model = fresh()
    rest = model_bytes(model) - LINEAR_BYTES_FP32  # embeddings, norms: untouched
    model, info = apply(model, "quantize", scheme=scheme)
    assert info["modules_touched"] == 16 and info["modules_skipped"] == {
        "lm_head": "weight tied to an embedding"
    }
    linear_after = info["bytes_after"] - rest
    assert LINEAR_BYTES_FP32 / linear_after == pytest.approx(factor, rel=0.15)
    with torch.inference_mode():
        assert torch.isfinite(model(torch.randint(0, 256, (1, 8)))).all()


def test_layers_a_scheme_cannot_take_are_reported_not_crashed_on():
    model = fresh(n_embd=96, n_head=2)  # 96 is not a multiple of group_size 64
    model, info = apply(model, "quantize", scheme="int4_weight_only", group_size=64)
    reasons = set(info["modules_skipped"].values())
    assert "in_features 96 is not a multiple of group_size 64" in reasons
    assert info["modules_touched"] == 4  # only the MLP output projections (in_features 384)


def test_float8_on_cpu_is_a_skipped_case():
    text = 'name = "t"\n[run]\nenergy = false\n[[models]]\nname = "tinygpt-s"\n[[workloads]]\nname = "forward"\nseq_len = 8\nbaseline = false\n'
    case = parse_suite(text + "[[techniques]]\nname = 'quantize'\nscheme = 'float8'\n").cases[0]
    r = execute(case)
    assert r.status == "skipped" and "compute capability 8.9" in r.error


def test_unknown_scheme_is_a_user_error():
    text = 'name = "t"\n[[models]]\nname = "tinygpt-s"\n[[workloads]]\nname = "forward"\n'
    with pytest.raises(UserError, match=r"techniques\[0\]\.scheme: 'int3' is not allowed"):
        parse_suite(text + "[[techniques]]\nname = 'quantize'\nscheme = 'int3'\n", where="s.toml")


def test_precision_casts_and_halves_bytes():
    model = fresh()
    before = model_bytes(model)
    model, info = apply(model, "precision", dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model_bytes(model) == before // 2 and info["dtype_after"] == "bfloat16"


@pytest.mark.slow
def test_quality_degrades_in_the_expected_order():
    """fp32 ≈ bf16 ≈ int8 weight-only < int4 < heavy pruning, in KL to the baseline, on the
    trained model (the smoke suite's; trained once and cached)."""
    registry.models.get("tinygpt-s").meta["prepare"](
        registry.models.get("tinygpt-s").params(weights="pydoc")
    )
    base = fresh(weights="pydoc")
    inputs = reference_inputs(base, 0)
    ref = logits_of(base, inputs)

    def kl(name, **params):
        model, _ = apply(fresh(weights="pydoc"), name, **params)
        logits = logits_of(model, inputs).float()
        return {m.name: m.value for m in agreement_metrics(logits, ref)}["kl_to_baseline"]

    bf16 = kl("precision", dtype="bfloat16")
    int8 = kl("quantize", scheme="int8_weight_only")
    int4 = kl("quantize", scheme="int4_weight_only")
    pruned = kl("prune", amount=0.9)
    assert max(bf16, int8) < int4 < pruned
    assert max(bf16, int8) < 0.01


@pytest.mark.slow
def test_compile_reports_compile_time_apart_and_decodes(tmp_path):
    text = (
        """
name = "c"
[run]
warmup = 2
iterations = 3
energy = false
"""
        + TINY_MODEL
        + """
[[workloads]]
name = "forward"
seq_len = 16
baseline = false
[[workloads]]
name = "generate"
prompt_len = 4
new_tokens = 6
baseline = false
[[techniques]]
name = "compile"
"""
    )
    forward, generate = parse_suite(text).cases
    r = execute(forward, facts={"run_dir": str(tmp_path)})
    assert r.status == "ok", r.traceback
    m = {x.name: x for x in r.metrics}
    assert m["compile_time"].value > 10 * m["latency_median"].value  # compiling dwarfs a call
    assert m["compile_time"].method == "first_warmup_call-steady_median (inductor cache empty)"
    assert any((tmp_path / "inductor-cache").iterdir())  # the cache lives in the run folder
    g = execute(generate, facts={"run_dir": str(tmp_path)})
    assert g.status == "ok", g.traceback  # varying positions recompile within the limit
    # The first case filled the run's inductor cache.
    assert g.info["techniques"][0]["inductor_cache_state"] == "non-empty"


@pytest.mark.parametrize("name", ["tinygpt-s", "gpt2-tiny"])
def test_csr_execution_matches_the_dense_pruned_model(name):
    import warnings

    from bench.telemetry.size import model_size_metrics

    entry = registry.models.get(name)
    params = (
        {"n_layer": 1, "n_embd": 32, "n_head": 2, "weights": "random"}
        if name == "tinygpt-s"
        else {}
    )
    torch.manual_seed(0)
    dense = entry.fn(entry.params.model_validate(params), CTX).eval()
    dense, _ = apply(dense, "prune", amount=0.9)
    torch.manual_seed(0)
    sparse = entry.fn(entry.params.model_validate(params), CTX).eval()
    sparse, info = apply(sparse, "prune", amount=0.9, execution="csr")
    assert info["execution"] == "csr"
    x = torch.randint(0, dense.config.vocab_size, (2, 8))
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        torch.testing.assert_close(sparse(x), dense(x), rtol=1e-4, atol=1e-4)
    m = {x.name: x.value for x in model_size_metrics(sparse)}
    d = {x.name: x.value for x in model_size_metrics(dense)}
    assert m["params_total"] == d["params_total"]
    assert m["params_nonzero_fraction"] == pytest.approx(d["params_nonzero_fraction"])
    assert m["state_dict_bytes"] < d["state_dict_bytes"]  # 10% of values plus indices


def _masked_like_shrink(model, amount: float, n: int):
    """The reference for shrink: zero (not remove) the lowest-norm MLP hidden channels,
    input-projection rows and biases alike, computed here independently."""
    from bench.techniques.layers import out_dim
    from bench.techniques.structured import mlp_projections

    for name, ins, _ in mlp_projections(model):
        parent = model.get_submodule(name)
        layers = [getattr(parent, a) for a in ins]
        rows = torch.cat([m.weight.detach().movedim(out_dim(m), 0) for m in layers], dim=1)
        norms = rows.norm(p=n, dim=1)
        drop = norms.argsort()[: round(amount * len(norms))]
        with torch.no_grad():
            for m in layers:
                m.weight.index_fill_(out_dim(m), drop, 0.0)
                if m.bias is not None:
                    m.bias[drop] = 0.0
    return model


@pytest.mark.parametrize("name", ["tinygpt-s", "gpt2-tiny", "llama-tiny"])
@pytest.mark.parametrize("n", [1, 2])
def test_shrink_removes_mlp_channels_and_computes_what_the_mask_does(name, n):
    from bench.telemetry.size import model_size_metrics

    entry = registry.models.get(name)
    params = (
        {"n_layer": 2, "n_embd": 32, "n_head": 2, "weights": "random"}
        if name == "tinygpt-s"
        else {}
    )
    torch.manual_seed(0)
    masked = _masked_like_shrink(entry.fn(entry.params.model_validate(params), CTX).eval(), 0.5, n)
    torch.manual_seed(0)
    model = entry.fn(entry.params.model_validate(params), CTX).eval()
    before = {m.name: m.value for m in model_size_metrics(model)}
    model, info = apply(model, "prune", method="ln_structured", amount=0.5, n=n, shrink=True)
    after = {m.name: m.value for m in model_size_metrics(model)}

    assert all(size // 2 == kept for size, kept in info["hidden_channels"].values())
    assert after["params_total"] == before["params_total"] - info["params_removed"]
    assert after["params_nonzero_fraction"] > 0.99  # removed, not zeroed
    x = torch.randint(0, model.config.vocab_size, (2, 8))
    with torch.inference_mode():
        torch.testing.assert_close(model(x), masked(x), rtol=1e-4, atol=1e-5)
        cache = model.new_cache(2)
        assert model(x, cache, 0).shape == (2, 8, model.config.vocab_size)


def test_shrink_exact_parameter_count_on_tinygpt():
    model = fresh(n_layer=2, n_embd=32, n_head=2)
    model, info = apply(model, "prune", method="ln_structured", amount=0.25, shrink=True)
    # Each block's MLP: 128 hidden channels, 32 removed, each a 32-wide row of fc and a
    # 32-tall column of proj (no biases).
    assert info["params_removed"] == 2 * 32 * (32 + 32)
    assert info["modules_touched"] == 4 and info["modules_candidates"] == 9
    assert info["modules_skipped"]["lm_head"] == "weight tied to an embedding"
    assert info["modules_skipped"]["blocks.0.attn.qkv"].startswith("not an MLP projection")


@pytest.mark.parametrize(
    ("keys", "error"),
    [
        (
            "method = 'l1_unstructured'\namount = 0.5\nshrink = true",
            "needs method = 'ln_structured'",
        ),
        ("method = 'ln_structured'\namount = 1.0\nshrink = true", "needs amount < 1"),
        ("method = 'l1_unstructured'\namount = 0.5\nover = 'heads'", "over = 'heads' needs"),
        ("method = 'ln_structured'\namount = 0.5\nover = 'heads'\nshrink = true", "without shrink"),
        (
            "method = 'ln_structured'\namount = 0.5\nshrink = true\nexecution = 'csr'",
            "leaves no zeros to run sparse",
        ),
    ],
)
def test_shrink_misuse_is_a_user_error(keys, error):
    text = 'name = "t"\n[[models]]\nname = "tinygpt-s"\n[[workloads]]\nname = "forward"\n'
    with pytest.raises(UserError, match=error):
        parse_suite(text + f"[[techniques]]\nname = 'prune'\n{keys}\n", where="s.toml")


SEMI_STRUCTURED = """
[[workloads]]
name = "forward"
seq_len = 16
baseline = false
[[techniques]]
name = "prune"
method = "semi_structured_2_4"
execution = "semi_structured"
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU path")
def test_2_4_execution_off_cuda_is_a_skipped_case():
    case = parse_suite('name = "t"\n[run]\nenergy = false\n' + TINY_MODEL + SEMI_STRUCTURED).cases[
        0
    ]
    assert case.id.endswith("/prune-2:4-semi_structured")
    r = execute(case)
    assert r.status == "skipped"
    assert r.error.startswith("2:4 semi-structured execution (to_sparse_semi_structured) needs")


def test_2_4_execution_needs_the_2_4_method():
    text = (
        'name = "t"\n'
        + TINY_MODEL
        + SEMI_STRUCTURED.replace("semi_structured_2_4", "l1_unstructured")
    )
    with pytest.raises(UserError, match="needs method = 'semi_structured_2_4'"):
        parse_suite(text + "amount = 0.5\n", where="s.toml")


@pytest.mark.gpu
def test_2_4_execution_on_cuda_matches_the_dense_masked_model():
    ctx = CaseContext("cuda", "bfloat16", 0, 1, 2)
    entry = registry.models.get("tinygpt-s")
    params = entry.params.model_validate(
        {"n_layer": 1, "n_embd": 256, "n_head": 4, "weights": "random"}
    )
    torch.manual_seed(0)
    dense = entry.fn(params, ctx).to("cuda", torch.bfloat16).eval()
    tech = registry.techniques.get("prune")
    dense, _ = tech.fn(dense, tech.params(method="semi_structured_2_4"), ctx)
    torch.manual_seed(0)
    sparse = entry.fn(params, ctx).to("cuda", torch.bfloat16).eval()
    sparse, info = tech.fn(
        sparse, tech.params(method="semi_structured_2_4", execution="semi_structured"), ctx
    )
    assert info["modules_touched"] == 4
    x = torch.randint(0, 256, (4, 64), device="cuda")
    with torch.inference_mode():
        torch.testing.assert_close(sparse(x), dense(x), rtol=0.05, atol=0.05)


@pytest.mark.parametrize(("name", "heads"), [("tinygpt-s", 4), ("gpt2-tiny", 4), ("llama-tiny", 4)])
def test_heads_are_zeroed_whole_in_query_and_output(name, heads):
    from bench.techniques.layers import out_dim
    from bench.techniques.structured import attention_blocks

    entry = registry.models.get(name)
    torch.manual_seed(0)
    model = entry.fn(entry.params.model_validate({}), CTX).eval()
    model, info = apply(model, "prune", method="ln_structured", amount=0.5, over="heads")
    assert info["heads"] and all(v == [heads, heads // 2] for v in info["heads"].values())
    assert info["modules_touched"] == 2 * len(info["heads"]) and info["params_removed"] == 0
    for _, attention, q_attr, o_attr in attention_blocks(model):
        out = getattr(attention, o_attr)
        cols = out.weight.detach().movedim(1 - out_dim(out), 0).reshape(heads, -1)
        zero_heads = (cols == 0).all(dim=1)
        assert zero_heads.sum() == heads // 2
        query = getattr(attention, q_attr)
        width = cols.numel() // out.weight.shape[out_dim(out)]  # heads x head_dim
        rows = query.weight.detach().movedim(out_dim(query), 0)[:width].reshape(heads, -1)
        assert torch.equal((rows == 0).all(dim=1), zero_heads)  # the same heads, both sides


def test_size_counts_quantized_weights_and_says_why_zeros_are_not_counted():
    from bench.telemetry.size import model_size_metrics

    before = {m.name: m.value for m in model_size_metrics(fresh())}
    dyn, _ = apply(fresh(), "quantize", scheme="int8_dynamic")  # packed, not parameters
    wo, _ = apply(fresh(), "quantize", scheme="int8_weight_only")  # torchao subclass
    absent: dict[str, str] = {}
    d = {m.name: m.value for m in model_size_metrics(dyn)}
    w = {m.name: m.value for m in model_size_metrics(wo, absent)}
    assert d["params_total"] == w["params_total"] == before["params_total"]
    assert 0.9 < d["params_nonzero_fraction"] <= 1.0
    assert "params_nonzero_fraction" not in w
    assert absent["params_nonzero_fraction"].startswith("count_nonzero failed")
