import pytest
import torch

from bench.models import TinyGPTOverrides
from bench.run.case import execute
from bench.spec.suite import parse_suite
from bench.workloads.quality import agreement_metrics, reference_logits
from tests.conftest import TINY_MODEL


def test_training_is_cached_by_content_and_never_pickled(tmp_path, monkeypatch):
    from bench.spec import registry

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    prepare = registry.models.get("tinygpt-s").meta["prepare"]
    params = TinyGPTOverrides(n_layer=1, n_embd=32, n_head=2, weights="pydoc", train_steps=5)
    first = prepare(params)
    again = prepare(params)
    assert first["cached"] is False and again["cached"] is True
    assert again["held_out_bits_per_byte"] == first["held_out_bits_per_byte"]
    (path,) = (tmp_path / "models").glob("*.safetensors")
    assert path.read_bytes()[8:9] == b"{"  # a safetensors JSON header, not a pickle
    other = prepare(params.model_copy(update={"train_steps": 6}))
    assert other["cached"] is False  # another training config is another cache entry


def test_the_default_trained_model_ships_with_bench_and_trains_nothing(tmp_path, monkeypatch):
    from bench.spec import registry

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    record = registry.models.get("tinygpt-s").meta["prepare"](TinyGPTOverrides(weights="pydoc"))
    assert record["shipped"] is True and record["cached"] is True
    assert not (tmp_path / "models").exists()  # nothing trained, nothing cached
    assert 2.8 < record["held_out_bits_per_byte"] < 3.1


@pytest.mark.slow
def test_retraining_with_the_recipe_lands_within_a_tenth_of_a_bit_of_the_shipped_weights():
    """The recipe in bench.models.train.ship, rerun: CPU training is not bit-reproducible,
    but it must land where the shipped weights did."""
    import json

    from safetensors import safe_open

    from bench.models import tinygpt_config
    from bench.models.tinygpt import GPT
    from bench.models.train import TrainConfig, shipped_path, train

    with safe_open(str(shipped_path("tinygpt-s")), framework="pt") as f:
        shipped = json.loads(f.metadata()["record"])["held_out_bits_per_byte"]
    torch.manual_seed(0)
    model = GPT(tinygpt_config("s", TinyGPTOverrides(weights="pydoc")))
    again = train(model, TrainConfig())["held_out_bits_per_byte"]
    assert abs(again - shipped) < 0.1


def test_agreement_of_identical_and_different_logits():
    ref = torch.randn(2, 5, 11)
    same = {m.name: m.value for m in agreement_metrics(ref.clone(), ref)}
    assert same == {
        "kl_to_baseline": 0.0,
        "top1_agreement": 1.0,
        "logit_max_abs_error": 0.0,
        "logit_rel_error": 0.0,
    }
    other = {m.name: m.value for m in agreement_metrics(ref + torch.randn(2, 5, 11), ref)}
    assert other["kl_to_baseline"] > 0 and other["top1_agreement"] < 1


def test_reference_is_computed_once_and_reused(tmp_path):
    calls = []
    ref = torch.randn(1, 3, 4)

    class Model(torch.nn.Module):
        def forward(self, x):
            calls.append(1)
            return ref

    model = Model()
    model.dummy = torch.nn.Parameter(torch.zeros(1))
    inputs = torch.zeros(1, 3, dtype=torch.long)
    path = tmp_path / "refs" / "m.safetensors"
    a, reused_a = reference_logits(path, lambda: model, inputs)
    b, reused_b = reference_logits(path, lambda: model, inputs)
    assert (reused_a, reused_b) == (False, True) and len(calls) == 1
    assert torch.equal(a, b)


def test_quality_in_a_random_weight_case(tmp_path):
    text = (
        """
name = "q"
[run]
quality = true
energy = false
iterations = 2
"""
        + TINY_MODEL
        + """
[[workloads]]
name = "forward"
seq_len = 16
baseline = false
[[techniques]]
name = "prune"
amount = 0.5
"""
    )
    case = parse_suite(text).cases[0]
    r = execute(case, facts={"run_dir": str(tmp_path)})
    assert r.status == "ok", r.traceback
    m = {x.name: x for x in r.metrics}
    assert m["heldout_bits_per_byte"].value > 7  # random weights: ~8 bits, no better than chance
    assert m["kl_to_baseline"].unit == "nats/token" and m["kl_to_baseline"].value > 0
    assert r.info["quality"]["reference"]["reused"] is False
    assert (tmp_path / "refs" / "tinygpt-s-L1-H2-E32-T64.safetensors").exists()


def test_eval_workload_scores_the_held_out_split():
    text = (
        """
name = "e"
[run]
iterations = 2
warmup = 1
energy = false
"""
        + TINY_MODEL
        + """
[[workloads]]
name = "eval"
seq_len = 64
timed_bytes = 1024
"""
    )
    r = execute(parse_suite(text).cases[0])
    assert r.status == "ok", r.traceback
    m = {x.name: x for x in r.metrics}
    assert m["eval_bits_per_byte"].value > 7 and m["eval_bits_per_byte"].unit == "bits/byte"
    assert m["eval_bits_per_byte"].method == "cross_entropy_pydoc_heldout_seq64"
    # heldout_* means run.quality's figure at 128 only: one definition per name.
    assert "heldout_bits_per_byte" not in m
    assert m["throughput_tokens"].value == pytest.approx(1024 / m["latency_median"].value)


def test_a_baseline_that_disagrees_with_its_own_reference_gets_no_agreement(tmp_path):
    from bench.workloads.quality import quality_metrics

    text = 'name = "q"\n[run]\nquality = true\n' + TINY_MODEL + '[[workloads]]\nname = "forward"\n'
    case = parse_suite(text).cases[0]
    assert case.is_baseline

    def fresh(seed):
        torch.manual_seed(seed)
        from bench.run.context import CaseContext
        from bench.spec import registry

        entry = registry.models.get("tinygpt-s")
        ctx = CaseContext("cpu", "float32", 0, 1, 2)
        return entry.fn(entry.params.model_validate(case.model.params), ctx).eval()

    # The reference came from a process whose random weights differed (seed 1, not 0).
    metrics, info = quality_metrics(fresh(0), case, lambda: fresh(1), tmp_path / "refs")
    assert "kl_to_baseline" not in {m.name for m in metrics}
    assert "weights not deterministic" in info["agreement"]
