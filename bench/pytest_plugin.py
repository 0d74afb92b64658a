"""pytest plugin (entry point ``pytest11``): performance gates with sound verdicts.

The ``perf`` fixture measures in process-level repeats and judges a test against a saved
baseline with the rule of ``bench compare`` (``bench.analysis.verdicts``)::

    def test_tokenize(perf):
        perf.time(tokenize, text)                # forked repeats, warm-up discarded

    @pytest.mark.perf(tolerance=0.10, metric="latency_median")
    def test_decode(perf):
        perf.case("suites/smoke.toml", "tinygpt-s-pydoc/generate-b1-p32-n32/baseline")

    def test_tokenize_work(perf):
        perf.count(tokenize, text)               # instructions, under valgrind (1% gate)

    def test_tokenize_profile(perf):
        table = perf.profile(tokenize, text)     # operator table and trace, never a gate

    pytest --perf-save main        # add this session to baseline "main" (run it 3+ times)
    pytest --perf-compare main     # REGRESSION fails, INCONCLUSIVE warns, no baseline skips

Without either option ``perf`` just measures and reports. A pytest session is one
invocation: the repeats of ``perf.time`` are forks of one pytest process and share its
drift, so they are process runs inside one invocation, and the baseline is judged with the
two-level rule: each saved session is one invocation, and how far sessions drift apart is
learnt from the baseline's own sessions (``--perf-save`` adds one per session of the same
code; three or more make a verdict possible). Baselines live in ``.perf/NAME.json``
(``--perf-dir``), with the facts that make them comparable (CPU model, CPUs available,
Python and torch minor versions).

The plugin adds the ``perf`` fixture, the ``perf`` marker, the ``--perf-*`` options and a
summary of the session's measurements, and nothing else: it is loaded in every project
that installs bench, so it changes no test that does not ask for ``perf``. (bench's own
test suite skips its ``gpu``-marked tests without CUDA in ``tests/conftest.py``.)
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import pytest

from bench.pytest_baseline import Measurement, PerfSession, sessions_of
from bench.pytest_counting import COUNT_CALLS, count_here, count_in_valgrind, counting_child

DEFAULT_REPEATS = 5  # process-level runs per measurement
DEFAULT_TOLERANCE = 0.05
DEFAULT_COUNT_TOLERANCE = 0.01  # instruction counts do not drift: 4x their resolution
MIN_CALLS = 5  # timed calls per repeat, at least ...
MIN_SECONDS = 0.05  # ... and until this much time was timed
MAX_CALLS = 10_000
WARMUP = 1  # calls per repeat whose timings are discarded


class PerfWarning(pytest.PytestWarning):
    """A perf measurement whose verdict against the baseline is INCONCLUSIVE."""


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("bench-perf", "performance gates (bench)")
    g.addoption("--perf-save", metavar="NAME", help="save perf measurements as baseline NAME")
    g.addoption(
        "--perf-compare", metavar="NAME", help="judge perf measurements against baseline NAME"
    )
    g.addoption("--perf-dir", default=".perf", metavar="DIR", help="baselines folder (.perf)")
    g.addoption(
        "--perf-beyond-tolerance",
        action="store_true",
        help="fail only when the whole interval lies beyond the tolerance",
    )
    g.addoption(
        "--perf-repeats",
        type=int,
        default=DEFAULT_REPEATS,
        metavar="N",
        help=f"process-level repeats per perf.time (default {DEFAULT_REPEATS})",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "perf(tolerance=0.05, metric='latency_median', repeats=5): how the perf fixture "
        "measures and judges this test",
    )
    config.stash[_SESSION] = PerfSession(config)


_SESSION = pytest.StashKey[PerfSession]()


class Perf:
    """The ``perf`` fixture: measure in process-level repeats, judge against a baseline."""

    def __init__(self, request: pytest.FixtureRequest):
        self._request = request
        self._session = request.config.stash[_SESSION]
        marker = request.node.get_closest_marker("perf")
        opts = dict(marker.kwargs) if marker else {}
        unknown = set(opts) - {"tolerance", "metric", "repeats"}
        if unknown:
            raise pytest.UsageError(f"@pytest.mark.perf: unknown argument(s) {sorted(unknown)}")
        self.tolerance = float(opts.get("tolerance", DEFAULT_TOLERANCE))
        self._count_tolerance = float(opts.get("tolerance", DEFAULT_COUNT_TOLERANCE))
        if not self.tolerance > 0:
            raise pytest.UsageError(f"@pytest.mark.perf: tolerance {self.tolerance} must be > 0")
        self.metric = opts.get("metric")
        self.repeats = int(opts.get("repeats", self._session.repeats))
        self._calls = 0
        self._profiles = 0  # perf.profile calls: not measurements, so keyed apart

    def time(self, fn, *args, **kwargs) -> Measurement:
        """Seconds per call of ``fn(*args, **kwargs)``: each repeat a forked process that
        discards its warm-up and times calls (at least 5, and at least 50 ms); the figure
        of a repeat is the median of its calls. Where ``fn`` initialised CUDA, every call is
        timed to the end of its GPU work (``torch.cuda.synchronize`` around it)."""
        from bench.run.forked import in_fork

        key = self._key()
        if counting_child():  # a counting child times nothing (it runs under valgrind)
            return _NOT_MEASURED
        self._check_baseline(key)
        _refuse_fork_after_cuda()

        def one_repeat() -> dict[str, Any]:
            import statistics

            from bench.telemetry.timer import time_calls

            call, clock, cuda = _warmed(fn, args, kwargs)
            first = time_calls(call, warmup=0, iterations=MIN_CALLS, clock=clock).values
            n = min(MAX_CALLS, max(MIN_CALLS, math.ceil(MIN_SECONDS / max(min(first), 1e-9))))
            rest = (
                time_calls(call, warmup=0, iterations=n, clock=clock).values
                if n > MIN_CALLS
                else []
            )
            return {"value": statistics.median(first + rest), "cuda": cuda}

        metric = self.metric or "latency_median"
        repeats = [in_fork(one_repeat) for _ in range(self.repeats)]
        method = "perf_counter_forked_repeats"
        if any(r["cuda"] for r in repeats):
            method = "perf_counter_cuda_synchronized_forked_repeats"
        values = [r["value"] for r in repeats]
        return self._judge(key, Measurement(metric, "s", values, method))

    def count(self, fn, *args, **kwargs) -> Measurement:
        """Instructions per call of ``fn(*args, **kwargs)``, counted by callgrind: this test
        runs again, alone, in a pytest under valgrind (tens of seconds: valgrind starts
        python and torch), which counts 3 calls after one warm-up at this point of the test
        and stops there. Counts do not drift, so one session decides against a saved one
        within the counter's resolution (``bench.analysis.verdicts``); the default
        tolerance is 1%. Skipped where valgrind is missing."""
        from bench.telemetry.callgrind import COUNT_ENV, COUNTERS

        key = self._key()
        if counting_child():  # the counting child: count here, or pass through
            if counting_child() == key:
                count_here(fn, args, kwargs)  # never returns
            return _NOT_MEASURED
        self._check_baseline(key)
        values = count_in_valgrind(self._request, key)
        method = (f"{COUNTERS['instructions']} (median of {COUNT_CALLS} calls; 1 intra-op "
                  f"thread; MKL_CBWR={COUNT_ENV['MKL_CBWR']}; perf.count)")  # fmt: skip
        m = Measurement("instructions", "instructions", values, method)
        return self._judge(key, m, self._count_tolerance)

    def profile(self, fn, *args, calls: int = 5, stack: bool = False, **kwargs) -> dict[str, Any]:
        """Where the time of ``fn(*args, **kwargs)`` goes, beside its timing: in a forked
        process, a warm-up call and ``calls`` unprofiled calls, then ``calls`` under
        torch.profiler (``bench.telemetry.profiler``). Writes the operator table to
        ``PERF_DIR/profiles/<test>.json`` and its Chrome/Perfetto trace beside it, and
        returns the table (``operators``, ``explained_share``, ``overhead``, ``trace``).
        Never a gate: profiled times carry the profiler's overhead."""
        from bench.filenames import hashed_name
        from bench.run.forked import in_fork

        if counting_child():
            return {}
        _refuse_fork_after_cuda()
        self._profiles += 1
        key = self._request.node.nodeid + (f"#{self._profiles}" if self._profiles > 1 else "")
        out = self._session.dir / "profiles" / hashed_name(key.replace("/", "__"), key)

        def one_process() -> dict[str, Any]:
            from bench.pytest_profiling import profile_call

            call, clock, cuda = _warmed(fn, args, kwargs)
            return profile_call(call, clock, cuda, calls, stack, out, key)

        table = in_fork(one_process)
        self._session.profiled[key] = table
        return table

    def case(self, suite: str | Path, case_id: str) -> Measurement:
        """A suite case, run as ``bench run`` runs it (its own processes, the suite's
        repeats); the figure is the marker's metric, else the workload's headline."""
        import glob
        import io

        from rich.console import Console

        from bench.run.suite_driver import RunOptions, run_suite
        from bench.spec import registry
        from bench.spec.suite import load_suite

        key = self._key()
        if counting_child():
            return _NOT_MEASURED
        self._check_baseline(key)
        s = load_suite(suite)
        case = next((c for c in s.cases if c.id == case_id), None)
        if case is None:
            raise pytest.UsageError(f"{suite}: no case {case_id!r} (see `bench list {suite}`)")
        metric = self.metric or registry.workloads.get(case.workload.name).meta["headline"]
        results = self._request.getfixturevalue("tmp_path_factory").mktemp("perf-case")
        opts = RunOptions(results=results, filter=glob.escape(case_id))
        outcome = run_suite(s, opts, Console(file=io.StringIO()))
        values, unit, method = [], "", ""
        for r in outcome.results:
            if r["status"] != "ok":
                pytest.fail(f"{case_id} r{r['repeat']}: {r['status']}: {r.get('error')}")
            for m in r["metrics"]:
                if m["name"] == metric and m["value"] is not None:
                    values.append(float(m["value"]))
                    unit, method = m["unit"], m["method"]
        if not values:
            raise pytest.UsageError(f"{case_id}: its results have no metric {metric!r}")
        return self._judge(key, Measurement(metric, unit, values, method))

    def _key(self) -> str:
        self._calls += 1
        nodeid = self._request.node.nodeid
        return nodeid if self._calls == 1 else f"{nodeid}#{self._calls}"

    def _check_baseline(self, key: str) -> None:
        if not self._session.compare:
            return
        tests, why = self._session.baseline()
        if why:
            pytest.skip(why)
        if key not in tests:
            pytest.skip(f"baseline {self._session.compare!r} has no measurement of {key}")

    def _judge(self, key: str, m: Measurement, tolerance: float | None = None) -> Measurement:
        """This session (one invocation) against the baseline's saved sessions, the session
        as the unit: Bonferroni over the baseline's tests (a test cannot wait for the
        others), the interval at that level."""
        self._session.measured[key] = m
        if not self._session.compare:
            return m
        from bench.analysis import verdicts
        from bench.results.metric_info import HIGHER_IS_BETTER, RESOLUTION, Tolerance

        tests, _ = self._session.baseline()
        base = tests[key]
        if base.get("metric") != m.metric:
            pytest.skip(f"baseline measured {base.get('metric')!r}, this run {m.metric!r}")
        tol = Tolerance("relative", self.tolerance if tolerance is None else tolerance)
        higher = HIGHER_IS_BETTER.get(m.metric, False)
        sessions = sessions_of(base)
        ch = verdicts.between_runs(sessions, [m.values], m.metric, higher, tol,
                                   resolution=RESOLUTION.get(m.metric, 0.0))  # fmt: skip
        rule = verdicts.BEYOND if self._session.beyond else verdicts.SIGNIFICANT
        (ch,) = verdicts.decide([ch], alpha=verdicts.ALPHA / max(1, len(tests)), rule=rule)
        m.verdict = str(ch.verdict)
        level = f", {verdicts.confidence_text(ch.level)} interval" if ch.tested else ""
        m.detail = (
            f"{m.metric} {ch.describe()} vs baseline {self._session.compare!r} "
            f"(tolerance {tol.describe()}, {len(sessions)} saved session"
            f"{'s' if len(sessions) != 1 else ''} vs this one{level})"
        )
        if ch.verdict == verdicts.Verdict.REGRESSION:
            pytest.fail(f"REGRESSION: {m.detail}", pytrace=False)
        if ch.verdict == verdicts.Verdict.INCONCLUSIVE:
            if ch.certain or (not ch.tested and len(sessions) >= 2):
                why = f"; {ch.why}" if ch.why else ""  # a count's bound, or why no interval
            elif not ch.tested:
                why = (
                    f"; the baseline holds {len(sessions)} session: save it from 3 or more "
                    "(run `pytest --perf-save NAME` again) to learn how sessions drift"
                )
            else:
                why = f"; ~{ch.more} more session{'s' if ch.more != 1 else ''}" if ch.more else ""
            warnings.warn(PerfWarning(f"INCONCLUSIVE: {m.detail}{why}"), stacklevel=3)
        return m


_NOT_MEASURED = Measurement("none", "", [], "not measured: the counting run of another call")


def _warmed(fn, args, kwargs):
    """``fn(*args, **kwargs)`` as a call, warmed up; the clock that times it (to the end of
    its GPU work where it initialised CUDA); whether it did."""
    from bench.telemetry.timer import PerfCounterClock, warm_up

    def call():
        return fn(*args, **kwargs)

    warm_up(call, WARMUP, PerfCounterClock())
    cuda = _cuda_initialised()
    return call, PerfCounterClock(_cuda_sync()) if cuda else PerfCounterClock(), cuda


def _cuda_initialised() -> bool:
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and torch.cuda.is_initialized()


def _cuda_sync():
    import torch

    return torch.cuda.synchronize


def _refuse_fork_after_cuda() -> None:
    """A forked child of a process that initialised CUDA cannot use CUDA: say so in one
    line instead of timing a crash."""
    if _cuda_initialised():
        pytest.fail(
            "perf.time forks its repeats, and CUDA is already initialised in this pytest "
            "process (a forked child cannot use it): keep CUDA work inside the timed function "
            "and out of the session before perf.time, or use perf.case",
            pytrace=False,
        )


@pytest.fixture
def perf(request: pytest.FixtureRequest) -> Perf:
    """Measure in process-level repeats; judged against ``--perf-compare NAME``."""
    return Perf(request)


def pytest_sessionfinish(session: pytest.Session) -> None:
    s = session.config.stash.get(_SESSION, None)
    if s is not None:
        s.write()


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    s = config.stash.get(_SESSION, None)
    if s is None or not (s.measured or s.profiled):
        return
    from bench.analysis.units import human

    tr = terminalreporter
    tr.section("perf")
    if s.profiled:
        from bench.pytest_profiling import summary_line

        for key, t in s.profiled.items():
            tr.write_line(summary_line(key, t))
    for key, m in s.measured.items():
        verdict = f"  {m.verdict}" if m.verdict else ""
        tr.write_line(f"{key}: {m.metric} {human(m.center, m.unit)} (geometric mean of "
                      f"{len(m.values)} runs){verdict}")  # fmt: skip
    if s.save:
        tr.write_line(f"saved as baseline {s.save!r}: {s.path(s.save)}")
