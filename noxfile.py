"""Sessions: tests, lint, smoke, compression, gpu, fidelity, isolation, gates. Each installs
bench into its own virtualenv.

torch comes first and pinned, because an unpinned ``pip install torch`` on a machine
without torch pulls a multi-GB CUDA build. Choose another build with BENCH_TORCH, e.g.
BENCH_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128".
"""

from __future__ import annotations

import os
import shlex

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_venv = "yes"

TORCH = shlex.split(os.environ.get("BENCH_TORCH", "torch==2.13.0"))


def install(session: nox.Session, extras: str = "") -> None:
    session.install(*TORCH)
    session.install("-e", f".[{extras}]" if extras else ".")


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (CPU; GPU tests are skipped without a GPU)."""
    install(session, "dev")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def smoke(session: nox.Session) -> None:
    """Run suites/smoke.toml (about a minute on 2 CPU cores)."""
    install(session)
    session.run("bench", "run", "suites/smoke.toml", *session.posargs)


@nox.session
def fidelity(session: nox.Session) -> None:
    """Benchmark: timer fidelity against torch.utils.benchmark, and telemetry overhead."""
    install(session)
    session.run("python", "benchmarks/telemetry.py", *session.posargs)


@nox.session
def isolation(session: nox.Session) -> None:
    """Benchmark: fixed cost of an isolated case, and its fidelity to an in-process loop."""
    install(session)
    session.run("python", "benchmarks/isolation.py", *session.posargs)


@nox.session
def compression(session: nox.Session) -> None:
    """Run suites/compression.toml: every pruning, quantization and precision case on CPU."""
    install(session)
    session.run("bench", "run", "suites/compression.toml", *session.posargs)


@nox.session
def gpu(session: nox.Session) -> None:
    """Run suites/gpu.toml on a CUDA machine; set BENCH_TORCH to the torch build for it."""
    install(session)
    session.run("bench", "run", "suites/gpu.toml", *session.posargs)


@nox.session
def gates(session: nox.Session) -> None:
    """Benchmark: the verdict rule by simulation, then false alarms and power on real runs
    beside pytest-benchmark's and asv's rules (about 6 minutes)."""
    install(session)
    session.run("python", "benchmarks/gate_rules.py")
    session.run("python", "benchmarks/gates.py", *session.posargs)
