"""Tables, plots, reports and --best on synthetic result files with known numbers."""

import pytest
from matplotlib.figure import Figure

from bench import load_results, plots, store, tables
from bench.best import answer
from bench.cli import main
from bench.report import write_reports
from bench.result import CaseResult, Metric
from bench.suite import parse_suite

SUITE = """
name = "rep"
description = "<script>alert(1)</script> & friends"
[run]
repeats = 3
[[models]]
name = "tinygpt-s"
[[workloads]]
name = "generate"
[[techniques]]
name = "baseline"
[[techniques]]
name = "prune"
amount = [0.5, 0.9]
"""
# (technique label) -> per-repeat (tokens/s, KL, bits/byte)
VALUES = {
    "baseline": [(100.0, 0.0, 3.0), (110.0, 0.0, 3.0), (90.0, 0.0, 3.0)],
    "prune-l1-0.5": [(200.0, 0.02, 3.1), (220.0, 0.02, 3.1), (180.0, 0.02, 3.1)],
    "prune-l1-0.9": [(300.0, 0.5, 4.0), (330.0, 0.5, 4.0), (270.0, 0.5, 4.0)],
}


@pytest.fixture
def run_dir(tmp_path):
    suite = parse_suite(SUITE, where="rep.toml")
    run = tmp_path / "results" / "run1"
    store.write_json_atomic(
        run / "manifest.json",
        {
            "run_id": "run1",
            "suite": {"name": "rep", "path": "rep.toml", "text": SUITE},
            "environment": {},
        },
    )
    for i, case in enumerate(suite.cases):
        label = case.techniques[0].label
        for r, (tps, kl, bpb) in enumerate(VALUES[label]):
            metrics = [
                Metric("throughput_tokens", tps, "tokens/s", "x"),
                Metric("kl_to_baseline", kl, "nats/token", "x"),
                Metric("heldout_bits_per_byte", bpb, "bits/byte", "x"),
                Metric("latency_median", 32 / tps, "s", "perf_counter"),
                Metric("energy_per_token", 1.0 / tps, "J/token", "codecarbon_model"),
            ]
            result = CaseResult(case.to_json(), case.id, case.hash, r, "ok", f"2026-01-01T00:00:{i}{r}",
                                "", 1.0, metrics=metrics, run_id="run1")  # fmt: skip
            store.write_json_atomic(store.case_path(run, case.id, r), result.to_json())
    bad = CaseResult(suite.cases[2].to_json(), "tinygpt-s/generate-b1-p32-n32/broken", "h", 0, "failed",
                     "2026-01-01T00:01:00", "", 1.0, error="<b>boom</b>", run_id="run1")  # fmt: skip
    store.write_json_atomic(store.case_path(run, bad.case_id, 0), bad.to_json())
    return run


def test_ratio_to_baseline_with_bootstrap_interval(run_dir):
    df = load_results(run_dir)
    r = tables.ratio_table(df, ["throughput_tokens"]).set_index("case_id")
    row = r.loc["tinygpt-s/generate-b1-p32-n32/prune-l1-0.5"]
    assert row.ratio == pytest.approx(2.0) and row.repeats == 3
    assert row.ci_low <= 2.0 <= row.ci_high and row.ci_low > 1.5
    assert r.loc["tinygpt-s/generate-b1-p32-n32/baseline"].ratio == 1.0


def test_one_repeat_has_no_interval(run_dir):
    df = load_results(run_dir)
    df = df[df.repeat == 0]
    r = tables.ratio_table(df, ["throughput_tokens"])
    assert r.ci_low.isna().all() and (r.repeats == 1).all()


def test_case_table_has_units_and_problems_are_listed(run_dir):
    df = load_results(run_dir)
    t = tables.case_table(df)
    assert "throughput_tokens [tokens/s]" in t.columns
    assert (
        t.loc["tinygpt-s/generate-b1-p32-n32/prune-l1-0.9", "throughput_tokens [tokens/s]"] == 300.0
    )
    problems = tables.problems_table(df)
    assert problems.to_dict("records") == [
        {
            "case_id": "tinygpt-s/generate-b1-p32-n32/broken",
            "repeat": 0,
            "status": "failed",
            "error": "<b>boom</b>",
        }
    ]


def test_plots_return_figures_with_the_expected_artists(run_dir):
    df = load_results(run_dir)
    fig = plots.speed_vs_quality(df)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.collections[0].get_offsets()) == 3  # one point per case
    assert len(ax.texts) == 3 and {t.get_text() for t in ax.texts} == set(VALUES)
    front = ax.lines[0]
    assert len(front.get_xdata()) == 3  # every case is on the front here
    curves = plots.level_curves(df, metrics=("heldout_bits_per_byte",))
    assert list(curves.axes[0].lines[0].get_xdata()) == [0.5, 0.9]
    bars = plots.metric_bars(df, "throughput_tokens")
    assert len(bars.axes[0].patches) == 3
    energy = plots.energy_bars(df)
    assert all(p.get_hatch() == "//" for p in energy.axes[0].patches)
    assert "MODELLED" in energy.axes[0].get_title()
    assert plots.power_trace({"case_id": "x", "samples": {}}) is None


def test_pareto_front():
    import pandas as pd

    pts = pd.DataFrame({"q": [0.0, 0.1, 0.2, 0.1], "s": [1.0, 2.0, 3.0, 1.5]})
    assert plots.pareto_front(pts, "q", "s", x_higher=False, y_higher=True).tolist() == [
        True,
        True,
        True,
        False,
    ]


def test_report_files_exist_and_html_escapes_user_strings(run_dir, tmp_path):
    (html_path,) = write_reports([run_dir], tmp_path / "reports")
    text = html_path.read_text()
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; friends" in text
    assert "<b>boom</b>" not in text and "&lt;b&gt;boom&lt;/b&gt;" in text
    assert "data:image/png;base64," in text
    out = html_path.parent
    assert (out / "report.md").is_file() and (out / "speed_vs_quality.png").is_file()
    assert "highest throughput: prune-l1-0.9 (300 tokens/s)" in (out / "report.md").read_text()
    assert (tmp_path / "reports" / "index.html").read_text().count("<li>") == 1


def test_best_under_constraints(run_dir):
    df = load_results(run_dir)
    best = answer(df, "kl_to_baseline <= 0.05; max throughput_tokens")
    assert best.best.tolist() == ["prune-l1-0.5"] and best.eligible.tolist() == [2]
    none = answer(df, "kl_to_baseline < 0, heldout_bits_per_byte < 1; min latency_median")
    assert none.best.isna().all()


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("kl <= 0.05; max throughput_tokens", "--best: unknown metric 'kl'"),
        ("kl_to_baseline <= 0.05", "expected 'CONSTRAINTS; max|min METRIC'"),
        (
            "kl_to_baseline ~ 0.05; max throughput_tokens",
            "cannot read constraint 'kl_to_baseline ~ 0.05'",
        ),
        ("kl_to_baseline <= 0.05; fastest", "cannot read objective 'fastest'"),
    ],
)
def test_best_errors_are_one_line_exit_2(run_dir, capsys, expr, message):
    assert main(["report", str(run_dir), "--out", str(run_dir / "r"), "--best", expr]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
