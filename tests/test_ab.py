"""bench ab: ABBA order, budgets, and a real run on two git refs (worktrees)."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import bench
from bench.analysis import verdicts
from bench.analysis.sequential import Spending
from bench.cli import main
from bench.errors import UserError
from bench.results.metric_info import Tolerance
from bench.run.ab import Budget, Schedule, abba_block
from tests.conftest import selftest_suite


def test_each_case_runs_a_b_b_a_so_drift_hits_both_sides_alike():
    assert abba_block(["x", "y"]) == [("x", 0), ("x", 1), ("x", 1), ("x", 0),
                                      ("y", 0), ("y", 1), ("y", 1), ("y", 0)]  # fmt: skip


def test_budget_is_pairs_per_case_or_minutes():
    assert Budget.parse("6") == Budget(pairs=6)
    assert Budget.parse("30m") == Budget(minutes=30)
    assert Budget.parse("1h") == Budget(minutes=60)
    assert Budget.parse("8").fraction(2, 999.0) == 0.5  # 2 pairs a block
    assert Budget.parse("8").last(4, 0.0, 1.0) and not Budget.parse("8").last(3, 0.0, 1.0)
    assert Budget.parse("1m").fraction(3, 15.0) == 0.25  # wall time
    assert Budget.parse("1m").last(9, 56.0, 5.0)  # no time for another 5 s block
    for bad in ("1", "0", "-3", "soon", "2.5"):
        with pytest.raises(UserError):
            Budget.parse(bad)


def test_a_job_looks_at_most_five_times_and_spends_all_of_alpha_by_its_last():
    schedule = Schedule(Budget(pairs=40))  # 20 blocks
    looks = [b for b in range(1, 21) if schedule.look(b, 0.0, 1.0) is not None]
    assert looks == [4, 8, 12, 16, 20] and schedule.spending.spent == verdicts.ALPHA
    timed = Schedule(Budget(minutes=1))  # 10 s blocks: looks at 12 s, 24 s, ...
    assert [b for b in range(1, 7) if timed.look(b, 10.0 * b, 10.0) is not None] == [2, 3, 4, 5, 6]
    short = Schedule(Budget(minutes=1))  # slower blocks: the time runs out at the 3rd
    assert short.look(1, 5.0, 5.0) is None
    alpha, final = short.look(2, 50.0, 30.0)
    assert final and alpha == pytest.approx(verdicts.ALPHA)  # nothing spent before: all of it


def _ab_simulation(slowdown: float, spend: bool, jobs=500, blocks=12, seed=0):
    """Simulated paired A/B jobs of 3 cases (drift 10% from pair to pair, 8% process noise,
    as on this VM on a bad day), stopping once every verdict is decided: the share of jobs
    that ever said REGRESSION. ``spend``: ``bench ab``'s stopping rule (alpha spent over at
    most MAX_LOOKS looks); otherwise the old rule's, the full alpha after every block."""
    rng = np.random.default_rng(seed)
    tol = Tolerance("relative", 0.05)
    looks = range(2, blocks + 1)
    if spend:  # bench ab's schedule for a budget of 2 x blocks pairs
        schedule = Schedule(Budget(pairs=2 * blocks))
        looks = [b for b in range(1, blocks + 1) if schedule.look(b, 0.0, 1.0)]
    hits = 0
    for _ in range(jobs):
        drift = np.exp(rng.normal(0, 0.10, (3, 2 * blocks)))
        base = drift * np.exp(rng.normal(0, 0.08, drift.shape))
        cand = drift * slowdown * np.exp(rng.normal(0, 0.08, drift.shape))
        spending = Spending(verdicts.ALPHA)
        for b in looks:
            alpha = spending.look(b / blocks) if spend else verdicts.ALPHA
            rows = [verdicts.paired(base[c, : 2 * b], cand[c, : 2 * b], "latency_median",
                                    False, tol, blocks=np.arange(2 * b) // 2)
                    for c in range(3)]  # fmt: skip
            decided = verdicts.decide(rows, alpha=alpha)
            if any(ch.verdict == verdicts.Verdict.REGRESSION for ch in decided):
                hits += 1
                break
            if all(ch.verdict != verdicts.Verdict.INCONCLUSIVE for ch in decided):
                break
    return hits / jobs


def test_stopping_when_decided_keeps_its_promise_on_a_a_and_still_finds_a_slowdown():
    aa = _ab_simulation(1.0, spend=True)
    assert aa <= verdicts.ALPHA  # 500 jobs: at most 5 false REGRESSION
    assert _ab_simulation(1.0, spend=False, seed=1) >= 2 * verdicts.ALPHA  # naive looks inflate it
    assert _ab_simulation(1.10, spend=True, seed=2) >= 0.85  # +10% is still caught (24 pairs)


def git(*args, cwd):
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=cwd,
                   check=True, capture_output=True)  # fmt: skip


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A git repository holding this bench twice: commit A, then B with a harmless edit."""
    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(Path(bench.__file__).parent, root / "bench",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    (root / "ab.toml").write_text(selftest_suite("ab", repeats=1))
    top = Path(bench.__file__).parent.parent
    for name in ("pyproject.toml", "README.md"):  # installable, for --install
        shutil.copy(top / name, root / name)
    git("init", "-q", ".", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "-qm", "A", cwd=root)
    with open(root / "bench" / "__init__.py", "a") as f:
        f.write("\nAB_TEST_MARK = 'B'\n")
    git("commit", "-qam", "B", cwd=root)
    return root


@pytest.mark.slow
def test_ab_pairs_the_two_refs_processes_and_finds_no_regression_between_equals(
    repo, monkeypatch, capsys
):
    """Two commits that differ in nothing measured: one server per side, started once; the
    case processes alternate A B B A; no REGRESSION (a false one has a 1% chance at most)."""
    monkeypatch.chdir(repo)
    code = main(["ab", "ab.toml", "--base-ref", "HEAD~1", "--candidate-ref", "HEAD", "--budget", "6",
                 "--results", "results"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    (out,) = (repo / "results").glob("*-ab-*")
    starts = []
    for side in ("base", "candidate"):
        (run,) = (out / side).glob("*-ab-*")
        for f in (run / "cases").glob("*.json"):
            r = json.loads(f.read_text())
            starts.append((r["started"], side))
    order = [side for _, side in sorted(starts)]
    assert order == ["base", "candidate", "candidate", "base"] * 3  # one case, 3 blocks
    assert "block 3 (" in err and "100% of the budget" in err and (out / "compare.json").is_file()
    data = json.loads((out / "compare.json").read_text())
    assert {r["n_base"] for r in data["rows"]} == {6} and data["evidence"] == "pair"
    assert data["verdicts"]["REGRESSION"] == 0
    assert len(json.loads((out / "pairs.json").read_text())) == 6
    listed = subprocess.run(["git", "worktree", "list"], cwd=repo, capture_output=True, text=True)
    assert len(listed.stdout.strip().splitlines()) == 1  # the worktrees are gone


@pytest.mark.slow
def test_install_compares_each_sides_installed_code(repo, monkeypatch, capsys):
    """--install: each side's worktree installed into a virtualenv of its own (seeing this
    environment's torch, not installing it again); each side server imports its own."""
    monkeypatch.chdir(repo)
    code = main(["ab", "ab.toml", "--base-ref", "HEAD~1", "--candidate-ref", "HEAD", "--budget", "2",
                 "--install", "--results", "installed"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "base: installing" in err and "candidate: installing" in err
    (out,) = (repo / "installed").glob("*-ab-*")
    for side in ("base", "candidate"):
        (run,) = (out / side).glob("*-ab-*")
        manifest = json.loads((run / "manifest.json").read_text())
        # bench was imported from the side's virtualenv, not from a git worktree
        where = manifest["environment"]["bench_path"]
        assert f"venvs/{side}/" in where and where.endswith("site-packages/bench")
    assert not (out / "venvs").exists()  # removed at the end, as the worktrees are


@pytest.mark.slow
def test_ab_user_errors_are_one_line(repo, monkeypatch, capsys):
    monkeypatch.chdir(repo)
    assert main(["ab", "ab.toml"]) == 2
    assert "same code and suite" in capsys.readouterr().err
    assert main(["ab", "ab.toml", "--candidate-ref", "no-such-ref", "--results", "r2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") <= 2 and "no-such-ref" in err
    assert main(["ab", "missing.toml", "--candidate-ref", "HEAD"]) == 2
    assert "missing.toml: no such suite file" in capsys.readouterr().err
    # a ref whose code predates the side server: one line saying so
    git("checkout", "-q", "-b", "old", cwd=repo)
    (repo / "bench" / "run" / "side_server.py").unlink()
    git("commit", "-qam", "old", cwd=repo)
    git("checkout", "-q", "-", cwd=repo)
    assert main(["ab", "ab.toml", "--candidate-ref", "old", "--results", "r3"]) == 2
    (error,) = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert error.startswith("bench: error: candidate side ended") and "predates paired" in error
