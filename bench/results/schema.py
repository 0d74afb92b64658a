"""What one case produces: metrics with units and methods, raw samples, and a status."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SCHEMA_VERSION = 1

Status = Literal["ok", "failed", "oom", "timeout", "killed", "skipped", "diverged"]


@dataclass(frozen=True)
class Metric:
    name: str
    value: float
    unit: str  # "s", "tokens/s", "bytes", "1" for a pure ratio, ...
    method: str  # how it was obtained: "perf_counter", "count", "state_dict", ...

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


SERIES_KEYS = ("median", "median_ci_low", "median_ci_high", "mean", "p10", "p90", "p99", "iqr")


def series_metrics(
    prefix: str, described: dict[str, float], unit: str, method: str
) -> list[Metric]:
    """The standard figures of one timed series (``described``: telemetry.series).

    ``median_ci_*`` bound the median's 95% order-statistic interval over the samples of one
    process, and say so in their method: they describe that process, not a rerun (the
    process-level run is the unit of evidence across runs: bench.analysis.stats).
    """
    out = [
        Metric(
            f"{prefix}_{k}",
            described[k],
            unit,
            method + ("+in_process_order_statistics95" if "_ci_" in k else ""),
        )
        for k in SERIES_KEYS
    ]
    out.append(Metric(f"{prefix}_cv", described["cv"], "1", method))
    return out


@dataclass
class EnergyWork:
    """One unit of a workload's work, for the energy window to loop: ``call`` does it,
    ``units`` says how much it is (e.g. {"tokens": 256, "samples": 8})."""

    call: Any
    units: dict[str, float]
    per: str = "latency_median"  # the workload's median time of one call
    # Totals to report as call energy x a count of calls, e.g. {"energy_to_target_loss": 120}.
    totals: dict[str, float] = field(default_factory=dict)
    # Run once before a window of its own (not timed), e.g. copying the model to train on.
    prepare: Any = None


@dataclass(frozen=True)
class Traffic:
    """Memory a workload's timed call must move beyond the model's weights (read once per
    call): ``extra_bytes`` of ``extra_what`` (e.g. the KV cache a decode step reads), over
    the median of the timed series ``per``."""

    per: str  # a metric this workload reports, e.g. "latency_median", "decode_step_median"
    tokens: int  # tokens one call looks up: rows read from each embedding table
    extra_bytes: float = 0.0
    extra_what: str = ""


@dataclass
class WorkloadOutput:
    """What a workload hands back to the runner."""

    metrics: list[Metric]
    samples: dict[str, dict[str, Any]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    energy: EnergyWork | None = None  # None: this workload's energy is not meaningful
    traffic: Traffic | None = None  # None: no memory-bandwidth figure for this workload
    lazy_costs: tuple[str, ...] = ()  # one-off costs the workload itself pays (compilation)
    absent: dict[str, str] = field(default_factory=dict)  # metric -> why it is not measured


@dataclass
class CaseResult:
    case: dict[str, Any]
    case_id: str
    case_hash: str
    repeat: int
    status: Status
    started: str
    ended: str
    wall_s: float
    metrics: list[Metric] = field(default_factory=list)
    samples: dict[str, dict[str, Any]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    run_id: str | None = None
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["metrics"] = [m.to_json() for m in self.metrics]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CaseResult:
        return cls(**{**d, "metrics": [Metric(**m) for m in d.get("metrics", [])]})
