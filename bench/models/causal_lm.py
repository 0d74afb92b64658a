"""The harness's model protocol around a transformers causal LM: ``model(ids, cache,
pos) -> logits``, ``new_cache(batch, max_len)``, ``kv_bytes_per_token()``, and
``config.vocab_size / block_size``."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Shape:
    vocab_size: int
    block_size: int  # longest sequence the position embedding covers


def forward_keywords(hf: nn.Module) -> dict[str, str]:
    """The keywords the model's own ``forward`` names for the KV cache and the positions:
    {"cache": ..., and "cache_position" / "position_ids" where named}. transformers has
    renamed them across releases (``past_key_values`` -> ``cache``; ``cache_position``
    dropped), and a name forward does not declare falls into its ``**kwargs`` without a
    word: decoding would then run without its cache, fast and wrong. So the names come
    from the signature, never from a version number."""
    params = inspect.signature(hf.forward).parameters
    cache = next((n for n in ("cache", "past_key_values") if n in params), None)
    if cache is None:
        raise RuntimeError(
            f"{type(hf).__name__}.forward (transformers {_version()}) names no KV cache "
            "argument ('cache' or 'past_key_values'): bench cannot decode with its cache"
        )
    found = {"cache": cache}
    found.update({n: n for n in ("cache_position", "position_ids") if n in params})
    return found


def _version() -> str:
    import transformers

    return transformers.__version__


class CausalLM(nn.Module):
    def __init__(self, hf: nn.Module):
        super().__init__()
        self.keywords = forward_keywords(hf)
        self.hf = hf
        c = hf.config
        block = getattr(c, "max_position_embeddings", None) or getattr(c, "n_positions", None)
        self.config = Shape(vocab_size=c.vocab_size, block_size=int(block))

    def gradient_checkpointing_enable(self) -> None:
        kwargs = {"use_reentrant": False}
        self.hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)

    def new_cache(self, batch: int, max_len: int | None = None):
        """A DynamicCache that grows per token; given ``max_len``, a StaticCache of that
        length (fixed shapes and addresses: what compiled, CUDA-graph decoding needs)."""
        from transformers import DynamicCache, StaticCache

        if max_len is None:
            return DynamicCache()
        return StaticCache(config=self.hf.config, max_cache_len=max_len)

    def kv_bytes_per_token(self) -> int:
        """Bytes of keys and values one position of one sequence holds, all layers."""
        c = self.hf.config
        layers = getattr(c, "num_hidden_layers", None) or c.n_layer
        heads = getattr(c, "num_attention_heads", None) or c.n_head
        hidden = getattr(c, "hidden_size", None) or c.n_embd
        head_dim = getattr(c, "head_dim", None) or hidden // heads
        kv_heads = getattr(c, "num_key_value_heads", None) or heads
        itemsize = next(self.hf.parameters()).element_size()
        return 2 * layers * kv_heads * head_dim * itemsize

    def forward(self, idx: torch.Tensor, cache=None, pos: int | torch.Tensor = 0) -> torch.Tensor:
        """Logits for ``idx``, whose first token sits at ``pos`` (or at the positions in a
        tensor, for static decoding)."""
        if cache is None:
            return self.hf(input_ids=idx, use_cache=False).logits
        if isinstance(pos, torch.Tensor):
            positions = pos
        else:
            positions = torch.arange(pos, pos + idx.shape[1], device=idx.device)
        kw = self.keywords
        args = {kw["cache"]: cache}
        if "cache_position" in kw:
            args["cache_position"] = positions
        if "position_ids" in kw:  # explicit, so no release infers them from the cache
            args["position_ids"] = positions.unsqueeze(0)
        return self.hf(input_ids=idx, use_cache=True, **args).logits
