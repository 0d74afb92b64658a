"""What a model builder, technique or workload may know about the case it serves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.telemetry.memory import MemoryMonitor
from bench.telemetry.timer import clock_for, device_sync


@dataclass
class CaseContext:
    device: str
    dtype: str
    seed: int
    warmup: int | str  # a count, or "auto": until the running median settles
    iterations: int
    gpu: Any = None  # bench.telemetry.nvml.Gpu of this case's device, when NVML sees it
    run_dir: str | None = None  # the run's folder (caches shared by its cases), if any
    case_stem: str | None = None  # this case and repeat's file name stem in the run folder
    model: Any = None  # the case's model entry (bench.spec.suite.Component): name, label
    quality: bool = False  # run.quality: workloads that judge their own output do so
    # The unoptimized model of the case, built afresh (the yardstick of quality figures).
    reference: Callable[[], Any] | None = None
    # What training techniques chose for the train workload: "optimizer", "schedule",
    # "distill" (bench.techniques.optimizer / lr_schedule / distill).
    training: dict[str, Any] = field(default_factory=dict)
    # (rank, world size) of a data-parallel rank: which slice of the data it reads.
    data_shard: tuple[int, int] = (0, 1)
    sync: Callable[[], None] = field(init=False)
    clock: Any = field(init=False)
    memory: MemoryMonitor = field(init=False)

    def __post_init__(self) -> None:
        self.sync = device_sync(self.device)
        self.clock = clock_for(self.device)
        self.memory = MemoryMonitor(self.device, self.gpu)

    @property
    def torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype)

    def generator(self) -> Any:
        """A fresh seeded generator, so inputs are identical across cases and repeats."""
        import torch

        return torch.Generator().manual_seed(self.seed)
