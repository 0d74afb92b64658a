import json
import math
import os

import pandas as pd
import pytest

from bench import load_results
from bench.results import store
from bench.results.schema import CaseResult, Metric
from bench.spec.suite import parse_suite

SUITE = """
name = "t"
[[models]]
name = "tinygpt-s"
weights = "random"
[[workloads]]
name = "forward"
baseline = false
[[techniques]]
name = "prune"
amount = [0.5]
"""


def make_result(status="ok", metrics=None, error=None, repeat=0):
    case = parse_suite(SUITE).cases[0]
    return CaseResult(
        case=case.to_json(),
        case_id=case.id,
        case_hash=case.hash,
        repeat=repeat,
        status=status,
        started="2026-01-01T00:00:00+00:00",
        ended="2026-01-01T00:00:01+00:00",
        wall_s=1.0,
        metrics=metrics or [],
        error=error,
        run_id="run1",
    )


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "x.json"
    store.write_json_atomic(path, {"v": 1})

    def boom(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        store.write_json_atomic(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temp file left behind


def test_not_measured_is_null_never_a_number(tmp_path):
    store.write_json_atomic(tmp_path / "x.json", {"cv": math.nan, "a": [math.inf, 1.0]})
    assert json.loads((tmp_path / "x.json").read_text()) == {"cv": None, "a": [None, 1.0]}


def test_round_trip_into_long_dataframe(tmp_path):
    run = tmp_path / "run1"
    ok = make_result(metrics=[Metric("latency_median", 0.01, "s", "perf_counter")])
    failed = make_result(status="failed", error="RuntimeError: boom", repeat=1)
    for r in (ok, failed):
        store.write_json_atomic(store.case_path(run, r.case_id, r.repeat), r.to_json())
    df = load_results(run)
    assert list(df.columns) == store.COLUMNS
    assert len(df) == 2
    row = df[df.status == "ok"].iloc[0]
    assert (row.metric, row.value, row.unit, row.method) == (
        "latency_median",
        0.01,
        "s",
        "perf_counter",
    )
    assert row.techniques == "prune-l1-0.5" and row.model == "tinygpt-s"
    assert json.loads(row.parameters)["techniques"] == [
        {
            "method": "l1_unstructured",
            "amount": 0.5,
            "n": 1,
            "over": "channels",
            "shrink": False,
            "execution": "dense",
        }
    ]
    bad = df[df.status == "failed"].iloc[0]
    assert bad.error == "RuntimeError: boom" and pd.isna(bad.metric) and math.isnan(bad.value)
    # A results root with several runs reads the same.
    assert len(load_results(tmp_path)) == 2


def test_truncated_file_is_reported_and_skipped(tmp_path):
    run = tmp_path / "run1"
    good = make_result(metrics=[Metric("m", 1.0, "1", "count")])
    store.write_json_atomic(store.case_path(run, good.case_id, 0), good.to_json())
    broken = store.case_path(run, "other", 0)
    broken.write_text('{"case_id": "other", "metr')
    with pytest.warns(UserWarning, match="truncated or not JSON"):
        df = load_results(run)
    assert list(df.case_id.unique()) == [good.case_id]


def test_finished_ok_ignores_failures_and_garbage(tmp_path):
    run = tmp_path / "run1"
    ok, failed = make_result(), make_result(status="timeout", repeat=1)
    for r in (ok, failed):
        store.write_json_atomic(store.case_path(run, r.case_id, r.repeat), r.to_json())
    (run / "cases" / "junk.json").write_text("{")
    assert store.finished_ok(run) == {(ok.case_id, 0)}


def test_case_file_names_are_safe_and_distinct():
    a = store.case_file_stem("m/forward-b1-s8/prune-l1-0.5", 0)
    assert a == "m__forward-b1-s8__prune-l1-0.5.r0"
    assert store.case_file_stem("m/w/t", 1) != store.case_file_stem("m/w/t", 0)
