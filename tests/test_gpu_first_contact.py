"""benchmarks/gpu_first_contact.py: its whole plan dry-run on this CPU (tiny shapes, the
script's stand-in NVML), and how it records a step that raises, hangs or runs out of time."""

import json
import time
from dataclasses import replace

import pytest

from benchmarks import gpu_first_contact as fc

CUDA_ONLY = {"gpu_tests", "nccl"}  # nothing of these can run without a GPU


def records_of(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def figures_of(records):
    return {f["key"]: f for r in records for f in r["figures"]}


@pytest.mark.slow  # the whole script end to end (about 17 s): the slow session's
def test_the_dry_run_runs_every_step_and_prints_one_table_with_the_ranges(tmp_path, capsys):
    assert fc.main(["--dry-run", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out

    planned = [s.name for s in fc.STEPS]
    records = records_of(tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [r["step"] for r in records] == planned == [r["step"] for r in summary["steps"]]
    status = {r["step"]: r["status"] for r in records}
    assert status == {s: "plan" if s in CUDA_ONLY else "dry" for s in planned}, records
    assert summary["dry_run"] is True and summary["failed_steps"] == []

    # Every figure of the expectations table is there, with its range, in the files and the
    # table printed last (one row per figure, its expected range beside it).
    figures = figures_of(records)
    assert set(figures) == set(fc.CHECKS)
    assert figures["matmul_tflops"]["expected"] == "600..800 TFLOP/s"
    assert figures["compiled_tok_s"]["expected"] == ">= 1000 tok/s (goal)"
    table = printed[printed.rindex("\nstep ") :].splitlines()
    for record in records:
        rows = fc.figure_rows(record)
        assert len(rows) == len(record["figures"]) and all(row in table for row in rows)
        for row, f in zip(rows, record["figures"], strict=True):
            assert row.startswith(record["step"]) and fc.CHECKS[f["key"]].expected() in row

    # The harness's real code paths ran on the CPU: a figure computed, judged "dry".
    assert figures["event_wall_ratio"]["value"] > 0
    # The stand-in draws a constant 100 W: counter and power integral agree.
    assert figures["counter_vs_integral"]["value"] < 0.01
    assert figures["eager_status"]["value"] == figures["compiled_status"]["value"] == "ok"
    assert figures["eager_tok_s"]["value"] > 0 and figures["compiled_tok_s"]["value"] > 0
    assert figures["int4_status"]["value"] == figures["sparse24_status"]["value"] == "ok"
    assert 0 < figures["int4_bytes_ratio"]["value"] < 1
    assert figures["float8_status"]["verdict"] == figures["nccl_launch_ok"]["verdict"] == "plan"
    for name in ("decode-eager", "decode-static", "slice-baseline", "slice-int4"):
        assert json.loads((tmp_path / "cases" / f"{name}.json").read_text())["status"] == "ok"


def test_a_step_that_raises_or_hangs_is_recorded_and_the_next_one_runs(
    tmp_path, monkeypatch, capsys
):
    def boom(lab):
        raise RuntimeError("no such device\nsecond line")

    def hang(lab):
        time.sleep(30)

    steps = {s.name: s for s in fc.STEPS}
    monkeypatch.setattr(
        fc,
        "STEPS",
        [
            steps["preflight"],
            replace(steps["cuda"], fn=boom),
            replace(steps["matmul_timer"], fn=hang, budget_s=0.5),
            steps["copy_bandwidth"],
        ],
    )
    t0 = time.perf_counter()
    assert fc.main(["--dry-run", "--out", str(tmp_path)]) == 1
    assert time.perf_counter() - t0 < 15  # the hanging step was stopped at its budget
    records = {r["step"]: r for r in records_of(tmp_path)}
    assert records["cuda"]["status"] == "error"
    assert records["cuda"]["reason"] == "RuntimeError: no such device"
    assert "second line" in (tmp_path / "cuda.traceback.txt").read_text()
    assert records["matmul_timer"]["status"] == "timeout"
    assert records["preflight"]["status"] == records["copy_bandwidth"]["status"] == "dry"
    # A step that could not run still shows its figures' ranges, and why they are missing.
    timed_out = {f["key"]: f for f in records["matmul_timer"]["figures"]}
    assert timed_out["matmul_tflops"]["expected"] == "600..800 TFLOP/s"
    assert timed_out["matmul_tflops"]["verdict"] == "timeout"
    assert json.loads((tmp_path / "summary.json").read_text())["failed_steps"] == [
        "cuda",
        "matmul_timer",
    ]
    assert "RuntimeError: no such device" in capsys.readouterr().out


def test_steps_past_the_deadline_are_skipped_and_unknown_steps_refused(tmp_path, capsys):
    args = ["--dry-run", "--out", str(tmp_path), "--deadline", "0", "--only", "preflight,nccl"]
    assert fc.main(args) == 0
    records = records_of(tmp_path)
    assert [(r["step"], r["status"], r["reason"]) for r in records] == [
        ("preflight", "skipped", "out of time"),
        ("nccl", "skipped", "out of time"),
    ]
    assert all(f["verdict"] == "skipped" for f in figures_of(records).values())
    assert fc.main(["--dry-run", "--out", str(tmp_path), "--only", "preflight,nope"]) == 2
    assert "unknown step(s) nope" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "counts"),
    [
        ("..\n2 passed, 58 deselected in 3.98s\n", {"passed": 2, "deselected": 58}),
        ("F.\n1 failed, 1 passed, 1 error in 3s", {"failed": 1, "passed": 1, "errors": 1}),
        ("no tests ran in 0.01s", {}),
    ],
)
def test_pytest_counts_come_from_the_last_summary_line(text, counts):
    assert fc.pytest_counts(text) == counts


def test_checks_judge_ranges_goals_and_exact_answers():
    assert fc.Check("x", lo=1, hi=2).verdict(1.5) == "pass"
    assert fc.Check("x", lo=1, hi=2).verdict(3) == "fail"
    assert fc.Check("x", lo=1, hi=2).verdict("n/a") == "fail"
    assert fc.Check("x", lo=1000, goal=True).verdict(840) == "miss"
    assert fc.Check("x", equals="ok").verdict("failed: boom") == "fail"
    assert fc.Check("x").verdict(3) == "info"
