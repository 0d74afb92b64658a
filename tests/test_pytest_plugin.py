"""The pytest plugin's perf fixture and gates, through pytester (the plugin is loaded from
its pytest11 entry point, as in a user's project)."""

import json
import textwrap

import pytest

# pytester's in-process runs unload every module first imported inside them, and the
# extension modules of numpy (scipy.stats pulls numpy.fft) and torch refuse a second load
# in one process: they are imported here, outside the inner runs, first.
import scipy.stats  # noqa: F401
import torch  # noqa: F401

from bench.run.forked import ForkedError, in_fork
from tests.conftest import selftest_suite

SLEEPER = """
import time
import pytest

DELAY = {delay}

def test_sleep(perf):
    m = perf.time(time.sleep, DELAY)
    assert len(m.values) == 3

@pytest.mark.perf(tolerance=0.10, metric="latency_median")
def test_marked(perf):
    perf.time(time.sleep, 0.002)
"""


def run(pytester, delay, *args):
    pytester.makepyfile(test_perf=textwrap.dedent(SLEEPER.format(delay=delay)))
    return pytester.runpytest("-p", "no:cacheprovider", "--perf-repeats=3", *args)


def test_a_doubled_sleep_fails_against_its_baseline_and_the_same_sleep_passes(pytester):
    """Each session is one invocation: a baseline saved once cannot judge (nothing says how
    sessions drift); saved from three sessions it can."""
    run(pytester, 0.010, "--perf-save", "main").assert_outcomes(passed=2)
    once = run(pytester, 0.020, "--perf-compare", "main", "-W", "default")
    once.assert_outcomes(passed=2)  # INCONCLUSIVE warns
    once.stdout.fnmatch_lines(["*INCONCLUSIVE*the baseline holds 1 session: save it from 3*"])
    for _ in range(2):
        run(pytester, 0.010, "--perf-save", "main").assert_outcomes(passed=2)
    data = json.loads((pytester.path / ".perf" / "main.json").read_text())
    entry = data["tests"]["test_perf.py::test_sleep"]
    assert entry["metric"] == "latency_median" and len(entry["sessions"]) == 3
    values = [v for s in entry["sessions"] for v in s["values"]]
    assert len(values) == 9 and min(values) > 0.0095 and max(values) < 0.02
    assert "CPU model" in data["environment"]

    slower = run(pytester, 0.020, "--perf-compare", "main")
    slower.assert_outcomes(passed=1, failed=1)
    slower.stdout.fnmatch_lines(
        ["*REGRESSION: latency_median *× * vs baseline 'main' (tolerance ±5%, 3 saved sessions "
         "vs this one, 99.5% interval)"]
    )  # fmt: skip

    same = run(pytester, 0.010, "--perf-compare", "main")
    assert same.ret == 0
    same.assert_outcomes(passed=2)


CUDA_TESTS = """
import time
import torch

def initialises_cuda():
    # what a function that puts work on a GPU does to torch, faked: CUDA is initialised
    # from its first call on, and synchronize drains the queue (in the forked child only)
    torch.cuda.is_initialized = lambda: True
    torch.cuda.synchronize = lambda: None
    time.sleep(0.001)

def test_a_function_on_cuda_is_timed_to_the_end_of_its_gpu_work(perf):
    m = perf.time(initialises_cuda)
    assert m.method == "perf_counter_cuda_synchronized_forked_repeats"

def test_no_fork_after_cuda_is_initialised(perf, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    perf.time(time.sleep, 0.001)
"""


def test_perf_time_synchronizes_cuda_and_refuses_to_fork_after_it(pytester):
    pytester.makepyfile(test_cuda=CUDA_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "--perf-repeats=2")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*perf.time forks its repeats, and CUDA is already initialised in this pytest process*"]
    )


def test_without_a_baseline_perf_tests_skip_with_the_reason(pytester):
    result = run(pytester, 0.001, "--perf-compare", "nothing", "-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*no perf baseline 'nothing' at .perf*nothing.json*"])


def test_a_baseline_from_another_setup_skips(pytester):
    run(pytester, 0.001, "--perf-save", "main").assert_outcomes(passed=2)
    path = pytester.path / ".perf" / "main.json"
    data = json.loads(path.read_text())
    data["environment"]["CPU model"] = "Another CPU"
    path.write_text(json.dumps(data))
    result = run(pytester, 0.001, "--perf-compare", "main", "-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*from another setup (CPU model: Another CPU vs*"])


def test_without_options_perf_measures_and_reports(pytester):
    result = run(pytester, 0.001)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["*perf*", "test_perf.py::test_sleep: latency_median 1.* ms (geometric mean of 3 runs)"]
    )
    assert not (pytester.path / ".perf").exists()


def test_pytest_benchmark_works_beside_it(pytester):
    pytester.makepyfile(
        test_both="""
        import time

        def test_perf(perf):
            perf.time(time.sleep, 0.001)

        def test_benchmark(benchmark):
            benchmark(time.sleep, 0.001)

        def test_together(perf, benchmark):
            benchmark(sum, range(100))
            perf.time(sum, range(100))
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--perf-repeats=3",
                                "--benchmark-max-time=0.05")  # fmt: skip
    result.assert_outcomes(passed=3)


def test_bad_marker_arguments_are_usage_errors(pytester):
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.perf(tolerance=0)
        def test_zero(perf):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*tolerance 0.0 must be > 0*"])


def test_perf_case_runs_a_suite_case_in_its_own_processes_and_cleans_up(pytester, tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text(selftest_suite("s", repeats=3))
    pytester.makepyfile(
        test_case=f"""
        def test_case(perf):
            m = perf.case({str(suite)!r}, "tinygpt-s-L1-H1-E16/selftest-ok/baseline")
            assert m.metric == "latency_median" and len(m.values) == 3 and m.unit == "s"
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    # The run happened inside this process: its fork server (torch and the preloads,
    # ~300 MB) must have stopped with it rather than linger for the rest of the session.
    import psutil

    lingering = [p for p in psutil.Process().children(recursive=True)
                 if p.memory_info().rss > 100 << 20]  # fmt: skip
    assert lingering == []


def test_in_fork_returns_json_and_carries_the_childs_error():
    assert in_fork(lambda: {"x": 1}) == {"x": 1}
    with pytest.raises(ForkedError, match="ZeroDivisionError"):
        in_fork(lambda: 1 / 0)
    import os

    with pytest.raises(ForkedError, match="exit code 7"):
        in_fork(lambda: os._exit(7))


COUNTED = """
import torch

N = {n}
x = torch.randn(64, 64)

def work():
    with torch.inference_mode():
        return torch.randn(N, 64) @ x

def test_work(perf):
    m = perf.count(work)
    assert m.metric == "instructions" and len(m.values) == 1 and m.values[0] > 1e4
"""


def test_perf_count_skips_with_why_without_valgrind(pytester, monkeypatch):
    monkeypatch.setenv("PATH", str(pytester.path))  # no valgrind on it
    pytester.makepyfile(test_counted=textwrap.dedent(COUNTED.format(n=64)))
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*perf.count: valgrind is not installed*"])


@pytest.mark.slow
@pytest.mark.skipif(
    __import__("bench.telemetry.callgrind", fromlist=["x"]).valgrind_missing() is not None,
    reason="valgrind is not installed",
)
def test_perf_count_decides_at_one_session_a_side(pytester):
    """One saved session decides: the same work is OK, ~6% more rows REGRESSION."""

    def session(n, *args):
        pytester.makepyfile(test_counted=textwrap.dedent(COUNTED.format(n=n)))
        return pytester.runpytest("-p", "no:cacheprovider", *args)

    session(64, "--perf-save", "main").assert_outcomes(passed=1)
    same = session(64, "--perf-compare", "main", "-W", "error::bench.pytest_plugin.PerfWarning")
    same.assert_outcomes(passed=1)
    more = session(68, "--perf-compare", "main")
    more.assert_outcomes(failed=1)
    more.stdout.fnmatch_lines(["*REGRESSION: instructions*(bound)*"])


PROFILED = """
import torch

def test_mlp(perf):
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
    x = torch.randn(4, 64)
    with torch.no_grad():
        table = perf.profile(model, x, calls=3)
    assert table["calls"] == 3
    assert any(o["operator"] == "aten::addmm" for o in table["operators"])
    assert table["overhead"]["ratio"] > 0
"""


def test_perf_profile_writes_the_operator_table_and_trace_and_is_no_gate(pytester):
    pytester.makepyfile(test_prof=PROFILED)
    result = pytester.runpytest("-p", "no:cacheprovider", "--perf-compare", "nothing")
    result.assert_outcomes(passed=1)  # no baseline to skip on: profiling never gates
    result.stdout.fnmatch_lines(["*test_prof.py::test_mlp: profiled, operators explain *"])
    (table,) = (pytester.path / ".perf" / "profiles").glob("*.json")
    data = json.loads(table.read_text())
    assert data["test"] == "test_prof.py::test_mlp"
    assert {o["operator"] for o in data["operators"]} >= {"aten::addmm", "aten::relu"}
    assert (pytester.path / ".perf" / "profiles" / (table.stem + ".trace.json.gz")).exists()


def test_saving_over_an_older_baseline_adds_to_it(tmp_path):
    """A baseline an older bench saved ("values", no "sessions"): --perf-save adds to it
    (found by an audit: it raised TypeError once files were read through their schema)."""
    import json
    from types import SimpleNamespace

    from bench.pytest_baseline import Measurement, PerfSession, setup_facts

    old = {
        "environment": setup_facts(),
        "tests": {"t::old": {"metric": "latency_median", "values": [1.0]}},
    }
    (tmp_path / "base.json").write_text(json.dumps(old))
    options = {"--perf-save": "base", "--perf-compare": None, "--perf-dir": str(tmp_path),
               "--perf-repeats": 3, "--perf-beyond-tolerance": False}  # fmt: skip
    session = PerfSession(SimpleNamespace(getoption=options.__getitem__))
    for key in ("t::old", "t::new"):
        session.measured[key] = Measurement("latency_median", "s", [2.0, 2.1], "perf_counter")
    saved = json.loads(session.write().read_text())["tests"]
    assert [s["values"] for s in saved["t::old"]["sessions"]] == [[2.0, 2.1]]
    assert saved["t::new"]["sessions"][0]["values"] == [2.0, 2.1]


def test_the_plugin_leaves_a_projects_gpu_marked_tests_alone(pytester):
    # A foreign project: its own ``gpu`` marker, and no CUDA needed by its test. Bench's
    # skip hook lives in bench's tests/conftest.py, not in the plugin every install loads.
    pytester.makeini("[pytest]\nmarkers =\n    gpu: the project's own meaning\n")
    pytester.makepyfile(
        test_theirs="""
        import pytest

        @pytest.mark.gpu
        def test_runs_anywhere():
            assert True
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--strict-markers")
    result.assert_outcomes(passed=1)
    assert "--perf-save" in pytester.runpytest("--help").stdout.str()  # the plugin is loaded
