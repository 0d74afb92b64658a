"""``perf.count`` in pytest: the test runs again, alone, in a pytest under callgrind, whose
``perf`` fixture counts the asked-for call and ends the process there; the parent reads
the counts back. Kept apart from the plugin: nothing here runs unless a test counts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

COUNT_KEY = "BENCH_PERF_COUNT_KEY"  # set in the counting child: which perf call to count
COUNT_OUT = "BENCH_PERF_COUNT_OUT"  # ... and where it writes the counts
COUNT_CALLS = 3
COUNT_TIMEOUT_S = 1800


def count_here(fn, args, kwargs) -> None:
    """In the child under valgrind: count the calls, write them, and end the process (the
    rest of the test is not this child's business)."""
    import json
    import statistics

    import torch

    from bench.telemetry.callgrind import CallgrindClock, build_helper
    from bench.telemetry.timer import time_calls

    # one intra-op thread, as bench counts cases: callgrind counts every thread, and a
    # pool's spinning is not the function's work (counts moved by 15% with torch's default)
    torch.set_num_threads(1)
    out = Path(os.environ[COUNT_OUT])
    clock = CallgrindClock(str(out.parent / f"callgrind.{os.getpid()}"), helper=build_helper())
    samples = time_calls(lambda: fn(*args, **kwargs), warmup=1, iterations=COUNT_CALLS, clock=clock)
    clock.discard()
    out.write_text(json.dumps({"value": statistics.median(samples.values)}))
    os._exit(0)


def count_in_valgrind(request: pytest.FixtureRequest, key: str) -> list[float]:
    """Run this test again in a pytest under callgrind, counting perf call ``key``."""
    import json
    import subprocess
    import sys

    from bench.telemetry.callgrind import COUNT_ENV, build_helper, valgrind_argv, valgrind_missing

    why = valgrind_missing()
    if why:
        pytest.skip(f"perf.count: {why}")
    out_dir = request.getfixturevalue("tmp_path_factory").mktemp("perf-count")
    out = out_dir / "count.json"
    pytest_argv = ["-m", "pytest", request.node.nodeid, "-q", "-p", "no:cacheprovider"]
    argv = [*valgrind_argv(out_dir, ["instructions"], build_helper()), sys.executable, *pytest_argv]
    env = {**os.environ, **COUNT_ENV, COUNT_KEY: key, COUNT_OUT: str(out)}
    env.pop("PYTEST_ADDOPTS", None)
    done = subprocess.run(argv, cwd=request.config.rootpath, env=env, capture_output=True,
                          text=True, timeout=COUNT_TIMEOUT_S)  # fmt: skip
    if not out.exists():
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        pytest.fail(f"perf.count: the counting run of {key} gave no count (exit "
                    f"{done.returncode}): {' / '.join(tail)}", pytrace=False)  # fmt: skip
    return [float(json.loads(out.read_text())["value"])]


def counting_child() -> str | None:
    """In the counting run: the key of the perf call to count; else None."""
    return os.environ.get(COUNT_KEY)
