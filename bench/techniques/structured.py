"""Structured pruning that knows a transformer's layout: MLP hidden channels removed
(the layers really shrink) and attention heads zeroed whole.

An MLP's hidden channels are the output channels of its input projections and the input
channels of its output projection; removing one removes both. An attention head is a
slice of the query projection's outputs and of the output projection's inputs.
"""

from __future__ import annotations

from bench.techniques.layers import is_linear, out_dim, prunable_linears

# (input projections, output projection) of an MLP, by attribute name.
MLP_PROJECTIONS = (
    (("gate_proj", "up_proj"), "down_proj"),  # Llama, Mistral, Qwen
    (("c_fc",), "c_proj"),  # GPT-2 (Conv1D)
    (("fc1",), "fc2"),  # OPT, Phi
    (("fc",), "proj"),  # the built-in tinygpt
)
# (query projection, output projection) of an attention block; a fused qkv projection
# holds the queries in its first outputs.
ATTENTION_PROJECTIONS = (
    ("q_proj", "o_proj"),  # Llama, Mistral, Qwen
    ("q_proj", "out_proj"),  # OPT
    ("c_attn", "c_proj"),  # GPT-2 (fused qkv, Conv1D)
    ("qkv", "proj"),  # the built-in tinygpt (fused qkv)
)


def _find(model, patterns):
    for name, module in model.named_modules():
        for names in patterns:
            flat = [n for part in names for n in (part if isinstance(part, tuple) else (part,))]
            if all(is_linear(getattr(module, a, None)) for a in flat):
                yield name, module, names
                break


def mlp_projections(model):
    """(name, input projections, output projection) of every MLP found by MLP_PROJECTIONS."""
    for name, _, (ins, out) in _find(model, MLP_PROJECTIONS):
        yield name, ins, out


def attention_blocks(model):
    """(name, module, query projection, output projection) of every attention block."""
    for name, module, (q, o) in _find(model, ATTENTION_PROJECTIONS):
        yield name, module, q, o


def _full(parent: str, attr: str) -> str:
    return f"{parent}.{attr}" if parent else attr


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
        touched += [_full(name, a) for a in (*ins, out)]
    return {"hidden_channels": hidden, "touched": touched}


def _head_dim(attention, o_in: int) -> int:
    if isinstance(getattr(attention, "head_dim", None), int):
        return attention.head_dim
    for attr in ("num_heads", "n_head"):
        if isinstance(getattr(attention, attr, None), int):
            return o_in // getattr(attention, attr)
    raise ValueError(f"{type(attention).__name__}: cannot tell its head size")


def mask_heads(model, amount: float, n: int) -> dict:
    """Zero the ``amount`` of each attention block's heads whose output-projection columns
    have the smallest Ln norm: their query rows and their output columns, through
    torch.nn.utils.prune masks made permanent."""
    import torch
    from torch.nn.utils import prune

    found = list(attention_blocks(model))
    if not found:
        known = ", ".join(f"{q} -> {o}" for q, o in ATTENTION_PROJECTIONS)
        raise ValueError(f"heads: found no attention block in this model (looked for {known})")
    heads, touched = {}, []
    for name, attention, q_attr, o_attr in found:
        query, output = getattr(attention, q_attr), getattr(attention, o_attr)
        o_in_dim = 1 - out_dim(output)
        width = output.weight.shape[o_in_dim]
        size = _head_dim(attention, width)
        count = width // size
        cols = output.weight.detach().movedim(o_in_dim, 0).reshape(count, -1)
        norms = torch.linalg.vector_norm(cols.float(), ord=n, dim=1)
        drop = norms.argsort()[: round(amount * count)]
        channels = (drop[:, None] * size + torch.arange(size, device=drop.device)).flatten()
        for layer, dim in ((query, out_dim(query)), (output, o_in_dim)):
            mask = torch.ones_like(layer.weight)
            mask.index_fill_(dim, channels.to(mask.device), 0.0)
            prune.custom_from_mask(layer, "weight", mask)
            prune.remove(layer, "weight")
        if query.bias is not None:
            with torch.no_grad():
                query.bias[channels] = 0.0
        heads[name] = [count, len(drop)]
        touched += [_full(name, q_attr), _full(name, o_attr)]
    return {"heads": heads, "touched": touched}


def apply_structured(model, params) -> tuple:
    """``ln_structured`` that knows the layout: ``shrink`` removes MLP channels, ``over =
    "heads"`` zeroes attention heads. Reports what changed, by layer."""
    import torch

    before = sum(p.numel() for p in model.parameters())
    if params.shrink:
        found = shrink_mlps(model, params.amount, params.n)
        reason = "not an MLP projection: its channels are heads or the residual stream"
    else:
        found = mask_heads(model, params.amount, params.n)
        reason = "not an attention query or output projection"
    targets, skipped = prunable_linears(model)
    candidates = len(targets) + len(skipped)  # the tied ones are skipped already
    names = set(found.pop("touched"))
    kinds: dict[str, int] = {}
    per_layer = {}
    for name, m in targets:
        if name in names:
            kinds[type(m).__name__] = kinds.get(type(m).__name__, 0) + 1
            w = m.weight.detach()
            per_layer[name] = 1.0 - torch.count_nonzero(w).item() / w.numel()
        else:
            skipped[name] = reason
    return model, {
        "execution": "dense",
        "shrink": params.shrink,
        "over": params.over,
        "modules_touched": len(names),
        "modules_touched_by_type": kinds,
        "modules_candidates": candidates,
        "modules_skipped": skipped,
        "sparsity_per_layer": per_layer,
        "params_removed": before - sum(p.numel() for p in model.parameters()),
        **found,
    }
