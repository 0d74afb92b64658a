"""Memory traffic of a workload's timed call and its share of the machine's read bandwidth.

What a call must read at least: every weight once, except embedding tables, of which a
call reads one row per token it looks up (a table that is also a layer's weight, like a
tied LM head, is read whole); plus what the workload declares (a decode step's KV cache).
Activations, writes and re-reads are not counted: a floor. It is held against the
machine's read-only stream bandwidth, so bytes read are compared with bytes read.
"""

from __future__ import annotations

from bench.results.schema import Metric
from bench.telemetry.size import model_bytes


def weight_bytes_read(model, tokens: int) -> tuple[float, str]:
    """Bytes of weights one call over ``tokens`` tokens must read, and how it was counted."""
    import torch
    from torch import nn

    used_elsewhere = {
        id(t)
        for m in model.modules()
        if not isinstance(m, nn.Embedding)
        for t in m.parameters(recurse=False)
    }
    unread = 0
    for m in model.modules():
        w = getattr(m, "weight", None)
        if not isinstance(m, nn.Embedding) or not isinstance(w, torch.Tensor):
            continue
        if id(w) in used_elsewhere:
            continue
        row = m.embedding_dim * w.element_size()
        unread += (m.num_embeddings - min(tokens, m.num_embeddings)) * row
    total = model_bytes(model)
    if not unread:
        return float(total), "state_dict_bytes"
    return float(
        total - unread
    ), f"state_dict_bytes - embedding rows not looked up ({tokens} tokens)"


def traffic_metrics(model, out, bandwidth, absent: dict[str, str]) -> list[Metric]:
    """Achieved memory traffic of the workload's timed call, and its share of the machine's
    measured read bandwidth: how close the case runs to the memory roofline."""
    if out.traffic is None:
        absent["memory_traffic"] = "this workload declares no memory traffic"
        return []
    t = out.traffic
    seconds = next((m.value for m in out.metrics if m.name == t.per), None)
    if not seconds:
        absent["memory_traffic"] = f"no {t.per} to divide by"
        return []
    weights, how = weight_bytes_read(model, t.tokens)
    extra = f" + {t.extra_what}" if t.extra_bytes else ""
    per_call = weights + t.extra_bytes
    achieved = per_call / seconds
    out_metrics = [
        Metric("memory_traffic_per_call", per_call, "bytes", f"{how}{extra}"),
        Metric("memory_traffic", achieved, "bytes/s", f"({how}{extra})/{t.per}"),
    ]
    if bandwidth and bandwidth.get("read_bytes_per_s"):
        out_metrics.append(
            Metric(
                "bandwidth_utilization",
                100 * achieved / bandwidth["read_bytes_per_s"],
                "%",
                f"memory_traffic/read_bandwidth ({bandwidth['read_method']})",
            )
        )
    else:
        reason = (bandwidth or {}).get("reason", "not measured for this run")
        absent["bandwidth_utilization"] = f"no read bandwidth of this device: {reason}"
    return out_metrics
