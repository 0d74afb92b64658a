"""Hardware counters through perf_event_open: the clock against a fake of the kernel that
behaves as Linux does (a counter advances only while enabled, a read carries its enabled
and running times, an open fails with the errno a VM or a container gives), the real system
call on a software counter, and counting runs on this machine (which may have no hardware
counters: then the figures are absent with the reason)."""

import errno
import itertools
import os
import time

import pytest

from bench.cli import main
from bench.errors import UserError
from bench.results import store
from bench.run.count_server import CountServer
from bench.run.counting import count_case
from bench.spec.suite import parse_suite
from bench.telemetry import perf_events
from bench.telemetry.perf_events import PerfEventClock, Reading
from bench.telemetry.timer import time_calls
from tests.test_counts import SUITE


class FakeKernel:
    """perf_event_open's file descriptors as Linux keeps them: a counter counts while
    enabled, at ``rate`` events per nanosecond of its thread's time plus the work a test
    declares; each read costs a few varying events of its own; a counter the kernel shares
    with other events (``share`` < 1) runs for that part of the time it is enabled."""

    def __init__(self, fail: int | None = None, rate: float = 0.0, share: float = 1.0):
        self.fail, self.rate, self.share = fail, rate, share
        self.fds: dict[int, dict] = {}
        self.opened: list[tuple[int, int]] = []
        self._next = itertools.count(100)
        self._read_cost = itertools.cycle([37, 40, 35])

    def open(self, type_, config):
        if self.fail is not None:
            raise OSError(self.fail, os.strerror(self.fail))
        fd = next(self._next)
        self.opened.append((type_, config))
        self.fds[fd] = {"value": 0.0, "enabled": 0, "running": 0, "on": False, "t": 0}
        return fd

    def _advance(self, c, ns: int, events: float) -> None:
        if c["on"]:
            c["enabled"] += ns
            c["running"] += int(ns * self.share)
            c["value"] += events

    def _tick(self, c) -> None:
        now = time.perf_counter_ns()
        self._advance(c, now - c["t"], self.rate * (now - c["t"]))
        c["t"] = now

    def enable(self, fd):
        c = self.fds[fd]
        c["on"], c["t"] = True, time.perf_counter_ns()

    def disable(self, fd):
        c = self.fds[fd]
        self._tick(c)
        c["on"] = False

    def read(self, fd):
        c = self.fds[fd]
        self._tick(c)
        self._advance(c, 1, next(self._read_cost))
        return Reading(int(c["value"]), c["enabled"], c["running"])

    def work(self, events: int) -> None:
        for c in self.fds.values():
            self._advance(c, events, events)

    def close(self, fd):
        del self.fds[fd]


def test_the_clock_counts_each_call_between_its_marks_and_nothing_after_finish():
    kernel = FakeKernel()
    clock = PerfEventClock("hw_instructions", kernel=kernel)
    assert kernel.opened == [
        (perf_events.PERF_TYPE_HARDWARE, perf_events.PERF_COUNT_HW_INSTRUCTIONS)
    ]
    s = time_calls(lambda: kernel.work(5000), warmup=1, iterations=3, clock=clock)
    # each call's work and one read's own events (the mark), which vary a little
    assert s.warmup == [5040.0] and s.values == [5037.0, 5040.0, 5035.0]
    assert (
        s.method
        == "perf_event_open instructions (hardware counter, user space, the calling thread)"
    )
    kernel.work(10**6)  # between timed loops: the counter is off
    again = time_calls(lambda: kernel.work(7), warmup=0, iterations=2, clock=clock)
    assert len(again.values) == 2 and all(7 + 35 <= v <= 7 + 40 for v in again.values)
    clock.discard()
    assert kernel.fds == {}


def test_a_counter_shared_with_other_events_is_refused_not_scaled():
    kernel = FakeKernel(share=0.5)
    clock = PerfEventClock("hw_cycles", kernel=kernel)
    with pytest.raises(perf_events.Multiplexed, match="ran 50% of the interval"):
        time_calls(lambda: kernel.work(1000), warmup=0, iterations=2, clock=clock)


def test_why_hardware_counters_are_missing_names_the_cause():
    assert perf_events.hardware_missing(["hw_instructions"], FakeKernel()) is None
    gone = perf_events.hardware_missing(["hw_instructions", "hw_cycles"], FakeKernel(errno.ENOENT))
    assert gone == ("perf_event_open(instructions) failed: this machine exposes no such "
                    "hardware counter (virtual machines often hide them)")  # fmt: skip
    denied = perf_events.hardware_missing(["hw_cycles"], FakeKernel(errno.EACCES))
    assert denied.startswith("perf_event_open(cycles) failed: not permitted")
    assert "perf_event_paranoid" in denied and "seccomp" in denied


def test_the_real_system_call_counts_a_software_counter_only_while_enabled():
    """The same attr layout, ioctls and read format on this kernel, through its task clock
    (nanoseconds of this thread on a CPU), which every Linux exposes."""
    try:
        clock = PerfEventClock("task_clock", event=(perf_events.PERF_TYPE_SOFTWARE, 1))
    except perf_events.CounterUnavailable as e:  # e.g. a seccomp profile blocks the call
        pytest.skip(f"perf_event_open refused here: {e}")

    def spin(seconds):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    a = clock.mark()
    spin(0.05)
    b = clock.mark()
    clock.finish()
    spin(0.05)  # off: not counted
    c = clock.mark()
    clock.discard()
    assert 0.02e9 < clock.seconds(a, b) < 1e9  # ~50 ms of this thread's CPU time
    assert clock.seconds(b, c) < 0.01e9


def test_count_case_gives_hardware_figures_with_their_units_and_method():
    case = parse_suite(SUITE.format(extra="")).cases[0]
    kernel = FakeKernel(rate=1.5)
    result = count_case(
        case, ["hw_instructions", "hw_cycles"], 2,
        lambda counter: PerfEventClock(counter, kernel=kernel), None, perf_events.UNITS,
    )  # fmt: skip
    got = {m.name: m for m in result.metrics}
    assert set(got) == {"hw_instructions", "hw_cycles"}
    assert got["hw_instructions"].unit == "instructions" and got["hw_cycles"].unit == "cycles"
    assert all(m.value > 1000 for m in got.values())  # a forward call's worth of events
    assert "perf_event_open cycles" in got["hw_cycles"].method
    assert "1 intra-op thread" in got["hw_cycles"].method and kernel.fds == {}


def test_a_run_cannot_mix_callgrind_and_hardware_counters(capsys):
    with pytest.raises(UserError, match=r"run\.counters: counters come from one source a run"):
        parse_suite(SUITE.format(extra='counters = ["instructions", "hw_cycles"]'))
    with pytest.raises(SystemExit) as e:
        main(["run", "x.toml", "--counters", "hw_instructions,estimated_cycles"])
    assert e.value.code == 2 and "one source a run" in capsys.readouterr().err


def test_a_hardware_counting_run_on_this_machine_counts_or_says_why_not(tmp_path, capsys):
    """Without hardware counters (this VM) the figure is absent from every case with the
    kernel's reason, and the console says so; with them, the count pass counts."""
    why = perf_events.hardware_missing(["hw_instructions"])
    (tmp_path / "s.toml").write_text(SUITE.format(extra='counters = ["hw_instructions"]'))
    code = main(["run", str(tmp_path / "s.toml"), "--results", str(tmp_path / "r"),
                 "--no-report", "--inline"])  # fmt: skip
    assert code == 0
    (run,) = (tmp_path / "r").iterdir()
    results = store.run_results(run)
    if why is None:
        (c,) = [r for r in results if store.is_count(r)]
        assert c["status"] == "ok" and c["metrics"][0]["name"] == "hw_instructions"
    else:
        (r,) = results
        assert r["info"]["absent"]["hw_instructions"] == why
        assert (
            "not counting hw_instructions of 1 case(s): perf_event_open" in capsys.readouterr().err
        )


def test_the_hardware_counting_server_runs_without_valgrind(tmp_path):
    """The server for hardware counters is a plain process that forks a child per case:
    its child counts, or fails with the kernel's error where the machine has no counters."""
    case = parse_suite(SUITE.format(extra="")).cases[0]
    server = CountServer(tmp_path / "hw", ["hw_instructions"], 1)
    try:
        result = server.count(case, "run", timeout=120)
        started = server.started_s
    finally:
        server.close()
    assert started is not None and server.lib is None  # no valgrind, no helper
    if perf_events.hardware_missing(["hw_instructions"]) is None:
        assert result["status"] == "ok"
    else:
        assert result["status"] == "failed" and result["error"].startswith(
            "CounterUnavailable: perf_event_open(instructions) failed: "
        )
