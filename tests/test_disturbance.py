"""What disturbed a process: /proc/stat and getrusage read around a window (faked), the
tick rounding that must not flag a short quiet window, and what reports and comparisons
say of disturbed runs."""

import json

import pytest

from bench.analysis import run_facts
from bench.analysis.sides import load_side
from bench.telemetry import disturbance
from tests.test_compare import fake_run


class FakeProc:
    """/proc/stat's aggregate line advancing between reads (ticks of 10 ms), as the kernel
    keeps it: user nice system idle iowait irq softirq steal."""

    def __init__(self, *steps):
        self.fields = [1000, 0, 500, 9000, 10, 0, 5, 0]
        self.steps = list(steps)

    def read(self):
        out = (list(self.fields), 0.01)
        if self.steps:
            self.fields = [a + b for a, b in zip(self.fields, self.steps.pop(0), strict=True)]
        return out


@pytest.fixture
def clock(monkeypatch):
    """The window's wall time and this process's CPU time, set by the test."""
    state = {"wall": [0.0, 1.0], "own": [0.0, 0.5]}
    times = iter(state["wall"])
    own = iter(state["own"])
    monkeypatch.setattr(disturbance.time, "perf_counter", lambda: next(times))

    class Usage:
        def __init__(self):
            self.ru_utime, self.ru_stime, self.ru_nivcsw = next(own), 0.0, 3

    monkeypatch.setattr(disturbance.resource, "getrusage", lambda who: Usage())
    return state


def window(monkeypatch, step):
    monkeypatch.setattr(disturbance, "_proc_stat", FakeProc(step).read)
    return disturbance.Window().begin().end()


def test_another_busy_core_is_a_disturbance(monkeypatch, clock):
    # in 1 s on 2 CPUs: 150 busy ticks (1.5 CPU s), of which this process used 0.5 s
    d = window(monkeypatch, [140, 0, 10, 50, 0, 0, 0, 0])
    assert d["others_cores"] == pytest.approx(1.0) and d["disturbed"] is True
    assert d["steal_fraction"] == 0.0 and d["units"]["others_cores"].startswith("cores")


def test_stolen_time_is_a_disturbance(monkeypatch, clock):
    d = window(monkeypatch, [50, 0, 0, 130, 0, 0, 0, 20])
    assert d["steal_fraction"] == pytest.approx(0.1) and d["disturbed"] is True


def test_a_tick_of_rounding_in_a_short_window_is_not_a_disturbance(monkeypatch):
    times, own = iter([0.0, 0.06]), iter([0.0, 0.06])
    monkeypatch.setattr(disturbance.time, "perf_counter", lambda: next(times))

    class Usage:
        def __init__(self):
            self.ru_utime, self.ru_stime, self.ru_nivcsw = next(own), 0.0, 0

    monkeypatch.setattr(disturbance.resource, "getrusage", lambda who: Usage())
    # 60 ms on 2 CPUs: 6 busy ticks (its own) and one stolen tick read as 8%
    d = window(monkeypatch, [6, 0, 0, 5, 0, 0, 0, 1])
    assert d["steal_fraction"] == pytest.approx(1 / 12) and d["disturbed"] is False


def test_without_proc_the_figures_are_absent_with_why(monkeypatch, clock):
    monkeypatch.setattr(disturbance, "_proc_stat", lambda: None)
    d = disturbance.Window().begin().end()
    assert d["disturbed"] is None and "no /proc/stat" in d["absent"]["others_cores"]


def busy_run(tmp_path, run_id, flags):
    d = fake_run(tmp_path, run_id, {"m/w/baseline": {"latency_median": [0.01] * len(flags)}})
    for r, flag in enumerate(flags):
        f = d / "cases" / f"m__w__baseline.r{r}.json"
        data = json.loads(f.read_text())
        data["info"] = {"disturbance": {"disturbed": flag, "others_cores": 0.9 if flag else 0.0,
                                        "steal_fraction": 0.0, "involuntary_switches": 40}}  # fmt: skip
        f.write_text(json.dumps(data))
    return d


def test_the_report_and_a_comparison_say_when_runs_were_disturbed(tmp_path):
    from bench.results import store

    run = busy_run(tmp_path, "busy", [False, True, False])
    label, text = run_facts.quiet(store.run_results(run))
    assert label == "Quiet" and text.startswith("NO: 1 of 3 process runs disturbed")
    assert "m/w/baseline r1: others used 0.90 cores" in text
    quiet = busy_run(tmp_path, "quiet", [False, False])
    assert run_facts.quiet(store.run_results(quiet))[1].startswith("yes: no process run of 2")
    from bench.analysis.sides import disturbance_note

    note = disturbance_note("base", load_side([run]))
    assert note.startswith("base: 1 of 3 process runs were disturbed by other work")
    assert disturbance_note("candidate", load_side([quiet])) is None
