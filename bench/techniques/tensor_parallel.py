"""Tensor-parallel plans: which linear layers of a model architecture are split by columns
(outputs) and which by rows (inputs), through ``torch.distributed.tensor.parallel``.

Attention is split by heads (query/key/value by columns, the output projection by rows) and
the MLP by its hidden width, so each block costs two all-reduces of the activations, as in
Megatron-LM. A plan is looked up by the model's class; an architecture without one is
refused with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Layers torch's ColwiseParallel/RowwiseParallel cannot shard, by architecture: why not.
UNSUPPORTED = {
    "gpt2": (
        "GPT-2's attention and MLP are transformers Conv1D layers (weights stored "
        "transposed); torch's tensor-parallel styles shard nn.Linear and nn.Embedding only"
    ),
}


def tp_check(model, world_size: int) -> str | None:
    """Why ``model`` (a suite's model entry) cannot be split over ``world_size`` ranks, from
    its registry facts (heads), or None (also when the facts are unknown: checked on the
    rank)."""
    from bench.spec import registry

    entry = registry.models.get(model.name)
    heads = entry.meta.get("attention_heads")
    if heads is None:
        return None
    layout, counts = heads(entry.params.model_validate(model.params))
    if layout in UNSUPPORTED:
        return f"tensor parallel of {model.label}: {UNSUPPORTED[layout]}"
    for what, n in counts.items():
        if n % world_size:
            return (
                f"tensor parallel of {model.label}: its {n} {what} do not split over "
                f"world_size {world_size}"
            )
    return None


def _interleave_qkv(linear, world: int) -> None:
    """Reorder a fused [q | k | v] projection's output rows to [q_0 k_0 v_0 | q_1 k_1 v_1 |
    ...] (rank r's heads together), so a column split hands each rank whole heads of all
    three; the unsharded layer would compute the same values in this new order."""
    import torch

    with torch.no_grad():
        for name in ("weight", "bias"):
            t = getattr(linear, name)
            if t is None:
                continue
            rows = t.shape[0]
            grouped = t.reshape(3, world, rows // (3 * world), *t.shape[1:]).transpose(0, 1)
            t.copy_(grouped.reshape(t.shape))


def _tinygpt(model, world: int) -> tuple[list[Any], dict[str, Any]]:
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

    for block in model.blocks:
        _interleave_qkv(block.attn.qkv, world)
    plan = {
        "attn.qkv": ColwiseParallel(),
        "attn.proj": RowwiseParallel(),
        "mlp.fc": ColwiseParallel(),
        "mlp.proj": RowwiseParallel(),
    }
    return [(block, plan) for block in model.blocks], {"tp_layout": "tinygpt"}


def _llama(model, world: int) -> tuple[list[Any], dict[str, Any]]:
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

    plan = {
        "self_attn.q_proj": ColwiseParallel(),
        "self_attn.k_proj": ColwiseParallel(),
        "self_attn.v_proj": ColwiseParallel(),
        "self_attn.o_proj": RowwiseParallel(),
        "mlp.gate_proj": ColwiseParallel(),
        "mlp.up_proj": ColwiseParallel(),
        "mlp.down_proj": RowwiseParallel(),
    }
    return [(layer, plan) for layer in model.hf.model.layers], {"tp_layout": "llama"}


# The class of the model (or of the transformers model a CausalLM wraps) -> its plan.
PLANS: dict[str, Callable[[Any, int], tuple[list[Any], dict[str, Any]]]] = {
    "GPT": _tinygpt,
    "LlamaForCausalLM": _llama,
}


def shard(model, world: int, device: str) -> tuple[Any, dict[str, Any]]:
    """Split ``model`` in place over the ``world`` ranks of the current process group."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor.parallel import parallelize_module

    inner = getattr(model, "hf", model)
    name = type(inner).__name__
    family = getattr(getattr(inner, "config", None), "model_type", None)
    if family in UNSUPPORTED:
        raise ValueError(f"tensor parallel of {name}: {UNSUPPORTED[family]}")
    if name not in PLANS:
        raise ValueError(f"no tensor-parallel plan for {name}; known: {', '.join(PLANS)}")
    units, info = PLANS[name](model, world)
    mesh = init_device_mesh(device.split(":")[0], (world,))
    for unit, plan in units:
        parallelize_module(unit, mesh, plan)
    return model, {**info, "sharded_layers": sum(len(plan) for _, plan in units)}
