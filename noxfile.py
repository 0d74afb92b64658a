"""Sessions: tests, slow, lint, smoke, nightly, postgres, compression, training, decoding,
parallel, gpu, fidelity, isolation, counts, detect, start_cost, verdicts, ab_benchmark,
nightly_benchmark, docs. Each installs bench into its own virtualenv.

torch comes first, pinned, and by default the CPU build from PyTorch's CPU index: a bare
``pip install torch`` on Linux pulls the multi-GB CUDA build from PyPI. Choose another build
with BENCH_TORCH, e.g. BENCH_TORCH="torch==2.13.0" (PyPI's Linux wheel: a CUDA build) or
BENCH_TORCH="torch==2.13.0 --index-url <the CUDA index pytorch.org's selector gives>".
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_venv = "yes"

CPU_TORCH = "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
TORCH = shlex.split(os.environ.get("BENCH_TORCH", CPU_TORCH))


def install(session: nox.Session, extras: str = "") -> None:
    # torch alone from its index (--no-deps); its dependencies (sympy, jinja2, ...) then come
    # from the ordinary index with bench's, which resolves the installed torch's requirements.
    # So the torch index is asked about torch only: on a machine that carries the torch
    # wheel locally (pip's find-links) and cannot reach PyTorch's index, pip retries that
    # index once (seconds) rather than once per dependency (measured: 31 s against 101 s
    # for the same install); elsewhere the result is that of `pip install torch --index-url`.
    session.install("--no-deps", *TORCH)
    session.install("-e", f".[{extras}]" if extras else ".")


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite without the slow end-to-end tests (CPU; GPU tests are skipped without
    a GPU); `nox -s slow` runs those, and CI runs both."""
    install(session, "dev")
    session.run("pytest", "-m", "not slow", *session.posargs)


@nox.session
def slow(session: nox.Session) -> None:
    """The slow end-to-end tests (marked `slow`): real runs, A/B jobs, retraining."""
    install(session, "dev")
    session.run("pytest", "-m", "slow", *session.posargs)


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
def counts(session: nox.Session) -> None:
    """Benchmark: instruction counts' run-to-run spread and a ~2% change (needs valgrind)."""
    install(session)
    session.run("python", "benchmarks/counts.py", *session.posargs)


@nox.session
def detect(session: nox.Session) -> None:
    """Benchmark: the smallest slowdown bench compare, pytest-benchmark and asv detect."""
    install(session)
    session.install("asv", "asv_runner")
    session.chdir("benchmarks")
    session.run("python", "detect.py", *session.posargs)


@nox.session
def start_cost(session: nox.Session) -> None:
    """Benchmark: the fixed cost of `bench run` against `python -c "import torch"`."""
    install(session)
    session.run("python", "benchmarks/start_cost.py", *session.posargs)


@nox.session
def fuzz(session: nox.Session) -> None:
    """Benchmark: 1,000 broken files of each kind bench reads, through the command that
    reads each (about 7 minutes); the counts go to benchmarks/data/fuzz.json."""
    install(session, "dev")
    session.run("python", "benchmarks/fuzz.py", *session.posargs)


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
def training(session: nox.Session) -> None:
    """Run suites/training.toml and suites/distill.toml (about 30 minutes on 2 CPU cores);
    `python benchmarks/training_tables.py RUN...` prints docs/findings.md's tables from them."""
    install(session)
    session.run("bench", "run", "suites/training.toml", *session.posargs)
    session.run("bench", "run", "suites/distill.toml", *session.posargs)


@nox.session
def decoding(session: nox.Session) -> None:
    """Run suites/decoding.toml (about 25 minutes on 2 CPU cores);
    `python benchmarks/decoding_tables.py RUN` prints the table in docs/findings.md from it."""
    install(session)
    session.run("bench", "run", "suites/decoding.toml", *session.posargs)


@nox.session
def parallel(session: nox.Session) -> None:
    """Run suites/parallel.toml (about 7 minutes on 2 CPU cores): threads, DDP, FSDP and
    tensor parallel through torch's launcher; the report's scaling table and curve."""
    install(session)
    session.run("bench", "run", "suites/parallel.toml", *session.posargs)


@nox.session
def gpu(session: nox.Session) -> None:
    """Run suites/gpu.toml on a CUDA machine; set BENCH_TORCH to the torch build for it."""
    install(session)
    session.run("bench", "run", "suites/gpu.toml", *session.posargs)


@nox.session
def verdicts(session: nox.Session) -> None:
    """Benchmark: bench compare's verdicts on real runs in their order (A/A, the tolerance
    boundary, a real +50%), beside the rule before the two-level model. Default: the saved
    extract benchmarks/data/verdicts_runs.json.gz (seconds); `-- collect` measures anew
    (about 12 minutes), then `-- analyse`."""
    install(session)
    args = session.posargs or ["analyse", "--data", "benchmarks/data/verdicts_runs.json.gz"]
    session.run("python", "benchmarks/verdicts.py", *args)


@nox.session
def ab_benchmark(session: nox.Session) -> None:
    """Benchmark: bench ab's stopping rule replayed on recorded paired jobs in their order
    (A/A, +5%, +10%). `-- record --condition aa --minutes 30` records one (needs a git
    checkout: it commits to throwaway worktrees); default: replay what is recorded."""
    install(session)
    session.run("python", "benchmarks/ab.py", *(session.posargs or ["replay"]))


@nox.session
def nightly(session: nox.Session) -> None:
    """Run suites/nightly.toml into the history "nightly", then analyse the history and
    write reports/nightly/index.html. Fails only on an open alarm: a regression that has
    lasted two nights (or that `--confirm` re-ran and confirmed). A shared history:
    BENCH_HISTORY_URL=postgresql://user@host/db. Extra arguments go to `bench history show`."""
    install(session, "postgres" if os.environ.get("BENCH_HISTORY_URL") else "")
    # A failed case is recorded (and missing from tonight's points); the exit status is the
    # history's: 1 only on an open alarm.
    session.run(
        "bench",
        "run",
        "suites/nightly.toml",
        "--history",
        "nightly",
        "--no-report",
        success_codes=[0, 1],
    )
    session.run("bench", "history", "show", "nightly", "--plot", *session.posargs)


@nox.session
def postgres(session: nox.Session) -> None:
    """The history tests against a real PostgreSQL server, started here from the system's
    packages (initdb and pg_ctl, on a Unix socket in a temporary folder); skipped, with the
    reason, where none can start."""
    install(session, "dev,postgres")
    with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
        url, stop = _start_postgres(Path(tmp), session)
        try:
            session.env["BENCH_TEST_POSTGRES_URL"] = url
            session.run("pytest", "tests/test_history.py", *session.posargs)
        finally:
            stop()


def _start_postgres(tmp: Path, session: nox.Session):
    initdb = shutil.which("initdb") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)), None
    )
    if initdb is None:
        session.skip("no PostgreSQL server here (initdb not found): apt-get install postgresql")
    bindir = Path(initdb).parent
    # PostgreSQL refuses to run as root: run it as the system's postgres user when root.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    tmp.chmod(0o777)
    data, sock = tmp / "data", tmp / "sock"
    sock.mkdir()
    sock.chmod(0o777)
    user = "postgres" if as_user else os.environ.get("USER", "postgres")

    def run(*cmd: str) -> None:
        done = subprocess.run([*as_user, *cmd], capture_output=True, text=True)
        if done.returncode != 0:
            session.skip(f"PostgreSQL could not start: {cmd[0]}: {done.stderr.strip()[-300:]}")

    run(str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8")
    opts = f"-c listen_addresses='' -k {sock}"
    run(str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-w", "-l", str(tmp / "log"), "start")

    def stop() -> None:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"])

    return f"postgresql://{user}@/postgres?host={sock}", stop


@nox.session
def nightly_benchmark(session: nox.Session) -> None:
    """Benchmark: change-point detection on real nightly runs in their order (A/A false
    alarms, nights to alarm for injected steps) beside the rule before the two-level model and
    a fixed 5% threshold (about 7 minutes). Default data: benchmarks/data/nightly_runs.json.gz."""
    install(session)
    args = session.posargs or ["--data", "benchmarks/data/nightly_runs.json.gz"]
    session.run("python", "benchmarks/nightly.py", *args)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the docs site (MkDocs, Material theme) into site/ with --strict: a broken link,
    a missing page or a failed generated reference (suite keys from the pydantic schemas,
    the CLI from bench.cli.build_parser()) fails the build. `-- serve` previews instead."""
    install(session, "docs")
    session.env["NO_MKDOCS_2_WARNING"] = "1"  # the theme's banner about its own future, not ours
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", *session.posargs[1:])
    else:
        session.run("mkdocs", "build", "--strict", *session.posargs)
