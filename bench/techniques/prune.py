"""Magnitude and random pruning through torch.nn.utils.prune, made permanent.

The mask is folded into the weight with ``prune.remove``: hooks left attached would
re-multiply the mask on every forward and make pruning look slower than it is.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bench.registry import Params, register_technique

METHODS = {"l1_unstructured": "l1", "random_unstructured": "rand"}


class PruneParams(Params):
    method: Literal["l1_unstructured", "random_unstructured"] = "l1_unstructured"
    amount: float = Field(ge=0.0, le=1.0)  # fraction of each layer's weights set to zero


def is_linear(module) -> bool:
    """nn.Linear, or transformers' Conv1D (GPT-2's projections: a Linear with its weight
    transposed, which tools that look only for nn.Linear skip without a word)."""
    from torch import nn

    cls = type(module)
    return isinstance(module, nn.Linear) or (
        cls.__name__ == "Conv1D" and cls.__module__.startswith("transformers")
    )


def prunable_linears(model):
    """(name, module) of every linear layer whose weight is not shared with an embedding.

    A tied output head shares its weight with the token embedding; pruning it would
    silently prune the embedding as well, so it is left out and reported as skipped.
    """
    from torch import nn

    embedding_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    linears = [(n, m) for n, m in model.named_modules() if is_linear(m)]
    keep = [(n, m) for n, m in linears if id(m.weight) not in embedding_weights]
    skipped = [n for n, m in linears if id(m.weight) in embedding_weights]
    return keep, skipped


@register_technique(
    "prune",
    params=PruneParams,
    label=lambda p: f"prune-{METHODS[p.method]}-{p.amount:g}",
)
def apply_prune(model, params: PruneParams, ctx):
    """Zero ``amount`` of each Linear layer's weights, chosen by ``method``."""
    import torch
    from torch.nn.utils import prune

    targets, skipped = prunable_linears(model)
    if not targets:
        raise ValueError("prune found no linear layers (nn.Linear, Conv1D) to prune in this model")
    fn = getattr(prune, params.method)
    per_layer = {}
    for name, module in targets:
        fn(module, name="weight", amount=params.amount)
        prune.remove(module, "weight")
        w = module.weight.detach()
        per_layer[name] = 1.0 - torch.count_nonzero(w).item() / w.numel()
    total = sum(m.weight.numel() for _, m in targets)
    zeros = sum(per_layer[n] * m.weight.numel() for n, m in targets)
    kinds: dict[str, int] = {}
    for _, m in targets:
        kinds[type(m).__name__] = kinds.get(type(m).__name__, 0) + 1
    return model, {
        "modules_touched": len(targets),
        "modules_touched_by_type": kinds,
        "modules_candidates": len(targets) + len(skipped),
        "modules_skipped": {n: "weight tied to an embedding" for n in skipped},
        "sparsity_per_layer": per_layer,
        "sparsity_targeted": zeros / total,
    }
