"""bench tune: the [tune] table's checks, the study (budget, resume, processes sharing it,
a configuration proposed again, a trial stopped early or interrupted), and the front judged
with intervals. Trials are measured by a stand-in with known figures and run-to-run noise;
tests/test_smoke.py runs a real study."""

from __future__ import annotations

import math
import multiprocessing
import random
import tomllib
from pathlib import Path

import pytest

from bench.cli import main
from bench.run import tune, tune_remeasure
from bench.spec.suite import load_suite
from bench.spec.tune import parse_tune

SUITE = """
name = "t"
[run]
quality = true
[[models]]
name = "tinygpt-s"
[[workloads]]
name = "forward"
batch = 1
seq_len = 16
[tune]
objectives = ["max throughput_tokens", "min state_dict_bytes"]
constraints = ["kl_to_baseline <= 0.05"]
budget = 6
repeats = 3
remeasure = 4
{extra}
[[tune.stages]]
options = [
  {{ name = "prune", method = "l1_unstructured", amount = {{ low = 0.1, high = 0.8 }} }},
  {{ name = "none" }},
]
[[tune.stages]]
options = [{{ name = "quantize", scheme = ["int8_dynamic", "int8_weight_only"] }}, {{ name = "none" }}]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tune.toml"
    path.write_text(text)
    return path


# --- the [tune] table ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("max throughput_tokens", "max throughput_tokenz"),
            "tune.objectives[0]: unknown metric 'throughput_tokenz' (did you mean 'throughput_tokens'?)",
        ),
        (
            ("kl_to_baseline <= 0.05", "kl_to_baseline = 0.05"),
            "tune.constraints[0]: 'kl_to_baseline = 0.05': use 'METRIC <= NUMBER'",
        ),
        (
            ("low = 0.1, high = 0.8", "low = 0.8, high = 0.1"),
            "tune.stages[0].options[0].amount: range",
        ),
        (("low = 0.1, high = 0.8", "low = 0.1, high = 1.5"), "tune.stages[0].options[0]"),
        (('"int8_weight_only"]', '"int9"]'), "tune.stages[1].options[0]"),
        (('name = "quantize"', 'name = "quantise"'), "tune.stages[1].options[0].name"),
        (("budget = 6", 'budget = "6 pairs"'), "tune.budget: budget '6 pairs'"),
        (("remeasure = 4", 'remeasure = 4\nsampler = "grid"'), "tune.sampler"),
        (("repeats = 3", "repeats = 3\nwarmup = 2"), "tune.warmup: unknown key"),
    ],
)
def test_a_bad_tune_table_is_one_line_naming_the_key(tmp_path, capsys, change, message):
    path = write(tmp_path, SUITE.format(extra="").replace(*change))
    assert main(["tune", str(path), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err
    assert message in err, err


def test_nothing_to_search_and_two_workloads_are_refused(tmp_path, capsys):
    flat = SUITE.format(extra="").split("[[tune.stages]]")[0]
    assert main(["tune", str(write(tmp_path, flat)), "--results", str(tmp_path)]) == 2
    assert "nothing to search" in capsys.readouterr().err
    two = SUITE.format(extra="").replace("seq_len = 16", "seq_len = [16, 32]")
    assert main(["tune", str(write(tmp_path, two)), "--results", str(tmp_path)]) == 2
    assert "one model and one workload" in capsys.readouterr().err
    assert main(["tune", str(write(tmp_path, SUITE.format(extra=""))), "--budget", "0"]) == 2
    assert "--budget" in capsys.readouterr().err


# --- the study, with trials measured by a stand-in ------------------------------------------


def fake_figures(chain: list[dict]) -> tuple[float, float, float]:
    """(speed-up, bytes, KL) a chain would show: pruning barely speeds a dense model up and
    costs KL with its amount; int8 dynamic is fast and small; weight-only small, not fast."""
    speed, size, kl = 1.0, 1_000_000.0, 0.0
    for step in chain:
        if step["name"] == "prune":
            speed *= 1.0 + 0.02 * step["amount"]
            kl += 0.1 * step["amount"] ** 2
        elif step["scheme"] == "int8_dynamic":
            speed, size, kl = speed * 1.6, size * 0.3, kl + 0.01
        else:
            speed, size, kl = speed * 0.9, size * 0.3, kl + 0.004
    return speed, size, kl


def fake_measurement(path, results, console, stop_when=None, inline=False):
    """What run_measurement returns, from known figures with 8% run-to-run noise and a
    drift shared by the run's cases (what the ratio to the same run's baseline cancels)."""
    suite = load_suite(path)
    rng = random.Random(str(path))
    drift = rng.lognormvariate(0, 0.10)
    cases, order = {}, [c.id for c in suite.cases]
    for c in suite.cases:
        chain = [{"name": t.name, **t.params} for t in c.techniques if t.name != "baseline"]
        speed, size, kl = fake_figures(chain)
        n = suite.run.repeats * (2 if c.is_baseline else 1)
        runs = [1000 * speed * drift * rng.lognormvariate(0, 0.08) for _ in range(n)]
        cases[c.id] = {
            "throughput_tokens": runs,
            "state_dict_bytes": [size] * n,
            "kl_to_baseline": [kl] * n,
        }
        if stop_when is not None:
            why = stop_when(
                {
                    "case_id": c.id,
                    "status": "ok",
                    "metrics": [{"name": "kl_to_baseline", "value": kl}],
                }
            )
            if why:
                cases[c.id] = {k: v[:1] for k, v in cases[c.id].items()}
    base = next(c.id for c in suite.cases if c.is_baseline)
    return tune.Measured(f"run-{path.stem}", cases, base, {}, order)


@pytest.fixture
def study(tmp_path, monkeypatch):
    monkeypatch.setattr(tune, "run_measurement", fake_measurement)
    path = write(tmp_path, SUITE.format(extra=""))
    suite = load_suite(path)
    spec = parse_tune(tomllib.loads(suite.text)["tune"], "forward", str(path))
    url = f"sqlite:///{tmp_path / 'history.sqlite'}"

    class Quiet:
        def print(self, *a, **k):
            pass

    def tuner(trials: int | None = None, minutes: float | None = None):
        opts = tune.TuneOptions(tmp_path / "results", url, trials, minutes)
        return tune.Tuner(suite, spec, opts, Quiet())

    return tuner


def measured(t) -> list[dict]:
    return tune.completed(t.study)


def test_the_budget_counts_the_studys_trials_and_a_rerun_resumes(study):
    first = study(trials=5)
    assert first.run() == 5 and len(measured(first)) == 5
    again = study(trials=8)  # the same suite: the same study, three more trials
    assert again.name == first.name and again.run() == 3
    numbers = [t["number"] for t in measured(again)]
    assert len(numbers) == 8 and len(set(numbers)) == 8


def _share(factory_args):
    tuner_factory, budget = factory_args
    tuner_factory(trials=budget).run()


def test_two_processes_share_one_sqlite_study(study):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_share, args=((study, 8),)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    trials = measured(study(trials=8))
    # each process stops once the study holds 8 (the last two may overlap by one)
    assert 8 <= len(trials) <= 9
    assert len({t["run_id"] for t in trials}) == len(trials)


def test_a_configuration_proposed_again_is_not_measured_again(study, tmp_path):
    t = study(trials=30)
    t.spec = type(t.spec)(**{**t.spec.__dict__, "stages": t.spec.stages[1:]})  # 3 choices
    assert t.run() == 3  # every proposal after the third was measured already


def test_a_trial_breaking_a_fixed_constraint_stops_after_its_first_run(study):
    t = tune.Trial(0, [{"name": "prune", "amount": 0.9}], {})
    rule = tune._stop_rule(study().spec, t)
    ok = {
        "case_id": "m/w/prune",
        "status": "ok",
        "metrics": [{"name": "kl_to_baseline", "value": 0.01}],
    }
    assert rule(ok) is None and rule({**ok, "case_id": "m/w/baseline"}) is None
    bad = {**ok, "metrics": [{"name": "kl_to_baseline", "value": 0.081}]}
    assert rule(bad) == "kl_to_baseline = 0.081 breaks kl_to_baseline <= 0.05" == t.stopped
    assert rule({**ok, "status": "failed"}) == "the trial's case failed"


def test_an_interrupted_trial_is_measured_first_when_the_study_resumes(study, monkeypatch):
    calls = []

    def interrupted(path, *a, **k):
        calls.append(path)
        raise KeyboardInterrupt

    monkeypatch.setattr(tune, "run_measurement", interrupted)
    first = study(trials=3)
    with pytest.raises(KeyboardInterrupt):
        first.run()
    stopped = first.study.get_trials()[0].params
    monkeypatch.setattr(tune, "run_measurement", fake_measurement)
    again = study(trials=3)
    again.run()
    done = again.study.get_trials(states=(tune_state("COMPLETE"),))
    assert done[0].params == stopped and len(measured(again)) == 3


def tune_state(name):
    import optuna

    return getattr(optuna.trial.TrialState, name)


# --- the front -------------------------------------------------------------------------------


def test_the_front_is_remeasured_in_one_run_and_judged_with_intervals(study):
    from bench.analysis.tune_front import judge

    t = study(trials=12)
    t.run()
    trials = measured(t)
    front = tune_remeasure.search_front(trials, t.spec)
    assert front and all(max(x["constraints"]) <= 0 for x in front)
    points = tune_remeasure.remeasure(t, front)
    assert len({p.run_id for p in points}) == 1  # one run: one baseline, one drift
    judged = judge(points, t.spec.objectives, t.spec.constraints)
    kept = [r["point"] for r in judged if r["front"]]
    assert kept
    for r in judged:  # a point left out is dominated by a kept one, by the intervals
        assert r["front"] or r["dominated_by"] in {p.label for p in kept}
    tuned = tune_remeasure.write_tuned(t, kept)
    suite = load_suite(tuned)
    assert len(suite.cases) == len([p for p in kept if p.chain]) + 1  # and the baseline
    assert suite.run.repeats == t.spec.remeasure


def test_dominance_needs_the_intervals_to_say_so():
    from bench.analysis.tune_front import Point, dominates
    from bench.spec.tune import Objective

    objectives = (Objective("throughput_tokens", True), Objective("state_dict_bytes", False))
    base = {"throughput_tokens": [100, 102, 98, 101, 99, 100], "state_dict_bytes": [10] * 6}

    def point(name, speeds, size):
        runs = {"throughput_tokens": speeds, "state_dict_bytes": [size] * len(speeds)}
        return Point(name, 0, [], {}, {}, runs=runs, base=base, run_id="r")

    fast = point("fast", [150, 152, 149, 151], 3)
    close = point("close", [149, 153, 148, 150], 3)  # within noise of fast
    slow = point("slow", [120, 121, 119, 120], 3)
    small = point("small", [120, 121, 119, 120], 2)
    assert not dominates(fast, close, objectives) and not dominates(close, fast, objectives)
    assert dominates(fast, slow, objectives)
    assert not dominates(fast, small, objectives) and not dominates(small, fast, objectives)
    assert math.isclose(fast.value("throughput_tokens")[0], 1.505, rel_tol=0.01)
