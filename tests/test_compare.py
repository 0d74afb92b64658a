"""bench compare: sides from run folders and pytest-benchmark saves, refusals, outputs."""

import json
import math
import textwrap

import numpy as np
import pytest

# pytester's in-process runs unload every module first imported inside them, and the
# extension modules of numpy (scipy.stats pulls numpy.fft) and torch refuse a second load
# in one process: they are imported here, outside the inner runs, first.
import scipy.stats  # noqa: F401
import torch  # noqa: F401

from bench.cli import main
from tests.conftest import PARTS

SUITE_TEXT = 'name = "s"\n[[models]]\nname = "tinygpt-s"\n[[workloads]]\nname = "forward"\n'
ENV = {"cpu_model": "Test CPU", "torch": "2.13.0+cpu", "gpu": {"available": False}}


def fake_run(root, run_id, cases, suite="s", env=ENV, suite_text=SUITE_TEXT, threads=2):
    """A run folder as `bench run` writes it: ``cases`` maps case id -> {metric: values}."""
    d = root / run_id
    (d / "cases").mkdir(parents=True)
    manifest = {"run_id": run_id, "environment": env, "started": "2026-12-01T00:00:00+00:00",
                "suite": {"name": suite, "path": "s.toml", "text": suite_text, "sha256": "x"}}  # fmt: skip
    (d / "manifest.json").write_text(json.dumps(manifest))
    for case_id, metrics in cases.items():
        n = len(next(iter(metrics.values())))
        for r in range(n):
            result = {
                "case_id": case_id, "repeat": r, "status": "ok", "run_id": run_id,
                "case": {"run": {"threads": threads}, **PARTS},
                "metrics": [{"name": m, "value": v[r], "unit": "s" if "median" in m else "count",
                             "method": "perf_counter"} for m, v in metrics.items()],
            }  # fmt: skip
            (d / "cases" / f"{case_id.replace('/', '__')}.r{r}.json").write_text(json.dumps(result))
    return d


def lat(center, n=5, cv=0.01, seed=0):
    """``n`` process runs of one invocation, which itself drifted by 2% (sd of log)."""
    rng = np.random.default_rng(seed)
    return list(center * np.exp(rng.normal(0, 0.02) + rng.normal(0, cv, n)))


def sides(tmp_path, slow=1.0, k=3, **kw):
    """``k`` runs a side of one case; the candidate's latency times ``slow``."""
    base = [
        fake_run(
            tmp_path,
            f"base{i}",
            {"m/w/baseline": {"latency_median": lat(0.01, seed=i), "params_total": [100.0] * 5}},
        )
        for i in range(k)
    ]
    cand = [fake_run(tmp_path, f"cand{i}", {"m/w/baseline": {
        "latency_median": lat(0.01 * slow, seed=50 + i), "params_total": [100.0] * 5}}, **kw)
        for i in range(k)]  # fmt: skip
    return base, cand


def argv(base, cand, *more):
    out = ["compare", str(base[0]), str(cand[0])]
    for b in base[1:]:
        out += ["--base-run", str(b)]
    for c in cand[1:]:
        out += ["--candidate-run", str(c)]
    return [*out, *map(str, more)]


def two_runs(tmp_path, slow=1.0, **kw):
    base, cand = sides(tmp_path, slow, k=1, **kw)
    return base[0], cand[0]


def test_a_slower_candidate_fails_with_a_regression_and_writes_its_report(tmp_path, capsys):
    base, cand = sides(tmp_path, slow=1.3)
    out = tmp_path / "out"
    assert main(argv(base, cand, "--reports", out)) == 1
    printed = capsys.readouterr().out
    assert "REGRESSION" in printed and "1 REGRESSION" in printed
    assert "intervals at 99% (Bonferroni over 1 test at a family-wise 0.01)" in printed
    data = json.loads((out / "compare.json").read_text())
    (row,) = [r for r in data["rows"] if r["metric"] == "latency_median"]
    assert row["verdict"] == "REGRESSION" and row["low"] > 0 and row["unit"] == "s"
    assert (row["n_base"], row["n_cand"], row["evidence"]) == (3, 3, "run")
    # the centers shown are the ones the ratio is made of
    assert row["cand"] / row["base"] == pytest.approx(math.exp(row["estimate"]))
    assert data["verdicts"]["OK"] == 1  # params_total, exact
    md = (out / "compare.md").read_text()
    assert "| m/w/baseline | latency_median |" in md and "forest.png" in md
    html = (out / "compare.html").read_text()
    assert 'class="bad num"' in html or 'class="bad"' in html
    assert "data:image/png;base64," in html and "http" not in html.split("<body>")[1]


def test_the_same_speed_passes(tmp_path, capsys):
    base, cand = sides(tmp_path, slow=1.0)
    assert main(argv(base, cand)) == 0
    assert "0 REGRESSION" in capsys.readouterr().out


def test_one_run_a_side_is_inconclusive_until_the_drift_between_runs_is_known(tmp_path, capsys):
    """A 30% slowdown with tight process runs, one run a side: the runs' own processes say
    nothing of how runs drift, so no verdict, and the way out is named; calibration runs in
    the history database then decide it."""
    from bench.analysis.history_points import run_points
    from bench.results.history import History, default_url

    base, cand = two_runs(tmp_path, slow=1.3)
    assert main(["compare", str(base), str(cand), "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "INCONCLUSIVE (one run a side and no estimate" in out and "bench calibrate" in out
    with History(default_url(tmp_path)) as db:
        for i in range(8):
            run = fake_run(tmp_path / "cal", f"cal{i}", {"m/w/baseline": {
                "latency_median": lat(0.01, seed=100 + i), "params_total": [100.0] * 5}})  # fmt: skip
            db.append("calibration", *run_points(run))
    assert main(["compare", str(base), str(cand), "--results", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "(calibration 7 df)" in out


def test_inconclusive_warns_and_fails_only_when_strict(tmp_path, capsys):
    base, cand = two_runs(tmp_path, slow=1.2)
    assert main(["compare", str(base), str(cand)]) == 0
    printed = capsys.readouterr()
    assert "INCONCLUSIVE" in printed.out and "warning" not in printed.out  # table: stdout
    assert "INCONCLUSIVE: add runs per side" in printed.err and "warning" in printed.err
    assert main(["compare", str(base), str(cand), "--strict"]) == 1


def test_more_runs_per_side_are_the_unit_not_their_processes(tmp_path, capsys):
    base, cand = sides(tmp_path, slow=1.3, k=2)
    out = tmp_path / "o"
    assert main(argv(base, cand, "--reports", out)) == 1
    row = next(r for r in json.loads((out / "compare.json").read_text())["rows"]
               if r["metric"] == "latency_median")  # fmt: skip
    assert (row["n_base"], row["n_cand"]) == (2, 2) and row["df"] == 2
    assert row["basis"].endswith("(the sides 2 df)")


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"suite": "other"}, "the sides ran different suites (s vs other)"),
        ({"env": {**ENV, "cpu_model": "Other CPU"}}, "CPU model: Test CPU vs Other CPU"),
        ({"env": {**ENV, "torch": "2.14.1"}}, "torch: 2.13 vs 2.14"),
        ({"threads": 4}, "threads: 2 vs 4"),
    ],
)
def test_incomparable_sides_end_with_one_line_and_exit_2(tmp_path, capsys, kw, words):
    base, cand = two_runs(tmp_path, **kw)
    assert main(["compare", str(base), str(cand)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err
    if "suite" not in kw:
        assert main(["compare", str(base), str(cand), "--allow-mixed"]) == 0
        assert "compared despite different setups" in capsys.readouterr().out


def test_bad_inputs_end_with_one_line_and_exit_2(tmp_path, capsys):
    base, cand = two_runs(tmp_path)
    assert main(["compare", str(base), str(base)]) == 2
    assert "is on both sides" in capsys.readouterr().err
    assert main(["compare", str(base), str(tmp_path / "nope")]) == 2
    assert "nope: no bench run folder" in capsys.readouterr().err
    next((cand / "cases").glob("*.json")).write_text("{trunc")
    assert main(["compare", str(base), str(cand)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "m__w__baseline.r0.json: truncated or not JSON" in err
    bad_gates = fake_run(tmp_path, "g", {"m/w/baseline": {"latency_median": lat(0.01)}},
                         suite_text=SUITE_TEXT + "[gates]\nlatency_median = 0\n")  # fmt: skip
    assert main(["compare", str(base), str(bad_gates)]) == 2
    assert "gates.latency_median: tolerance 0" in capsys.readouterr().err


def test_the_bases_gates_judge_and_a_candidate_cannot_loosen_them(tmp_path, capsys):
    base, _ = sides(tmp_path, k=3)
    loose = [fake_run(tmp_path, f"loose{i}", {"m/w/baseline": {"latency_median": lat(0.013, seed=9 + i)}},
                      suite_text=SUITE_TEXT + "[gates]\nlatency_median = 0.50\n")
             for i in range(3)]  # fmt: skip
    assert main(argv(base, loose)) == 1  # still judged at the base's 5%
    out = capsys.readouterr().out
    assert (
        "the candidate's suite changes latency_median ±50% (base ±5%); judged by the base's" in out
    )
    gates = tmp_path / "gates.toml"
    gates.write_text("[gates]\nlatency_median = 0.50\n")
    assert main(argv(base, loose, "--gates", gates)) == 0  # pinned on purpose
    assert "gates: the pinned --gates file" in capsys.readouterr().out
    gates.write_text("[gates]\nlatncy_median = 0.5\n")
    assert main(argv(base, loose, "--gates", gates)) == 2
    assert "gates.toml: gates.latncy_median: unknown metric" in capsys.readouterr().err


def test_pytest_benchmark_saves_are_runs(pytester, tmp_path, capsys):
    """Real pytest-benchmark saves: three per side, the candidate 3x slower."""
    storage = tmp_path / "bm"
    for delay, count in ((0.001, 3), (0.003, 3)):
        pytester.makepyfile(test_bm=textwrap.dedent(f"""
            import time
            def test_sleep(benchmark):
                benchmark(time.sleep, {delay})
        """))  # fmt: skip
        for _ in range(count):
            r = pytester.runpytest("-q", "--benchmark-autosave", f"--benchmark-storage={storage}",
                                   "--benchmark-max-time=0.01", "--benchmark-min-rounds=3",
                                   "-p", "no:cacheprovider")  # fmt: skip
            assert r.ret == 0
    saves = sorted(storage.rglob("*.json"))
    assert len(saves) == 6
    base, cand = tmp_path / "base", tmp_path / "cand"
    for d, files in ((base, saves[:3]), (cand, saves[3:])):
        d.mkdir()
        for f in files:
            (d / f.name).write_bytes(f.read_bytes())
    capsys.readouterr()
    assert main(["compare", str(base), str(cand)]) == 1
    out = capsys.readouterr().out
    assert "test_bm.py::test_sleep" in out and "REGRESSION" in out
    assert main(["compare", str(base), str(base / saves[0].name)]) == 2  # a save on both sides


def test_a_nan_center_never_reaches_the_table(tmp_path):
    base = fake_run(tmp_path, "b", {"c": {"latency_median": [0.01, 0.011, 0.012]}})
    cand = fake_run(tmp_path, "c", {"c": {"latency_median": [0.01, 0.011, 0.012]}})
    from bench.analysis.compare import compare
    from bench.analysis.sides import load_side

    c = compare(load_side([base]), load_side([cand]))
    ((_, ch),) = c.rows
    assert not math.isnan(ch.estimate) and not math.isnan(ch.base)


@pytest.mark.slow
def test_calibrate_appends_back_to_back_runs_and_compare_then_decides(
    tmp_path, write_suite, capsys
):
    """bench calibrate: real `bench run` invocations into the history "calibration"; a
    comparison of one run a side then knows how far runs drift (and names its source)."""
    from tests.conftest import selftest_suite

    suite = write_suite(selftest_suite("cal", repeats=2))
    results = tmp_path / "results"
    assert main(["calibrate", str(suite), "--runs", "3", "--results", str(results)]) == 0
    printed = capsys.readouterr()
    assert "A/A run 3/3" in printed.err
    assert "3 runs appended to the history 'calibration'" in printed.err
    assert "one run a side: decided beyond" in printed.out  # the table: a result
    runs = sorted(p.parent for p in results.glob("*/manifest.json"))
    assert len(runs) == 3
    assert main(["compare", str(runs[0]), str(runs[1]), "--results", str(results), "--all"]) == 0
    assert "(calibration 2 df)" in capsys.readouterr().out
    assert main(["calibrate", str(suite), "--runs", "2", "--results", str(results)]) == 2
