"""pytest plugin (entry point ``pytest11``): markers for benchmark-aware test suites.

Performance gates and fixtures arrive with the gates work; for now the plugin registers
the ``gpu`` marker and skips such tests on machines without a CUDA device.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; skipped without one")


def _has_cuda() -> bool:
    # The same question the gpu tests ask: can torch use a CUDA device here? (NVML can
    # see a GPU that torch cannot use: a CPU build of torch, a driver mismatch.)
    import torch

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [i for i in items if i.get_closest_marker("gpu")]
    if not gpu_items or _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in gpu_items:
        item.add_marker(skip)
