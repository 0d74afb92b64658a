"""Sparse execution of pruned linear layers: the weight kept as CSR and multiplied with
``torch.sparse.mm``, so a user can see where sparsity starts to turn into speed."""

from __future__ import annotations

import torch
from torch import nn


class CsrLinear(nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", weight.detach().to_sparse_csr())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        y = torch.sparse.mm(self.weight, flat.T).T
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


def to_csr(model: nn.Module, names: list[str]) -> None:
    """Swap the named linear layers (nn.Linear or transformers Conv1D) for CsrLinear."""
    for name in names:
        module = model.get_submodule(name)
        weight = module.weight.T if type(module).__name__ == "Conv1D" else module.weight
        parent, _, attr = name.rpartition(".")
        setattr(
            model.get_submodule(parent) if parent else model, attr, CsrLinear(weight, module.bias)
        )
