"""The ``[tune]`` table of a suite: what ``bench tune`` searches, for what, in what budget.

    [tune]
    objectives = ["max throughput_tokens", "min state_dict_bytes"]
    constraints = ["kl_to_baseline <= 0.05"]
    budget = "24"        # trials (in the study, over every process), or minutes: "30m", "1h"
    sampler = "tpe"      # or "nsga2" (with population = 8 trials per generation)
    repeats = 3          # process runs of a trial's case (its baseline: two per round)
    remeasure = 5        # process runs of each front point, all in one run at the end

    [tune.workload]      # parameters of the suite's workload to search
    new_tokens = [32, 64]

    [[tune.stages]]      # techniques applied in order; each stage picks one of its options
    options = [
      { name = "prune", method = "l1_unstructured", amount = { low = 0.1, high = 0.8 } },
      { name = "none" },
    ]

A parameter is fixed (a value), a choice (a list) or a range (``{low, high}``, integers
when both ends are, ``step`` and ``log`` optional). Time-like objectives are judged as the
trial's ratio to the baseline measured in the same run, so one run's drift cancels.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench.errors import UserError
from bench.spec import registry
from bench.spec.messages import user_error

NONE = "none"  # a stage's option that applies nothing
_OBJECTIVE = re.compile(r"^\s*(max|min)\s+([A-Za-z_][\w.]*)\s*$")
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*$")
_BUDGET = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(m|min|h)?\s*")


class Range(BaseModel):
    model_config = ConfigDict(extra="forbid")
    low: float
    high: float
    step: float | None = None
    log: bool = False
    integer: bool = False  # set from the ends: both written as integers


class Stage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    options: list[dict[str, Any]] = Field(min_length=1)


class TuneTable(BaseModel):
    model_config = ConfigDict(extra="forbid")
    objectives: list[str] = Field(min_length=1, max_length=4)
    constraints: list[str] = []
    budget: str | int = 20
    sampler: Literal["tpe", "nsga2"] = "tpe"
    population: int = Field(8, ge=2, le=500)  # nsga2: trials per generation
    repeats: int = Field(3, ge=1, le=50)
    remeasure: int = Field(5, ge=3, le=100)
    seed: int = Field(0, ge=0)
    workload: dict[str, Any] = {}
    stages: list[Stage] = Field(default_factory=list)


@dataclass(frozen=True)
class Objective:
    metric: str
    maximise: bool


@dataclass(frozen=True)
class Constraint:
    metric: str
    op: str
    bound: float

    def excess(self, value: float) -> float:
        """How far ``value`` is past the bound (<= 0: met), as Optuna's constraints want."""
        return value - self.bound if self.op in ("<", "<=") else self.bound - value


@dataclass(frozen=True)
class Budget:
    trials: int | None = None
    minutes: float | None = None

    @classmethod
    def parse(cls, text: str | int, where: str = "", key: str = "tune.budget") -> Budget:
        m = _BUDGET.fullmatch(str(text))
        if not m or float(m.group(1)) <= 0:
            raise UserError(
                f"budget {text!r}: expected trials (24) or minutes (30m, 1h)", where=where, key=key
            )
        value, unit = float(m.group(1)), m.group(2)
        if unit is None:
            if value != int(value):
                raise UserError(f"budget {text!r}: a whole number of trials", where=where, key=key)
            return cls(trials=int(value))
        return cls(minutes=value * (60 if unit == "h" else 1))


@dataclass(frozen=True)
class Param:
    """One searched parameter: where it goes, and its choices or range."""

    name: str  # Optuna's name: "workload.new_tokens", "stage0.prune.amount"
    key: str  # the parameter inside its component
    choices: tuple[Any, ...] | None = None
    range: Range | None = None


@dataclass(frozen=True)
class TuneSpec:
    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...]
    budget: Budget
    sampler: str
    population: int
    repeats: int
    remeasure: int
    seed: int
    workload: dict[str, Any]  # fixed values and Params of the workload
    stages: tuple[tuple[dict[str, Any], ...], ...]  # per stage, its options (Params inside)

    @property
    def metrics(self) -> list[str]:
        return list(
            dict.fromkeys(
                [o.metric for o in self.objectives] + [c.metric for c in self.constraints]
            )
        )


def known_metric(name: str) -> bool:
    from bench.results import metric_info as mi

    tables = (mi.HIGHER_IS_BETTER, mi.DEFAULT_GATES, mi.LABELS, mi.DETERMINISTIC, mi.COUNTS)
    return any(name in t for t in tables) or re.fullmatch(r"(memory|energy)_\w+", name) is not None


def _metric(name: str, where: str, key: str) -> str:
    if not known_metric(name):
        from bench.results import metric_info as mi

        known = sorted({*mi.HIGHER_IS_BETTER, *mi.DEFAULT_GATES, *mi.LABELS})
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"unknown metric {name!r}{hint}", where=where, key=key)
    return name


def _param(value: Any, name: str, key: str, where: str) -> Any:
    """A fixed value as it is; a list as a choice; a {low, high} table as a range."""
    if isinstance(value, list):
        if not value:
            raise UserError("an empty list leaves nothing to choose", where=where, key=key)
        return Param(name, key.rsplit(".", 1)[-1], choices=tuple(value))
    if isinstance(value, dict):
        try:
            r = Range.model_validate(value)
        except ValidationError as e:
            raise user_error(e, where, key, Range) from None
        if r.high <= r.low or (r.log and r.low <= 0):
            raise UserError(
                f"range {value}: needs low < high (and low > 0 with log)", where=where, key=key
            )
        integer = all(isinstance(value[k], int) for k in ("low", "high"))
        return Param(name, key.rsplit(".", 1)[-1], range=r.model_copy(update={"integer": integer}))
    return value


def _extremes(params: dict[str, Any]) -> list[dict[str, Any]]:
    """Each searched parameter at each end of its range and at each choice (the others at
    their first): what validation must accept for every trial to be valid."""
    first = {k: _first(v) for k, v in params.items()}
    out = [first]
    for k, v in params.items():
        if isinstance(v, Param):
            values = v.choices or (v.range.low, v.range.high)
            if v.range is not None and v.range.integer:
                values = tuple(int(x) for x in values)
            out += [{**first, k: x} for x in values]
    return out


def _first(v: Any) -> Any:
    if not isinstance(v, Param):
        return v
    if v.choices:
        return v.choices[0]
    return int(v.range.low) if v.range.integer else v.range.low


def _check(reg, name: str, params: dict[str, Any], where: str, key: str) -> None:
    try:
        entry = reg.get(name)
    except KeyError as e:
        raise UserError(e.args[0], where=where, key=f"{key}.name") from None
    for values in _extremes(params):
        try:
            entry.params.model_validate(values)
        except ValidationError as e:
            raise user_error(e, where, key, entry.params, {}) from None


def parse_tune(table: dict[str, Any] | None, workload: str, where: str) -> TuneSpec:
    """The suite's ``[tune]`` table, checked: every metric known, every option a registered
    technique whose parameters validate at both ends of each range and at every choice."""
    if not table:
        raise UserError("no [tune] table: nothing to search", where=where, key="tune")
    try:
        t = TuneTable.model_validate(table)
    except ValidationError as e:
        raise user_error(e, where, "tune", TuneTable) from None
    objectives = []
    for i, text in enumerate(t.objectives):
        m = _OBJECTIVE.match(text)
        if not m:
            raise UserError(
                f"{text!r}: use 'max METRIC' or 'min METRIC'",
                where=where,
                key=f"tune.objectives[{i}]",
            )
        metric = _metric(m.group(2), where, f"tune.objectives[{i}]")
        objectives.append(Objective(metric, m.group(1) == "max"))
    if len({o.metric for o in objectives}) < len(objectives):
        raise UserError("an objective is listed twice", where=where, key="tune.objectives")
    constraints = []
    for i, text in enumerate(t.constraints):
        m = _CONSTRAINT.match(text)
        if not m:
            raise UserError(
                f"{text!r}: use 'METRIC <= NUMBER'", where=where, key=f"tune.constraints[{i}]"
            )
        metric = _metric(m.group(1), where, f"tune.constraints[{i}]")
        constraints.append(Constraint(metric, m.group(2), float(m.group(3))))

    wl = {k: _param(v, f"workload.{k}", f"tune.workload.{k}", where) for k, v in t.workload.items()}
    _check(registry.workloads, workload, wl, where, "tune.workload")
    stages = []
    for i, stage in enumerate(t.stages):
        options = []
        for j, option in enumerate(stage.options):
            key = f"tune.stages[{i}].options[{j}]"
            name = option.get("name")
            if not isinstance(name, str):
                raise UserError(
                    "an option needs a technique 'name' (or 'none')", where=where, key=f"{key}.name"
                )
            params = {
                k: _param(v, f"stage{i}.{name}{j}.{k}", f"{key}.{k}", where)
                for k, v in option.items()
                if k != "name"
            }
            if name != NONE:
                _check(registry.techniques, name, params, where, key)
            elif params:
                raise UserError("'none' takes no parameters", where=where, key=key)
            options.append({"name": name, **params})
        stages.append(tuple(options))
    searched = any(isinstance(v, Param) for v in wl.values()) or any(
        len(s) > 1 or any(isinstance(v, Param) for v in s[0].values()) for s in stages
    )
    if not searched:
        raise UserError(
            "nothing to search: no stage with a choice and no searched workload parameter",
            where=where,
            key="tune",
        )
    return TuneSpec(
        tuple(objectives),
        tuple(constraints),
        Budget.parse(t.budget, where),
        t.sampler,
        t.population,
        t.repeats,
        t.remeasure,
        t.seed,
        wl,
        tuple(stages),
    )
