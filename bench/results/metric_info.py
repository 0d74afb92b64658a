"""What a metric name means for comparisons: whether more is better, and whether a
figure was modelled rather than measured. The one table every comparison reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

# Headline metrics and whether more is better; a metric not listed is never ranked.
HIGHER_IS_BETTER = {
    "latency_median": False,
    "ttft_median": False,
    "decode_step_median": False,
    "throughput_tokens": True,
    "throughput_samples": True,
    "decode_throughput_tokens": True,
    "heldout_bits_per_byte": False,
    "eval_bits_per_byte": False,
    "kl_to_baseline": False,
    "top1_agreement": True,
    "state_dict_bytes": False,
    "params_total": False,
    "params_nonzero_fraction": False,
    "bandwidth_utilization": True,
    "energy_per_token": False,
    "energy_per_sample": False,
    "memory_prefill_peak_rss": False,
    "memory_prefill_peak_over_runtime": False,
    "memory_runtime_rss": False,
    "kv_cache_bytes": False,
    # training
    "step_median": False,
    "time_to_target_loss": False,
    "steps_to_target_loss": False,
    "energy_to_target_loss": False,
    "energy_per_step": False,
    "loss_final": False,
    "optimizer_state_bytes": False,
    "activation_bytes": False,
    "memory_train_peak_rss": False,
    "memory_train_peak_over_runtime": False,
    "kl_to_teacher": False,
    "top1_agreement_teacher": True,
    "speedup_vs_teacher": True,
    # decoding strategies
    "sequence_logprob": True,
    "greedy_agreement": True,
    "continuation_byte_match": True,
    "continuation_bits_per_byte": False,
    "draft_acceptance_rate": True,
    "tokens_per_target_forward": True,
}

# Figures that do not vary from run to run by nature: sizes, and quality of fixed weights
# on fixed text. Equal runs of these give an exact ratio at any number of runs.
DETERMINISTIC = {
    "state_dict_bytes",
    "params_total",
    "params_nonzero_fraction",
    "heldout_bits_per_byte",
    "eval_bits_per_byte",
    "kl_to_baseline",
    "top1_agreement",
    "optimizer_state_bytes",
    "activation_bytes",
    # decoding of fixed weights on fixed prompts (sampling is seeded)
    "sequence_logprob",
    "greedy_agreement",
    "continuation_byte_match",
    "continuation_bits_per_byte",
    "draft_acceptance_rate",
    "tokens_per_target_forward",
}

# Counts of the work a call does (bench.telemetry.counters: callgrind's, or the hardware's
# named hw_*), per call of a workload's headline series and of its other timed series.
# Fewer is better.
COUNTS = tuple(
    f"{series}{counter}"
    for counter in ("instructions", "estimated_cycles", "hw_instructions", "hw_cycles")
    for series in ("", "ttft_", "decode_step_")
)
HIGHER_IS_BETTER.update(dict.fromkeys(COUNTS, False))
# Near-deterministic figures and the relative resolution they are judged exactly at. The
# counts of unchanged code jitter by a few thousand instructions per call at most
# (allocator and hash-seed paths): three runs of tinygpt-s forward (120 M instructions)
# within 0.0064% (benchmarks/counts.py), of a 5 M-instruction case within 0.14%, of a
# 0.5 M-instruction function under perf.count within 0.18%. A side whose values spread
# wider than this is judged as a noisy figure instead (bench.analysis.verdicts).
# Hardware cycles move with the clock frequency, caches and neighbours: judged as noisy.
RESOLUTION = {m: 0.0025 for m in COUNTS if "hw_cycles" not in m}

# Figures that already compare a case with its baseline: a ratio of them says nothing.
RELATIVE_TO_BASELINE = {"kl_to_baseline", "top1_agreement", "greedy_agreement"}
# Log-probabilities (at most 0): a ratio of two would invert "better"; they are compared
# by difference only (their gates are absolute).
DIFFERENCE_ONLY = {"sequence_logprob"}

# Methods whose figures come from a model of the machine, not a counter: on a machine
# without an energy counter codecarbon's CPU and RAM figures are load x constant power,
# so they are time in disguise and never name an energy winner or an energy ratio.
MODELLED_METHODS = ("codecarbon_model",)
MODELLED_NOTE = "modelled (codecarbon, no energy counter): proportional to time"


def ranked(metric: str) -> bool:
    return metric in HIGHER_IS_BETTER


def higher_is_better(metric: str) -> bool:
    return HIGHER_IS_BETTER[metric]


def is_modelled(method: str | None) -> bool:
    return isinstance(method, str) and any(m in method for m in MODELLED_METHODS)


# --- gates: how much change a comparison tolerates before it names a verdict ----------


@dataclass(frozen=True)
class Tolerance:
    """How far a candidate may move from its base before a verdict says it changed.

    ``relative``: a fraction on the log scale (0.05: a ratio outside [1/1.05, 1.05]);
    ``absolute``: a difference in the metric's unit (bits per byte, KL); ``exact``: any
    difference counts (bytes, parameter counts)."""

    kind: Literal["relative", "absolute", "exact"]
    value: float = 0.0

    def describe(self) -> str:
        if self.kind == "relative":
            return f"±{100 * self.value:g}%"
        if self.kind == "absolute":
            return f"±{self.value:g}"
        return "exact"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value}


# The metrics a comparison judges unless a suite's [gates] says otherwise: one per
# question (latency, not also throughput, its reciprocal), with the tolerance its nature
# calls for. Timings drift by a few % between processes on a quiet machine; sizes are
# exact; quality of fixed weights moves only by float rounding.
DEFAULT_GATES = {
    "latency_median": Tolerance("relative", 0.05),
    "ttft_median": Tolerance("relative", 0.05),
    "decode_step_median": Tolerance("relative", 0.05),
    "memory_prefill_peak_rss": Tolerance("relative", 0.05),
    # the same peak less the runtime: 5% of what the case holds, not of torch's ~250 MB
    "memory_prefill_peak_over_runtime": Tolerance("relative", 0.05),
    "energy_per_token": Tolerance("relative", 0.05),
    "state_dict_bytes": Tolerance("exact"),
    "params_total": Tolerance("exact"),
    "params_nonzero_fraction": Tolerance("exact"),
    "heldout_bits_per_byte": Tolerance("absolute", 0.01),
    "kl_to_baseline": Tolerance("absolute", 0.01),
    "top1_agreement": Tolerance("absolute", 0.01),
    "step_median": Tolerance("relative", 0.05),
    "memory_train_peak_rss": Tolerance("relative", 0.05),
    "memory_train_peak_over_runtime": Tolerance("relative", 0.05),
    "energy_per_step": Tolerance("relative", 0.05),
    # Reaching a loss adds the loss curve's own run-to-run spread to the steps' times.
    "time_to_target_loss": Tolerance("relative", 0.10),
    "loss_final": Tolerance("absolute", 0.02),
    "optimizer_state_bytes": Tolerance("exact"),
    "sequence_logprob": Tolerance("absolute", 0.5),
    "continuation_bits_per_byte": Tolerance("absolute", 0.01),
    # counts do not drift: 1% of a call's work is a change, 4x their resolution
    # (estimated cycles are a model of a simulated cache: shown, not gated by default;
    # hardware cycles drift like time, and are gated like it)
    **{m: Tolerance("relative", 0.01) for m in RESOLUTION if "estimated_cycles" not in m},
    **{m: Tolerance("relative", 0.05) for m in COUNTS if "hw_cycles" in m},
}

# How a metric is named for a reader (reports, tables); the metric name stays the key.
LABELS = {
    "latency_median": "latency",
    "throughput_tokens": "throughput",
    "throughput_samples": "samples/s",
    "ttft_median": "time to first token",
    "decode_step_median": "decode step",
    "decode_throughput_tokens": "decode throughput",
    "heldout_bits_per_byte": "held-out bits/byte",
    "eval_bits_per_byte": "eval bits/byte",
    "kl_to_baseline": "KL to baseline",
    "top1_agreement": "top-1 agreement",
    "params_total": "parameters",
    "params_nonzero_fraction": "non-zero weights",
    "state_dict_bytes": "size",
    "bandwidth_utilization": "share of copy bandwidth",
    "memory_prefill_peak_rss": "peak RSS (whole process)",
    "memory_prefill_peak_over_runtime": "peak memory over the runtime",
    "memory_runtime_rss": "runtime RSS (before the model)",
    "kv_cache_bytes": "KV cache",
    "energy_per_token": "energy/token",
    "energy_per_sample": "energy/sample",
    "step_median": "step time",
    "time_to_target_loss": "time to target loss",
    "steps_to_target_loss": "steps to target loss",
    "energy_to_target_loss": "energy to target loss",
    "energy_per_step": "energy/step",
    "loss_final": "final train loss",
    "optimizer_state_bytes": "optimizer state",
    "weights_bytes": "weights",
    "gradient_bytes": "gradients",
    "activation_bytes": "saved activations",
    "memory_train_peak_rss": "peak RSS (whole process, training)",
    "memory_train_peak_over_runtime": "peak memory over the runtime (training)",
    "kl_to_teacher": "KL to teacher",
    "top1_agreement_teacher": "top-1 agreement with teacher",
    "speedup_vs_teacher": "speed-up over teacher",
    "sequence_logprob": "log-probability of the output",
    "greedy_agreement": "agreement with greedy",
    "continuation_byte_match": "bytes matching the text",
    "continuation_bits_per_byte": "continuation bits/byte",
    "draft_acceptance_rate": "draft acceptance",
    "tokens_per_target_forward": "tokens per target pass",
    "cuda_graph_skips": "CUDA graphs skipped",
}


def label(metric: str) -> str:
    return LABELS.get(metric, metric.replace("_", " "))
