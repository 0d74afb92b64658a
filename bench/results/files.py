"""The files bench reads back, checked before anything is computed from them: a case result,
a run's manifest, a pytest-benchmark save, a pytest plugin's ``.perf/`` baseline.

A file is read as strict JSON (no NaN or Infinity: bench never writes them) and checked
against the shape its readers rely on (pydantic). What fails is a ``BadFile`` naming the
file and the first key that is wrong; readers that can go on without the file skip it with
a warning, the others stop with one line (exit 2). Keys nobody reads are left alone, so
results written by a newer bench with more keys still read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)


class BadFile(ValueError):
    """A file that cannot be believed: ``str()`` is 'PATH: what is wrong'."""

    def __init__(self, path: str | Path, why: str):
        super().__init__(f"{path}: {why}")
        self.path, self.why = str(path), why


def _no_bool_or_text(v: Any) -> Any:
    # pydantic's lax float takes True and "1.5"; a figure read back must have been a number.
    if isinstance(v, bool | str):
        raise ValueError("must be a number")
    return v


Number = Annotated[float, BeforeValidator(_no_bool_or_text), Field(allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, strict=True)]


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class MetricEntry(_Loose):
    name: str
    value: Number | None  # None: not measured (its reason is in the case's info.absent)
    unit: str | None = None
    method: str | None = None


class Part(_Loose):
    name: str = ""
    label: str
    params: dict[str, Any] = {}


class CaseSpec(_Loose):
    id: str | None = None
    suite: str | None = None
    model: Part
    workload: Part
    techniques: list[Part] = []
    run: dict[str, Any] = {}


class Disturbance(_Loose):
    disturbed: bool | None = None
    others_cores: Number | None = None
    steal_fraction: Number | None = None
    involuntary_switches: Count | None = None


class CaseInfo(_Loose):
    disturbance: Disturbance | None = None
    pass_: str | None = Field(None, alias="pass")
    profile: dict[str, Any] | None = None
    absent: dict[str, str] = {}


class CaseFile(_Loose):
    case_id: str = Field(min_length=1)
    repeat: Count | Literal["count"] = 0
    status: str
    run_id: str | None = None
    case: CaseSpec
    metrics: list[MetricEntry] = []
    info: CaseInfo = CaseInfo()
    samples: dict[str, dict[str, Any]] = {}
    error: str | None = None
    started: str | None = None
    wall_s: Number | None = None

    @model_validator(mode="after")
    def _one_case(self) -> CaseFile:
        if self.case.id is not None and self.case.id != self.case_id:
            raise ValueError(f"case_id {self.case_id!r} is not its case's id {self.case.id!r}")
        return self


class SuiteRef(_Loose):
    name: str
    path: str | None = None
    sha256: str | None = None
    text: str = ""


class Git(_Loose):
    commit: str | None = None
    dirty: bool | None = None
    subject: str | None = None


class Gpu(_Loose):
    devices: list[dict[str, Any]] = []
    driver: str | None = None
    reason: str | None = None


class Bandwidth(_Loose):
    read_bytes_per_s: Number | None = None
    bytes_per_s: Number | None = None
    read_method: str | None = None


class IdleDomain(_Loose):
    watts: Number
    method: str | None = None


class IdlePower(_Loose):
    domains: dict[str, IdleDomain] | None = None
    reason: str | None = None


class Environment(_Loose):
    host: str | None = None
    cpu_model: str | None = None
    cpu_count: Count | None = None
    cpu_affinity: Count | None = None
    torch: str | None = None
    cuda: str | None = None
    python: str | None = None
    git: Git = Git()
    gpu: Gpu = Gpu()
    software: dict[str, Any] = {}
    copy_bandwidth: dict[str, Bandwidth] = {}


class Selection(_Loose):
    cases: list[str]


class Manifest(_Loose):
    run_id: str = Field(min_length=1)
    suite: SuiteRef
    environment: Environment | None = None
    started: str | None = None
    status: str | None = None
    attempts: list[dict[str, Any]] = []
    history: str | None = None
    selection: Selection | None = None
    idle_power: IdlePower | None = None


class Stats(_Loose):
    median: Number


class SavedBenchmark(_Loose):
    fullname: str
    stats: Stats


class PytestBenchmarkSave(_Loose):
    machine_info: dict[str, Any] = {}
    benchmarks: list[SavedBenchmark] = Field(min_length=1)


class PerfSession(_Loose):
    values: list[Number] = Field(min_length=1)
    code: str | None = None


class PerfEntry(_Loose):
    metric: str
    unit: str | None = None
    method: str | None = None
    sessions: list[PerfSession] | None = None
    values: list[Number] | None = None  # an older bench's one session

    @model_validator(mode="after")
    def _some_session(self) -> PerfEntry:
        if not self.sessions and not self.values:
            raise ValueError("no saved session (neither sessions nor values)")
        return self


class PerfBaseline(_Loose):
    environment: dict[str, str | None] = {}
    tests: dict[str, PerfEntry]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (bench writes null for a missing figure)")


def read_json(path: str | Path, strict: bool = True) -> Any:
    """JSON from ``path`` (``strict``: no NaN or Infinity, which bench never writes; another
    tool's file may hold them where nobody reads); ``BadFile`` if it cannot be parsed."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise BadFile(path, f"cannot be read ({e.strerror or e})") from None
    try:
        return json.loads(data, parse_constant=_reject_constant if strict else None)
    except UnicodeDecodeError:
        raise BadFile(path, "not UTF-8 text") from None
    except RecursionError:
        raise BadFile(path, "nested too deeply") from None
    except json.JSONDecodeError as e:
        raise BadFile(path, f"truncated or not JSON ({e})") from None
    except ValueError as e:  # NaN or Infinity, refused by _reject_constant
        raise BadFile(path, str(e)) from None


def checked(model: type[BaseModel], data: Any, path: str | Path, what: str) -> dict[str, Any]:
    """``data`` as ``model`` reads it (a dict: keys by their file names, extras kept), or
    ``BadFile`` naming the first wrong key."""
    try:
        return model.model_validate(data).model_dump(by_alias=True)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        got = repr(err.get("input"))
        got = got if len(got) <= 40 else got[:37] + "..."
        raise BadFile(path, f"malformed {what}: {key}: {err['msg']} (got {got})") from None


def believed(read, path: str | Path) -> dict[str, Any]:
    """``read(path)``, a file that cannot be believed a UserError naming it (exit 2)."""
    from bench.errors import UserError

    try:
        return read(path)
    except BadFile as e:
        raise UserError(e.why, where=e.path) from None


def read_case(path: str | Path) -> dict[str, Any]:
    return checked(CaseFile, read_json(path), path, "case result")


def read_manifest(path: str | Path) -> dict[str, Any]:
    return checked(Manifest, read_json(path), path, "manifest")


def read_pytest_benchmark(path: str | Path) -> dict[str, Any]:
    # pytest-benchmark's saves come from Python's json, which writes a non-finite statistic
    # as NaN or Infinity; the median, the one figure read, is still checked finite.
    return checked(
        PytestBenchmarkSave, read_json(path, strict=False), path, "pytest-benchmark save"
    )


def read_perf_baseline(path: str | Path) -> dict[str, Any]:
    return checked(PerfBaseline, read_json(path), path, "perf baseline")
