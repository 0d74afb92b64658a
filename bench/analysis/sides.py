"""The sides of a comparison: what one or more runs measured, pooled per case and metric,
with the facts that must match the other side's.

A side is bench run folders or pytest-benchmark saves (``.benchmarks/**/NNNN_*.json``).
Its values stay grouped by invocation, the unit across runs: a run folder is one invocation
whose repeats of a case are its process runs; a pytest-benchmark save is one invocation of
each of its benchmarks with one value, its median. Anything unreadable is a UserError
naming the file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.results import store
from bench.results.history_rows import environment_key
from bench.results.metric_info import Tolerance, is_modelled
from bench.spec.gates import gates_of_suite_text

PYTEST_BENCHMARK = "pytest-benchmark"


@dataclass
class Side:
    """What one side of a comparison measured, pooled over its runs."""

    paths: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)  # run ids, or pytest-benchmark save files
    run_dirs: list[Path] = field(default_factory=list)  # the bench run folders read
    suites: set[str] = field(default_factory=set)
    facts: dict[str, set[str]] = field(default_factory=dict)  # what must match the other side
    # (case, metric) -> run -> that invocation's process-run values
    values: dict[tuple[str, str], dict[str, list[float]]] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    modelled: set[str] = field(default_factory=set)  # metrics whose figure is a model
    gates: dict[str, Tolerance] | None = None  # from the first run's suite's [gates]
    gates_differ: list[str] = field(default_factory=list)  # later runs whose [gates] differ
    env_keys: set[str] = field(default_factory=set)  # environments, for known run-to-run drift
    # (case, metric) -> repeat -> value, of bench runs: the members of ``bench ab``'s pairs
    # (a paired job's side is one run folder)
    by_repeat: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict)
    cases: list[str] = field(default_factory=list)  # in the order first read
    # process runs that other work disturbed (bench.telemetry.disturbance), and how many
    # recorded it: "run case rN: what disturbed it"
    disturbed: list[str] = field(default_factory=list)
    recorded: int = 0
    fact_sources: dict[tuple[str, str], str] = field(default_factory=dict)  # first file saying it

    def add_fact(self, name: str, value: Any, source: str = "") -> None:
        """``source``: the file the fact was read from, named when the sides differ."""
        text = "unknown" if value is None else str(value)
        self.facts.setdefault(name, set()).add(text)
        if source:
            self.fact_sources.setdefault((name, text), source)

    def add_value(
        self, run: str, case_id: str, metric: str, value: float, unit: str | None
    ) -> None:
        if case_id not in self.cases:
            self.cases.append(case_id)
        self.values.setdefault((case_id, metric), {}).setdefault(run, []).append(value)
        self.units.setdefault(metric, unit or "")

    def runs_of(self, case_id: str, metric: str) -> list[list[float]] | None:
        """The invocations' process-run values of one case and metric, None if never measured."""
        got = self.values.get((case_id, metric))
        return None if got is None else list(got.values())


def load_side(paths: Iterable[str | Path]) -> Side:
    """Read every run named by ``paths``: run folders, folders holding runs (bench run
    folders or pytest-benchmark saves, at any depth), or single pytest-benchmark files."""
    side = Side()
    for path in map(Path, paths):
        side.paths.append(str(path))
        found = _sources(path)
        if not found:
            raise UserError(
                "no bench run folder (with a manifest.json) or pytest-benchmark save "
                "(NNNN_*.json) here",
                where=str(path),
            )
        for kind, source in found:
            (_read_run if kind == "bench" else _read_pytest_benchmark)(source, side)
    return side


def _sources(path: Path) -> list[tuple[str, Path]]:
    if path.is_file():
        return [(PYTEST_BENCHMARK, path)]
    if (path / store.MANIFEST).is_file():
        return [("bench", path)]
    if not path.is_dir():
        return []
    runs = [("bench", m.parent) for m in sorted(path.glob(f"*/{store.MANIFEST}"))]
    saves = [(PYTEST_BENCHMARK, f) for f in sorted(path.rglob("[0-9][0-9][0-9][0-9]_*.json"))]
    return runs + saves


def _read_run(run_dir: Path, side: Side) -> None:
    from bench.results import files
    from bench.results.files import believed

    manifest = store.believed_manifest(run_dir)
    run_id, suite = manifest["run_id"], manifest["suite"]
    env = manifest["environment"] or {}
    side.runs.append(run_id)
    side.run_dirs.append(run_dir)
    side.suites.add(suite["name"])
    gates = gates_of_suite_text(suite["text"], f"{run_dir} (its suite)")
    if side.gates is None:
        side.gates = gates
    elif gates != side.gates:
        side.gates_differ.append(run_id)
    side.env_keys.add(environment_key(environment_facts(env)))
    where = str(run_dir / store.MANIFEST)
    side.add_fact("CPU model", env.get("cpu_model"), where)
    gpus = (env.get("gpu") or {}).get("devices") or []
    side.add_fact("GPU", ", ".join(str(g.get("name")) for g in gpus) or "none")
    side.add_fact("torch", minor_version(env.get("torch")), where)
    paths = sorted((run_dir / store.CASES).glob("*.json"))
    if not paths:
        raise UserError("no case results in this run", where=str(run_dir / store.CASES))
    for f in paths:
        r = believed(files.read_case, f)
        case_id, status, run = r["case_id"], r["status"], r["case"]["run"]
        side.add_fact("threads", run.get("threads"))
        if status != "ok":
            continue
        _note_disturbance(r, run_id, side)
        for m in r["metrics"]:
            if m["value"] is None:
                continue
            if is_modelled(m["method"]):
                side.modelled.add(m["name"])
            side.add_value(run_id, case_id, m["name"], float(m["value"]), m["unit"])
            repeat = r["repeat"]
            if isinstance(repeat, int):
                side.by_repeat.setdefault((case_id, m["name"]), {})[repeat] = float(m["value"])


def _note_disturbance(r: dict[str, Any], run_id: str, side: Side) -> None:
    from bench.results.disturbance import describe

    flag = store.disturbed(r)
    if flag is None:
        return
    side.recorded += 1
    if flag:
        what = describe(r["info"]["disturbance"])
        side.disturbed.append(f"{run_id} {r['case_id']} r{r.get('repeat')}: {what}")


def disturbance_note(name: str, side: Side) -> str | None:
    """'base: 2 of 10 process runs were disturbed by other work (...)', or None."""
    if not side.disturbed:
        return None
    shown = "; ".join(side.disturbed[:3]) + (" ..." if len(side.disturbed) > 3 else "")
    return (
        f"{name}: {len(side.disturbed)} of {side.recorded} process runs were disturbed by "
        f"other work ({shown}); their timings are in the verdicts, which may be noisier"
    )


def _read_pytest_benchmark(path: Path, side: Side) -> None:
    from bench.results.files import believed, read_pytest_benchmark

    data = believed(read_pytest_benchmark, path)
    side.runs.append(str(path.resolve()))
    side.suites.add(PYTEST_BENCHMARK)
    info = data["machine_info"]
    cpu = info.get("cpu")
    side.add_fact("CPU model", cpu.get("brand_raw") if isinstance(cpu, dict) else None, str(path))
    side.add_fact("Python", info.get("python_version"), str(path))
    for b in data["benchmarks"]:
        median = b["stats"]["median"]
        side.add_value(str(path.resolve()), b["fullname"], "latency_median", median, "s")


def environment_facts(env: dict[str, Any]) -> dict[str, Any]:
    """The facts that, when one changes, make runs another series (``bench history``) and
    their drift another machine's: the host, the CPU, the GPUs and their driver, torch and
    CUDA, Python's minor version."""
    gpu = env.get("gpu") or {}
    return {
        "host": env.get("host"),
        "cpu_model": env.get("cpu_model"),
        "cpus": env.get("cpu_affinity") or env.get("cpu_count"),
        "gpus": sorted(str(d.get("name")) for d in gpu.get("devices") or []),
        "gpu_driver": gpu.get("driver"),
        "torch": env.get("torch"),
        "cuda": env.get("cuda"),
        "python": minor_version(env.get("python")),
    }


def minor_version(version: str | None) -> str | None:
    """ "2.13.0+cpu" -> "2.13": what must match for two setups to be comparable."""
    return None if not version else ".".join(version.split("+")[0].split(".")[:2])
