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
from typing import Any

MIB = 1 << 20
SIZES = {"cpu": 256 * MIB, "cuda": 1024 * MIB}  # far past any cache on either side
REPEATS = 9


def measure_copy(device: str, nbytes: int | None = None, repeats: int = REPEATS) -> dict[str, Any]:
    """Best bytes/s of ``dst.copy_(src)``, counting bytes read plus bytes written (as
    STREAM does, the best repeat: a roofline is what the memory can do, not its average)."""
    import torch

    kind = device.split(":")[0]
    nbytes = nbytes or SIZES[kind]
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    if kind == "cuda":
        events = [torch.cuda.Event(enable_timing=True) for _ in range(2 * (repeats + 2))]
        for i in range(repeats + 2):
            events[2 * i].record()
            dst.copy_(src)
            events[2 * i + 1].record()
        torch.cuda.synchronize()
        secs = [events[2 * i].elapsed_time(events[2 * i + 1]) / 1e3 for i in range(repeats + 2)]
        method, name = "cuda_event", torch.cuda.get_device_name()
    else:
        secs = []
        for _ in range(repeats + 2):
            t = time.perf_counter()
            dst.copy_(src)
            secs.append(time.perf_counter() - t)
        method, name = "perf_counter", None
    secs = secs[2:]  # two warm-up copies: page faults and clock ramp-up
    return {
        "bytes_per_s": 2 * nbytes / min(secs),
        "unit": "bytes/s",
        "method": f"best of {repeats} tensor copies of {nbytes // MIB} MiB, "
        f"bytes read + written, {method}",
        "device": device,
        "device_name": name,
        "torch_threads": torch.get_num_threads(),
    }


def _machine_key(device: str) -> dict[str, Any]:
    import torch

    from bench.env import cpu_model, gpu_info

    gpus = gpu_info().get("devices") or []
    return {
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "gpus": [g.get("name") for g in gpus],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": device,
    }


def machine_bandwidth(device: str) -> dict[str, Any]:
    """This machine's copy bandwidth on ``device``, from the cache or measured now.

    Returns the measurement, or ``{"reason": ...}`` when it cannot be had.
    """
    from bench.models.train import cache_dir
    from bench.store import read_json, write_json_atomic

    key = _machine_key(device)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / "machine" / f"copy-bandwidth-{digest}.json"
    try:
        return read_json(path)
    except (OSError, ValueError):
        pass
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
