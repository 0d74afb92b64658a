"""bench ab: ABBA order, budgets, and a real run on two git refs (worktrees)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import bench
from bench.cli import main
from bench.errors import UserError
from bench.run.ab import Budget, abba
from tests.conftest import selftest_suite


def test_abba_alternates_so_drift_hits_both_sides_alike():
    assert abba(2) == [0, 1, 1, 0, 0, 1, 1, 0]


def test_budget_is_runs_per_side_or_minutes():
    assert Budget.parse("6") == Budget(runs=6)
    assert Budget.parse("30m") == Budget(minutes=30)
    assert Budget.parse("1h") == Budget(minutes=60)
    for bad in ("1", "0", "-3", "soon", "2.5"):
        with pytest.raises(UserError):
            Budget.parse(bad)


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
    git("init", "-q", ".", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "-qm", "A", cwd=root)
    with open(root / "bench" / "__init__.py", "a") as f:
        f.write("\nAB_TEST_MARK = 'B'\n")
    git("commit", "-qam", "B", cwd=root)
    return root


def test_ab_runs_two_refs_in_abba_order_and_compares_them(repo, monkeypatch, capsys):
    monkeypatch.chdir(repo)
    code = main(["ab", "ab.toml", "--base", "HEAD~1", "--candidate", "HEAD", "--budget", "2",
                 "--results", "results"])  # fmt: skip
    err = capsys.readouterr().err
    assert code in (0, 1), err
    (out,) = (repo / "results").glob("*-ab-*")
    starts = []
    for side in ("base", "candidate"):
        for run in (out / side).iterdir():
            starts.append((json.loads((run / "manifest.json").read_text())["started"], side))
    assert [s for _, s in sorted(starts)] == ["base", "candidate", "candidate", "base"]
    assert "ABBA block 1" in err and (out / "compare.json").is_file()
    data = json.loads((out / "compare.json").read_text())
    assert {r["n_base"] for r in data["rows"]} == {2}  # 2 runs x 1 repeat
    listed = subprocess.run(["git", "worktree", "list"], cwd=repo, capture_output=True, text=True)
    assert len(listed.stdout.strip().splitlines()) == 1  # the worktrees are gone


def test_ab_user_errors_are_one_line(repo, monkeypatch, capsys):
    monkeypatch.chdir(repo)
    assert main(["ab", "ab.toml"]) == 2
    assert "same code and suite" in capsys.readouterr().err
    assert main(["ab", "ab.toml", "--candidate", "no-such-ref", "--results", "r2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") <= 2 and "no-such-ref" in err
    assert main(["ab", "missing.toml", "--candidate", "HEAD"]) == 2
    assert "missing.toml: no such suite file" in capsys.readouterr().err
