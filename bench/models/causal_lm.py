"""The harness's model protocol around a transformers causal LM: ``model(ids, cache,
pos) -> logits``, ``new_cache(batch, max_len)``, ``kv_bytes_per_token()``, and
``config.vocab_size / block_size``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Shape:
    vocab_size: int
    block_size: int  # longest sequence the position embedding covers


TRANSFORMERS_MAJOR = 5  # `cache=` in forward; on 4.x it vanishes into **kwargs


def require_transformers() -> None:
    """Refuse a transformers this code cannot drive. On 4.x, forward's ``cache=`` keyword
    falls into ``**kwargs`` and decoding silently runs without its KV cache."""
    import transformers

    major = int(transformers.__version__.split(".")[0])
    if major != TRANSFORMERS_MAJOR:
        raise RuntimeError(
            f"transformers {transformers.__version__} is not supported: bench drives "
            f"transformers {TRANSFORMERS_MAJOR}.x (it passes the KV cache as `cache=`); "
            f"install 'transformers>={TRANSFORMERS_MAJOR},<{TRANSFORMERS_MAJOR + 1}'"
        )


class CausalLM(nn.Module):
    def __init__(self, hf: nn.Module):
        super().__init__()
        require_transformers()
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
        out = self.hf(input_ids=idx, cache=cache, use_cache=True, cache_position=positions)
        # Checked at the prefill only: a per-step check would add to every timed step.
        if isinstance(pos, int) and pos == 0 and cache.get_seq_length() == 0:
            raise RuntimeError("the KV cache was not filled: decoding would run without it")
        return out.logits
