"""The nightly history: the database (SQLite here; PostgreSQL where BENCH_TEST_POSTGRES_URL
names a server, as ``nox -s postgres`` does), change points and alarms, ``bench history``."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.analysis import changepoints as cp
from bench.analysis.history_points import environment_key, run_points
from bench.cli import main
from bench.results.history import History, default_url
from bench.results.metric_info import Tolerance
from tests.conftest import PARTS

SUITE = """
name = "nightly-test"
[[models]]
name = "tinygpt-s"
[[workloads]]
name = "forward"
"""
CASE = "tinygpt-s/forward-b8-s128/baseline"
ENV = {"cpu_model": "Test CPU", "torch": "2.13.0+cpu", "python": "3.11.7", "cpu_count": 2}


def fake_run(
    results: Path,
    night: int,
    latency: list[float],
    size: float = 1000.0,
    env: dict | None = None,
    commit: str | None = None,
    history: str = "nightly",
    cases: int = 1,
) -> Path:
    """A finished run folder as ``bench run --history`` leaves it: one case (or ``cases``),
    its process runs' latencies, and a deterministic size."""
    run_id = f"2026{night:04d}-000000-nightly-test-{night:08x}"
    run_dir = results / run_id
    (run_dir / "cases").mkdir(parents=True)
    started = (pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(days=night)).isoformat()
    manifest = {
        "schema_version": 1,
        "run_id": run_id,
        "suite": {"name": "nightly-test", "text": SUITE},
        "environment": {**ENV, **(env or {}), "git": {"commit": commit or f"c{night:039d}"}},
        "started": started,
        "status": "complete",
        "history": history,
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    case_ids = [CASE] if cases == 1 else [f"{CASE}-{k}" for k in range(cases)]
    for (r, value), case_id in itertools.product(enumerate(latency), case_ids):
        case = {
            "case_id": case_id,
            "status": "ok",
            "repeat": r,
            "case": {"run": {"threads": 2}, **PARTS},
            "metrics": [
                {"name": "latency_median", "value": value, "unit": "s", "method": "perf_counter"},
                {"name": "state_dict_bytes", "value": size, "unit": "bytes", "method": "nbytes"},
            ],
        }
        name = f"case{case_ids.index(case_id)}.r{r}.json"
        (run_dir / "cases" / name).write_text(json.dumps(case))
    return run_dir


def nightly(results: Path, nights: int, step_at: int | None = None, step: float = 0.25, seed=0):
    """``nights`` runs of 3 process runs each, 3% noise, a step from ``step_at`` on."""
    rng = np.random.default_rng(seed)
    for i in range(nights):
        level = 0.020 * (1 + step if step_at is not None and i >= step_at else 1)
        fake_run(results, i, list(level * np.exp(rng.normal(0, 0.03, 3))))


# --- the database -----------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return default_url(tmp_path)
    url = os.environ.get("BENCH_TEST_POSTGRES_URL")
    if not url:
        pytest.skip(
            "no PostgreSQL server: `nox -s postgres` starts one and sets BENCH_TEST_POSTGRES_URL"
        )
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:  # a clean schema for each test
        for table in ("bench_points", "bench_runs", "bench_meta", "bench_acks"):
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table} CASCADE"))
    engine.dispose()
    return url


def test_append_is_one_row_per_case_and_metric_and_idempotent(tmp_path, db_url):
    run_dir = fake_run(tmp_path / "results", 0, [0.020, 0.021, 0.019])
    run, points = run_points(run_dir)
    with History(db_url) as db:
        db.append("nightly", run, points)
        db.append("nightly", run, points)  # the same run again replaces it
        df = db.frame("nightly")
        assert db.names() == ["nightly"]
    assert sorted(df.metric) == ["latency_median", "state_dict_bytes"]
    lat = df[df.metric == "latency_median"].iloc[0]
    assert lat.value == pytest.approx(np.exp(np.log([0.020, 0.021, 0.019]).mean()))  # geo. mean
    assert lat.n == 3 and lat.run_values == [0.020, 0.021, 0.019]
    assert lat.low < 0.020 < lat.high  # a 95% interval over the 3 process runs
    assert lat.git_commit.startswith("c000") and lat.env_key == environment_key(lat.env)
    assert lat.gates["latency_median"] == {"kind": "relative", "value": 0.05}


def test_a_failed_write_leaves_the_history_as_it_was(tmp_path, db_url, monkeypatch):
    results = tmp_path / "results"
    first = run_points(fake_run(results, 0, [0.02, 0.02, 0.02]))
    second = run_points(fake_run(results, 1, [0.03, 0.03, 0.03]))
    with History(db_url) as db:
        db.append("nightly", *first)
        before = db.frame("nightly")
        from bench.results import history

        real = history._insert

        def half(conn, name, run, points):  # the run row goes in, then the write dies
            real(conn, name, run, [])
            raise KeyboardInterrupt

        monkeypatch.setattr(history, "_insert", half)
        with pytest.raises(KeyboardInterrupt):
            db.append("nightly", *second)
        pd.testing.assert_frame_equal(db.frame("nightly"), before)


def test_a_process_killed_mid_write_leaves_the_history_as_it_was(tmp_path):
    """SIGKILL between the run row and its points: SQLite's journal rolls it back."""
    results = tmp_path / "results"
    nightly(results, 1)
    url = default_url(results)
    assert main(["history", "rebuild", "--results", str(results)]) == 0
    victim = fake_run(results, 1, [0.03, 0.03, 0.03])
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from bench.analysis.history_points import run_points
        from bench.results import history
        real = history._insert
        def dying(conn, name, run, points):
            real(conn, name, run, points[:1])
            os.kill(os.getpid(), signal.SIGKILL)
        history._insert = dying
        with history.History({url!r}) as db:
            db.append("nightly", *run_points(Path({str(victim)!r})))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert done.returncode == -signal.SIGKILL
    with History(url) as db:
        assert set(db.frame("nightly").run_id) == {"20260000-000000-nightly-test-00000000"}


WRITER = """
import sys, time
from argparse import Namespace
from pathlib import Path
import sqlalchemy  # all imported before the start, so that the writes race
from bench.cli import history as cli_history
from bench.analysis import history_points
from bench.results import history
if sys.argv[1].startswith("postgres"):
    import psycopg
url, flags, me, *run_dirs = sys.argv[1:]
for wave, run_dir in enumerate(run_dirs):
    Path(flags, f"ready{wave}-{me}").touch()
    while not Path(flags, f"go{wave}").exists():
        time.sleep(0.002)
    args = Namespace(history="nightly", history_url=url, results=Path(run_dir).parent)
    print(cli_history.append(args, Path(run_dir)))  # the last step of `bench run --history`
"""


def test_eight_runs_finishing_at_once_land_each_exactly_once(tmp_path, db_url):
    """8 ``bench run --history`` processes released at once into one database, twice: new
    (all of them creating its tables), then existing. Each run lands once, whole; none
    fails ("database is locked", "table already exists", a deadlock)."""
    results, flags, writers = tmp_path / "results", tmp_path / "flags", range(8)
    flags.mkdir()
    runs = [[fake_run(results, 10 * w + i, [0.02] * 3, cases=16) for w in (0, 1)] for i in writers]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, db_url, str(flags), str(i), *map(str, runs[i])],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in writers
    ]
    try:
        for wave in (0, 1):  # released when all are ready (or one died: no use waiting)
            deadline = time.monotonic() + 60
            while (
                len(list(flags.glob(f"ready{wave}-*"))) < len(procs)
                and all(p.poll() is None for p in procs)
                and time.monotonic() < deadline
            ):
                time.sleep(0.01)
            (flags / f"go{wave}").touch()
        done = [(*p.communicate(timeout=60), p.returncode) for p in procs]
    finally:
        for p in procs:
            p.kill()
    failures = [  # the last line of each: the error
        (err.strip().splitlines() or [f"exit {code}"])[-1]
        for _, err, code in done
        if code != 0 or "Traceback" in err or "database is locked" in err
    ]
    assert failures == [], f"{len(failures)} of 8 writers failed:\n" + "\n".join(failures)
    assert all(out.count("+1 run (32 points)") == 2 for out, _, _ in done)
    with History(db_url) as db:
        assert db.names() == ["nightly"]
        df = db.frame("nightly")
    assert sorted(set(df.run_id)) == sorted(run.name for pair in runs for run in pair)
    assert len(df) == 16 * 32 and not df.duplicated(["run_id", "case_id", "metric"]).any()


def test_rebuild_rederives_the_database_from_the_run_folders(tmp_path, capsys):
    results = tmp_path / "results"
    nightly(results, 4)
    fake_run(results, 9, [0.02] * 3, history="other")
    assert main(["history", "rebuild", "nightly", "--results", str(results)]) == 0
    with History(default_url(results)) as db:
        assert db.names() == ["nightly"]
        assert len(set(db.frame("nightly").run_id)) == 4
    assert main(["history", "rebuild", "--results", str(results)]) == 0  # every history
    with History(default_url(results)) as db:
        assert db.names() == ["nightly", "other"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["history", "show", "missing"], "no history named 'missing' (known: nightly)"),
        (["history", "show", "nightly", "--metric", "nope"], "--metric nope: not in this history"),
        (["history", "show", "nightly", "--since", "yesterday-ish"], "--since 'yesterday-ish'"),
        (["history", "rebuild", "missing"], "no finished run marked --history missing"),
        (
            ["history", "show", "nightly", "--history-url", "postgresql://bench@127.0.0.1:9/x"],
            "cannot use the history database",
        ),
        (
            ["history", "show", "nightly", "--history-url", "nosuch://x"],
            "not a usable database URL",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    results = tmp_path / "results"
    nightly(results, 2)
    assert main(["history", "rebuild", "--results", str(results)]) == 0
    capsys.readouterr()
    assert main([*argv, "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_missing_database_driver_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the extra were not installed
    url = "postgresql://bench@127.0.0.1:9/x"
    assert (
        main(["history", "show", "nightly", "--results", str(tmp_path), "--history-url", url]) == 2
    )
    err = capsys.readouterr().err
    assert "no driver for this database" in err and "llm-opt-bench[postgres]" in err


def test_a_corrupt_row_is_skipped_with_one_warning_per_run_naming_why(tmp_path, capsys):
    import sqlite3

    results = tmp_path / "results"
    nightly(results, 3)
    assert main(["history", "rebuild", "--results", str(results)]) == 0
    with sqlite3.connect(results / "history.sqlite") as conn:
        (run_id,) = conn.execute("SELECT run_id FROM bench_runs ORDER BY started").fetchone()
        conn.execute("UPDATE bench_points SET run_values = '[1, 2' WHERE run_id = ?", (run_id,))
        conn.execute("UPDATE bench_points SET value = 'fast' WHERE run_id != ? AND metric = "
                     "'latency_median'", (run_id,))  # fmt: skip
    capsys.readouterr()
    assert main(["history", "show", "nightly", "--results", str(results)]) == 0
    out, err = capsys.readouterr()
    warned = [line for line in err.splitlines() if line.startswith("bench: warning:")]
    assert len(warned) == 3 and all("`bench history rebuild`" in line for line in warned)
    assert f"run {run_id}: 2 row(s) cannot be believed (JSON that does not parse" in err
    assert "value 'fast' is not a finite number" in err
    assert "history nightly: 2 runs" in out  # the state_dict_bytes rows of two runs remain


# --- change points and alarms -----------------------------------------------------------


FIVE_PERCENT = Tolerance("relative", 0.05)


def series(values, metric="latency_median", tolerance=FIVE_PERCENT, env="e"):
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    nights = tuple(
        cp.Night(f"n{i}", t0 + pd.Timedelta(days=i), f"c{i}", v, None, None, (v,), tolerance)
        for i, v in enumerate(values)
    )
    return cp.Series("case", metric, "s", env, {}, nights)


def noisy(n, step_at=None, step=0.25, sd=0.03, seed=1):
    rng = np.random.default_rng(seed)
    return [
        0.02 * (1 + step if step_at is not None and i >= step_at else 1) * np.exp(rng.normal(0, sd))
        for i in range(n)
    ]


def test_a_quiet_history_raises_no_alarm():
    assert cp.alarms(cp.analyse([series(noisy(40, seed=s)) for s in range(5)])) == []


def test_a_step_raises_one_alarm_at_its_night_once_it_persisted():
    values = noisy(40, step_at=30)
    [alarm] = cp.alarms(cp.analyse([series(values)]))
    assert alarm.index == 30 and alarm.change.estimate == pytest.approx(np.log(1.25), abs=0.03)
    # as many tests as nights the detector could have picked in the span it scanned
    assert alarm.change.evidence == "night"
    assert alarm.change.looks == alarm.end - alarm.start - 2 * cp.MIN_SIZE + 1
    assert alarm.change.low > 0  # the interval shown is the one that decided
    # one night after the step is too young to alarm, whatever its size
    assert cp.alarms(cp.analyse([series(values[:31])])) == []
    # a later fix back to the old level closes the alarm
    fixed = values + noisy(10, seed=7)
    points = {p.index: p.change.verdict for p in cp.analyse([series(fixed)])}
    assert points[30] == "REGRESSION" and points[40] == "IMPROVED"
    assert cp.alarms(cp.analyse([series(fixed)])) == []


def test_a_partial_undo_keeps_the_alarm_open():
    """+40% at night 30, then -9% at night 45: an IMPROVED change, but the level is still
    1.27x where it was before the regression, far beyond the 5% tolerance."""
    values = [v * (1.40 if i >= 30 else 1) * (0.91 if i >= 45 else 1)
              for i, v in enumerate(noisy(60, sd=0.02))]  # fmt: skip
    points = cp.analyse([series(values)])
    assert {p.index: str(p.change.verdict) for p in points} == {30: "REGRESSION", 45: "IMPROVED"}
    [alarm] = cp.alarms(points)
    assert alarm.index == 30


@pytest.mark.parametrize("step, within", [(2.0, 6), (1.5, 9)])
def test_a_short_history_alarms_on_a_clear_step(step, within):
    """Four nights before the step, at the night-to-night noise measured on this VM (10%):
    the nights' magnitudes decide (a rank test on 4 + 4 nights cannot reach the level
    whatever the step's size). ``within``: nights after the step by which it must alarm,
    the 90th percentile benchmarks/nightly.py measured on real nights in order."""
    rng = np.random.default_rng(21)
    values = [0.02 * (step if i >= 4 else 1) * np.exp(rng.normal(0, 0.10)) for i in range(12)]
    first = next((t for t in range(6, 13) if cp.alarms(cp.analyse([series(values[:t])]))), None)
    assert first is not None and first - 4 <= within


def test_a_night_is_judged_by_the_gates_of_the_night_before_it():
    """A regression whose own night loosens the latency gate to 50% is still judged at the
    5% the nights before it had: the judged side does not set its own bar."""
    values = noisy(40, step_at=30)
    s = series(values)
    loose = Tolerance("relative", 0.50)
    nights = tuple(
        cp.Night(**{**n.__dict__, "tolerance": loose}) if i >= 30 else n
        for i, n in enumerate(s.nights)
    )
    [alarm] = cp.alarms(cp.analyse([cp.Series(**{**s.__dict__, "nights": nights})]))
    assert alarm.index == 30 and alarm.change.tolerance == FIVE_PERCENT


def test_a_new_environment_starts_a_new_series_instead_of_alarming(tmp_path):
    results = tmp_path / "results"
    rng = np.random.default_rng(3)
    for i in range(30):
        new = i >= 20  # another torch build, slower: not a regression of the code
        level = 0.025 if new else 0.020
        env = {"torch": "2.14.1+cpu"} if new else None
        fake_run(results, i, list(level * np.exp(rng.normal(0, 0.03, 3))), env=env)
    assert main(["history", "rebuild", "--results", str(results)]) == 0
    with History(default_url(results)) as db:
        all_series = cp.series_of(db.frame("nightly"))
    latency = [s for s in all_series if s.metric == "latency_median"]
    assert [len(s.nights) for s in latency] == [20, 10]
    assert cp.alarms(cp.analyse(all_series)) == []


def test_a_deterministic_metric_alarms_at_once():
    sizes = [1000.0] * 20 + [1200.0]
    [alarm] = cp.alarms(cp.analyse([series(sizes, "state_dict_bytes", Tolerance("exact"))]))
    assert alarm.index == 20 and alarm.nights_after == 1 and alarm.change.exact


def test_a_one_night_regression_is_a_suspect_for_confirm():
    values = [*noisy(30), 0.02 * 1.6]
    assert cp.alarms(cp.analyse([series(values)])) == []
    [suspect] = cp.suspects([series(values)])
    assert suspect.index == 30


def test_modelled_figures_never_alarm():
    s = series(noisy(40, step_at=30))
    assert cp.analyse([cp.Series(**{**s.__dict__, "modelled": True})]) == []


# --- bench history, end to end ----------------------------------------------------------


def test_history_with_an_injected_step_alarms_once_at_the_right_night(tmp_path, capsys):
    results = tmp_path / "results"
    nightly(results, 30, step_at=24)
    assert main(["history", "rebuild", "--results", str(results)]) == 0
    capsys.readouterr()
    reports = tmp_path / "reports"
    code = main(
        [
            "history",
            "show",
            "nightly",
            "--results",
            str(results),
            "--plot",
            "--reports",
            str(reports),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "1 open alarm" in out and "2026-01-25" in out  # night 24
    index = (reports / "nightly" / "index.html").read_text()
    assert "ALARM" in index and "1 open alarm" in index
    assert len(list((reports / "nightly").glob("*.png"))) == 2  # latency and size
    # filtered to the size, which did not change: no alarm
    assert (
        main(
            [
                "history",
                "show",
                "nightly",
                "--results",
                str(results),
                "--metric",
                "state_dict_bytes",
            ]
        )
        == 0
    )
    # before the step had lasted two nights: no alarm
    for run in sorted(results.glob("20260025-*")) + sorted(results.glob("2026002[6-9]-*")):
        manifest = json.loads((run / "manifest.json").read_text())
        manifest["history"] = "shorter"
        (run / "manifest.json").write_text(json.dumps(manifest))
    assert main(["history", "rebuild", "--results", str(results)]) == 0
    assert main(["history", "show", "nightly", "--results", str(results)]) == 0


def test_bench_run_appends_to_the_history(tmp_path, write_suite, capsys):
    from tests.conftest import selftest_suite

    suite = write_suite(selftest_suite("hist", repeats=2))
    results = tmp_path / "results"
    args = ["run", str(suite), "--results", str(results), "--no-report", "--history", "nightly"]
    assert main(args) == 0
    out = capsys.readouterr().err
    assert "history nightly: +1 run" in out
    [run_dir] = [p for p in results.iterdir() if p.is_dir()]
    assert json.loads((run_dir / "manifest.json").read_text())["history"] == "nightly"
    with History(default_url(results)) as db:
        df = db.frame("nightly")
    assert set(df.run_id) == {run_dir.name} and "latency_median" in set(df.metric)
    assert main(["history", "show", "nightly", "--results", str(results)]) == 0
    assert "history nightly: 1 runs" in capsys.readouterr().out


def test_confirm_keeps_what_a_paired_rerun_confirms(tmp_path, monkeypatch, capsys):
    """--confirm re-runs the commits on both sides of the change (``bench ab``, faked here:
    its own tests run it for real): REGRESSION confirms, OK dismisses, INCONCLUSIVE keeps the
    alarm open, marked unconfirmed."""
    from types import SimpleNamespace

    from bench.analysis import verdicts
    from bench.run import ab

    results = tmp_path / "results"
    nightly(results, 30, step_at=24)
    assert main(["history", "rebuild", "--results", str(results)]) == 0
    calls = []

    def fake_ab(base, cand, out, budget, console, verdict):
        calls.append((base.ref, cand.ref, Path(base.suite).read_text()))
        change = SimpleNamespace(metric="latency_median", verdict=verdicts.Verdict(verdict))
        return SimpleNamespace(rows=[(CASE, change)])

    outcomes = {"REGRESSION": (1, "confirmed by a paired re-run"), "OK": (0, "dismissed"),
                "INCONCLUSIVE": (1, "unconfirmed, the paired re-run")}  # fmt: skip
    for verdict, (code, words) in outcomes.items():
        monkeypatch.setattr(ab, "run_ab", lambda *a, v=verdict: fake_ab(*a, v))
        capsys.readouterr()
        assert main(["history", "show", "nightly", "--results", str(results), "--confirm"]) == code
        assert words in capsys.readouterr().out
    assert calls[0][:2] == (f"c{23:039d}", f"c{24:039d}") and 'name = "nightly-test"' in calls[0][2]


def test_confirm_spans_the_uncertainty_of_the_change_points_night():
    """A step whose position is uncertain (a night halfway between the two levels) spans
    both nights it could have started on; --confirm re-runs from the commit before the
    earliest to the commit of the latest."""
    rng = np.random.default_rng(2)
    values = [0.02 * (1.3 if i >= 20 else 1) * np.exp(rng.normal(0, 0.03)) for i in range(30)]
    values[19] = 0.02 * 1.14  # halfway
    [alarm] = cp.alarms(cp.analyse([series(values)]))
    assert alarm.first <= 19 <= 20 <= alarm.last


def test_confirm_dismisses_a_change_on_one_commit_as_the_machine(tmp_path, capsys):
    results = tmp_path / "results"
    rng = np.random.default_rng(5)
    for i in range(30):
        level = 0.025 if i >= 24 else 0.020
        fake_run(results, i, list(level * np.exp(rng.normal(0, 0.03, 3))), commit="a" * 40)
    assert main(["history", "rebuild", "--results", str(results)]) == 0
    assert main(["history", "show", "nightly", "--results", str(results)]) == 1
    capsys.readouterr()
    assert main(["history", "show", "nightly", "--results", str(results), "--confirm"]) == 0
    assert "the machine changed, not the code" in capsys.readouterr().out


def test_an_accepted_regression_stops_alarming_until_a_new_one(tmp_path, capsys):
    results = tmp_path / "results"
    nightly(results, 30, step_at=24)
    assert main(["history", "rebuild", "--results", str(results)]) == 0
    where = ["--results", str(results)]
    assert main(["history", "ack", "nightly", *where, "--note", "bigger model, on purpose"]) == 0
    assert "1 alarm(s) accepted" in capsys.readouterr().out
    assert main(["history", "show", "nightly", *where]) == 0
    assert "accepted on" in capsys.readouterr().out
    # a second step, after the ack: alarms again
    rng = np.random.default_rng(9)
    for i in range(30, 40):
        level = 0.020 * 1.25 * (1.25 if i >= 34 else 1)
        run = fake_run(results, i, list(level * np.exp(rng.normal(0, 0.03, 3))))
        m = json.loads((run / "manifest.json").read_text())  # nights after the ack was made
        m["started"] = (pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=i)).isoformat()
        (run / "manifest.json").write_text(json.dumps(m))
    assert main(["history", "rebuild", "--results", str(results)]) == 0
    assert main(["history", "show", "nightly", *where]) == 1


def test_a_degenerate_interval_that_rounds_past_its_value_is_believed():
    """Runs that agree exactly: the geometric mean and its interval's bounds are computed
    apart and differ in the last bits (seen on a real run's peak memory)."""
    from types import SimpleNamespace

    from bench.results.history_rows import environment_key
    from bench.results.history_rows import row_problem as _row_problem

    row = SimpleNamespace(
        run_id="r", case_id="c", metric="memory_peak_rss", unit="bytes", method="m",
        env_key=environment_key({}), started="2026-12-04T00:00:00+00:00",
        value=169754624.00000015, low=169754624.00000018, high=169754624.00000018, n=3,
        run_values="[169754624, 169754624, 169754624]", env="{}", gates="{}",
    )  # fmt: skip
    assert _row_problem(row) is None
    assert "does not hold" in _row_problem(SimpleNamespace(**{**vars(row), "value": 1.7e8}))
    # Python's fromisoformat takes this week date; the frame's pandas parser does not
    assert "is not a date" in _row_problem(SimpleNamespace(**{**vars(row), "started": "2026W011"}))
