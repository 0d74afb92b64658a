"""The harness's model protocol around a transformers causal LM: ``model(ids, cache,
pos) -> logits``, ``new_cache(batch)``, and ``config.vocab_size / block_size``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Shape:
    vocab_size: int
    block_size: int  # longest sequence the position embedding covers


class CausalLM(nn.Module):
    def __init__(self, hf: nn.Module):
        super().__init__()
        self.hf = hf
        c = hf.config
        block = getattr(c, "max_position_embeddings", None) or getattr(c, "n_positions", None)
        self.config = Shape(vocab_size=c.vocab_size, block_size=int(block))

    def new_cache(self, batch: int):
        from transformers import DynamicCache

        return DynamicCache()

    def forward(self, idx: torch.Tensor, cache=None, pos: int = 0) -> torch.Tensor:
        if cache is None:
            return self.hf(input_ids=idx, use_cache=False).logits
        positions = torch.arange(pos, pos + idx.shape[1], device=idx.device)
        out = self.hf(input_ids=idx, cache=cache, use_cache=True, cache_position=positions)
        return out.logits
