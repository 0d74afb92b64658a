"""Technique ``lr_schedule``: how the learning rate moves over the ``train`` workload's steps.

Built from ``torch.optim.lr_scheduler``, for a run of a known number of steps. A schedule
is never stepped past its last step: ``CosineAnnealingLR`` is periodic beyond ``T_max``
and ``OneCycleLR`` raises there, so the lr stays at its final value from then on (steps
past the budget happen only in the energy window). The lr actually applied at each step
is recorded by the workload, so a plot shows what ran, not what was meant.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from bench.spec.registry import Params, register_technique


class ScheduleParams(Params):
    schedule: Literal["constant", "step", "cosine", "warmup_cosine", "onecycle"] = "constant"
    warmup_steps: int = Field(0, ge=0)  # warmup_cosine: linear ramp from lr/(warmup+1)
    step_size: int | None = Field(None, ge=1)  # step: decay every this many steps
    gamma: float = Field(0.1, gt=0, le=1)  # step: the factor each decay applies
    min_lr_ratio: float = Field(0.0, ge=0, lt=1)  # cosine, warmup_cosine: floor, x peak lr
    pct_start: float = Field(0.1, gt=0, lt=1)  # onecycle: share of steps spent rising

    @model_validator(mode="after")
    def _coherent(self) -> ScheduleParams:
        if self.schedule == "step" and self.step_size is None:
            raise ValueError("schedule 'step' needs step_size (steps between decays)")
        if self.schedule != "warmup_cosine" and self.warmup_steps:
            raise ValueError(f"warmup_steps belongs to 'warmup_cosine', not {self.schedule!r}")
        if self.schedule == "warmup_cosine" and not self.warmup_steps:
            raise ValueError("schedule 'warmup_cosine' needs warmup_steps >= 1")
        return self

    def build(self, optimizer, total_steps: int):
        """A scheduler for ``optimizer`` over ``total_steps`` optimizer steps."""
        from torch.optim import lr_scheduler as s

        if self.schedule == "constant":
            return s.ConstantLR(optimizer, factor=1.0, total_iters=0)
        if self.schedule == "step":
            return s.StepLR(optimizer, step_size=self.step_size, gamma=self.gamma)
        base = optimizer.param_groups[0]["lr"]
        if self.schedule == "cosine":
            return s.CosineAnnealingLR(
                optimizer, T_max=total_steps, eta_min=base * self.min_lr_ratio
            )
        if self.schedule == "warmup_cosine":
            w = self.warmup_steps
            ramp = s.LinearLR(optimizer, start_factor=1 / (w + 1), total_iters=w)
            decay = s.CosineAnnealingLR(
                optimizer, T_max=total_steps - w, eta_min=base * self.min_lr_ratio
            )
            return s.SequentialLR(optimizer, [ramp, decay], milestones=[w])
        cycle = any(k in optimizer.defaults for k in ("momentum", "betas"))
        if "momentum" in optimizer.defaults and not optimizer.defaults["momentum"]:
            cycle = False  # OneCycle cycles momentum only where there is some
        return s.OneCycleLR(
            optimizer,
            max_lr=base,
            total_steps=total_steps,
            pct_start=self.pct_start,
            cycle_momentum=cycle,
        )


class Clamped:
    """A scheduler that stops moving after ``total_steps`` steps."""

    def __init__(self, scheduler, total_steps: int):
        self.scheduler, self.total, self.done = scheduler, total_steps, 0

    def step(self) -> None:
        self.done += 1
        if self.done < self.total:
            self.scheduler.step()


def _check(p: ScheduleParams, case) -> str | None:
    if case.workload.name != "train":
        return f"lr_schedule applies to the train workload, not {case.workload.name!r}"
    steps = case.workload.params["steps"]
    if p.warmup_steps >= steps:
        return f"warmup_steps ({p.warmup_steps}) must be shorter than the run ({steps} steps)"
    if p.schedule == "onecycle" and p.pct_start * steps < 2:
        # torch divides by the rising phase's length, pct_start x steps - 1
        return f"onecycle needs pct_start x steps >= 2 (here {p.pct_start:g} x {steps})"
    return None


def _label(p: ScheduleParams) -> str:
    extra: dict[str, Any] = {
        "step": f"-every{p.step_size}-x{p.gamma:g}",
        "warmup_cosine": f"-w{p.warmup_steps}",
        "onecycle": f"-pct{p.pct_start:g}",
    }
    floor = f"-min{p.min_lr_ratio:g}" if p.min_lr_ratio else ""
    return f"lr-{p.schedule}{extra.get(p.schedule, '')}{floor}"


@register_technique("lr_schedule", params=ScheduleParams, label=_label, check=_check)
def apply_schedule(model, p: ScheduleParams, ctx):
    """Move the learning rate over the run with this torch.optim.lr_scheduler shape."""
    ctx.training["schedule"] = p
    return model, {"schedule": p.schedule}
