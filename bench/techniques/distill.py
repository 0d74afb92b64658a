"""Technique ``distill``: train the case's model (the student) to copy a teacher.

The loss is Hinton et al.'s (2015):

    alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)

over every predicted position: the teacher's tempered distribution is the target of the
KL term (not the student's own entropy, as in a widely copied version), and T^2 keeps the
soft term's gradients on the scale of the hard one as T grows. The teacher is any model of
the registry (by default the trained ``tinygpt-m``), run without gradients; its forward
passes are timed apart from the student's steps, so its cost is reported on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator

from bench.spec.registry import Params, register_technique

DEFAULT_TEACHER = {"name": "tinygpt-m", "weights": "pydoc"}


def kd_terms(student_logits, teacher_logits, targets, temperature: float):
    """(KL(softmax(t/T) || softmax(s/T)), CE(s, y)), each the mean over positions."""
    import torch.nn.functional as F

    v = student_logits.shape[-1]
    s = student_logits.reshape(-1, v).float()
    t = teacher_logits.reshape(-1, v).float()
    hard = F.cross_entropy(s, targets.reshape(-1))
    # kl_div(input=log q, target=log p, log_target=True) = sum p (log p - log q): KL(p || q)
    soft = F.kl_div(
        F.log_softmax(s / temperature, dim=-1),
        F.log_softmax(t / temperature, dim=-1),
        log_target=True,
        reduction="batchmean",
    )
    return soft, hard


def kd_loss(student_logits, teacher_logits, targets, alpha: float, temperature: float):
    """The distillation loss above, averaged over positions (logits: [..., vocab])."""
    soft, hard = kd_terms(student_logits, teacher_logits, targets, temperature)
    return alpha * temperature**2 * soft + (1 - alpha) * hard


class DistillParams(Params):
    teacher: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_TEACHER))
    alpha: float = Field(0.5, ge=0, le=1)  # weight of the soft (teacher) term
    temperature: float = Field(2.0, gt=0, le=100)  # T: softens both distributions

    @field_validator("teacher")
    @classmethod
    def _known_model(cls, v: dict[str, Any]) -> dict[str, Any]:
        from bench.spec.registry import normal_model_entry

        return normal_model_entry(v)


def teacher_component(p: DistillParams) -> tuple[Any, Params, str]:
    """(registry entry, validated parameters, label) of the teacher."""
    from bench.spec.registry import model_entry

    return model_entry(p.teacher)


@dataclass
class Teacher:
    model: Any
    label: str
    alpha: float
    temperature: float

    def loss(self, student_logits, teacher_logits, targets):
        """(the distillation loss to minimise, the cross-entropy on the data within it)."""
        soft, hard = kd_terms(student_logits, teacher_logits, targets, self.temperature)
        return self.alpha * self.temperature**2 * soft + (1 - self.alpha) * hard, hard


def parameter_count(entry, params) -> int | None:
    """Parameters of a registry model without building its weights, where it can say."""
    count = entry.meta.get("parameter_count")
    return None if count is None else count(params)


def _check(p: DistillParams, case) -> str | None:
    from bench.spec import registry

    if case.workload.name != "train":
        return f"distill applies to the train workload, not {case.workload.name!r}"
    entry, params, label = teacher_component(p)
    student = registry.models.get(case.model.name)
    mine = parameter_count(student, student.params.model_validate(case.model.params))
    theirs = parameter_count(entry, params)
    if mine is not None and theirs is not None and mine > theirs:
        return (
            f"the student {case.model.label} ({mine:,} parameters) is larger than its "
            f"teacher {label} ({theirs:,})"
        )
    return None


def _label(p: DistillParams) -> str:
    _, _, teacher = teacher_component(p)
    return f"distill-{teacher}-T{p.temperature:g}-a{p.alpha:g}"


def _teacher_models(p: DistillParams) -> list[tuple[Any, Params, str]]:
    return [teacher_component(p)]


@register_technique(
    "distill", params=DistillParams, label=_label, check=_check, models=_teacher_models
)
def apply_distill(model, p: DistillParams, ctx):
    """Train against a teacher's tempered outputs as well as the data (train workload)."""
    entry, params, label = teacher_component(p)
    teacher = entry.fn(params, ctx).to(device=ctx.device, dtype=ctx.torch_dtype).eval()
    teacher.requires_grad_(False)
    vocab = (model.config.vocab_size, teacher.config.vocab_size)
    if vocab[0] != vocab[1]:
        raise ValueError(f"student and teacher vocabularies differ: {vocab[0]} vs {vocab[1]}")
    sizes = [sum(p.numel() for p in m.parameters()) for m in (model, teacher)]
    if sizes[0] > sizes[1]:  # models whose size the suite check could not know
        raise ValueError(
            f"the student ({sizes[0]:,} parameters) is larger than its teacher "
            f"{label} ({sizes[1]:,})"
        )
    ctx.training["distill"] = Teacher(teacher, label, p.alpha, p.temperature)
    return model, {"teacher": label, "teacher_model": getattr(teacher, "bench_info", {})}
