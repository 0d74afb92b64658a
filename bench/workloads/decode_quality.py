"""What a decoding strategy's output is worth, beside what it costs: judged by the
unoptimized baseline model (so a quantized model's beam search is scored by the same
yardstick as the baseline's), against the baseline's greedy tokens, and, for prompts cut
from the held-out text, against the text that truly followed.

Each quality prompt is decoded once, untimed, one sequence at a time on the eager runtime
(the tokens of a strategy do not depend on the runtime: tests check static and compiled
greedy against eager), so strategies and batch sizes are judged on the same prompts."""

from __future__ import annotations

import hashlib
import math
import statistics
from pathlib import Path

from bench.atomic import atomic_path
from bench.filenames import path_component
from bench.results.schema import Metric


def heldout_prompts(count: int, prompt_len: int, new_tokens: int):
    """``count`` prompts of ``prompt_len`` bytes cut evenly from the held-out split, and
    the ``new_tokens`` bytes that followed each: ([count, P], [count, N])."""
    from bench.models.corpus import as_tensor, corpus_split, evenly_spaced

    held = as_tensor(corpus_split()[1])
    span = prompt_len + new_tokens
    windows = held[: len(held) // span * span].view(-1, span)
    if len(windows) < count:
        raise ValueError(
            f"the held-out text has {len(windows)} windows of {span} bytes, fewer than {count}"
        )
    rows = windows[evenly_spaced(len(windows), count)]
    return rows[:, :prompt_len], rows[:, prompt_len:]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < len(a) and a[n] == b[n]:
        n += 1
    return n


def reference_greedy(reference, prompts, new_tokens: int, refs: Path | None, label: str):
    """The unoptimized model's greedy tokens after each prompt, decoded one prompt at a
    time: from the run's ``refs`` folder where an earlier case of the run left them (named
    by the model and a hash of the prompts), else decoded and kept there."""
    import torch
    from safetensors.torch import load_file, save_file

    from bench.workloads.decoding import NoClock, greedy_generate

    digest = hashlib.sha256(prompts.cpu().numpy().tobytes()).hexdigest()[:16]
    path = None if refs is None else refs / f"greedy-{path_component(label)}-{digest}.safetensors"
    if path is not None and path.exists():
        stored = load_file(str(path))["tokens"]
        if stored.shape[1] == new_tokens:
            return stored.to(prompts.device)
    with torch.inference_mode():
        tokens = torch.cat(
            [greedy_generate(reference, p[None], new_tokens, NoClock())[0] for p in prompts]
        )
    if path is not None:
        with atomic_path(path) as tmp:
            save_file({"tokens": tokens.cpu().contiguous()}, str(tmp))
    return tokens


def decode_quality(run_one, model, reference, prompts, continuations, new_tokens: int, base):
    """Metrics of ``run_one(model, prompt[1, P]) -> tokens[1, N]`` over ``prompts``:
    ``reference`` is the unoptimized model (the scores), ``base`` its greedy tokens
    (``reference_greedy``); ``continuations`` the true text after each prompt, or None."""
    import torch

    from bench.workloads.decoding import sequence_logprob

    with torch.inference_mode():
        outs = [run_one(model, prompt[None]).view(-1) for prompt in prompts]
    q = len(prompts)
    how = f"mean over {q} prompts"
    logp = [sequence_logprob(reference, p[None], o) for p, o in zip(prompts, outs, strict=True)]
    pairs = zip(outs, base, strict=True)
    prefix = [_common_prefix(o.tolist(), b.tolist()) / new_tokens for o, b in pairs]
    metrics = [
        Metric(
            "sequence_logprob",
            statistics.fmean(logp),
            "nats",
            f"summed log-probability of the {new_tokens} tokens under the unoptimized model, {how}",
        ),
        Metric(
            "greedy_agreement",
            statistics.fmean(prefix),
            "1",
            f"tokens before the first difference from the unoptimized model's greedy "
            f"tokens / {new_tokens}, {how}",
        ),
    ]
    if continuations is not None:
        truth = continuations.to(prompts.device)
        match = [float((o == t).float().mean()) for o, t in zip(outs, truth, strict=True)]
        nats = [
            -sequence_logprob(model, p[None], t) / new_tokens
            for p, t in zip(prompts, truth, strict=True)
        ]
        metrics += [
            Metric(
                "continuation_byte_match",
                statistics.fmean(match),
                "1",
                f"output bytes equal to the held-out text's at the same position, {how}",
            ),
            Metric(
                "continuation_bits_per_byte",
                statistics.fmean(nats) / math.log(2),
                "bits/byte",
                f"cross-entropy of the true {new_tokens}-byte continuation under this model, {how}",
            ),
        ]
    return metrics, [o.tolist() for o in outs]
