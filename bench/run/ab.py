"""``bench ab``: two versions of the code (git refs, checked out as worktrees) or two
suites, measured in one job with their case processes paired.

Each side runs in a server of its own (``side_server``), started once with that side's
code (with ``--install``, from its own virtualenv with its worktree installed, so that a
changed dependency or plugin is really compared). The job then alternates the two sides'
case processes A B B A for every case, block after block, and judges each case on the log
ratios of adjacent A/B pairs, block by block: drift of the machine slower than a pair
(heat, other load, the minutes between two ``bench run`` invocations) is in both members
and cancels.

After every block the job looks at the pairs so far and stops once every verdict is
decided, with the family-wise error spent over the planned looks (``sequential``), so that
stopping early does not inflate false verdicts; otherwise it stops when ``--budget`` (pairs
per case, or minutes) is spent.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.errors import UserError
from bench.run import offline


@dataclass(frozen=True)
class Budget:
    """When to stop: after ``pairs`` pairs per case, or ``minutes`` of wall time."""

    pairs: int | None = None
    minutes: float | None = None

    @classmethod
    def parse(cls, text: str) -> Budget:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(m|min|h)?\s*", text)
        if not m:
            raise UserError(f"--budget {text!r}: expected pairs per case (20) or minutes (10m, 1h)")
        value, unit = float(m.group(1)), m.group(2)
        if value <= 0:
            raise UserError(f"--budget {text!r}: must be positive")
        if unit is None:
            if value < 2 or value != int(value):
                raise UserError(f"--budget {text!r}: at least 2 pairs per case (one ABBA block)")
            return cls(pairs=int(value))
        return cls(minutes=value * (60 if unit == "h" else 1))

    def fraction(self, block: int, elapsed_s: float) -> float:
        """How much of the budget is spent after ``block`` blocks, ``elapsed_s`` into the
        job: the information time of the stopping rule (pairs, or wall time)."""
        if self.pairs is not None:
            return min(1.0, 2 * block / self.pairs)
        return min(1.0, elapsed_s / (60 * (self.minutes or 0)))

    def last(self, block: int, elapsed_s: float, block_s: float) -> bool:
        """Is this block the job's last: the pairs are done, or there is no time for another
        at this one's pace?"""
        if self.pairs is not None:
            return 2 * block >= self.pairs
        return elapsed_s + block_s > 60 * (self.minutes or 0)


class Schedule:
    """When a paired job looks at its pairs and what each look may spend: a look after the
    block in which the spent share of the budget (pairs, or wall time) crosses each of
    1/``MAX_LOOKS``, 2/``MAX_LOOKS``, ...; each spends ``ALPHA`` up to that share
    (``sequential``); the job's last block looks and spends what is left. The schedule
    depends on the budget and the clock, never on the verdicts."""

    def __init__(self, budget: Budget):
        from bench.analysis.sequential import Spending
        from bench.analysis.verdicts import ALPHA

        self.budget = budget
        self.spending = Spending(ALPHA)
        self.looked = 0  # looks so far

    def look(self, block: int, elapsed_s: float, block_s: float) -> tuple[float, bool] | None:
        """After block ``block`` (1-based), ``elapsed_s`` into the job: (the level this look
        may use, whether it is the last), or None when this block is not a look."""
        from bench.analysis.sequential import MAX_LOOKS

        fraction = self.budget.fraction(block, elapsed_s)
        final = self.budget.last(block, elapsed_s, block_s)
        due = math.floor(fraction * MAX_LOOKS + 1e-9)
        if due <= self.looked and not final:
            return None
        self.looked = max(due, self.looked + 1)
        return self.spending.look(fraction, final), final


@dataclass
class SideSpec:
    name: str  # "base" or "candidate"
    suite: Path
    ref: str | None  # a git ref to check out, or None for this checkout's code
    code: Path | None = None  # the worktree once checked out
    python: Path | None = None  # its virtualenv's interpreter (``--install``)
    overrides: tuple[str, ...] = ()  # the suite's --set KEY=VALUE, passed to its side server


def _git(*args: str, cwd: Path) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    except FileNotFoundError:
        raise UserError("git is not installed: bench ab needs it to check out refs") from None
    except subprocess.CalledProcessError as e:
        last = (e.stderr or "").strip().splitlines()[-1:] or [str(e)]
        raise UserError(f"git {' '.join(args)}: {last[0]}") from None
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


def install(side: SideSpec, into: Path, console) -> None:
    """A virtualenv for the side with the side's code installed into it, dependencies and
    entry points included. It sees this environment's packages after its own (a ``.pth``
    line, not ``--system-site-packages``, which would show the base interpreter's instead):
    torch is not installed twice, and only what the side's code needs anew is."""
    import site

    source = side.code or Path(_git("rev-parse", "--show-toplevel", cwd=Path.cwd()))
    into = into.resolve()  # the side server runs elsewhere: an absolute interpreter path
    console.print(f"  {side.name}: installing {source} into {into}", highlight=False)
    python = into / "bin" / "python"

    def run(cmd: list[str]) -> str:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
            why = next((x for x in reversed(lines) if x.lower().startswith("error")), lines[-1])
            raise UserError(f"{side.name}: {' '.join(cmd[:4])} … failed: {why.strip()}")
        return done.stdout.strip()

    run([sys.executable, "-m", "venv", str(into)])
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    (Path(purelib) / "zz_bench_ab_parent.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run([str(python), "-m", "pip", "install", "-q", str(source)])
    side.python = python


class SideServer:
    """A running ``side_server`` of one side: one run folder, one case process per request."""

    def __init__(self, side: SideSpec, results: Path, log: Path):
        self.side = side
        self.log = log
        results.mkdir(parents=True, exist_ok=True)
        env = offline.child_env()  # a harness process: no hub, like its case processes
        if side.python is not None:  # installed: import it from its virtualenv, not a folder
            python, cwd = side.python, results
        else:
            python, cwd = Path(sys.executable), side.code or Path.cwd()
            if side.code is not None:
                env["PYTHONPATH"] = os.pathsep.join(
                    filter(None, [str(side.code), env.get("PYTHONPATH")])
                )
        cmd = [str(python), "-m", "bench.run.side_server", str(side.suite.resolve()),
               "--results", str(results.resolve())]  # fmt: skip
        for override in side.overrides:  # only when given: older sides know no --set
            cmd += ["--set", override]
        try:
            with open(log, "ab") as err:
                self.proc = subprocess.Popen(
                    cmd, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=err, text=True, bufsize=1,
                )  # fmt: skip
        except OSError as e:
            raise UserError(f"{side.name} side cannot start ({e.strerror}: {cmd[0]})") from None
        ready = self._read()
        if "error" in ready:
            raise UserError(f"{side.name}: {ready['error']}")
        self.run_dir = Path(ready["run_dir"])
        self.cases: list[str] = ready["cases"]

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            tail = self._tail()
            hint = ""
            if "No module named bench.run.side_server" in tail:
                hint = " (its code predates paired A/B jobs: both refs need bench.run.side_server)"
            raise UserError(f"{self.side.name} side ended (exit {code}){hint}: {tail}")
        return json.loads(line)

    def _tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no output"
        return lines[-1] if lines else "no output"

    def run(self, case_id: str, repeat: int) -> dict:
        self.proc.stdin.write(json.dumps({"case": case_id, "repeat": repeat}) + "\n")
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"close": True}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.terminate()
                self.proc.wait()


def abba_block(cases: list[str]) -> list[tuple[str, int]]:
    """(case, side) in the order of one block: A B B A for every case (0 base, 1 candidate)."""
    return [(c, s) for c in cases for s in (0, 1, 1, 0)]


def run_ab(
    base: SideSpec,
    cand: SideSpec,
    out: Path,
    budget: Budget,
    console,
    rule: str | None = None,
    gates=None,
    force: bool = False,
    install_sides: bool = False,
):
    """Paired blocks until every verdict is decided or the budget is spent; the last
    Comparison (its pairs in ``out/pairs.json``)."""
    from bench.analysis import verdicts
    from bench.analysis.compare import compare_pairs
    from bench.analysis.sequential import MAX_LOOKS, METHOD
    from bench.analysis.sides import load_side

    started = time.monotonic()
    sides = (base, cand)
    servers: list[SideServer] = []
    try:
        for side in sides:
            checkout(side, out / "worktrees" / side.name)
            if install_sides:
                install(side, out / "venvs" / side.name, console)
        for side in sides:
            console.print(f"starting the {side.name} side", highlight=False)
            servers.append(SideServer(side, out / side.name, out / f"{side.name}.log"))
        cases = [c for c in servers[0].cases if c in servers[1].cases]
        if not cases:
            raise UserError("the two sides' suites share no case: nothing to pair")
        console.print(
            f"{len(cases)} case(s); side start-up took {time.monotonic() - started:.1f} s",
            highlight=False,
        )
        measuring = time.monotonic()  # the budget counts the measuring, not the setting up
        repeats = [dict.fromkeys(cases, 0), dict.fromkeys(cases, 0)]
        pairs: list[tuple[str, int, int, int]] = []
        schedule = Schedule(budget)
        block = 0
        while True:
            block += 1
            t0 = time.monotonic()
            done: dict[str, list[int]] = {c: [] for c in cases}
            for case, s in abba_block(cases):
                reply = servers[s].run(case, repeats[s][case])
                if reply["status"] != "ok":
                    first = (reply.get("error") or "").splitlines()[:1]
                    console.print(
                        f"  {sides[s].name} {case} r{repeats[s][case]}: {reply['status']} "
                        f"{first[0] if first else ''}",
                        highlight=False,
                        markup=False,
                    )
                done[case].append(repeats[s][case])
                repeats[s][case] += 1
            for case, (a1, b1, b2, a2) in done.items():
                pairs += [(case, a1, b1, block), (case, a2, b2, block)]
            block_s = time.monotonic() - t0
            elapsed = time.monotonic() - measuring
            look = schedule.look(block, elapsed, block_s)
            spent = f"{budget.fraction(block, elapsed):.0%} of the budget"
            console.print(f"block {block} ({block_s:.0f} s, {spent})", highlight=False)
            if look is None:
                continue
            alpha, final = look
            note = (
                f"stopping rule: {METHOD}, at most {MAX_LOOKS} looks; this look (block {block}, "
                f"{spent}) spent {alpha:.2g} of {verdicts.ALPHA:g}"
            )
            comparison = compare_pairs(
                load_side([servers[0].run_dir]), load_side([servers[1].run_dir]), pairs, alpha,
                force, gates, rule or verdicts.SIGNIFICANT, [note],
            )  # fmt: skip
            counts = comparison.verdicts()
            console.print(
                f"  look at block {block}: "
                + ", ".join(f"{n} {v}" for v, n in counts.items() if n),
                highlight=False,
            )
            if not counts["INCONCLUSIVE"] or final:
                break
        keys = ("case", "base_repeat", "candidate_repeat", "block")
        (out / "pairs.json").write_text(
            json.dumps([dict(zip(keys, p, strict=True)) for p in pairs])
        )
        why = "every verdict is decided" if not counts["INCONCLUSIVE"] else "budget spent"
        console.print(f"{why} after {block} block(s), {time.monotonic() - started:.0f} s",
                      highlight=False)  # fmt: skip
        return comparison
    finally:
        for server in servers:
            server.close()
        for side in sides:
            remove_worktree(side)
        shutil.rmtree(out / "venvs", ignore_errors=True)  # --install's: 50 MB a side
