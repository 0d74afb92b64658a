"""The README's main command, end to end: the smoke suite runs and every case is ok.

It uses the trained built-in model: the first run on a machine trains and caches it in
the user cache (about a minute on 2 cores); later runs reuse it.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import load_results
from bench.models.corpus import bigram_bits_per_byte

ROOT = Path(__file__).parents[1]
LEVELS = ["prune-l1-0", "prune-l1-0.3", "prune-l1-0.5", "prune-l1-0.7", "prune-l1-0.9"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.cli",
            "run",
            "suites/smoke.toml",
            "--results",
            str(out / "results"),
            "--reports",
            str(out / "reports"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return out, proc


@pytest.mark.slow
def test_smoke_suite_runs_end_to_end(smoke):
    out, proc = smoke
    assert "Summary" in proc.stdout  # results on stdout, progress on stderr
    df = load_results(out / "results")
    assert set(df.status) == {"ok"}
    assert df.case_id.nunique() == 12
    # Time, memory, energy and quality for every case, each with a unit and a method.
    per_case = df.groupby("case_id").metric.apply(set)
    for needed in (
        "latency_median",
        "memory_load_peak_rss",
        "memory_prefill_peak_rss",
        "energy_per_token",
        "heldout_bits_per_byte",
        "kl_to_baseline",
    ):
        assert all(needed in m for m in per_case), needed
    assert df.unit.notna().all() and df.method.notna().all()
    manifest = next(out.glob("results/*/manifest.json")).read_text()
    (report,) = out.glob("reports/smoke/*/report.html")
    assert "speed_vs_quality.png" in (report.parent / "report.md").read_text()
    assert '"torch"' in manifest and '"git"' in manifest


@pytest.mark.slow
def test_quality_degrades_monotonically_with_the_pruning_level(smoke):
    out, _ = smoke
    df = load_results(out / "results")
    forward = df[df.workload.str.startswith("forward")].pivot_table(
        index="techniques", columns="metric", values="value"
    )
    bpb = forward.loc[LEVELS, "heldout_bits_per_byte"].tolist()
    kl = forward.loc[LEVELS, "kl_to_baseline"].tolist()
    assert bpb == sorted(bpb) and bpb[-1] > bpb[0] + 0.5, bpb
    assert kl == sorted(kl) and kl[0] == pytest.approx(0.0, abs=1e-9), kl
    assert forward.loc["baseline", "top1_agreement"] == 1.0
    nonzero = forward.loc[["baseline", *LEVELS[1:]], "params_nonzero_fraction"].tolist()
    assert nonzero == sorted(nonzero, reverse=True)


@pytest.mark.slow
def test_the_trained_model_clearly_beats_a_bigram(smoke):
    out, _ = smoke
    case = json.loads(next(out.glob("results/*/cases/*forward*baseline*.json")).read_text())
    training = case["info"]["model"]["training"]
    assert training["held_out_bits_per_byte"] < bigram_bits_per_byte() - 0.5
    quality = {m["name"]: m["value"] for m in case["metrics"]}
    assert quality["heldout_bits_per_byte"] == pytest.approx(
        training["held_out_bits_per_byte"], rel=0.02
    )
