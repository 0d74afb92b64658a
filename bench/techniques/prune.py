"""Pruning through torch.nn.utils.prune, made permanent.

Methods: unstructured L1 or random per layer, global L1 magnitude across all layers,
structured Ln-norm over output channels, and 2:4 semi-structured (two of every four
consecutive input weights kept; a mask on CPU, ``to_sparse_semi_structured`` execution
is CUDA-only). The mask is folded into the weight with ``prune.remove``: hooks left
attached would re-multiply the mask on every forward and make pruning look slower.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from bench.registry import Params, register_technique

SHORT = {
    "l1_unstructured": "l1",
    "random_unstructured": "rand",
    "global_l1": "global",
    "ln_structured": "ln",
    "semi_structured_2_4": "2:4",
}


class PruneParams(Params):
    method: Literal[
        "l1_unstructured",
        "random_unstructured",
        "global_l1",
        "ln_structured",
        "semi_structured_2_4",
    ] = "l1_unstructured"
    # Fraction of weights (or, for ln_structured, of output channels) set to zero.
    # semi_structured_2_4 is always 0.5 and takes no amount.
    amount: float | None = Field(None, ge=0.0, le=1.0)
    n: Literal[1, 2] = 1  # ln_structured: the norm ranking output channels (L1 or L2)
    # "csr": run the pruned layers as CSR sparse matmuls instead of dense ones with zeros.
    execution: Literal["dense", "csr"] = "dense"

    @model_validator(mode="after")
    def _amount_fits_method(self) -> PruneParams:
        if self.method == "semi_structured_2_4":
            if self.amount not in (None, 0.5):
                raise ValueError(
                    "semi_structured_2_4 prunes exactly 0.5 (2 of every 4); drop 'amount'"
                )
        elif self.amount is None:
            raise ValueError(f"method {self.method!r} needs an 'amount' between 0 and 1")
        return self


def _label(p: PruneParams) -> str:
    short = SHORT[p.method] + (str(p.n) if p.method == "ln_structured" and p.n == 2 else "")
    label = f"prune-{short}" if p.amount is None else f"prune-{short}-{p.amount:g}"
    return label + ("-csr" if p.execution == "csr" else "")


def is_linear(module) -> bool:
    """nn.Linear, or transformers' Conv1D (GPT-2's projections: a Linear with its weight
    transposed, which tools that look only for nn.Linear skip without a word)."""
    from torch import nn

    cls = type(module)
    return isinstance(module, nn.Linear) or (
        cls.__name__ == "Conv1D" and cls.__module__.startswith("transformers")
    )


def out_dim(module) -> int:
    """The weight dimension that indexes output channels (Conv1D stores weights transposed)."""
    return 1 if type(module).__name__ == "Conv1D" else 0


def prunable_linears(model):
    """(name, module) of every linear layer whose weight is not shared with an embedding.

    A tied output head shares its weight with the token embedding; pruning it would
    silently prune the embedding as well, so it is left out and reported as skipped.
    """
    from torch import nn

    embedding_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    linears = [(n, m) for n, m in model.named_modules() if is_linear(m)]
    keep = [(n, m) for n, m in linears if id(m.weight) not in embedding_weights]
    skipped = {
        n: "weight tied to an embedding" for n, m in linears if id(m.weight) in embedding_weights
    }
    return keep, skipped


def two_of_four_mask(weight, in_dim: int):
    """Keep the two largest |w| of every four consecutive weights along the input dim."""
    import torch

    w = weight.detach().abs().movedim(in_dim, -1)
    groups = w.reshape(*w.shape[:-1], -1, 4)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(-1, groups.topk(2, dim=-1).indices, True)
    return keep.reshape(w.shape).movedim(-1, in_dim).to(weight.dtype)


@register_technique("prune", params=PruneParams, label=_label)
def apply_prune(model, params: PruneParams, ctx):
    """Zero weights of every linear layer, chosen by ``method``."""
    import torch
    from torch.nn.utils import prune

    targets, skipped = prunable_linears(model)
    if params.method == "semi_structured_2_4":
        kept = []
        for name, module in targets:
            in_dim = 1 - out_dim(module)
            if module.weight.shape[in_dim] % 4:
                skipped[name] = f"input dim {module.weight.shape[in_dim]} is not a multiple of 4"
            else:
                kept.append((name, module))
        targets = kept
    if not targets:
        raise ValueError("prune found no linear layers (nn.Linear, Conv1D) to prune in this model")

    if params.method == "global_l1":
        prune.global_unstructured(
            [(m, "weight") for _, m in targets],
            pruning_method=prune.L1Unstructured,
            amount=params.amount,
        )
    for _, module in targets:
        if params.method in ("l1_unstructured", "random_unstructured"):
            getattr(prune, params.method)(module, name="weight", amount=params.amount)
        elif params.method == "ln_structured":
            prune.ln_structured(
                module, "weight", amount=params.amount, n=params.n, dim=out_dim(module)
            )
        elif params.method == "semi_structured_2_4":
            prune.custom_from_mask(
                module, "weight", two_of_four_mask(module.weight, 1 - out_dim(module))
            )
        prune.remove(module, "weight")

    per_layer = {}
    for name, module in targets:
        w = module.weight.detach()
        per_layer[name] = 1.0 - torch.count_nonzero(w).item() / w.numel()
    total = sum(m.weight.numel() for _, m in targets)
    zeros = sum(per_layer[n] * m.weight.numel() for n, m in targets)
    kinds: dict[str, int] = {}
    for _, m in targets:
        kinds[type(m).__name__] = kinds.get(type(m).__name__, 0) + 1
    if params.execution == "csr":
        from bench.techniques.sparse import to_csr

        to_csr(model, [name for name, _ in targets])
    return model, {
        "execution": params.execution,
        "modules_touched": len(targets),
        "modules_touched_by_type": kinds,
        "modules_candidates": len(targets) + len(skipped),
        "modules_skipped": skipped,
        "sparsity_per_layer": per_layer,
        "sparsity_targeted": zeros / total,
    }
