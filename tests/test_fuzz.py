"""A small sample of the fuzzing of every input kind (``tests/fuzzing.py``); the benchmark
``benchmarks/fuzz.py`` runs at least 1,000 cases a kind. A failure is shrunk by Hypothesis
to the smallest input that shows it."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzzing import FAILURES, KINDS, Tally, make_seed, run_one


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    return make_seed(tmp_path_factory.mktemp("fuzz") / "seed")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_broken_input_is_refused_or_skipped_never_a_traceback(kind, seed, tmp_path):
    tally = Tally()
    counter = iter(range(10**6))

    # The same cases every run (a CI must not turn red on a new draw): the benchmark, and
    # its --seed, are where new cases are looked for.
    @settings(max_examples=12 if kind != "case_result_report" else 4, deadline=None,
              database=None, derandomize=True, suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.data())
    def one(data):
        tmp = tmp_path / str(next(counter))
        tmp.mkdir()
        verdict = run_one(KINDS[kind], data, seed, tmp, tally)
        if verdict in FAILURES:  # the whole record: pytest would cut a dict's repr short
            failure = tally.failures[-1]
            pytest.fail("\n".join(f"{k}: {v}" for k, v in failure.items()), pytrace=False)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one()
    assert sum(tally.counts.values()) >= 4


def test_the_oracle_tells_a_traceback_an_unclear_refusal_and_a_garbage_figure():
    from tests.fuzzing import Outcome

    names = ["m.json"]
    assert Outcome(None, "", "", "Traceback ...").verdict(names) == "traceback"
    assert Outcome(2, "", "bench: error: m.json: truncated\n").verdict(names) == "refused"
    assert Outcome(2, "", "bench: error: nothing to compare\n").verdict(names) == "unclear"
    assert Outcome(2, "", "bench: error: a\nbench: error: m.json\n").verdict(names) == "unclear"
    assert Outcome(0, "latency nan s", "").verdict(names) == "garbage"
    assert Outcome(0, "", "bench: warning: m.json: NaN is not JSON; skipped").verdict(names) == (
        "skipped"
    )
    assert Outcome(0, "1.02x [0.98, 1.05]", "").verdict(names) == "accepted"
