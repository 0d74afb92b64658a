"""Quality beside speed: held-out loss of the built-in byte-level model, and agreement of
an optimized model with its unoptimized baseline on the same inputs.

Agreement stays meaningful for random-weight models, where held-out loss does not. The
baseline's outputs are computed once per model and input set per run (by the first case
that needs them), stored as safetensors in the run folder, and reused by every other case.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.atomic import atomic_path
from bench.filenames import path_component
from bench.results.schema import Metric

REF_BATCH = 4  # sequences in the agreement input set
REF_SEQ = 128  # tokens per sequence (capped by the model's block size)
# Held-out windows scored per case: 64 of the split's ~360 at 128 bytes, evenly spaced
# (~0.2 s instead of 1.2-1.4 s for tinygpt-s on 2 cores); the method names the sample.
HELDOUT_WINDOWS = 64


def heldout_metrics(
    model, seq_len: int = REF_SEQ, prefix: str = "heldout", windows: int | None = HELDOUT_WINDOWS
) -> list[Metric]:
    """Held-out loss, perplexity and bits per byte on the pydoc split (byte-level models).

    ``heldout_*`` is always this at REF_SEQ (run.quality); a workload scoring at its own
    context length names its figures apart (``eval_*``): one definition per name."""
    from bench.models.train import held_out_nats_per_byte

    seq = min(seq_len, model.config.block_size)
    if windows is None:
        nats = held_out_nats_per_byte(model, seq)
        method = f"cross_entropy_pydoc_heldout_seq{seq}"
    else:
        nats = held_out_nats_per_byte(model, seq, windows=windows)
        method = f"cross_entropy_pydoc_heldout_seq{seq}_{windows}_windows_evenly_spaced"
    return [
        Metric(f"{prefix}_loss", nats, "nats/byte", method),
        Metric(f"{prefix}_perplexity", math.exp(nats), "1", method),
        Metric(f"{prefix}_bits_per_byte", nats / math.log(2), "bits/byte", method),
    ]


def reference_inputs(model, seed: int):
    """The agreement input set: held-out text for byte-level models, else seeded random ids."""
    import torch

    from bench.models.corpus import as_tensor, corpus_split

    seq = min(REF_SEQ, model.config.block_size)
    vocab = model.config.vocab_size
    if vocab == 256:
        held = as_tensor(corpus_split()[1])
        return held[: REF_BATCH * seq].view(REF_BATCH, seq)
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (REF_BATCH, seq), generator=gen)


def logits_of(model, inputs):
    import torch

    device = next(model.parameters()).device
    with torch.inference_mode():
        return model(inputs.to(device)).float().cpu()


def reference_file(refs_dir: Path, model_label: str) -> Path:
    """Where a model's baseline logits are kept in a run (its label encoded: a label is
    built from suite strings and must not leave the folder)."""
    return refs_dir / f"{path_component(model_label)}.safetensors"


def reference_logits(ref_file: Path, build_baseline, inputs):
    """The baseline's logits on ``inputs``: from ``ref_file``, or computed and stored there."""
    from safetensors.torch import load_file, save_file

    if ref_file.exists():
        stored = load_file(str(ref_file))
        if stored["inputs"].shape == inputs.shape and bool((stored["inputs"] == inputs).all()):
            return stored["logits"], True
    logits = logits_of(build_baseline(), inputs)
    with atomic_path(ref_file) as tmp:
        save_file({"inputs": inputs.contiguous(), "logits": logits.contiguous()}, str(tmp))
    return logits, False


def agreement_metrics(logits, ref) -> list[Metric]:
    """KL(baseline || case) of next-token distributions, top-1 agreement, logit errors."""
    import torch.nn.functional as F

    n = ref.shape[0] * ref.shape[1]
    method = f"vs_baseline_logits_{n}_positions"
    log_p = F.log_softmax(ref, dim=-1)
    log_q = F.log_softmax(logits, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean().item()
    top1 = (ref.argmax(-1) == logits.argmax(-1)).float().mean().item()
    diff = logits - ref
    return [
        Metric("kl_to_baseline", max(kl, 0.0), "nats/token", method),
        Metric("top1_agreement", top1, "1", method),
        Metric("logit_max_abs_error", diff.abs().max().item(), "logit", method),
        Metric("logit_rel_error", (diff.norm() / ref.norm()).item(), "1", method),
    ]


def quality_metrics(
    model, case, build_baseline, refs_dir: Path | None
) -> tuple[list[Metric], dict[str, Any]]:
    import torch

    info: dict[str, Any] = {}
    metrics: list[Metric] = []
    if model.config.vocab_size == 256:
        metrics += heldout_metrics(model)
    else:
        info["heldout"] = "not a byte-level model: no held-out corpus to score"
    inputs = reference_inputs(model, case.run["seed"])
    if refs_dir is None:
        info["agreement"] = "no run folder to keep the baseline's outputs in (inline library call)"
        return metrics, info
    ref_file = reference_file(refs_dir, case.model.label)
    ref, reused = reference_logits(ref_file, build_baseline, inputs)
    info["reference"] = {"file": ref_file.name, "reused": reused}
    torch.manual_seed(case.run["seed"])
    metrics += agreement_metrics(logits_of(model, inputs), ref)
    return metrics, info
