"""What a metric name means for comparisons: whether more is better, and whether a
figure was modelled rather than measured. The one table every comparison reads."""

from __future__ import annotations

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
}

# Figures that already compare a case with its baseline: a ratio of them says nothing.
RELATIVE_TO_BASELINE = {"kl_to_baseline", "top1_agreement"}

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
    return bool(method) and any(m in method for m in MODELLED_METHODS)
