"""The README's main command, end to end: the smoke suite runs and every case is ok."""

import subprocess
import sys
from pathlib import Path

import pytest

from bench import load_results

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_smoke_suite_runs_end_to_end(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", "suites/smoke.toml", "--results", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Summary" in proc.stderr
    df = load_results(tmp_path)
    assert set(df.status) == {"ok"}
    assert df.case_id.nunique() == 8 and set(df.repeat) == {0, 1}
    # Time, memory and energy for every case, each with a unit and a method.
    per_case = df.groupby("case_id").metric.apply(set)
    for needed in (
        "latency_median",
        "memory_load_peak_rss",
        "memory_prefill_peak_rss",
        "energy_per_token",
    ):
        assert all(needed in m for m in per_case), needed
    assert df.unit.notna().all() and df.method.notna().all()
    nonzero = df[(df.metric == "params_nonzero_fraction") & df.workload.str.startswith("forward")]
    sparsity = nonzero.groupby("techniques").value.max()
    # Pruned fractions of the Linear weights show up in the whole model's non-zero count.
    assert sparsity["baseline"] > sparsity["prune-l1-0.5"] > sparsity["prune-l1-0.9"]
    manifest = next(tmp_path.glob("*/manifest.json")).read_text()
    assert '"torch"' in manifest and '"git"' in manifest
