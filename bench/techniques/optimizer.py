"""Technique ``optimizer``: which torch.optim algorithm the ``train`` workload steps with.

Every optimizer is torch's own, looked up in a table of names (never by a string from the
suite), with the suite's hyper-parameters passed through. Keys the suite leaves out keep
torch's defaults; a key the algorithm does not take is an error naming it. The
implementation variant (``foreach`` / ``fused`` / ``for-loop``) is torch's too: a fused
kernel that the algorithm or the device lacks is refused, never silently replaced.

Muon orthogonalises 2-D weight matrices only; as in its paper, the embeddings, the output
head and every 1-D parameter (norms, biases) are stepped by AdamW at the same learning rate.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from bench.spec.registry import Params, register_technique

# suite name -> torch.optim class name
ALGORITHMS = {
    "sgd": "SGD",
    "adam": "Adam",
    "adamw": "AdamW",
    "rmsprop": "RMSprop",
    "adagrad": "Adagrad",
    "adafactor": "Adafactor",
    "nadam": "NAdam",
    "radam": "RAdam",
    "adamax": "Adamax",
    "adadelta": "Adadelta",
    "asgd": "ASGD",
    "rprop": "Rprop",
    "muon": "Muon",
}
# The train workload's optimizer when the case applies none: the built-in model's own.
DEFAULT = {"algorithm": "adamw", "lr": 3e-3, "weight_decay": 0.01}
VARIANTS = {"default": {}, "foreach": {"foreach": True}, "for-loop": {"foreach": False},
            "fused": {"fused": True}}  # fmt: skip
VARIANTS_KEYS = ("foreach", "fused")


def optimizer_class(algorithm: str):
    import torch

    return getattr(torch.optim, ALGORITHMS[algorithm])


class OptimizerParams(Params):
    algorithm: Literal[tuple(ALGORITHMS)] = "adamw"  # type: ignore[valid-type]
    lr: float = Field(1e-3, gt=0, le=100)  # peak learning rate (schedules scale it)
    weight_decay: float | None = Field(None, ge=0, le=10)
    momentum: float | None = Field(None, ge=0, lt=1)  # SGD, RMSprop, Muon
    nesterov: bool | None = None  # SGD, Muon
    betas: tuple[float, float] | None = None  # Adam family
    eps: float | None = Field(None, gt=0)
    implementation: Literal["default", "foreach", "fused", "for-loop"] = "default"

    def kwargs(self) -> dict[str, Any]:
        """What the suite set, as torch keyword arguments (unset keys: torch's default)."""
        skip = {"algorithm", "implementation"}
        set_ = {k: v for k, v in self.model_dump().items() if v is not None and k not in skip}
        return {**set_, **VARIANTS[self.implementation]}

    @model_validator(mode="after")
    def _accepted(self) -> OptimizerParams:
        import inspect

        cls = ALGORITHMS[self.algorithm]
        takes = inspect.signature(optimizer_class(self.algorithm).__init__).parameters
        known = ", ".join(k for k in takes if k not in ("self", "params"))
        for key in self.kwargs():
            if key not in takes:
                what = f"implementation {self.implementation!r}" if key in VARIANTS_KEYS else key
                raise ValueError(f"torch.optim.{cls} has no {what} (it takes: {known})")
        return self

    def build(self, model) -> list[Any]:
        """The optimizers stepping ``model``'s trainable parameters (two for Muon)."""
        import torch

        params = [p for p in model.parameters() if p.requires_grad]
        cls = optimizer_class(self.algorithm)
        if self.algorithm != "muon":
            return [cls(params, **self.kwargs())]
        matrices = _hidden_matrices(model)
        ids = {id(p) for p in matrices}
        rest = [p for p in params if id(p) not in ids]
        adamw = {k: v for k, v in self.kwargs().items() if k in ("lr", "weight_decay", "eps")}
        return [cls(matrices, **self.kwargs())] + (
            [torch.optim.AdamW(rest, **adamw)] if rest else []
        )


def _hidden_matrices(model) -> list[Any]:
    """2-D weights of Linear layers, except any shared with an embedding (a tied head)."""
    from torch import nn

    embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return [
        m.weight
        for m in model.modules()
        if isinstance(m, nn.Linear) and m.weight.requires_grad and id(m.weight) not in embedded
    ]


def state_bytes(optimizers) -> int:
    """Bytes of every tensor the optimizers keep between steps (moments, step counts)."""
    import torch

    seen: set[int] = set()
    total = 0
    for opt in optimizers:
        for state in opt.state.values():
            for v in state.values():
                if hasattr(v, "to_local"):  # sharded (FSDP): this rank's part
                    v = v.to_local()
                if isinstance(v, torch.Tensor) and v.data_ptr() not in seen:
                    seen.add(v.data_ptr())
                    total += v.numel() * v.element_size()
    return total


def check_device(p: OptimizerParams, device: str) -> str | None:
    """Why this optimizer variant cannot step on ``device``, or None: a one-parameter try,
    since torch decides fused support per algorithm and device at construction."""
    import torch

    probe = torch.nn.Linear(2, 2, bias=False).to(device)
    try:
        for opt in p.build(probe):
            probe.weight.grad = torch.ones_like(probe.weight)
            opt.step()
    except (RuntimeError, ValueError) as e:
        return f"torch.optim.{ALGORITHMS[p.algorithm]} ({p.implementation}) on {device}: {e}"
    return None


def _check(p: OptimizerParams, case) -> str | None:
    if case.workload.name != "train":
        return f"optimizer applies to the train workload, not {case.workload.name!r}"
    device = case.run["device"]
    if device == "cuda":
        from bench.telemetry.cuda_probe import cuda_available

        if not cuda_available():
            return None  # the case itself is skipped with the reason
    return check_device(p, device)


def _label(p: OptimizerParams) -> str:
    parts = [p.algorithm, f"lr{p.lr:g}"]
    if p.momentum is not None:
        parts.append(f"m{p.momentum:g}" + ("n" if p.nesterov else ""))
    if p.weight_decay is not None:
        parts.append(f"wd{p.weight_decay:g}")
    if p.betas is not None:
        parts.append("b" + ",".join(f"{b:g}" for b in p.betas))
    if p.eps is not None:
        parts.append(f"eps{p.eps:g}")
    if p.implementation != "default":
        parts.append(p.implementation)
    return "-".join(parts)


@register_technique("optimizer", params=OptimizerParams, label=_label, check=_check)
def apply_optimizer(model, p: OptimizerParams, ctx):
    """Train with this torch.optim algorithm and hyper-parameters (train workload)."""
    ctx.training["optimizer"] = p
    return model, {"algorithm": ALGORITHMS[p.algorithm], "kwargs": p.kwargs()}
