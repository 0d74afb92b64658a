"""Instruction counts: the callgrind clock and its dumps (against a fake of torch's client
requests), the near-deterministic verdicts, the run's count pass and its absences; with
valgrind installed, a real count (slow)."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.analysis import verdicts
from bench.cli import main
from bench.results import store
from bench.results.metric_info import RESOLUTION, Tolerance
from bench.spec.suite import parse_suite
from bench.telemetry import callgrind
from bench.telemetry.timer import time_calls
from tests.conftest import PARTS
from tests.test_compare import fake_run

EVENTS = "Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw"


def dump_text(ir: int, extra: str = "") -> str:
    """A callgrind dump as valgrind writes one: header, cost lines, totals last."""
    return (
        "# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\npid: 42\ncmd: python\n"
        f"part: 1\n\npositions: line\nevents: {EVENTS if extra else 'Ir'}\n"
        f"fn=(1) main\n0 {ir}\n\ntotals: {ir}{extra}\n"
    )


class FakeCallgrind:
    """torch's callgrind client requests as valgrind answers them: collection toggles, and a
    dump writes what was collected since the last dump to ``prefix.N`` (N from 1). The
    counts vary a little from call to call, as real ones do."""

    def __init__(self, prefix: str, per_call: list[int]):
        self.prefix, self.per_call = prefix, list(per_call)
        self.collecting, self.dumps, self.calls = False, 0, 0

    def toggle(self) -> None:
        self.collecting = not self.collecting

    def toggle_and_dump(self) -> None:
        self.toggle()
        self.dumps += 1
        Path(f"{self.prefix}.{self.dumps}").write_text(dump_text(self.per_call[self.calls - 1]))

    def work(self) -> None:
        assert self.collecting, "a counted call ran with collection off"
        self.calls += 1


@pytest.fixture
def fake(tmp_path, monkeypatch):
    monkeypatch.setattr(callgrind, "_dumps", 0)  # a fresh process: no dump made yet
    f = FakeCallgrind(str(tmp_path / "callgrind.7"), [1200, 1100, 1000, 1003, 998])
    monkeypatch.setattr(torch._C, "_valgrind_toggle", f.toggle)
    monkeypatch.setattr(torch._C, "_valgrind_toggle_and_dump_stats", f.toggle_and_dump)
    return f


def test_the_clock_counts_each_call_from_its_own_dump_and_nothing_between(fake):
    clock = callgrind.CallgrindClock(fake.prefix)
    s = time_calls(fake.work, warmup=2, iterations=3, clock=clock)
    assert s.warmup == [1200.0, 1100.0] and s.values == [1000.0, 1003.0, 998.0]
    assert s.method == "callgrind_Ir" and not fake.collecting  # off after the timed loop
    clock.discard()
    assert not list(Path(fake.prefix).parent.glob("callgrind.7.*"))
    # a second clock in the same process reads on from callgrind's own dump numbers
    fake.per_call += [700, 701]
    again = time_calls(
        fake.work, warmup=0, iterations=2, clock=callgrind.CallgrindClock(fake.prefix)
    )
    assert again.values == [700.0, 701.0]


def test_dumps_parse_with_and_without_cache_simulation(tmp_path):
    plain = tmp_path / "a.1"
    plain.write_text(dump_text(5000))
    assert callgrind.read_dump(plain).instructions == 5000
    sim = tmp_path / "b.1"
    # Ir Dr Dw | I1mr D1mr D1mw | ILmr DLmr DLmw
    sim.write_text(dump_text(1000, " 400 100 10 20 5 1 2 3"))
    d = callgrind.read_dump(sim)
    l1_miss, ram = 10 + 20 + 5, 1 + 2 + 3
    assert d.estimated_cycles == (1500 - l1_miss) + 5 * (l1_miss - ram) + 35 * ram
    cut = tmp_path / "c.1"
    cut.write_text(dump_text(1)[: -len("totals: 1\n")])
    with pytest.raises(ValueError, match="not a complete callgrind dump"):
        callgrind.read_dump(cut)


def judge(base, cand, metric="instructions"):
    ch = verdicts.between_runs(
        base, cand, metric, False, Tolerance("relative", 0.01), resolution=RESOLUTION[metric]
    )
    return verdicts.decide([ch])[0]


def test_counts_decide_at_one_run_a_side_within_their_resolution():
    base = [[120_554_833.0]]
    more = judge(base, [[120_554_833.0 * 1.02]])  # ~2% more work: sequence 131 vs 128
    assert more.verdict == "REGRESSION" and more.certain and not more.exact
    assert more.describe() == "1.020× [1.017, 1.023] (bound)"
    assert more.to_json()["method"] == verdicts.BOUND_METHOD
    same = judge(base, [[120_560_221.0]])  # two real runs of the same case
    assert same.verdict == "OK"
    # at the tolerance's edge: beyond it and clear of no change (the default rule), but not
    # wholly beyond it (the stricter rule)
    edge = verdicts.between_runs(base, [[120_554_833.0 * 1.0105]], "instructions", False,
                                 Tolerance("relative", 0.01), resolution=0.0025)  # fmt: skip
    assert verdicts.decide([edge])[0].verdict == "REGRESSION"
    beyond = verdicts.decide([edge], rule=verdicts.BEYOND)[0]
    assert beyond.verdict == "INCONCLUSIVE" and "more runs do not decide it" in beyond.why
    fewer = judge(base, [[120_554_833.0 * 0.95]])
    assert fewer.verdict == "IMPROVED"


def test_counts_that_spread_are_judged_as_noisy_figures_and_say_why():
    ch = judge([[100.0, 103.0]], [[101.0]])
    assert not ch.certain and ch.verdict == "INCONCLUSIVE"
    assert "counts vary by 3% within a side" in ch.why
    # with several runs a side they get the two-level interval like any timing
    many = judge([[100.0, 103.0], [101.0], [99.0]], [[120.0], [121.0, 119.0], [122.0]])
    assert many.tested and many.verdict == "REGRESSION"


def count_run(root, run_id, value, timed=0.01):
    """A run folder with a timed result and a count result of one case."""
    d = fake_run(root, run_id, {"m/w/baseline": {"latency_median": [timed] * 3}})
    count = {"case_id": "m/w/baseline", "repeat": 0, "status": "ok", "run_id": run_id,
             "case": {"run": {"threads": 2}, **PARTS}, "info": {"pass": "count"},
             "metrics": [{"name": "instructions", "value": value, "unit": "instructions",
                          "method": "callgrind_Ir"}]}  # fmt: skip
    (d / "cases" / "m__w__baseline.count.json").write_text(json.dumps(count))
    return d


def test_compare_judges_counts_of_one_run_a_side(tmp_path, capsys):
    base = count_run(tmp_path, "base", 1e8)
    same = count_run(tmp_path, "same", 1e8 * 1.00004)
    more = count_run(tmp_path, "more", 1e8 * 1.04)
    assert main(["compare", str(base), str(same), "--reports", str(tmp_path / "o1")]) == 0
    rows = json.loads((tmp_path / "o1" / "compare.json").read_text())["rows"]
    counted = {r["metric"]: r for r in rows}["instructions"]
    assert counted["verdict"] == "OK" and counted["basis"].startswith("counted (once a side)")
    assert "certain to ±0.25%" in counted["basis"]
    # timings of one run a side stay undecided: only the counts decide
    assert {r["metric"]: r for r in rows}["latency_median"]["verdict"] == "INCONCLUSIVE"
    assert main(["compare", str(base), str(more), "--reports", str(tmp_path / "o2")]) == 1
    assert "REGRESSION" in capsys.readouterr().out
    rows = json.loads((tmp_path / "o2" / "compare.json").read_text())["rows"]
    counted = {r["metric"]: r for r in rows}["instructions"]
    assert counted["change"] == "1.040× [1.037, 1.043] (bound)"


def test_a_count_result_is_not_a_timed_run_for_resume(tmp_path):
    d = count_run(tmp_path, "r", 1e8)
    done = store.finished_ok(d)
    assert done == {("m/w/baseline", r) for r in (0, 1, 2, store.COUNT)}
    assert store.case_path(d, "m/w/baseline", store.COUNT).name == "m__w__baseline.count.json"


SUITE = """
name = "c"
[run]
warmup = 0
iterations = 2
repeats = 1
energy = false
idle_s = 0
{extra}
[[models]]
name = "tinygpt-s"
weights = "random"
n_layer = 1
n_embd = 32
n_head = 2
[[workloads]]
name = "forward"
seq_len = 8
"""


def test_counting_is_the_runs_setting_not_the_cases(tmp_path):
    plain = parse_suite(SUITE.format(extra=""))
    counted = parse_suite(SUITE.format(extra='counters = ["instructions"]'))
    assert counted.run.counters == ("instructions",)
    assert [c.hash for c in plain.cases] == [c.hash for c in counted.cases]
    assert "counters" not in counted.cases[0].run


def test_unknown_counter_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "s.toml").write_text(SUITE.format(extra=""))
    with pytest.raises(SystemExit) as e:
        main(["run", str(tmp_path / "s.toml"), "--counters", "cycles"])
    assert e.value.code == 2
    assert "unknown counter 'cycles'" in capsys.readouterr().err


def test_without_valgrind_counts_are_absent_with_the_reason(tmp_path, monkeypatch, capsys):
    real_which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda name, *a, **k: None if name == "valgrind" else real_which(name)
    )
    (tmp_path / "s.toml").write_text(SUITE.format(extra='counters = ["instructions"]'))
    code = main(["run", str(tmp_path / "s.toml"), "--results", str(tmp_path / "r"),
                 "--no-report", "--inline"])  # fmt: skip
    assert code == 0
    (run,) = (tmp_path / "r").iterdir()
    (result,) = store.run_results(run)
    assert "valgrind is not installed" in result["info"]["absent"]["instructions"]
    assert not any(m["name"] == "instructions" for m in result["metrics"])
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["counters"]["counters"] == ["instructions"]


def test_a_counting_server_that_cannot_start_fails_its_cases_and_the_run_goes_on(
    tmp_path, monkeypatch
):
    fake = tmp_path / "bin" / "valgrind"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'valgrind: cannot start' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    (tmp_path / "s.toml").write_text(
        SUITE.format(extra='counters = ["instructions"]').replace("seq_len = 8", "seq_len = [8, 9]")
    )
    code = main(["run", str(tmp_path / "s.toml"), "--results", str(tmp_path / "r"),
                 "--no-report", "--inline"])  # fmt: skip
    assert code == 1  # the failed counts are failed results
    (run,) = (tmp_path / "r").iterdir()
    results = store.run_results(run)
    counts = [r for r in results if store.is_count(r)]
    assert len(counts) == 2 and {r["status"] for r in counts} == {"failed"}
    assert all("the counting server did not start" in r["error"] for r in counts)
    assert {r["status"] for r in results if not store.is_count(r)} == {"ok"}
    log = run / "logs" / "callgrind" / "server.log"
    assert "valgrind: cannot start" in log.read_text()


def test_gpu_and_multi_rank_cases_are_not_countable():
    from bench.run.count_server import countable

    gpu = parse_suite(SUITE.format(extra='device = "cuda"')).cases[0]
    assert "GPU case" in countable(gpu)
    cpu = parse_suite(SUITE.format(extra="")).cases[0]
    assert countable(cpu) is None


needs_valgrind = pytest.mark.skipif(
    callgrind.valgrind_missing() is not None, reason="valgrind is not installed"
)

FORWARD_PATCH = (
    "    x = random_tokens(model, ctx, params.batch, params.seq_len)\n",
    "    x = random_tokens(model, ctx, params.batch, params.seq_len + 3)\n",
)


def _bench(cwd, *args, pythonpath=None):
    env = {**os.environ, "PYTHONPATH": str(pythonpath)} if pythonpath else None
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip


@pytest.mark.slow
@needs_valgrind
def test_real_counts_repeat_and_see_a_commit_that_adds_2_percent_of_work(tmp_path):
    """Two runs of one case (tinygpt-s forward, 120 M instructions a call) count within
    0.1%; a copy of bench whose forward workload runs 3 more tokens (131 for 128: ~2% more
    tokens) is a REGRESSION on instructions with one run a side, while the two unchanged
    runs compare OK."""
    suite = tmp_path / "s.toml"
    text = SUITE.format(extra='counters = ["instructions"]').replace("seq_len = 8", "seq_len = 128")
    suite.write_text(text.replace("n_layer = 1\nn_embd = 32\nn_head = 2\n", ""))
    patched = tmp_path / "patched"
    shutil.copytree(Path(__file__).parents[1] / "bench", patched / "bench")
    forward = patched / "bench" / "workloads" / "forward.py"
    forward.write_text(forward.read_text().replace(*FORWARD_PATCH))
    runs = []
    for name, path in (("a", None), ("b", None), ("more", patched)):
        done = _bench(tmp_path, "run", str(suite), "--results", str(tmp_path / name),
                      "--no-report", pythonpath=path)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "(count)" in done.stdout + done.stderr
        (run,) = (tmp_path / name).iterdir()
        runs.append(run)
    counts = []
    for run in runs:
        (c,) = [r for r in store.run_results(run) if store.is_count(r)]
        counts.append({m["name"]: m["value"] for m in c["metrics"]}["instructions"])
    assert abs(math.log(counts[1] / counts[0])) < 0.001
    assert counts[2] / counts[0] > 1.01
    same = _bench(tmp_path, "compare", str(runs[0]), str(runs[1]), "--reports", str(tmp_path / "o"))
    assert same.returncode == 0, same.stdout + same.stderr
    more = _bench(tmp_path, "compare", str(runs[0]), str(runs[2]), "--reports", str(tmp_path / "o"))
    assert more.returncode == 1, more.stdout + more.stderr
    rows = json.loads((tmp_path / "o" / "compare.json").read_text())["rows"]
    assert {r["metric"]: r["verdict"] for r in rows}["instructions"] == "REGRESSION"


def test_a_history_of_counts_alarms_on_the_night_the_work_grew():
    from bench.analysis import changepoints as cp
    from tests.test_history import series

    values = [1e8 * (1 + 1e-5 * (i % 3)) for i in range(6)] + [1.02e8] * 2
    one = Tolerance("relative", 0.01)
    [alarm] = cp.alarms(cp.analyse([series(values, metric="instructions", tolerance=one)]))
    assert alarm.index == 6 and alarm.change.certain and alarm.persisted
    assert not alarm.change.exact and "(bound)" in alarm.change.describe()
    # a creep under the resolution each night still adds up to a change
    creep = [1e8 * 1.002**i for i in range(12)]
    alarms = cp.alarms(cp.analyse([series(creep, metric="instructions", tolerance=one)]))
    assert alarms and all(a.change.certain for a in alarms)
    quiet = series(values[:6], metric="instructions", tolerance=one)
    assert cp.alarms(cp.analyse([quiet])) == []
