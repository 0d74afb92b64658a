"""Every way a case process can end is recorded with its status, and the run goes on."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.results import store
from bench.run.suite_driver import RunOptions, exit_code, run_suite
from bench.spec.suite import load_suite
from tests.conftest import TINY_MODEL

pytestmark = pytest.mark.slow


def selftest_suite(write_suite, modes: str, seconds: str = "30", repeats: int = 1):
    return write_suite(
        f"""
        name = "iso"
        [run]
        warmup = 1
        iterations = 2
        repeats = {repeats}
        timeout_s = 60
        [[workloads]]
        name = "selftest"
        mode = {modes}
        seconds = {seconds}
        """
        + TINY_MODEL
    )


def test_each_failure_becomes_a_status_and_the_run_goes_on(write_suite, tmp_path):
    path = selftest_suite(write_suite, '["raise", "exit", "sleep", "sigkill", "alloc", "ok"]')
    opts = RunOptions(results=tmp_path / "results", timeout=3)
    outcome = run_suite(load_suite(path), opts)
    by_mode = {r["case"]["workload"]["params"]["mode"]: r for r in outcome.results}
    assert {m: r["status"] for m, r in by_mode.items()} == {
        "raise": "failed",
        "exit": "failed",
        "sleep": "timeout",
        "sigkill": "killed",
        "alloc": "oom",
        "ok": "ok",
    }
    assert by_mode["raise"]["error"] == "RuntimeError: selftest: raised on purpose"
    assert "raise RuntimeError" in by_mode["raise"]["traceback"]
    assert by_mode["exit"]["error"] == "child exited with code 3 before reporting a result"
    assert by_mode["sleep"]["error"].startswith("timed out after 3 s")
    assert by_mode["sigkill"]["error"] == "child killed by SIGKILL"
    assert "can't allocate memory" in by_mode["alloc"]["error"]
    ok = by_mode["ok"]
    assert ok["info"]["pid"] != os.getpid()  # really ran in another process
    assert {m["name"] for m in ok["metrics"]} >= {
        "latency_median",
        "params_total",
        "state_dict_bytes",
    }
    assert exit_code(outcome.results) == 1
    # Every result is on disk, and the manifest says the run completed.
    assert len(list((outcome.run_dir / "cases").glob("*.json"))) == 6
    assert store.read_json(outcome.run_dir / "manifest.json")["status"] == "complete"


def test_repeats_run_in_fresh_processes(write_suite, tmp_path):
    path = selftest_suite(write_suite, '"ok"', repeats=3)
    outcome = run_suite(load_suite(path), RunOptions(results=tmp_path))
    assert [r["repeat"] for r in outcome.results] == [0, 1, 2]
    assert len({r["info"]["pid"] for r in outcome.results}) == 3


def test_inline_mode_runs_in_this_process(write_suite, tmp_path):
    path = selftest_suite(write_suite, '["ok", "raise"]')
    outcome = run_suite(load_suite(path), RunOptions(results=tmp_path, inline=True))
    assert [r["status"] for r in outcome.results] == ["ok", "failed"]
    assert outcome.results[0]["info"]["pid"] == os.getpid()


def _wait_for(predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _parents() -> dict[int, int]:
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(stat.parent.name)] = int(fields[1])
    return out


def _descendants(pid: int) -> set[int]:
    parents, found, frontier = _parents(), set(), {pid}
    while frontier:
        frontier = {c for c, p in parents.items() if p in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def run_command(suite: Path, results: Path) -> list[str]:
    """``bench run`` as a user starts it, in a process of its own."""
    return [
        sys.executable,
        "-m",
        "bench.cli",
        "run",
        str(suite),
        "--results",
        str(results),
        "--no-report",
    ]


def test_kill_minus_9_then_resume_loses_nothing_and_reruns_nothing(write_suite, tmp_path):
    path = selftest_suite(write_suite, '"sleep"', seconds="[0.3, 0.31, 0.32, 0.33, 0.34, 0.35]")
    results = tmp_path / "results"
    cmd = run_command(path, results)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cases = lambda: sorted(results.glob("*/cases/*.json"))  # noqa: E731
    try:
        assert _wait_for(lambda: len(cases()) >= 2, timeout=60), "no results appeared"
        helpers = _descendants(proc.pid)  # the fork server and the case running now
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = {p.name: p.read_bytes() for p in cases()}
    assert 2 <= len(before) < 6
    assert helpers
    # Nothing of the killed run may live on to compete with the resumed one.
    assert _wait_for(lambda: not any(_alive(p) for p in helpers), timeout=5), helpers
    (run_dir,) = results.iterdir()
    assert store.read_json(run_dir / "manifest.json")["status"] == "running"

    resumed = subprocess.run([*cmd, "--resume", run_dir.name], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    after = {p.name: p.read_bytes() for p in cases()}
    assert len(after) == 6
    assert all(after[name] == data for name, data in before.items())  # finished cases untouched
    assert all(json.loads(d)["status"] == "ok" for d in after.values())
    manifest = store.read_json(run_dir / "manifest.json")
    assert manifest["status"] == "complete"
    assert [a["executed"] for a in manifest["attempts"][1:]] == [6 - len(before)]


def test_resume_refuses_a_changed_suite_or_unknown_run(write_suite, tmp_path):
    from bench.errors import UserError

    path = selftest_suite(write_suite, '"ok"')
    outcome = run_suite(load_suite(path), RunOptions(results=tmp_path))
    path.write_text(path.read_text().replace("iterations = 2", "iterations = 3"))
    with pytest.raises(UserError, match="the suite file changed since that run started"):
        run_suite(load_suite(path), RunOptions(results=tmp_path, resume=outcome.run_id))
    with pytest.raises(UserError, match="--resume nope: no readable run"):
        run_suite(load_suite(path), RunOptions(results=tmp_path, resume="nope"))
    assert Path(outcome.run_dir).is_dir()


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(write_suite, tmp_path):
    path = selftest_suite(write_suite, '"sleep"', seconds="[0.3, 30]")
    results = tmp_path / "results"
    cmd = run_command(path, results)
    # Its own process group, as in a terminal: Ctrl-C reaches bench, the fork server and the case.
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert _wait_for(lambda: len(list(results.glob("*/cases/*.json"))) == 1, timeout=60)
        time.sleep(0.5)  # the 30 s case is running now
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    (run_dir,) = results.iterdir()
    assert f"--resume {run_dir.name}" in stderr
    manifest = store.read_json(run_dir / "manifest.json")
    assert manifest["status"] == "interrupted" and manifest["attempts"][0]["executed"] == 1
    assert (
        len(list((run_dir / "cases").glob("*.json"))) == 1
    )  # the interrupted case is not recorded
