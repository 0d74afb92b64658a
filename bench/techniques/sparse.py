"""Sparse execution of pruned linear layers, so a user can see where sparsity starts to
turn into speed: CSR weights multiplied with ``torch.sparse.mm`` (any device), or 2:4
weights as torch's semi-structured sparse tensors (CUDA sparse tensor cores)."""

from __future__ import annotations

import torch
from torch import nn

from bench.errors import UnsupportedHere
from bench.techniques.layers import as_linear, set_submodule


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
        linear = as_linear(model, name)
        set_submodule(model, name, CsrLinear(linear.weight, linear.bias))


def to_semi_structured(model: nn.Module, names: list[str]) -> dict[str, str]:
    """Give the named 2:4-pruned layers semi-structured sparse weights; returns the layers
    the kernels refused (shapes they do not take), with torch's reason."""
    from torch.sparse import to_sparse_semi_structured

    refused = {}
    for name in names:
        linear = as_linear(model, name)
        try:
            sparse = to_sparse_semi_structured(linear.weight.detach())
        except (RuntimeError, ValueError) as e:
            refused[name] = str(e).splitlines()[0]
            continue
        linear.weight = nn.Parameter(sparse, requires_grad=False)
    return refused


def check_semi_structured(model) -> None:
    """2:4 execution runs on NVIDIA sparse tensor cores, in half precision only."""
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
