"""What one case produces: metrics with units and methods, raw samples, and a status."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SCHEMA_VERSION = 1

Status = Literal["ok", "failed", "oom", "timeout", "killed", "skipped"]
STATUSES: tuple[str, ...] = ("ok", "failed", "oom", "timeout", "killed", "skipped")


@dataclass(frozen=True)
class Metric:
    name: str
    value: float
    unit: str  # "s", "tokens/s", "bytes", "1" for a pure ratio, ...
    method: str  # how it was obtained: "perf_counter", "count", "state_dict", ...

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summary_metrics(prefix: str, summary: dict[str, float], unit: str, method: str) -> list[Metric]:
    """The standard set of figures for one timed series (``summary`` from stats.summarize)."""
    out = [
        Metric(f"{prefix}_{k}", summary[k], unit, method)
        for k in ("median", "mean", "p10", "p90", "iqr")
    ]
    out.append(Metric(f"{prefix}_cv", summary["cv"], "1", method))
    return out


@dataclass
class WorkloadOutput:
    """What a workload hands back to the runner."""

    metrics: list[Metric]
    samples: dict[str, dict[str, Any]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


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

    def metric(self, name: str) -> Metric | None:
        return next((m for m in self.metrics if m.name == name), None)
