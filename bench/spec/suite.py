"""Suites: TOML files naming models, workloads and techniques, expanded into cases.

A suite is data. Names are looked up in the registries (bench.spec.registry); list values
become matrix axes, everywhere; every mistake a user can make is reported as a UserError
naming the file, the key path and what is allowed. ``extends``, ``[defaults]`` and
``--set`` overrides are resolved first (bench.spec.layering) into the effective suite.
"""

from __future__ import annotations

import hashlib
import itertools
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bench.errors import UserError
from bench.results.metric_info import Tolerance
from bench.spec import layering, matrix, registry
from bench.spec.cases import BASELINE, Case, Component, is_baseline
from bench.spec.gates import gates, parse_gates
from bench.spec.messages import user_error
from bench.spec.registry import Params

D = Field  # every suite key has a description: `bench schema` and the docs' key reference


class RunSettings(Params):
    """How every case of the suite is run; the ``[run]`` table."""

    device: Literal["cpu", "cuda"] = D("cpu", description="Where the cases run.")
    dtype: Literal["float32", "bfloat16", "float16"] = D(
        "float32", description="Parameter and activation dtype of the model."
    )
    seed: int = D(0, ge=0, description="Seed of weights' init, inputs and sampling.")
    warmup: Annotated[int, Field(ge=0, le=10_000)] | Literal["auto"] = D(
        2,
        description="Calls per process whose timings are discarded: a count, or 'auto' "
        "(until the median of the last 5 calls is within 2% of the 5 before; at most 200).",
    )
    iterations: int = D(10, ge=1, le=1_000_000, description="Measured calls per process.")
    repeats: int = D(
        3,
        ge=1,
        le=1000,
        description="Fresh processes per case; the confidence intervals are over these, so "
        "a verdict needs at least 3.",
    )
    timeout_s: float = D(600.0, gt=0, description="Seconds per process, start-up included.")
    threads: int | None = D(
        None,
        ge=1,
        le=1024,
        description="torch intra-op threads; unset: on CPU all usable cores but one "
        "(steadier), on a GPU torch's default.",
    )
    quality: bool = D(
        False, description="Also held-out loss and agreement with the baseline, after timing."
    )
    energy: bool = D(
        True, description="Measure energy in a window of its own after the timed calls."
    )
    energy_min_s: float = D(
        2.0, ge=1.0, le=3600, description="Seconds the energy window loops the work, at least."
    )
    idle_s: float = D(
        3.0, ge=0, le=600, description="Seconds of idle power measured before the run; 0: skip."
    )
    sample_hz: float = D(10.0, gt=0, le=1000, description="GPU sampler rate, in hertz.")
    country: str = D(
        "USA", pattern=r"^[A-Z]{3}$", description="ISO 3166 alpha-3 code, for CO2 intensity."
    )
    counters: tuple[
        Literal["instructions", "estimated_cycles", "hw_instructions", "hw_cycles"], ...
    ] = D(
        (),
        description="Also count each CPU case's calls: under callgrind 'instructions', "
        "'estimated_cycles'; or from hardware counters 'hw_instructions', 'hw_cycles'.",
    )
    count_iterations: int = D(
        3, ge=1, le=100, description="Counted calls per case (after 1 warm-up)."
    )
    profile: bool = D(
        False,
        description="Also profile each case in one extra process under torch.profiler "
        "(operator table and trace).",
    )
    profile_calls: int = D(5, ge=1, le=1000, description="Calls profiled per case.")
    profile_stack: bool = D(
        False, description="Record Python stacks in profiles (larger traces, more overhead)."
    )
    profile_python: bool = D(
        False, description="Also a py-spy flame graph of the profiled calls (profile extra)."
    )

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

Entry = str | dict[str, Any]  # a registry name, or a table with its 'name' and keys


class Include(BaseModel):
    """One ``[[matrix.include]]``: cases added beside the matrix's product."""

    model_config = ConfigDict(extra="forbid")
    model: Entry | list[Entry] = D(
        description="A model name or table (a list: one include per item, an axis)."
    )
    workload: Entry | list[Entry] = D(
        description="A workload name or table (a list: one include per item, an axis)."
    )
    technique: Entry | None = D(None, description="One technique name or table; unset: 'baseline'.")
    chain: list[Entry] | None = D(
        None, description='Techniques applied in order, e.g. chain = ["prune", "quantize"].'
    )
    baseline: bool = D(
        True,
        description="false: this include's groups need no baseline case (ratios and "
        "verdicts are then absent for them).",
    )

    @field_validator("technique", mode="before")
    @classmethod
    def _not_a_chain(cls, v: Any) -> Any:
        if isinstance(v, list):  # its meaning before 'chain': refused, not silently an axis
            names = [t if isinstance(t, str) else (t or {}).get("name", "?") for t in v]
            raise ValueError(
                "a list here is no longer a chain; write chain = ["
                + ", ".join(f'"{n}"' for n in names)
                + "] (a list is an axis everywhere; for several techniques write one include each)"
            )
        return v

    def model_post_init(self, _: Any) -> None:
        if self.technique is not None and self.chain is not None:
            raise ValueError("give 'technique' or 'chain', not both")


class MatrixRules(BaseModel):
    model_config = ConfigDict(extra="forbid")
    exclude: list[dict[str, Any]] = D(
        [],
        description="Rules dropping cases of the product: keys model, workload, technique, "
        "or <name>.<parameter>, all of which must match.",
    )
    include: list[Include] = D([], description="Cases added beside the product.")


class SuiteFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = D(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=80, description="The suite's name."
    )
    description: str = D("", description="One line saying what the suite measures.")
    extends: str | None = D(
        None,
        description="A base suite file, relative to this one, merged under it: tables merged "
        "key by key, arrays replaced; the base may extend another.",
    )
    defaults: dict[Literal["models", "workloads", "techniques"], dict[str, dict[str, Any]]] = D(
        {},
        description="Keys shared by every entry of a name, e.g. [defaults.workloads.generate] "
        "new_tokens = 64; an entry's own key wins (matrix.include entries too).",
    )
    run: RunSettings = D(RunSettings(), description="How every case is run.")
    models: list[dict[str, Any]] = D(
        min_length=1,
        description="Models by registry name (bench names), with their keys; a list value "
        "is an axis.",
    )
    workloads: list[dict[str, Any]] = D(
        min_length=1,
        description="Workloads by registry name, with their keys; a list value is an axis; "
        "baseline = false: its groups need no baseline case.",
    )
    techniques: list[dict[str, Any]] = D(
        default_factory=lambda: [{"name": BASELINE}],
        description="Techniques by registry name, with their keys (a list value is an axis), "
        'or chain = ["a", "b"] applied in order; include "baseline" for ratios.',
    )
    matrix: MatrixRules = D(MatrixRules(), description="Cases excluded from or added to the "
                            "product of models x workloads x techniques.")  # fmt: skip
    gates: dict[str, Any] = D(
        {},
        description="Metric -> tolerance for compare verdicts: a fraction "
        "(latency_median = 0.05 is 5%), { absolute = 0.02 }, 'exact' or 'off'.",
    )
    tune: dict[str, Any] = D({}, description="What `bench tune` searches (see the tune page).")
    pricing: dict[str, Annotated[float, Field(gt=0)]] = D(
        {},
        description="Machine -> cost of one machine-hour, for cost per 1M tokens (bench merge "
        "--across-machines).",
    )


@dataclass(frozen=True)
class Suite:
    path: str
    name: str
    description: str
    text: str  # the effective suite: what another process re-reads (parse_suite(text))
    sha256: str
    run: RunSettings
    cases: tuple[Case, ...]
    gates: dict[str, Tolerance] = field(default_factory=dict)  # metric -> tolerance
    overrides: tuple[str, ...] = ()  # the --set overrides the text has applied


def json_schema() -> dict[str, Any]:
    """The suite file's JSON Schema (``bench schema``), for editors: e.g. a first line
    ``#:schema ./suite.schema.json`` with taplo / Even Better TOML."""
    from bench.spec.schema import entries_schema

    schema = SuiteFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "llm-opt-bench suite"
    props = schema["properties"]
    opt_out = {
        "baseline": {
            "type": "boolean",
            "description": "false: this workload's groups need no baseline case.",
        }
    }
    props["models"]["items"] = entries_schema(registry.models)
    props["workloads"]["items"] = entries_schema(registry.workloads, opt_out)
    chain = {
        "type": "object",
        "properties": {"chain": {"type": "array", "minItems": 1, "description": (
            "Techniques applied in order: names or tables.")}},
        "required": ["chain"],
        "additionalProperties": False,
    }  # fmt: skip
    techniques = entries_schema(registry.techniques)
    props["techniques"]["items"] = {"anyOf": [*techniques["anyOf"], chain]}
    return schema


# --- loading -------------------------------------------------------------------------


def load_suite(path: str | Path, overrides: Sequence[str] = ()) -> Suite:
    """The suite at ``path``, with its ``extends`` and ``[defaults]`` resolved and each
    override ("dotted.key=VALUE", a TOML value) applied before validation."""
    path = Path(path)
    where = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError("no such suite file", where=where) from None
    except OSError as e:
        raise UserError(f"cannot read suite file: {e.strerror}", where=where) from None
    return parse_suite(raw.decode("utf-8", errors="replace"), where=where, overrides=overrides)


def parse_suite(text: str, *, where: str = "<suite>", overrides: Sequence[str] = ()) -> Suite:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"invalid TOML: {e}", where=where) from None
    overrides = tuple(overrides)
    if layering.is_layered(data, overrides):
        data = layering.resolve(data, where, Path(where).parent, overrides)
        text = effective_text(data, overrides)
    try:
        return _validate(data, text, where, overrides)
    except UserError as e:
        raise layering.blame(e, overrides) from None


def effective_text(data: dict[str, Any], overrides: Sequence[str]) -> str:
    """What the suite says once resolved, as TOML: a run keeps it (its manifest), and every
    process that reads the suite again (shards, A/B sides, tune jobs) reads this."""
    # Nothing of where it was read from: the same suite read as a relative or an absolute
    # path (a shard job, --resume) has one text and one hash.
    head = "# The effective suite: its extends, [defaults] and --set overrides applied.\n"
    if overrides:
        head += layering.describe(overrides) + "\n"
    return head + tomli_w.dumps(data)


def _validate(data: dict[str, Any], text: str, where: str, overrides: tuple[str, ...]) -> Suite:
    try:
        spec = SuiteFile.model_validate(data)
    except ValidationError as e:
        raise user_error(e, where, "", SuiteFile) from None
    expander = matrix.Expander(where)
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
        matrix.check_selector(rule, where, f"matrix.exclude[{i}]", technique_names)
        candidates = [(o, c) for o, c in candidates if not matrix.matches(rule, c)]
    for i, inc in enumerate(spec.matrix.include):
        key = f"matrix.include[{i}]"
        ms, ws, cs = expander.include(key, inc.model_dump())
        candidates.extend(product(*([(key, x) for x in part] for part in (ms, ws, cs))))

    if not candidates:
        raise UserError("the matrix is empty: every case was excluded", where=where, key="matrix")
    matrix.check_combinations(candidates, where)
    matrix.check_baselines(candidates, expander.no_baseline, where)
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
        overrides=overrides,
    )


__all__ = ["BASELINE", "Case", "Component", "RunSettings", "Suite", "is_baseline",
           "json_schema", "load_suite", "parse_suite"]  # fmt: skip
