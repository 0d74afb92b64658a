"""The KV cache of a decoder: that a prefill filled it, and how many bytes it holds."""

from __future__ import annotations

import weakref

_FILLED: weakref.WeakSet = weakref.WeakSet()  # models whose cache a prefill was seen to fill


def check_cache_filled(model, cache) -> None:
    """After a model's first prefill, whatever the runtime: a transformers cache still
    empty means its forward swallowed the cache argument, and decoding would run without
    it (fast, and wrong). Once per model: the check reads the length back from the device."""
    length = getattr(cache, "get_seq_length", None)  # the built-in model's cache has none
    if length is None or model in _FILLED:
        return
    if int(length()) == 0:
        raise RuntimeError(
            f"the KV cache was not filled by {type(model).__name__}'s prefill: its forward "
            "ignored the cache, so decoding would run without it"
        )
    _FILLED.add(model)


def cache_tensors(cache, depth: int = 4):
    """The tensors of a KV cache: the built-in model's layers (``k``, ``v``), or a
    transformers cache (``layers[i].keys/values``, or ``key_cache``/``value_cache``)."""
    import torch

    if isinstance(cache, torch.Tensor):
        yield cache
    elif depth and isinstance(cache, list | tuple):
        for item in cache:
            yield from cache_tensors(item, depth - 1)
    elif depth:
        for name in ("k", "v", "keys", "values", "key_cache", "value_cache", "layers"):
            if (part := getattr(cache, name, None)) is not None:
                yield from cache_tensors(part, depth - 1)


def cache_size(decoder, absent: dict[str, str]) -> list:
    """``kv_cache_bytes``: the decoder's KV cache after a generation (its tensors' storage,
    each once), or why it is absent."""
    from bench.results.schema import Metric
    from bench.workloads.train_loop import tensor_bytes

    cache = getattr(decoder, "cache", None)  # a static decoder's, else an eager one's steps'
    if cache is None:
        cache = getattr(getattr(decoder, "steps", None), "cache", None)
    if cache is None:
        absent["kv_cache_bytes"] = "no KV cache (kv_cache = false)"
        return []
    size = tensor_bytes(cache_tensors(cache))
    method = "kv_cache_tensor_storage after one generation (a preallocated cache counts whole)"
    return [Metric("kv_cache_bytes", float(size), "bytes", method)]
