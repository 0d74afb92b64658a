"""``bench calibrate SUITE``: back-to-back A/A invocations of a suite, appended to the
history "calibration", so that a comparison of one run a side knows how far this machine's
runs of each case drift apart with nothing changed (``analysis.drift``).

Each invocation is a separate ``bench run`` process, as a user's runs are: what differs
between invocations (a fresh interpreter and fork server, memory layout, the machine's
state minutes apart) is exactly what the calibration must see.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.errors import UserError

MIN_RUNS = 3  # fewer invocations than this give no spread worth the name (2 df)


def calibrate(
    suite: Path, runs: int, results: Path, history_url: str | None, console, overrides=()
) -> list[Path]:
    """``runs`` invocations of ``suite`` (with its ``--set`` ``overrides``) into
    ``results``, each appended to the calibration history; their run folders."""
    from bench.analysis.drift import CALIBRATION
    from bench.results import store

    if runs < MIN_RUNS:
        raise UserError(f"--runs {runs}: at least {MIN_RUNS} invocations to measure a spread")
    results.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(runs):
        before = set(results.glob(f"*/{store.MANIFEST}"))
        cmd = [sys.executable, "-m", "bench", "run", str(suite), "--results", str(results),
               "--no-report", "--history", CALIBRATION]  # fmt: skip
        if history_url:
            cmd += ["--history-url", history_url]
        for override in overrides:
            cmd += ["--set", override]
        t0 = time.monotonic()
        done = subprocess.run(cmd, capture_output=True, text=True)
        new = sorted(set(results.glob(f"*/{store.MANIFEST}")) - before)
        if done.returncode not in (0, 1) or len(new) != 1:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"calibration run {i + 1} failed (exit {done.returncode}): {tail[0]}")
        made.append(new[0].parent)
        console.print(
            f"A/A run {i + 1}/{runs}: {new[0].parent.name} ({time.monotonic() - t0:.0f} s)",
            highlight=False,
        )
    return made
