from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip this project's ``gpu``-marked tests (marker declared in pyproject.toml) where
    torch sees no CUDA device. Here, not in bench's pytest plugin: the plugin loads in
    every project that installs bench, whose own ``gpu`` tests are none of its business."""
    gpu_items = [i for i in items if i.get_closest_marker("gpu")]
    if not gpu_items:
        return
    # Asked without initialising CUDA: perf.time forks its repeats from this process.
    from bench.telemetry.cuda_probe import cuda_available

    if cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch sees none)")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture
def write_suite(tmp_path: Path):
    """Write a suite file from an indented TOML string; returns its path."""

    def write(text: str, name: str = "suite.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


def write_manifest(run: Path, name: str, text: str) -> None:
    """The manifest of a hand-made run folder ``run`` of suite ``name`` (TOML ``text``)."""
    from bench.results import store

    manifest = {
        "run_id": run.name,
        "suite": {"name": name, "path": f"{name}.toml", "text": text},
        "environment": {},
    }
    store.write_json_atomic(run / store.MANIFEST, manifest)


# The model and workload a hand-made case result names (every result bench writes has them).
PARTS = {
    "model": {"name": "m", "label": "m", "params": {}},
    "workload": {"name": "forward", "label": "w", "params": {}},
    "techniques": [{"name": "baseline", "label": "baseline", "params": {}}],
}

TINY_MODEL = """
[[models]]
name = "tinygpt-s"
weights = "random"
n_layer = 1
n_embd = 32
n_head = 2
block_size = 64
"""


def selftest_suite(name: str, repeats: int) -> str:
    """A suite of one fast case (a trivial timed call on a one-layer model), no idle power
    or energy window: for tests of what runs around cases (A/B, pytest gates)."""
    return f"""
name = "{name}"
[run]
warmup = 1
iterations = 5
repeats = {repeats}
idle_s = 0
energy = false
[[models]]
name = "tinygpt-s"
weights = "random"
n_layer = 1
n_embd = 16
n_head = 1
[[workloads]]
name = "selftest"
"""


def assert_dies_soon(pid: int, what: str) -> None:
    """``pid`` is gone within 5 s (else it is killed and the test fails)."""
    import os
    import signal
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError(f"{what} {pid} outlived its case's timeout")
