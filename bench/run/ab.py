"""``bench ab``: interleaved A/B runs of one suite on two versions of the code (git refs,
checked out as worktrees) or two suites, judged by ``bench compare``'s rule.

Base and candidate runs alternate A B B A A B B A ..., so that drift of the machine over
the job (heat, other load) lands on both sides alike instead of on whichever ran second.
Each run is a whole ``bench run`` invocation of that side's own code (its case processes,
its repeats); runs are added in ABBA blocks until every verdict is decided or the budget
is spent.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.errors import UserError
from bench.results import store


@dataclass(frozen=True)
class Budget:
    """When to stop adding runs: after ``runs`` per side, or ``minutes`` of wall time."""

    runs: int | None = None
    minutes: float | None = None

    @classmethod
    def parse(cls, text: str) -> Budget:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(m|min|h)?\s*", text)
        if not m:
            raise UserError(f"--budget {text!r}: expected runs per side (8) or minutes (30m, 1h)")
        value, unit = float(m.group(1)), m.group(2)
        if value <= 0:
            raise UserError(f"--budget {text!r}: must be positive")
        if unit is None:
            if value < 2 or value != int(value):
                raise UserError(f"--budget {text!r}: at least 2 runs per side (one ABBA block)")
            return cls(runs=int(value))
        return cls(minutes=value * (60 if unit == "h" else 1))

    def spent(self, runs_per_side: int, started: float) -> bool:
        if self.runs is not None:
            return runs_per_side >= self.runs
        return time.monotonic() - started >= 60 * (self.minutes or 0)


@dataclass
class SideSpec:
    name: str  # "base" or "candidate"
    suite: Path
    ref: str | None  # a git ref to check out, or None for this checkout's code
    code: Path | None = None  # the worktree once checked out


def _git(*args: str, cwd: Path) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    except FileNotFoundError:
        raise UserError("git is not installed: bench ab needs it to check out refs") from None
    except subprocess.CalledProcessError as e:
        raise UserError(f"git {' '.join(args)}: {e.stderr.strip() or e}") from None
    return out.stdout.strip()


def checkout(side: SideSpec, into: Path) -> None:
    """A detached worktree of ``side.ref`` under ``into``; the suite path stays the user's."""
    if side.ref is None:
        return
    top = Path(_git("rev-parse", "--show-toplevel", cwd=Path.cwd()))
    commit = _git("rev-parse", "--verify", f"{side.ref}^{{commit}}", cwd=top)
    into.parent.mkdir(parents=True, exist_ok=True)
    _git("worktree", "add", "--detach", str(into), commit, cwd=top)
    side.code = into


def remove_worktree(side: SideSpec) -> None:
    if side.code is None:
        return
    subprocess.run(
        ["git", "worktree", "remove", "--force", str(side.code)],
        cwd=side.code.parent,
        capture_output=True,
    )
    shutil.rmtree(side.code, ignore_errors=True)


def run_side(side: SideSpec, results: Path, console) -> Path:
    """One ``bench run`` of the side's suite with the side's code; the new run folder."""
    results.mkdir(parents=True, exist_ok=True)
    before = set(results.iterdir())
    env = dict(os.environ)
    cwd = Path.cwd()
    if side.code is not None:
        # `python -m` puts the working directory first on sys.path: the worktree's bench.
        cwd = side.code
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(side.code), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "bench", "run", str(side.suite.resolve()),
           "--results", str(results.resolve()), "--no-report"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    new = [p for p in set(results.iterdir()) - before if (p / store.MANIFEST).is_file()]
    if proc.returncode not in (0, 1) or len(new) != 1:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"{side.name} run failed (exit {proc.returncode}): {tail[0]}")
    console.print(f"  {side.name}: {new[0].name}", highlight=False)
    return new[0]


def abba(rounds: int) -> list[int]:
    """Side order (0 = base, 1 = candidate) of ``rounds`` ABBA blocks."""
    return [0, 1, 1, 0] * rounds


def run_ab(base: SideSpec, cand: SideSpec, out: Path, budget: Budget, console):
    """Runs in ABBA blocks until decided or out of budget; the last Comparison."""
    from bench.analysis.compare import compare
    from bench.analysis.sides import load_side

    started = time.monotonic()
    runs: tuple[list[Path], list[Path]] = ([], [])
    sides = (base, cand)
    try:
        for side in sides:
            checkout(side, out / "worktrees" / side.name)
        block = 0
        while True:
            block += 1
            console.print(f"ABBA block {block}", highlight=False)
            for i in abba(1):
                runs[i].append(run_side(sides[i], out / sides[i].name, console))
            comparison = compare(load_side(runs[0]), load_side(runs[1]), same_suite=False)
            counts = comparison.verdicts()
            if not counts["INCONCLUSIVE"]:
                console.print("every verdict is decided", highlight=False)
                return comparison
            if budget.spent(len(runs[0]), started):
                console.print(
                    f"budget spent with {counts['INCONCLUSIVE']} verdict(s) INCONCLUSIVE",
                    highlight=False,
                )
                return comparison
    finally:
        for side in sides:
            remove_worktree(side)
