"""The expanded form of a suite: cases, each one model, one workload and a chain of
techniques with validated parameters, identified by a readable id and a hash of what is
measured."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

BASELINE = "baseline"


def is_baseline(technique_names: list[str]) -> bool:
    """A case is its group's baseline when it applies no technique but ``baseline``."""
    return all(name == BASELINE for name in technique_names)


@dataclass(frozen=True)
class Component:
    """One model, workload or technique step with its validated parameters."""

    name: str
    params: dict[str, Any]
    label: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "params": self.params, "label": self.label}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Component:
        return cls(d["name"], dict(d["params"]), d["label"])


@dataclass(frozen=True)
class Case:
    suite: str
    model: Component
    workload: Component
    techniques: tuple[Component, ...]
    run: dict[str, Any]
    id: str = field(init=False)
    hash: str = field(init=False)

    def __post_init__(self) -> None:
        chain = "+".join(t.label for t in self.techniques) or BASELINE
        object.__setattr__(self, "id", f"{self.model.label}/{self.workload.label}/{chain}")
        measured = {
            "model": self.model.to_json(),
            "workload": self.workload.to_json(),
            "techniques": [t.to_json() for t in self.techniques],
            "run": self.run,
        }
        digest = hashlib.sha256(json.dumps(measured, sort_keys=True).encode()).hexdigest()
        object.__setattr__(self, "hash", digest[:12])

    @property
    def group(self) -> str:
        """Cases in one group differ only in techniques and share one baseline."""
        return f"{self.model.label}/{self.workload.label}"

    @property
    def is_baseline(self) -> bool:
        return is_baseline([t.name for t in self.techniques])

    def to_json(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "id": self.id,
            "hash": self.hash,
            "model": self.model.to_json(),
            "workload": self.workload.to_json(),
            "techniques": [t.to_json() for t in self.techniques],
            "run": self.run,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Case:
        return cls(
            d["suite"],
            Component.from_json(d["model"]),
            Component.from_json(d["workload"]),
            tuple(Component.from_json(t) for t in d["techniques"]),
            dict(d["run"]),
        )
