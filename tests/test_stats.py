import math

import pytest

from bench.stats import summarize
from bench.summary import summarize_results


def test_summary_of_known_samples():
    s = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s["median"] == 3.0 and s["n"] == 5
    assert s["p10"] == pytest.approx(1.4) and s["p90"] == pytest.approx(61.6)
    assert s["iqr"] == pytest.approx(2.0)
    assert s["cv"] == pytest.approx(s["std"] / s["mean"])


def test_single_sample_has_no_spread_rather_than_zero():
    s = summarize([2.0])
    assert s["median"] == 2.0 and math.isnan(s["cv"]) and math.isnan(s["std"])


def test_empty_is_an_error():
    with pytest.raises(ValueError):
        summarize([])


def _result(case_id, techniques, value, status="ok", workload="forward"):
    return {
        "case_id": case_id,
        "status": status,
        "error": None if status == "ok" else "boom",
        "case": {
            "model": {"label": "m"},
            "workload": {"name": workload, "label": "w"},
            "techniques": [{"name": t} for t in techniques],
        },
        "metrics": []
        if status != "ok"
        else [{"name": "latency_median", "value": value, "unit": "s"}],
    }


def test_summary_rows_compare_with_the_baseline_of_the_same_group():
    rows = summarize_results(
        [
            _result("m/w/baseline", ["baseline"], 0.02),
            _result("m/w/prune", ["prune"], 0.01),
            _result("m/w/prune", ["prune"], 0.03),  # second repeat: median of 0.01, 0.03
            _result("m/w/bad", ["prune"], None, status="failed"),
        ]
    )
    by_id = {r.case_id: r for r in rows}
    assert by_id["m/w/baseline"].speedup == 1.0
    assert by_id["m/w/prune"].value == pytest.approx(0.02) and by_id["m/w/prune"].speedup == 1.0
    assert by_id["m/w/prune"].spread == pytest.approx(1.0) and by_id["m/w/baseline"].spread is None
    assert by_id["m/w/bad"].status == "failed" and by_id["m/w/bad"].speedup is None
    assert by_id["m/w/bad"].note == "boom"
