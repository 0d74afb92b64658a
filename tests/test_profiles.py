"""Profiling: the profiled calls' operator table from a real torch.profiler run (it adds up
to the calls' wall time), device summaries from fake GPU events, the technique-against-
baseline diff, and the profiled pass of a run end to end (files, report, `bench profile`)."""

import gzip
import json
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from bench.analysis import profiles
from bench.cli import main
from bench.results import store
from bench.telemetry import profiler
from bench.telemetry.timer import PerfCounterClock, time_calls


def _profiled_mlp(calls=3):
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
    x = torch.randn(4, 64)
    clock = profiler.ProfilingClock(PerfCounterClock())
    with torch.no_grad(), torch.profiler.profile(record_shapes=True, profile_memory=True,
                                                 with_flops=True) as prof:  # fmt: skip
        torch.randn(3, 3).sum()  # setup outside any call: not in the table
        s = time_calls(lambda: model(x), warmup=1, iterations=calls, clock=clock)
    return list(prof.events()), clock, s


def test_the_operator_table_counts_the_calls_only_and_adds_up_to_their_wall_time():
    events, clock, samples = _profiled_mlp(calls=3)
    # the ranges the workload timed; each loop's last mark opens a range no call follows
    assert clock.calls == {0, 2, 3, 4}
    table = profiler.operator_table(events, clock.calls)
    assert table["calls"] == 4  # the warm-up call and the 3 timed ones
    ops = {r["operator"]: r for r in table["operators"]}
    assert ops["aten::addmm"]["calls_per_call"] == 2  # two linear layers a call
    assert (
        ops["aten::addmm"]["flops_per_call"] > 0 and "[4, 64]" in ops["aten::addmm"]["input_shapes"]
    )
    assert "aten::randn" not in ops and "aten::sum" not in ops
    # every microsecond of a call is some operator's self time or outside any operator
    inside = sum(r["self_us_per_call"] for r in table["operators"])
    total = inside + table["outside_operators_us_per_call"]
    assert total == pytest.approx(table["wall_us_per_call"], rel=1e-6)
    assert 0 < table["explained_share"] <= 1
    assert table["explained_share"] == pytest.approx(inside / table["wall_us_per_call"])
    # the ranges sit inside the timed intervals
    assert table["wall_us_per_call"] / 1e6 <= max(samples.values + samples.warmup) * 1.5


def test_the_tensor_memory_a_call_adds_is_read_from_the_traces_allocation_events(tmp_path):
    model = torch.nn.Sequential(
        torch.nn.Linear(256, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 8)
    )
    x = torch.randn(64, 256)
    with torch.no_grad():
        _, prof, clock = profiler.profiled(
            lambda c: time_calls(lambda: model(x), warmup=0, iterations=3, clock=c), "cpu"
        )
    events = profiler.export_trace(prof, tmp_path / "t.trace.json.gz")
    memory = profiler.call_memory(events, clock.calls)
    # the first layer's output and the ReLU's are alive together: 2 x 64 x 1024 floats
    assert memory["cpu"] == {
        "median_peak_bytes": 2 * 64 * 1024 * 4,
        "max_peak_bytes": 2 * 64 * 1024 * 4,
    }


def _event(name, start, end, device="CPU", parent=None, self_us=None):
    return SimpleNamespace(name=name, time_range=SimpleNamespace(start=start, end=end),
                           device_type=f"DeviceType.{device}", cpu_parent=parent,
                           self_cpu_time_total=self_us if self_us is not None else end - start)  # fmt: skip


def test_the_device_summary_measures_idle_time_between_kernels_inside_the_calls():
    calls = [_event("bench/call#0", 0, 100), _event("bench/call#1", 200, 300),
             _event("bench/call#2", 300, 301)]  # fmt: skip
    kernels = [
        _event("gemm", 10, 50, "CUDA"), _event("gemm", 40, 60, "CUDA"),  # overlapping
        _event("softmax", 210, 230, "CUDA"), _event("copy", 150, 180, "CUDA"),  # between calls
    ]  # fmt: skip
    device_copy = _event("bench/call#0", 0, 100, "CUDA")  # kineto's device-side range
    d = profiler.device_summary(calls + kernels + [device_copy], calls={0, 1})
    assert d["kernel_us_per_call"] == (50 + 20) / 2
    assert d["idle_share"] == pytest.approx(1 - 70 / 200)
    # inside the calls only: the copy between them is not a call's
    assert [k["kernel"] for k in d["top_kernels"]] == ["gemm", "softmax"]
    assert profiler.device_summary(calls, calls={0, 1}) is None  # a CPU profile


def test_the_diff_says_what_each_operator_did():
    base = pd.DataFrame({"operator": ["aten::mm", "aten::gelu", "aten::add", "aten::t"],
                         "self_us_per_call": [1000.0, 300.0, 50.0, 10.0]})  # fmt: skip
    cand = pd.DataFrame({"operator": ["quantized::linear_dynamic", "aten::gelu", "aten::add", "aten::mm"],
                         "self_us_per_call": [400.0, 302.0, 80.0, 20.0]})  # fmt: skip
    d = profiles.diff(base, cand).set_index("operator")
    assert d.loc["aten::mm", "what"] == "faster" and d.loc["aten::mm", "change_us"] == -980
    assert d.loc["quantized::linear_dynamic", "what"] == "added"
    assert d.loc["aten::t", "what"] == "removed"
    assert d.loc["aten::gelu", "what"] == "same" and d.loc["aten::add", "what"] == "slower"
    assert list(d.index[:2]) == ["aten::mm", "quantized::linear_dynamic"]  # largest first


SUITE = """
name = "p"
[run]
threads = 1
warmup = 1
iterations = 3
repeats = 1
energy = false
idle_s = 0
{extra}
[[models]]
name = "tinygpt-s"
weights = "random"
n_layer = 1
n_embd = 64
n_head = 2
[[workloads]]
name = "forward"
batch = 2
seq_len = 16
[[techniques]]
name = "baseline"
[[techniques]]
name = "quantize"
scheme = "int8_dynamic"
"""


def test_a_profiled_run_writes_traces_tables_and_the_reports_section(tmp_path, capsys):
    (tmp_path / "s.toml").write_text(SUITE.format(extra="profile = true\nprofile_calls = 3"))
    code = main(["run", str(tmp_path / "s.toml"), "--results", str(tmp_path / "r"),
                 "--reports", str(tmp_path / "rep"), "--inline"])  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    assert "profiling 2 case(s)" in err and "operators explain" in err
    (run,) = (tmp_path / "r").iterdir()
    passes = profiles.load_profiles(run)
    assert list(passes["status"]) == ["ok", "ok"] and set(passes["calls"]) == {3}
    # a call this small (~1 ms) is much Python; the smoke suite's are measured in the README
    assert passes["explained_share"].between(0.05, 1).all() and (passes["overhead_ratio"] > 0).all()
    for trace in passes["trace"]:
        with gzip.open(trace) as f:
            events = json.load(f)["traceEvents"]
        assert sum(str(e.get("name")).startswith("bench/call#") for e in events) >= 3
    # no profiled figure among the timed results
    assert not any(r["info"].get("pass") == "profile" for r in store.run_results(run))
    ops = profiles.load_operators(run)
    quant = ops[ops["case_id"].str.endswith("quant-int8dyn")]
    assert "quantized::linear_dynamic" in set(quant["operator"])
    [(case_id, base_id, d)] = profiles.technique_diffs(ops, passes)
    assert base_id.endswith("/baseline") and case_id.endswith("quant-int8dyn")
    assert d.set_index("operator").loc["quantized::linear_dynamic", "what"] == "added"
    (report,) = (tmp_path / "rep").glob("*/*/report.html")
    html = report.read_text()
    assert (
        "Where the time went" in html and "Operators: each technique against its baseline" in html
    )
    assert 'href="../../../r/' in html and (report.parent / "where_the_time_went.png").exists()


def test_bench_profile_profiles_a_case_with_its_baseline_and_prints_the_diff(tmp_path, capsys):
    (tmp_path / "s.toml").write_text(SUITE.format(extra=""))
    code = main(["profile", str(tmp_path / "s.toml"), "--case", "*quant*", "--calls", "2",
                 "--results", str(tmp_path / "r"), "--inline"])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "quant-int8dyn against tinygpt-s-L1-H2-E64/forward-b2-s16/baseline" in out.out
    (run,) = (tmp_path / "r").iterdir()
    assert not store.run_results(run)  # profiled only, never timed
    assert len(store.profiles(run)) == 2
    code = main(["profile", str(tmp_path / "s.toml"), "--case", "nope*"])
    assert code == 2 and "--case 'nope*' matches no case" in capsys.readouterr().err


def _fake_profile(run_dir, case_id, ops):
    operators = [{"operator": name, "self_us_per_call": us} for name, us in ops.items()]
    result = {"case_id": case_id, "status": "ok",
              "info": {"pass": "profile", "profile": {"operators": operators, "trace": "t.gz"}}}  # fmt: skip
    path = store.profile_path(run_dir, case_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))


def test_a_time_regression_in_compare_names_the_operators_that_moved(tmp_path):
    from bench.analysis.compare import compare
    from bench.analysis.sides import load_side
    from tests.test_compare import sides

    base, cand = sides(tmp_path, slow=1.5)
    _fake_profile(base[1], "m/w/baseline", {"aten::mm": 900.0, "aten::gelu": 100.0})
    _fake_profile(cand[0], "m/w/baseline", {"aten::mm": 1500.0, "aten::gelu": 101.0,
                                            "aten::mul": 80.0})  # fmt: skip
    c = compare(load_side(base), load_side(cand))
    assert {str(ch.verdict) for _, ch in c.rows if ch.metric == "latency_median"} == {"REGRESSION"}
    [note] = [n for n in c.notes if "operators that moved" in n]
    assert note.startswith("m/w/baseline: operators that moved most per call")
    assert "aten::mm +0.600 ms (slower), aten::mul +0.080 ms (added)" in note
    assert "gelu" not in note and f"base {base[1] / 'profiles' / 't.gz'}" in note
    # without a profile on one side, nothing is said
    (cand[0] / "profiles" / "m__w__baseline.json").unlink()
    assert not any(
        "operators that moved" in n for n in compare(load_side(base), load_side(cand)).notes
    )


def test_a_python_flame_graph_is_sampled_or_absent_with_why(tmp_path, monkeypatch):
    from bench.telemetry import pyspy

    def spin():  # a wall-clock second, not a count: a busy CI machine still gets its samples
        import time

        total, end = 0, time.perf_counter() + 1.0
        while time.perf_counter() < end:
            total += 1
        return total

    if pyspy.executable() is not None:
        got = pyspy.flame_graph(tmp_path / "f.svg", spin)
        assert got["samples"] > 10 and got["flame_graph"] == "f.svg"
        assert "spin" in (tmp_path / "f.svg").read_text()  # the function's frames are in it
    monkeypatch.setattr(pyspy, "executable", lambda: None)
    with pytest.raises(pyspy.Unavailable, match="py-spy is not installed"):
        pyspy.flame_graph(tmp_path / "g.svg", spin)
