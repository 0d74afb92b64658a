"""The decision rule (bench.analysis.verdicts.change/decide), suite gates and human units."""

import math

import numpy as np
import pytest

from bench.analysis import verdicts
from bench.analysis.units import human
from bench.errors import UserError
from bench.results.metric_info import DEFAULT_GATES, Tolerance
from bench.spec.suite import parse_suite

REL5 = Tolerance("relative", 0.05)
V = verdicts.Verdict


def runs(center, n, cv=0.01, seed=0):
    rng = np.random.default_rng(seed)
    return list(center * np.exp(rng.normal(0, cv, n)))


def judge(base, cand, metric="latency_median", higher=False, tol=REL5, det=False):
    return verdicts.decide([verdicts.change(base, cand, metric, higher, tol, det)])[0]


def test_a_clear_slowdown_is_a_regression_and_a_speedup_an_improvement():
    slow = judge(runs(10e-3, 5), runs(12e-3, 5, seed=1))
    assert slow.verdict == V.REGRESSION and slow.low > 0
    assert "1.2" in slow.describe()
    fast = judge(runs(10e-3, 5), runs(8e-3, 5, seed=1))
    assert fast.verdict == V.IMPROVED


def test_direction_comes_from_the_metric():
    # Throughput down 20% is worse; the same numbers as a latency would be better.
    assert (
        judge(runs(100, 5), runs(80, 5, seed=1), "throughput_tokens", True).verdict == V.REGRESSION
    )
    assert judge(runs(100, 5), runs(80, 5, seed=1), "latency_median", False).verdict == V.IMPROVED


def test_ok_needs_the_whole_interval_inside_the_tolerance():
    ok = judge(runs(10e-3, 10, cv=0.005), runs(10.1e-3, 10, cv=0.005, seed=1))
    assert ok.verdict == V.OK
    assert math.exp(ok.high) < 1.05 and math.exp(ok.low) > 1 / 1.05


def test_too_few_runs_or_too_much_noise_is_inconclusive_with_runs_to_add():
    two = judge([1.0, 1.1], [1.2, 1.3])
    assert two.verdict == V.INCONCLUSIVE and "an interval needs 3" in two.why
    assert two.more_runs == 1
    # +2% (inside the 5% tolerance) measured with a 20% spread: many runs to show it fits.
    noisy = judge([1.0, 1.2, 0.8], [1.02, 1.224, 0.816])
    assert noisy.verdict == V.INCONCLUSIVE and noisy.more_runs > 50
    tighter = judge([1.0, 1.05, 0.95], [1.02, 1.071, 0.969])
    assert tighter.verdict == V.INCONCLUSIVE and tighter.more_runs < noisy.more_runs


def test_significant_but_inside_the_tolerance_is_not_a_regression():
    # +2% measured very precisely: real, but within a 5% tolerance.
    small = judge(runs(10e-3, 10, cv=0.002), runs(10.2e-3, 10, cv=0.002, seed=1))
    assert small.p < 0.001 and small.verdict == V.OK


def test_exact_metrics_compare_exactly_at_any_number_of_runs():
    same = judge([1000.0], [1000.0], "params_total", tol=Tolerance("exact"), det=True)
    assert same.verdict == V.OK and same.describe() == "1× (exact)"
    more = judge([1000.0], [1001.0], "params_total", tol=Tolerance("exact"), det=True)
    assert more.verdict == V.REGRESSION
    fewer = judge([1000.0], [999.0], "params_total", tol=Tolerance("exact"), det=True)
    assert fewer.verdict == V.IMPROVED


def test_absolute_tolerance_is_a_difference_in_the_metric_unit():
    tol = Tolerance("absolute", 0.01)
    worse = judge([3.00], [3.02], "heldout_bits_per_byte", tol=tol, det=True)
    assert worse.verdict == V.REGRESSION and worse.scale == "linear"
    assert worse.describe().startswith("+0.02")
    assert judge([3.00], [3.005], "heldout_bits_per_byte", tol=tol, det=True).verdict == V.OK


def test_holm_adjusts_in_step_down_order():
    assert verdicts.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert verdicts.holm([]) == []


def test_holm_keeps_a_borderline_case_among_many_from_failing_the_gate():
    base, cand = [10.0, 10.4, 9.6, 10.2], [11.1, 11.6, 10.8, 11.3]  # +11%, p = 0.003
    alone = judge(base, cand)
    assert alone.p < verdicts.ALPHA and alone.verdict == V.REGRESSION
    quiet = [verdicts.change(runs(1, 4, seed=s), runs(1, 4, seed=s + 50), "latency_median",
                          False, REL5) for s in range(20)]  # fmt: skip
    family = verdicts.decide([verdicts.change(base, cand, "latency_median", False, REL5), *quiet])
    assert family[0].p_adjusted > alone.p and family[0].verdict == V.INCONCLUSIVE
    assert not any(c.verdict == V.REGRESSION for c in family)


def test_suite_gates_override_the_defaults_and_can_switch_one_off():
    suite = parse_suite(
        TINY
        + """
[gates]
latency_median = 0.10
heldout_bits_per_byte = { absolute = 0.02 }
params_total = "exact"
memory_prefill_peak_rss = "off"
"""
    )
    assert suite.gates["latency_median"] == Tolerance("relative", 0.10)
    assert suite.gates["heldout_bits_per_byte"] == Tolerance("absolute", 0.02)
    assert "memory_prefill_peak_rss" not in suite.gates
    assert suite.gates["ttft_median"] == DEFAULT_GATES["ttft_median"]


@pytest.mark.parametrize(
    "line, message",
    [
        (
            "latncy_median = 0.1",
            "x.toml: gates.latncy_median: unknown metric (did you mean 'latency_median'?)",
        ),
        (
            "latency_median = 0",
            "x.toml: gates.latency_median: tolerance 0: expected a positive fraction",
        ),
        ("latency_median = -0.1", "x.toml: gates.latency_median: tolerance -0.1: expected"),
        (
            "latency_median = { absolute = 0 }",
            "x.toml: gates.latency_median: tolerance {'absolute': 0}",
        ),
        ("latency_median = 'loose'", "x.toml: gates.latency_median: tolerance 'loose'"),
        ("latency_median = { wide = 1 }", "x.toml: gates.latency_median: tolerance {'wide': 1}"),
    ],
)
def test_bad_gates_name_the_file_and_key(line, message):
    with pytest.raises(UserError) as e:
        parse_suite(TINY + f"\n[gates]\n{line}\n", where="x.toml")
    assert str(e.value).startswith(message)


TINY = """
name = "t"
[[models]]
name = "tinygpt-s"
[[workloads]]
name = "forward"
"""


@pytest.mark.parametrize(
    "value, unit, text",
    [
        (0.01807, "s", "18.1 ms"),
        (12e-6, "s", "12 µs"),
        (2.5, "s", "2.5 s"),
        (3.337e8, "bytes", "334 MB"),
        (512, "bytes", "512 B"),
        (2.7e10, "bytes/s", "27 GB/s"),
        (14234.0, "tokens/s", "14.2k tokens/s"),
        (853_000, "count", "853k"),
        (0.713, "1", "0.713"),
        (math.nan, "s", "—"),
    ],
)
def test_human_units(value, unit, text):
    assert human(value, unit) == text
