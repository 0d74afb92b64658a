"""Baseline models, registered by name. Torch is imported only when a model is built."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pydantic import Field

from bench.registry import Params, register_model

# Named sizes of the built-in byte-level GPT. Parameter counts include the tied embedding.
TINYGPT_SIZES: dict[str, dict[str, int]] = {
    "s": dict(n_layer=4, n_head=4, n_embd=128, block_size=256),  # ~0.8M: CPU, seconds
    "m": dict(n_layer=6, n_head=6, n_embd=384, block_size=512),  # ~11M: CPU, minutes
    "l": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024),  # ~86M: GPU
}


class TinyGPTOverrides(Params):
    """Suite keys that override a named size; unset keys keep the size's value."""

    n_layer: int | None = Field(None, ge=1, le=96)
    n_head: int | None = Field(None, ge=1, le=128)
    n_embd: int | None = Field(None, ge=8, le=16384)
    block_size: int | None = Field(None, ge=8, le=65536)


def tinygpt_config(size: str, overrides: TinyGPTOverrides):
    from bench.models.tinygpt import GPTConfig

    set_keys = {k: v for k, v in overrides.model_dump().items() if v is not None}
    return replace(GPTConfig(**TINYGPT_SIZES[size]), **set_keys)


def _overrides_label(name: str, params: TinyGPTOverrides) -> str:
    short = {"n_layer": "L", "n_head": "H", "n_embd": "E", "block_size": "T"}
    parts = [f"{short[k]}{v}" for k, v in params.model_dump().items() if v is not None]
    return "-".join([name, *parts])


def _register_size(size: str) -> None:
    name = f"tinygpt-{size}"

    def build(params: TinyGPTOverrides, ctx: Any):
        from bench.models.tinygpt import GPT

        return GPT(tinygpt_config(size, params))

    build.__doc__ = f"Built-in byte-level GPT, size {size!r}: {TINYGPT_SIZES[size]}"
    register_model(
        name,
        params=TinyGPTOverrides,
        label=lambda p: _overrides_label(name, p),
        vocab_size=256,
    )(build)


for _size in TINYGPT_SIZES:
    _register_size(_size)
