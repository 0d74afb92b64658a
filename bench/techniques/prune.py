"""Pruning through torch.nn.utils.prune, made permanent.

Methods: unstructured L1 or random per layer, global L1 magnitude across all layers,
structured Ln-norm over output channels, and 2:4 semi-structured (two of every four
consecutive input weights kept; a mask on CPU, ``to_sparse_semi_structured`` execution
is CUDA-only). The mask is folded into the weight with ``prune.remove``: hooks left
attached would re-multiply the mask on every forward and make pruning look slower.

``ln_structured`` with ``shrink = true`` removes MLP hidden channels instead of zeroing
them: the rows of the MLP's input projections and the matching columns of its output
projection go, so the layers, the parameter count and the work really get smaller.
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
    return label + ("-shrink" if p.shrink else "") + execution


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


# An MLP's hidden channels are the output channels of its input projections and the
# input channels of its output projection: (input projections, output projection).
MLP_PROJECTIONS = (
    (("gate_proj", "up_proj"), "down_proj"),  # Llama, Mistral, Qwen
    (("c_fc",), "c_proj"),  # GPT-2 (Conv1D)
    (("fc1",), "fc2"),  # OPT, Phi
    (("fc",), "proj"),  # the built-in tinygpt
)


def mlp_projections(model):
    """(name, input projections, output projection) of every MLP found by MLP_PROJECTIONS."""
    for name, module in model.named_modules():
        for ins, out in MLP_PROJECTIONS:
            layers = [getattr(module, a, None) for a in (*ins, out)]
            if all(m is not None and is_linear(m) for m in layers):
                yield name, ins, out
                break


def check_semi_structured(model) -> None:
    """2:4 execution runs on NVIDIA sparse tensor cores, in half precision only."""
    import torch

    from bench.errors import UnsupportedHere

    p = next(model.parameters())
    if p.device.type != "cuda":
        raise UnsupportedHere(
            "2:4 semi-structured execution (to_sparse_semi_structured) needs a CUDA GPU; "
            f"this case runs on {p.device.type}"
        )
    major, minor = torch.cuda.get_device_capability(p.device)
    if major < 8:
        raise UnsupportedHere(
            f"2:4 sparse tensor cores need compute capability >= 8.0; this GPU is {major}.{minor}"
        )
    if p.dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(
            f"execution = 'semi_structured' needs float16 or bfloat16 weights, not {p.dtype}: "
            "set run.dtype or chain a precision step before prune"
        )


def _keep_channels(module, keep, dim: int) -> None:
    """Keep only ``keep`` along weight dim ``dim`` (and the bias, for output channels)."""
    from torch import nn

    module.weight = nn.Parameter(module.weight.detach().index_select(dim, keep).contiguous())
    if dim == out_dim(module):
        if module.bias is not None:
            module.bias = nn.Parameter(module.bias.detach()[keep].contiguous())
        attr = "nf" if type(module).__name__ == "Conv1D" else "out_features"
    else:
        attr = "nx" if type(module).__name__ == "Conv1D" else "in_features"
    if hasattr(module, attr):
        setattr(module, attr, len(keep))


def shrink_mlps(model, amount: float, n: int) -> dict:
    """Remove the ``amount`` of each MLP's hidden channels whose input-projection rows
    have the smallest Ln norm (rows of all input projections together, e.g. gate and up)."""
    import torch

    found = list(mlp_projections(model))
    if not found:
        known = ", ".join(f"{'+'.join(i)} -> {o}" for i, o in MLP_PROJECTIONS)
        raise ValueError(f"shrink found no MLP in this model (looked for {known})")
    hidden, touched = {}, []
    for name, ins, out in found:
        parent = model.get_submodule(name)
        rows = [
            getattr(parent, a).weight.detach().movedim(out_dim(getattr(parent, a)), 0) for a in ins
        ]
        norms = torch.linalg.vector_norm(torch.cat(rows, dim=1).float(), ord=n, dim=1)
        size = norms.numel()
        keep = norms.topk(size - round(amount * size)).indices.sort().values
        for a in ins:
            _keep_channels(getattr(parent, a), keep, out_dim(getattr(parent, a)))
        down = getattr(parent, out)
        _keep_channels(down, keep, 1 - out_dim(down))
        hidden[name or "<model>"] = [size, len(keep)]
        touched += [f"{name}.{a}" if name else a for a in (*ins, out)]
    return {"hidden_channels": hidden, "touched": touched}


def _apply_shrink(model, params: PruneParams):
    before = sum(p.numel() for p in model.parameters())
    shrunk = shrink_mlps(model, params.amount, params.n)
    after = sum(p.numel() for p in model.parameters())
    targets, _ = prunable_linears(model)
    names = set(shrunk["touched"])
    kinds: dict[str, int] = {}
    for n, m in targets:
        if n in names:
            kinds[type(m).__name__] = kinds.get(type(m).__name__, 0) + 1
    return model, {
        "execution": "dense",
        "shrink": True,
        "modules_touched": len(names),
        "modules_touched_by_type": kinds,
        "modules_candidates": len(targets),
        "modules_skipped": {
            n: "not an MLP projection: its channels are heads or the residual stream"
            for n, _ in targets
            if n not in names
        },
        "hidden_channels": shrunk["hidden_channels"],
        "params_removed": before - after,
    }


@register_technique("prune", params=PruneParams, label=_label)
def apply_prune(model, params: PruneParams, ctx):
    """Zero weights of every linear layer, chosen by ``method`` (or, with ``shrink``,
    remove MLP channels)."""
    import torch
    from torch.nn.utils import prune

    if params.shrink:
        return _apply_shrink(model, params)
    if params.execution == "semi_structured":
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
    elif params.execution == "semi_structured":
        from bench.techniques.sparse import to_semi_structured

        refused = to_semi_structured(model, [name for name, _ in targets])
        skipped.update({n: f"kept dense: {why}" for n, why in refused.items()})
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
    }
