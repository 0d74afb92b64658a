import math

import numpy as np
import pytest

from bench.analysis import stats
from bench.analysis.console import console_rows
from bench.results.store import results_frame
from bench.telemetry.series import describe_series, median_ci


def test_summary_of_known_samples():
    s = describe_series([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s["median"] == 3.0 and s["n"] == 5
    assert s["p10"] == pytest.approx(1.4) and s["p90"] == pytest.approx(61.6)
    assert s["iqr"] == pytest.approx(2.0)
    assert s["cv"] == pytest.approx(s["std"] / s["mean"])


def test_single_sample_has_no_spread_rather_than_zero():
    s = describe_series([2.0])
    assert s["median"] == 2.0 and math.isnan(s["cv"]) and math.isnan(s["std"])


def test_empty_is_an_error():
    with pytest.raises(ValueError):
        describe_series([])


def test_median_ci_is_the_order_statistic_interval_and_absent_where_it_cannot_reach_95():
    # n = 7: (x_(1), x_(7)) covers 1 - 2/128 = 98.4%, (x_(2), x_(6)) only 87.5%
    assert median_ci([7.0, 1.0, 2.0, 6.0, 3.0, 4.0, 5.0]) == (1.0, 7.0)
    # n = 20: the 6th and 15th of the sorted samples (coverage 95.9%)
    assert median_ci([float(v) for v in range(20, 0, -1)]) == (6.0, 15.0)
    # min and max of 5 cover 93.75%: no interval rather than one that claims 95%
    assert all(math.isnan(v) for v in median_ci([1.0, 2.0, 3.0, 4.0, 5.0]))
    # many samples (2**n overflows a float from 1024): about n/2 -+ 1.96 sqrt(n)/2
    lo, hi = median_ci([float(v) for v in range(1, 2001)])
    assert 950 <= lo < 1000 < hi <= 1052


def _result(case_id, techniques, values, status="ok", workload="forward"):
    """One case's repeats as result records (what a run writes), one value per repeat."""
    out = []
    for i, value in enumerate(values):
        out.append(
            {
                "case_id": case_id,
                "repeat": i,
                "run_id": "run",
                "status": status,
                "error": None if status == "ok" else "boom",
                "started": f"t{i}",
                "case": {
                    "model": {"name": "m", "label": "m", "params": {}},
                    "workload": {"name": workload, "label": "w", "params": {}},
                    "techniques": [{"name": t, "label": t, "params": {}} for t in techniques],
                },
                "metrics": []
                if status != "ok"
                else [{"name": "latency_median", "value": value, "unit": "s", "method": "x"}],
            }
        )
    return out


def test_console_rows_orient_the_ratio_and_give_no_interval_below_three_runs():
    rows = console_rows(
        results_frame(
            _result("m/w/baseline", ["baseline"], [0.02, 0.021, 0.019])
            + _result("m/w/fast", ["prune"], [0.010, 0.0105, 0.0095])  # half the latency
            + _result("m/w/two", ["prune"], [0.01, 0.03])
            + _result("m/w/bad", ["prune"], [None], status="failed")
        )
    )
    by_id = {r.case_id: r for r in rows}
    assert by_id["m/w/baseline"].vs_baseline is None
    fast = by_id["m/w/fast"].vs_baseline
    # Latency halved is a 2x speed-up, not 0.5x: the ratio is oriented so > 1 is better.
    assert fast.value == pytest.approx(2.0, rel=0.02) and fast.low > 1.5 and fast.high < 2.7
    two = by_id["m/w/two"].vs_baseline
    assert not two.has_interval and "2 runs" in two.describe()
    # the center is the geometric mean, the center the ratio is built around
    assert by_id["m/w/two"].value == pytest.approx(math.sqrt(0.01 * 0.03))
    assert by_id["m/w/bad"].status == "failed" and by_id["m/w/bad"].vs_baseline is None
    assert by_id["m/w/bad"].note == "boom"


def test_ratio_is_oriented_and_exact_for_deterministic_figures():
    r = stats.ratio([2.0, 2.0, 2.0], [1.0, 1.0, 1.0])
    assert (r.value, r.low, r.high) == (2.0, 2.0, 2.0) and r.method.startswith("exact")
    r = stats.ratio([1.0, 1.1, 0.9], [2.0, 2.2, 1.8])
    assert r.value == pytest.approx(0.5, rel=0.01) and r.high < 1  # case is half the baseline


def test_the_issue_bimodal_example_gives_a_wide_interval_not_a_point():
    # tinygpt-s int8 dynamic repeats 31.1, 14.2, 14.7 ms against a steady baseline.
    r = stats.ratio([24.2, 23.0, 25.1], [31.1, 14.2, 14.7])
    assert r.low < 1 < r.high and r.high / r.low > 4
    assert stats.outlying_runs([31.1, 14.2, 14.7]) == [0]
    assert stats.outlying_runs([14.9, 14.2, 14.7]) == []


@pytest.mark.parametrize("n", [3, 5, 10])
def test_ratio_interval_covers_the_true_ratio_95_percent_of_the_time(n):
    """Known log-normal run-to-run noise: the 95% interval must hold the true ratio in
    92-98% of 2,000 simulated comparisons, at the small n it is used at."""
    rng = np.random.default_rng(1234 + n)
    true = 1.3
    hits = 0
    draws = 2000
    for _ in range(draws):
        base = np.exp(rng.normal(math.log(10.0), 0.15, n))
        case = np.exp(rng.normal(math.log(10.0 * true), 0.10, n))  # unequal spread
        r = stats.ratio(case, base)
        hits += r.low <= true <= r.high
    assert 0.92 <= hits / draws <= 0.98


def test_two_runs_percentile_bootstrap_would_have_undercovered():
    """Why no interval below 3 runs: the old min/max 'bootstrap' over 2 runs per side
    covered the true ratio far less often than 95%."""
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(1000):
        c, b = np.exp(rng.normal(0, 0.1, 2)), np.exp(rng.normal(0, 0.1, 2))
        ratios = [x / y for x in c for y in b]
        hits += min(ratios) <= 1.0 <= max(ratios)
    assert hits / 1000 < 0.9
    assert not stats.ratio([1.0, 1.1], [1.0, 1.2]).has_interval


def test_winner_named_only_when_its_interval_clears_the_runner_up():
    clear = stats.winner({"a": [1.0, 1.02, 0.98], "b": [2.0, 2.1, 1.9]}, higher_is_better=False)
    assert clear.best == "a" and clear.margin.low > 1
    noisy = stats.winner({"a": [1.0, 1.5, 0.7], "b": [1.1, 0.8, 1.6]}, higher_is_better=False)
    assert noisy.best is None and noisy.leader in ("a", "b")
    assert "no clear winner (within noise" in noisy.describe()
    few = stats.winner({"a": [1.0], "b": [2.0]}, higher_is_better=True)
    assert few.best is None and few.leader == "b"
    exact = stats.winner({"a": [1.0], "b": [2.0]}, higher_is_better=True, deterministic=True)
    assert exact.best == "b" and exact.margin.method == "exact (deterministic figure)"
    tie = stats.winner({"a": [3.0], "b": [3.0]}, higher_is_better=False, deterministic=True)
    assert tie.best is None and tie.describe().startswith("no difference")


def test_center_interval_is_a_t_interval_of_the_geometric_mean():
    assert stats.center_interval([1.0, 2.0]) is None  # below 3 runs: none
    low, high = stats.center_interval([1.0, 1.1, 1.2, 1.3])
    geo = float(np.exp(np.mean(np.log([1.0, 1.1, 1.2, 1.3]))))
    assert low < geo < high and high / geo == pytest.approx(geo / low)


def test_exact_figures_with_a_zero_still_have_a_ratio_and_a_winner():
    # No optimizer state (SGD) against some: 0 bytes is a clear, exact win.
    assert stats.ratio([0, 0], [8, 8], deterministic=True).describe() == "0× (exact)"
    assert stats.ratio([0.0], [0.0], deterministic=True).value == 1.0
    w = stats.winner({"sgd": [0, 0, 0], "adam": [8, 8, 8]}, False, deterministic=True)
    assert w.best == "sgd"
    assert math.isnan(stats.ratio([0, 0], [8, 8]).value)  # measured figures: no log ratio
