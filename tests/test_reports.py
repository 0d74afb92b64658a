"""Tables, plots, reports and --best on synthetic result files with known numbers."""

import pytest
from matplotlib.figure import Figure

from bench import load_results
from bench.analysis import plots, tables
from bench.analysis.best import answer
from bench.analysis.report import write_reports
from bench.cli import main
from bench.results import store
from bench.results.schema import CaseResult, Metric
from bench.spec.suite import parse_suite
from tests.conftest import write_manifest

SUITE = """
name = "rep"
description = "<script>alert(1)</script> & friends"
[run]
repeats = 3
[[models]]
name = "tinygpt-s"
weights = "random"
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
    write_manifest(run, "rep", SUITE)
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
    broken = "tinygpt-s/generate-b1-p32-n32/broken"
    bad = CaseResult({**suite.cases[2].to_json(), "id": broken}, broken, "h", 0, "failed",
                     "2026-01-01T00:01:00", "", 1.0, error="<b>boom</b>", run_id="run1")  # fmt: skip
    store.write_json_atomic(store.case_path(run, bad.case_id, 0), bad.to_json())
    return run


@pytest.fixture
def two_runs(run_dir):
    """The fixture's run and a copy of it as a second run, loaded together."""
    import shutil

    other = run_dir.parent / "run2"
    shutil.copytree(run_dir, other)
    for f in (other / "cases").glob("*.json"):
        data = store.read_json(f)
        data["run_id"] = "run2"
        store.write_json_atomic(f, data)
    return load_results(run_dir.parent)


def test_ratio_to_baseline_with_its_interval_over_process_repeats(run_dir):
    df = load_results(run_dir)
    r = tables.ratio_table(df, ["throughput_tokens"]).set_index("case_id")
    row = r.loc["tinygpt-s/generate-b1-p32-n32/prune-l1-0.5"]
    assert row.ratio == pytest.approx(2.0) and row.n_case == 3 and row.n_base == 3
    assert row.ci_low <= 2.0 <= row.ci_high and row.ci_low > 1.5
    assert row.method == "welch_t_on_log_runs"
    assert "tinygpt-s/generate-b1-p32-n32/baseline" not in r.index  # not against itself
    # The inverse direction really is the inverse (an inverted ratio would fail here).
    lat = tables.ratio_table(df, ["latency_median"]).set_index("case_id")
    assert lat.loc["tinygpt-s/generate-b1-p32-n32/prune-l1-0.5"].ratio == pytest.approx(0.5)


def test_modelled_energy_gets_no_ratio_and_no_winner(run_dir, tmp_path):
    df = load_results(run_dir)
    r = tables.ratio_table(df, ["energy_per_token"])
    assert r.ratio.isna().all() and r.note.str.contains("proportional to time").all()
    (html_path,) = write_reports([run_dir], tmp_path / "reports")
    md = (html_path.parent / "report.md").read_text()
    assert "least energy per token: not ranked (modelled" in md


def test_below_three_repeats_there_is_no_interval_and_no_winner(run_dir, tmp_path):
    from bench.analysis.report import what_won

    df = load_results(run_dir)
    df = df[df.repeat < 2]
    r = tables.ratio_table(df, ["throughput_tokens"])
    assert r.ci_low.isna().all() and (r.n_case == 2).all()
    assert r.note.str.contains("2 runs; an interval needs 3").all()
    (sentence,) = what_won(df)
    assert "highest throughput: no clear winner (within noise: prune-l1-0.9 leads" in sentence
    # Quality of fixed weights on fixed text does not vary by run: exact at any n.
    assert "best held-out quality: baseline (3 bits/byte; 1.03× (exact) vs" in sentence
    bpb = tables.ratio_table(df, ["heldout_bits_per_byte"]).set_index("case_id")
    row = bpb.loc["tinygpt-s/generate-b1-p32-n32/prune-l1-0.9"]
    assert row.ratio == pytest.approx(4 / 3) and row.method == "exact (deterministic figure)"


def test_noisy_repeats_name_no_winner(run_dir):
    import numpy as np

    df = load_results(run_dir)
    tps = df.metric == "throughput_tokens"
    noise = np.tile([1.0, 0.5, 1.6], len(df[tps]) // 3 + 1)[: tps.sum()]
    df.loc[tps, "value"] = df.loc[tps, "value"].to_numpy() * noise
    w = tables.winners(df, "throughput_tokens")[("run1", "tinygpt-s", "generate-b1-p32-n32")]
    assert w.best is None and w.leader == "prune-l1-0.9"


def test_outlying_repeats_are_flagged_not_dropped(run_dir):
    df = load_results(run_dir)
    hit = (df.metric == "latency_median") & (df.techniques == "baseline") & (df.repeat == 1)
    df.loc[hit, "value"] = df.loc[hit, "value"] * 2.5
    out = tables.outlier_table(df, ["latency_median"])
    assert out[["case_id", "repeat"]].to_dict("records") == [
        {"case_id": "tinygpt-s/generate-b1-p32-n32/baseline", "repeat": 1}
    ]
    r = tables.ratio_table(df, ["latency_median"])
    assert (r.n_base == 3).all()  # still counted


def test_figures_are_per_run_unless_pooled(two_runs):
    df = two_runs
    t = tables.case_table(df, ["throughput_tokens"])
    assert t.index.names == ["run_id", "case_id"] and len(t) == 6
    pooled = tables.case_table(df, ["throughput_tokens"], pool=True)
    assert len(pooled) == 3
    r = tables.ratio_table(df, ["throughput_tokens"], pool=True)
    assert set(r.run_id) == {"pooled: run1, run2"} and (r.n_case == 6).all()
    best = answer(df, "kl_to_baseline <= 0.05; max throughput_tokens")
    assert best.run.tolist() == ["run1", "run2"]


def test_case_table_has_units_and_problems_are_listed(run_dir):
    df = load_results(run_dir)
    t = tables.case_table(df)
    assert "throughput_tokens [tokens/s]" in t.columns
    # each figure is the geometric mean of the case's runs (300, 330, 270)
    value = t.loc["tinygpt-s/generate-b1-p32-n32/prune-l1-0.9", "throughput_tokens [tokens/s]"]
    assert value == pytest.approx((300.0 * 330.0 * 270.0) ** (1 / 3))
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
    md = (out / "report.md").read_text()
    assert "highest throughput: prune-l1-0.9 (299 tokens/s; 1.5× [" in md  # geometric mean
    assert "| 3× [" in md.split("## Ratio to the baseline")[1]
    assert (tmp_path / "reports" / "index.html").read_text().count("<li>") == 1


def test_best_under_constraints(run_dir):
    df = load_results(run_dir)
    best = answer(df, "kl_to_baseline <= 0.05; max throughput_tokens")
    assert best.best.tolist() == ["prune-l1-0.5"] and best.eligible.tolist() == [2]
    assert best.clear.iloc[0].startswith("prune-l1-0.5 (2×")
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
    assert main(["report", str(run_dir), "--reports", str(run_dir / "r"), "--best", expr]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_level_curves_keep_variants_of_a_technique_on_separate_lines():
    text = SUITE.replace(
        'name = "prune"\namount = [0.5, 0.9]',
        'name = "prune"\namount = [0.5, 0.9]\nexecution = ["dense", "csr"]',
    )
    suite = parse_suite(text, where="rep.toml")
    rows = []
    for case in suite.cases:
        result = CaseResult(case.to_json(), case.id, case.hash, 0, "ok", "t", "", 1.0,
                            metrics=[Metric("latency_median", 1.0, "s", "x")], run_id="r")  # fmt: skip
        rows.append(result.to_json())
    df = store.results_frame(rows)
    fig = plots.level_curves(df, metrics=("latency_median",))
    labels = sorted(line.get_label() for line in fig.axes[0].lines)
    assert len(labels) == 2 and any("csr" in label for label in labels)
    assert all(len(line.get_xdata()) == 2 for line in fig.axes[0].lines)


def test_bars_show_spread_across_runs_and_never_a_zero_width_bar(run_dir):
    df = load_results(run_dir)
    fig = plots.metric_bars(df, "throughput_tokens")
    (whiskers,) = [c for c in fig.axes[0].collections if len(c.get_segments())]
    lo_hi = sorted(tuple(sorted(s[:, 0])) for s in whiskers.get_segments())
    assert lo_hi == [(90.0, 110.0), (180.0, 220.0), (270.0, 330.0)]  # min..max of repeats
    one = plots.metric_bars(df[df.repeat == 0], "throughput_tokens")
    assert not [c for c in one.axes[0].collections if len(c.get_segments())]
    assert all("1 run: no spread" in t.get_text() for t in one.axes[0].get_yticklabels())


def test_bars_of_equal_runs_draw_whiskers_of_zero_length(run_dir):
    # exp(mean(log)) of runs all 0.1 is 0.10000000000000002: never a negative whisker
    df = load_results(run_dir)
    df.loc[df.metric == "throughput_tokens", "value"] = 0.1
    fig = plots.metric_bars(df, "throughput_tokens")
    (whiskers,) = [c for c in fig.axes[0].collections if len(c.get_segments())]
    assert all(s[0, 0] == s[1, 0] == 0.1 for s in whiskers.get_segments())


def test_markdown_cells_cannot_break_the_table(run_dir, tmp_path):
    from bench.analysis.document import _md_cell

    assert _md_cell("a|b\nc") == "a\\|b c"
    manifest = store.read_json(run_dir / "manifest.json")
    manifest["run_id"] = "../../../escape"
    manifest["suite"]["name"] = "/etc"
    store.write_json_atomic(run_dir / "manifest.json", manifest)
    (html_path,) = write_reports([run_dir], tmp_path / "reports")
    assert (tmp_path / "reports").resolve() in html_path.resolve().parents


def test_plots_keep_runs_apart_unless_pooled(two_runs):
    df = two_runs
    bars = plots.metric_bars(df, "throughput_tokens")
    labels = [t.get_text() for t in bars.axes[0].get_yticklabels()]
    assert len(labels) == 6 and any(label.startswith("run2: ") for label in labels)
    pooled = plots.metric_bars(tables.scoped(df, pool=True), "throughput_tokens")
    assert len(pooled.axes[0].patches) == 3
