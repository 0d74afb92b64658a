"""What a model weighs: parameter count, fraction of non-zero weights, bytes of its state.

Weights count by their logical shape whatever their storage (quantized, packed, sparse),
and tensors shared between names (tied embeddings) count once.
"""

from __future__ import annotations

from bench.results.schema import Metric


def _storages(t, out: dict) -> None:
    """Every storage behind ``t``: quantized tensor subclasses (torchao) keep several inner
    tensors (data, scales, zero points), packed ones (torch.ao) their own buffers."""
    import torch

    if isinstance(t, tuple | list):  # torch.ao's packed params: (weight, bias)
        for x in t:
            _storages(x, out)
        return
    if hasattr(t, "__tensor_flatten__"):
        names, _ = t.__tensor_flatten__()
        for n in names:
            _storages(getattr(t, n), out)
        return
    if isinstance(t, torch.Tensor):
        if t.layout == torch.sparse_csr:
            for part in (t.crow_indices(), t.col_indices(), t.values()):
                out[part.untyped_storage().data_ptr()] = part.untyped_storage().nbytes()
            return
        if t.is_quantized:
            n = t.int_repr().nbytes
            if t.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                n += t.q_per_channel_scales().nbytes + t.q_per_channel_zero_points().nbytes
            out[("q", id(t))] = n
            return
        out[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()


def model_bytes(model) -> int:
    """Bytes of the model's state: shared tensors (tied embeddings) counted once."""
    out: dict = {}
    for t in model.state_dict().values():
        _storages(t, out)
    return sum(out.values())


def _weights(model) -> list:
    """Every weight tensor by its logical shape, each once: parameters (tied ones once),
    CSR buffers (sparse execution), and torch.ao's packed quantized weights, which are
    not parameters at all."""
    import torch

    found = {id(p): p for p in model.parameters()}
    found.update({id(b): b for b in model.buffers() if b.layout == torch.sparse_csr})
    for m in model.modules():
        # torch.ao's dynamic quantized Linear: weight() unpacks; its holder has no weight.
        if hasattr(m, "_packed_params") and callable(getattr(m, "weight", None)):
            for t in (m.weight(), m.bias()):
                if t is not None:
                    found[id(t)] = t
    return list(found.values())


def _nonzero(t) -> int:
    import torch

    if t.layout == torch.sparse_csr:
        t = t.values()
    elif t.is_quantized:
        t = t.int_repr()  # symmetric int8: a zero weight is a zero integer
    return int(torch.count_nonzero(t.detach()))


def model_size_metrics(model, absent: dict[str, str] | None = None) -> list[Metric]:
    """Parameter count, fraction of non-zero parameters, bytes of the state dict.

    Weights count by their logical shape whatever their storage (quantized, packed,
    sparse); tensors shared between names (tied embeddings) count once.
    """
    weights = _weights(model)
    total = sum(t.numel() for t in weights)
    out = [Metric("params_total", float(total), "count", "numel")]
    # A sharded weight (DTensor: tensor parallel, FSDP) counts its global shape above and
    # this rank's shard here: zeros are counted where they are stored.
    shards = [t.to_local() if hasattr(t, "to_local") else t for t in weights]
    try:
        fraction = sum(_nonzero(t) for t in shards) / sum(t.numel() for t in shards)
        out.append(Metric("params_nonzero_fraction", fraction, "1", "count_nonzero"))
    except (RuntimeError, NotImplementedError, TypeError) as e:
        if absent is not None:  # torchao's quantized tensor subclasses do not count zeros
            absent["params_nonzero_fraction"] = f"count_nonzero failed: {type(e).__name__}"
    out.append(
        Metric("state_dict_bytes", float(model_bytes(model)), "bytes", "tensor_storage_nbytes")
    )
    return out
