"""A workload that checks the harness itself: each mode makes the child process end in a
known way, so a user can see on their own machine that every failure is recorded and the
run goes on (``suites/selftest.toml``)."""

from __future__ import annotations

import os
import signal
import time
from typing import Literal

from pydantic import Field

from bench.results.schema import WorkloadOutput, series_metrics
from bench.spec.registry import Params, register_workload
from bench.telemetry.series import describe_series
from bench.telemetry.timer import time_calls


class SelftestParams(Params):
    mode: Literal["ok", "raise", "exit", "sleep", "sigkill", "alloc", "spawn"] = "ok"
    seconds: float = Field(0.0, ge=0, le=86_400)  # for "sleep": how long, before returning ok
    exit_code: int = Field(3, ge=0, le=255)  # for "exit"
    rank: int | None = Field(None, ge=0)  # on launched ranks: only this one; the others "ok"


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_initialized() else 0


def _alloc_too_much():
    import torch

    # Far beyond any machine: the allocator refuses at once instead of swapping.
    return torch.empty(1 << 60, dtype=torch.uint8)


@register_workload(
    "selftest",
    params=SelftestParams,
    label=lambda p: (
        f"selftest-{p.mode}"
        + {"sleep": f"{p.seconds:g}s", "spawn": f"{p.seconds:g}s", "exit": str(p.exit_code)}.get(
            p.mode, ""
        )
        + (f"-rank{p.rank}" if p.rank is not None else "")
    ),
    headline="latency_median",
)
def run_selftest(model, params: SelftestParams, ctx) -> WorkloadOutput:
    """ok: time a trivial call; raise: an exception; exit: os._exit; sleep: sleep then ok;
    sigkill: the process kills itself; alloc: a real allocation the allocator refuses;
    spawn: start a worker process (as a parallel case does), print its pid, then sleep.
    With ``rank``, only that rank of a parallel case does it (a failing or hanging rank)."""
    if params.rank is not None and params.rank != _rank():
        params = params.model_copy(update={"mode": "ok"})
    if params.mode == "raise":
        raise RuntimeError("selftest: raised on purpose")
    if params.mode == "exit":
        os._exit(params.exit_code)
    if params.mode == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if params.mode == "alloc":
        _alloc_too_much()
    if params.mode == "spawn":
        import subprocess

        worker = subprocess.Popen(["sleep", "600"])
        print(f"worker pid {worker.pid}", flush=True)
    if params.mode in ("sleep", "spawn"):
        time.sleep(params.seconds)
    samples = time_calls(
        lambda: None, warmup=ctx.warmup, iterations=ctx.iterations, clock=ctx.clock
    )
    return WorkloadOutput(
        series_metrics("latency", describe_series(samples.values), "s", samples.method),
        samples={"latency": samples.to_json()},
    )
