"""The machine's measured copy bandwidth: the roofline forward and decode cases are held
against, so "how fast" also says "how close to what this memory can move".

Measured once per machine (host, CPU, GPU, torch, thread count) and cached beside the
trained models; every run stores the figure it used in its environment fingerprint.
A CUDA figure is measured in a child interpreter so the parent never creates a CUDA
context of its own.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

MIB = 1 << 20
SIZES = {"cpu": 256 * MIB, "cuda": 1024 * MIB}  # far past any cache on either side
REPEATS = 9
PROBE = 2  # 2: read-only stream added beside the copy


def measure_copy(device: str, nbytes: int | None = None, repeats: int = REPEATS) -> dict[str, Any]:
    """Best bytes/s of two streams over a buffer far past any cache (best repeat, as STREAM
    does: a roofline is what the memory can do, not its average):

    - ``read_bytes_per_s``: ``src.sum()``, reading every byte once and writing nothing;
      the roofline for a step that reads its weights (what memory traffic counts);
    - ``bytes_per_s``: ``dst.copy_(src)``, bytes read plus bytes written.
    """
    import torch

    kind = device.split(":")[0]
    nbytes = nbytes or SIZES[kind]
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    copy = _best_seconds(lambda: dst.copy_(src), kind, repeats)
    read = _best_seconds(lambda: src.sum(), kind, repeats)
    method = "cuda_event" if kind == "cuda" else "perf_counter"
    return {
        "bytes_per_s": 2 * nbytes / copy,
        "read_bytes_per_s": nbytes / read,
        "unit": "bytes/s",
        "method": f"best of {repeats} tensor copies of {nbytes // MIB} MiB, "
        f"bytes read + written, {method}",
        "read_method": f"best of {repeats} sums over {nbytes // MIB} MiB, bytes read, {method}",
        "device": device,
        "device_name": torch.cuda.get_device_name() if kind == "cuda" else None,
        "torch_threads": torch.get_num_threads(),
    }


def _best_seconds(fn, kind: str, repeats: int) -> float:
    """The fastest of ``repeats`` timed calls after two untimed ones (page faults, clocks)."""
    import torch

    if kind == "cuda":
        events = [torch.cuda.Event(enable_timing=True) for _ in range(2 * (repeats + 2))]
        for i in range(repeats + 2):
            events[2 * i].record()
            fn()
            events[2 * i + 1].record()
        torch.cuda.synchronize()
        secs = [events[2 * i].elapsed_time(events[2 * i + 1]) / 1e3 for i in range(repeats + 2)]
    else:
        secs = []
        for _ in range(repeats + 2):
            t = time.perf_counter()
            fn()
            secs.append(time.perf_counter() - t)
    return min(secs[2:])


def bandwidth_key(device: str, threads: int | None) -> str:
    """How a run files a bandwidth figure: per device, and per thread count on a CPU (two
    threads cannot move what sixteen can)."""
    if device.startswith("cuda"):
        return device
    return f"{device}@{threads}threads" if threads else f"{device}@default-threads"


def _machine_key(device: str) -> dict[str, Any]:
    """What the figure depends on; PROBE names this file's way of measuring it."""
    import torch

    from bench.telemetry.machine import cpu_model, gpu_info

    gpus = gpu_info().get("devices") or []
    return {
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "gpus": [g.get("name") for g in gpus],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": device,
        "probe": PROBE,
    }


def machine_bandwidth(
    device: str, threads: int | None = None, quiet: Callable[[], None] = lambda: None
) -> dict[str, Any]:
    """This machine's bandwidth on ``device`` at ``threads`` torch threads (None: what a
    case gets without ``run.threads``), from the cache or measured now (after ``quiet()``:
    the machine to itself).

    Returns the measurement, or ``{"reason": ...}`` when it cannot be had.
    """
    import torch

    from bench.telemetry.machine import default_cpu_threads

    before = torch.get_num_threads()
    if not device.startswith("cuda"):
        torch.set_num_threads(threads or default_cpu_threads())
    try:
        return _machine_bandwidth(device, quiet)
    finally:
        torch.set_num_threads(before)


def _machine_bandwidth(device: str, quiet: Callable[[], None]) -> dict[str, Any]:
    from bench.cache import cache_dir
    from bench.results.store import read_json, write_json_atomic

    key = _machine_key(device)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / "machine" / f"copy-bandwidth-{digest}.json"
    try:
        return read_json(path)
    except (OSError, ValueError):
        pass
    quiet()
    found = _measure_in_child(device) if device.startswith("cuda") else measure_copy(device)
    if "reason" not in found:
        found.update(measured=time.strftime("%Y-%m-%dT%H:%M:%S%z"), machine=key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, found)
    return found


def _measure_in_child(device: str) -> dict[str, Any]:
    code = (
        "import json, sys, torch\n"
        "if not torch.cuda.is_available(): print(json.dumps({'reason': 'no CUDA device'}))\n"
        "else:\n"
        "    from bench.telemetry.bandwidth import measure_copy\n"
        f"    print(json.dumps(measure_copy({device!r})))\n"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as e:
        return {"reason": f"copy bandwidth measurement failed: {type(e).__name__}: {e}"}
