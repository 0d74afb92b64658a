"""Baseline models, registered by name. Torch is imported only when a model is built."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from bench.spec.registry import Params, register_model

# Named sizes of the built-in byte-level GPT. Parameter counts include the tied embedding.
# Trained weights ship for SHIPPED sizes (bench/models/weights/), their default.
TINYGPT_SIZES: dict[str, dict[str, int]] = {
    "s": dict(n_layer=4, n_head=4, n_embd=128, block_size=256),  # ~0.8M: CPU, seconds
    "m": dict(n_layer=6, n_head=6, n_embd=384, block_size=512),  # ~11M: CPU, minutes
    "l": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024),  # ~86M: GPU
}
SHIPPED = ("s", "m")


class TinyGPTOverrides(Params):
    """Suite keys that override a named size; unset keys keep the size's value."""

    n_layer: int | None = Field(None, ge=1, le=96, description="Transformer blocks.")
    n_head: int | None = Field(None, ge=1, le=128, description="Attention heads.")
    n_embd: int | None = Field(None, ge=8, le=16384, description="Residual stream width.")
    block_size: int | None = Field(
        None, ge=8, le=65536, description="Longest sequence, in tokens (bytes)."
    )
    weights: Literal["random", "pydoc"] = Field(
        "random",
        description="'pydoc': trained on the pydoc corpus (shipped for tinygpt-s and -m, "
        "else trained once and cached), so quality figures mean something; 'random': "
        "seeded random init.",
    )
    train_steps: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Training steps of 'pydoc' weights; unset: the recipe's.",
    )
    checkpoint: str | None = Field(
        None,
        description="A safetensors file of this model's state dict (e.g. saved by "
        "safetensors.torch.save_model), instead of weights.",
    )

    @field_validator("checkpoint")
    @classmethod
    def _readable_safetensors(cls, v: str | None) -> str | None:
        if v is not None:
            check_safetensors_file(Path(v))
        return v


class ShippedTinyGPT(TinyGPTOverrides):
    """A size whose trained weights ship with bench: trained unless asked otherwise."""

    weights: Literal["random", "pydoc"] = Field(
        "pydoc",
        description="'pydoc' (the default): the trained weights shipped with bench; "
        "'random': seeded random init (say so: quality figures then mean little).",
    )

    @model_validator(mode="after")
    def _say_which_weights(self) -> ShippedTinyGPT:
        # A changed shape has no shipped weights: the default would train (minutes) where
        # the user may have wanted random weights; they choose.
        reshaped = [k for k in SHAPE_KEYS if getattr(self, k) is not None]
        if reshaped and "weights" not in self.model_fields_set and not self.checkpoint:
            raise ValueError(
                f"a changed shape ({', '.join(reshaped)}) has no shipped weights; "
                'say weights = "random", or weights = "pydoc" to train them (minutes, cached)'
            )
        return self


def check_safetensors_file(path: Path) -> None:
    """Refuse, before loading anything, a file that is missing or not safetensors."""
    from safetensors import safe_open

    if not path.is_file():
        raise ValueError(f"no such checkpoint file: {path}")
    try:
        with safe_open(str(path), framework="pt"):
            pass
    except Exception as e:  # a pickle, a truncated file, anything else
        raise ValueError(
            f"{path} is not a readable safetensors file ({e}); bench never unpickles"
        ) from None
    from bench.models.finite import check_weights_finite

    check_weights_finite([path])  # a NaN weight: refused here, naming the tensor


def tinygpt_config(size: str, overrides: TinyGPTOverrides):
    from bench.models.tinygpt import GPTConfig

    set_keys = {
        k: v for k, v in overrides.model_dump().items() if v is not None and k in SHAPE_KEYS
    }
    return replace(GPTConfig(**TINYGPT_SIZES[size]), **set_keys)


SHAPE_KEYS = {"n_layer": "L", "n_head": "H", "n_embd": "E", "block_size": "T"}


def _overrides_label(name: str, params: TinyGPTOverrides) -> str:
    parts = [f"{SHAPE_KEYS[k]}{v}" for k, v in params.model_dump().items() if k in SHAPE_KEYS and v]
    if params.checkpoint:
        parts.append(f"ckpt-{Path(params.checkpoint).stem}")
    elif params.weights != "random":
        parts.append(params.weights + (f"{params.train_steps}" if params.train_steps else ""))
    return "-".join([name, *parts])


def _train_config(name: str, params: TinyGPTOverrides):
    from bench.models.train import recipe

    return recipe(name, params.train_steps)


def _weights(name: str, size: str, params: TinyGPTOverrides, progress=None, device: str = "cpu"):
    """The model with the weights ``params`` ask for, and the training record if trained."""
    from bench.models.tinygpt import GPT
    from bench.models.train import load_or_train

    model = GPT(tinygpt_config(size, params))
    if params.checkpoint:
        from safetensors.torch import load_model

        from bench.models.finite import too_large_to_scan

        load_model(model, params.checkpoint)  # strict: a shape mismatch is an error
        # Too large for validation's scan of the weights: the case checks the outputs instead.
        model.unscanned_weights = too_large_to_scan([Path(params.checkpoint)])
        return model, {"checkpoint": params.checkpoint}
    if params.weights == "random":
        return model, None
    return model, load_or_train(name, model, _train_config(name, params), progress, device)


def _register_size(size: str) -> None:
    name = f"tinygpt-{size}"

    def build(params: TinyGPTOverrides, ctx: Any):
        model, record = _weights(name, size, params, device=ctx.device)
        model.bench_info = {"weights": params.weights, "training": record}
        return model

    def prepare(
        params: TinyGPTOverrides, progress=None, device: str = "cpu"
    ) -> dict[str, Any] | None:
        """Train and cache the weights before any case runs (no-op for random weights),
        on the device the cases will use."""
        return _weights(name, size, params, progress, device)[1]

    def parameter_count(params: TinyGPTOverrides) -> int:
        import torch

        from bench.models.tinygpt import GPT

        with torch.device("meta"):  # shapes only: no memory, no weights
            model = GPT(tinygpt_config(size, params))
        return sum(p.numel() for p in model.parameters())

    def trained_context(params: TinyGPTOverrides) -> int | None:
        """The longest window the weights were trained on: positions past it keep their
        random initialisation. None where unknown (random weights, a checkpoint)."""
        if params.weights != "pydoc" or params.checkpoint:
            return None
        return _train_config(name, params).seq_len

    def attention_heads(params: TinyGPTOverrides) -> tuple[str, dict[str, int]]:
        """(tensor-parallel layout, head counts a split must divide)."""
        return "tinygpt", {"attention heads": tinygpt_config(size, params).n_head}

    build.__doc__ = f"Built-in byte-level GPT, size {size!r}: {TINYGPT_SIZES[size]}"
    register_model(
        name,
        params=ShippedTinyGPT if size in SHIPPED else TinyGPTOverrides,
        label=lambda p: _overrides_label(name, p),
        prepare=prepare,
        parameter_count=parameter_count,
        trained_context=trained_context,
        attention_heads=attention_heads,
        byte_level=True,  # its tokens are the held-out text's bytes
    )(build)


for _size in TINYGPT_SIZES:
    _register_size(_size)
