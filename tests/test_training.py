"""The train workload, optimizer / lr_schedule / distill techniques: what they compute
checked against hand computations, and what a user gets wrong refused by key."""

from __future__ import annotations

import math

import pytest
import torch

from bench.errors import UserError
from bench.run.case import execute
from bench.run.suite_driver import exit_code
from bench.spec.suite import parse_suite
from bench.techniques.distill import kd_loss
from bench.techniques.lr_schedule import Clamped, ScheduleParams
from bench.techniques.optimizer import OptimizerParams, state_bytes
from tests.conftest import write_manifest

TINY = """
name = "t"
[run]
warmup = 1
idle_s = 0
energy = false
[[models]]
name = "tinygpt-s"
weights = "random"
n_layer = 2
n_embd = 32
n_head = 2
block_size = 32
"""


def suite(workload: str, techniques: str = "") -> str:
    return TINY + f'[[workloads]]\nname = "train"\nbaseline = false\n{workload}\n' + techniques


def one_case(text: str, index: int = 0):
    return parse_suite(text).cases[index]


def tiny_model():
    from bench.models.tinygpt import GPT, GPTConfig

    torch.manual_seed(0)
    return GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16))


def param_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def stepped(spec: OptimizerParams):
    model = tiny_model()
    opts = spec.build(model)
    model(torch.zeros(1, 4, dtype=torch.long)).sum().backward()
    for o in opts:
        o.step()
    return model, opts


def test_optimizer_state_is_what_the_algorithm_keeps():
    model, adam = stepped(OptimizerParams(algorithm="adam"))
    tensors = len(list(model.parameters()))
    # Two moments per parameter, and one float32 step count per parameter tensor.
    assert state_bytes(adam) == 2 * param_bytes(model) + 4 * tensors
    assert state_bytes(stepped(OptimizerParams(algorithm="sgd"))[1]) == 0
    model, sgd = stepped(OptimizerParams(algorithm="sgd", momentum=0.9))
    assert state_bytes(sgd) == param_bytes(model)
    model, factor = stepped(OptimizerParams(algorithm="adafactor"))
    assert 0 < state_bytes(factor) < 0.5 * param_bytes(model)


def test_muon_steps_hidden_matrices_and_adamw_the_rest():
    model, opts = stepped(OptimizerParams(algorithm="muon", lr=0.02))
    muon, adamw = opts
    assert type(muon).__name__ == "Muon" and type(adamw).__name__ == "AdamW"
    in_muon = {id(p) for g in muon.param_groups for p in g["params"]}
    assert id(model.wte.weight) not in in_muon  # embeddings and the tied head: AdamW
    assert all(p.ndim == 2 for g in muon.param_groups for p in g["params"])
    total = sum(len(g["params"]) for o in opts for g in o.param_groups)
    assert total == len(list(model.parameters()))


def lrs(spec: ScheduleParams, total: int, steps: int | None = None) -> list[float]:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = Clamped(spec.build(opt, total), total)
    out = []
    for _ in range(steps or total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_schedules_match_hand_computed_values():
    assert lrs(ScheduleParams(), 5) == [1.0] * 5
    got = lrs(ScheduleParams(schedule="step", step_size=3, gamma=0.5), 8)
    assert got == pytest.approx([1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25])
    cos = [0.5 * (1 + math.cos(math.pi * t / 10)) for t in range(10)]
    assert lrs(ScheduleParams(schedule="cosine"), 10) == pytest.approx(cos)
    # Warm-up: linear from lr/(w+1) to lr over w steps, then cosine over the rest.
    warm = [1 / 3, 2 / 3] + [0.5 * (1 + math.cos(math.pi * t / 8)) for t in range(8)]
    assert lrs(ScheduleParams(schedule="warmup_cosine", warmup_steps=2), 10) == pytest.approx(warm)
    one = lrs(ScheduleParams(schedule="onecycle", pct_start=0.25), 20)  # peak: 0.25*20-1
    assert one[0] == pytest.approx(1 / 25)  # torch's div_factor
    assert max(one) == pytest.approx(1.0) and one.index(max(one)) == 4
    assert one[-1] == pytest.approx(1 / 25 / 1e4)  # final_div_factor


def test_schedules_hold_their_last_value_past_the_run():
    # Periodic past T_max and raising past OneCycle's total: clamped instead.
    got = lrs(ScheduleParams(schedule="cosine"), 4, steps=9)
    assert got[4:] == [got[3]] * 5
    got = lrs(ScheduleParams(schedule="onecycle"), 20, steps=24)
    assert got[20:] == [got[19]] * 4


def test_kd_loss_against_a_hand_computation():
    s = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 1.0], [2.0, 2.0, 2.0]])
    t = torch.tensor([[3.0, 0.0, 1.0], [0.5, 0.5, -2.0], [1.0, 0.0, -1.0]])
    y = torch.tensor([1, 2, 0])
    alpha, temp = 0.7, 2.0

    def softmax(row, T=1.0):
        e = [math.exp(v / T) for v in row]
        return [v / sum(e) for v in e]

    kl = ce = 0.0
    for i in range(3):
        p, q = softmax(t[i].tolist(), temp), softmax(s[i].tolist(), temp)
        kl += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True)) / 3
        ce += -math.log(softmax(s[i].tolist())[y[i]]) / 3
    want = alpha * temp**2 * kl + (1 - alpha) * ce
    assert kd_loss(s, t, y, alpha, temp).item() == pytest.approx(want, rel=1e-6)
    # A student equal to its teacher has nothing left to learn from it: the soft term is
    # 0 (the "entropy of softmax(z)" version would not be).
    assert kd_loss(t, t, y, 1.0, temp).item() == pytest.approx(0.0, abs=1e-6)


TRAIN = "steps = 12\nbatch = 4\nseq_len = 16\nlog_every = 4"


def test_a_fixed_seed_gives_identical_loss_curves_and_the_memory_split():
    case = one_case(suite(TRAIN + "\ntarget_loss = 100.0"))
    a, b = execute(case), execute(case)
    assert a.status == b.status == "ok", a.error
    assert a.samples["loss"]["values"] == b.samples["loss"]["values"]
    assert len(a.samples["loss"]["values"]) == 3 and len(a.samples["lr"]["values"]) == 12
    m = {x.name: x for x in a.metrics}
    # AdamW (the default): state = 2 x weights (+ step counts), gradients = weights.
    assert m["gradient_bytes"].value == m["weights_bytes"].value
    assert 2 * m["weights_bytes"].value <= m["optimizer_state_bytes"].value
    assert m["optimizer_state_bytes"].value < 2.01 * m["weights_bytes"].value
    assert m["steps_to_target_loss"].value == 4  # the first full window
    assert m["step_median"].unit == "s" and m["heldout_bits_per_byte"].value > 0
    assert "quality" not in a.info["absent"]


def test_checkpointing_saves_activations():
    plain = execute(one_case(suite(TRAIN)))
    ckpt = execute(one_case(suite(TRAIN + "\ncheckpointing = true")))
    a = {m.name: m.value for m in plain.metrics}
    b = {m.name: m.value for m in ckpt.metrics}
    assert 0 < b["activation_bytes"] < a["activation_bytes"]
    assert plain.samples["loss"]["values"] == pytest.approx(ckpt.samples["loss"]["values"])


def test_a_diverging_run_is_a_result_with_its_step():
    tech = '[[techniques]]\nname = "optimizer"\nalgorithm = "sgd"\nlr = 100'
    r = execute(one_case(suite(TRAIN + "\nclip_grad = 0", tech)))
    assert r.status == "diverged" and r.traceback is None
    assert "at step" in r.error and r.info["diverged_at_step"] >= 1
    assert exit_code([r.to_json()]) == 0  # a finding of the run, not a fault of it


@pytest.mark.parametrize(
    ("workload", "techniques", "key", "message"),
    [
        (TRAIN, '[[techniques]]\nname = "optimizer"\nalgorithm = "lion"', "techniques[0]", "lion"),
        (TRAIN, '[[techniques]]\nname = "optimizer"\nlr = 0', "techniques[0].lr", "greater"),
        (
            TRAIN,
            '[[techniques]]\nname = "optimizer"\nalgorithm = "rmsprop"\nimplementation = "fused"',
            "techniques[0]",
            "RMSprop has no implementation 'fused'",
        ),
        (
            TRAIN,
            '[[techniques]]\nname = "lr_schedule"\nschedule = "warmup_cosine"\nwarmup_steps = 12',
            "techniques[0]",
            "shorter than the run",
        ),
        (TRAIN, '[[techniques]]\nname = "lr_schedule"\nschedule = "sawtooth"', "schedule", ""),
        (
            TRAIN,
            '[[techniques]]\nname = "distill"\nteacher = {name = "tinygpt-s", weights = "random", n_layer = 1, n_embd = 16, n_head = 1}',
            "techniques[0]",
            "larger than its teacher",
        ),
    ],
)
def test_bad_training_input_names_the_key(workload, techniques, key, message):
    with pytest.raises(UserError) as info:
        parse_suite(suite(workload, techniques), where="s.toml")
    assert key in str(info.value) and message in str(info.value)


def test_training_techniques_refuse_other_workloads():
    text = TINY + '[[workloads]]\nname = "forward"\n[[techniques]]\nname = "optimizer"\n'
    with pytest.raises(UserError, match="applies to the train workload, not 'forward'"):
        parse_suite(text, where="s.toml")


def test_distilled_student_reports_its_teacher_and_saves_its_weights(tmp_path):
    from safetensors.torch import load_model

    from bench.models.tinygpt import GPT, GPTConfig

    teacher = '{name = "tinygpt-s", weights = "random", n_layer = 2, n_embd = 64, n_head = 2, block_size = 32}'
    tech = f'[[techniques]]\nname = "distill"\nteacher = {teacher}\ntemperature = 2.0'
    r = execute(one_case(suite(TRAIN, tech)), facts={"run_dir": str(tmp_path)})
    assert r.status == "ok", r.error
    m = {x.name: x.value for x in r.metrics}
    assert m["kl_to_teacher"] > 0 and 0 <= m["top1_agreement_teacher"] <= 1
    assert m["size_vs_teacher"] < 1 and m["teacher_time"] > 0 and m["speedup_vs_teacher"] > 0
    # The curve is the cross-entropy on the data, comparable with a scratch student's;
    # the objective (with the teacher's term) is kept beside it.
    assert len(r.samples["objective"]["values"]) == 12
    assert r.samples["loss"]["values"] != r.samples["objective"]["values"][3::4]
    student = GPT(GPTConfig(n_layer=2, n_embd=32, n_head=2, block_size=32))
    load_model(student, r.info["checkpoint"])  # strict: the saved student is this shape


def test_a_training_run_reports_curves_memory_and_who_reached_the_target(tmp_path):
    from bench.analysis.report import write_reports
    from bench.results import store

    techniques = (
        '[[techniques]]\nname = "baseline"\n'
        '[[techniques]]\nname = "optimizer"\nalgorithm = "sgd"\nlr = 0.1\n'
        '[[techniques]]\nchain = [{name = "optimizer", algorithm = "adam", lr = 0.01}, '
        '{name = "lr_schedule", schedule = "cosine"}]\n'
    )
    text = suite(TRAIN + "\ntarget_loss = 5.0", techniques)
    run = tmp_path / "results" / "run1"
    write_manifest(run, "t", text)
    for case in parse_suite(text).cases:
        result = execute(case, run_id="run1")
        store.write_json_atomic(store.case_path(run, case.id, 0), result.to_json())
    html = write_reports([run], tmp_path / "reports")[0]
    for figure in ("loss_curves", "lr_schedules", "training_memory"):
        assert (html.parent / f"{figure}.png").stat().st_size > 10_000
    text = html.read_text()
    assert "fastest to target loss" in text and "least optimizer state: sgd-lr0.1" in text


def test_bf16_autocast_with_gradient_accumulation_trains_on_every_micro_batch():
    r = execute(one_case(suite(TRAIN + '\nautocast = "bfloat16"\ngrad_accum = 3')))
    assert r.status == "ok", r.error
    m = {x.name: x.value for x in r.metrics}
    assert m["throughput_tokens"] * m["step_median"] == pytest.approx(3 * 4 * 16)
    assert m["loss_final"] < math.log(256)  # it learned something from the data
