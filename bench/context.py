"""What a model builder, technique or workload may know about the case it serves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.telemetry.timer import device_sync


@dataclass
class CaseContext:
    device: str
    dtype: str
    seed: int
    warmup: int
    iterations: int
    sync: Callable[[], None] = field(init=False)

    def __post_init__(self) -> None:
        self.sync = device_sync(self.device)

    @property
    def torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype)

    def generator(self) -> Any:
        """A fresh seeded generator, so inputs are identical across cases and repeats."""
        import torch

        return torch.Generator().manual_seed(self.seed)
