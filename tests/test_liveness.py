"""No run is left "running" by a fault: a full disk (the final manifest has space set aside),
a SIGKILL or a power cut (readers recognise a dead run by its recorded process, host and
boot), and ``--resume`` goes on from there."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.cli import main
from bench.results import liveness, store
from bench.run.suite_driver import Interrupted, RunOptions, RunSession, run_suite, schedule
from bench.spec.suite import load_suite
from tests.test_runs import TWO_GROUPS


def _manifest(process: dict, status: str = "running") -> dict:
    return {"run_id": "r", "suite": {"name": "s"}, "status": status,
            "attempts": [{"status": status, "process": process}]}  # fmt: skip


def test_a_running_run_is_believed_only_while_its_process_lives():
    me = liveness.owner()
    assert liveness.effective(_manifest(me))["status"] == "running"
    assert liveness.live_here(me)
    rebooted = {**me, "boot_id": "another-boot"}
    dead = liveness.effective(_manifest(rebooted))
    assert dead["status"] == "interrupted" and "restarted" in dead["status_reason"]
    assert dead["attempts"][-1]["status"] == "interrupted"
    reused = {**me, "pid_start_ticks": me["pid_start_ticks"] + 1}  # the pid, another process
    assert "another process has that id" in liveness.effective(_manifest(reused))["status_reason"]
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    gone = {**me, "pid": child.pid}
    assert f"pid {child.pid}) is gone" in liveness.effective(_manifest(gone))["status_reason"]
    elsewhere = {**gone, "host": socket.gethostname() + "-other"}
    assert liveness.effective(_manifest(elsewhere))["status"] == "running"  # cannot tell
    assert liveness.effective(_manifest(gone, "complete"))["status"] == "complete"
    assert liveness.effective({"run_id": "r", "status": "running"})["status"] == "running"


def _suite(tmp_path: Path, seconds: str = "[0.0, 0.01]") -> Path:
    path = tmp_path / "groups.toml"
    path.write_text(TWO_GROUPS.replace("seconds = [0.0, 0.01]", f"seconds = {seconds}"))
    return path


@contextlib.contextmanager
def small_disk(path: Path, size: str = "4m"):
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root): " + done.stderr.decode()[-200:])
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(disk: Path) -> Path:
    """Take every free byte of ``disk``."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0")
                f.flush()
    return filler


def test_a_full_disk_leaves_an_interrupted_run_that_resumes(tmp_path, monkeypatch):
    """A real full disk (a 4 MiB tmpfs filled after the second case): the case that cannot
    be written stops the run; the final manifest still says so, in the space set aside."""
    with small_disk(tmp_path / "disk") as disk:
        real, seen = RunSession.run, []

        def run_then_fill(self, case, repeat):
            result = real(self, case, repeat)
            seen.append(case.id)
            if len(seen) == 2:
                _fill(disk)
            return result

        monkeypatch.setattr(RunSession, "run", run_then_fill)
        suite = load_suite(_suite(tmp_path))
        with pytest.raises(Interrupted) as e:
            run_suite(suite, RunOptions(results=disk / "r", inline=True))
        assert e.value.code == 74 and "No space left on device" in e.value.reason
        on_disk = store.read_json(e.value.run_dir / store.MANIFEST)
        assert on_disk["status"] == "interrupted"  # written, not inferred
        assert len(list((e.value.run_dir / store.CASES).glob("*.json"))) == 2
        (disk / "filler").unlink()
        monkeypatch.setattr(RunSession, "run", real)
        again = run_suite(suite, RunOptions(results=disk / "r", inline=True, resume=e.value.run_id))
        assert store.read_json(again.run_dir / store.MANIFEST)["status"] == "complete"
        assert again.executed == len(schedule(suite.cases, suite.run.repeats)) - 2


def test_a_killed_run_reads_interrupted_everywhere_and_resumes(tmp_path, capsys):
    """SIGKILL leaves the manifest saying "running"; every reader believes the process."""
    suite = _suite(tmp_path, seconds="[0.0, 0.3]")
    results = tmp_path / "r"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", str(suite), "--results", str(results)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(results.glob("*/cases/*.json")):
        time.sleep(0.05)
    (run_dir,) = results.iterdir()
    assert store.read_json(run_dir / store.MANIFEST)["status"] == "running"
    assert store.read_manifest(run_dir)["status"] == "running"  # alive: believed
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert store.read_json(run_dir / store.MANIFEST)["status"] == "running"  # as left
    seen = store.read_manifest(run_dir)
    assert seen["status"] == "interrupted" and f"pid {proc.pid}" in seen["status_reason"]
    assert main(["report", str(run_dir), "--reports", str(tmp_path / "rep")]) == 0
    (page,) = (tmp_path / "rep").glob("*/*/report.md")
    assert "interrupted" in page.read_text()
    assert main(["run", str(suite), "--results", str(results), "--resume", run_dir.name,
                 "--no-report"]) in (0, 1)  # fmt: skip
    assert store.read_json(run_dir / store.MANIFEST)["status"] == "complete"
    assert "status_reason" not in store.read_manifest(run_dir)  # the old story is over
    attempts = store.read_json(run_dir / store.MANIFEST)["attempts"]
    assert attempts[0]["status"] == "interrupted" and attempts[-1]["status"] == "complete"


def test_resume_refuses_a_run_that_is_still_running_here(tmp_path):
    suite = load_suite(_suite(tmp_path))
    out = run_suite(suite, RunOptions(results=tmp_path / "r", inline=True))
    path = out.run_dir / store.MANIFEST
    manifest = store.read_json(path)
    manifest["status"] = "running"
    manifest["attempts"][-1]["process"] = liveness.owner()  # this very process
    store.write_json_atomic(path, manifest)
    from bench.errors import UserError

    with pytest.raises(UserError, match="still running here"):
        run_suite(suite, RunOptions(results=tmp_path / "r", inline=True, resume=out.run_id))
