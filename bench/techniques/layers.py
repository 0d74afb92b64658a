"""Which layers of a model the weight techniques act on: nn.Linear and transformers'
Conv1D alike, minus weights tied to an embedding."""

from __future__ import annotations


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


def as_linear(model, name: str):
    """The named layer as an nn.Linear (a transformers Conv1D is swapped for its equal)."""
    from torch import nn

    module = model.get_submodule(name)
    if isinstance(module, nn.Linear):
        return module
    weight = module.weight.detach().T.contiguous()
    # Built on the meta device: no random init to pay for, and no draw from torch's RNG.
    linear = nn.Linear(*weight.shape[::-1], bias=module.bias is not None, device="meta")
    linear.weight = nn.Parameter(weight)
    if module.bias is not None:
        linear.bias = nn.Parameter(module.bias.detach().clone())
    set_submodule(model, name, linear)
    return linear


def set_submodule(model, name: str, module) -> None:
    """Put ``module`` where the dotted ``name`` points inside ``model``."""
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)
