"""The perf plugin's baselines (``.perf/NAME.json``) and one pytest session's measurements:
what a measurement is, the facts that make two sessions comparable, and the baseline read
(``--perf-compare``) and written (``--perf-save``, the sessions of the same code kept)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

MAX_SESSIONS = 10  # saved sessions per test in a baseline: the newest are kept


@dataclass
class Measurement:
    """One perf measurement: a figure per process-level run."""

    metric: str
    unit: str
    values: list[float]
    method: str
    verdict: str = ""  # against the baseline, when one was compared
    detail: str = ""

    @property
    def center(self) -> float:
        from bench.analysis.stats import center

        return center(self.values)

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "unit": self.unit, "method": self.method}


def _code() -> str | None:
    """The code a session measured: the git commit of the working directory, with a mark
    when it has uncommitted changes; None outside git."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True)
    except OSError:
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def sessions_of(entry: dict[str, Any]) -> list[list[float]]:
    """The saved sessions of one test: each one invocation's process-run values (a baseline
    saved by an older bench holds one, under "values")."""
    if isinstance(entry.get("sessions"), list):
        return [list(map(float, s["values"])) for s in entry["sessions"]]
    return [list(map(float, entry["values"]))]


def setup_facts() -> dict[str, str | None]:
    """What must match for two measurements to be comparable."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from bench.analysis.sides import minor_version
    from bench.telemetry.machine import cpu_model

    try:
        torch = minor_version(version("torch"))
    except PackageNotFoundError:
        torch = None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "CPU model": cpu_model(),
        "CPUs available": str(cpus),
        "Python": ".".join(platform.python_version_tuple()[:2]),
        "torch": torch,
    }


class PerfSession:
    def __init__(self, config: pytest.Config):
        self.save = config.getoption("--perf-save")
        self.compare = config.getoption("--perf-compare")
        self.dir = Path(config.getoption("--perf-dir"))
        self.repeats = config.getoption("--perf-repeats")
        self.beyond = config.getoption("--perf-beyond-tolerance")
        if self.repeats < 1:
            raise pytest.UsageError("--perf-repeats must be at least 1")
        self.measured: dict[str, Measurement] = {}
        self.profiled: dict[str, dict[str, Any]] = {}  # perf.profile's tables, by test
        self._baseline: dict[str, Any] | None = None
        self._skip_all: str | None = None

    def path(self, name: str) -> Path:
        from bench.filenames import path_component

        return self.dir / f"{path_component(name)}.json"

    def baseline(self) -> tuple[dict[str, Any] | None, str | None]:
        """The baseline's tests, or why there is none to compare with."""
        if self._baseline is None and self._skip_all is None:
            path = self.path(self.compare)
            from bench.results.files import BadFile, read_perf_baseline

            try:
                data = read_perf_baseline(path)
            except BadFile as e:
                self._skip_all = (
                    f"no perf baseline {self.compare!r} at {path}"
                    if not path.exists()
                    else f"perf baseline {e}"
                )
            else:
                tests, here, there = data["tests"], setup_facts(), data["environment"]
                diff = [f"{k}: {there.get(k)} vs {v}" for k, v in here.items() if there.get(k) != v]
                if diff:
                    self._skip_all = (
                        f"perf baseline {path} is from another setup ({'; '.join(diff)})"
                    )
                else:
                    self._baseline = tests
        return self._baseline, self._skip_all

    def write(self) -> Path | None:
        """Add this session to the baseline: per test, the sessions of the same code (git
        commit and dirty mark) and setup are kept, the newest ``MAX_SESSIONS``; a test whose
        code or setup changed starts afresh."""
        if not self.save or not self.measured:
            return None
        import time

        from bench.results.files import BadFile, read_perf_baseline
        from bench.results.store import write_json_atomic

        path = self.path(self.save)
        tests: dict[str, Any] = {}
        try:
            old = read_perf_baseline(path)
            if old["environment"] == setup_facts():
                tests = old["tests"]  # keep tests this session did not run
        except BadFile:  # none yet, or one that cannot be believed: this session starts it
            pass
        code, when = _code(), time.strftime("%Y-%m-%dT%H:%M:%S%z")
        for key, m in self.measured.items():
            entry = tests.get(key) or {}
            kept = [
                s
                for s in entry.get("sessions") or []
                if s.get("code") == code and entry.get("metric") == m.metric
            ]
            mine = {"values": m.values, "code": code, "saved": when}
            tests[key] = {**m.to_json(), "sessions": [*kept, mine][-MAX_SESSIONS:]}
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"schema_version": 2, "environment": setup_facts(), "tests": tests})
        return path
