"""Beyond one process of one machine: the suite's shards as a submitit job array (the local
executor, end to end), merging runs of different environments, and machines compared."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.analysis.machines import section
from bench.errors import UserError
from bench.results import store
from bench.run.machines import merge_machines
from bench.run.merge import merge_runs
from bench.run.suite_driver import RunOptions, run_suite
from bench.spec.suite import load_suite
from tests.test_runs import ROOT, TWO_GROUPS


def _cases(run_dir):
    return {f.name: store.read_json(f)["status"] for f in sorted((run_dir / store.CASES).glob("*"))}


@pytest.mark.slow
def test_the_local_executor_makes_the_run_folder_a_plain_run_makes(tmp_path):
    path = tmp_path / "groups.toml"
    path.write_text(TWO_GROUPS)
    results = tmp_path / "r"
    cmd = [sys.executable, "-m", "bench", "run", str(path), "--executor", "local", "--jobs",
           "2", "--results", str(results), "--no-report"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "submitted 2 local jobs" in proc.stderr
    (merged,) = [d for d in results.iterdir() if not d.name.startswith(".")]
    manifest = store.read_json(merged / store.MANIFEST)
    assert manifest["status"] == "complete" and len(manifest["merged_from"]) == 2
    plain = run_suite(load_suite(path), RunOptions(results=tmp_path / "plain", inline=True))
    assert _cases(merged) == _cases(plain.run_dir)
    assert set(_cases(merged).values()) == {"ok"}


def _run(tmp_path, name, cpu, throughput, pricing="", first_repeat=0):
    """A hand-made run of one case at three repeats, on a machine with CPU ``cpu``."""
    from tests.test_store import SUITE, make_result

    run = tmp_path / name
    (run / store.CASES).mkdir(parents=True)
    text = SUITE + pricing
    env = {"cpu_model": cpu, "torch": "2.13.0", "host": name}
    suite = {"name": "t", "path": "t.toml", "text": text, "sha256": "same"}
    manifest = {"run_id": name, "suite": suite, "environment": env, "status": "complete"}
    store.write_json_atomic(run / store.MANIFEST, manifest)
    from bench.results.schema import Metric

    for i, v in enumerate(throughput, start=first_repeat):
        r = make_result(metrics=[Metric("throughput_tokens", v, "tokens/s", "t")], repeat=i)
        store.write_json_atomic(store.case_path(run, r.case_id, i), r.to_json())
    return run


def test_runs_of_different_machines_merge_only_when_asked(tmp_path):
    a = _run(tmp_path, "a", "AMD EPYC", [100, 101, 99])
    b = _run(tmp_path, "b", "Intel Xeon", [200, 202, 198], first_repeat=3)
    with pytest.raises(UserError, match=r"cpu: AMD EPYC vs Intel Xeon.*--allow-mixed"):
        merge_runs([a, b], tmp_path / "out")
    merged = merge_runs([a, b], tmp_path / "out", allow_mixed=True)
    manifest = store.read_json(merged / store.MANIFEST)
    assert manifest["mixed_environments"] == ["cpu: AMD EPYC vs Intel Xeon"]


def test_machines_compare_case_by_case_with_cost_per_million_tokens(tmp_path):
    pricing = "\n[pricing]\ncpu = 1.0\ngpu = 3.6\n"
    a = _run(tmp_path, "a", "AMD EPYC", [100, 101, 99], pricing)
    b = _run(tmp_path, "b", "H200", [2000, 2020, 1980], pricing)
    merged = merge_machines([f"cpu={a}", f"gpu={b}"], tmp_path / "out")
    manifest = store.read_json(merged / store.MANIFEST)
    assert set(manifest["machines"]) == {"cpu", "gpu"}
    df = store.load_results(merged)
    assert sorted(df.model.unique()) == ["tinygpt-s@cpu", "tinygpt-s@gpu"]  # own groups
    table = section(df, manifest)
    (cpu, gpu) = table["rows"]
    assert cpu[1] == "cpu" and gpu[1] == "gpu"
    # 1.0 per hour at 100 tokens/s: 1/3600/100 x 1e6 = 2.78 per million tokens
    assert cpu[6].startswith("2.78") and gpu[6].startswith("0.5")
    assert cpu[7] == "gpu" and cpu[8] == "gpu"  # the intervals separate: named
    assert gpu[4].startswith("20")  # 20x the first machine's tokens/s
    with pytest.raises(UserError, match="repeat"):
        merge_machines([f"x={a}", f"x={b}"], tmp_path / "out")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--executor", "slurm"], "no `sbatch` on this machine's PATH"),
        (["--executor", "local", "--slurm", "bogus=1"], "--slurm: Parameter 'bogus'"),
        (["--executor", "local", "--shard", "1/2"], "drop --shard"),
        (["--nnodes", "2"], "needs --rdzv-endpoint"),
        (["--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "h:1"], "need 0 <= rank"),
    ],
)
def test_cluster_options_that_cannot_work_are_one_line(
    tmp_path, monkeypatch, capsys, args, message
):
    from bench.cli import main

    monkeypatch.setattr("shutil.which", lambda name: None)  # no Slurm here, whatever the host
    path = tmp_path / "groups.toml"
    path.write_text(TWO_GROUPS)
    assert main(["run", str(path), "--results", str(tmp_path / "r"), *args]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert message in line
