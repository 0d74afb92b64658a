"""``bench tune``: an Optuna study over the suite's ``[tune]`` space, each trial one run.

A trial is a suite of its own (the suite's model and workload, the group's baseline and the
trial's technique chain), written under ``RESULTS/tune/<study>/`` and run exactly as
``bench run`` runs it: its own processes, warm-up discarded, the baseline in the same run.
Time-like objectives are the trial's ratio to that baseline, so one run's drift cancels;
sizes and quality (``DETERMINISTIC``) are taken as they are. A trial whose first process
run already breaks a constraint on such a figure stops there: no later run can change it.

The study lives in Optuna's tables in the history database (SQLite under the results
folder, or ``--history-url``), so a killed ``bench tune`` resumes it, and several processes
or machines add trials to one study; Optuna's heartbeat fails (and retries once) a trial
whose process died. When the budget is spent, the trials' Pareto front is measured
again, all in one run with more repeats (``tune_remeasure``): the front reported is judged
on that run (``bench.analysis.tune_front``), where every point shares one baseline and one
drift, and it says how far each point fell from its search figure.
"""

from __future__ import annotations

import hashlib
import math
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.results.metric_info import DETERMINISTIC
from bench.run.tune_study import heartbeat, open_study
from bench.spec.suite import BASELINE, Suite, load_suite
from bench.spec.tune import NONE, Param, TuneSpec

TRIAL_ATTR = "bench"  # the trial's configuration, run and figures, as Optuna user attributes
MAX_REPEATS_OF_A_CONFIG = 20  # proposals in a row that were all measured already: space spent


def is_relative(metric: str) -> bool:
    """Judged as a ratio to the same run's baseline (drifts with the machine), or as is."""
    return metric not in DETERMINISTIC


@dataclass
class Trial:
    number: int
    chain: list[dict[str, Any]]  # technique tables, applied in order ([]: the baseline)
    workload: dict[str, Any]  # the workload's searched parameters
    run_id: str | None = None
    figures: dict[str, float] = field(default_factory=dict)  # objective/constraint values
    stopped: str | None = None  # why the run stopped after its first process runs
    error: str | None = None

    @property
    def key(self) -> str:
        return repr((self.chain, sorted(self.workload.items())))


def study_name(suite: Suite) -> str:
    """One study per suite text: a changed space or workload is a new study, not a mix."""
    return f"{suite.name}-{hashlib.sha256(suite.text.encode()).hexdigest()[:12]}"


def base_data(suite: Suite) -> dict[str, Any]:
    data = tomllib.loads(suite.text)
    if len(data.get("models", [])) != 1 or len(data.get("workloads", [])) != 1:
        raise UserError(
            "bench tune searches one model and one workload: list one of each",
            where=suite.path,
            key="models",
        )
    groups = {c.group for c in suite.cases}
    if len(groups) != 1:
        raise UserError(
            "bench tune needs one model and one workload (no list values in "
            "them): the trials share one baseline",
            where=suite.path,
        )
    data.pop("tune", None)
    data.pop("matrix", None)
    return data


def suggest(trial, spec: TuneSpec) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The trial's technique chain and workload parameters, asked of Optuna."""
    workload = {k: _value(trial, v) for k, v in spec.workload.items()}
    chain = []
    for i, options in enumerate(spec.stages):
        names = [_option_label(o, j) for j, o in enumerate(options)]
        j = names.index(trial.suggest_categorical(f"stage{i}", names)) if len(names) > 1 else 0
        option = options[j]
        if option["name"] != NONE:
            chain.append({k: _value(trial, v) for k, v in option.items()})
    return chain, workload


def _option_label(option: dict[str, Any], j: int) -> str:
    fixed = [f"{k}={v}" for k, v in option.items() if k != "name" and not isinstance(v, Param)]
    return f"{j}:{option['name']}" + (f"({','.join(fixed)})" if fixed else "")


def _value(trial, v: Any) -> Any:
    if not isinstance(v, Param):
        return v
    if v.choices is not None:
        return trial.suggest_categorical(v.name, list(v.choices))
    r = v.range
    if r.integer:
        step = int(r.step) if r.step else 1
        return trial.suggest_int(v.name, int(r.low), int(r.high), step=step, log=r.log)
    return trial.suggest_float(v.name, r.low, r.high, step=r.step, log=r.log)


def trial_suite(
    data: dict[str, Any], name: str, chains: list[list[dict]], workload: dict, repeats: int
) -> dict[str, Any]:
    """The suite that measures ``chains`` (each a case) against the baseline, in one run."""
    out = {k: v for k, v in data.items() if k != "techniques"}
    out["name"] = name
    out["run"] = {**data.get("run", {}), "repeats": repeats}
    out["workloads"] = [{**data["workloads"][0], **workload}]
    out["techniques"] = [{"name": BASELINE}] + [{"chain": c} for c in chains if c]
    return out


def write_suite(data: dict[str, Any], path: Path) -> Path:
    import tomli_w

    from bench.atomic import write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, tomli_w.dumps(data))
    return path


@dataclass
class Measured:
    run_id: str
    cases: dict[str, dict[str, list[float]]]  # case id -> metric -> process-run figures
    baseline: str  # the baseline's case id
    errors: dict[str, str]  # case id -> why it failed
    order: list[str]  # the suite's case ids, in the order of its technique entries


def run_measurement(path: Path, results: Path, console, stop_when=None, inline=False) -> Measured:
    """Run the suite at ``path`` as ``bench run`` would; each case's figures by metric."""
    from bench.run.suite_driver import RunOptions, run_suite

    suite = load_suite(path)
    opts = RunOptions(results=results, argv=["bench", "tune"], stop_when=stop_when, inline=inline)
    outcome = run_suite(suite, opts, console)
    cases: dict[str, dict[str, list[float]]] = {}
    errors: dict[str, str] = {}
    for r in outcome.results:
        if r["status"] != "ok":
            errors[r["case_id"]] = (r.get("error") or r["status"]).splitlines()[0]
            continue
        per = cases.setdefault(r["case_id"], {})
        for m in r.get("metrics") or []:
            if m.get("value") is not None and math.isfinite(m["value"]):
                per.setdefault(m["name"], []).append(float(m["value"]))
    base = next(c.id for c in suite.cases if c.is_baseline)
    return Measured(outcome.run_id, cases, base, errors, [c.id for c in suite.cases])


def figure(metric: str, case: dict[str, list[float]], base: dict[str, list[float]]) -> float:
    """A trial's value of ``metric``: its ratio to the same run's baseline (time-like), or
    its center (sizes, quality). NaN where the metric is missing."""
    from bench.analysis.stats import center, ratio

    if metric not in case:
        return math.nan
    if not is_relative(metric):
        return center(case[metric])
    if metric not in base:
        return math.nan
    return ratio(case[metric], base[metric]).value


def candidate_id(measured: Measured) -> str | None:
    return next((c for c in (*measured.cases, *measured.errors) if c != measured.baseline), None)


@dataclass
class TuneOptions:
    results: Path
    storage: str
    budget_trials: int | None
    budget_minutes: float | None
    inline: bool = False


class Tuner:
    """One process's share of a study: ask Optuna, run the trial, tell Optuna."""

    def __init__(self, suite: Suite, spec: TuneSpec, opts: TuneOptions, console):
        self.suite, self.spec, self.opts, self.console = suite, spec, opts, console
        self.data = base_data(suite)
        self.name = study_name(suite)
        self.folder = opts.results / "tune" / self.name
        opts.results.mkdir(parents=True, exist_ok=True)  # the default database lives there
        try:
            self.study = open_study(self.name, spec, opts.storage, opts.budget_trials)
        except Exception as e:  # SQLAlchemy's and the drivers' errors share no base class
            from bench.results.history import shown

            why = str(e).splitlines()[0]
            raise UserError(f"cannot open the study in {shown(opts.storage)}: {why}") from None

    def trials_done(self) -> list[Any]:
        import optuna

        states = (optuna.trial.TrialState.COMPLETE,)
        return self.study.get_trials(deepcopy=False, states=states)

    def run(self) -> int:
        """Trials until the budget is spent (in the study's trials, over every process, or
        in this process's minutes); returns how many this process measured."""
        import optuna

        started, measured, repeats_in_a_row = time.monotonic(), 0, 0
        while not self._spent(started):
            # A trial whose process died (killed, a machine lost) stops sending heartbeats:
            # failed here, and queued again once by the storage's retry callback.
            optuna.storages.fail_stale_trials(self.study)
            trial = self.study.ask()
            try:
                fresh = self._trial(trial)
            except BaseException:
                # Stopped with a trial in hand (Ctrl-C, SIGTERM, a full disk): it is failed
                # and its configuration queued again, so the resumed study measures it first.
                self._requeue(trial)
                raise
            if fresh:
                measured, repeats_in_a_row = measured + 1, 0
                continue
            repeats_in_a_row += 1
            if repeats_in_a_row >= MAX_REPEATS_OF_A_CONFIG:
                self.console.print("every proposal was measured already: the space is spent")
                break
        return measured

    def _trial(self, trial) -> bool:
        """Measure and tell the asked trial (True), or tell it the figures of the same
        configuration measured before (False)."""
        chain, workload = suggest(trial, self.spec)
        t = Trial(trial.number, chain, workload)
        seen = self._seen(t.key)
        if seen is not None:  # the sampler proposed a measured configuration again
            trial.set_user_attr(TRIAL_ATTR, {**seen, "repeat_of": seen["number"]})
            for c, x in zip(self.spec.constraints, seen["constraints"], strict=True):
                trial.set_constraint(f"{c.metric} {c.op} {c.bound:g}", x)
            self.study.tell(trial, seen["values"])
            return False
        with heartbeat(trial, self.study):
            self._measure(t)
        self._tell(trial, t)
        return True

    def _requeue(self, trial) -> None:
        import optuna

        try:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        except Exception:  # already told: nothing was left running
            return
        self.study.enqueue_trial(trial.params)

    def _spent(self, started: float) -> bool:
        if self.opts.budget_minutes is not None:
            return time.monotonic() - started >= 60 * self.opts.budget_minutes
        import optuna

        # Measured trials only: a RUNNING one may belong to a process that died (it stays
        # RUNNING until its heartbeat goes stale), and must not spend a resumed budget.
        # Processes sharing the study may overshoot by a trial each.
        done = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        measured = [t for t in done if "repeat_of" not in t.user_attrs.get(TRIAL_ATTR, {})]
        return len(measured) >= (self.opts.budget_trials or 0)

    def _seen(self, key: str) -> dict[str, Any] | None:
        for t in self.trials_done():
            attr = t.user_attrs.get(TRIAL_ATTR, {})
            if attr.get("key") == key and "repeat_of" not in attr:
                return {**attr, "number": t.number, "values": t.values}
        return None

    def _measure(self, t: Trial) -> None:
        data = trial_suite(
            self.data,
            f"{self.suite.name}-trial{t.number}",
            [t.chain],
            t.workload,
            self.spec.repeats,
        )
        path = write_suite(data, self.folder / f"trial-{t.number:04d}.toml")
        from bench.analysis.tune_front import describe_chain

        desc = describe_chain(t.chain) + (f" {t.workload}" if t.workload else "")
        self.console.print(f"[bold]trial {t.number}[/]: {desc}", highlight=False)
        stop = _stop_rule(self.spec, t)
        measured = run_measurement(path, self.opts.results, self.console, stop, self.opts.inline)
        t.run_id = measured.run_id
        cid = candidate_id(measured) or measured.baseline
        if cid in measured.errors:
            t.error = measured.errors[cid]
            return
        case, base = measured.cases.get(cid, {}), measured.cases.get(measured.baseline, {})
        for metric in self.spec.metrics:
            t.figures[metric] = figure(metric, case, base)
        missing = [m for m in self.spec.metrics if math.isnan(t.figures[m])]
        if missing:
            t.error = f"no figure for {', '.join(missing)} (does the workload report it?)"

    def _tell(self, trial, t: Trial) -> None:
        import optuna

        attr = {
            "key": t.key,
            "chain": t.chain,
            "workload": t.workload,
            "run_id": t.run_id,
            "figures": t.figures,
            "stopped": t.stopped,
            "error": t.error,
        }
        excess = [c.excess(t.figures.get(c.metric, math.nan)) for c in self.spec.constraints]
        attr["constraints"] = [x if math.isfinite(x) else 1e9 for x in excess]
        trial.set_user_attr(TRIAL_ATTR, attr)
        for c, x in zip(self.spec.constraints, attr["constraints"], strict=True):
            trial.set_constraint(f"{c.metric} {c.op} {c.bound:g}", x)  # <= 0: met
        if t.error:
            self.console.print(f"[red]trial {t.number} failed[/]: {t.error}")
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        self.study.tell(trial, [t.figures[o.metric] for o in self.spec.objectives])


def _stop_rule(spec: TuneSpec, t: Trial):
    """Stop the trial's run after the candidate's first process run when a constraint on a
    deterministic figure is broken (no later run can change it), or the candidate failed."""
    fixed = [c for c in spec.constraints if not is_relative(c.metric)]

    def stop_when(result: dict[str, Any]) -> str | None:
        if result["case_id"].endswith(f"/{BASELINE}"):
            return None
        if result["status"] != "ok":
            return f"the trial's case {result['status']}"
        values = {m["name"]: m["value"] for m in result.get("metrics") or []}
        for c in fixed:
            v = values.get(c.metric)
            if v is not None and c.excess(v) > 0:
                t.stopped = f"{c.metric} = {v:.4g} breaks {c.metric} {c.op} {c.bound:g}"
                return t.stopped
        return None

    return stop_when


def completed(study) -> list[dict[str, Any]]:
    """The study's measured trials (not a proposal repeated) as records."""
    import optuna

    out = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        attr = t.user_attrs.get(TRIAL_ATTR, {})
        if attr and "repeat_of" not in attr:
            out.append({**attr, "number": t.number})
    return out
