"""Precision: cast the model's floating-point weights (and so its compute) to a dtype."""

from __future__ import annotations

from typing import Literal

from bench.spec.registry import Params, register_technique


class PrecisionParams(Params):
    dtype: Literal["float32", "bfloat16", "float16"]


SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


@register_technique("precision", params=PrecisionParams, label=lambda p: SHORT[p.dtype])
def apply_precision(model, params: PrecisionParams, ctx):
    """Cast parameters and buffers; inputs of integer token ids need no cast."""
    import torch

    dtype = getattr(torch, params.dtype)
    before = {p.dtype for p in model.parameters()}
    floating = [p for p in model.parameters() if p.is_floating_point()]
    if not floating:
        raise ValueError("precision found no floating-point parameters to cast")
    model = model.to(dtype)
    return model, {
        "modules_touched": sum(
            1 for m in model.modules() if any(True for _ in m.parameters(recurse=False))
        ),
        "dtype_before": sorted(str(d) for d in before),
        "dtype_after": params.dtype,
    }
