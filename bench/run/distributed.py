"""Parallel cases through torch's own launcher (``torch.distributed.elastic``, what
``torchrun`` runs): a function on ``world_size`` ranks, each in its own process with its
process group initialised, its return value gathered by rank.

The rendezvous binds a free port (``localhost:0``) unless an endpoint is given, so two
parallel cases never collide; a rank that raises ends the launch with every rank's exit
code and the failing rank's error, never a hang of the others (torch's agent kills them).
Every rank's return value is gathered to global rank 0, so the node that holds it has all
of them even when the ranks span machines.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# What a rank's error says when it failed because a peer left (gloo, NCCL, the gather).
PEER_GONE = (
    "Connection closed by peer",
    "Connection reset by peer",
    "Broken pipe",
    "NCCL communicator was aborted",
)
PEER_GRACE_S = 3.0


class RankFailed(RuntimeError):
    """A launch in which some rank did not return: its exit codes by rank and the first
    failing rank's error."""

    def __init__(self, exit_codes: dict[int, int | str], rank: int, error: str):
        self.exit_codes, self.rank, self.error = exit_codes, rank, error
        codes = ", ".join(
            f"rank {r}: " + (f"exit {c}" if isinstance(c, int) else c)
            for r, c in sorted(exit_codes.items())
        )
        super().__init__(f"rank {rank} failed ({codes}): {error}")


@dataclass(frozen=True)
class Placement:
    world_size: int  # ranks on this node x nodes
    threads_per_rank: int = 1  # intra-op threads of each rank
    backend: str = "gloo"  # "nccl" on GPUs
    device: str = "cpu"  # where the ranks compute; "cuda" ranks are spawned, never forked
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None  # host:port of the rendezvous; None: this host, a free port
    rdzv_id: str | None = None  # the launch's name, the same on every node; None: a fresh one

    @property
    def uses_cuda(self) -> bool:
        return self.backend == "nccl" or self.device.startswith("cuda")

    def oversubscribed(self, cores: int | None = None) -> str | None:
        """Why the ranks' threads exceed this machine's cores, or None."""
        cores = cores or len(os.sched_getaffinity(0))
        per_node = self.world_size // self.nnodes
        if per_node * self.threads_per_rank > cores:
            return (
                f"{per_node} ranks x {self.threads_per_rank} threads exceed the {cores} cores "
                "this process may use: the ranks compete for them"
            )
        return None


def _rank_main(fn: Callable[..., Any], threads: int, backend: str, args: tuple) -> Any:
    """One rank: its threads and device, its process group around ``fn``; global rank 0
    returns every rank's value (a list by rank), the others their own."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(threads)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend)
    # No teardown on an exception: the rank leaves at once, so it is the first to fail and
    # its error, not a peer's "connection closed", is what the launch reports.
    try:
        out = fn(*args)
        everyone = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
        dist.gather_object(out, everyone, dst=0)
    except Exception as e:
        if any(m in str(e) for m in PEER_GONE):
            # Lost a peer: leave after it, so torch's agent records the peer's failure (the
            # cause) and stops this rank, rather than taking this one for the cause.
            time.sleep(PEER_GRACE_S)
        raise
    dist.destroy_process_group()
    return everyone if everyone is not None else out


def _error_text(failure) -> str:
    message = failure.message
    if isinstance(message, dict):  # torch's error file: {"message": ..., "extraInfo": ...}
        message = message.get("message", "")
    return str(message).strip().splitlines()[-1] if message else f"exit {failure.exitcode}"


def launch(fn: Callable[..., Any], args: tuple, placement: Placement) -> dict[int, Any]:
    """``fn(*args)`` on every rank of this node; {global rank: return value} of every rank
    when this node holds rank 0, else of this node's ranks. ``fn`` must be importable by
    name (ranks are spawned processes)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if placement.world_size < 1 or placement.world_size % placement.nnodes:
        raise ValueError(
            f"world_size {placement.world_size} does not split over {placement.nnodes} nodes"
        )
    config = LaunchConfig(
        min_nodes=placement.nnodes,
        max_nodes=placement.nnodes,
        nproc_per_node=placement.world_size // placement.nnodes,
        run_id=placement.rdzv_id or uuid.uuid4().hex,
        rdzv_backend="c10d",
        rdzv_endpoint=placement.rdzv_endpoint or "localhost:0",
        # Node 0 hosts the rendezvous store (the endpoint is its address); the others join.
        rdzv_configs=({"is_host": placement.node_rank == 0} if placement.nnodes > 1 else {}),
        max_restarts=0,  # a failure is the case's outcome, not something to retry
        monitor_interval=0.1,
        # A forked child of a process that touched CUDA cannot use it, whatever the backend
        # (gloo reduces CUDA tensors too): CUDA ranks start as fresh interpreters.
        start_method="spawn" if placement.uses_cuda else "fork",
    )
    # torch logs every rank's traceback at ERROR; the failure is reported once, below.
    logger = logging.getLogger("torch.distributed.elastic")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        out = elastic_launch(config, _rank_main)(fn, placement.threads_per_rank,
                                                 placement.backend, args)  # fmt: skip
        return dict(enumerate(out[0])) if 0 in out else out
    except ChildFailedError as e:
        failures = e.failures
    finally:
        logger.setLevel(level)
    codes: dict[int, int | str] = {rank: f.exitcode for rank, f in failures.items()}
    if placement.nnodes == 1:  # the others were stopped by torch's agent, not failed
        codes = {r: codes.get(r, "stopped") for r in range(placement.world_size)}
    # Torch stamps failures in whole seconds, and a rank whose peer died fails too, often
    # in the same second: the cause is the earliest failure that is not a peer's loss.
    texts = {r: _error_text(f) for r, f in failures.items()}
    causes = [r for r in failures if not any(m in texts[r] for m in PEER_GONE)] or list(failures)
    first = min(causes, key=lambda r: (failures[r].timestamp, r))
    raise RankFailed(codes, first, texts[first])
