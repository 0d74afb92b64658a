"""Training: N optimizer steps, timed one by one, with the loss curve, the memory training
holds and the cost of reaching a target loss.

The optimizer, lr schedule and teacher come from the case's techniques (``optimizer``,
``lr_schedule``, ``distill``); a case with none trains with AdamW (lr 3e-3, weight decay
0.01) at a constant lr and plain cross-entropy, the scratch baseline its group compares
against. Warm-up steps train like every other step (they count towards the target) but
their times are left out of ``step_*``. The loss curve and the target follow the
cross-entropy on the training data (for a distilled student too, whose objective adds the
teacher's term): the target is reached at the first step where its mean over the last
``log_every`` steps is at or below ``target_loss``.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from bench.results.schema import EnergyWork, Metric, WorkloadOutput, series_metrics
from bench.spec.registry import Params, register_workload
from bench.telemetry.series import describe_series
from bench.telemetry.timer import Samples
from bench.workloads.train_loop import Batches, Stepper, activation_bytes, tensor_bytes


class TrainParams(Params):
    steps: int = Field(200, ge=1, le=10_000_000)  # optimizer steps (the schedule's length)
    max_seconds: float | None = Field(None, gt=0)  # stop sooner once steps took this long
    batch: int = Field(16, ge=1, le=65536)  # sequences per micro-batch
    seq_len: int = Field(128, ge=2, le=1_048_576)  # tokens per sequence
    grad_accum: int = Field(1, ge=1, le=4096)  # micro-batches per optimizer step
    autocast: Literal["none", "bfloat16"] = "none"  # mixed precision of the forward pass
    checkpointing: bool = False  # gradient checkpointing: recompute activations
    clip_grad: float = Field(1.0, ge=0)  # max gradient norm; 0: no clipping
    target_loss: float | None = Field(None, gt=0)  # nats/token of the training loss
    log_every: int = Field(10, ge=1)  # steps per point of the loss curve
    save: bool = False  # keep the trained weights (safetensors) in the run folder
    # Held-out windows of 128 bytes scored at the end, evenly spaced; 0: all (~360).
    heldout_windows: int = Field(64, ge=0)


def _label(p: TrainParams) -> str:
    parts = [f"train-b{p.batch}-s{p.seq_len}-n{p.steps}"]
    if p.max_seconds:
        parts.append(f"{p.max_seconds:g}s")
    if p.grad_accum > 1:
        parts.append(f"acc{p.grad_accum}")
    if p.autocast != "none":
        parts.append("bf16")
    if p.checkpointing:
        parts.append("ckpt")
    if p.target_loss:
        parts.append(f"to{p.target_loss:g}")
    return "-".join(parts)


def _optimizer_and_schedule(ctx):
    from bench.techniques.lr_schedule import ScheduleParams
    from bench.techniques.optimizer import DEFAULT, OptimizerParams

    return (
        ctx.training.get("optimizer") or OptimizerParams(**DEFAULT),
        ctx.training.get("schedule") or ScheduleParams(),
    )


@register_workload("train", params=TrainParams, label=_label, headline="step_median", quality=False)
def run_train(model, params: TrainParams, ctx) -> WorkloadOutput:
    """Train ``model`` in place for ``steps`` optimizer steps (or ``max_seconds``)."""
    from bench.errors import UnsupportedHere
    from bench.techniques.lr_schedule import Clamped
    from bench.techniques.optimizer import check_device

    opt_spec, sched_spec = _optimizer_and_schedule(ctx)
    teacher = ctx.training.get("distill")
    if params.checkpointing:
        if not hasattr(model, "gradient_checkpointing_enable"):
            raise UnsupportedHere(f"{type(model).__name__} has no gradient checkpointing")
        model.gradient_checkpointing_enable()
    seq = min(params.seq_len, model.config.block_size)
    batches = Batches(
        model.config.vocab_size, params.batch, seq, ctx.seed, ctx.device, shard=ctx.data_shard
    )
    model.train()
    # Also imports torch's compiler stack, which a process's first optimizer step pulls in
    # (~2 s): a cost of starting Python, kept out of the first timed step.
    why = check_device(opt_spec, ctx.device)
    if why:
        raise UnsupportedHere(why)
    optimizers = opt_spec.build(model)
    stepper = Stepper(
        model,
        optimizers,
        batches,
        params.grad_accum,
        params.autocast,
        params.clip_grad or None,
        teacher,
        [Clamped(sched_spec.build(o, params.steps), params.steps) for o in optimizers],
    )
    # Every step trains, so warm-up cannot run "until settled": "auto" discards 2 steps.
    clock, warm = ctx.clock, ctx.warmup if isinstance(ctx.warmup, int) else 2
    losses, objective, lrs, marks, teacher_marks = [], [], [], [], []
    elapsed, reached = 0.0, None
    with ctx.memory.phase("train", ctx.sync):
        for step in range(params.steps):
            lrs.append(optimizers[0].param_groups[0]["lr"])
            t0 = clock.mark()
            soft = stepper.teacher_logits(step)
            t1 = clock.mark()
            loss, ce = stepper(step, soft)
            objective.append(loss)
            losses.append(ce)
            t2 = clock.mark()
            marks.append((t1, t2))
            teacher_marks.append((t0, t1))
            # The running total decides the target and the time budget as training goes:
            # on a GPU the step's end event must have completed before it can be read.
            ctx.sync()
            elapsed += clock.seconds(t1, t2)
            k = params.log_every
            target = params.target_loss
            if reached is None and target and len(losses) >= k and sum(losses[-k:]) / k <= target:
                reached = (step + 1, elapsed)
            if params.max_seconds and elapsed >= params.max_seconds:
                break
    clock.finish()
    model.eval()
    times = [clock.seconds(a, b) for a, b in marks]
    steps_run = len(times)
    policy = "fixed" if isinstance(ctx.warmup, int) else "fixed (auto: 2 training steps)"
    samples = Samples(times[warm:], times[:warm], warmup_policy=policy, method=clock.method)
    if not samples.values:
        raise ValueError(f"all {steps_run} steps were warm-up: run more steps than run.warmup")
    s = describe_series(samples.values)
    tokens = params.batch * seq * params.grad_accum
    k = params.log_every
    blocks = range(k, steps_run + 1, k)
    absent: dict[str, str] = {}
    metrics = [
        *series_metrics("step", s, "s", samples.method),
        Metric("throughput_tokens", tokens / s["median"], "tokens/s", "tokens/step_median"),
        Metric("steps_run", steps_run, "steps", "count"),
        Metric("train_time", elapsed, "s", f"sum_of_step_times ({samples.method})"),
        Metric(
            "loss_final",
            sum(losses[-k:]) / len(losses[-k:]),
            "nats/token",
            f"mean_train_cross_entropy_last_{min(k, steps_run)}_steps",
        ),
        *_target_metrics(params, reached, steps_run, absent),
        *_memory_metrics(model, optimizers, batches, stepper),
        *_heldout(model, params.heldout_windows, absent),
    ]
    out_samples: dict[str, Any] = {
        "step": samples.to_json(),
        "loss": {
            "unit": "nats/token",
            "every": k,
            "steps": list(blocks),
            "values": [sum(losses[b - k : b]) / k for b in blocks],
            "seconds": [sum(times[:b]) for b in blocks],
        },
        "lr": {"unit": "1", "values": lrs},
    }
    if teacher is not None:
        out_samples["objective"] = {"unit": "nats/token", "values": objective}
    info: dict[str, Any] = {"optimizer": opt_spec.kwargs() | {"algorithm": opt_spec.algorithm}}
    info["schedule"] = sched_spec.model_dump()
    if teacher is not None:
        t_times = [clock.seconds(a, b) for a, b in teacher_marks]
        out_samples["teacher_forward"] = {"unit": "s", "values": t_times}
        metrics += _teacher_metrics(model, teacher, batches, t_times, ctx)
    if teacher is not None or params.save:
        info["checkpoint"] = _save(model, ctx, absent)
    twin, call = _energy_step(model, opt_spec, stepper, steps_run)
    energy = EnergyWork(
        call,
        {"tokens": tokens, "steps": 1},
        prepare=twin,
        per="step_median",
        totals={"energy_to_target_loss": reached[0]} if reached else {},
    )
    return WorkloadOutput(metrics, samples=out_samples, info=info, energy=energy, absent=absent)


def _target_metrics(params: TrainParams, reached, steps_run: int, absent) -> list[Metric]:
    names = ("steps_to_target_loss", "time_to_target_loss", "energy_to_target_loss")
    if params.target_loss is None:
        for n in names:
            absent[n] = "the workload sets no target_loss"
        return []
    if reached is None:
        for n in names:
            absent[n] = f"not reached in {steps_run} steps (target {params.target_loss:g})"
        return []
    how = f"first step whose mean cross-entropy over the last {params.log_every} steps <= target"
    return [
        Metric("steps_to_target_loss", reached[0], "steps", how),
        Metric("time_to_target_loss", reached[1], "s", "sum_of_step_times_to_target"),
    ]


def _memory_metrics(model, optimizers, batches, stepper) -> list[Metric]:
    from bench.techniques.optimizer import state_bytes

    params = [p for p in model.parameters()]
    grads = [p.grad for p in params]
    x, _ = batches(0)
    metrics = [
        Metric("weights_bytes", tensor_bytes(params), "bytes", "parameter_storages"),
        Metric("gradient_bytes", tensor_bytes(grads), "bytes", "grad_storages_after_last_step"),
        Metric("optimizer_state_bytes", state_bytes(optimizers), "bytes", "state_tensors"),
    ]
    model.train()  # checkpointing recomputes in training mode only: measure what ran
    try:
        saved = activation_bytes(model, x, stepper.autocast_context)
    finally:
        model.eval()
    method = "saved_tensors_hooks_one_microbatch"
    metrics.append(Metric("activation_bytes", saved, "bytes", method))
    return metrics


def _heldout(model, windows: int, absent) -> list[Metric]:
    from bench.workloads.quality import heldout_metrics

    if model.config.vocab_size != 256:
        absent["heldout_bits_per_byte"] = "trained on random tokens: no held-out text to score"
        return []
    return heldout_metrics(model, windows=windows or None)


def _teacher_metrics(model, teacher, batches, t_times, ctx) -> list[Metric]:
    """What the student keeps of its teacher (KL, top-1 on held-out text) and at what
    speed and size: both timed here on the same micro-batch, in this process."""
    import statistics

    from bench.telemetry.timer import time_calls
    from bench.workloads import inference
    from bench.workloads.quality import agreement_metrics, logits_of, reference_inputs

    x, _ = batches(0)
    median = {}
    for who, m in (("student", model), ("teacher", teacher.model)):
        timed = time_calls(inference(lambda m=m: m(x)), warmup=1, iterations=5, clock=ctx.clock)
        median[who] = statistics.median(timed.values)
    inputs = reference_inputs(model, ctx.seed)
    agree = agreement_metrics(logits_of(model, inputs), logits_of(teacher.model, inputs), "teacher")
    size = sum(p.numel() for p in model.parameters()) / sum(
        p.numel() for p in teacher.model.parameters()
    )
    return [
        *[m for m in agree if m.name in ("kl_to_teacher", "top1_agreement_teacher")],
        Metric(
            "speedup_vs_teacher",
            median["teacher"] / median["student"],
            "x",
            f"teacher/student forward median, 5 calls each ({ctx.clock.method})",
        ),
        Metric("size_vs_teacher", size, "1", "student/teacher parameters"),
        Metric("teacher_forward_median", statistics.median(t_times), "s", ctx.clock.method),
        Metric("teacher_time", sum(t_times), "s", f"sum_of_teacher_forwards ({ctx.clock.method})"),
    ]


def _save(model, ctx, absent) -> str | None:
    """The trained weights as safetensors in the run folder (e.g. a draft model)."""
    import json

    from safetensors.torch import save_model

    from bench.atomic import atomic_path

    if ctx.run_dir is None or ctx.case_stem is None:
        absent["checkpoint"] = "no run folder to keep the weights in (inline library call)"
        return None
    path = Path(ctx.run_dir) / "checkpoints" / f"{ctx.case_stem}.safetensors"
    config = getattr(model.config, "__dict__", {})
    meta = {"config": json.dumps(config, default=str)}
    if ctx.model is not None:  # what a later run rebuilds it as (a draft model)
        meta["model"] = json.dumps({"name": ctx.model.name, **ctx.model.params})
    if teacher := ctx.training.get("distill"):
        meta["teacher"] = teacher.label
    with atomic_path(path) as tmp:
        save_model(model, str(tmp), metadata=meta)
    return str(path)


def _energy_step(model, opt_spec, stepper: Stepper, start: int):
    """One more training step, for the energy window, on a copy with its own optimizer:
    the trained model is left as the workload measured it. The teacher's logits of one
    micro-batch are computed once and reused (its cost is reported apart). Returns (the
    copy's builder, the step)."""

    @functools.cache  # built before a window of its own: a case without one makes no copy
    def twin_step():
        twin = (model.twin() if hasattr(model, "twin") else copy.deepcopy(model)).train()
        step = copy.copy(stepper)
        step.model, step.schedulers = twin, []
        step.params = [p for p in twin.parameters() if p.requires_grad]
        step.optimizers = opt_spec.build(twin)
        return step, stepper.teacher_logits(start)

    def call():
        step, soft = twin_step()
        return step(start, soft)  # one batch past the run's, again and again

    return twin_step, call
