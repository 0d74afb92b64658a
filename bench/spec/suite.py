"""Suites: TOML files naming models, workloads and techniques, expanded into cases.

A suite is data. Names are looked up in the registries (bench.spec.registry); list values
become matrix axes; every mistake a user can make is reported as a UserError naming
the file, the key path and what is allowed.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bench.errors import UserError
from bench.results.metric_info import Tolerance
from bench.spec import registry
from bench.spec.gates import gates, parse_gates
from bench.spec.messages import user_error
from bench.spec.registry import Params, Registry

BASELINE = "baseline"


def is_baseline(technique_names: list[str]) -> bool:
    """A case is its group's baseline when it applies no technique but ``baseline``."""
    return all(name == BASELINE for name in technique_names)


class RunSettings(Params):
    """How every case of the suite is run; the ``[run]`` table."""

    device: Literal["cpu", "cuda"] = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    seed: int = Field(0, ge=0)
    # Calls per process whose timings are discarded: a count, or "auto" (until the median
    # of the last 5 calls is within 2% of the 5 before; at most 200).
    warmup: Annotated[int, Field(ge=0, le=10_000)] | Literal["auto"] = 2
    iterations: int = Field(10, ge=1, le=1_000_000)  # measured calls per process
    repeats: int = Field(1, ge=1, le=1000)  # fresh processes per case
    timeout_s: float = Field(600.0, gt=0)  # per process, start-up included
    # torch intra-op threads; None: on CPU all usable cores but one (steadier, see
    # bench.telemetry.machine.default_cpu_threads), on a GPU torch's default.
    threads: int | None = Field(None, ge=1, le=1024)
    quality: bool = False  # held-out loss and agreement with the baseline, after timing
    energy: bool = True  # measure energy in a window of its own after the timed calls
    energy_min_s: float = Field(2.0, ge=1.0, le=3600)  # the window loops the work this long
    idle_s: float = Field(3.0, ge=0, le=600)  # idle power measured before the run; 0: skip
    sample_hz: float = Field(10.0, gt=0, le=1000)  # GPU sampler rate
    country: str = Field("USA", pattern=r"^[A-Z]{3}$")  # ISO 3166 alpha-3, for CO2 intensity
    # Also count each CPU case's calls, in one process for the whole run: under valgrind's
    # callgrind "instructions", "estimated_cycles"; or, where the machine exposes them, from
    # the hardware counters "hw_instructions", "hw_cycles" (bench.telemetry.counters).
    counters: tuple[
        Literal["instructions", "estimated_cycles", "hw_instructions", "hw_cycles"], ...
    ] = ()
    count_iterations: int = Field(3, ge=1, le=100)  # counted calls per case (after 1 warm-up)
    # Also profile each case in one extra process under torch.profiler (bench.run.profiling):
    # its operator table and trace, over this many calls after an unprofiled run.
    profile: bool = False
    profile_calls: int = Field(5, ge=1, le=1000)
    profile_stack: bool = False  # record Python stacks too (larger traces, more overhead)
    profile_python: bool = False  # and a py-spy flame graph of the calls (profile extra)

    @field_validator("counters")
    @classmethod
    def _one_source(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if v:
            from bench.telemetry.counters import source_of

            source_of(v)  # ValueError: the counters need two sources
        return v


# How cases are counted or profiled is the run's business, not the case's: a case counted
# or not is the same case (same id and hash), so runs with and without counts compare.
PASS_SETTINGS = {
    "counters",
    "count_iterations",
    "profile",
    "profile_calls",
    "profile_stack",
    "profile_python",
}


class MatrixRules(BaseModel):
    model_config = ConfigDict(extra="forbid")
    exclude: list[dict[str, Any]] = []
    include: list[dict[str, Any]] = []


class SuiteFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=80)
    description: str = ""
    run: RunSettings = RunSettings()
    models: list[dict[str, Any]] = Field(min_length=1)
    workloads: list[dict[str, Any]] = Field(min_length=1)
    techniques: list[dict[str, Any]] = Field(default_factory=lambda: [{"name": BASELINE}])
    matrix: MatrixRules = MatrixRules()
    gates: dict[str, Any] = {}  # metric -> tolerance: bench.spec.gates
    tune: dict[str, Any] = {}  # what `bench tune` searches: bench.spec.tune
    # machine -> cost of a machine-hour: cost per 1M tokens (bench merge --across-machines)
    pricing: dict[str, Annotated[float, Field(gt=0)]] = {}


@dataclass(frozen=True)
class Component:
    """One model, workload or technique step with its validated parameters."""

    name: str
    params: dict[str, Any]
    label: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "params": self.params, "label": self.label}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Component:
        return cls(d["name"], dict(d["params"]), d["label"])


@dataclass(frozen=True)
class Case:
    suite: str
    model: Component
    workload: Component
    techniques: tuple[Component, ...]
    run: dict[str, Any]
    id: str = field(init=False)
    hash: str = field(init=False)

    def __post_init__(self) -> None:
        chain = "+".join(t.label for t in self.techniques) or BASELINE
        object.__setattr__(self, "id", f"{self.model.label}/{self.workload.label}/{chain}")
        measured = {
            "model": self.model.to_json(),
            "workload": self.workload.to_json(),
            "techniques": [t.to_json() for t in self.techniques],
            "run": self.run,
        }
        digest = hashlib.sha256(json.dumps(measured, sort_keys=True).encode()).hexdigest()
        object.__setattr__(self, "hash", digest[:12])

    @property
    def group(self) -> str:
        """Cases in one group differ only in techniques and share one baseline."""
        return f"{self.model.label}/{self.workload.label}"

    @property
    def is_baseline(self) -> bool:
        return is_baseline([t.name for t in self.techniques])

    def to_json(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "id": self.id,
            "hash": self.hash,
            "model": self.model.to_json(),
            "workload": self.workload.to_json(),
            "techniques": [t.to_json() for t in self.techniques],
            "run": self.run,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Case:
        return cls(
            d["suite"],
            Component.from_json(d["model"]),
            Component.from_json(d["workload"]),
            tuple(Component.from_json(t) for t in d["techniques"]),
            dict(d["run"]),
        )


@dataclass(frozen=True)
class Suite:
    path: str
    name: str
    description: str
    text: str
    sha256: str
    run: RunSettings
    cases: tuple[Case, ...]
    gates: dict[str, Tolerance] = field(default_factory=dict)  # metric -> tolerance


# --- loading -------------------------------------------------------------------------


def load_suite(path: str | Path) -> Suite:
    path = Path(path)
    where = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError("no such suite file", where=where) from None
    except OSError as e:
        raise UserError(f"cannot read suite file: {e.strerror}", where=where) from None
    return parse_suite(raw.decode("utf-8", errors="replace"), where=where)


def parse_suite(text: str, *, where: str = "<suite>") -> Suite:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"invalid TOML: {e}", where=where) from None
    try:
        spec = SuiteFile.model_validate(data)
    except ValidationError as e:
        raise user_error(e, where, "", SuiteFile) from None
    expander = _Expander(where)
    # Each expanded value keeps the key of the entry it came from, for error messages.
    models = [
        (f"models[{i}]", m)
        for i, d in enumerate(spec.models)
        for m in expander.entries(registry.models, "models", i, d)
    ]
    workloads = [
        (f"workloads[{i}]", w)
        for i, d in enumerate(spec.workloads)
        for w in expander.entries(registry.workloads, "workloads", i, d)
    ]
    chains = [
        (f"techniques[{i}]", c)
        for i, d in enumerate(spec.techniques)
        for c in expander.chains(f"techniques[{i}]", d)
    ]
    run = spec.run.model_dump(exclude=PASS_SETTINGS)
    suite_gates = gates(parse_gates(spec.gates, where))

    def product(ms, ws, cs) -> Iterator[tuple[str, Case]]:
        for (mk, m), (wk, w), (ck, c) in itertools.product(ms, ws, cs):
            yield f"{mk}, {wk}, {ck}", Case(spec.name, m, w, tuple(c), run)

    candidates = list(product(models, workloads, chains))
    technique_names = {t.name for _, case in candidates for t in case.techniques}
    for i, rule in enumerate(spec.matrix.exclude):
        _check_selector(rule, where, f"matrix.exclude[{i}]", technique_names)
        candidates = [(o, c) for o, c in candidates if not _matches(rule, c)]
    for i, inc in enumerate(spec.matrix.include):
        key = f"matrix.include[{i}]"
        ms, ws, cs = expander.include(key, inc)
        candidates.extend(product(*([(key, x) for x in part] for part in (ms, ws, cs))))

    if not candidates:
        raise UserError("the matrix is empty: every case was excluded", where=where, key="matrix")
    _check_combinations(candidates, where)
    seen: dict[str, str] = {}
    for origin, case in candidates:
        if case.id in seen:
            raise UserError(
                f"duplicate case {case.id!r} (from {seen[case.id]} and {origin}); "
                "entries must differ in name or parameters",
                where=where,
            )
        seen[case.id] = origin
    return Suite(
        path=where,
        name=spec.name,
        description=spec.description,
        text=text,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        run=spec.run,
        cases=tuple(c for _, c in candidates),
        gates=suite_gates,
    )


class _Expander:
    def __init__(self, where: str):
        self.where = where

    def entries(self, reg: Registry, section: str, index: int, data: Any) -> list[Component]:
        key = f"{section}[{index}]"
        if not isinstance(data, dict):
            raise UserError(f"expected a table, got {data!r}", where=self.where, key=key)
        name = data.get("name")
        if not isinstance(name, str):
            raise UserError(
                f"missing 'name'; known {reg.kind}s: {', '.join(reg.names())}",
                where=self.where,
                key=key,
            )
        try:
            entry = reg.get(name)
        except KeyError as e:
            raise UserError(e.args[0], where=self.where, key=f"{key}.name") from None
        params = {k: v for k, v in data.items() if k != "name"}
        axes = {k: v for k, v in params.items() if isinstance(v, list)}
        for k, v in axes.items():
            if not v:
                raise UserError(
                    "an empty list leaves no values to run", where=self.where, key=f"{key}.{k}"
                )
        out = []
        for combo in itertools.product(*axes.values()):
            values = {**params, **dict(zip(axes, combo, strict=True))}
            try:
                p = entry.params.model_validate(values)
            except ValidationError as e:
                raise user_error(e, self.where, key, entry.params, axes) from None
            out.append(Component(entry.name, p.model_dump(), entry.make_label(p)))
        return out

    def chains(self, key: str, data: dict[str, Any]) -> list[list[Component]]:
        if "chain" not in data:
            return [[c] for c in self._step(key, data)]
        extra = set(data) - {"chain"}
        if extra:
            raise UserError(
                f"a chain entry takes only 'chain', not {sorted(extra)}", where=self.where, key=key
            )
        steps = data["chain"]
        if not isinstance(steps, list) or not steps:
            raise UserError(
                "'chain' must be a non-empty list of technique tables", where=self.where, key=key
            )
        per_step = [self._step(f"{key}.chain[{j}]", s) for j, s in enumerate(steps)]
        return [list(combo) for combo in itertools.product(*per_step)]

    def _step(self, key: str, data: Any) -> list[Component]:
        # Reuse entries() for one technique table, then fix up the key path it reports.
        try:
            return self.entries(registry.techniques, "", 0, data)
        except UserError as e:
            raise UserError(
                e.message, where=self.where, key=(e.key or "").replace("[0]", key, 1)
            ) from None

    def include(self, key: str, data: dict[str, Any]):
        allowed = {"model", "workload", "technique"}
        unknown = set(data) - allowed
        if unknown or not {"model", "workload"} <= set(data):
            raise UserError(
                "an include names 'model', 'workload' and optionally 'technique'; "
                f"got {sorted(data)}",
                where=self.where,
                key=key,
            )

        def table(v: Any) -> Any:
            return {"name": v} if isinstance(v, str) else v

        def sub(path: str, v: Any, reg: Registry) -> list[Component]:
            try:
                return self.entries(reg, "", 0, table(v))
            except UserError as e:
                raise UserError(
                    e.message, where=self.where, key=(e.key or "").replace("[0]", path, 1)
                ) from None

        ms = sub(f"{key}.model", data["model"], registry.models)
        ws = sub(f"{key}.workload", data["workload"], registry.workloads)
        tech = data.get("technique", BASELINE)
        if isinstance(tech, list):
            cs = self.chains(f"{key}.technique", {"chain": [table(t) for t in tech]})
        else:
            cs = [[c] for c in self._step(f"{key}.technique", table(tech))]
        return ms, ws, cs


def _check_combinations(candidates: list[tuple[str, Case]], where: str) -> None:
    """What one key cannot say alone: a technique's ``check`` sees the whole case (its
    workload, model and run) and names what does not fit, e.g. an optimizer on a workload
    that does not train, or a warm-up longer than the run."""
    done = set()
    for origin, case in candidates:
        keys = origin.split(", ")
        steps = [(registry.workloads, case.workload, keys[1 if len(keys) > 1 else 0])]
        steps += [(registry.techniques, step, keys[-1]) for step in case.techniques]
        for reg, step, key in steps:
            entry = reg.get(step.name)
            memo = (step.label, case.model.label, case.workload.label, case.run["device"])
            if "check" in entry.meta and memo not in done:
                done.add(memo)
                if why := entry.meta["check"](entry.params.model_validate(step.params), case):
                    raise UserError(why, where=where, key=key)


# --- matrix rules --------------------------------------------------------------------


def _check_selector(rule: dict[str, Any], where: str, key: str, technique_names: set[str]) -> None:
    if not rule:
        raise UserError("an empty rule would match every case", where=where, key=key)
    known_heads = {"model", "workload", "technique", *technique_names}
    for k in rule:
        head = k.split(".", 1)[0]
        if head not in known_heads:
            close = difflib.get_close_matches(head, sorted(known_heads), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(
                f"unknown selector {k!r}{hint}; use model, workload, technique, "
                "or <model|workload|technique-name>.<parameter>",
                where=where,
                key=f"{key}.{k}",
            )


def _matches(rule: dict[str, Any], case: Case) -> bool:
    for k, want in rule.items():
        head, _, param = k.partition(".")
        if head in ("model", "workload"):
            comp: Component = getattr(case, head)
            got = comp.params.get(param) if param else None
            if param and got != want:
                return False
            if not param and want not in (comp.name, comp.label):
                return False
        elif head == "technique" and not param:
            if not any(want in (t.name, t.label) for t in case.techniques):
                return False
        else:
            steps = [t for t in case.techniques if t.name == head]
            if not steps or not any(t.params.get(param) == want for t in steps):
                return False
    return True


__all__ = ["BASELINE", "Case", "Component", "RunSettings", "Suite", "is_baseline",
           "load_suite", "parse_suite"]  # fmt: skip
