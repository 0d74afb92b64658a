"""Is there a CUDA device here? Asked without initialising CUDA in the asking process.

``torch.cuda.is_available()`` calls ``cudaGetDeviceCount``, which initialises the CUDA
driver, and torch then refuses CUDA in every child forked from that process ("Cannot
re-initialize CUDA in forked subprocess"). The case process forks gloo ranks, the pytest
plugin forks its repeats, the run's parent forks helpers: each may ask, none may initialise.
torch counts devices through NVML where it can (honouring ``CUDA_VISIBLE_DEVICES``); where
NVML cannot answer (no NVML, MIG UUIDs in ``CUDA_VISIBLE_DEVICES``), a spawned child asks
CUDA itself, and the answer is cached for the process.
"""

from __future__ import annotations

import functools
import subprocess
import sys

CHILD_TIMEOUT_S = 120  # a child imports torch (seconds) and initialises CUDA (more)


def cuda_device_count() -> int:
    """CUDA devices this process may use (0 on a CPU build of torch)."""
    import torch

    if not torch.backends.cuda.is_built():
        return 0
    if torch.cuda._is_in_bad_fork():  # forked after the parent initialised CUDA: unusable
        return 0
    if torch.cuda.is_initialized():  # already past the point of no return: ask CUDA
        return torch.cuda.device_count()
    return _count_without_init()


@functools.cache
def _count_without_init() -> int:
    import torch

    nvml_count = getattr(torch.cuda, "_device_count_nvml", None)
    n = nvml_count() if nvml_count is not None else -1
    return n if n >= 0 else _count_in_child()


def _count_in_child() -> int:
    code = "import torch; print(torch.cuda.device_count())"
    try:
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            check=True,
        )
        return int(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, OSError, ValueError, IndexError):
        return 0


def cuda_available() -> bool:
    return cuda_device_count() > 0


def cuda_uuid(device: int) -> str:
    """The UUID of CUDA device ``device`` (as this process numbers it), without the "GPU-"
    or "MIG-" prefix NVML puts before it: what joins a CUDA device to its NVML handle."""
    import torch

    return str(torch.cuda.get_device_properties(device).uuid)
