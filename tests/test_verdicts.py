"""The decision rule (bench.analysis.verdicts: between runs, pairs, decide), suite gates and
human units."""

import math

import numpy as np
import pytest

from bench.analysis import verdicts
from bench.analysis.levels import Spread
from bench.analysis.units import human
from bench.errors import UserError
from bench.results.metric_info import DEFAULT_GATES, Tolerance
from bench.spec.suite import parse_suite

REL5 = Tolerance("relative", 0.05)
V = verdicts.Verdict


def runs(center, n, cv=0.01, seed=0):
    rng = np.random.default_rng(seed)
    return list(center * np.exp(rng.normal(0, cv, n)))


def invocations(center, k, m=5, between=0.01, within=0.01, seed=0):
    """``k`` invocations of ``m`` process runs: each invocation drifts by ``between`` (sd of
    log), its process runs by ``within`` around it."""
    rng = np.random.default_rng(seed)
    return [list(center * np.exp(rng.normal(rng.normal(0, between), within, m))) for _ in range(k)]


def judge(base, cand, metric="latency_median", higher=False, tol=REL5, det=False, known=(),
          rule=verdicts.SIGNIFICANT):  # fmt: skip
    """``base``/``cand``: lists of invocations (each a list of process values)."""
    ch = verdicts.between_runs(base, cand, metric, higher, tol, det, known)
    return verdicts.decide([ch], rule=rule)[0]


def test_a_clear_slowdown_is_a_regression_and_a_speedup_an_improvement():
    slow = judge(invocations(10e-3, 4), invocations(12e-3, 4, seed=1))
    assert slow.verdict == V.REGRESSION and slow.low > 0
    assert "1.2" in slow.describe() and slow.evidence == "run" and slow.n_base == 4
    fast = judge(invocations(10e-3, 4), invocations(8e-3, 4, seed=1))
    assert fast.verdict == V.IMPROVED


def test_direction_comes_from_the_metric():
    # Throughput down 20% is worse; the same numbers as a latency would be better.
    b, c = invocations(100, 4), invocations(80, 4, seed=1)
    assert judge(b, c, "throughput_tokens", True).verdict == V.REGRESSION
    assert judge(b, c, "latency_median", False).verdict == V.IMPROVED


def test_one_run_a_side_is_never_decided_on_its_process_runs():
    """Process runs share their invocation's drift: with one run a side and nothing known
    of how runs drift, even a 30% change with tight process runs is INCONCLUSIVE."""
    ch = judge(invocations(10e-3, 1, within=0.001), invocations(13e-3, 1, within=0.001, seed=1))
    assert ch.verdict == V.INCONCLUSIVE and "bench calibrate" in ch.why and not ch.tested
    assert ch.describe().startswith("1.3")  # the estimate is still shown


def test_known_drift_decides_one_run_a_side_and_says_where_it_came_from():
    known = [Spread(0.02**2, 12, 5, 0.01**2, "calibration")]
    ch = judge([runs(10e-3, 5)], [runs(13e-3, 5, seed=1)], known=known)
    assert ch.verdict == V.REGRESSION and ch.df == 12
    assert ch.basis == "run sd 2% (calibration 12 df)"
    noisy = [Spread(0.20**2, 12, 5, 0.01**2, "calibration")]
    assert judge([runs(10e-3, 5)], [runs(13e-3, 5, seed=1)], known=noisy).verdict == V.INCONCLUSIVE


def test_a_known_spread_is_moved_to_the_runs_number_of_processes():
    """tau^2(m) = sigma_b^2 + sigma_w^2 / m: a calibration made at 5 process runs says more
    noise for invocations of 1 process run, never less than the within part."""
    s = Spread(var=0.01**2 + 0.05**2 / 5, df=9, m=5, within=0.05**2, source="x")
    assert s.at(5) == s.var
    assert s.at(1) == pytest.approx(0.01**2 + 0.05**2)
    assert s.at(100) == pytest.approx(0.01**2 + 0.05**2 / 100)
    tiny = Spread(var=0.001**2, df=9, m=5, within=0.05**2, source="x")  # var below within/m
    assert tiny.at(1) == pytest.approx(0.05**2)


def test_the_sides_own_runs_are_pooled_with_what_is_known():
    base, cand = invocations(1.0, 3, between=0.03), invocations(1.0, 3, between=0.03, seed=5)
    alone = verdicts.between_runs(base, cand, "latency_median", False, REL5)
    assert alone.df == 4 and alone.basis.startswith("run sd") and "the sides 4 df" in alone.basis
    known = [Spread(0.03**2, 10, 5, math.nan, "history 'nightly'")]
    both = verdicts.between_runs(base, cand, "latency_median", False, REL5, known=known)
    assert both.df == 14 and "history 'nightly' 10 df" in both.basis


@pytest.mark.parametrize("k", [2, 4])
def test_a_a_at_real_drift_raises_no_more_false_verdicts_than_alpha(k):
    """The old rule's failure: invocation drift (sd 5%) far above the process spread (1%).
    Runs as the unit keep false verdicts of a 6-metric comparison at or below ALPHA."""
    rng = np.random.default_rng(k)
    false = 0
    draws = 400
    for _ in range(draws):
        rows = [
            verdicts.between_runs(
                invocations(1.0, k, between=0.05, seed=int(rng.integers(1e9))),
                invocations(1.0, k, between=0.05, seed=int(rng.integers(1e9))),
                "latency_median", False, REL5,
            )
            for _ in range(6)
        ]  # fmt: skip
        false += any(c.verdict in (V.REGRESSION, V.IMPROVED) for c in verdicts.decide(rows))
    assert false / draws <= 0.02  # ALPHA = 0.01, plus the sampling error of 400 draws


def test_the_interval_shown_is_the_one_that_decided():
    """Bonferroni over the comparison's tests: the interval is at 1 - ALPHA / tests, and a
    REGRESSION's interval excludes no change."""
    rows = [verdicts.between_runs(invocations(1.0, 4, seed=s), invocations(1.3, 4, seed=s + 9),
                                  "latency_median", False, REL5) for s in range(5)]  # fmt: skip
    decided = verdicts.decide(rows)
    assert all(ch.level == pytest.approx(verdicts.ALPHA / 5) for ch in decided)
    for ch in decided:
        assert (ch.verdict == V.REGRESSION) == (ch.low > 0)
        assert ch.p < ch.level if ch.verdict == V.REGRESSION else True


def test_ok_needs_the_whole_interval_inside_the_tolerance():
    ok = judge(
        invocations(10e-3, 10, between=0.005), invocations(10.1e-3, 10, between=0.005, seed=1)
    )
    assert ok.verdict == V.OK
    assert math.exp(ok.high) < 1.05 and math.exp(ok.low) > 1 / 1.05


def test_too_noisy_is_inconclusive_with_runs_to_add():
    # +2% (inside the 5% tolerance) measured with a 20% drift between runs.
    def sides(spread):
        base = [[c * 1.0] * 3 for c in (1.0, 1 + spread, 1 - spread)]
        return base, [[v * 1.02 for v in r] for r in base]

    noisy = judge(*sides(0.2))
    assert noisy.verdict == V.INCONCLUSIVE and noisy.more > 50
    tighter = judge(*sides(0.05))
    assert tighter.verdict == V.INCONCLUSIVE and tighter.more < noisy.more


def test_significant_but_inside_the_tolerance_is_not_a_regression():
    # +2% measured very precisely: real, but within a 5% tolerance.
    small = judge(
        invocations(10e-3, 10, between=0.002), invocations(10.2e-3, 10, between=0.002, seed=1)
    )
    assert small.p < 0.001 and small.verdict == V.OK


def test_the_beyond_tolerance_rule_needs_the_whole_interval_past_the_band():
    """+6% against a 5% tolerance, measured well: significant and beyond by estimate (the
    default calls it), but its interval reaches back inside the band (the other rule
    does not)."""
    b, c = invocations(1.0, 8, between=0.01), invocations(1.06, 8, between=0.01, seed=3)
    assert judge(b, c).verdict == V.REGRESSION
    strict = judge(b, c, rule=verdicts.BEYOND)
    assert strict.verdict == V.INCONCLUSIVE and math.exp(strict.low) < 1.05
    far = judge(b, invocations(1.3, 8, between=0.01, seed=3), rule=verdicts.BEYOND)
    assert far.verdict == V.REGRESSION and math.exp(far.low) > 1.05


def test_exact_metrics_compare_exactly_at_any_number_of_runs():
    exact = Tolerance("exact")
    same = judge([[1000.0]], [[1000.0]], "params_total", tol=exact, det=True)
    assert same.verdict == V.OK and same.describe() == "1× (exact)"
    more = judge([[1000.0]], [[1001.0]], "params_total", tol=exact, det=True)
    assert more.verdict == V.REGRESSION
    fewer = judge([[1000.0]], [[999.0]], "params_total", tol=exact, det=True)
    assert fewer.verdict == V.IMPROVED


def test_absolute_tolerance_is_a_difference_in_the_metric_unit():
    tol = Tolerance("absolute", 0.01)
    worse = judge([[3.00]], [[3.02]], "heldout_bits_per_byte", tol=tol, det=True)
    assert worse.verdict == V.REGRESSION and worse.scale == "linear"
    assert worse.describe().startswith("+0.02")
    assert judge([[3.00]], [[3.005]], "heldout_bits_per_byte", tol=tol, det=True).verdict == V.OK


def test_pairs_cancel_drift_that_runs_cannot():
    """Adjacent A/B pairs share the machine's state: a +8% change under drift of 10% from
    pair to pair is decided on 20 pairs, and A/A is not."""
    rng = np.random.default_rng(11)
    drift = np.exp(rng.normal(0, 0.10, 20))
    base = list(drift * np.exp(rng.normal(0, 0.01, 20)))
    cand = list(drift * 1.08 * np.exp(rng.normal(0, 0.01, 20)))
    ch = verdicts.decide([verdicts.paired(base, cand, "latency_median", False, REL5)])[0]
    assert ch.verdict == V.REGRESSION and ch.evidence == "pair" and ch.df == 19
    same = list(drift * np.exp(rng.normal(0, 0.01, 20)))
    aa = verdicts.decide([verdicts.paired(base, same, "latency_median", False, REL5)])[0]
    assert aa.verdict == V.OK
    few = verdicts.paired(base[:2], cand[:2], "latency_median", False, REL5)
    assert not few.tested and "an interval needs 3" in few.why
    # the ABBA block is the unit: 20 pairs in 10 blocks have 9 df, and the estimate is the
    # mean of the blocks' means, the ratio of the two centers shown
    blocked = verdicts.paired(base, cand, "latency_median", False, REL5, blocks=np.arange(20) // 2)
    assert blocked.df == 9 and blocked.n_base == 20 and "in 10 blocks" in blocked.basis
    assert blocked.cand / blocked.base == pytest.approx(math.exp(blocked.estimate))


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


def test_invocations_with_fewer_process_runs_have_noisier_centers():
    """tau^2(m) per invocation: a candidate of 2 process runs against a base of 10 a run
    gets the larger variance of its own center, not the base's."""
    known = [Spread(var=0.01 + 0.04 / 10, df=20, m=10, within=0.04, source="calibration")]
    ch = verdicts.between_runs([[1.0] * 10], [[1.1, 1.1]], "latency_median", False, REL5,
                               known=known)  # fmt: skip
    expected = (0.01 + 0.04 / 10) + (0.01 + 0.04 / 2)  # sigma_b^2 + sigma_w^2 / m, each side
    assert ch.se == pytest.approx(math.sqrt(expected), rel=1e-6)
