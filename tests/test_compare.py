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

SUITE_TEXT = 'name = "s"\n[[models]]\nname = "tinygpt-s"\n[[workloads]]\nname = "forward"\n'
ENV = {"cpu_model": "Test CPU", "torch": "2.13.0+cpu", "gpu": {"available": False}}


def fake_run(root, run_id, cases, suite="s", env=ENV, suite_text=SUITE_TEXT, threads=2):
    """A run folder as `bench run` writes it: ``cases`` maps case id -> {metric: values}."""
    d = root / run_id
    (d / "cases").mkdir(parents=True)
    manifest = {"run_id": run_id, "environment": env,
                "suite": {"name": suite, "path": "s.toml", "text": suite_text, "sha256": "x"}}  # fmt: skip
    (d / "manifest.json").write_text(json.dumps(manifest))
    for case_id, metrics in cases.items():
        n = len(next(iter(metrics.values())))
        for r in range(n):
            result = {
                "case_id": case_id, "repeat": r, "status": "ok", "run_id": run_id,
                "case": {"run": {"threads": threads}},
                "metrics": [{"name": m, "value": v[r], "unit": "s" if "median" in m else "count",
                             "method": "perf_counter"} for m, v in metrics.items()],
            }  # fmt: skip
            (d / "cases" / f"{case_id.replace('/', '__')}.r{r}.json").write_text(json.dumps(result))
    return d


def lat(center, n=5, cv=0.01, seed=0):
    return list(center * np.exp(np.random.default_rng(seed).normal(0, cv, n)))


def two_runs(tmp_path, slow=1.0, **kw):
    base = fake_run(
        tmp_path,
        "base",
        {"m/w/baseline": {"latency_median": lat(0.01), "params_total": [100.0] * 5}},
    )
    cand = fake_run(
        tmp_path,
        "cand",
        {"m/w/baseline": {"latency_median": lat(0.01 * slow, seed=1), "params_total": [100.0] * 5}},
        **kw,
    )
    return base, cand


def test_a_slower_candidate_fails_with_a_regression_and_writes_its_report(tmp_path, capsys):
    base, cand = two_runs(tmp_path, slow=1.3)
    out = tmp_path / "out"
    assert main(["compare", str(base), str(cand), "--out", str(out)]) == 1
    printed = capsys.readouterr().err
    assert "REGRESSION" in printed and "1 REGRESSION" in printed
    data = json.loads((out / "compare.json").read_text())
    (row,) = [r for r in data["rows"] if r["metric"] == "latency_median"]
    assert row["verdict"] == "REGRESSION" and row["low"] > 0 and row["unit"] == "s"
    assert data["verdicts"]["OK"] == 1  # params_total, exact
    md = (out / "compare.md").read_text()
    assert "| m/w/baseline | latency_median |" in md and "forest.png" in md
    html = (out / "compare.html").read_text()
    assert 'class="bad num"' in html or 'class="bad"' in html
    assert "data:image/png;base64," in html and "http" not in html.split("<body>")[1]


def test_the_same_speed_passes(tmp_path, capsys):
    base, cand = two_runs(tmp_path, slow=1.0)
    assert main(["compare", str(base), str(cand)]) == 0
    assert "0 REGRESSION" in capsys.readouterr().err


def test_inconclusive_warns_and_fails_only_when_strict(tmp_path, capsys):
    base = fake_run(tmp_path, "b", {"c": {"latency_median": [0.01, 0.011]}})
    cand = fake_run(tmp_path, "c", {"c": {"latency_median": [0.012, 0.013]}})
    assert main(["compare", str(base), str(cand)]) == 0
    err = capsys.readouterr().err
    assert "INCONCLUSIVE" in err and "warning" in err
    assert main(["compare", str(base), str(cand), "--strict"]) == 1


def test_more_runs_per_side_are_pooled(tmp_path, capsys):
    b1 = fake_run(tmp_path, "b1", {"c": {"latency_median": [0.010, 0.0101]}})
    b2 = fake_run(tmp_path, "b2", {"c": {"latency_median": [0.0099, 0.0100]}})
    c1 = fake_run(tmp_path, "c1", {"c": {"latency_median": [0.013, 0.0131]}})
    c2 = fake_run(tmp_path, "c2", {"c": {"latency_median": [0.0129, 0.0130]}})
    out = tmp_path / "o"
    assert (
        main(
            [
                "compare",
                str(b1),
                str(c1),
                "--base",
                str(b2),
                "--candidate",
                str(c2),
                "--out",
                str(out),
            ]
        )
        == 1
    )
    (row,) = json.loads((out / "compare.json").read_text())["rows"]
    assert (row["n_base"], row["n_cand"]) == (4, 4)


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
        assert main(["compare", str(base), str(cand), "--force"]) == 0
        assert "compared despite different setups" in capsys.readouterr().err


def test_bad_inputs_end_with_one_line_and_exit_2(tmp_path, capsys):
    base, cand = two_runs(tmp_path)
    assert main(["compare", str(base), str(base)]) == 2
    assert "is on both sides" in capsys.readouterr().err
    assert main(["compare", str(base), str(tmp_path / "nope")]) == 2
    assert "nope: no bench run folder" in capsys.readouterr().err
    next((cand / "cases").glob("*.json")).write_text("{trunc")
    assert main(["compare", str(base), str(cand)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unreadable result file" in err
    bad_gates = fake_run(tmp_path, "g", {"m/w/baseline": {"latency_median": lat(0.01)}},
                         suite_text=SUITE_TEXT + "[gates]\nlatency_median = 0\n")  # fmt: skip
    assert main(["compare", str(base), str(bad_gates)]) == 2
    assert "gates.latency_median: tolerance 0" in capsys.readouterr().err


def test_gates_of_the_candidates_suite_set_the_tolerance(tmp_path):
    base, _ = two_runs(tmp_path)
    loose = fake_run(tmp_path, "loose", {"m/w/baseline": {"latency_median": lat(0.0113, seed=1)}},
                     suite_text=SUITE_TEXT + "[gates]\nlatency_median = 0.20\n")  # fmt: skip
    assert main(["compare", str(base), str(loose)]) == 0


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
    err = capsys.readouterr().err
    assert "test_bm.py::test_sleep" in err and "REGRESSION" in err
    assert main(["compare", str(base), str(base / saves[0].name)]) == 2  # a save on both sides


def test_a_nan_center_never_reaches_the_table(tmp_path):
    base = fake_run(tmp_path, "b", {"c": {"latency_median": [0.01, 0.011, 0.012]}})
    cand = fake_run(tmp_path, "c", {"c": {"latency_median": [0.01, 0.011, 0.012]}})
    from bench.analysis.compare import compare
    from bench.analysis.sides import load_side

    c = compare(load_side([base]), load_side([cand]))
    ((_, ch),) = c.rows
    assert not math.isnan(ch.estimate)
