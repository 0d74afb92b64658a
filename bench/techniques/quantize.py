"""Weight quantization: int8 through PyTorch's dynamic quantization, int8 / int4 / float8
through torchao's ``quantize_``.

Layers a scheme cannot take (a shape it does not support, GPT-2's Conv1D layout, an
output head tied to the embedding) are left out by a filter and reported, never crashed
on. A scheme that cannot run on this device makes the case ``skipped`` with the reason.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bench.errors import UnsupportedHere
from bench.spec.registry import Params, register_technique
from bench.techniques.layers import as_linear, prunable_linears

Scheme = Literal[
    "int8_dynamic",
    "int8_weight_only",
    "int8_dynamic_activation_int8_weight",
    "int4_weight_only",
    "float8",
]
SHORT = {
    "int8_dynamic": "int8dyn",
    "int8_weight_only": "int8wo",
    "int8_dynamic_activation_int8_weight": "int8da8w",
    "int4_weight_only": "int4wo",
    "float8": "fp8",
}


class QuantizeParams(Params):
    scheme: Scheme
    group_size: int = Field(128, ge=16, le=4096)  # int4_weight_only: weights per scale


def _label(p: QuantizeParams) -> str:
    suffix = f"-g{p.group_size}" if p.scheme == "int4_weight_only" else ""
    return f"quant-{SHORT[p.scheme]}{suffix}"


def _why_not(scheme: str, module, params: QuantizeParams, device: str) -> str | None:
    """Why ``scheme`` cannot take this layer (None: it can)."""
    out_f, in_f = module.weight.shape
    if scheme == "int4_weight_only":
        if in_f % params.group_size:
            return f"in_features {in_f} is not a multiple of group_size {params.group_size}"
        if device == "cpu" and out_f % 16:
            return f"out_features {out_f} is not a multiple of 16 (CPU int4 kernel)"
    if scheme == "float8" and (in_f % 16 or out_f % 16):
        return f"shape {out_f}x{in_f} is not a multiple of 16"
    return None


def _config(scheme: str, params: QuantizeParams, device: str):
    import torchao.quantization as q

    if scheme == "int8_weight_only":
        return q.Int8WeightOnlyConfig()
    if scheme == "int8_dynamic_activation_int8_weight":
        return q.Int8DynamicActivationInt8WeightConfig()
    if scheme == "float8":
        return q.Float8DynamicActivationFloat8WeightConfig()
    if device == "cpu":
        from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig

        return PrototypeInt4WeightOnlyConfig(group_size=params.group_size)
    return q.Int4WeightOnlyConfig(
        group_size=params.group_size, int4_packing_format="tile_packed_to_4d"
    )


def _check_device(scheme: str, device: str) -> None:
    import torch

    if scheme == "int8_dynamic" and device != "cpu":
        raise UnsupportedHere("int8_dynamic (torch.ao quantize_dynamic) runs on CPU only")
    if scheme == "float8":
        if device == "cpu":
            raise UnsupportedHere("float8 needs a CUDA GPU of compute capability 8.9 or newer")
        if torch.cuda.get_device_capability() < (8, 9):
            cc = ".".join(map(str, torch.cuda.get_device_capability()))
            raise UnsupportedHere(f"float8 needs compute capability >= 8.9; this GPU has {cc}")


@register_technique("quantize", params=QuantizeParams, label=_label, preload=("torchao",))
def apply_quantize(model, params: QuantizeParams, ctx):
    """Quantize the weights of every linear layer the scheme can take."""
    from bench.telemetry.size import model_bytes

    device = "cpu" if ctx.device == "cpu" else "cuda"
    _check_device(params.scheme, device)
    candidates, skipped = prunable_linears(model)
    # GPT-2's Conv1D is a Linear with its weight transposed; as an nn.Linear the
    # quantizers (which take nn.Linear only) can take it.
    conv1d = sum(1 for _, m in candidates if type(m).__name__ == "Conv1D")
    candidates = [(name, as_linear(model, name)) for name, _ in candidates]
    targets = []
    for name, module in candidates:
        why = _why_not(params.scheme, module, params, device)
        if why:
            skipped[name] = why
        else:
            targets.append(name)
    if not targets:
        raise ValueError(f"quantize {params.scheme}: no layer it can take; skipped: {skipped}")
    before = model_bytes(model)
    chosen = set(targets)
    if params.scheme == "int8_dynamic":
        import warnings

        import torch

        with warnings.catch_warnings():  # deprecated, still the fastest int8 path on CPU
            warnings.simplefilter("ignore")
            model = torch.ao.quantization.quantize_dynamic(model, chosen, dtype=torch.qint8)
    else:
        from torchao.quantization import quantize_

        quantize_(
            model, _config(params.scheme, params, device), filter_fn=lambda m, fqn: fqn in chosen
        )
    return model, {
        "modules_touched": len(targets),
        "modules_candidates": len(candidates)
        + sum(1 for n in skipped if n not in dict(candidates)),
        "modules_skipped": skipped,
        "conv1d_as_linear": conv1d,
        "bytes_before": before,
        "bytes_after": model_bytes(model),
    }
