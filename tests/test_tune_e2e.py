"""bench tune end to end, as a user runs it: real trials in their own processes, a study
killed mid-way and resumed, a front re-measured, a tuned suite that bench run takes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SUITE = """
name = "tiny-tune"
[run]
threads = 2
warmup = 1
iterations = 5
energy = false
idle_s = 0
quality = true
[[models]]
name = "tinygpt-s"
weights = "pydoc"
[[workloads]]
name = "forward"
batch = 1
seq_len = 32
[tune]
objectives = ["max throughput_tokens", "min state_dict_bytes"]
constraints = ["kl_to_baseline <= 0.05"]
budget = 3
repeats = 1
remeasure = 3
[[tune.stages]]
options = [{ name = "quantize", scheme = ["int8_dynamic", "int8_weight_only"] }, { name = "none" }]
"""


def bench(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        **kw,
    )


def trials(url: str) -> list[dict]:
    import optuna

    from bench.run.tune import completed

    names = [s.study_name for s in optuna.study.get_all_study_summaries(url)]
    return completed(optuna.load_study(study_name=names[0], storage=url)) if names else []


@pytest.mark.slow
def test_a_killed_tune_resumes_and_ends_with_a_front_bench_run_takes(tmp_path):
    suite = tmp_path / "tune.toml"
    suite.write_text(SUITE)
    results, url = tmp_path / "results", f"sqlite:///{tmp_path / 'history.sqlite'}"
    args = [
        "tune",
        str(suite),
        "--results",
        str(results),
        "--history-url",
        url,
        "--reports",
        str(tmp_path / "reports"),
    ]
    first = subprocess.Popen(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not trials(url) and time.monotonic() < deadline and first.poll() is None:
        time.sleep(1)
    first.send_signal(signal.SIGTERM)  # mid-study: what a CI time-out or Slurm sends
    first.wait(120)
    before = trials(url)
    assert 1 <= len(before) < 3, first.stderr.read()

    done = bench(*args)
    assert done.returncode == 0, done.stderr + done.stdout
    after = trials(url)
    assert len(after) == 3  # the budget counts the study's trials, the killed run's too
    assert {t["run_id"] for t in before} <= {t["run_id"] for t in after}
    assert "front" in done.stdout and "re-measuring" in done.stderr  # results: stdout
    reports = list((tmp_path / "reports" / "tune").glob("*/tune.html"))
    assert len(reports) == 1 and (reports[0].parent / "tune.png").exists()

    (tuned,) = results.glob("tune/*/tuned.toml")
    ran = bench("run", str(tuned), "--results", str(tmp_path / "again"))
    assert ran.returncode == 0, ran.stderr


@pytest.mark.slow
def test_jobs_through_an_executor_add_trials_to_one_study(tmp_path):
    suite = tmp_path / "tune.toml"
    suite.write_text(SUITE.replace("budget = 3", "budget = 2"))
    url = f"sqlite:///{tmp_path / 'history.sqlite'}"
    done = bench(
        "tune",
        str(suite),
        "--results",
        str(tmp_path / "results"),
        "--history-url",
        url,
        "--reports",
        str(tmp_path / "reports"),
        "--executor",
        "local",
        "--jobs",
        "2",
    )
    assert done.returncode == 0, done.stderr
    assert "submitted 2 local jobs" in done.stderr
    got = trials(url)
    # two jobs stop once the study holds 2 measured trials (the last two may overlap by one)
    assert 2 <= len(got) <= 3 and len({t["run_id"] for t in got}) == len(got)
