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
SELF_AGREEMENT_TOL = 1e-4  # relative logit error of a baseline against its own reference


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


def tokenized_heldout(tokenizer_file: str, seq: int):
    """The held-out text through a checkpoint's own tokenizer, as windows of ``seq`` ids,
    with the UTF-8 bytes each window's predicted tokens (all but the first) cover: what
    turns a loss per token into bits per byte, comparable across tokenizers and with the
    byte-level model."""
    import torch
    from tokenizers import Tokenizer

    from bench.models.corpus import corpus_split

    # The split cuts topics at byte offsets, so a few characters straddle a cut; they are
    # replaced (and counted at their replacement's size), a handful of bytes in 46 KB.
    text = corpus_split()[1].decode("utf-8", errors="replace")
    enc = Tokenizer.from_file(tokenizer_file).encode(text, add_special_tokens=False)
    ids = torch.tensor(enc.ids, dtype=torch.long)
    nbytes = torch.tensor([len(text[a:b].encode()) for a, b in enc.offsets], dtype=torch.long)
    n = len(ids) // seq * seq
    windows = ids[:n].view(-1, seq)
    covered = nbytes[:n].view(-1, seq)[:, 1:].sum(dim=1)
    return windows, covered


def heldout_tokenized_metrics(
    model, tokenizer_file: str, windows: int | None = HELDOUT_WINDOWS
) -> list[Metric]:
    """Held-out loss, perplexity per byte and bits per byte of a model with its own
    tokenizer: the summed next-token cross-entropy over the bytes those tokens cover."""
    import torch
    import torch.nn.functional as F

    from bench.models.corpus import evenly_spaced

    seq = min(REF_SEQ, model.config.block_size)
    x, covered = tokenized_heldout(tokenizer_file, seq)
    pick = evenly_spaced(len(x), windows)
    x, covered = x[pick], covered[pick]
    device = next(model.parameters()).device
    nats = 0.0
    with torch.inference_mode():
        for i in range(0, len(x), 16):
            batch = x[i : i + 16].to(device)
            logits = model(batch).float()
            nats += F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]),
                batch[:, 1:].reshape(-1),
                reduction="sum",
            ).item()
    per_byte = nats / covered.sum().item()
    method = f"cross_entropy_pydoc_heldout_own_tokenizer_seq{seq}_{len(x)}_windows_per_byte"
    return [
        Metric("heldout_loss", per_byte, "nats/byte", method),
        Metric("heldout_perplexity", math.exp(per_byte), "1", method),
        Metric("heldout_bits_per_byte", per_byte / math.log(2), "bits/byte", method),
    ]


def reference_inputs(model, seed: int):
    """The agreement input set: held-out text for byte-level models and for models with
    their own tokenizer, else seeded random ids."""
    import torch

    from bench.models.corpus import as_tensor, corpus_split

    seq = min(REF_SEQ, model.config.block_size)
    vocab = model.config.vocab_size
    if vocab == 256:
        held = as_tensor(corpus_split()[1])
        return held[: REF_BATCH * seq].view(REF_BATCH, seq)
    tokenizer = getattr(model, "tokenizer_file", None)
    if tokenizer:
        return tokenized_heldout(tokenizer, seq)[0][:REF_BATCH]
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


def agreement_metrics(logits, ref, against: str = "baseline") -> list[Metric]:
    """KL(reference || case) of next-token distributions, top-1 agreement, logit errors;
    the reference is the baseline's outputs, or ``against`` names what else it is."""
    import torch.nn.functional as F

    n = ref.shape[0] * ref.shape[1]
    method = f"vs_{against}_logits_{n}_positions"
    top1_name = "top1_agreement" + ("" if against == "baseline" else f"_{against}")
    log_p = F.log_softmax(ref, dim=-1)
    log_q = F.log_softmax(logits, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean().item()
    top1 = (ref.argmax(-1) == logits.argmax(-1)).float().mean().item()
    diff = logits - ref
    return [
        Metric(f"kl_to_{against}", max(kl, 0.0), "nats/token", method),
        Metric(top1_name, top1, "1", method),
        Metric("logit_max_abs_error", diff.abs().max().item(), "logit", method),
        Metric("logit_rel_error", (diff.norm() / ref.norm()).item(), "1", method),
    ]


def quality_metrics(
    model, case, build_baseline, refs_dir: Path | None
) -> tuple[list[Metric], dict[str, Any]]:
    import torch

    info: dict[str, Any] = {}
    metrics: list[Metric] = []
    tokenizer = getattr(model, "tokenizer_file", None)
    if model.config.vocab_size == 256:
        metrics += heldout_metrics(model)
    elif tokenizer:
        metrics += heldout_tokenized_metrics(model, tokenizer)
    else:
        info["heldout"] = (
            "neither a byte-level model nor a checkpoint with its own tokenizer.json: no "
            "held-out text to score (agreement uses seeded random ids)"
        )
    inputs = reference_inputs(model, case.run["seed"])
    if refs_dir is None:
        info["agreement"] = "no run folder to keep the baseline's outputs in (inline library call)"
        return metrics, info
    ref_file = reference_file(refs_dir, case.model.label)
    ref, reused = reference_logits(ref_file, build_baseline, inputs)
    info["reference"] = {"file": ref_file.name, "reused": reused}
    torch.manual_seed(case.run["seed"])
    agreement = agreement_metrics(logits_of(model, inputs), ref)
    if case.is_baseline and any(
        m.name == "logit_rel_error" and m.value > SELF_AGREEMENT_TOL for m in agreement
    ):
        # The baseline disagrees with its own reference from another process: its weights
        # are not deterministic, so no case of this model can be compared across processes.
        info["agreement"] = (
            "the baseline's outputs differ from its reference computed in another process "
            "(weights not deterministic): agreement metrics withheld"
        )
        return metrics, info
    metrics += agreement
    return metrics, info
