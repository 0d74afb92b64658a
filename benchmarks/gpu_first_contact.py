"""First contact with a GPU machine: one script, run once, read once.

A person with ~15 minutes on one H200 runs this and reads one pass/fail table. Every
figure comes from the harness's own code (NVML door, timers, energy windows, sampler,
copy bandwidth, the case runner with its decoders and techniques), so the run checks the
harness on real hardware, not a rewrite of it:

 1. preflight          versions, packages, NVML names, MIG off (no CUDA context yet)
 2. idle_no_context    idle power from a fresh interpreter that never touches CUDA
 3. cuda               CUDA device <-> NVML GPU by UUID, names, compute capability
 4. idle_with_context  idle power while this process holds a CUDA context
 5. matmul_timer       bf16 matmul: CUDA events vs synced wall clock, TFLOP/s, memory
 6. energy_windows     five 1 s vs five 2 s windows; energy counter vs power integral
 7. copy_bandwidth     the harness's copy and read bandwidth (the decode roofline)
 8. decode_eager       1.1B Llama shape, batch 1, through the case runner, eager
 9. decode_compiled    the same, compiled static-cache decoding (CUDA graphs)
10. compression        int4 weight-only, float8, 2:4 on a 4-layer slice of that shape
11. gpu_tests          the `gpu`-marked tests, in a child pytest
12. nccl               NCCL at world size 1 through the harness's launcher, and in-process

Results are printed as they come, appended to ``OUT/results.jsonl`` (one line per step)
and summed up in ``OUT/summary.json``; a failing step is recorded and the next one runs.
A global deadline (default 420 s) marks what is left "skipped: out of time".

``--dry-run`` runs the same plan on this CPU with tiny shapes and a stand-in NVML (about
25 s on 2 cores): every figure is computed where a CPU can and judged "dry"; what needs
CUDA is shown as "plan" with what it would check. tests/test_gpu_first_contact.py runs it.

On the GPU machine, from the checkout, with the missing packages carried as wheels (GPU.md,
"Taking missing packages along"; the wheelhouse in .whl/ is built here):

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:$PWD python3 benchmarks/gpu_first_contact.py --out "${OUT:-first-contact}"

Exit status: 0 when nothing failed (a goal "miss" is not a failure), 1 when a figure failed
or a step errored or timed out, 3 after a hard stop. ``--only STEP,...`` reruns some steps
into the same OUT, whose inductor cache turns a second compile into a load.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()
GIB = 1 << 30
DEADLINE_S = 420.0  # the steps take ~300 s; the rest of a 10-minute call is start-up, a rerun
HARD_STOP_AFTER_S = 30.0  # past the deadline: a step stuck where its alarm cannot reach


# --- what to expect -------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One figure's expectation. ``lo``/``hi`` bound a range, ``equals`` an exact answer;
    a ``goal`` missed is "miss" (a target not reached), not "fail" (something broken).
    With none of them the figure is information only."""

    label: str
    unit: str = ""
    lo: float | None = None
    hi: float | None = None
    equals: Any = None
    goal: bool = False
    why: str = ""

    @property
    def judged(self) -> bool:
        return self.lo is not None or self.hi is not None or self.equals is not None

    def verdict(self, value: Any) -> str:
        if not self.judged:
            return "info"
        if self.equals is not None:
            ok = value == self.equals
        elif isinstance(value, bool) or not isinstance(value, int | float):
            ok = False  # a range asked for a number and got something else
        else:
            ok = (self.lo is None or value >= self.lo) and (self.hi is None or value <= self.hi)
        return "pass" if ok else ("miss" if self.goal else "fail")

    def expected(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.equals is not None:
            return f"= {self.equals}"
        if self.lo is not None and self.hi is not None:
            text = f"{self.lo:g}..{self.hi:g}{unit}"
        elif self.lo is not None:
            text = f">= {self.lo:g}{unit}"
        elif self.hi is not None:
            text = f"<= {self.hi:g}{unit}"
        else:
            return "(info)"
        return text + (" (goal)" if self.goal else "")


# The H200's expected figures: GPU.md (the notes read off the machine on 2026-11-28, its
# section "What to expect there") and the hardware's limits. A figure outside its range
# points at the machine or at the harness; the "why" says which figure it was held to.
G = "GPU.md"
EXPECT: dict[str, dict[str, Check]] = {
    "preflight": {
        "python": Check("Python version"),
        "torch": Check("torch version"),
        "torch_cuda": Check("torch's CUDA"),
        "transformers": Check("transformers version"),
        "transformers_5": Check("transformers is 5.x (tested line; forward is read)"),
        "torchao": Check("torchao version"),
        "packages_missing": Check("packages missing", equals=0, why=f"{G}: carry the wheels"),
        "codecarbon_imports": Check("codecarbon imports", equals=True, why="energy, CO2"),
        "driver": Check("NVIDIA driver"),
        "nvml_gpus": Check("GPUs NVML sees", lo=1, why="one H200"),
        "cuda_probe_devices": Check("CUDA devices, probed uninitialised", lo=1, why="cuda_probe"),
        "gpu_name": Check("GPU name (NVML)"),
        "gpu_is_h200": Check("GPU is an H200", equals=True, why="the ranges are the H200's"),
        "mig_off": Check("MIG off", equals=True, why="a MIG slice is not the whole chip"),
        "power_limit_w": Check("power limit", "W", 650, 700, why=f"{G}: 700 W"),
    },
    "idle_no_context": {
        "idle_no_context_w": Check("idle, no CUDA context", "W", 60, 130, why=f"{G}: ~79 W"),
    },
    "cuda": {
        "cuda_available": Check("torch sees CUDA", equals=True),
        "cuda_devices": Check("CUDA devices torch sees"),
        "compute_capability": Check("compute capability", equals=9.0, why="H200 is sm_90"),
        "uuid_found": Check("CUDA device found in NVML by UUID", equals=True, why="open_gpu"),
        "nvml_index": Check("NVML index of CUDA device 0"),
        "names_agree": Check("torch and NVML name the same GPU", equals=True),
    },
    "idle_with_context": {
        "idle_context_w": Check("idle, context held", "W", 60, 140, why=f"{G}: up to ~120 W"),
        "idle_context_extra_w": Check("context's extra idle", "W", -5, 60, why=f"{G}: 79->120"),
    },
    "matmul_timer": {
        "matmul_tflops": Check("bf16 matmul", "TFLOP/s", 600, 800, why=f"{G}: 752 at 8192^3"),
        "event_wall_ratio": Check("CUDA events / synced wall", "", 0.98, 1.02, why=G),
        "nvml_minus_reserved_gib": Check("NVML used - torch reserved", "GiB", 0.3, 1.5, why=G),
        "process_minus_reserved_gib": Check("NVML pid - torch reserved", "GiB", 0.3, 1.5, why=G),
    },
    "energy_windows": {
        # GPU.md's scatter was seen reading the counter at arbitrary times; the harness now
        # opens and closes its windows on the counter's steps, 2 s at least on a GPU.
        "spread_1s": Check("J/call scatter, raw 1 s windows", "+-", why=f"{G}: up to +-10%"),
        "spread_2s": Check("J/call scatter, bench 2 s windows", "+-", 0, 0.05, why=f"{G}: half"),
        "counter_vs_integral": Check("counter vs 10 Hz integral, worst", "", 0, 0.05, why=G),
        "matmul_power_w": Check("mean power under matmul", "W", 150, 720, why="700 W limit"),
        "energy_per_matmul_j": Check("energy per matmul", "J"),
        "tick_aligned": Check("bench windows on counter steps", equals=True, why="energy.py"),
        # one long window read at arbitrary times (edges off by <= 2 x 0.1 s of 8 s: 2.5%)
        # against bench's windows: a counter that lags its steps would bias bench's tail
        "long_window_bias": Check("bench J/call / 8 s raw window J/call", "", 0.97, 1.03),
    },
    "copy_bandwidth": {
        "copy_tbps": Check("copy bandwidth (read+write)", "TB/s", 3.8, 4.6, why=f"{G}: 4.25"),
        "read_tbps": Check("read bandwidth (sum)", "TB/s", 3.5, 4.8, why="HBM3e peak 4.8"),
    },
    "decode_eager": {
        "eager_status": Check("eager case status", equals="ok"),
        "eager_tok_s": Check("eager decode, per step", "tok/s", 70, 130, why=f"{G}: 94.8"),
        "eager_bw_pct": Check("eager, % of read bandwidth", "%", 3, 8, why=f"{G}: ~5%"),
        "eager_j_per_token": Check("eager energy", "J/token"),
    },
    "decode_compiled": {
        "compiled_status": Check("compiled case status", equals="ok"),
        # GPU.md: 837.6 tok/s (43.7%) seen; ~420 tok/s means CUDA graphs did not run.
        "compiled_tok_s": Check("compiled decode, per step", "tok/s", lo=1000, goal=True, why=G),
        "compiled_bw_pct": Check("compiled, % of read bandwidth", "%", lo=55, goal=True, why=G),
        "compiled_j_per_token": Check("compiled energy", "J/token"),
        "compile_s": Check("compile time (empty cache)", "s", 20, 60, why=f"{G}: ~35 s"),
        "cuda_graphs_ran": Check("CUDA graphs ran (no skips)", equals=True, why=f"{G}: ~420"),
    },
    # A 4-layer slice of the same shape, forward of 8 x 512 tokens, against its bf16 self.
    # Bytes: the bf16 embedding (131 MB of 614) stays; int4 at group 128 is ~4.5 bits a
    # weight (ratio ~0.42), float8 8 bits plus a scale a row (~0.61). torch's 2:4 tensors
    # keep a transposed copy too, so their bytes are not pinned; nor are the speed-ups of
    # weight-only int4 at 4096 tokens (a decode win, not a prefill one).
    "compression": {
        "baseline_status": Check("bf16 slice case status", equals="ok"),
        "baseline_tok_s": Check("bf16 slice forward", "tok/s"),
        "int4_status": Check("int4 weight-only case status", equals="ok"),
        "int4_all_layers": Check("int4 took every linear layer", equals=True),
        "int4_bytes_ratio": Check("int4 bytes / bf16 bytes", "", 0.3, 0.5, why="4.5 bits"),
        "int4_speedup": Check("int4 forward speed-up", "x"),
        "int4_rel_error": Check("int4 logit rel. error vs bf16"),
        "float8_status": Check("float8 case status", equals="ok", why="sm_89+"),
        "float8_all_layers": Check("float8 took every linear layer", equals=True),
        "float8_bytes_ratio": Check("float8 bytes / bf16 bytes", "", 0.5, 0.7, why="8 bits"),
        "float8_speedup": Check("float8 forward speed-up", "x", lo=1.0, goal=True, why="fp8 TC"),
        "float8_rel_error": Check("float8 logit rel. error vs bf16"),
        "sparse24_status": Check("2:4 semi-structured case status", equals="ok"),
        "sparse24_all_layers": Check("2:4 kernels took every layer", equals=True),
        "sparse24_bytes_ratio": Check("2:4 bytes / bf16 bytes"),
        "sparse24_speedup": Check("2:4 forward speed-up", "x", lo=1.0, goal=True, why="sparse TC"),
        "sparse24_rel_error": Check("2:4 logit rel. error vs bf16", why="half the weights gone"),
    },
    "gpu_tests": {
        "gpu_tests_passed": Check("gpu tests passed", lo=1),
        "gpu_tests_failed": Check("gpu tests failed or errored", equals=0),
        "gpu_tests_skipped": Check("gpu tests skipped", equals=0, why="nothing skips on a GPU"),
    },
    "nccl": {
        "nccl_launch_ok": Check("all_reduce via bench's launcher", equals=True),
        "nccl_inprocess_ok": Check("all_reduce in-process (FileStore)", equals=True),
        "nccl_version": Check("NCCL version"),
    },
}
CHECKS: dict[str, Check] = {k: c for group in EXPECT.values() for k, c in group.items()}


# --- how big the work is --------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """Sizes of every step's work: the H200's, or tiny ones for --dry-run on a CPU."""

    device: str
    dtype: str  # matmul and models
    matmul_n: int  # square matmul side: 8192 is ~1.5 ms on an H200, well past launch costs
    timer_warmup: int
    timer_iterations: int
    energy_matmuls: int  # matmuls per energy-window call (~12 ms a call on the H200)
    windows: int  # energy windows of each length (1 s and 2 s)
    long_window_s: float  # one long window read plainly: the yardstick for a bias
    idle_s: float  # each idle window: 50 ticks of the 10 Hz counter on the H200
    copy_bytes: int | None  # None: the harness's own size (1 GiB on CUDA)
    model: str  # registry name of the decoding model (bench.models.hf)
    slice_layers: int  # layers of the compression slice of the same shape
    prompt_len: int
    new_tokens: int
    compiled_runtime: str  # "compiled" (CUDA graphs) on a GPU; "static" in the dry-run
    forward_batch: int
    forward_seq: int
    energy_min_s: float


H200 = Scale(
    device="cuda",
    dtype="bfloat16",
    matmul_n=8192,
    timer_warmup=10,
    timer_iterations=50,
    energy_matmuls=8,
    windows=5,
    long_window_s=8.0,
    idle_s=5.0,
    copy_bytes=None,
    model="llama-1b-shape",  # TinyLlama: hidden 2048, 22 layers, 32/4 heads, vocab 32000
    slice_layers=4,
    prompt_len=128,  # as suites/gpu.toml
    new_tokens=128,  # as GPU.md's anchors
    compiled_runtime="compiled",
    forward_batch=8,
    forward_seq=512,
    energy_min_s=2.0,
)
# No inductor compile here: on 2 cores it alone would take longer than the whole dry-run.
DRY = Scale(
    device="cpu",
    dtype="float32",
    matmul_n=256,
    timer_warmup=2,
    timer_iterations=10,
    energy_matmuls=1,
    windows=2,
    long_window_s=2.0,
    idle_s=1.0,
    copy_bytes=16 << 20,
    model="llama-tiny",  # 2 layers, 128 wide
    slice_layers=2,
    prompt_len=8,
    new_tokens=8,
    compiled_runtime="static",
    forward_batch=2,
    forward_seq=32,
    energy_min_s=1.0,
)


# --- figures and steps ----------------------------------------------------------------------


@dataclass
class Figure:
    key: str
    value: Any
    method: str = ""
    note: str = ""
    verdict: str = ""  # set by the runner unless a step decides (plan, info)

    def to_json(self) -> dict[str, Any]:
        check = CHECKS[self.key]
        return {
            "key": self.key,
            "label": check.label,
            "value": _finite(self.value),
            "unit": check.unit,
            "expected": check.expected(),
            "why": check.why,
            "verdict": self.verdict,
            "method": self.method,
            "note": self.note,
        }


@dataclass(frozen=True)
class Step:
    name: str
    fn: Callable[[Lab], list[Figure]]
    budget_s: float  # the most this step may take (an alarm stops it there)
    what: str  # one line: what it checks

    @property
    def checks(self) -> tuple[str, ...]:
        """The figures it reports (EXPECT's group), shown even when it cannot run."""
        return tuple(EXPECT[self.name])


class StepTimeout(BaseException):
    """A step ran past its budget. A BaseException so the case runner's ``except
    Exception`` does not turn it into a failed case and carry on past the budget."""


class Lab:
    """What the steps share: the scale, the output folder, the GPU and earlier figures."""

    def __init__(self, scale: Scale, out: Path, dry: bool, run_dir: Path | None = None):
        self.scale, self.out, self.dry = scale, out, dry
        # The harness's run folder: its inductor cache and the baselines' reference logits.
        # the inductor cache and reference logits: not under OUT, which is shipped back
        self.run_dir = run_dir or Path(tempfile.mkdtemp(prefix="first-contact-"))
        self.facts: dict[str, Any] = {}
        self.step_ends_at = math.inf  # perf_counter time the running step must end by
        self._gpu: Any = None
        self._nvml: Any = None

    def left_s(self, margin: float = 5.0) -> float:
        """Seconds the running step has left, less a margin: a child's timeout, so it is
        stopped (and its output kept) before the step's alarm goes off."""
        return max(1.0, self.step_ends_at - time.perf_counter() - margin)

    @property
    def device(self) -> str:
        return self.scale.device

    @property
    def gpu(self):
        """This process's GPU under NVML, found as the harness finds it: by the CUDA
        device's UUID (creates the CUDA context). The stand-in's first GPU in a dry-run."""
        if self._gpu is None:
            from bench.telemetry.nvml import Nvml

            nvml = Nvml()
            try:
                if self.dry:
                    self._gpu = nvml.gpu(0)
                else:
                    import torch

                    from bench.telemetry.cuda_probe import cuda_uuid

                    torch.cuda.init()
                    self._gpu = nvml.gpu_by_uuid(cuda_uuid(torch.cuda.current_device()))
            except BaseException:
                nvml.close()
                raise
            self._nvml = nvml
        return self._gpu

    def close(self) -> None:
        if self._nvml is not None:
            self._nvml.close()

    def fig(self, key: str, value: Any, method: str = "", note: str = "") -> Figure:
        return Figure(key, value, method, note)

    def absent(self, key: str, why: str) -> Figure:
        return Figure(key, None, note=why, verdict="absent")

    def plan(self, key: str, would: str) -> Figure:
        return Figure(key, None, note=f"needs CUDA: {would}", verdict="plan")

    def info(self, key: str, value: Any, method: str = "", note: str = "") -> Figure:
        """A figure shown without judging it (its range does not apply this time)."""
        return Figure(key, value, method, note, verdict="info")


# --- small helpers --------------------------------------------------------------------------


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _spread(values: list[float]) -> float:
    """Half the range over the median: the "+-x%" GPU.md speaks of."""
    return (max(values) - min(values)) / 2 / statistics.median(values)


def _free_memory() -> None:
    """Between steps: drop what a step left (models, compiled graphs and their CUDA graph
    pools) so the next one, or a child process, has the GPU's memory."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        import torch._dynamo

        torch._dynamo.reset()
        torch.cuda.empty_cache()


def _child_env() -> dict[str, str]:
    """A child's environment with this checkout first on its path (the GPU machine runs
    the project from the checkout, not installed)."""
    env = dict(os.environ)
    parts = [str(REPO), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    return env


# --- the stand-in NVML for --dry-run --------------------------------------------------------


class _DryNvmlError(Exception):
    pass


class DryNvml:
    """NVML for the dry-run: one "H200" drawing a constant 100 W whose total-energy counter
    advances 10 times a second, as the real one does (so the energy windows show their
    tick scatter). A call it does not know answers "Not Supported", as NVML does for a
    feature a GPU lacks. Kept here rather than taken from tests/fake_nvml.py: the script
    must dry-run from any checkout state, and it needs calls (UUID, MIG, processes) that
    the tests' fake does not answer."""

    NVMLError = _DryNvmlError
    NVML_FI_DEV_POWER_INSTANT = 186
    NVML_CLOCK_SM, NVML_CLOCK_MEM = 1, 2
    NVML_TEMPERATURE_GPU = 0
    nvmlMemory_v2 = "v2"
    UUID = "GPU-d0d0d0d0-0000-4000-8000-000000000000"

    def __init__(self, watts: float = 100.0, counter_hz: float = 10.0):
        self.watts, self.counter_hz, self.t0 = watts, counter_hz, time.perf_counter()

    def __getattr__(self, name: str):
        if not name.startswith("nvml"):
            raise AttributeError(name)

        def unsupported(*args: Any) -> Any:
            raise _DryNvmlError("Not Supported")

        return unsupported

    def nvmlInit(self) -> None:
        return None

    def nvmlShutdown(self) -> None:
        return None

    def nvmlSystemGetDriverVersion(self) -> str:
        return "dry-run"

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetHandleByUUID(self, u: str) -> int:
        if u != self.UUID:
            raise _DryNvmlError("Not Found")
        return 0

    def nvmlDeviceGetIndex(self, h: int) -> int:
        return h

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return self.UUID

    def nvmlDeviceGetName(self, h: int) -> str:
        return "NVIDIA H200 (dry-run stand-in)"

    def nvmlDeviceGetMigMode(self, h: int) -> list[int]:
        return [0, 0]

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        return 700_000

    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> int:
        t = int((time.perf_counter() - self.t0) * self.counter_hz) / self.counter_hz
        return int(self.watts * t * 1000)

    def nvmlDeviceGetFieldValues(self, h: int, ids: list[int]) -> list[Any]:
        mw = int(self.watts * 1000)
        return [SimpleNamespace(nvmlReturn=0, value=SimpleNamespace(uiVal=mw)) for _ in ids]

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return int(self.watts * 1000)

    def nvmlDeviceGetMemoryInfo(self, h: int, version: Any = None) -> Any:
        return SimpleNamespace(used=GIB // 2, total=141 * GIB, free=140 * GIB, reserved=0)

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        return [SimpleNamespace(pid=os.getpid(), usedGpuMemory=GIB // 2)]

    nvmlDeviceGetComputeRunningProcesses_v3 = nvmlDeviceGetComputeRunningProcesses


# --- 1. preflight ---------------------------------------------------------------------------

# What the steps import. torchao, codecarbon and pydantic are not on the H200 machine:
# GPU.md's carried wheels bring them, and a missing one shows here first.
NEEDED = (
    "torch",
    "transformers",
    "triton",
    "pynvml",
    "pydantic",
    "torchao",
    "codecarbon",
    "pytest",
)


def step_preflight(lab: Lab) -> list[Figure]:
    """Versions and what NVML sees, before anything creates a CUDA context."""
    import importlib.util

    import torch

    from bench.telemetry.nvml import Nvml

    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    figs = [
        lab.info("python", platform.python_version()),
        lab.info("torch", torch.__version__),
        lab.info("torch_cuda", torch.version.cuda or "none (a CPU build)"),
        lab.info("transformers", _version("transformers")),
        lab.fig("transformers_5", (_version("transformers") or "").startswith("5."), "metadata"),
        lab.info("torchao", _version("torchao")),
        lab.fig("packages_missing", len(missing), "importlib.util.find_spec", ", ".join(missing)),
        lab.fig(
            "codecarbon_imports", codecarbon_error() is None, "import", codecarbon_error() or ""
        ),
    ]
    from bench.telemetry.cuda_probe import cuda_device_count

    # The harness asks without initialising CUDA (NVML's count): this process has no
    # context yet, and the idle step after this one needs it so.
    figs.append(lab.fig("cuda_probe_devices", cuda_device_count(), "cuda_probe (no CUDA init)"))
    with Nvml() as nvml:
        figs.append(lab.info("driver", nvml.driver()))
        figs.append(lab.fig("nvml_gpus", nvml.count(), "nvmlDeviceGetCount"))
        gpus = [nvml.gpu(i) for i in range(nvml.count())]
        facts = [g.facts() for g in gpus]
        lab.facts["nvml_gpus"] = [{**f, **_identity(g)} for f, g in zip(facts, gpus, strict=True)]
    first = lab.facts["nvml_gpus"][0]
    names = ", ".join(str(f["name"]) for f in facts)
    figs += [
        lab.info("gpu_name", names, "nvmlDeviceGetName"),
        lab.fig("gpu_is_h200", all("H200" in str(f["name"]) for f in facts), "nvmlDeviceGetName"),
        lab.fig(
            "mig_off",
            all(g["mig_mode"] in (0, None) for g in lab.facts["nvml_gpus"]),
            "nvmlDeviceGetMigMode (current; Not Supported counts as off)",
            "; ".join(
                f"gpu{g['index']}: {g['uuid']} mig={g['mig_mode']}" for g in lab.facts["nvml_gpus"]
            ),
        ),
        lab.fig("power_limit_w", first["power_limit_w"], "nvmlDeviceGetEnforcedPowerLimit"),
    ]
    return figs


@functools.cache
def codecarbon_error() -> str | None:
    """Why codecarbon cannot be imported (None: it can). The harness imports it for every
    energy window of a CUDA case (CO2) and of a CPU case without RAPL; a missing dependency
    of a carried wheel would fail those cases, so they run without energy instead."""
    try:
        from codecarbon import OfflineEmissionsTracker  # noqa: F401
        from codecarbon.core.emissions import Emissions  # noqa: F401
    except Exception as e:
        return _one_line(e)
    return None


def _identity(gpu) -> dict[str, Any]:
    """UUID and MIG mode: NVML calls the harness's Gpu does not wrap (None if unsupported)."""
    out: dict[str, Any] = {}
    for key, call in (("uuid", "nvmlDeviceGetUUID"), ("mig_mode", "nvmlDeviceGetMigMode")):
        try:
            value = getattr(gpu.nvml, call)(gpu.handle)
        except gpu.nvml.NVMLError:
            value = None
        if isinstance(value, bytes):
            value = value.decode()
        out[key] = value[0] if isinstance(value, list | tuple) else value
    return out


# --- 2 and 4. idle power --------------------------------------------------------------------


def idle_child(seconds: float, dry: bool) -> None:
    """``--idle-child``: idle power of every NVML GPU, printed as JSON, from an interpreter
    that never creates a CUDA context. A fresh process (spawned, never forked from one that
    may hold a context): a forked child would inherit the parent's CUDA state."""
    from bench.telemetry import nvml
    from bench.telemetry.idle import idle_power

    if dry:
        nvml.use_module(DryNvml())
    with nvml.Nvml() as n:
        idle = idle_power([n.gpu(i) for i in range(n.count())], seconds)
    torch = sys.modules.get("torch")
    touched = torch is not None and torch.cuda.is_initialized()
    print(json.dumps({"idle": idle, "pid": os.getpid(), "cuda_initialized": touched}))


def step_idle_no_context(lab: Lab) -> list[Figure]:
    """Idle power while no process of ours holds a CUDA context (the GPU's deepest idle)."""
    cmd = [sys.executable, str(SCRIPT), "--idle-child", str(lab.scale.idle_s)]
    if lab.dry:
        cmd.append("--dry-run")
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=lab.left_s(), env=_child_env()
    )
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"idle child exited {done.returncode}: {tail}")
    got = json.loads(done.stdout.strip().splitlines()[-1])
    lab.facts["idle_no_context"] = got["idle"]
    gpus = sorted(k for k in got["idle"] if k.startswith("gpu"))
    if not gpus:
        return [lab.absent("idle_no_context_w", "idle_power read no GPU")]
    # Which NVML GPU this process will use is known only once CUDA is up (by UUID); with
    # one GPU it is that one, otherwise the lowest index stands in (all are in the file).
    key = gpus[0]
    first = got["idle"][key]
    note = "" if len(gpus) == 1 else f"{len(gpus)} GPUs: {key} shown, all in results.jsonl"
    return [
        lab.fig(
            "idle_no_context_w", first["watts"], f"idle_power ({first['method']}), child", note
        ),
    ]


def step_idle_with_context(lab: Lab) -> list[Figure]:
    """Idle power while this process holds a CUDA context (what the harness now takes as a
    run's idle baseline), and how much the context adds: the error of "energy over idle"
    per second of window when the baseline is taken without one."""
    gpu = lab.gpu  # finds the GPU by its CUDA UUID
    if lab.dry:  # no context on a CPU: the stand-in's GPU, through the same idle_power
        from bench.telemetry.idle import idle_power

        idle, how = idle_power([gpu], lab.scale.idle_s), "idle_power (stand-in NVML)"
    else:
        import torch

        from bench.run.preparation import idle_with_context

        torch.zeros(1, device=lab.device)  # the context made here, then left to settle
        torch.cuda.synchronize()
        time.sleep(1.0)
        idle = idle_with_context(lab.scale.idle_s, 10.0)
        how = "bench.run.preparation.idle_with_context, in this process"
    name = f"gpu{gpu.index}"
    if name not in idle:
        return [lab.absent("idle_context_w", "idle_power read no GPU figure")]
    lab.facts["idle_power"] = idle  # the baseline the case runner gets (facts["idle_power"])
    watts = idle[name]["watts"]
    figs = [lab.fig("idle_context_w", watts, f"{how} ({idle[name]['method']})")]
    before = lab.facts.get("idle_no_context", {}).get(name)
    if before is None:
        figs.append(lab.absent("idle_context_extra_w", "idle_no_context did not run"))
    else:
        figs.append(lab.fig("idle_context_extra_w", watts - before["watts"], "with - without"))
    return figs


# --- 3. CUDA <-> NVML -----------------------------------------------------------------------


def step_cuda(lab: Lab) -> list[Figure]:
    """The CUDA device this process uses, found in NVML the way a case finds it."""
    if lab.dry:
        from bench.telemetry.nvml import Nvml

        with Nvml() as nvml:  # the lookup itself, with the stand-in's UUID
            found = nvml.gpu_by_uuid(DryNvml.UUID.removeprefix("GPU-"))
        return [
            lab.plan("cuda_available", "torch.cuda.is_available()"),
            lab.plan("cuda_devices", "torch.cuda.device_count()"),
            lab.plan("compute_capability", "torch.cuda.get_device_capability() == (9, 0)"),
            lab.fig("uuid_found", True, "Nvml.gpu_by_uuid (stand-in UUID)"),
            lab.fig("nvml_index", found.index, "Nvml.gpu_by_uuid (stand-in UUID)"),
            lab.plan("names_agree", "torch.cuda.get_device_name() == NVML's name"),
        ]
    import torch

    from bench.telemetry.cuda_probe import cuda_uuid

    if not torch.cuda.is_available():
        return [lab.fig("cuda_available", False, "torch.cuda.is_available()")]
    index = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "(unset)")
    figs = [
        lab.fig("cuda_available", True, "torch.cuda.is_available()"),
        lab.info("cuda_devices", torch.cuda.device_count(), note=f"CUDA_VISIBLE_DEVICES={visible}"),
        lab.fig("compute_capability", float(f"{major}.{minor}"), "get_device_capability"),
    ]
    uid = cuda_uuid(index)
    try:
        gpu = lab.gpu
    except Exception as e:  # NvmlUnavailable: the UUID is unknown to NVML
        return [*figs, lab.fig("uuid_found", False, "Nvml.gpu_by_uuid", f"{uid}: {e}")]
    nvml_name = gpu.facts()["name"]
    return [
        *figs,
        lab.fig(
            "uuid_found", True, "bench.telemetry.cuda_probe.cuda_uuid -> Nvml.gpu_by_uuid", uid
        ),
        lab.info("nvml_index", gpu.index, note=f"CUDA device {index}"),
        lab.fig(
            "names_agree",
            torch.cuda.get_device_name(index) == nvml_name,
            "names compared",
            f"torch: {torch.cuda.get_device_name(index)}; NVML: {nvml_name}",
        ),
    ]


# --- 5. timer -------------------------------------------------------------------------------


def _matmul(lab: Lab, reps: int = 1) -> Callable[[], object]:
    """``reps`` square matmuls into one preallocated output (nothing allocated per call)."""
    import torch

    n, dtype = lab.scale.matmul_n, getattr(torch, lab.scale.dtype)
    gen = torch.Generator(device=lab.device).manual_seed(0)
    a = torch.randn(n, n, device=lab.device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=lab.device, dtype=dtype, generator=gen)
    out = torch.empty(n, n, device=lab.device, dtype=dtype)

    def call() -> object:
        for _ in range(reps):
            torch.mm(a, b, out=out)
        return out

    return call


def step_matmul_timer(lab: Lab) -> list[Figure]:
    """The harness's device clock (CUDA events, no sync between calls) against a wall clock
    synchronised at every mark, on the same matmul; and what the context costs in memory."""
    import torch

    from bench.telemetry.timer import PerfCounterClock, clock_for, device_sync, time_calls

    s = lab.scale
    fn = _matmul(lab)
    device_clock, wall = clock_for(lab.device), PerfCounterClock(device_sync(lab.device))
    # A, B, A: a drift of clocks or temperature over the step falls on both sides.
    ev = time_calls(fn, warmup=s.timer_warmup, iterations=s.timer_iterations, clock=device_clock)
    wl = time_calls(fn, warmup=2, iterations=s.timer_iterations, clock=wall)
    ev2 = time_calls(fn, warmup=2, iterations=s.timer_iterations, clock=device_clock)
    ev_med = statistics.median(ev.values + ev2.values)
    wall_med = statistics.median(wl.values)
    flops = 2 * s.matmul_n**3
    how = f"median of {2 * s.timer_iterations} calls, {ev.method}"
    figs = [
        lab.fig(
            "matmul_tflops", flops / ev_med / 1e12, f"2n^3 / {how}", f"n={s.matmul_n} {s.dtype}"
        ),
        lab.fig(
            "event_wall_ratio", ev_med / wall_med, f"{ev.method} / perf_counter synced per mark"
        ),
    ]
    return figs + _memory_figures(lab, torch)


def _memory_figures(lab: Lab, torch) -> list[Figure]:
    """NVML's device (and, where the harness reads it, per-process) memory against torch's
    reserved pool: what the context and libraries (cuBLAS workspace) hold beside it."""
    gpu = lab.gpu
    reserved = torch.cuda.memory_reserved() if torch.cuda.is_initialized() else 0
    used = gpu.memory_used()
    figs = [
        lab.absent("nvml_minus_reserved_gib", "NVML gave no memory figure")
        if used is None
        else lab.fig(
            "nvml_minus_reserved_gib",
            (used - reserved) / GIB,
            "nvmlDeviceGetMemoryInfo(v2).used - torch.cuda.memory_reserved()",
        )
    ]
    per_process = getattr(gpu, "process_memory_used", None)
    if per_process is None:
        figs.append(
            lab.absent("process_minus_reserved_gib", "Gpu.process_memory_used not in bench yet")
        )
        return figs
    mine = per_process(os.getpid())
    if mine is None:
        figs.append(lab.absent("process_minus_reserved_gib", "NVML gave no figure for this pid"))
    else:
        figs.append(
            lab.fig(
                "process_minus_reserved_gib",
                (mine - reserved) / GIB,
                "Gpu.process_memory_used(pid) - torch.cuda.memory_reserved()",
            )
        )
    return figs


# --- 6. energy windows ----------------------------------------------------------------------


def step_energy_windows(lab: Lab) -> list[Figure]:
    """The harness's energy windows around matmuls (2 s, on the counter's steps) against
    1 s windows read off the counter at arbitrary times, interleaved so drift falls on
    both: the scatter of J/call of each, and the counter against the integral of the
    sampler's 10 Hz power readings."""
    from bench.telemetry.energy import measure_energy
    from bench.telemetry.sampler import Sampler
    from bench.telemetry.timer import device_sync

    gpu, s = lab.gpu, lab.scale
    call, sync = _matmul(lab, s.energy_matmuls), device_sync(lab.device)
    call()
    sync()
    # The GPU domain's derived figures (CO2) need codecarbon; without it the window still
    # measures the GPU, as a CPU-domain window would, and says so.
    domain = "gpu" if codecarbon_error() is None else "cpu"
    kw = {"units": {"samples": 1}, "sync": sync, "gpu": gpu, "device_domain": domain}
    raw, wins = [], []
    with Sampler(gpu, 10.0) as sampler:
        for _ in range(s.windows):
            raw.append(_raw_window(gpu, call, sync, 1.0))
            wins.append(measure_energy(call, min_s=2.0, sampler=sampler, **kw))
    name = f"energy_gpu{gpu.index}"
    per_call = [_metric(w, name) for w in wins]
    if None in per_call or None in raw:
        why = f"no {name} metric (energy counter absent?)"
        return [lab.absent(k, why) for k in ("spread_1s", "spread_2s")]
    checks = [w.info.get("gpu_cross_check") for w in wins]
    watts = statistics.median(j * w.calls / w.seconds for j, w in zip(per_call, wins, strict=True))
    how = f"(max-min)/2/median of {s.windows} windows, {s.energy_matmuls} matmuls a call"
    figs = [
        lab.fig("spread_1s", _spread(raw), f"{how}; energy_mj() before and after 1 s"),
        lab.fig("spread_2s", _spread(per_call), f"{how}; measure_energy(min_s=2)"),
        lab.fig("matmul_power_w", watts, "J/call x calls / seconds, median of bench windows"),
        lab.info(
            "energy_per_matmul_j",
            statistics.median(per_call) / s.energy_matmuls,
            note=f"domain {domain}" + ("" if domain == "gpu" else " (codecarbon missing)"),
        ),
    ]
    if all(checks):
        worst = max(c["disagreement"] for c in checks)
        listed = ", ".join(f"{c['disagreement']:.3f}" for c in checks)
        figs.append(lab.fig("counter_vs_integral", worst, "win.info['gpu_cross_check']", listed))
    else:
        figs.append(lab.absent("counter_vs_integral", "no gpu_cross_check in a window"))
    figs.append(_on_steps(lab, wins))
    long = _raw_window(gpu, call, sync, s.long_window_s)
    if long:
        bias = statistics.median(per_call) / long
        how = f"median of bench's windows / one {s.long_window_s:g} s window read plainly"
        figs.append(lab.fig("long_window_bias", bias, how))
    else:
        figs.append(lab.absent("long_window_bias", "the long window read no energy"))
    return figs


def _raw_window(gpu, call, sync, seconds: float) -> float | None:
    """J per call over ``seconds`` with the counter read whenever the window happens to
    start and end, as GPU.md's figures were taken: the yardstick for bench's windows."""
    sync()
    e0, t0, calls = gpu.energy_mj(), time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        call()
        sync()
        calls += 1
    e1 = gpu.energy_mj()
    return None if e0 is None or e1 is None else (e1 - e0) / 1e3 / calls


def _on_steps(lab: Lab, wins) -> Figure:
    """Whether every bench window opened and closed on a step of the counter."""
    steps = [w.info.get("counter_window", {}).get("on_steps") for w in wins]
    if all(x is None for x in steps):
        return lab.absent("tick_aligned", "measure_energy reports no counter_window.on_steps")
    tails = [w.info["counter_window"]["tail_s"] for w in wins if "counter_window" in w.info]
    note = f"idle tail after the last call: {max(tails):.3f} s at most" if tails else ""
    return lab.fig("tick_aligned", all(steps), "win.info['counter_window']['on_steps']", note)


def _metric(holder, name: str) -> float | None:
    """A metric's value from an energy window or a case result (None when absent)."""
    return next((m.value for m in holder.metrics if m.name == name), None)


# --- 7. copy bandwidth ----------------------------------------------------------------------


def step_copy_bandwidth(lab: Lab) -> list[Figure]:
    """The harness's bandwidth probe: the roofline the decode cases are held against."""
    from bench.telemetry.bandwidth import measure_copy

    bw = measure_copy(lab.device, nbytes=lab.scale.copy_bytes)
    lab.facts["bandwidth"] = bw
    return [
        lab.fig("copy_tbps", bw["bytes_per_s"] / 1e12, bw["method"]),
        lab.fig("read_tbps", bw["read_bytes_per_s"] / 1e12, bw["read_method"]),
    ]


# --- 8-10. cases through the harness's case runner ------------------------------------------


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def suite_cases(lab: Lab, run: dict, model: dict, workload: dict, techniques: list[dict]):
    """Cases of a suite written here as a user would write it, parsed by the harness."""
    from bench.spec.suite import parse_suite

    run = {"device": lab.device, "dtype": lab.scale.dtype, **run}
    if codecarbon_error() is not None:  # a case would fail in its energy window otherwise
        run["energy"] = False
    lines = ['name = "first-contact"', "[run]", *(f"{k} = {_toml(v)}" for k, v in run.items())]
    for table, entries in (
        ("models", [model]),
        ("workloads", [workload]),
        ("techniques", techniques),
    ):
        for entry in entries:
            lines += [f"[[{table}]]", *(f"{k} = {_toml(v)}" for k, v in entry.items())]
    return list(parse_suite("\n".join(lines) + "\n", where="gpu_first_contact").cases)


def run_case(lab: Lab, case, tag: str):
    """One case through ``bench.run.case.execute`` (inline: the harness's own runner),
    with this script's idle baseline and bandwidth as the run's facts; the result is kept
    under OUT/cases/."""
    from bench.results.store import write_json_atomic
    from bench.run.case import execute
    from bench.telemetry.bandwidth import bandwidth_key, measure_copy

    if "bandwidth" not in lab.facts:  # --only without copy_bandwidth: measure it now
        lab.facts["bandwidth"] = measure_copy(lab.device, nbytes=lab.scale.copy_bytes)
    facts = {
        "run_dir": str(lab.run_dir),
        "copy_bandwidth": {bandwidth_key(lab.device, case.run["threads"]): lab.facts["bandwidth"]},
    }
    if "idle_power" in lab.facts:
        facts["idle_power"] = lab.facts["idle_power"]
    result = execute(case, 0, "first-contact", facts)
    write_json_atomic(lab.out / "cases" / f"{tag}.json", result.to_json())
    return result


def _status(result) -> str:
    return "ok" if result.status == "ok" else f"{result.status}: {result.error}"


def _why_absent(result, name: str) -> str:
    if result.status != "ok":
        return f"case {result.status}"
    absent = result.info.get("absent", {})
    if name.startswith("energy") and "energy" in absent and codecarbon_error() is not None:
        return f"energy off: codecarbon does not import ({codecarbon_error()})"
    return absent.get(name, absent.get("energy", f"the case reported no {name}"))


def _case_metric(lab: Lab, result, key: str, name: str) -> Figure:
    m = next((m for m in result.metrics if m.name == name), None)
    if m is None:
        return lab.absent(key, _why_absent(result, name))
    return lab.fig(key, m.value, f"{name}: {m.method}")


def _decode_case(lab: Lab, runtime: str, iterations: int, warmup: int):
    s = lab.scale
    run = {"warmup": warmup, "iterations": iterations, "energy_min_s": s.energy_min_s}
    workload = {
        "name": "generate",
        "batch": 1,
        "prompt_len": s.prompt_len,
        "new_tokens": s.new_tokens,
        "runtime": runtime,
    }
    (case,) = suite_cases(lab, run, {"name": s.model}, workload, [{"name": "baseline"}])
    return case


def step_decode_eager(lab: Lab) -> list[Figure]:
    """Eager decoding (transformers' growing cache) at batch 1: launch-bound, ~5% of the
    roofline on an H200."""
    result = run_case(lab, _decode_case(lab, "eager", iterations=3, warmup=1), "decode-eager")
    return [
        lab.fig("eager_status", _status(result), "CaseResult.status"),
        _case_metric(lab, result, "eager_tok_s", "decode_throughput_tokens"),
        _case_metric(lab, result, "eager_bw_pct", "bandwidth_utilization"),
        _case_metric(lab, result, "eager_j_per_token", "energy_per_token"),
    ]


def step_decode_compiled(lab: Lab) -> list[Figure]:
    """Compiled static-cache decoding (reduce-overhead: CUDA graphs), as the harness's
    ``runtime = "compiled"`` does it, with its compile time and whether graphs ran."""
    case = _decode_case(lab, lab.scale.compiled_runtime, iterations=10, warmup=3)
    result = run_case(lab, case, f"decode-{lab.scale.compiled_runtime}")
    figs = [
        lab.fig("compiled_status", _status(result), f"CaseResult.status ({case.workload.label})"),
        _case_metric(lab, result, "compiled_tok_s", "decode_throughput_tokens"),
        _case_metric(lab, result, "compiled_bw_pct", "bandwidth_utilization"),
        _case_metric(lab, result, "compiled_j_per_token", "energy_per_token"),
    ]
    if lab.dry:
        would = "compile_time of reduce-overhead decoding (the dry-run decodes 'static')"
        return [
            *figs,
            lab.plan("compile_s", would),
            lab.plan("cuda_graphs_ran", "no cudagraph skips, mode reduce-overhead"),
        ]
    return [*figs, _compile_time(lab, result), _graphs_ran(lab, result)]


def _graphs_ran(lab: Lab, result) -> Figure:
    """Graphs ran: the decoder asked for them (reduce-overhead) and inductor skipped none,
    as the case runner's own CudaGraphWatch recorded around the workload."""
    recorded = result.info.get("cuda_graphs")
    if recorded is None:
        return lab.absent("cuda_graphs_ran", _why_absent(result, "cuda_graphs"))
    mode, skips, reasons = result.info.get("compile_mode"), recorded["skipped"], recorded["reasons"]
    note = f"skips={skips}, mode={mode}" + (f"; {'; '.join(reasons)}" if reasons else "")
    ran = skips == 0 and mode == "reduce-overhead"
    return lab.fig("cuda_graphs_ran", ran, "CaseResult.info['cuda_graphs'] (CudaGraphWatch)", note)


def _compile_time(lab: Lab, result) -> Figure:
    fig = _case_metric(lab, result, "compile_s", "compile_time")
    state = result.info.get("inductor_cache_state")
    if fig.value is not None and state != "empty":
        # A rerun into the same OUT loads kernels from the cache: the range is for a compile.
        return lab.info("compile_s", fig.value, fig.method, f"inductor cache {state}: not judged")
    return fig


# (figure prefix, technique entry on the GPU, entry for the dry-run's CPU or None: plan only)
COMPRESSION = (
    (
        "int4",
        {"name": "quantize", "scheme": "int4_weight_only"},
        {"name": "quantize", "scheme": "int4_weight_only"},
    ),
    ("float8", {"name": "quantize", "scheme": "float8"}, None),
    (
        "sparse24",
        {"name": "prune", "method": "semi_structured_2_4", "execution": "semi_structured"},
        {"name": "prune", "method": "semi_structured_2_4"},
    ),  # the CPU keeps the dense mask
)


def step_compression(lab: Lab) -> list[Figure]:
    """int4 weight-only, float8 and 2:4 on a slice of the decode model's shape, each a case
    of the harness (forward of batch x seq tokens, quality against the bf16 slice)."""
    s = lab.scale
    chosen = [(p, dry if lab.dry else gpu) for p, gpu, dry in COMPRESSION]
    techniques = [{"name": "baseline"}] + [t for _, t in chosen if t is not None]
    model = {"name": s.model, "config": {"num_hidden_layers": s.slice_layers}}
    workload = {"name": "forward", "batch": s.forward_batch, "seq_len": s.forward_seq}
    run = {"warmup": 3, "iterations": 10, "energy_min_s": 1.0, "quality": True}
    cases = suite_cases(lab, run, model, workload, techniques)
    base = run_case(lab, cases[0], "slice-baseline")
    figs = [
        lab.fig("baseline_status", _status(base), f"CaseResult.status ({cases[0].id})"),
        _case_metric(lab, base, "baseline_tok_s", "throughput_tokens"),
    ]
    done = iter(cases[1:])
    for prefix, tech in chosen:
        if tech is None:
            figs += [lab.plan(f"{prefix}_{k}", f"{prefix} on CUDA") for k in _COMPRESSION_KEYS]
            continue
        case = next(done)
        figs += _compression_figures(lab, prefix, base, run_case(lab, case, f"slice-{prefix}"))
    return figs


_COMPRESSION_KEYS = ("status", "all_layers", "bytes_ratio", "speedup", "rel_error")


def _compression_figures(lab: Lab, prefix: str, base, result) -> list[Figure]:
    figs = [lab.fig(f"{prefix}_status", _status(result), f"CaseResult.status ({result.case_id})")]
    steps = [t for t in result.info.get("techniques", []) if t["name"] != "baseline"]
    if steps:
        t = steps[-1]
        took = t.get("modules_touched") == t.get("modules_candidates") and not t.get("kept_dense")
        skipped = {**(t.get("modules_skipped") or {}), **(t.get("kept_dense") or {})}
        note = f"{t.get('modules_touched')}/{t.get('modules_candidates')}"
        if skipped:
            note += f"; left: {sorted(skipped)[:3]} ({next(iter(skipped.values()))})"
        figs.append(lab.fig(f"{prefix}_all_layers", took, "technique info", note))
    else:
        figs.append(lab.absent(f"{prefix}_all_layers", _why_absent(result, "techniques")))
    for key, name, invert in (
        ("bytes_ratio", "state_dict_bytes", False),
        ("speedup", "latency_median", True),
    ):
        mine, theirs = _metric(result, name), _metric(base, name)
        if mine is None or not theirs:
            figs.append(
                lab.absent(f"{prefix}_{key}", _why_absent(result if mine is None else base, name))
            )
            continue
        ratio = theirs / mine if invert else mine / theirs
        how = f"bf16 {name} / this one" if invert else f"this {name} / bf16 one"
        figs.append(lab.fig(f"{prefix}_{key}", ratio, how))
    figs.append(_case_metric(lab, result, f"{prefix}_rel_error", "logit_rel_error"))
    return figs


# --- 11. the gpu-marked tests ---------------------------------------------------------------

_COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)\b")


def pytest_counts(text: str) -> dict[str, int]:
    """Outcome counts from pytest's last summary line ("2 passed, 3 deselected in 4.1s")."""
    for line in reversed(text.strip().splitlines()):
        found = _COUNT.findall(line)
        if found:
            counts: dict[str, int] = {}
            for n, what in found:
                what = "errors" if what.startswith("error") else what
                counts[what] = counts.get(what, 0) + int(n)
            return counts
    return {}


def gpu_test_command(python: str = sys.executable) -> list[str]:
    """pytest on the test files that hold ``gpu``-marked tests (only those: other files may
    import what the GPU machine lacks), with bench's plugin loaded by name where the
    checkout is not installed (no entry point registers it then)."""
    from importlib.metadata import entry_points

    files = sorted(
        str(p.relative_to(REPO))
        for p in (REPO / "tests").glob("test_*.py")
        if re.search(r"mark\.gpu\b", p.read_text(errors="replace"))
    )
    installed = any(ep.name == "bench" for ep in entry_points(group="pytest11"))
    plugin = [] if installed else ["-p", "bench.pytest_plugin"]
    return [python, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *plugin, *files]


def _text(x: str | bytes | None) -> str:
    return x.decode(errors="replace") if isinstance(x, bytes) else (x or "")


def step_gpu_tests(lab: Lab) -> list[Figure]:
    """The `gpu`-marked tests in a child pytest (its output kept as OUT/gpu-tests.txt)."""
    cmd = gpu_test_command()
    if lab.dry:
        would = " ".join(cmd[1:])
        return [
            lab.plan(k, would)
            for k in ("gpu_tests_passed", "gpu_tests_failed", "gpu_tests_skipped")
        ]
    log = lab.out / "gpu-tests.txt"
    try:
        done = subprocess.run(
            cmd, cwd=REPO, capture_output=True, text=True, timeout=lab.left_s(), env=_child_env()
        )
    except subprocess.TimeoutExpired as e:  # keep what it printed: which test hung
        log.write_text("".join(_text(x) for x in (e.stdout, e.stderr)))
        raise RuntimeError(f"pytest ran past {e.timeout:.0f} s; its output: {log}") from None
    log.write_text(done.stdout + done.stderr)
    counts = pytest_counts(done.stdout)
    how = f"pytest exit {done.returncode}; OUT/gpu-tests.txt"
    return [
        lab.fig("gpu_tests_passed", counts.get("passed", 0), how, json.dumps(counts)),
        lab.fig("gpu_tests_failed", counts.get("failed", 0) + counts.get("errors", 0), how),
        lab.fig("gpu_tests_skipped", counts.get("skipped", 0), how),
    ]


# --- 12. NCCL -------------------------------------------------------------------------------


def all_reduce_rank(value: float) -> dict[str, Any]:
    """One rank's all_reduce of ``value`` (importable by name: ranks are spawned)."""
    import torch
    import torch.distributed as dist

    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.full((4,), value, device=device)
    dist.all_reduce(t)
    return {"sum": t.cpu().tolist(), "world": dist.get_world_size(), "backend": dist.get_backend()}


def _reduced_ok(got: dict[str, Any], value: float) -> bool:
    return all(abs(x - value * got["world"]) < 1e-6 for x in got["sum"])


def step_nccl(lab: Lab) -> list[Figure]:
    """NCCL at world size 1: through bench's launcher (torch elastic, spawned rank, what a
    parallel case uses), then in this process over a FileStore."""
    if lab.dry:
        would = "launch(all_reduce_rank, Placement(world_size=1, backend='nccl'))"
        return [
            lab.plan("nccl_launch_ok", would),
            lab.plan("nccl_inprocess_ok", "init_process_group('nccl', FileStore, world 1)"),
            lab.plan("nccl_version", "torch.cuda.nccl.version()"),
        ]
    import torch
    import torch.distributed as dist

    from bench.run.distributed import Placement, launch

    value = 1.5
    t0 = time.perf_counter()
    try:
        got = launch(all_reduce_rank, (value,), Placement(world_size=1, backend="nccl"))[0]
        figs = [
            lab.fig(
                "nccl_launch_ok",
                _reduced_ok(got, value),
                "bench.run.distributed.launch",
                f"{got}; {time.perf_counter() - t0:.1f} s",
            )
        ]
    except Exception as e:  # the in-process check below still tells whether NCCL works
        figs = [lab.fig("nccl_launch_ok", False, "bench.run.distributed.launch", _one_line(e))]
    path = lab.run_dir / "nccl-filestore"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # a stale store from an earlier run would be read as this one's
    store = dist.FileStore(str(path), 1)
    torch.cuda.set_device(torch.cuda.current_device())
    dist.init_process_group("nccl", store=store, rank=0, world_size=1)
    try:
        got = all_reduce_rank(value)
    finally:
        dist.destroy_process_group()
    version = torch.cuda.nccl.version()  # (2, 27, 3); an int on older builds
    version = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
    return [
        *figs,
        lab.fig("nccl_inprocess_ok", _reduced_ok(got, value), "init_process_group(FileStore)"),
        lab.info("nccl_version", version, "torch.cuda.nccl.version()"),
    ]


# --- the plan -------------------------------------------------------------------------------

STEPS: list[Step] = [
    Step("preflight", step_preflight, 60, "versions, packages, NVML names, MIG off"),
    Step("idle_no_context", step_idle_no_context, 60, "idle power, no CUDA context (child)"),
    Step("cuda", step_cuda, 60, "CUDA device <-> NVML GPU by UUID"),
    Step("idle_with_context", step_idle_with_context, 30, "idle power, context held"),
    Step("matmul_timer", step_matmul_timer, 60, "CUDA events vs synced wall; TFLOP/s; memory"),
    Step("energy_windows", step_energy_windows, 60, "1 s vs 2 s windows; counter vs integral"),
    Step("copy_bandwidth", step_copy_bandwidth, 30, "the harness's bandwidth probe"),
    Step("decode_eager", step_decode_eager, 120, "1.1B shape, batch 1, eager (case runner)"),
    Step("decode_compiled", step_decode_compiled, 200, "the same, compiled with CUDA graphs"),
    # NCCL before the compression kernels: a CUDA error there would break this process's
    # later collectives; the gpu tests run in a child of their own
    Step("nccl", step_nccl, 90, "NCCL world size 1: launcher and in-process"),
    Step("compression", step_compression, 150, "int4 / float8 / 2:4 on a 4-layer slice"),
    Step("gpu_tests", step_gpu_tests, 240, "pytest -m gpu"),
]


# --- running it -----------------------------------------------------------------------------


@contextlib.contextmanager
def alarm(seconds: float) -> Iterator[None]:
    """Raise StepTimeout in this (main) thread after ``seconds``; elsewhere, no limit."""
    import threading

    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return

    def ring(signum: int, frame: object) -> None:
        raise StepTimeout(f"ran past its {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip().rstrip(":")


def run_step(step: Step, lab: Lab, left_s: float) -> dict[str, Any]:
    """Run one step under its budget; whatever happens becomes a record."""
    t0 = time.perf_counter()
    status, reason, figs = "ok", "", []
    if left_s <= 0:
        status, reason = "skipped", "out of time"
    else:
        limit = min(step.budget_s, left_s)
        lab.step_ends_at = t0 + limit
        try:
            with alarm(limit):
                figs = step.fn(lab)
        except StepTimeout as e:
            status, reason = "timeout", str(e)
        except Exception as e:
            status, reason = "error", _one_line(e)
            (lab.out / f"{step.name}.traceback.txt").write_text(traceback.format_exc())
        finally:
            _free_memory()
    return step_record(step, lab.dry, figs, status, reason, time.perf_counter() - t0)


def step_record(step: Step, dry: bool, figs, status: str, reason: str, seconds: float):
    """A step's line of results.jsonl: its status and every figure it owes, judged."""
    figs = _complete(step, figs, status, reason, dry)
    verdicts = {f.verdict for f in figs}
    if status == "ok":
        status = next(
            (v for v in ("fail", "miss") if v in verdicts),
            "plan" if verdicts == {"plan"} else ("dry" if dry else "pass"),
        )
    return {
        "step": step.name,
        "what": step.what,
        "status": status,
        "reason": reason,
        "seconds": round(seconds, 2),
        "budget_s": step.budget_s,
        "dry_run": dry,
        "figures": [f.to_json() for f in figs],
    }


def _complete(step: Step, figs: list[Figure], status: str, reason: str, dry: bool):
    """Judge each figure, and list every figure the step should have reported (a step that
    could not run still shows its expected ranges)."""
    for f in figs:
        if f.verdict:
            continue
        if f.value is None:
            f.verdict = "absent"
        elif isinstance(f.value, float) and not math.isfinite(f.value):
            f.verdict, f.note = "fail", f"not a finite number; {f.note}"
        else:
            f.verdict = "dry" if dry else CHECKS[f.key].verdict(f.value)
    got = {f.key for f in figs}
    missing = "not reported" if status == "ok" else f"{status}: {reason}"
    verdict = "absent" if status == "ok" else status
    return figs + [
        Figure(k, None, note=missing, verdict=verdict) for k in step.checks if k not in got
    ]


def append_line(path: Path, record: dict[str, Any]) -> None:
    """One JSON line, written with one write on an O_APPEND descriptor: a reader never sees
    half a record, even if the run is killed."""
    data = (json.dumps(record, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


COLUMNS = (("step", 18), ("figure", 36), ("value", 24), ("expected", 22), ("verdict", 8))


def _row(cells: list[str]) -> str:
    out = []
    for text, (_, width) in zip(cells, COLUMNS, strict=True):
        text = text if len(text) <= width else text[: width - 1] + "~"
        out.append(text.ljust(width))
    return " ".join(out).rstrip()


def figure_rows(record: dict[str, Any]) -> list[str]:
    rows = []
    for f in record["figures"]:
        unit = f" {f['unit']}" if f["unit"] and f["value"] is not None else ""
        value = _fmt(f["value"]) + unit
        rows.append(_row([record["step"], f["label"], value, f["expected"], f["verdict"]]))
    return rows


def print_step(record: dict[str, Any]) -> None:
    extra = f" ({record['reason']})" if record["reason"] else ""
    print(f"== {record['step']}: {record['status']}{extra}, {record['seconds']:.1f} s", flush=True)
    for f in record["figures"]:
        note = f"  [{f['note']}]" if f["note"] else ""
        print(
            f"   {f['label']}: {_fmt(f['value'])} {f['unit']} "
            f"(expected {f['expected']}) -> {f['verdict']}{note}",
            flush=True,
        )


def print_table(records: list[dict[str, Any]], wall_s: float, out: Path) -> None:
    header = _row([name for name, _ in COLUMNS])
    print("\n" + header + "\n" + "-" * len(header))
    for r in records:
        for row in figure_rows(r):
            print(row)
    verdicts = [f["verdict"] for r in records for f in r["figures"]]
    counts = {v: verdicts.count(v) for v in dict.fromkeys(verdicts)}
    steps = ", ".join(f"{r['step']} {r['status']}" for r in records)
    print("-" * len(header))
    print(f"figures: {', '.join(f'{n} {v}' for v, n in counts.items())}")
    print(f"steps: {steps}")
    print(f"{wall_s:.0f} s; everything is in {out}/ (results.jsonl, summary.json, cases/)")
    print(
        "pass: in range; fail: out of range; miss: a goal not reached; absent: not measured "
        "(note says why); plan: needs CUDA; dry: computed on CPU, not judged"
    )


@contextlib.contextmanager
def _restored() -> Iterator[None]:
    """Leave the calling process as it was (tests call main()): environment, torch's
    threads (a CPU case sets them), the NVML module (the dry-run's stand-in)."""
    import torch

    from bench.telemetry import nvml

    env, threads, module = dict(os.environ), torch.get_num_threads(), nvml._module
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(env)
        torch.set_num_threads(threads)
        nvml.use_module(module)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get("OUT") or "first-contact"),
        help="output folder (default: $OUT, else first-contact/)",
    )
    p.add_argument("--only", help="comma-separated steps: " + ",".join(s.name for s in STEPS))
    p.add_argument("--dry-run", action="store_true", help="the plan on this CPU, tiny shapes")
    p.add_argument("--deadline", type=float, default=DEADLINE_S, help="seconds for all steps")
    p.add_argument(
        "--run-dir",
        type=Path,
        help="the harness's run folder: inductor cache, reference logits "
        "(default OUT/run; elsewhere keeps the cache out of what OUT ships)",
    )
    p.add_argument("--idle-child", type=float, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.idle_child is not None:
        idle_child(args.idle_child, args.dry_run)
        return 0
    steps = STEPS
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in {s.name for s in STEPS}]
        if unknown:
            print(
                f"unknown step(s) {', '.join(unknown)}; known: {', '.join(s.name for s in STEPS)}"
            )
            return 2
        steps = [s for s in STEPS if s.name in wanted]
    with _restored():
        return _run(args, steps)


def _run(args: argparse.Namespace, steps: list[Step]) -> int:
    from bench.telemetry import nvml

    t0 = time.perf_counter()
    out = args.out.resolve()
    (out / "cases").mkdir(parents=True, exist_ok=True)
    run_dir = args.run_dir.resolve() if args.run_dir else None
    lab = Lab(DRY if args.dry_run else H200, out, args.dry_run, run_dir)
    # One inductor cache for every step and the gpu tests' child (the one the harness's
    # compile sets for this run folder): a rerun into the same folder loads, not compiles.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(lab.run_dir / "inductor-cache")
    if args.dry_run:
        nvml.use_module(DryNvml())
    run = {
        "invocation": uuid.uuid4().hex[:8],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "dry_run": args.dry_run,
        "deadline_s": args.deadline,
        "scale": vars(lab.scale),
    }
    where = "DRY RUN on CPU" if args.dry_run else f"device {lab.device}"
    print(
        f"first contact {run['invocation']}: {len(steps)} steps, deadline "
        f"{args.deadline:.0f} s, {where}, out {out}",
        flush=True,
    )
    records: list[dict[str, Any]] = []
    running: dict[str, Any] = {}  # the step under way, for the watchdog to name
    watchdog = _watchdog(args.deadline + HARD_STOP_AFTER_S, run, records, running, t0, lab)
    try:
        for step in steps:
            running.update(step=step, since=time.perf_counter())
            left = args.deadline - (time.perf_counter() - t0)
            record = {**run_step(step, lab, left), "invocation": run["invocation"]}
            append_line(out / "results.jsonl", record)
            print_step(record)
            records.append(record)
    finally:
        watchdog.cancel()
        lab.close()
    return _finish(run, records, out, t0)


def _watchdog(seconds: float, run, records, running, t0: float, lab: Lab):
    """A step hung inside C code (a collective, a driver call) never sees its alarm: after
    the deadline and a grace, write what was measured, print the table and leave."""
    import threading

    def stop() -> None:
        print(
            f"\nHARD STOP: still running {HARD_STOP_AFTER_S:.0f} s past the deadline "
            "(a step hung where its alarm cannot reach)",
            flush=True,
        )
        step = running["step"]
        seconds = time.perf_counter() - running["since"]
        hung = step_record(step, lab.dry, [], "timeout", "hung: hard stop", seconds)
        append_line(lab.out / "results.jsonl", {**hung, "invocation": run["invocation"]})
        _finish({**run, "hard_stop": True}, [*records, hung], lab.out, t0)
        os._exit(3)

    timer = threading.Timer(seconds, stop)
    timer.daemon = True
    timer.start()
    return timer


def _finish(run: dict[str, Any], records: list[dict[str, Any]], out: Path, t0: float) -> int:
    """summary.json and the table; exit status 1 when a step failed, errored or timed out."""
    from bench.results.store import write_json_atomic

    wall = time.perf_counter() - t0
    bad = [r["step"] for r in records if r["status"] in ("fail", "error", "timeout")]
    summary = {**run, "wall_s": round(wall, 1), "steps": records, "failed_steps": bad}
    write_json_atomic(out / "summary.json", summary)
    print_table(records, wall, out)
    return 1 if bad or run.get("hard_stop") else 0


if __name__ == "__main__":
    if str(REPO) not in sys.path:  # run from the checkout, installed or not
        sys.path.insert(0, str(REPO))
    sys.exit(main())
