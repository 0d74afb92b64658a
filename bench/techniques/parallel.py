"""Parallel degrees: intra-op threads, data parallel (DDP, FSDP2) and tensor parallel.

``threads`` runs in the case's own process. The other modes need ranks: the technique's
``placement`` tells the case runner to start ``world_size`` ranks through torch's launcher
(bench.run.ranks), and ``apply`` then runs on each rank, inside its process group:

- ``ddp``: ``DistributedDataParallel`` around the model; the ``train`` workload gives each
  rank its own slice of the batches (rank r of step i reads micro-batch i*world + r), so
  world size N trains on N times the tokens per step.
- ``fsdp``: ``fully_shard`` (FSDP2) on every block and the root: parameters, gradients and
  optimizer state are sharded over the ranks, gathered per block as it runs.
- ``tp``: ``parallelize_module`` shards attention by heads and the MLP by its hidden width
  (column-wise in, row-wise out; bench.techniques.tensor_parallel); every rank serves the
  same batch, so throughput is the group's, not a sum.
"""

from __future__ import annotations

import functools
from typing import Literal

from pydantic import Field

from bench.spec.registry import Params, register_technique

DATA_PARALLEL = {"ddp", "fsdp"}  # each rank serves its own data
SHARDED = {"fsdp", "tp"}  # each rank holds a share of the model
# The workloads each mode runs; "selftest" makes a rank fail or hang on purpose.
WORKLOADS = {
    "ddp": {"train", "selftest"},
    "fsdp": {"train", "selftest"},
    "tp": {"forward", "selftest"},
}


class ParallelParams(Params):
    mode: Literal["threads", "ddp", "fsdp", "tp"]
    threads: int | None = Field(None, ge=1, le=1024)  # mode threads: intra-op threads
    world_size: int = Field(1, ge=1, le=4096)  # ranks, over all nodes
    threads_per_rank: int = Field(1, ge=1, le=1024)  # intra-op threads of each rank
    backend: Literal["auto", "gloo", "nccl"] = "auto"  # auto: nccl on cuda, else gloo

    def backend_for(self, device: str) -> str:
        if self.backend != "auto":
            return self.backend
        return "nccl" if device.startswith("cuda") else "gloo"


def _label(p: ParallelParams) -> str:
    if p.mode == "threads":
        return f"threads-{p.threads}"
    parts = [p.mode, f"w{p.world_size}", f"t{p.threads_per_rank}"]
    if p.backend != "auto":
        parts.append(p.backend)
    return "-".join(parts)


def _check(p: ParallelParams, case) -> str | None:
    if p.mode == "threads":
        if p.threads is None:
            return "parallel mode 'threads' needs 'threads' (intra-op threads of the process)"
        if p.world_size != 1:
            return "parallel mode 'threads' runs one process: world_size must be 1"
        return None
    if p.threads is not None:
        return f"parallel mode {p.mode!r} sets threads_per_rank, not 'threads'"
    if p.backend_for(case.run["device"]) == "nccl" and case.run["device"] != "cuda":
        return "backend 'nccl' needs GPUs: set run.device = 'cuda' or backend = 'gloo'"
    if case.workload.name not in WORKLOADS[p.mode]:
        allowed = " or ".join(sorted(WORKLOADS[p.mode]))
        return f"parallel mode {p.mode!r} runs the {allowed} workload, not {case.workload.name!r}"
    if p.mode == "tp":
        from bench.techniques.tensor_parallel import tp_check

        return tp_check(case.model, p.world_size)
    return None


def placement(p: ParallelParams, device: str) -> dict | None:
    """The ranks this case needs (the fields of bench.run.distributed.Placement), or None:
    it runs in the case's own process."""
    if p.mode == "threads":
        return None
    return {
        "world_size": p.world_size,
        "threads_per_rank": p.threads_per_rank,
        "backend": p.backend_for(device),
        "device": device,
    }


@register_technique(
    "parallel",
    params=ParallelParams,
    label=_label,
    check=_check,
    placement=placement,
    data_parallel=lambda p: p.mode in DATA_PARALLEL,
    sharded=lambda p: p.mode in SHARDED,
)
def apply_parallel(model, p: ParallelParams, ctx):
    """Set the threads, or wrap/shard the model on this rank (mode ddp/fsdp/tp)."""
    import torch

    if p.mode == "threads":
        torch.set_num_threads(p.threads)
        return model, {"threads": torch.get_num_threads()}
    import torch.distributed as dist

    if not dist.is_initialized():
        raise RuntimeError(f"parallel mode {p.mode!r} runs on launched ranks (no process group)")
    rank, world = dist.get_rank(), dist.get_world_size()
    info = {"rank": rank, "world_size": world, "backend": dist.get_backend()}
    if p.mode == "tp":
        from bench.techniques.tensor_parallel import shard

        model, sharded = shard(model, world, ctx.device)
        return model, {**info, **sharded}
    ctx.data_shard = (rank, world)
    if p.mode == "ddp":
        return Replicated(model.train()), info
    from torch.distributed.fsdp import fully_shard

    blocks = _blocks(model)
    for block in blocks:
        fully_shard(block)
    fully_shard(model)
    return model, {**info, "sharded_blocks": len(blocks)}


def _blocks(model) -> list:
    """The repeated transformer blocks (the units FSDP gathers one at a time)."""
    import torch

    for name in ("blocks", "layers", "h"):
        for module in model.modules():
            found = getattr(module, name, None)
            if isinstance(found, torch.nn.ModuleList):
                return list(found)
    raise ValueError(f"{type(model).__name__}: no list of blocks to shard")


@functools.cache
def _ddp_class():
    from torch.nn.parallel import DistributedDataParallel

    class _Replicated(DistributedDataParallel):
        """DDP that still answers for the model it wraps (``config``, its bench_info), so
        workloads read the model the same whether it is wrapped or not."""

        def __getattr__(self, name):
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self.module, name)

        def twin(self):
            """A copy with a reducer of its own: an extra step (the energy window) leaves
            the trained model as it was, and still all-reduces like the real step."""
            import copy

            return type(self)(copy.deepcopy(self.module))

    return _Replicated


def Replicated(model):
    return _ddp_class()(model)
