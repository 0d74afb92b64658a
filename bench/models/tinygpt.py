"""A byte-level GPT decoder (nanoGPT-shaped) with a preallocated KV cache.

Small enough to train on a laptop CPU, shaped like the models people deploy: pre-norm
blocks, fused QKV projection, scaled-dot-product attention, tied embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


@dataclass(frozen=True)
class GPTConfig:
    block_size: int = 256  # longest sequence (prompt + generated), in tokens
    vocab_size: int = 256  # one token per byte: no tokenizer to ship or download
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads; n_embd must divide evenly among them
    n_embd: int = 128  # residual stream width
    bias: bool = False  # biases in Linear/LayerNorm; off as in modern decoders


class LayerCache:
    """Keys and values of one layer for ``length`` positions, filled as decoding advances."""

    def __init__(self, batch: int, cfg: GPTConfig, device, dtype, length: int, static: bool):
        shape = (batch, cfg.n_head, length, cfg.n_embd // cfg.n_head)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        if static:
            # Fixed addresses: a CUDA graph replays reads and writes of these very buffers.
            torch._dynamo.mark_static_address(self.k)
            torch._dynamo.mark_static_address(self.v)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.head_dim = cfg.n_embd // cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)

    def forward(
        self, x: torch.Tensor, cache: LayerCache | None, pos: int | torch.Tensor
    ) -> torch.Tensor:
        B, T, _ = x.shape
        # Heads counted from the projection's width: a tensor-parallel rank holds a share.
        q, k, v = self.qkv(x).chunk(3, dim=2)
        q, k, v = (t.view(B, T, -1, self.head_dim).transpose(1, 2) for t in (q, k, v))
        mask = None
        causal = T > 1
        if cache is not None and isinstance(pos, torch.Tensor):
            # Static shapes (compiled decode): positions as a tensor, attention over the
            # whole cache with a mask, so no step has a shape of its own to recompile for.
            cache.k.index_copy_(2, pos, k)
            cache.v.index_copy_(2, pos, v)
            k, v = cache.k, cache.v
            mask = pos[:, None] >= torch.arange(k.shape[2], device=x.device)[None, :]
            causal = False
        elif cache is not None:
            cache.k[:, :, pos : pos + T] = k
            cache.v[:, :, pos : pos + T] = v
            k, v = cache.k[:, :, : pos + T], cache.v[:, :, : pos + T]
            if pos > 0 and T > 1:
                # A chunk after a prefix: query i sits at absolute position pos + i.
                rows = torch.arange(pos, pos + T, device=x.device)[:, None]
                mask = rows >= torch.arange(pos + T, device=x.device)[None, :]
                causal = False
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal and mask is None
        )
        return self.proj(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(
        self, x: torch.Tensor, cache: LayerCache | None, pos: int | torch.Tensor
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, pos)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        if cfg.n_embd % cfg.n_head:
            raise ValueError(f"n_embd={cfg.n_embd} is not divisible by n_head={cfg.n_head}")
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as in GPT-2
        self.checkpointing = False  # gradient checkpointing while training
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def gradient_checkpointing_enable(self) -> None:
        """Recompute each block's activations in the backward pass (transformers' name)."""
        self.checkpointing = True

    def new_cache(self, batch: int, max_len: int | None = None) -> list[LayerCache]:
        """A preallocated KV cache of ``block_size`` positions; given ``max_len``, one of
        that length for static decoding (positions passed as a tensor, see ``forward``)."""
        p, static = self.wte.weight, max_len is not None
        length = max_len or self.config.block_size
        return [
            LayerCache(batch, self.config, p.device, p.dtype, length, static) for _ in self.blocks
        ]

    def kv_bytes_per_token(self) -> int:
        """Bytes of keys and values one position of one sequence holds, all layers."""
        c = self.config
        return 2 * c.n_layer * c.n_embd * self.wte.weight.element_size()

    def forward(
        self,
        idx: torch.Tensor,
        cache: list[LayerCache] | None = None,
        pos: int | torch.Tensor = 0,
    ) -> torch.Tensor:
        """Logits for ``idx``, whose first token sits at ``pos``; or, given a tensor of
        positions (one per token), the static-shape path for compiled decoding."""
        T = idx.shape[1]
        if isinstance(pos, torch.Tensor):
            positions = pos
        elif pos + T > self.config.block_size:
            raise ValueError(
                f"sequence of {pos + T} tokens exceeds block_size {self.config.block_size}"
            )
        else:
            positions = torch.arange(pos, pos + T, device=idx.device)
        x = self.wte(idx) + self.wpe(positions)
        recompute = self.checkpointing and self.training and cache is None
        for i, block in enumerate(self.blocks):
            if recompute:
                # Keep only each block's input; its inner activations are recomputed in
                # the backward pass (less memory, one more forward's worth of time).
                x = checkpoint(block, x, None, pos, use_reentrant=False)
            else:
                x = block(x, None if cache is None else cache[i], pos)
        return self.lm_head(self.ln_f(x))
