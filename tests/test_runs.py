"""Runs that never lose or mislabel work: scheduling, shards, signals, full disks,
resumes across changes, concurrent runs, file names and permissions."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import atomic
from bench.errors import UserError
from bench.filenames import path_component
from bench.results import store
from bench.run import preparation
from bench.run.suite_driver import Interrupted, RunOptions, run_suite, schedule, select_cases
from bench.spec.suite import load_suite, parse_suite
from tests.conftest import TINY_MODEL, assert_dies_soon

ROOT = Path(__file__).parents[1]

# Every suite here: one untimed-ish call per case, no energy, no idle baseline.
QUICK_RUN = """
[run]
warmup = 0
iterations = 1
repeats = 1
energy = false
idle_s = 0
"""


def quick_suite(name: str, body: str, run_extra: str = "") -> str:
    return f'name = "{name}"\n' + QUICK_RUN + run_extra + body + TINY_MODEL


TWO_GROUPS = quick_suite(
    "groups",
    """
[[workloads]]
name = "selftest"
mode = "sleep"
seconds = [0.0, 0.01]
[[techniques]]
name = "baseline"
[[techniques]]
name = "precision"
dtype = ["bfloat16", "float16"]
""",
)


def test_each_round_opens_and_closes_every_group_with_its_baseline():
    suite = parse_suite(TWO_GROUPS)
    order = [(c.id.split("/")[1], c.techniques[0].label, r) for c, r in schedule(suite.cases, 2)]
    first = [o for o in order if o[0] == order[0][0]][:4]
    assert first[0][1] == "baseline" and first[-1][1] == "baseline"
    assert [r for _, t, r in first if t == "baseline"] == [0, 1]
    baselines = [r for w, t, r in order if t == "baseline" and w == order[0][0]]
    assert baselines == [0, 1, 2, 3]  # two per round, bracketing the round's cases
    assert len(order) == 2 * 2 * (2 + 2)  # rounds x groups x (2 baseline runs + 2 cases)


def test_shards_keep_each_group_with_its_baseline_and_cover_the_suite():
    suite = parse_suite(TWO_GROUPS)
    shards = [select_cases(suite.cases, None, f"{k}/2") for k in (1, 2)]
    assert sorted(c.id for s in shards for c in s) == sorted(c.id for c in suite.cases)
    for shard in shards:
        groups = {c.group for c in shard}
        assert all(any(c.is_baseline and c.group == g for c in shard) for g in groups)


def _suite_file(tmp_path, text=TWO_GROUPS, name="groups.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_filtered_run_is_partial_and_says_what_it_selected(tmp_path):
    suite = load_suite(_suite_file(tmp_path))
    out = run_suite(suite, RunOptions(results=tmp_path / "r", filter="*-sleep0s/*", inline=True))
    manifest = store.read_json(out.run_dir / store.MANIFEST)
    assert manifest["status"] == "partial"
    assert manifest["selection"]["filter"] == "*-sleep0s/*" and manifest["selection"]["of"] == 6
    assert len(manifest["selection"]["cases"]) == 3


def test_ctrl_c_while_preparing_marks_the_run_interrupted(tmp_path, monkeypatch):
    def boom(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(preparation, "prepare_models", boom)
    suite = load_suite(_suite_file(tmp_path))
    with pytest.raises(Interrupted) as e:
        run_suite(suite, RunOptions(results=tmp_path / "r", inline=True))
    assert e.value.code == 130
    assert store.read_json(e.value.run_dir / store.MANIFEST)["status"] == "interrupted"


def test_a_full_disk_stops_the_run_with_one_line_and_keeps_what_was_written(tmp_path, monkeypatch):
    real = store.write_json_atomic
    calls = {"cases": 0}

    def write(path, obj):
        if Path(path).parent.name == store.CASES:
            calls["cases"] += 1
            if calls["cases"] == 3:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, obj)

    monkeypatch.setattr(store, "write_json_atomic", write)
    suite = load_suite(_suite_file(tmp_path))
    with pytest.raises(Interrupted) as e:
        run_suite(suite, RunOptions(results=tmp_path / "r", inline=True))
    assert e.value.code == 74 and "No space left on device" in e.value.reason
    assert len(list((e.value.run_dir / store.CASES).glob("*.json"))) == 2
    manifest = store.read_json(e.value.run_dir / store.MANIFEST)
    assert manifest["status"] == "interrupted"


def test_resume_refuses_a_change_of_software_unless_forced(tmp_path):
    suite = load_suite(_suite_file(tmp_path))
    out = run_suite(suite, RunOptions(results=tmp_path / "r", inline=True, filter="*-sleep0s/*"))
    path = out.run_dir / store.MANIFEST
    manifest = store.read_json(path)
    manifest["environment"]["software"]["torch"] = "1.0.0"
    store.write_json_atomic(path, manifest)
    opts = dict(results=tmp_path / "r", inline=True, resume=out.run_id, filter="*-sleep0s/*")
    with pytest.raises(UserError, match=r"torch changed \(1.0.0 -> "):
        run_suite(suite, RunOptions(**opts))
    again = run_suite(suite, RunOptions(**opts, force=True))
    assert store.read_json(again.run_dir / store.MANIFEST)["resumed_across"]


def test_case_file_names_are_one_to_one_and_stay_in_their_folder(tmp_path):
    ids = ["m/w/prune-2:4", "m/w/prune-2_4", "m/w__x/t", "m__w/x/t", "m/w/a b", "m/w/a_b"]
    stems = {store.case_file_stem(i, 0) for i in ids}
    assert len(stems) == len(ids)
    assert store.case_file_stem("tinygpt-s/forward-b8-s128/baseline", 1) == (
        "tinygpt-s__forward-b8-s128__baseline.r1"
    )
    for hostile in ["../../etc/passwd", "..", ".", "a/b", "", ".hidden", "x\nboom"]:
        name = path_component(hostile)
        assert "/" not in name and name not in ("", ".", "..") and not name.startswith(".")
        assert (tmp_path / name).resolve().parent == tmp_path.resolve()
    assert path_component("../x") != path_component("__x")


def test_hostile_model_label_cannot_escape_the_refs_folder(tmp_path):
    from bench.workloads.quality import reference_file

    refs = tmp_path / "run" / "refs"
    for label in ("../../escaped", "hf-local-/etc", "a/../../b"):
        assert reference_file(refs, label).resolve().parent == refs.resolve()


def test_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        store.write_json_atomic(tmp_path / "a.json", {"x": 1})
        atomic.write_text(tmp_path / "b.html", "<p>")
    finally:
        os.umask(old)
    for name in ("a.json", "b.html"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench", *args]


@pytest.mark.slow
def test_two_runs_into_one_results_folder_at_once_lose_nothing(tmp_path):
    path = _suite_file(tmp_path)
    results = tmp_path / "results"
    cmd = _cli("run", str(path), "--results", str(results), "--no-report")
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    runs = sorted(results.iterdir())
    assert len(runs) == 2
    for run in runs:
        files = list((run / store.CASES).glob("*.json"))
        assert len(files) == 8  # 2 groups x (2 baseline runs + 2 cases)
        assert all(json.loads(f.read_text())["status"] == "ok" for f in files)
        assert store.read_json(run / store.MANIFEST)["status"] == "complete"


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_says_how_to_resume(write_suite, tmp_path):
    body = '[[workloads]]\nname = "selftest"\nmode = "sleep"\nseconds = [0.1, 30]\n'
    path = write_suite(quick_suite("term", body))
    results = tmp_path / "results"
    proc = subprocess.Popen(
        _cli("run", str(path), "--results", str(results), "--no-report"),
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 60
        while not list(results.glob("*/cases/*.json")) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)  # to bench alone, as a scheduler does first
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr and "terminated (SIGTERM)" in stderr
    (run_dir,) = results.iterdir()
    assert f"--resume {run_dir.name}" in stderr
    assert store.read_json(run_dir / store.MANIFEST)["status"] == "interrupted"


def test_python_dash_m_bench_is_the_command(tmp_path):
    out = subprocess.run(_cli("--help"), capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "python -m bench" in out.stdout


@pytest.mark.slow
def test_a_timeout_kills_the_workers_a_case_started_too(write_suite, tmp_path):
    body = '[[workloads]]\nname = "selftest"\nmode = "spawn"\nseconds = 60\n'
    path = write_suite(quick_suite("spawn", body, run_extra="timeout_s = 4\n"))
    out = run_suite(load_suite(path), RunOptions(results=tmp_path / "r"))
    (result,) = out.results
    assert result["status"] == "timeout"
    (log,) = (out.run_dir / store.LOGS).glob("*selftest*.log")
    assert_dies_soon(int(log.read_text().split("worker pid ")[1].split()[0]), "worker")


def test_an_oom_kill_is_blamed_on_the_case_only_when_the_kernel_names_it(monkeypatch):
    from bench.run import case_process

    launcher = case_process.ProcessLauncher
    monkeypatch.setattr(case_process, "cgroup_oom_kills", lambda: 5)
    monkeypatch.setattr(case_process, "oom_victim", lambda pid: pid == 42)
    assert launcher._classify_exit(-9, 4, 42)[0] == "oom"
    status, why = launcher._classify_exit(-9, 4, 43)
    assert status == "killed" and "names another victim" in why
    monkeypatch.setattr(case_process, "oom_victim", lambda pid: None)
    status, why = launcher._classify_exit(-9, 4, 42)
    assert status == "killed" and "could not be read" in why
    assert launcher._classify_exit(-9, 5, 42) == ("killed", "child killed by SIGKILL")


@pytest.mark.slow
def test_library_noise_goes_to_the_run_log_not_the_console(tmp_path):
    body = (
        '[[workloads]]\nname = "forward"\nbatch = 1\nseq_len = 8\nbaseline = false\n'
        '[[techniques]]\nname = "quantize"\nscheme = "int8_weight_only"\n'
    )
    suite = _suite_file(tmp_path, quick_suite("noise", body), name="noise.toml")
    cmd = _cli("run", str(suite), "--results", str(tmp_path / "r"), "--no-report")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "Failed to load" not in proc.stderr and "_pytree" not in proc.stderr
    (log,) = (tmp_path / "r").glob("*/logs/fork-server.log")
    assert log.is_file()


def test_shards_merge_into_the_run_an_unsharded_run_would_be(tmp_path):
    from bench import load_results
    from bench.run.merge import merge_runs

    suite = load_suite(_suite_file(tmp_path))
    shards = [
        run_suite(suite, RunOptions(results=tmp_path / "r", shard=f"{k}/2", inline=True))
        for k in (1, 2)
    ]
    for s in shards:
        assert store.read_json(s.run_dir / store.MANIFEST)["status"] == "partial"
    merged = merge_runs([s.run_dir for s in shards], tmp_path / "r")
    manifest = store.read_json(merged / store.MANIFEST)
    assert manifest["status"] == "complete" and len(manifest["merged_from"]) == 2
    whole = run_suite(suite, RunOptions(results=tmp_path / "w", inline=True))
    key = ["case_id", "repeat", "metric"]
    a = load_results(merged).sort_values(key)[key].reset_index(drop=True)
    b = load_results(whole.run_dir).sort_values(key)[key].reset_index(drop=True)
    assert a.equals(b)
    assert set(load_results(merged).run_id) == {merged.name}
    with pytest.raises(UserError, match="in both"):
        merge_runs([shards[0].run_dir, merged], tmp_path / "r")
