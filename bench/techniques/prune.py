"""Pruning through torch.nn.utils.prune, made permanent.

Methods: unstructured L1 or random per layer, global L1 magnitude across all layers,
structured Ln-norm over output channels, and 2:4 semi-structured (two of every four
consecutive input weights kept; a mask on CPU, ``to_sparse_semi_structured`` execution
is CUDA-only). The mask is folded into the weight with ``prune.remove``: hooks left
attached would re-multiply the mask on every forward and make pruning look slower.

``ln_structured`` with ``shrink = true`` removes MLP hidden channels instead of zeroing
them, so the layers, the parameter count and the work really get smaller; with ``over =
"heads"`` it zeroes whole attention heads (bench.techniques.structured).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from bench.spec.registry import Params, register_technique
from bench.techniques.layers import out_dim, prunable_linears

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
    # ln_structured: zero output channels of every layer, or whole attention heads.
    over: Literal["channels", "heads"] = "channels"
    # ln_structured: remove the lowest-norm MLP hidden channels (smaller layers) instead
    # of zeroing output channels of every layer.
    shrink: bool = False
    # "csr": run the pruned layers as CSR sparse matmuls instead of dense ones with zeros.
    # "semi_structured": 2:4 layers as torch's semi-structured sparse tensors (CUDA only,
    # float16/bfloat16: the sparse tensor cores).
    execution: Literal["dense", "csr", "semi_structured"] = "dense"

    @model_validator(mode="after")
    def _amount_fits_method(self) -> PruneParams:
        if self.method == "semi_structured_2_4":
            if self.amount not in (None, 0.5):
                raise ValueError(
                    "semi_structured_2_4 prunes exactly 0.5 (2 of every 4); drop 'amount'"
                )
        elif self.amount is None:
            raise ValueError(f"method {self.method!r} needs an 'amount' between 0 and 1")
        if self.over == "heads" and (self.method != "ln_structured" or self.shrink):
            raise ValueError("over = 'heads' needs method = 'ln_structured' without shrink")
        if self.shrink and self.method != "ln_structured":
            raise ValueError("shrink = true needs method = 'ln_structured' (whole channels)")
        if self.shrink and self.amount >= 1.0:
            raise ValueError("shrink = true needs amount < 1: an MLP keeps at least a channel")
        if self.execution == "semi_structured" and self.method != "semi_structured_2_4":
            raise ValueError("execution = 'semi_structured' needs method = 'semi_structured_2_4'")
        if self.shrink and self.execution != "dense":
            raise ValueError("shrink = true leaves no zeros to run sparse; drop 'execution'")
        return self


def _label(p: PruneParams) -> str:
    short = SHORT[p.method] + (str(p.n) if p.method == "ln_structured" and p.n == 2 else "")
    label = f"prune-{short}" if p.amount is None else f"prune-{short}-{p.amount:g}"
    execution = "" if p.execution == "dense" else f"-{p.execution}"
    heads = "-heads" if p.over == "heads" else ""
    return label + heads + ("-shrink" if p.shrink else "") + execution


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
    """Zero weights of every linear layer, chosen by ``method`` (or, with ``shrink``,
    remove MLP channels)."""
    import torch
    from torch.nn.utils import prune

    if params.shrink or params.over == "heads":
        from bench.techniques.structured import apply_structured

        return apply_structured(model, params)
    if params.execution == "semi_structured":
        from bench.techniques.sparse import check_semi_structured

        check_semi_structured(model)
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
    refused: dict[str, str] = {}
    if params.execution == "semi_structured":
        from bench.techniques.sparse import to_semi_structured

        refused = to_semi_structured(model, [name for name, _ in targets])
        if len(refused) == len(targets):
            raise ValueError(
                "to_sparse_semi_structured took none of the pruned layers: "
                + "; ".join(sorted(set(refused.values())))
            )
    return model, {
        "execution": params.execution,
        "modules_touched": len(targets),
        "modules_touched_by_type": kinds,
        "modules_candidates": len(targets) + len(skipped),
        "modules_skipped": skipped,
        "sparsity_per_layer": per_layer,
        "sparsity_targeted": zeros / total,
        # semi_structured: pruned 2:4 layers whose shapes the sparse kernels refused,
        # with torch's reason; they run dense.
        "kept_dense": refused,
    }
